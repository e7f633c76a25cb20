//! PyTorch safetensors and NumPy npz import, beyond the conformance fixtures (which
//! `conformance.rs` runs): damaged files give errors, the forward pass used is recorded, and `--arch` is
//! refused for formats that record their own architecture.

use std::path::{Path, PathBuf};

use tinyrnn_converter::import;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/torch")
        .join(name)
}

#[test]
fn every_truncation_of_a_state_dict_is_an_error() {
    let dir = std::env::temp_dir().join(format!("tinyrnn-torch-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "gru_last.safetensors",
        "npz_lstm_last.npz",
        "min_char_rnn.npz",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let ext = Path::new(file).extension().unwrap().to_str().unwrap();
        let path = dir.join(format!("cut.{ext}"));
        // Every length up to the end of the header region, then coarser steps through the data.
        let lengths = (0..bytes.len().min(400)).chain((400..bytes.len()).step_by(7));
        for len in lengths {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert!(
                import::import(&path).is_err(),
                "{file} cut to {len} of {} bytes was accepted",
                bytes.len()
            );
        }
    }
}

#[test]
fn the_forward_pass_used_is_recorded_in_the_source() {
    let assumed = import::import(&fixture("gru_last.safetensors")).unwrap();
    assert!(
        assumed
            .source
            .ends_with("forward pass (assumed, no --arch): gru, last, fc"),
        "{}",
        assumed.source
    );
    let given = import::import_with_arch(
        &fixture("rnn_relu_2layer_seq.safetensors"),
        Some("rnn:relu -> fc"),
    )
    .unwrap();
    assert!(
        given.source.ends_with("forward pass (given): rnn:relu, fc"),
        "{}",
        given.source
    );
}

#[test]
fn arch_is_refused_for_formats_that_record_their_architecture() {
    let keras =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keras/lstm_last.keras");
    let err = import::import_with_arch(&keras, Some("lstm")).unwrap_err();
    assert!(
        format!("{err:#}").contains("--arch is for PyTorch"),
        "{err:#}"
    );
}

#[test]
fn an_arch_that_leaves_a_module_out_is_refused() {
    let err = import::import_with_arch(
        &fixture("lstm_two_linears.safetensors"),
        Some("lstm, last, fc1"),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("leaves out 1 of the file's modules: fc2"),
        "{err:#}"
    );
}

#[test]
fn the_torch_suite_is_all_there() {
    let text = std::fs::read_to_string(fixture("manifest.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let negatives = cases
        .iter()
        .filter(|c| c.get("error_contains").is_some())
        .count();
    assert!(
        cases.len() - negatives >= 14 && negatives >= 7,
        "{} cases, {negatives} negative",
        cases.len()
    );
}
