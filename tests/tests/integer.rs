//! The integer-only mode (`i8x16`) beyond conformance: the committed reference files, saturation under
//! extreme inputs, streaming against windows, and state save and restore.
//!
//! `tests/data/integer/{model.trnn,input.csv,expected.csv}` are written by
//! `cargo run -p tinyrnn-conformance --example integer_reference`: the blob from a seeded model, the
//! quantized input, and the `i16` outputs this engine computes from it on the host. The outputs are our
//! own, so on the host they only guard against unintended changes; their purpose is the comparison with
//! the same lines printed by the firmware on a Cortex-M0 (QEMU), which shows host and MCU agree bit for
//! bit.

use tinyrnn::format::{Cell, Direction, Merge};
use tinyrnn::{Model, Runtime};
use tinyrnn_conformance::{
    all_cells, dense, integer_reference_blob, model, recurrent, RecurrentOptions, Rng,
};
use tinyrnn_converter::npy::Array;
use tinyrnn_converter::quantize::{quantize_with, Mode};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::ModelSpec;
use tinyrnn_converter::write::to_blob;

fn data(file: &str) -> String {
    let path = format!("{}/data/integer/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rows(text: &str) -> Vec<Vec<i16>> {
    text.lines()
        .map(|l| l.split(',').map(|v| v.parse().expect("an i16")).collect())
        .collect()
}

#[test]
fn committed_reference_model_is_what_the_generator_writes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/integer/model.trnn");
    let committed = std::fs::read(path).expect("model.trnn");
    assert!(
        committed == integer_reference_blob(),
        "tests/data/integer is stale: run `cargo run -p tinyrnn-conformance --example integer_reference`"
    );
}

#[test]
fn committed_window_reference_is_what_the_generator_writes_and_runs_to_its_outputs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/integer/window-model.trnn"
    );
    let committed = std::fs::read(path).expect("window-model.trnn");
    assert!(
        committed == tinyrnn_conformance::integer_window_reference_blob(),
        "tests/data/integer is stale: run `cargo run -p tinyrnn-conformance --example integer_reference`"
    );
    let aligned = AlignedBlob::new(&committed);
    let model = aligned.open().unwrap();
    let x: Vec<i16> = rows(&data("window-input.csv")).concat();
    let expected: Vec<i16> = rows(&data("window-expected.csv")).concat();
    let steps = x.len() / 3;
    let mut memory = vec![0.0f32; model.window_memory(steps).unwrap().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut y = vec![0i16; model.output_len(steps).unwrap()];
    runtime.run_window_i16(&x, &mut y).unwrap();
    assert_eq!(y, expected);
}

#[test]
fn host_streams_the_committed_reference_outputs() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/integer/model.trnn"
    ))
    .unwrap();
    let blob = AlignedBlob::new(&bytes);
    let model = blob.open().unwrap();
    let (input, expected) = (rows(&data("input.csv")), rows(&data("expected.csv")));
    assert_eq!(input.len(), expected.len());
    let mut memory = vec![0.0f32; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut y = vec![0i16; model.step_output_len()];
    for (t, (x, want)) in input.iter().zip(&expected).enumerate() {
        runtime.step_i16(x, &mut y).unwrap();
        assert_eq!(&y, want, "step {t}");
    }
    // The same window in one call gives the same bits.
    let flat: Vec<i16> = input.concat();
    let mut window_memory = vec![0.0f32; model.window_memory(input.len()).unwrap().total()];
    let mut runtime = Runtime::new(&model, &mut window_memory).unwrap();
    let mut out = vec![0i16; model.output_len(input.len()).unwrap()];
    runtime.run_window_i16(&flat, &mut out).unwrap();
    assert_eq!(out, expected.concat());
}

/// Random models of every cell and several layer shapes, in `i8x16`, calibrated on normal inputs.
fn integer_models(seed: u64) -> Vec<(String, ModelSpec, Vec<u8>, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for cell in all_cells() {
        for (shape, direction) in [
            ("forward", Direction::Forward),
            ("bidirectional sum", Direction::Bidirectional(Merge::Sum)),
            ("bidirectional mul", Direction::Bidirectional(Merge::Mul)),
        ] {
            let mut options = RecurrentOptions::new(cell, 6);
            options.direction = direction;
            options.initial_state = true;
            options.peephole = true;
            let layers = vec![
                recurrent(&mut rng, 3, options),
                dense(&mut rng, 6, 2, tinyrnn::format::Activation::Relu),
            ];
            let spec = model("extremes", 3, None, layers);
            let calibration = Array::float(vec![4, 16, 3], rng.values(4 * 16 * 3, 1.5)).unwrap();
            let quantized = quantize_with(&spec, Mode::I8x16, Some(&calibration)).unwrap();
            let name = format!("{cell:?} {shape}");
            out.push((
                name,
                spec.clone(),
                to_blob(&spec).unwrap(),
                to_blob(&quantized).unwrap(),
            ));
        }
    }
    out
}

