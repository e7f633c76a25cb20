//! `tinyrnn train-text`: a character model learnt from a text that does not change (the ETTh1 licence,
//! `tests/data/etth1/ETT-LICENSE.txt`: a living document such as `docs/FORMAT.md` would move the seeded
//! figures with every edit), through the library and the command line.

mod common;

use std::path::{Path, PathBuf};

use common::{repo, tinyrnn};

use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::text::generate_text;
use tinyrnn_converter::train::chars::{
    fit_text, CharText, Optimizer, TextInfo, TextSettings, TextTrained,
};

fn corpus() -> CharText {
    let path = repo("tests/data/etth1/ETT-LICENSE.txt");
    CharText::parse(&std::fs::read(&path).unwrap(), "ETT-LICENSE.txt").unwrap()
}

fn settings(optimizer: Optimizer, steps: usize) -> TextSettings {
    TextSettings {
        text: "ETT-LICENSE.txt".into(),
        cell: "rnn".into(),
        layers: 1,
        hidden: 64,
        embedding: 32,
        seq_len: 25,
        optimizer,
        learning_rate: optimizer.default_learning_rate(),
        clip: 5.0,
        steps,
        seed: 1,
        val_fraction: 0.1,
        sample_every: 100,
        sample_len: 40,
        temperature: 1.0,
        prime: "The ".into(),
    }
}

fn train(settings: &TextSettings) -> TextTrained {
    fit_text(&corpus(), settings, &mut |_| {}).unwrap()
}

#[test]
fn validation_loss_falls_well_below_the_unigram_entropy() {
    let trained = train(&TextSettings {
        optimizer: Optimizer::Adam,
        learning_rate: 1e-2,
        ..settings(Optimizer::Adam, 600)
    });
    let o = &trained.info.outcome;
    let (val, unigram) = (o.val_nats.unwrap(), o.val_unigram_nats.unwrap());
    eprintln!(
        "validation {val:.4} nats/char, unigram {unigram:.4}, chance {:.4}",
        o.chance_nats
    );
    // A model that ignores context cannot beat the tail's own character frequencies.
    assert!(val < 0.9 * unigram, "validation {val} vs unigram {unigram}");
    // What the blob stores is what the engine measures on the blob itself.
    let bytes = &trained.blob;
    let text = corpus();
    let tail = &text.ids[text.ids.len() - o.val_chars..];
    let measured = tinyrnn_converter::train::chars::engine_nats(bytes, tail).unwrap();
    assert_eq!(measured, val);
    let aligned = AlignedBlob::new(bytes);
    let model = aligned.open().unwrap();
    assert_eq!(
        TextInfo::parse(model.meta().info),
        Some(trained.info.clone())
    );
    assert_eq!(model.vocabulary().unwrap().len(), text.chars.len());
}

#[test]
fn adagrad_and_adam_both_reduce_the_loss() {
    for optimizer in [Optimizer::Adagrad, Optimizer::Adam] {
        let trained = train(&settings(optimizer, 500));
        let (first, last) = (&trained.reports[0], trained.reports.last().unwrap());
        assert_eq!(trained.reports.len(), 5);
        let (v0, v1) = (first.val_nats.unwrap(), last.val_nats.unwrap());
        eprintln!(
            "{optimizer:?}: loss {:.4} → {:.4}, validation {v0:.4} → {v1:.4}",
            first.train_nats, last.train_nats
        );
        assert!(last.train_nats < first.train_nats - 0.3, "{optimizer:?}");
        assert!(v1 < v0 - 0.3, "{optimizer:?}: {v0} → {v1}");
        assert!(
            v1 < trained.info.outcome.val_unigram_nats.unwrap(),
            "{optimizer:?}"
        );
    }
}

#[test]
fn every_cell_and_a_stack_train_and_generate() {
    for (cell, layers) in [("lstm", 1), ("gru", 2)] {
        let trained = train(&TextSettings {
            cell: cell.into(),
            layers,
            hidden: 16,
            ..settings(Optimizer::Adam, 200)
        });
        let last = trained.reports.last().unwrap();
        assert!(last.val_nats.unwrap() < trained.info.outcome.chance_nats - 1.0);
        let text = generate_text(&trained.blob, "The ", 40, 1.0, 1).unwrap();
        assert_eq!(text, last.sample, "{cell}");
        assert_eq!(text.chars().count(), 40);
    }
}

