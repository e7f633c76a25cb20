//! The quantizer's calibration options: percentile ranges for `i8x16` (`--calibration`) and bias
//! correction for `i8w`, each against the rule it replaces, on data made to show the difference; and
//! the int16 width fitted to an error target (`--max-error`).

mod common;

use std::process::Command;

use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Input, InputKind, InputLayout, IoLayout,
    Layer, OutputLayout, Recurrent,
};
use tinyrnn_converter::npy::{Array, Data};
use tinyrnn_converter::quantize::{
    error_per_output, fit_int16_columns, quantize_with_options, ErrorTarget, Mode, Options,
    RangeRule, FIT_MARGIN,
};
use tinyrnn_converter::run::run_batch;
use tinyrnn_converter::spec::{ModelSpec, Tensor};
use tinyrnn_converter::write::to_blob;

use common::noise;

fn spec(features: u32, layers: Vec<Layer<Tensor>>) -> ModelSpec {
    ModelSpec {
        input: Input {
            kind: InputKind::Features(features),
            steps: None,
        },
        layers,
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: "calibration options".into(),
        source: "hand-built".into(),
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    }
}

/// A GRU(6) → Dense(2) forecaster with seeded weights, reading 3 features.
fn gru_model() -> ModelSpec {
    let matrix =
        |seed, rows, cols| Tensor::matrix(rows, cols, noise(seed, rows * cols, 0.6)).unwrap();
    let gru = Layer::Recurrent(Recurrent {
        cell: Cell::Gru { reset_after: true },
        hidden: 6,
        activation: Activation::Tanh,
        gate_activation: Activation::Sigmoid,
        clip: None,
        direction: Direction::Forward,
        return_sequences: false,
        forward: CellWeights {
            kernel: matrix(1, 18, 3),
            recurrent: matrix(2, 18, 6),
            bias: Some(Tensor::vector(noise(3, 18, 0.3))),
            recurrent_bias: Some(Tensor::vector(noise(4, 18, 0.3))),
            peephole: None,
            initial_h: None,
            initial_c: None,
        },
        backward: None,
    });
    let head = Layer::Dense(Dense {
        weight: matrix(5, 2, 6),
        bias: Some(Tensor::vector(noise(6, 2, 0.3))),
        activation: Activation::Linear,
    });
    spec(3, vec![gru, head])
}

fn windows(seed: u64, batch: usize, steps: usize, scale: f32) -> Array {
    Array::float(vec![batch, steps, 3], noise(seed, batch * steps * 3, scale)).unwrap()
}

fn worst_error(spec: &ModelSpec, quantized: &ModelSpec, x: &Array) -> f32 {
    let (a, b) = (to_blob(spec).unwrap(), to_blob(quantized).unwrap());
    error_per_output(&a, &b, x)
        .unwrap()
        .iter()
        .fold(0.0f32, |m, e| m.max(e.max_abs))
}

/// One wild value among 3,840 calibration inputs: min/max gives the input format its range (and most
/// of its resolution away); the 99.9th percentile lets it saturate, and on held-out windows without
/// such a value the integer model is closer to f32.
#[test]
fn percentile_calibration_beats_minmax_on_data_with_an_outlier() {
    let model = gru_model();
    let mut calibration = windows(11, 40, 32, 1.0);
    if let Data::Float(v) = &mut calibration.data {
        v[1000] = 200.0;
    }
    let held_out = windows(12, 16, 32, 1.0);
    let error = |ranges| {
        let options = Options {
            ranges,
            ..Options::default()
        };
        let q = quantize_with_options(&model, Mode::I8x16, Some(&calibration), &options).unwrap();
        (
            worst_error(&model, &q, &held_out),
            q.fixed.as_ref().unwrap().input_frac,
        )
    };
    let (minmax, minmax_frac) = error(RangeRule::MinMax);
    let (percentile, percentile_frac) = error(RangeRule::Percentile(99.9));
    println!(
        "outlier: minmax {minmax:.3e} (input Q.{minmax_frac}), percentile:99.9 {percentile:.3e} \
         (input Q.{percentile_frac})"
    );
    assert!(percentile_frac > minmax_frac + 4);
    assert!(
        percentile < 0.5 * minmax,
        "percentile {percentile:.3e}, minmax {minmax:.3e}"
    );
}

#[test]
fn range_rules_parse_and_say_what_they_expect() {
    assert_eq!("minmax".parse(), Ok(RangeRule::MinMax));
    assert_eq!("percentile:99.99".parse(), Ok(RangeRule::Percentile(99.99)));
    for bad in [
        "percentile:0",
        "percentile:100.5",
        "percentile:x",
        "max",
        "",
    ] {
        let err = bad.parse::<RangeRule>().unwrap_err();
        assert!(err.contains("'minmax' or 'percentile:P'"), "{bad}: {err}");
    }
}