fn window(model: &Model<'_>, x: &[f32]) -> Vec<f32> {
    let steps = x.len() / model.input_width();
    let mut memory = vec![0.0f32; model.window_memory(steps).unwrap().total()];
    let mut runtime = Runtime::new(model, &mut memory).unwrap();
    let mut y = vec![0.0; model.output_len(steps).unwrap()];
    runtime.run_window(x, &mut y).unwrap();
    y
}

/// The f32 input policy of an integer model: NaN reads as 0, ±∞ and anything beyond the input format's
/// range saturate to its ends. With saturation (not wrap-around) at every boundary inside, the integer
/// model given extreme inputs stays close to the f32 model given the saturated inputs.
#[test]
fn extreme_inputs_saturate_instead_of_wrapping() {
    let extremes = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        1e30,
        -1e30,
        1e5,
        -1e5,
        f32::MIN_POSITIVE,
        0.0,
    ];
    let mut rng = Rng::new(7);
    let mut worst = 0.0f32;
    for (name, _, f32_blob, int_blob) in integer_models(3) {
        let (f, q) = (AlignedBlob::new(&f32_blob), AlignedBlob::new(&int_blob));
        let (f, q) = (f.open().unwrap(), q.open().unwrap());
        let frac = q.fixed_point().unwrap().input_frac;
        let limit = 32767.0 / (1u32 << frac) as f32;
        let saturated = |v: f32| {
            if v.is_nan() {
                0.0
            } else {
                (v * (1u32 << frac) as f32).round().clamp(-32768.0, 32767.0) / (1u32 << frac) as f32
            }
        };
        for _ in 0..20 {
            let x: Vec<f32> = (0..24)
                .map(|_| {
                    if rng.below(3) == 0 {
                        extremes[rng.below(extremes.len())]
                    } else {
                        rng.uniform(2.0 * limit)
                    }
                })
                .collect();
            let got = window(&q, &x);
            let clean: Vec<f32> = x.iter().map(|&v| saturated(v)).collect();
            let want = window(&f, &clean);
            let out_limit = 32768.0 / (1u32 << q.output_frac().unwrap()) as f32;
            for (g, w) in got.iter().zip(&want) {
                assert!(g.is_finite() && g.abs() <= out_limit, "{name}: output {g}");
                // The output format saturates where f32 goes on.
                let w = w.clamp(-out_limit, out_limit);
                worst = worst.max((g - w).abs() / w.abs().max(1.0));
            }
            // NaN reads exactly as 0, and ±∞ exactly as the largest finite values.
            let nan: Vec<f32> = x
                .iter()
                .map(|&v| if v == 0.0 { f32::NAN } else { v })
                .collect();
            assert_eq!(window(&q, &nan), got, "{name}: NaN is not read as 0");
            let inf: Vec<f32> = x
                .iter()
                .map(|&v| if v == f32::MAX { f32::INFINITY } else { v })
                .collect();
            assert_eq!(window(&q, &inf), got, "{name}: +inf and f32::MAX differ");
        }
    }
    println!("extreme inputs: largest error against f32 on the saturated inputs {worst:.3e}");
    assert!(worst <= EXTREME_BOUND, "{worst}");
}

/// Largest `|y_i8x16 − y_f32| / max(|y_f32|, 1)` on extreme (saturated) inputs, the f32 output clamped
/// to the integer output format's range. Measured: 2.7e-2 (inputs at the ends of the input format drive
/// the inner formats beyond their calibrated ranges, where they saturate and f32 does not). A
/// wrap-around anywhere would give errors of the order of the whole range.
const EXTREME_BOUND: f32 = 0.1;

