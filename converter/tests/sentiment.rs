//! The text-classifier workflow: Keras models that start with `TextVectorization` import with their
//! vocabulary, and `classify` on raw text gives Keras' `model.predict` score
//! (fixtures from `tests/fixtures/gen_sentiment.py`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tinyrnn::format::{Activation, Cell, CellWeights, Direction, Embedding, Layer, Recurrent};
use tinyrnn_converter::spec::Tensor;
use tinyrnn_converter::{import, text, write};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn classify_matches_keras_on_raw_text_for_every_cell() {
    let dir = repo("tests/fixtures/sentiment");
    let manifest = json(&dir.join("manifest.json"));
    let cases = manifest.as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let spec = import::import(&dir.join(case["keras"].as_str().unwrap())).unwrap();
        assert!(spec.vocabulary.is_some(), "{name}: no vocabulary imported");
        assert_eq!(
            spec.parameter_count() as u64,
            case["params"].as_u64().unwrap(),
            "{name}: parameters"
        );
        let blob = write::to_blob_with_self_test(&spec).unwrap();
        let expected = json(&dir.join(case["expected"].as_str().unwrap()));
        let texts = expected["texts"].as_array().unwrap();
        let scores = expected["scores"].as_array().unwrap();
        for (t, s) in texts.iter().zip(scores) {
            let t = t.as_str().unwrap();
            let reference = s.as_f64().unwrap() as f32;
            let ours = text::classify(&blob, t).unwrap();
            assert_eq!(ours.len(), 1);
            let tolerance = 1e-5 + 1e-4 * reference.abs();
            assert!(
                (ours[0] - reference).abs() <= tolerance,
                "{name}: {t:?}: ours {} vs Keras {reference}",
                ours[0]
            );
        }
    }
}

#[test]
fn the_sentiment_example_keeps_keras_accuracy() {
    let spec = import::import(&repo("examples/sentiment/sentiment.keras")).unwrap();
    let blob = write::to_blob_with_self_test(&spec).unwrap();
    let reviews = json(&repo("examples/sentiment/reviews.json"));
    let list = reviews["reviews"].as_array().unwrap();
    let correct = list
        .iter()
        .filter(|r| {
            let score = text::classify(&blob, r["text"].as_str().unwrap()).unwrap()[0];
            (score > 0.5) == (r["label"].as_u64() == Some(1))
        })
        .count();
    let ours = correct as f64 / list.len() as f64;
    let keras = reviews["keras_accuracy"].as_f64().unwrap();
    eprintln!("held-out accuracy: tinyrnn {ours:.3}, Keras {keras:.3}");
    assert!((ours - keras).abs() <= 1.0 / list.len() as f64 + 1e-9);
    assert!(ours > 0.8);
}

/// The seed notebook's figures (Keras `summary()`): an Embedding of 5404×64, SimpleRNN(128) 24,704 and
/// LSTM(128) 98,816 parameters. The counts come from the shapes alone.
#[test]
fn parameter_counts_match_the_notebook() {
    let zeros =
        |rows: usize, cols: usize| Tensor::matrix(rows, cols, vec![0.0; rows * cols]).unwrap();
    let recurrent = |cell: Cell, gates: usize| {
        Layer::Recurrent(Recurrent {
            cell,
            hidden: 128,
            activation: Activation::Tanh,
            gate_activation: Activation::Sigmoid,
            clip: None,
            direction: Direction::Forward,
            return_sequences: false,
            forward: CellWeights {
                kernel: zeros(gates * 128, 64),
                recurrent: zeros(gates * 128, 128),
                bias: Some(zeros(gates * 128, 1)),
                recurrent_bias: None,
                peephole: None,
                initial_h: None,
                initial_c: None,
            },
            backward: None,
        })
    };
    let count = |layer: &Layer<Tensor>| tinyrnn_converter::spec::layer_parameter_count(layer);
    assert_eq!(
        count(&Layer::Embedding(Embedding {
            table: zeros(5404, 64)
        })),
        345_856
    );
    assert_eq!(count(&recurrent(Cell::SimpleRnn, 1)), 24_704);
    assert_eq!(
        count(&recurrent(
            Cell::Lstm {
                input_forget: false
            },
            4
        )),
        98_816
    );
}

#[test]
fn an_unsupported_standardize_is_named() {
    // Re-save a fixture's config with another standardize: the error names it.
    let path = repo("tests/fixtures/sentiment/gru.keras");
    let bytes = std::fs::read(&path).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).unwrap();
    let dir = std::env::temp_dir().join(format!("tinyrnn-sentiment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("custom.keras");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&out_path).unwrap());
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).unwrap();
        let name = member.name().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut data).unwrap();
        if name == "config.json" {
            data = String::from_utf8(data)
                .unwrap()
                .replace("\"lower_and_strip_punctuation\"", "\"my_custom_function\"")
                .into_bytes();
        }
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut writer, &data).unwrap();
    }
    writer.finish().unwrap();
    let err = import::import(&out_path).unwrap_err();
    assert!(
        format!("{err:#}").contains("standardize=Some(\"my_custom_function\") is not supported"),
        "{err:#}"
    );
}