/// Inputs far from zero (means between 3 and 5): per-row int8 rounding leaves every output with a
/// constant offset `ΔW_r · mean(x)`. Bias correction moves it into the bias, so on held-out data the
/// mean signed error nearly vanishes and the worst error shrinks. (Rows of 16 weights: on 2-weight rows
/// the scale search alone finds scales that leave next to no offset.)
#[test]
fn bias_correction_removes_the_mean_rounding_error_of_i8w() {
    const FEATURES: usize = 16;
    let model = spec(
        FEATURES as u32,
        vec![Layer::Dense(Dense {
            weight: Tensor::matrix(3, FEATURES, noise(7, 3 * FEATURES, 1.0)).unwrap(),
            bias: None,
            activation: Activation::Linear,
        })],
    );
    let data = |seed| {
        let mut v = noise(seed, 64 * FEATURES, 0.1);
        v.chunks_exact_mut(FEATURES).for_each(|p| {
            p.iter_mut()
                .enumerate()
                .for_each(|(k, x)| *x += 3.0 + 2.0 * k as f32 / FEATURES as f32);
        });
        Array::float(vec![64, 1, FEATURES], v).unwrap()
    };
    let (calibration, held_out) = (data(21), data(22));
    let mean_error = |q: &ModelSpec| -> f64 {
        let run = |s: &ModelSpec| match run_batch(&to_blob(s).unwrap(), &held_out).unwrap().data {
            Data::Float(v) => v,
            Data::Int(_) => unreachable!(),
        };
        let (want, got) = (run(&model), run(q));
        let n = want.len() as f64;
        // The largest per-output mean signed error.
        (0..3)
            .map(|o| {
                want.iter()
                    .zip(&got)
                    .skip(o)
                    .step_by(3)
                    .map(|(a, b)| f64::from(b - a))
                    .sum::<f64>()
                    / (n / 3.0)
            })
            .fold(0.0f64, |m, e| m.max(e.abs()))
    };
    // int8 weights: at 16 columns the default would store them as int16, whose offsets are ~100× smaller.
    let quantize = |bias_correction| {
        let options = Options {
            bias_correction,
            int16_dense_columns: 0,
            ..Options::default()
        };
        quantize_with_options(&model, Mode::I8w, Some(&calibration), &options).unwrap()
    };
    let (plain, corrected) = (quantize(false), quantize(true));
    let (plain_mean, corrected_mean) = (mean_error(&plain), mean_error(&corrected));
    let (plain_max, corrected_max) = (
        worst_error(&model, &plain, &held_out),
        worst_error(&model, &corrected, &held_out),
    );
    println!(
        "bias correction: mean error {plain_mean:.3e} → {corrected_mean:.3e}, worst {plain_max:.3e} → \
         {corrected_max:.3e}"
    );
    // Measured: 1.7e-4 → 4.8e-5 (the data-weighted rounding already keeps most of the offset out;
    // with plain rounding the offset was above 1e-3).
    assert!(plain_mean > 1e-4, "the rounding left no offset to correct");
    assert!(corrected_mean < 0.4 * plain_mean);
    assert!(corrected_max < plain_max);
    let Layer::Dense(d) = &corrected.layers[0] else {
        unreachable!()
    };
    assert!(d.bias.is_some(), "a bias is created where there was none");
}