#[test]
fn bad_texts_and_settings_are_refused_clearly() {
    let parse = |bytes: &[u8]| format!("{:#}", CharText::parse(bytes, "corpus.txt").unwrap_err());
    assert!(parse(b"").contains("corpus.txt is empty"));
    let e = parse(b"abc\xffdef");
    assert!(
        e.contains("not UTF-8") && e.contains("byte offset 3"),
        "{e}"
    );
    let e = parse(b"aaaa");
    assert!(e.contains("only 1 distinct character"), "{e}");
    let wide: String = (0..5000u32)
        .filter_map(|i| char::from_u32(0x4e00 + i))
        .collect();
    let e = parse(wide.as_bytes());
    assert!(
        e.contains("5000 distinct characters") && e.contains("4096"),
        "{e}"
    );

    let text = CharText::parse(b"abcabcabcabcabcabcabcabcabcabc", "abc.txt").unwrap();
    let fit = |s: TextSettings| format!("{:#}", fit_text(&text, &s, &mut |_| {}).unwrap_err());
    let base = TextSettings {
        text: "abc.txt".into(),
        prime: "a".into(),
        seq_len: 5,
        ..settings(Optimizer::Adagrad, 10)
    };
    let e = fit(TextSettings {
        seq_len: 0,
        ..base.clone()
    });
    assert!(e.contains("--seq-len must be at least 1"), "{e}");
    let e = fit(TextSettings {
        seq_len: 40,
        ..base.clone()
    });
    assert!(e.contains("chunk of --seq-len 40 needs at least 41"), "{e}");
    let e = fit(TextSettings {
        prime: "ax".into(),
        ..base.clone()
    });
    assert!(e.contains("'x'") && e.contains("abc.txt"), "{e}");
    let e = fit(TextSettings {
        val_fraction: 0.01,
        ..base.clone()
    });
    assert!(e.contains("holds out 0"), "{e}");
    let e = fit(TextSettings {
        hidden: 5000,
        ..base.clone()
    });
    assert!(e.contains("--hidden 5000") && e.contains("4096"), "{e}");
    let e = fit(TextSettings {
        embedding: 0,
        ..base.clone()
    });
    assert!(e.contains("embedding width must be at least 1"), "{e}");
    let e = fit(TextSettings {
        cell: "tcn".into(),
        ..base
    });
    assert!(e.contains("tcn"), "{e}");
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("train-text", name)
}

fn train_cli(blob: &Path, seed: &str) -> String {
    let text = repo("tests/data/etth1/ETT-LICENSE.txt");
    let out = tinyrnn(&[
        "train-text",
        text.to_str().unwrap(),
        "-o",
        blob.to_str().unwrap(),
        "--hidden",
        "32",
        "--steps",
        "150",
        "--sample-every",
        "50",
        "--sample-len",
        "120",
        "--temperature",
        "0.7",
        "--prime",
        "The ",
        "--seed",
        seed,
    ]);
    assert!(
        out.status.success(),
        "train-text failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cli_is_deterministic_and_its_samples_are_what_generate_prints() {
    let dir = scratch("cli");
    let (a, b, c) = (dir.join("a.trnn"), dir.join("b.trnn"), dir.join("c.trnn"));
    let stdout = train_cli(&a, "3");
    train_cli(&b, "3");
    train_cli(&c, "4");
    let (a_bytes, b_bytes) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(a_bytes, b_bytes, "the same seed must give the same blob");
    assert_ne!(a_bytes, std::fs::read(&c).unwrap());
    assert_eq!(stdout.matches("\nstep ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("unigram") && stdout.contains("bits"),
        "{stdout}"
    );
    // The last sample, printed between two ---- lines, comes from the final weights.
    let blocks: Vec<&str> = stdout.split("----\n").collect();
    let printed = blocks[blocks.len() - 2].trim_end_matches('\n');
    let out = tinyrnn(&[
        "generate",
        a.to_str().unwrap(),
        "--prime",
        "The ",
        "--length",
        "120",
        "--temperature",
        "0.7",
        "--seed",
        "3",
    ]);
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert_eq!(generated.trim_end_matches('\n'), printed);
    assert!(printed.starts_with("The ") && printed.chars().count() == 124);

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let out = tinyrnn(&["train-text", empty.to_str().unwrap(), "-o", "x.trnn"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("empty.txt is empty"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}
