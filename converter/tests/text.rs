//! Token models with text in and out: min-char-rnn generation against its own NumPy forward pass
//! (greedy), seeded sampling, and classification with a word vocabulary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::{import, text, vocab, write};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/torch")
        .join(name)
}

fn char_model() -> Vec<u8> {
    let mut spec = import::import(&fixture("min_char_rnn.npz")).unwrap();
    spec.vocabulary = Some(vocab::read(&fixture("min_char_rnn.vocab.json")).unwrap());
    write::to_blob_with_self_test(&spec).unwrap()
}

#[test]
fn greedy_generation_matches_min_char_rnn_in_numpy() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("min_char_rnn.greedy.json")).unwrap(),
    )
    .unwrap();
    let prime = reference["prime"].as_str().unwrap();
    let expected = reference["continuation"].as_str().unwrap();
    let generated =
        text::generate_text(&char_model(), prime, expected.chars().count(), 0.0, 0).unwrap();
    assert_eq!(generated, expected);
}

#[test]
fn the_same_seed_gives_the_same_text_and_another_seed_another() {
    let blob = char_model();
    let a = text::generate_text(&blob, "abc", 200, 1.0, 7).unwrap();
    let b = text::generate_text(&blob, "abc", 200, 1.0, 7).unwrap();
    let c = text::generate_text(&blob, "abc", 200, 1.0, 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.chars().count(), 200);
    // Sampling at temperature 1 visits more than the greedy path does.
    let distinct = a.chars().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct > 3, "only {distinct} distinct characters in {a:?}");
}

#[test]
fn a_character_outside_the_vocabulary_is_named() {
    let err = text::generate_text(&char_model(), "abz", 5, 1.0, 0).unwrap_err();
    assert!(
        format!("{err:#}").contains("'z' is not in the model's vocabulary"),
        "{err:#}"
    );
}

#[test]
fn a_vocabulary_larger_than_the_embedding_is_refused() {
    let mut spec = import::import(&fixture("min_char_rnn.npz")).unwrap();
    spec.vocabulary = Some(vocab::parse(r#"{"chars": "abcdefghijklm"}"#).unwrap());
    let err = write::to_blob_with_self_test(&spec).unwrap_err();
    assert!(
        format!("{err:#}").contains("vocabulary does not fit"),
        "{err:#}"
    );
}

#[test]
fn generation_needs_one_output_per_token() {
    // Fewer tokens than embedding rows is a valid vocabulary (Keras sizes by max_tokens), but a
    // generator must have one score per token to draw from.
    let mut spec = import::import(&fixture("min_char_rnn.npz")).unwrap();
    spec.vocabulary = Some(vocab::parse(r#"{"chars": "abc"}"#).unwrap());
    let blob = write::to_blob_with_self_test(&spec).unwrap();
    let err = text::generate_text(&blob, "abc", 5, 1.0, 0).unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("the model gives 12 scores per step but its vocabulary has 3 tokens"),
        "{err:#}"
    );
}

#[test]
fn classification_reads_words_as_keras_text_vectorization_does() {
    let mut spec = import::import_with_arch(
        &fixture("embedding_lstm_sigmoid.safetensors"),
        Some("embedding, lstm, last, fc:sigmoid"),
    )
    .unwrap();
    let words: Vec<String> = ["", "[UNK]"]
        .into_iter()
        .map(String::from)
        .chain((2..30).map(|i| format!("w{i}")))
        .collect();
    spec.vocabulary = Some(vocab::parse(&serde_json::to_string(&words).unwrap()).unwrap());
    let blob = write::to_blob_with_self_test(&spec).unwrap();
    let score = text::classify(&blob, "  W2, w3! zzz ...  w29").unwrap();

    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open().unwrap();
    let ids = [2u32, 3, 1, 29];
    let mut memory = vec![0.0; model.window_memory(ids.len()).unwrap().total()];
    let mut expected = vec![0.0; 1];
    tinyrnn::Runtime::new(&model, &mut memory)
        .unwrap()
        .run_window_tokens(&ids, &mut expected)
        .unwrap();
    assert_eq!(score, expected);
    assert!(score[0] > 0.0 && score[0] < 1.0);
}

#[test]
fn the_cli_imports_a_vocabulary_and_generates_the_same_text_twice() {
    let bin = env!("CARGO_BIN_EXE_tinyrnn");
    let dir = std::env::temp_dir().join(format!("tinyrnn-text-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blob = dir.join("chars.trnn");
    let import = Command::new(bin)
        .arg("import")
        .arg(fixture("min_char_rnn.npz"))
        .arg("--vocab")
        .arg(fixture("min_char_rnn.vocab.json"))
        .arg("-o")
        .arg(&blob)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("vocabulary         12 characters"));
    let run = || {
        let out = Command::new(bin)
            .args([
                "generate",
                blob.to_str().unwrap(),
                "--prime",
                "abc",
                "--length",
                "40",
                "--seed",
                "3",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(
        first.starts_with("abc") && first.trim_end().chars().count() == 43,
        "{first:?}"
    );
}
