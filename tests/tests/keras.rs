//! Keras conformance: every model in `fixtures/keras/manifest.json` (written by `fixtures/gen_keras.py`)
//! imports from both its `.keras` and its `.h5` file into the same layers, has Keras' parameter count,
//! writes a blob, and reproduces `model.predict` within the shared tolerance; every negative case is
//! refused with the error the manifest names. Damaged files are refused without panics.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tinyrnn_conformance::fixtures;
use tinyrnn_converter::compare::{compare, ATOL, RTOL};
use tinyrnn_converter::import::keras::{import_keras_h5, import_keras_zip};
use tinyrnn_converter::import::{import, SourceFormat};
use tinyrnn_converter::npy;
use tinyrnn_converter::run::run_batch;
use tinyrnn_converter::spec::ModelSpec;
use tinyrnn_converter::write::to_blob;

fn dir() -> PathBuf {
    fixtures().join("keras")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("manifest.json is a list");
    assert!(
        cases.len() >= 30,
        "the manifest lists {} cases",
        cases.len()
    );
    cases
}

fn field<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no '{key}'", case["name"]))
}

fn positive() -> impl Iterator<Item = Value> {
    manifest().into_iter().filter(|c| c.get("output").is_some())
}

fn negative() -> impl Iterator<Item = Value> {
    manifest()
        .into_iter()
        .filter(|c| c.get("error_contains").is_some())
}

