//! The engine's bad-number policy (crate docs, "Bad numbers"), in f32 and in i8w, streaming and windowed:
//! a NaN or infinite input is refused with `Error::NonFiniteInput` and leaves the state as it was; a finite
//! input that overflows the state to NaN/Inf gives `Error::StateOverflow` and resets the state; so the state
//! never holds a NaN or an infinity, and after a reset a stream gives what a fresh one gives. Huge
//! (±f32::MAX, ±1e30) and tiny (f32::MIN_POSITIVE, subnormal) values are covered; a model whose output
//! passes through a bounded activation gives finite outputs for finite inputs up to 1e30 in magnitude. (Nearer f32::MAX, sums of products can overflow to ±Inf and
//! meet as NaN; i8w keeps each term within `|x|`, as f32 weights of magnitude ≤ 1 would.)

use tinyrnn::format::{Activation, Layer};
use tinyrnn::{Error, Forecaster, Mode as StreamMode, Model, Runtime};
use tinyrnn_conformance::{quantized_sample_models, sample_models, Rng};
use tinyrnn_converter::quantize::Mode;
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

const EXTREMES: [f32; 9] = [
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MIN_POSITIVE,
    1e-45,
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
fn extreme_inputs_follow_the_bad_number_policy() {
    let mut rng = Rng::new(17);
    let (mut checked, mut refused, mut overflowed) = (0, 0, 0);
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
        let mut fresh_memory = memory.clone();
        let mut out = vec![0.0; model.output_len(steps).unwrap()];
        let normal = rng.values(steps * width, 1.0);
        for round in 0..24 {
            // Half the rounds draw only finite extremes, so huge and tiny values run, not just get refused.
            let pool: Vec<f32> = EXTREMES
                .into_iter()
                .filter(|v| round % 2 == 0 || v.is_finite())
                .collect();
            let input: Vec<f32> = (0..steps * width)
                .map(|_| {
                    pool[rng.below(pool.len())] * if round % 4 < 2 { 1.0 } else { rng.uniform(1.0) }
                })
                .collect();
            let mut runtime = Runtime::new(&model, &mut memory).unwrap();
            // Windowed: a NaN or an infinity is refused, naming the first one; finite values run.
            let result = runtime.run_window(&input, &mut out);
            match input.iter().position(|v| !v.is_finite()) {
                Some(index) => {
                    assert_eq!(result, Err(Error::NonFiniteInput { index }));
                    refused += 1;
                }
                None => {
                    result.unwrap();
                }
            }
            let finite_input = input.iter().all(|v| v.abs() <= 1e30);
            if finite_input && bounded(&model) {
                runtime.run_window(&input, &mut out).unwrap();
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
                    let before = runtime.state().to_vec();
                    match runtime.step(x, &mut step_out) {
                        Ok(_) => {}
                        Err(Error::NonFiniteInput { index }) => {
                            assert!(
                                !x[index].is_finite() && x[..index].iter().all(|v| v.is_finite())
                            );
                            // The sample was not used.
                            assert_eq!(bits(runtime.state()), bits(&before));
                        }
                        Err(Error::StateOverflow) => overflowed += 1,
                        Err(other) => panic!("{}: {other:?}", spec.name),
                    }
                    // Never a NaN or an infinity left in the state.
                    assert!(
                        runtime.state().iter().all(|v| v.is_finite()),
                        "{}",
                        spec.name
                    );
                }
                // Whatever came before, normal samples after a reset give what a fresh runtime gives.
                runtime.reset();
                let mut fresh = Runtime::new(&model, &mut fresh_memory).unwrap();
                let mut fresh_out = vec![0.0; model.step_output_len()];
                for x in normal.chunks_exact(width) {
                    runtime.step(x, &mut step_out).unwrap();
                    fresh.step(x, &mut fresh_out).unwrap();
                    assert_eq!(bits(&step_out), bits(&fresh_out), "{}", spec.name);
                }
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} extreme windows, {refused} refused, {overflowed} streaming overflows reset"
    );
    assert!(checked > 1000, "{checked}");
    assert!(
        refused > 100 && checked - refused > 500,
        "{refused} of {checked}"
    );
}

/// A state that overflows is reset to the initial state, and the stream goes on from there.
#[test]
fn an_overflowing_state_is_reset_and_the_stream_recovers() {
    let models = sample_models(33)
        .into_iter()
        .chain(quantized_sample_models(34, Mode::I8w));
    let mut resets = 0;
    for (spec, _) in models {
        let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
        let model = blob.open().unwrap();
        if !model.is_streamable() || model.input().kind == tinyrnn::format::InputKind::Tokens {
            continue;
        }
        let width = model.input_width();
        let mut memory = vec![0.0; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let initial = runtime.state().to_vec();
        let mut out = vec![0.0; model.step_output_len()];
        for k in 0..8 {
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            match runtime.step(&vec![sign * f32::MAX; width], &mut out) {
                Ok(_) => assert!(runtime.state().iter().all(|v| v.is_finite())),
                Err(Error::StateOverflow) => {
                    assert_eq!(bits(runtime.state()), bits(&initial), "{}", spec.name);
                    resets += 1;
                }
                Err(other) => panic!("{}: {other:?}", spec.name),
            }
        }
        runtime.step(&vec![0.5; width], &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{}", spec.name);
    }
    // Linear and ReLU recurrences overflow at f32::MAX; tanh and sigmoid ones saturate.
    assert!(resets > 0);
}

/// A windowed forecaster refuses a NaN sample without taking it into its window.
#[test]
fn a_forecaster_window_never_holds_a_bad_sample() {
    let (spec, steps) = sample_models(35)
        .into_iter()
        .find(|(s, _)| s.input.steps.is_some())
        .expect("a fixed-window sample model");
    let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
    let model = blob.open().unwrap();
    let width = model.input_width();
    let mode = StreamMode::of(&model).unwrap();
    assert_eq!(mode, StreamMode::Window { steps });
    let words = Forecaster::<256>::memory_words(&model, mode).unwrap();
    let (mut m1, mut m2) = (vec![0.0; words], vec![0.0; words]);
    let mut clean = Forecaster::<256>::new(&model, &mut m1).unwrap();
    let mut dirty = Forecaster::<256>::new(&model, &mut m2).unwrap();
    let samples = Rng::new(36).values(3 * steps * width, 1.0);
    for (k, sample) in samples.chunks_exact(width).enumerate() {
        if k % 3 == 1 {
            let mut bad = sample.to_vec();
            bad[width - 1] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k % 3];
            assert_eq!(
                dirty.push(&bad).unwrap_err(),
                Error::NonFiniteInput { index: width - 1 }
            );
        }
        let a = clean.push(sample).unwrap().map(<[f32]>::to_vec);
        let b = dirty.push(sample).unwrap().map(<[f32]>::to_vec);
        assert_eq!(a, b, "sample {k}");
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}
