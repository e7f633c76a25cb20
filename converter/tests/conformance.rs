//! Conformance against the real frameworks: every fixture in `tests/fixtures/{keras,onnx,torch}/manifest.json`
//! is imported and run both through the library (import → blob → engine) and through the `tinyrnn` CLI
//! (`import` then `run`), and must match the framework's output within `1e-5 + 1e-4·|reference|`.
//! Negative cases must be refused with the error the manifest names.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tinyrnn_converter::compare::compare;
use tinyrnn_converter::npy;
use tinyrnn_converter::quantize::Options;
use tinyrnn_converter::{import, run, write};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// One model file of a manifest case.
struct Case {
    name: String,
    model: PathBuf,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    params: Option<usize>,
    error_contains: Option<String>,
    /// The `--arch` description a PyTorch/NumPy case needs.
    arch: Option<String>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for suite in ["keras", "onnx", "torch"] {
        let dir = fixtures().join(suite);
        let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
            continue;
        };
        let entries: Vec<Value> = serde_json::from_str(&text).expect("manifest parses");
        for entry in entries {
            let name = entry["name"].as_str().expect("name").to_string();
            let path = |key: &str| entry.get(key).and_then(Value::as_str).map(|f| dir.join(f));
            for key in ["keras", "h5", "onnx", "safetensors", "npz"] {
                if let Some(model) = path(key) {
                    cases.push(Case {
                        name: format!("{suite}/{name} ({key})"),
                        model,
                        input: path("input"),
                        output: path("output"),
                        params: entry
                            .get("params")
                            .and_then(Value::as_u64)
                            .map(|p| p as usize),
                        error_contains: entry
                            .get("error_contains")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        arch: entry
                            .get("arch")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    });
                }
            }
        }
    }
    cases
}

/// Why an output is out of tolerance, if it is.
fn mismatch(actual: &npy::Array, expected: &npy::Array) -> Option<String> {
    match compare(actual, expected) {
        Err(err) => Some(format!("{err:#}")),
        Ok(c) => c.first_mismatch.map(|(i, a, e)| {
            format!(
                "element {i}: {a} vs reference {e} (difference {:.3e})",
                (a - e).abs()
            )
        }),
    }
}

/// Streams batch element 0 one timestep at a time and checks the last step's output against a windowed
/// run of the same element, bit for bit. Returns whether the model streams at all.
fn streaming_matches_window(blob: &[u8], x: &npy::Array) -> Result<bool, String> {
    use tinyrnn::format::{InputKind, InputLayout};
    let aligned = run::AlignedBlob::new(blob);
    let model = aligned.open().map_err(|e| format!("{e:#}"))?;
    if !model.is_streamable() || model.io().input != InputLayout::BatchFirst {
        return Ok(false);
    }
    let steps = x.shape[1];
    let width = model.input_width();
    let element: Vec<f32> = match &x.data {
        npy::Data::Float(v) => v[..steps * width].to_vec(),
        npy::Data::Int(v) => v[..steps].iter().map(|&t| t as f32).collect(),
    };
    let tokens = model.input().kind == InputKind::Tokens;
    let err = |e: tinyrnn::Error| e.to_string();
    let mut memory = vec![0.0; model.window_memory(steps).map_err(err)?.total()];
    let mut runtime = tinyrnn::Runtime::new(&model, &mut memory).map_err(err)?;
    let mut windowed = vec![0.0; model.output_len(steps).map_err(err)?];
    if tokens {
        let ids: Vec<u32> = element.iter().map(|&t| t as u32).collect();
        runtime
            .run_window_tokens(&ids, &mut windowed)
            .map_err(err)?;
    } else {
        runtime.run_window(&element, &mut windowed).map_err(err)?;
    }
    runtime.reset();
    let mut streamed = vec![0.0; model.step_output_len()];
    for t in 0..steps {
        if tokens {
            runtime
                .step_token(element[t] as u32, &mut streamed)
                .map_err(err)?;
        } else {
            runtime
                .step(&element[t * width..(t + 1) * width], &mut streamed)
                .map_err(err)?;
        }
    }
    let tail = &windowed[windowed.len() - streamed.len()..];
    if streamed
        .iter()
        .zip(tail)
        .all(|(a, b)| a.to_bits() == b.to_bits())
    {
        Ok(true)
    } else {
        Err(format!("streamed {streamed:?}, windowed {tail:?}"))
    }
}