fn load(file: &str) -> ModelSpec {
    let path = dir().join(file);
    import(&path).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

#[test]
fn every_case_imports_from_both_files_alike_with_keras_parameter_count() {
    let mut count = 0;
    for case in positive() {
        let name = field(&case, "name");
        let zip = load(field(&case, "keras"));
        let h5 = load(field(&case, "h5"));
        assert_eq!(
            zip.layers, h5.layers,
            "{name}: .keras and .h5 give different layers"
        );
        assert_eq!(
            zip.input, h5.input,
            "{name}: .keras and .h5 give different inputs"
        );
        assert_eq!(zip.name, name, "{name}: model name");
        assert_eq!(h5.name, name, "{name}: model name");
        assert!(zip.source.contains(".keras") && zip.source.contains(field(&case, "keras")));
        assert!(h5.source.contains(".h5") && h5.source.contains(field(&case, "h5")));
        let params = case["params"].as_u64().expect("params") as usize;
        assert_eq!(zip.parameter_count(), params, "{name}: parameter count");
        to_blob(&zip).unwrap_or_else(|e| panic!("{name}: writing the blob: {e:?}"));
        count += 1;
    }
    assert!(count >= 30);
}

#[test]
fn every_case_matches_keras_predict() {
    let mut failures = Vec::new();
    for case in positive() {
        let input = npy::read(&dir().join(field(&case, "input"))).unwrap();
        let expected = npy::read(&dir().join(field(&case, "output"))).unwrap();
        for file in [field(&case, "keras"), field(&case, "h5")] {
            let blob = to_blob(&load(file)).unwrap();
            let outcome = run_batch(&blob, &input).and_then(|actual| compare(&actual, &expected));
            match outcome {
                Err(e) => failures.push(format!("{file}: {e:#}")),
                Ok(c) => {
                    eprintln!("{file:45} max |Δ| {:.3e}", c.max_abs_diff);
                    if let Some((at, ours, keras)) = c.first_mismatch {
                        failures.push(format!(
                            "{file}: element {at} is {ours} where Keras gives {keras} (max |Δ| {:.3e}, \
                             tolerance {ATOL} + {RTOL}·|keras|)",
                            c.max_abs_diff
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_are_refused_with_a_clear_error() {
    let mut count = 0;
    for case in negative() {
        let name = field(&case, "name");
        let file = field(&case, "keras");
        let err = import(&dir().join(file)).expect_err(name);
        let text = format!("{err:#}");
        let wanted = field(&case, "error_contains");
        assert!(text.contains(wanted), "{name}: '{wanted}' not in: {text}");
        assert!(
            text.contains(file),
            "{name}: the error does not name the file: {text}"
        );
        count += 1;
    }
    assert!(count >= 4);
}

fn error_of(file: &str) -> String {
    format!("{:#}", import(&dir().join(file)).expect_err(file))
}

#[test]
fn refusals_name_the_layer_and_what_is_supported() {
    let lambda = error_of("neg_lambda.keras");
    for part in ["'lambda' (Lambda)", "Python code", "Cropping1D"] {
        assert!(lambda.contains(part), "'{part}' not in: {lambda}");
    }
    let conv = error_of("neg_conv1d.keras");
    for part in [
        "'conv1d' (Conv1D)",
        "supported layers",
        "LSTM",
        "Bidirectional",
        "Cropping1D",
    ] {
        assert!(conv.contains(part), "'{part}' not in: {conv}");
    }
    let backwards = error_of("neg_go_backwards.keras");
    assert!(backwards.contains("'lstm' (LSTM)"), "{backwards}");
    let mask = error_of("neg_mask_zero.keras");
    assert!(mask.contains("'embedding' (Embedding)"), "{mask}");
    let activation = error_of("neg_activation.keras");
    assert!(
        activation.contains("'simple_rnn' (SimpleRNN)") && activation.contains("tanh"),
        "{activation}"
    );
}

#[test]
fn formats_are_detected() {
    use tinyrnn_converter::import::detect;
    let zip = dir().join("seed_kpi.keras");
    let h5 = dir().join("seed_kpi.h5");
    assert_eq!(
        detect(&zip, &std::fs::read(&zip).unwrap()).unwrap(),
        SourceFormat::KerasZip
    );
    assert_eq!(
        detect(&h5, &std::fs::read(&h5).unwrap()).unwrap(),
        SourceFormat::KerasH5
    );
}

#[test]
fn seed_kpi_model_is_what_the_design_describes() {
    use tinyrnn::format::{Activation, Cell, Direction, Input, InputKind, Layer, Merge};
    let spec = load("seed_kpi.keras");
    assert_eq!(
        spec.input,
        Input {
            kind: InputKind::Features(3),
            steps: Some(5)
        }
    );
    match spec.layers.as_slice() {
        [Layer::Recurrent(r), Layer::Crop { start: 3, end: 0 }] => {
            assert_eq!(r.cell, Cell::SimpleRnn);
            assert_eq!(r.hidden, 2);
            assert_eq!(r.activation, Activation::Linear);
            assert_eq!(r.direction, Direction::Forward);
            assert!(r.return_sequences);
            assert_eq!((r.forward.kernel.rows, r.forward.kernel.cols), (2, 3));
            assert_eq!((r.forward.recurrent.rows, r.forward.recurrent.cols), (2, 2));
        }
        other => panic!("unexpected layers {other:?}"),
    }
    let bi = load("seed_kpi_bidirectional.h5");
    match bi.layers.as_slice() {
        [Layer::Recurrent(r), Layer::Crop { start: 3, end: 0 }] => {
            assert_eq!(r.direction, Direction::Bidirectional(Merge::Sum));
            assert!(r.backward.is_some());
        }
        other => panic!("unexpected layers {other:?}"),
    }
    let tokens = load("embedding_gru.keras");
    assert_eq!(
        tokens.input,
        Input {
            kind: InputKind::Tokens,
            steps: None
        }
    );
}

/// Every truncation of a small archive and of both HDF5 layouts, and byte flips through them, give an
/// error or (rarely, for a flip that lands in padding) a model, never a panic.
#[test]
fn damaged_files_are_refused_without_panics() {
    let files = [
        "seed_kpi.keras",
        "seed_kpi.h5",
        "gru_reset_after_seq.h5",
        "bidir_gru_sum_last.keras",
    ];
    for file in files {
        let path = dir().join(file);
        let bytes = std::fs::read(&path).unwrap();
        let importer = |b: &[u8]| match path.extension().and_then(|e| e.to_str()) {
            Some("keras") => import_keras_zip(Path::new(file), b),
            _ => import_keras_h5(Path::new(file), b),
        };
        assert!(importer(&bytes).is_ok(), "{file} itself must import");
        let step = (bytes.len() / 400).max(1);
        for len in (0..bytes.len()).step_by(step) {
            let err = importer(&bytes[..len]).expect_err("a truncated file must be refused");
            assert!(
                format!("{err:#}").contains(file),
                "{file}[..{len}]: {err:#}"
            );
        }
        let mut damaged = bytes.clone();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % bytes.len() as u64) as usize;
            damaged.copy_from_slice(&bytes);
            damaged[at] ^= 1 << (state >> 61);
            let _ = importer(&damaged);
        }
    }
}

#[test]
#[ignore = "prints every refusal, for reading"]
fn print_refusals() {
    for case in negative() {
        eprintln!("{}\n", error_of(field(&case, "keras")));
    }
}