/// Integer inputs at the ends of `i16`, for many steps: no panic, the state stays bounded, and the
/// model recovers: after the extremes stop, it converges back to the run that never saw them.
#[test]
fn i16_extremes_do_not_break_the_state() {
    for (name, _, _, int_blob) in integer_models(9) {
        let q = AlignedBlob::new(&int_blob);
        let q = q.open().unwrap();
        if !q.is_streamable() {
            continue;
        }
        let run = |extreme_steps: usize| {
            let mut memory = vec![0.0f32; q.memory().total()];
            let mut runtime = Runtime::new(&q, &mut memory).unwrap();
            let mut y = vec![0i16; q.step_output_len()];
            let mut rng = Rng::new(5);
            for t in 0..2000 {
                let x: Vec<i16> = if t < extreme_steps {
                    (0..3)
                        .map(|_| [i16::MIN, i16::MAX, -1][rng.below(3)])
                        .collect()
                } else {
                    (0..3).map(|_| (rng.uniform(3000.0)) as i16).collect()
                };
                runtime.step_i16(&x, &mut y).unwrap();
            }
            (y, runtime.state_i16().to_vec())
        };
        let (clean, _) = run(0);
        let (after, state) = run(500);
        assert!(!state.is_empty());
        let gap = clean
            .iter()
            .zip(&after)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap_or(0);
        // Contractive random cells forget the extremes within 1500 steps (to a few steps of rounding).
        assert!(
            gap <= 64,
            "{name}: {gap} steps of difference after recovery"
        );
    }
}

#[test]
fn integer_state_saves_and_restores() {
    for (name, _, _, int_blob) in integer_models(11) {
        let q = AlignedBlob::new(&int_blob);
        let q = q.open().unwrap();
        if !q.is_streamable() {
            continue;
        }
        let mut rng = Rng::new(2);
        let x: Vec<i16> = (0..60).map(|_| rng.uniform(8000.0) as i16).collect();
        let (mut m1, mut m2) = (
            vec![0.0f32; q.memory().total()],
            vec![0.0f32; q.memory().total()],
        );
        let mut a = Runtime::new(&q, &mut m1).unwrap();
        let mut y = vec![0i16; q.step_output_len()];
        for row in x[..30].chunks_exact(3) {
            a.step_i16(row, &mut y).unwrap();
        }
        let saved = a.state_i16().to_vec();
        let mut b = Runtime::new(&q, &mut m2).unwrap();
        assert!(b.restore_state_i16(&saved[1..]).is_err());
        b.restore_state_i16(&saved).unwrap();
        let mut z = vec![0i16; q.step_output_len()];
        for row in x[30..].chunks_exact(3) {
            a.step_i16(row, &mut y).unwrap();
            b.step_i16(row, &mut z).unwrap();
            assert_eq!(y, z, "{name}");
        }
    }
}

#[test]
fn float_models_refuse_the_integer_entry_points() {
    let mut rng = Rng::new(1);
    let spec = model(
        "f",
        3,
        None,
        vec![recurrent(
            &mut rng,
            3,
            RecurrentOptions::new(Cell::SimpleRnn, 4),
        )],
    );
    let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
    let m = blob.open().unwrap();
    let mut memory = vec![0.0f32; m.memory().total()];
    let mut runtime = Runtime::new(&m, &mut memory).unwrap();
    assert_eq!(
        runtime.step_i16(&[0, 0, 0], &mut [0; 4]),
        Err(tinyrnn::Error::NotInteger)
    );
    assert!(runtime.state_i16().is_empty());
}

/// A `Forecaster` runs an integer model through the f32 edges, and its saved state (the `i16` pairs in
/// the state words) restores bit for bit.
#[test]
fn forecaster_streams_an_integer_model_and_restores_its_state() {
    use tinyrnn::Forecaster;
    let blob = AlignedBlob::new(&integer_reference_blob());
    let model = blob.open().unwrap();
    let x = tinyrnn_conformance::integer_reference_input();
    let words = Forecaster::<'_, '_, 64>::memory_words(&model, tinyrnn::Mode::Stream).unwrap();
    let (mut m1, mut m2) = (vec![0.0f32; words], vec![0.0f32; words]);
    let mut a = Forecaster::<'_, '_, 64>::new(&model, &mut m1).unwrap();
    for sample in x[..30].chunks_exact(3) {
        a.push(sample).unwrap();
    }
    let mut saved = vec![0u8; a.state_len()];
    a.save_state(&mut saved).unwrap();
    let mut b = Forecaster::<'_, '_, 64>::new(&model, &mut m2).unwrap();
    b.restore_state(&saved).unwrap();
    for sample in x[30..].chunks_exact(3) {
        let fa = a.push(sample).unwrap().map(|f| f.to_vec());
        let fb = b.push(sample).unwrap().map(|f| f.to_vec());
        assert_eq!(fa, fb);
        assert!(fa.is_some_and(|f| f.iter().all(|v| v.is_finite())));
    }
}