#[test]
fn every_fixture_matches_its_framework_through_the_library() {
    let cases = cases();
    assert!(
        !cases.is_empty(),
        "no fixtures found under {}",
        fixtures().display()
    );
    let mut failures = Vec::new();
    let mut matched = 0;
    let mut streamed = 0;
    let mut worst = 0.0f32;
    for case in &cases {
        let imported = import::import_with_arch(&case.model, case.arch.as_deref());
        if let Some(wanted) = &case.error_contains {
            match imported {
                Ok(_) => failures.push(format!(
                    "{}: imported, but should fail with '{wanted}'",
                    case.name
                )),
                Err(err) => {
                    let text = format!("{err:#}");
                    if !text.contains(wanted.as_str()) {
                        failures.push(format!("{}: error '{text}' lacks '{wanted}'", case.name));
                    }
                }
            }
            continue;
        }
        let spec = match imported {
            Ok(spec) => spec,
            Err(err) => {
                failures.push(format!("{}: import failed: {err:#}", case.name));
                continue;
            }
        };
        if let Some(params) = case.params {
            if spec.parameter_count() != params {
                failures.push(format!(
                    "{}: {} parameters, Keras counts {params}",
                    case.name,
                    spec.parameter_count()
                ));
            }
        }
        let (Some(input), Some(output)) = (&case.input, &case.output) else {
            failures.push(format!("{}: manifest lacks input or output", case.name));
            continue;
        };
        let x = npy::read(input).expect("input fixture");
        let expected = npy::read(output).expect("output fixture");
        let blob = write::to_blob(&spec).expect("blob");
        match streaming_matches_window(&blob, &x) {
            Ok(true) => streamed += 1,
            Ok(false) => {}
            Err(why) => failures.push(format!(
                "{}: streaming differs from the window: {why}",
                case.name
            )),
        }
        match run::run_batch(&blob, &x) {
            Ok(y) => match mismatch(&y, &expected) {
                Some(why) => failures.push(format!("{}: {why}", case.name)),
                None => {
                    matched += 1;
                    worst = worst.max(compare(&y, &expected).map_or(0.0, |c| c.max_abs_diff));
                }
            },
            Err(err) => failures.push(format!("{}: run failed: {err:#}", case.name)),
        }
    }
    println!(
        "{matched} cases matched; largest absolute difference {worst:.3e}; {streamed} streamed bit for bit"
    );
    assert!(streamed > 50, "only {streamed} fixtures were streamed");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fixture_matches_its_framework_through_the_cli() {
    let bin = env!("CARGO_BIN_EXE_tinyrnn");
    let dir = std::env::temp_dir().join(format!("tinyrnn-cli-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (index, case) in cases().iter().enumerate() {
        let blob = dir.join(format!("{index}.trnn"));
        let mut command = Command::new(bin);
        command.arg("import").arg(&case.model).arg("-o").arg(&blob);
        if let Some(arch) = &case.arch {
            command.arg("--arch").arg(arch);
        }
        let import = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&import.stderr);
        if let Some(wanted) = &case.error_contains {
            if import.status.success() || !stderr.contains(wanted.as_str()) {
                failures.push(format!(
                    "{}: expected failure with '{wanted}', got: {stderr}",
                    case.name
                ));
            }
            continue;
        }
        if !import.status.success() {
            failures.push(format!("{}: import failed: {stderr}", case.name));
            continue;
        }
        let (Some(input), Some(output)) = (&case.input, &case.output) else {
            continue;
        };
        let y_path = dir.join(format!("{index}.npy"));
        let run = Command::new(bin)
            .arg("run")
            .arg(&blob)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&y_path)
            .output()
            .unwrap();
        if !run.status.success() {
            failures.push(format!(
                "{}: run failed: {}",
                case.name,
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        let y = npy::read(&y_path).unwrap();
        let expected = npy::read(output).unwrap();
        if let Some(why) = mismatch(&y, &expected) {
            failures.push(format!("{}: {why}", case.name));
        }
        let inspect = Command::new(bin)
            .arg("inspect")
            .arg(&blob)
            .output()
            .unwrap();
        if !inspect.status.success() {
            failures.push(format!("{}: inspect failed", case.name));
        }
        if let Some(params) = case.params {
            let text = String::from_utf8_lossy(&inspect.stdout);
            if !text.contains(&format!("total parameters   {params}\n")) {
                failures.push(format!(
                    "{}: inspect does not report {params} parameters:\n{text}",
                    case.name
                ));
            }
        }
        ran += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran > 0 || cases().is_empty(), "no case ran");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What a quantized mode measured over the fixtures.
struct Measured {
    /// Fixtures measured.
    count: usize,
    /// Median over fixtures of max |err| / output range.
    median: f32,
    /// The worst fixture's max |err| / output range, and its name.
    worst: (f32, String),
    /// Fixtures the mode refuses (with the converter's reason), e.g. softmax in i8x16.
    refused: Vec<String>,
    failures: Vec<String>,
}

impl Measured {
    /// Asserts that enough fixtures were measured, none refused, none beyond the bound given to
    /// [`measure`], and the median within `median_bound`.
    fn check(&self, median_bound: f32) {
        assert!(self.count > 50, "only {} fixtures measured", self.count);
        assert!(self.refused.is_empty(), "{:?}", self.refused);
        assert!(
            self.median <= median_bound,
            "median error {:.3e} of the output range",
            self.median
        );
        assert!(
            self.failures.is_empty(),
            "{} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// Quantizes every fixture to `mode`, checks that it streams bit for bit like its windows, and measures
/// its largest error against the f32 model as a fraction of the f32 output range. Fixtures whose error
/// exceeds `bound` are failures. A fixture has one input batch; calibration sees it with every window's
/// timesteps reversed, so the error is measured on sequences the calibration did not see (with the same
/// value distribution).
fn measure(mode: tinyrnn_converter::quantize::Mode, bound: f32) -> Measured {
    measure_with(mode, &Options::default(), mode.name(), bound)
}

/// [`measure`] with the quantizer's `options`, printed as `name`.
fn measure_with(
    mode: tinyrnn_converter::quantize::Mode,
    options: &Options,
    name: &str,
    bound: f32,
) -> Measured {
    use tinyrnn_converter::quantize::{error_per_output, quantize_with_options};
    let mut m = Measured {
        count: 0,
        median: 0.0,
        worst: (0.0, String::new()),
        refused: Vec::new(),
        failures: Vec::new(),
    };
    let mut relatives = Vec::new();
    for case in cases() {
        if case.error_contains.is_some() || case.model.extension().is_some_and(|e| e == "h5") {
            continue;
        }
        let (Ok(spec), Some(input)) = (
            import::import_with_arch(&case.model, case.arch.as_deref()),
            &case.input,
        ) else {
            continue;
        };
        let x = npy::read(input).expect("input fixture");
        let f32_blob = write::to_blob(&spec).expect("blob");
        let calibration = reversed_in_time(&x, spec.io.input);
        let quantized = match quantize_with_options(&spec, mode, Some(&calibration), options) {
            Ok(q) => q,
            Err(err) => {
                m.refused.push(format!("{}: {err:#}", case.name));
                continue;
            }
        };
        let blob = write::to_blob(&quantized).expect("blob");
        if let Err(why) = streaming_matches_window(&blob, &x) {
            m.failures
                .push(format!("{}: {name} streaming differs: {why}", case.name));
        }
        let errors = match error_per_output(&f32_blob, &blob, &x) {
            Ok(e) => e,
            Err(err) => {
                m.failures.push(format!("{}: {err:#}", case.name));
                continue;
            }
        };
        // The output range: over every output feature of every window.
        let y = run::run_batch(&f32_blob, &x).expect("f32 run");
        let npy::Data::Float(values) = &y.data else {
            unreachable!()
        };
        let range = values.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
            - values.iter().fold(f32::INFINITY, |m, v| m.min(*v));
        let max_abs = errors.iter().fold(0.0f32, |m, e| m.max(e.max_abs));
        if range < DEGENERATE_RANGE {
            // A near-constant output (one window, one value) has no meaningful range to divide by.
            println!(
                "{name:<6} {:<60} max |err| {max_abs:.3e}  range {range:.1e} (degenerate: absolute only)",
                case.name
            );
            if max_abs.is_nan() || max_abs > DEGENERATE_ABS_BOUND {
                m.failures.push(format!(
                    "{}: {name} error {max_abs:.3e} on a near-constant output",
                    case.name
                ));
            }
            continue;
        }
        let relative = max_abs / range;
        println!(
            "{name:<6} {:<60} max |err| {max_abs:.3e}  range {range:.4}  max/range {relative:.3e}",
            case.name
        );
        relatives.push(relative);
        if relative > m.worst.0 {
            m.worst = (relative, case.name.clone());
        }
        if relative.is_nan() || relative > bound {
            m.failures.push(format!(
                "{}: {name} error {max_abs:.3e} is {relative:.3e} of the output range {range:.4}",
                case.name
            ));
        }
        m.count += 1;
    }
    relatives.sort_by(f32::total_cmp);
    m.median = relatives.get(relatives.len() / 2).copied().unwrap_or(0.0);
    println!(
        "{name}: {} fixtures; median error {:.3e} of the output range, worst {:.3e} ({}); {} refused",
        m.count,
        m.median,
        m.worst.0,
        m.worst.1,
        m.refused.len()
    );
    for r in &m.refused {
        println!("  refused: {r}");
    }
    m
}

/// `x` with the time axis reversed (axis 1 for batch-first inputs, 0 for time-first).
fn reversed_in_time(x: &npy::Array, layout: tinyrnn::format::InputLayout) -> npy::Array {
    let axis = match layout {
        tinyrnn::format::InputLayout::BatchFirst => 1,
        tinyrnn::format::InputLayout::TimeFirst => 0,
    };
    let outer: usize = x.shape[..axis].iter().product();
    let steps = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let index = |o: usize, t: usize, i: usize| (o * steps + (steps - 1 - t)) * inner + i;
    let order: Vec<usize> = (0..outer)
        .flat_map(|o| (0..steps).flat_map(move |t| (0..inner).map(move |i| index(o, t, i))))
        .collect();
    let data = match &x.data {
        npy::Data::Float(v) => npy::Data::Float(order.iter().map(|&k| v[k]).collect()),
        npy::Data::Int(v) => npy::Data::Int(order.iter().map(|&k| v[k]).collect()),
    };
    npy::Array {
        shape: x.shape.clone(),
        data,
    }
}

/// `i8w` on every fixture, as shipped: the quantized model stays within issue 4's 5e-4 of the output
/// range on the fixture's inputs, and streams bit for bit like its windows. These fixtures' matrices
/// have at most 16 columns, so the default stores them all as int16; the int8 rounding is measured by
/// the next test. The measured errors are recorded in BENCHMARKS.md.
#[test]
fn i8w_stays_close_to_f32_on_every_fixture() {
    let m = measure(tinyrnn_converter::quantize::Mode::I8w, I8W_BOUND);
    m.check(I8W_MEDIAN_BOUND);
}

/// `i8w` with every weight matrix int8 (`--int16-columns 0`; embedding tables and skip maps stay
/// int16): guards the int8 rounding (scale search, calibration-aware rounding, bias correction).
#[test]
fn i8w_with_int8_matrices_stays_close_to_f32_on_every_fixture() {
    let options = Options {
        int16_input_columns: 0,
        int16_recurrent_columns: 0,
        int16_dense_columns: 0,
        ..Options::default()
    };
    let m = measure_with(
        tinyrnn_converter::quantize::Mode::I8w,
        &options,
        "i8w, int8 matrices",
        I8W_INT8_BOUND,
    );
    m.check(I8W_INT8_MEDIAN_BOUND);
}

/// `i8x16` on every fixture: the integer-only model stays close to the f32 one and streams bit for bit
/// like its windows; no fixture is refused. The measured errors are in BENCHMARKS.md.
#[test]
fn i8x16_stays_close_to_f32_on_every_fixture() {
    let m = measure(tinyrnn_converter::quantize::Mode::I8x16, I8X16_BOUND);
    m.check(I8X16_MEDIAN_BOUND);
}

/// The largest `i8x16` error allowed on any fixture, as a fraction of the f32 output range over the
/// fixture's windows. Measured worst: 4.4e-3 (`onnx/test_lstm_bidirectional_Y_h`, output range 0.0048:
/// an absolute error of 2.1e-5, under one Q·.15 step), with int16 embedding tables and int16 matrices
/// (softmax Dense included) of at most 16 columns; it was 2.1e-2 with int8 tables and 8 columns. Issue
/// 4's target of 2e-3 is met by the median and by 132 of 136 fixtures (BENCHMARKS.md has the breakdown).
const I8X16_BOUND: f32 = 6e-3;
/// The largest median `i8x16` error over the fixtures, as a fraction of the output range. Measured:
/// 1.9e-4 (target 2e-3).
const I8X16_MEDIAN_BOUND: f32 = 3e-4;
/// Outputs whose range over the fixture's windows is below this are near-constant (a single window's
/// final state); their error is checked in absolute terms instead.
const DEGENERATE_RANGE: f32 = 1e-3;
/// The largest absolute error on a near-constant output: a few steps of Q·.15 (3.05e-5 each).
const DEGENERATE_ABS_BOUND: f32 = 2e-4;

/// The largest `i8w` error allowed on any fixture, as a fraction of the f32 output range over the
/// fixture's windows: issue 4's target. Measured worst: 2.6e-4 (`onnx/rnn_clip_Y`), every matrix of
/// these fixtures being int16.
const I8W_BOUND: f32 = 5e-4;
/// The largest median `i8w` error over the fixtures, as a fraction of the output range. Measured:
/// 7.8e-6.
const I8W_MEDIAN_BOUND: f32 = 2e-5;
/// [`I8W_BOUND`] with every matrix int8. Measured worst: 5.4e-3 (`onnx/bidir_mul_split`) with each
/// row's scale searched, calibration-aware rounding and bias correction (1.85e-2 with the scale fixed
/// at `max|row| / 127`, 3.6e-2 with plain rounding); per-row int8 weights do not reach issue 4's 5e-4
/// on these random-weight fixtures (see BENCHMARKS.md). This guards regressions.
const I8W_INT8_BOUND: f32 = 7e-3;
/// [`I8W_MEDIAN_BOUND`] with every matrix int8. Measured: 7.3e-4 (2.1e-3 with the scale fixed at
/// `max|row| / 127`).
const I8W_INT8_MEDIAN_BOUND: f32 = 9e-4;

#[test]
fn every_fixture_carries_a_self_test_that_passes_on_the_host() {
    let mut failures = Vec::new();
    let mut tested = 0;
    for case in cases().iter().filter(|c| c.error_contains.is_none()) {
        let outcome = import::import_with_arch(&case.model, case.arch.as_deref())
            .and_then(|spec| write::to_blob_with_self_test(&spec))
            .map_err(|e| format!("{e:#}"))
            .and_then(|blob| {
                let aligned = run::AlignedBlob::new(&blob);
                let model = aligned.open().map_err(|e| format!("{e:#}"))?;
                let mut memory = vec![0.0; model.self_test_memory()];
                model.self_test(&mut memory).map_err(|e| e.to_string())
            });
        match outcome {
            Ok(tinyrnn::SelfTestOutcome::Passed { .. }) => tested += 1,
            // Only a token model that cannot stream goes without one.
            Ok(tinyrnn::SelfTestOutcome::Absent) => {}
            other => failures.push(format!("{}: {other:?}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(tested > 100, "only {tested} fixtures carried a self-test");
}

/// Where each quantized fixture's error comes from (the breakdown in BENCHMARKS.md). Per fixture:
/// - `i8w`: the error with every matrix int8, and with one kind of matrix put back in f32 at a time
///   (input kernels, recurrent kernels, Dense weights, embedding tables): what each kind contributes.
/// - `i8x16`: the error of the f32 model holding the integer model's own rounded parameters against
///   the f32 model (parameter rounding), of the integer model against that twin (arithmetic: the
///   activation and state formats, table sigmoid and tanh, requantization rounding, saturation), of the
///   integer model calibrated on the measured windows themselves (what calibration on other windows
///   costs), and which layer formats the measured windows overflow.
///
/// A measurement, not a check: `cargo test -p tinyrnn-converter --test conformance breakdown --
/// --ignored --nocapture`.
#[test]
#[ignore = "measurement for BENCHMARKS.md; run with --ignored"]
fn quantization_error_breakdown() {
    use tinyrnn::format::Layer;
    use tinyrnn_converter::calibrate;
    use tinyrnn_converter::quantize::{
        error_per_output, quantize_with, quantize_with_options, Mode, Options, RangeRule,
    };
    use tinyrnn_converter::spec::{ModelSpec, Tensor};

    let relative = |reference: &[u8], other: &[u8], x: &npy::Array, range: f32| -> f32 {
        let errors = error_per_output(reference, other, x).expect("error");
        errors.iter().fold(0.0f32, |m, e| m.max(e.max_abs)) / range
    };
    let plain = |t: Tensor| -> Result<Tensor, ()> {
        Ok(Tensor {
            quant: None,
            integer: None,
            ..t
        })
    };
    let twin = |q: &ModelSpec| -> ModelSpec {
        ModelSpec {
            layers: q
                .layers
                .iter()
                .map(|l| l.clone().try_map(plain).expect("plain"))
                .collect(),
            fixed: None,
            ..q.clone()
        }
    };
    // The i8w model with one kind of matrix restored from the f32 model.
    use common::{with_kind, MatrixKind as Kind};
    let restore = |q: &ModelSpec, f: &ModelSpec, kind: Kind| with_kind(q, f, kind);
    struct Row {
        name: String,
        range: f32,
        i8w: f32,
        uncorrected: f32,
        restored: Vec<(Kind, f32)>,
        percentile: f32,
        i8x16: f32,
        rounding: f32,
        arithmetic: f32,
        self_calibrated: f32,
        overflow: Vec<String>,
    }
    let mut rows = Vec::new();
    for case in cases() {
        if case.error_contains.is_some() || case.model.extension().is_some_and(|e| e == "h5") {
            continue;
        }
        let (Ok(spec), Some(input)) = (
            import::import_with_arch(&case.model, case.arch.as_deref()),
            &case.input,
        ) else {
            continue;
        };
        let x = npy::read(input).expect("input fixture");
        let f32_blob = write::to_blob(&spec).expect("blob");
        let y = run::run_batch(&f32_blob, &x).expect("f32 run");
        let npy::Data::Float(values) = &y.data else {
            unreachable!()
        };
        let range = values.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
            - values.iter().fold(f32::INFINITY, |m, v| m.min(*v));
        if range < DEGENERATE_RANGE {
            continue;
        }
        let calibration = reversed_in_time(&x, spec.io.input);
        let blob = |s: &ModelSpec| write::to_blob(s).expect("blob");
        // Every matrix int8, so that putting one kind back in f32 shows what int8 costs there.
        let int8 = Options {
            int16_input_columns: 0,
            int16_recurrent_columns: 0,
            int16_dense_columns: 0,
            ..Options::default()
        };
        let w8 = quantize_with_options(&spec, Mode::I8w, Some(&calibration), &int8).expect("i8w");
        let i8w = relative(&f32_blob, &blob(&w8), &x, range);
        let no_correction = Options {
            bias_correction: false,
            ..int8
        };
        let uncorrected =
            quantize_with_options(&spec, Mode::I8w, Some(&calibration), &no_correction)
                .map(|s| relative(&f32_blob, &blob(&s), &x, range))
                .expect("i8w");
        let percentile = Options {
            ranges: RangeRule::Percentile(99.99),
            ..Options::default()
        };
        let percentile = quantize_with_options(&spec, Mode::I8x16, Some(&calibration), &percentile)
            .map(|s| relative(&f32_blob, &blob(&s), &x, range))
            .unwrap_or(f32::NAN);
        let restored = [
            Kind::InputKernel,
            Kind::RecurrentKernel,
            Kind::Dense,
            Kind::Table,
        ]
        .into_iter()
        .filter(|&k| {
            spec.layers.iter().any(|l| {
                matches!(
                    (l, k),
                    (
                        Layer::Recurrent(_),
                        Kind::InputKernel | Kind::RecurrentKernel
                    ) | (Layer::Dense(_), Kind::Dense)
                        | (Layer::Embedding(_), Kind::Table)
                )
            })
        })
        .map(|k| {
            (
                k,
                relative(&f32_blob, &blob(&restore(&w8, &spec, k)), &x, range),
            )
        })
        .collect();
        let Ok(q16) = quantize_with(&spec, Mode::I8x16, Some(&calibration)) else {
            continue;
        };
        let q16_blob = blob(&q16);
        let twin_blob = blob(&twin(&q16));
        let self_calibrated = quantize_with(&spec, Mode::I8x16, Some(&x))
            .map(|s| relative(&f32_blob, &blob(&s), &x, range))
            .unwrap_or(f32::NAN);
        // Formats the measured windows overflow: their f32 range beyond what the format holds.
        let mut overflow = Vec::new();
        if let (Ok(measured), Some(fixed)) = (calibrate::ranges(&spec, &x), &q16.fixed) {
            let holds = |frac: u8| 32767.0 / 2f32.powi(i32::from(frac));
            if measured.input > holds(fixed.input_frac) {
                overflow.push(format!(
                    "input {:.2}>{:.2}",
                    measured.input,
                    holds(fixed.input_frac)
                ));
            }
            for (k, (m, f)) in measured.layers.iter().zip(&fixed.layers).enumerate() {
                if m.output > holds(f.output_frac) {
                    overflow.push(format!(
                        "L{k} out {:.2}>{:.2}",
                        m.output,
                        holds(f.output_frac)
                    ));
                }
                if m.cell > 0.0 && m.cell > holds(f.cell_frac) {
                    overflow.push(format!("L{k} c {:.2}>{:.2}", m.cell, holds(f.cell_frac)));
                }
            }
        }
        rows.push(Row {
            name: case.name.clone(),
            range,
            i8w,
            uncorrected,
            restored,
            percentile,
            i8x16: relative(&f32_blob, &q16_blob, &x, range),
            rounding: relative(&f32_blob, &twin_blob, &x, range),
            arithmetic: relative(&twin_blob, &q16_blob, &x, range),
            self_calibrated,
            overflow,
        });
    }
    let print = |r: &Row| {
        let restored: Vec<String> = r
            .restored
            .iter()
            .map(|(k, e)| format!("{k:?} f32 {e:.2e}"))
            .collect();
        println!(
            "{:<58} range {:<8.4} i8w {:.2e} (no bias correction {:.2e}) [{}] | i8x16 {:.2e} = rounding {:.2e} + arithmetic {:.2e}; self-calibrated {:.2e}; percentile:99.99 {:.2e}; overflow [{}]",
            r.name,
            r.range,
            r.i8w,
            r.uncorrected,
            restored.join(", "),
            r.i8x16,
            r.rounding,
            r.arithmetic,
            r.self_calibrated,
            r.percentile,
            r.overflow.join(", ")
        );
    };
    rows.sort_by(|a, b| b.i8w.total_cmp(&a.i8w));
    println!("== worst 10 by i8w ==");
    rows.iter().take(10).for_each(print);
    rows.sort_by(|a, b| b.i8x16.total_cmp(&a.i8x16));
    println!("== worst 10 by i8x16 ==");
    rows.iter().take(10).for_each(print);
    let median = |mut v: Vec<f32>| {
        v.sort_by(f32::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "== medians over {}: i8w {:.2e} (no bias correction {:.2e}); i8x16 {:.2e}, rounding {:.2e}, arithmetic {:.2e}, self-calibrated {:.2e}, percentile:99.99 {:.2e}",
        rows.len(),
        median(rows.iter().map(|r| r.i8w).collect()),
        median(rows.iter().map(|r| r.uncorrected).collect()),
        median(rows.iter().map(|r| r.i8x16).collect()),
        median(rows.iter().map(|r| r.rounding).collect()),
        median(rows.iter().map(|r| r.arithmetic).collect()),
        median(rows.iter().map(|r| r.self_calibrated).collect()),
        median(rows.iter().map(|r| r.percentile).collect()),
    );
    for kind in [
        Kind::InputKernel,
        Kind::RecurrentKernel,
        Kind::Dense,
        Kind::Table,
    ] {
        // Over the fixtures that have this kind of matrix.
        let with: Vec<f32> = rows
            .iter()
            .filter_map(|r| r.restored.iter().find(|(k, _)| *k == kind).map(|(_, e)| *e))
            .collect();
        let without: Vec<f32> = rows
            .iter()
            .filter(|r| r.restored.iter().any(|(k, _)| *k == kind))
            .map(|r| r.i8w)
            .collect();
        println!(
            "== i8w with {kind:?} matrices in f32: median {:.2e} over {} fixtures (all int8: {:.2e})",
            median(with.clone()),
            with.len(),
            median(without)
        );
    }
    let better = rows.iter().filter(|r| r.i8w < r.uncorrected).count();
    let worse = rows.iter().filter(|r| r.i8w > r.uncorrected).count();
    println!("== bias correction: {better} fixtures better, {worse} worse");
    let worst = |f: fn(&Row) -> f32| rows.iter().map(f).fold(0.0f32, f32::max);
    println!(
        "== worst: i8w {:.2e} (no bias correction {:.2e}); i8x16 {:.2e}, percentile:99.99 {:.2e}",
        worst(|r| r.i8w),
        worst(|r| r.uncorrected),
        worst(|r| r.i8x16),
        worst(|r| r.percentile),
    );
}
