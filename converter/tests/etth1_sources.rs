//! Where a trained forecaster's `i8w` error comes from: `i8w` with matrices of up to 16 columns in
//! int16, with every weight matrix int8 (`--int16-columns 0`), and then with one kind of matrix in int8
//! and the rest f32, and every matrix int8 but one kind. The skip map is int16 in every case (the quantizer has stored it so since this
//! measurement showed int8 there to be most of the error; its int8 figures in BENCHMARKS.md are from
//! commit 96c79a7). A measurement for BENCHMARKS.md, not a check; it needs a model `tinyrnn train`
//! wrote and its CSV (the ETTh1 GRU(32) of BENCHMARKS.md):
//!
//! ```sh
//! TINYRNN_MODEL=etth1-gru32.trnn TINYRNN_CSV=ETTh1.csv \
//!     cargo test --release -p tinyrnn-converter --test etth1_sources -- --ignored --nocapture
//! ```

mod common;

use std::path::PathBuf;

use common::{with_kind, MatrixKind};

use tinyrnn_converter::quantize::{error_per_output, quantize_with_options, Mode, Options};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::ModelSpec;
use tinyrnn_converter::{trainer, write};

const KINDS: [MatrixKind; 3] = [
    MatrixKind::InputKernel,
    MatrixKind::RecurrentKernel,
    MatrixKind::Dense,
];

fn path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("set {var}: see this file's header"))
}

#[test]
#[ignore = "measurement for BENCHMARKS.md; needs TINYRNN_MODEL and TINYRNN_CSV"]
fn i8w_error_by_matrix_kind() {
    let (model, csv) = (path("TINYRNN_MODEL"), path("TINYRNN_CSV"));
    let f32_blob = std::fs::read(&model).expect("the model");
    let data = trainer::trained_data(&f32_blob, &csv).expect("the model's data");
    let spec =
        ModelSpec::from_model(&AlignedBlob::new(&f32_blob).open().expect("opens")).expect("spec");
    let worst = |s: &ModelSpec| -> (f32, f32) {
        let blob = write::to_blob(s).expect("blob");
        let errors = error_per_output(&f32_blob, &blob, &data.test).expect("error");
        let worst = errors.iter().fold(0.0f32, |m, e| m.max(e.relative()));
        let mean = errors.iter().map(|e| e.mean_abs).sum::<f32>() / errors.len() as f32;
        (worst, mean)
    };
    let quantized = |options: &Options| {
        quantize_with_options(&spec, Mode::I8w, Some(&data.calibration), options).expect("i8w")
    };
    let int8 = Options {
        int16_input_columns: 0,
        int16_recurrent_columns: 0,
        int16_dense_columns: 0,
        ..Options::default()
    };
    // Without bias correction, so that each kind's weights carry their whole error.
    let plain = quantized(&Options {
        bias_correction: false,
        ..int8
    });
    println!(
        "{} ({} calibration windows, {} test windows); worst max|err|/range over the outputs, mean |err|",
        model.display(),
        data.calibration.shape[0],
        data.test.shape[0]
    );
    let show = |label: &str, s: &ModelSpec| {
        let (w, m) = worst(s);
        println!("{label:<44} {w:.2e}  {m:.2e}");
    };
    show("i8w, --int16-columns 16", &quantized(&Options::default()));
    show("i8w, every matrix int8", &quantized(&int8));
    show("i8w, every matrix int8, no bias correction", &plain);
    for kind in KINDS {
        show(
            &format!("only {kind:?} int8, the rest f32"),
            &with_kind(&spec, &plain, kind),
        );
    }
    for kind in KINDS {
        show(
            &format!("all int8 but {kind:?}"),
            &with_kind(&plain, &spec, kind),
        );
    }
}