/// An integer-only model's state words carry `i16` pairs: a pair can read as a NaN `f32`, and the state
/// must still restore bit for bit (float models refuse such a state).
#[test]
fn an_integer_state_restores_whatever_f32_its_words_read_as() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/integer/model.trnn"
    ))
    .unwrap();
    let blob = AlignedBlob::new(&bytes);
    let model = Model::open(blob.bytes()).unwrap();
    assert!(model.is_integer());
    let mut memory = vec![0.0f32; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let words = runtime.state().len();
    // Little-endian: the pair (0, 0x7fc0) is the word 0x7fc0_0000, a quiet NaN.
    let state = vec![f32::from_bits(0x7fc0_0000); words];
    runtime.restore_state(&state).unwrap();
    let values = runtime.state_i16();
    assert!(!values.is_empty());
    for (i, &v) in values.iter().enumerate() {
        assert_eq!(v, if i % 2 == 0 { 0 } else { 0x7fc0 }, "value {i}");
    }
}

/// Window normalisation and the skip path in `i8x16`: a forecaster `SubtractLast → GRU → Dense →
/// Residual` (one shared skip map, one per target, and none), calibrated on random-walk windows around a
/// level far from zero, stays within issue 4's `i8x16` bound (2e-3 of the output range) of its f32
/// model on held-out windows, and its f32 edges give the same bits as its `i16` entry point.
#[test]
fn window_norm_and_skip_run_integer_only_within_the_bound() {
    use tinyrnn::format::{Activation, Layer, Residual};
    use tinyrnn_converter::spec::Tensor;
    let (features, steps, horizon) = (3usize, 24usize, 4usize);
    let targets = [0u16, 2];
    let mut rng = Rng::new(17);
    // Random walks: a level in ±3, steps of ±0.15.
    let mut walks = |count: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(count * steps * features);
        for _ in 0..count {
            let mut level: Vec<f32> = rng.values(features, 3.0);
            for _ in 0..steps {
                for v in level.iter_mut() {
                    *v += rng.uniform(0.15);
                }
                out.extend_from_slice(&level);
            }
        }
        out
    };
    let (calibration, held_out) = (walks(48), walks(16));
    // (per-target skip maps, skip map at all)
    for (per_target, with_skip) in [(false, true), (true, true), (false, false)] {
        let mut rng = Rng::new(if per_target { 5 } else { 4 });
        let mut options = RecurrentOptions::new(Cell::Gru { reset_after: true }, 8);
        options.return_sequences = false;
        let rows = if per_target {
            horizon * targets.len()
        } else {
            horizon
        };
        // A skip map near the last-value forecast, as training leaves it: small weights around 1/T.
        let skip: Vec<f32> = (0..rows * steps)
            .map(|_| 1.0 / steps as f32 + rng.uniform(0.05))
            .collect();
        let layers = vec![
            Layer::SubtractLast,
            recurrent(&mut rng, features, options),
            dense(&mut rng, 8, horizon * targets.len(), Activation::Linear),
            Layer::Residual(Residual {
                inputs: targets.iter().copied().collect(),
                add_last: true,
                skip: with_skip.then(|| Tensor::matrix(rows, steps, skip).unwrap()),
                skip_bias: with_skip.then(|| Tensor::vector(rng.values(rows, 0.05))),
            }),
        ];
        let spec = model("window norm", features, Some(steps as u32), layers);
        let data = Array::float(vec![48, steps, features], calibration.clone()).unwrap();
        let quantized = quantize_with(&spec, Mode::I8x16, Some(&data)).unwrap();
        let (f32_blob, int_blob) = (
            AlignedBlob::new(&to_blob(&spec).unwrap()),
            AlignedBlob::new(&to_blob(&quantized).unwrap()),
        );
        let (reference, integer) = (f32_blob.open().unwrap(), int_blob.open().unwrap());
        assert!(integer.is_integer());
        let fixed = integer.fixed_point().unwrap().clone();
        let in_scale = 2f32.powi(i32::from(fixed.input_frac));
        let out_frac = integer.output_frac().unwrap();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for x in held_out.chunks_exact(steps * features) {
            let y = window(&integer, x);
            want.extend(window(&reference, x));
            // The i16 entry point on the same quantized input gives the same bits.
            let xq: Vec<i16> = x.iter().map(|v| (v * in_scale).round() as i16).collect();
            let mut memory = vec![0.0f32; integer.window_memory(steps).unwrap().total()];
            let mut runtime = Runtime::new(&integer, &mut memory).unwrap();
            let mut yq = vec![0i16; integer.output_len(steps).unwrap()];
            runtime.run_window_i16(&xq, &mut yq).unwrap();
            let back: Vec<f32> = yq
                .iter()
                .map(|&q| f32::from(q) / 2f32.powi(i32::from(out_frac)))
                .collect();
            assert_eq!(back, y);
            got.extend(y);
        }
        let range = want.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
            - want.iter().fold(f32::INFINITY, |m, v| m.min(*v));
        let max_abs = want
            .iter()
            .zip(&got)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        println!(
            "window norm (skip: {with_skip}, per target: {per_target}): max |err| {max_abs:.3e}, \
             range {range:.3}, {:.3e} of the range; formats {fixed:?}",
            max_abs / range
        );
        assert!(
            max_abs / range <= 2e-3,
            "error {max_abs:.3e} is {:.3e} of the output range {range:.3}",
            max_abs / range
        );
    }
}

