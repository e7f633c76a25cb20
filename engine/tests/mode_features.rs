//! The numeric-mode features (`f32`, `i8x16`): a blob whose mode this build compiled out is refused by
//! `Model::open` with `Error::FeatureDisabled` for layer 0, naming the feature, before any layer is
//! looked at; one whose mode (and cells) are compiled in opens and runs. CI runs this file under
//! several feature sets, e.g.
//! `cargo test -p tinyrnn --no-default-features --features lstm,gru,simple-rnn,i8x16 --test mode_features`.

use tinyrnn::{Error, Model, Runtime};

#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

/// A float model: SimpleRNN(2), f32 weights.
static FLOAT: &Aligned<[u8]> =
    &Aligned(*include_bytes!("../../firmware/models/kpi_forecaster.trnn"));
/// An integer-only (`i8x16`) model: LSTM(8) with peepholes, GRU(8), Dense(2).
static INTEGER: &Aligned<[u8]> = &Aligned(*include_bytes!("../../tests/data/integer/model.trnn"));

/// Opens `blob`: with its mode compiled in it opens (given its cells) and takes a streaming step;
/// without, it is refused for layer 0 with the mode's feature named.
fn expect(blob: &[u8], mode_compiled_in: bool, cells_compiled_in: bool, feature: &'static str) {
    match Model::open(blob) {
        Ok(model) => {
            assert!(
                mode_compiled_in,
                "a blob needing `{feature}` opened without it"
            );
            let mut memory = vec![0.0f32; model.memory().total()];
            let mut runtime = Runtime::new(&model, &mut memory).expect("memory from Model::memory");
            let input = vec![0.25f32; model.input_width()];
            let mut output = vec![0.0f32; model.step_output_len()];
            runtime
                .step(&input, &mut output)
                .expect("a step of a model that opened");
            assert!(output.iter().all(|v| v.is_finite()));
        }
        Err(e) if !mode_compiled_in => {
            assert_eq!(e, Error::FeatureDisabled { layer: 0, feature });
            let message = format!("{e}");
            assert!(
                message.contains("layer 0") && message.contains(feature),
                "{message}"
            );
        }
        Err(e) => {
            // The mode is in; only a compiled-out cell may refuse it (cell_features.rs tests those).
            assert!(
                !cells_compiled_in,
                "a `{feature}` blob was refused with everything it needs: {e}"
            );
            assert!(
                matches!(e, Error::FeatureDisabled { feature: f, .. } if f != feature),
                "{e}"
            );
        }
    }
}

#[test]
fn float_blob_opens_only_with_the_f32_feature() {
    expect(
        &FLOAT.0,
        cfg!(feature = "f32"),
        cfg!(feature = "simple-rnn"),
        "f32",
    );
}

#[test]
fn integer_blob_opens_only_with_the_i8x16_feature() {
    let cells = cfg!(feature = "lstm") && cfg!(feature = "gru");
    expect(&INTEGER.0, cfg!(feature = "i8x16"), cells, "i8x16");
}