#[test]
fn cli_takes_a_calibration_rule_and_names_a_bad_one() {
    let bin = env!("CARGO_BIN_EXE_tinyrnn");
    let dir = std::env::temp_dir().join(format!("tinyrnn-calibration-rule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f32_blob, int_blob, x) = (
        dir.join("f32.trnn"),
        dir.join("i8x16.trnn"),
        dir.join("x.npy"),
    );
    std::fs::write(&f32_blob, to_blob(&gru_model()).unwrap()).unwrap();
    let data = windows(31, 20, 16, 1.0);
    let Data::Float(values) = &data.data else {
        unreachable!()
    };
    tinyrnn_converter::npy::write_f32(&x, &data.shape, values).unwrap();
    let run = |rule: &str| {
        Command::new(bin)
            .args(["quantize", f32_blob.to_str().unwrap(), "--mode", "i8x16"])
            .args(["--calibrate", x.to_str().unwrap(), "--calibration", rule])
            .args(["-o", int_blob.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = run("percentile:99.9");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = run("percentile:101");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("'minmax' or 'percentile:P'"), "{err}");
}

/// The model's worst error relative to each output's range on `x`, quantized to `mode` with matrices
/// of at most `columns` columns in int16, calibrated on `x`.
fn relative_error_at(model: &ModelSpec, mode: Mode, x: &Array, columns: usize) -> (f32, Vec<u8>) {
    let options = Options {
        int16_input_columns: columns,
        int16_recurrent_columns: columns,
        int16_dense_columns: columns,
        ..Options::default()
    };
    let q = to_blob(&quantize_with_options(model, mode, Some(x), &options).unwrap()).unwrap();
    let error = error_per_output(&to_blob(model).unwrap(), &q, x)
        .unwrap()
        .iter()
        .fold(0.0f32, |m, e| m.max(e.relative()));
    (error, q)
}

/// The fitted width is the first of 0 and the model's matrix widths (here 3: the kernel; 6: the
/// recurrent kernel and the Dense head) whose error on the calibration windows is within the target
/// over `FIT_MARGIN`, and the model quantized with `Options::fit` is the one quantized at that width.
#[test]
fn the_fitted_int16_width_is_the_narrowest_within_the_target() {
    let model = gru_model();
    let x = windows(41, 16, 12, 1.0);
    for mode in [Mode::I8w, Mode::I8x16] {
        let measured: Vec<(usize, f32, Vec<u8>)> = [0, 3, 6]
            .into_iter()
            .map(|c| {
                let (e, blob) = relative_error_at(&model, mode, &x, c);
                (c, e, blob)
            })
            .collect();
        println!(
            "{}: error by int16 width {:?}",
            mode.name(),
            measured
                .iter()
                .map(|(c, e, _)| (*c, *e))
                .collect::<Vec<_>>()
        );
        assert!(
            measured[2].1 < measured[0].1,
            "int16 matrices should be closer than int8 ones"
        );
        for (columns, error, blob) in &measured {
            let target = error * FIT_MARGIN;
            let fit = fit_int16_columns(&model, mode, &x, &Options::default(), target).unwrap();
            // The first width whose error is within this one's.
            let first = measured.iter().find(|m| m.1 <= *error).unwrap();
            assert_eq!(
                fit.int16_columns, first.0,
                "target {error:e} (width {columns})"
            );
            assert_eq!(fit.error, first.1);
            assert!(fit.met);
            if first.0 == *columns {
                let fitted = Options {
                    fit: Some(ErrorTarget::Relative(target)),
                    ..Options::default()
                };
                let q = quantize_with_options(&model, mode, Some(&x), &fitted).unwrap();
                assert_eq!(&to_blob(&q).unwrap(), blob);
            }
        }
        // Out of reach: the closest width, said to miss.
        let fit = fit_int16_columns(&model, mode, &x, &Options::default(), 1e-12).unwrap();
        let closest = measured.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!(!fit.met);
        assert_eq!((fit.int16_columns, fit.error), (closest.0, closest.1));
    }
}

#[test]
fn cli_fits_the_int16_width_and_refuses_conflicting_width_flags() {
    let bin = env!("CARGO_BIN_EXE_tinyrnn");
    let dir = std::env::temp_dir().join(format!("tinyrnn-max-error-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f32_blob, out, x) = (dir.join("f32.trnn"), dir.join("q.trnn"), dir.join("x.npy"));
    std::fs::write(&f32_blob, to_blob(&gru_model()).unwrap()).unwrap();
    let data = windows(43, 20, 16, 1.0);
    let Data::Float(values) = &data.data else {
        unreachable!()
    };
    tinyrnn_converter::npy::write_f32(&x, &data.shape, values).unwrap();
    let run = |extra: &[&str]| {
        Command::new(bin)
            .args(["quantize", f32_blob.to_str().unwrap(), "--mode", "i8w"])
            .args([
                "--calibrate",
                x.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let fitted = run(&[]);
    assert!(fitted.status.success(), "{}", text(&fitted));
    assert!(text(&fitted).contains("int16 width:"), "{}", text(&fitted));
    let pinned = run(&["--int16-columns", "0"]);
    assert!(pinned.status.success(), "{}", text(&pinned));
    assert!(!text(&pinned).contains("int16 width:"), "{}", text(&pinned));
    let both = run(&["--int16-columns", "0", "--max-error", "1e-3"]);
    assert!(!both.status.success());
    assert!(
        text(&both).contains("cannot be used with"),
        "{}",
        text(&both)
    );
    let bad = run(&["--max-error", "2"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("expected a fraction"), "{}", text(&bad));
}

/// An LSTM(4) reading 3 features, with seeded weights, in `direction`.
fn lstm_layer(direction: Direction) -> Layer<Tensor> {
    let matrix =
        |seed, rows, cols| Tensor::matrix(rows, cols, noise(seed, rows * cols, 0.8)).unwrap();
    let weights = |seed: u64| CellWeights {
        kernel: matrix(seed, 16, 3),
        recurrent: matrix(seed + 1, 16, 4),
        bias: Some(Tensor::vector(noise(seed + 2, 16, 0.3))),
        recurrent_bias: None,
        peephole: None,
        initial_h: None,
        initial_c: None,
    };
    Layer::Recurrent(Recurrent {
        cell: Cell::Lstm {
            input_forget: false,
        },
        hidden: 4,
        activation: Activation::Tanh,
        gate_activation: Activation::Sigmoid,
        clip: None,
        direction,
        return_sequences: true,
        forward: weights(10),
        backward: matches!(direction, Direction::Bidirectional(_)).then(|| weights(20)),
    })
}

/// The largest `|h|` and `|c|` of a one-layer LSTM model over `x`, from its windowed runs: the forward
/// direction's state after each prefix of a window and the backward direction's after each suffix are
/// exactly the states the whole window's pass holds at each step.
fn state_peaks_from_windows(
    model: &ModelSpec,
    x: &Array,
    prefixes: bool,
    suffixes: bool,
) -> (f32, f32) {
    let blob = tinyrnn_converter::run::AlignedBlob::new(&to_blob(model).unwrap());
    let engine = blob.open().unwrap();
    let Layer::Recurrent(r) = &model.layers[0] else {
        unreachable!()
    };
    let hidden = r.hidden as usize;
    let Data::Float(values) = &x.data else {
        unreachable!()
    };
    let (steps, width) = (x.shape[1], x.shape[2]);
    let mut largest = [0.0f32; 2];
    for window in values.chunks_exact(steps * width) {
        let mut spans = Vec::new();
        for t in 1..=steps {
            if prefixes {
                spans.push(0..t);
            }
            if suffixes {
                spans.push(steps - t..steps);
            }
        }
        for span in spans {
            let n = span.len();
            let mut memory = vec![0.0f32; engine.window_memory(n).unwrap().total()];
            let mut runtime = tinyrnn::Runtime::new(&engine, &mut memory).unwrap();
            let mut out = vec![0.0f32; engine.output_len(n).unwrap()];
            runtime
                .run_window(&window[span.start * width..span.end * width], &mut out)
                .unwrap();
            // Each direction's state is `[h, c]`.
            for (k, v) in runtime.state().iter().enumerate() {
                let peak = &mut largest[(k / hidden) % 2];
                *peak = peak.max(v.abs());
            }
        }
    }
    (largest[0], largest[1])
}

/// The cell state of a backward LSTM peaks where the window's pass holds it in between, not at the
/// end of any prefix: the calibrated ranges of `h` and `c` are every step's in both directions. The
/// inputs grow towards the end of each window, so the backward direction reads its largest inputs
/// first.
#[test]
fn the_state_ranges_cover_every_step_of_both_directions() {
    let batch = 6;
    let steps = 12;
    let mut values = noise(40, batch * steps * 3, 1.0);
    for (k, v) in values.iter_mut().enumerate() {
        let t = (k / 3) % steps;
        *v *= 0.2 + 2.5 * (t as f32 / steps as f32).powi(3);
    }
    let x = Array::float(vec![batch, steps, 3], values).unwrap();
    for direction in [
        Direction::Bidirectional(tinyrnn::format::Merge::Concat),
        Direction::Reverse,
    ] {
        let model = spec(3, vec![lstm_layer(direction)]);
        let measured = tinyrnn_converter::calibrate::ranges(&model, &x)
            .unwrap()
            .layers[0];
        let (h, exact) = state_peaks_from_windows(&model, &x, true, true);
        let (_, prefixes_only) = state_peaks_from_windows(&model, &x, true, false);
        assert!(
            (measured.cell - exact).abs() <= 1e-6 * exact,
            "{direction:?}: calibrated cell range {}, the windows' states reach {exact}",
            measured.cell
        );
        assert!(
            (measured.state - h).abs() <= 1e-6 * h,
            "{direction:?}: calibrated state range {}, the windows' h reach {h}",
            measured.state
        );
        assert!(
            exact > 1.05 * prefixes_only,
            "{direction:?}: the data should put the peak inside the window \
             ({exact} against {prefixes_only} at the ends of prefixes)"
        );
    }
}
