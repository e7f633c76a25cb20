//! The bundled text examples work end to end.

use std::path::{Path, PathBuf};

use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::{import, text, vocab, write};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn chars_blob() -> Vec<u8> {
    let mut spec = import::import(&repo("examples/chars/chars.npz")).unwrap();
    spec.vocabulary = Some(vocab::read(&repo("examples/chars/vocab.json")).unwrap());
    write::to_blob_with_self_test(&spec).unwrap()
}

#[test]
fn the_char_model_predicts_its_training_text_far_better_than_chance() {
    let blob = chars_blob();
    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open().unwrap();
    let vocabulary = model.vocabulary().unwrap();
    let text = std::fs::read_to_string(repo("docs/FORMAT.md")).unwrap();
    let ids: Vec<u32> = vocabulary
        .ids(&text)
        .filter_map(Result::ok)
        .take(3000)
        .collect();
    let mut memory = vec![0.0; model.memory().total()];
    let mut output = vec![0.0; model.step_output_len()];
    let mut runtime = tinyrnn::Runtime::new(&model, &mut memory).unwrap();
    let mut nats = 0.0f64;
    for pair in ids.windows(2) {
        runtime.step_token(pair[0], &mut output).unwrap();
        nats -= f64::from(output[pair[1] as usize].max(1e-12)).ln();
    }
    let mean = nats / (ids.len() - 1) as f64;
    let chance = (vocabulary.len() as f64).ln();
    eprintln!(
        "{mean:.3} nats per character over {} characters; chance is {chance:.3}",
        ids.len()
    );
    assert!(
        mean < 0.55 * chance,
        "{mean:.3} nats per character; chance is {chance:.3}"
    );
}

#[test]
fn generation_is_deterministic_and_stays_in_the_vocabulary() {
    let blob = chars_blob();
    let a = text::generate_text(&blob, "The ", 300, 0.6, 1).unwrap();
    assert_eq!(a, text::generate_text(&blob, "The ", 300, 0.6, 1).unwrap());
    let vocabulary: String = vocab::read(&repo("examples/chars/vocab.json"))
        .unwrap()
        .tokens
        .concat();
    assert!(a.chars().all(|c| vocabulary.contains(c)));
    assert_eq!(a.chars().count(), 300);
}