/// An integer LSTM given only `Model::memory_compact` streams unit by unit and gives the outputs of the
/// whole-matrix step, bit for bit: both gate forms (with and without the input-forget coupling), with and
/// without peepholes and a clip, odd and even hidden sizes, a relu cell activation (the general `i64`
/// path) and tanh, stacked, over inputs that reach the saturation ends.
#[test]
fn compact_memory_streams_an_integer_lstm_to_the_same_outputs() {
    let mut rng = Rng::new(23);
    let mut checked = 0;
    for input_forget in [false, true] {
        for (hidden, peephole, clip, activation) in [
            (5, false, None, tinyrnn::format::Activation::Tanh),
            (6, true, Some(3.0), tinyrnn::format::Activation::Tanh),
            (7, true, None, tinyrnn::format::Activation::Relu),
        ] {
            let mut first = RecurrentOptions::new(Cell::Lstm { input_forget }, hidden);
            first.peephole = peephole;
            first.clip = clip;
            first.activation = activation;
            first.initial_state = true;
            let second = RecurrentOptions::new(Cell::Lstm { input_forget }, 4);
            let layers = vec![
                recurrent(&mut rng, 3, first),
                recurrent(&mut rng, hidden, second),
                dense(&mut rng, 4, 2, tinyrnn::format::Activation::Linear),
            ];
            let spec = model("compact", 3, None, layers);
            let calibration = Array::float(vec![4, 16, 3], rng.values(4 * 16 * 3, 1.5)).unwrap();
            let quantized = quantize_with(&spec, Mode::I8x16, Some(&calibration)).unwrap();
            let blob = to_blob(&quantized).unwrap();
            let aligned = AlignedBlob::new(&blob);
            let model = aligned.open().unwrap();
            let (full, compact) = (model.memory(), model.memory_compact());
            assert!(
                compact.scratch < full.scratch && compact.state == full.state,
                "{full:?} {compact:?}"
            );
            let mut big = vec![0.0f32; full.total()];
            let mut small = vec![0.0f32; compact.total()];
            let mut whole = Runtime::new(&model, &mut big).unwrap();
            let mut by_unit = Runtime::new(&model, &mut small).unwrap();
            let mut distinct = std::collections::BTreeSet::new();
            for step in 0..300 {
                let x: Vec<i16> = (0..3)
                    .map(|k| match (step + k) % 50 {
                        0 => i16::MAX,
                        1 => i16::MIN,
                        _ => (rng.values(1, 12_000.0)[0]) as i16,
                    })
                    .collect();
                let (mut a, mut b) = ([0i16; 2], [0i16; 2]);
                whole.step_i16(&x, &mut a).unwrap();
                by_unit.step_i16(&x, &mut b).unwrap();
                assert_eq!(
                    a, b,
                    "step {step}, input_forget {input_forget}, hidden {hidden}"
                );
                distinct.insert(a);
            }
            // The outputs move with the input: the comparison is not of constants.
            assert!(distinct.len() > 50, "{} distinct outputs", distinct.len());
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}
