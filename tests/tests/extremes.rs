//! Extreme inputs on the f32 side — up to ±f32::MAX, ±Inf, NaN — never panic, in f32 and in i8w, streaming
//! or windowed; and a model whose output passes through a bounded activation gives finite outputs for
//! finite inputs up to 1e30 in magnitude. (Nearer f32::MAX, sums of products can overflow to ±Inf and
//! meet as NaN; i8w keeps each term within `|x|`, as f32 weights of magnitude ≤ 1 would.)

use tinyrnn::format::{Activation, Layer};
use tinyrnn::{Model, Runtime};
use tinyrnn_conformance::{quantized_sample_models, sample_models, Rng};
use tinyrnn_converter::quantize::Mode;
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

const EXTREMES: [f32; 8] = [
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MIN_POSITIVE,
];

/// Whether the last layer with an activation bounds its output (sigmoid, tanh, softmax).
fn bounded(model: &Model<'_>) -> bool {
    let bounded = |a: Activation| {
        matches!(
            a,
            Activation::Sigmoid | Activation::Tanh | Activation::Softmax
        )
    };
    model
        .layers()
        .filter_map(|layer| match layer {
            Layer::Dense(d) => Some(bounded(d.activation)),
            Layer::Recurrent(r) => Some(bounded(r.activation)),
            _ => None,
        })
        .last()
        .unwrap_or(false)
}

#[test]
fn extreme_inputs_never_panic_and_bounded_outputs_stay_finite() {
    let mut rng = Rng::new(17);
    let mut checked = 0;
    let models = sample_models(31)
        .into_iter()
        .chain(quantized_sample_models(32, Mode::I8w));
    for (spec, steps) in models {
        let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
        let model = blob.open().unwrap();
        if model.input().kind == tinyrnn::format::InputKind::Tokens {
            continue;
        }
        let width = model.input_width();
        let mut memory = vec![0.0; model.window_memory(steps).unwrap().total()];
        let mut out = vec![0.0; model.output_len(steps).unwrap()];
        for round in 0..24 {
            let input: Vec<f32> = (0..steps * width)
                .map(|_| {
                    EXTREMES[rng.below(EXTREMES.len())]
                        * if round % 2 == 0 {
                            1.0
                        } else {
                            rng.uniform(1.0)
                        }
                })
                .collect();
            let mut runtime = Runtime::new(&model, &mut memory).unwrap();
            runtime.run_window(&input, &mut out).unwrap();
            let finite_input = input.iter().all(|v| v.abs() <= 1e30);
            if finite_input && bounded(&model) {
                assert!(
                    out.iter().all(|v| v.is_finite()),
                    "{}: finite input {input:?} gave {out:?}",
                    spec.name
                );
            }
            if model.is_streamable() {
                runtime.reset();
                let mut step_out = vec![0.0; model.step_output_len()];
                for x in input.chunks_exact(width) {
                    runtime.step(x, &mut step_out).unwrap();
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}
