//! Calibration for the integer-only mode (`i8x16`): reading calibration data (`.npy` or CSV), splitting
//! it into calibration and held-out windows, and measuring the range of every layer's values by running
//! the f32 model over it.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::{Cell, CellWeights, Direction, InputKind, InputLayout, Layer, OutputLayout};
use tinyrnn::Runtime;

use crate::npy::{self, Array, Data};
use crate::quantize::RangeRule;
use crate::run::{self, AlignedBlob};
use crate::spec::{ModelSpec, Tensor};
use crate::write::to_blob;

/// Window length used to cut a CSV into windows when the model does not fix one.
pub const CSV_WINDOW: usize = 32;

/// Fraction of the windows used for calibration; the rest are held out to measure the error.
pub const CALIBRATION_SHARE: f64 = 0.8;

/// Reads calibration data for `spec`: an `.npy` array laid out as `tinyrnn run` reads it, or a CSV
/// with a header row and one numeric column per input feature (one row per timestep), cut into
/// consecutive windows of the model's fixed length (or [`CSV_WINDOW`]).
pub fn load(path: &Path, spec: &ModelSpec) -> Result<Array> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        csv_windows(&text, spec).with_context(|| format!("reading {} as CSV", path.display()))
    } else {
        npy::read(path)
    }
}

/// A CSV (header row, then one row per timestep, every column numeric) as a batch of windows in the
/// model's input layout.
pub fn csv_windows(text: &str, spec: &ModelSpec) -> Result<Array> {
    let width = match spec.input.kind {
        InputKind::Features(n) => n as usize,
        InputKind::Tokens => 1,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("the file is empty")?;
    let columns = header.split(',').count();
    ensure!(
        columns == width,
        "the header has {columns} columns; the model takes {width} input feature{} per timestep \
         (one column each, in input order)",
        if width == 1 { "" } else { "s" }
    );
    let mut values = Vec::new();
    for (row, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        ensure!(
            fields.len() == width,
            "row {} has {} columns, the header {width}",
            row + 2,
            fields.len()
        );
        for (column, field) in fields.iter().enumerate() {
            let v: f32 = field.trim().parse().with_context(|| {
                format!(
                    "row {}, column {} ('{}'): not a number",
                    row + 2,
                    column + 1,
                    field.trim()
                )
            })?;
            values.push(v);
        }
    }
    let rows = values.len() / width;
    let steps = spec
        .input
        .steps
        .map_or(CSV_WINDOW.min(rows), |s| s as usize);
    ensure!(
        steps > 0 && rows >= steps,
        "{rows} data rows are fewer than one window of {steps} timesteps"
    );
    let batch = rows / steps;
    let mut windows = values;
    windows.truncate(batch * steps * width);
    let shape_features = |b, t| match spec.input.kind {
        InputKind::Features(_) => vec![b, t, width],
        InputKind::Tokens => vec![b, t],
    };
    match spec.io.input {
        InputLayout::BatchFirst => Array::float(shape_features(batch, steps), windows),
        InputLayout::TimeFirst => {
            let mut out = vec![0.0; windows.len()];
            for b in 0..batch {
                for t in 0..steps {
                    let from = (b * steps + t) * width;
                    let to = (t * batch + b) * width;
                    out[to..to + width].copy_from_slice(&windows[from..from + width]);
                }
            }
            Array::float(shape_features(steps, batch), out)
        }
    }
}

/// Splits a batch into calibration windows (the first [`CALIBRATION_SHARE`]) and held-out windows (the
/// rest). A batch of one window is used for both, and `held_out_is_separate` says so.
pub struct Split {
    /// Windows to choose the formats from.
    pub calibration: Array,
    /// Windows to measure the error on.
    pub held_out: Array,
    /// Whether the held-out windows are distinct from the calibration windows.
    pub held_out_is_separate: bool,
}

/// Splits `data` (laid out as the model's input) along its batch axis.
pub fn split(data: &Array, layout: InputLayout) -> Result<Split> {
    let axis = match layout {
        InputLayout::BatchFirst => 0,
        InputLayout::TimeFirst => 1,
    };
    let batch = *data.shape.get(axis).with_context(|| {
        format!(
            "calibration data of shape {:?} has no batch axis",
            data.shape
        )
    })?;
    if batch < 2 {
        return Ok(Split {
            calibration: data.clone(),
            held_out: data.clone(),
            held_out_is_separate: false,
        });
    }
    let first = ((batch as f64 * CALIBRATION_SHARE).ceil() as usize).clamp(1, batch - 1);
    Ok(Split {
        calibration: take(data, axis, 0..first)?,
        held_out: take(data, axis, first..batch)?,
        held_out_is_separate: true,
    })
}

/// The slice `range` of `data` along `axis` (0 or 1).
fn take(data: &Array, axis: usize, range: std::ops::Range<usize>) -> Result<Array> {
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let n = data.shape[axis];
    let mut shape = data.shape.clone();
    shape[axis] = range.len();
    let pick = |len: usize| {
        (0..outer).flat_map(move |o| {
            let r = range.clone();
            r.flat_map(move |i| {
                let start = (o * n + i) * inner;
                start..start + inner
            })
            .take_while(move |&at| at < len)
        })
    };
    let data = match &data.data {
        Data::Float(v) => Data::Float(pick(v.len()).map(|i| v[i]).collect()),
        Data::Int(v) => Data::Int(pick(v.len()).map(|i| v[i]).collect()),
    };
    Ok(Array { shape, data })
}

/// The largest magnitudes one layer's values reach on the calibration data.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerRange {
    /// The layer's output (for a recurrent layer, every timestep's, whether or not it returns them).
    pub output: f32,
    /// Recurrent layers: the hidden state `h` at every step, in either direction (a merge of two
    /// directions can be smaller than either, or larger).
    pub state: f32,
    /// LSTM: the cell state `c`, in either direction.
    pub cell: f32,
}

/// The largest magnitudes of the model's input and of every layer's values.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranges {
    /// The input features (0 for token input).
    pub input: f32,
    /// One entry per layer.
    pub layers: Vec<LayerRange>,
}

/// Runs the f32 model `spec` over `data` and records the ranges the integer formats must hold: each
/// layer's output through the model cut after that layer, and each recurrent layer's `h` (and an
/// LSTM's `c`) at every step of each direction.
pub fn ranges(spec: &ModelSpec, data: &Array) -> Result<Ranges> {
    ranges_with(spec, data, RangeRule::MinMax)
}

/// [`ranges`], each magnitude taken by `rule` (the LSTM cell state always by its largest value).
pub fn ranges_with(spec: &ModelSpec, data: &Array, rule: RangeRule) -> Result<Ranges> {
    let max_abs = |values: &[f32]| magnitude(values, rule);
    let input = match (&data.data, spec.input.kind) {
        (Data::Float(v), InputKind::Features(_)) => max_abs(v),
        (_, InputKind::Tokens) => 0.0,
        (Data::Int(_), InputKind::Features(_)) => {
            bail!("calibration data holds integers; this model takes float features")
        }
    };
    ensure!(
        input.is_finite(),
        "calibration data holds a value that is not finite"
    );
    let mut layers = Vec::with_capacity(spec.layers.len());
    // The cut model's output at the layer before, when it was run: what a recurrent layer reads.
    let mut before: Option<Array> = None;
    for (k, layer) in spec.layers.iter().enumerate() {
        let needs_run = match layer {
            Layer::Recurrent(_) | Layer::SubtractLast | Layer::Residual(_) => true,
            Layer::Dense(d) => !matches!(
                d.activation,
                tinyrnn::format::Activation::Sigmoid | tinyrnn::format::Activation::Tanh
            ),
            _ => false,
        };
        let mut range = LayerRange::default();
        if needs_run {
            let prefix = prefix(spec, k);
            let blob = to_blob(&prefix).with_context(|| format!("layer {k}: cutting the model"))?;
            let y = run::run_batch(&blob, data)
                .with_context(|| format!("layer {k}: running the f32 model on calibration data"))?;
            if let Data::Float(v) = &y.data {
                range.output = max_abs(v);
            }
            if let Layer::Recurrent(_) = layer {
                (range.state, range.cell) = state_ranges(spec, k, data, before.take())
                    .with_context(|| format!("layer {k}: measuring the recurrent state"))?;
            }
            before = Some(y);
        } else {
            before = None;
        }
        layers.push(range);
    }
    Ok(Ranges { input, layers })
}

/// The model cut after layer `k`, a recurrent layer `k` returning every timestep, in a batch-first
/// output layout.
fn prefix(spec: &ModelSpec, k: usize) -> ModelSpec {
    let mut layers = spec.layers[..=k].to_vec();
    if let Some(Layer::Recurrent(r)) = layers.last_mut() {
        r.return_sequences = true;
    }
    let mut cut = ModelSpec {
        layers,
        fixed: None,
        ..spec.clone()
    };
    cut.io.output = OutputLayout::BatchFirst;
    // The output scaler describes the whole model's output, not a cut's (its width need not match).
    cut.scaling.output = None;
    cut
}

/// The largest `|h|` and (LSTM) `|c|` of recurrent layer `k` over every timestep of every window, in
/// each direction. The layer's input sequences come from the model cut before it (or the model's
/// input), and each direction then runs on its own, forwards over them or backwards, as a one-layer
/// streaming model whose state is read after every step: the states a windowed pass holds in between
/// are not visible from outside, and a backward direction's are not those of any prefix of the window.
/// `before` is the output of the model cut after layer `k − 1` ([`prefix`]) where the caller has it.
fn state_ranges(
    spec: &ModelSpec,
    k: usize,
    data: &Array,
    before: Option<Array>,
) -> Result<(f32, f32)> {
    let Some(Layer::Recurrent(r)) = spec.layers.get(k) else {
        return Ok((0.0, 0.0));
    };
    let lstm = matches!(r.cell, Cell::Lstm { .. });
    let hidden = r.hidden as usize;
    // One direction as a forward layer, fed what layer `k` reads: the model's input (with its input
    // scaler) for the first layer, the cut model's output sequences otherwise.
    let single = |weights: &CellWeights<Tensor>| -> ModelSpec {
        let layer = Layer::Recurrent(tinyrnn::format::Recurrent {
            direction: Direction::Forward,
            return_sequences: true,
            forward: weights.clone(),
            backward: None,
            ..r.clone()
        });
        let mut one = ModelSpec {
            layers: vec![layer],
            fixed: None,
            ..spec.clone()
        };
        one.scaling.output = None;
        if k > 0 {
            one.input = tinyrnn::format::Input {
                kind: InputKind::Features(r.forward.kernel.cols as u32),
                steps: None,
            };
            one.scaling.input = None;
            one.io.input = InputLayout::BatchFirst;
        }
        one
    };
    let inputs = if k == 0 {
        None
    } else {
        let y = match before {
            Some(y) => y,
            None => run::run_batch(&to_blob(&prefix(spec, k - 1))?, data)?,
        };
        ensure!(
            y.shape.len() == 3,
            "the layers before it give one vector per window, not a sequence"
        );
        Some(y)
    };
    let mut directions = vec![(&r.forward, matches!(r.direction, Direction::Reverse))];
    if let Some(backward) = &r.backward {
        directions.push((backward, true));
    }
    let (mut h_max, mut c_max) = (0.0f32, 0.0f32);
    let largest = |m: f32, values: &[f32]| values.iter().fold(m, |m, v| m.max(v.abs()));
    for (weights, backwards) in directions {
        let one = single(weights);
        let blob = AlignedBlob::new(&to_blob(&one)?);
        let model = blob.open()?;
        let windows = run::windows(&model, inputs.as_ref().unwrap_or(data))?;
        let mut memory = vec![0.0f32; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory)?;
        let mut out = vec![0.0f32; model.step_output_len()];
        for window in &windows {
            let reversed;
            let window = if backwards {
                reversed = window.reversed();
                &reversed
            } else {
                window
            };
            runtime.reset();
            for t in 0..window.steps() {
                window.step(&mut runtime, t, &mut out)?;
                // A one-layer model's state is `h`, then an LSTM's `c`.
                let state = runtime.state();
                h_max = largest(h_max, state.get(..hidden).unwrap_or(&[]));
                if lstm {
                    c_max = largest(c_max, state.get(hidden..2 * hidden).unwrap_or(&[]));
                }
            }
        }
    }
    Ok((h_max, c_max))
}

/// The magnitude of `values` by `rule`; NaN counts as infinite.
pub fn magnitude(values: &[f32], rule: RangeRule) -> f32 {
    let RangeRule::Percentile(p) = rule else {
        return max_abs(values);
    };
    if values.is_empty() {
        return 0.0;
    }
    let mut abs: Vec<f32> = values
        .iter()
        .map(|v| if v.is_nan() { f32::INFINITY } else { v.abs() })
        .collect();
    // The smallest magnitude at or above which lie at most (100 − p) % of the values.
    let rank = ((p / 100.0 * abs.len() as f64).ceil() as usize).clamp(1, abs.len());
    let (_, value, _) = abs.select_nth_unstable_by(rank - 1, f32::total_cmp);
    *value
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| {
        if v.is_nan() {
            f32::INFINITY
        } else {
            m.max(v.abs())
        }
    })
}

/// Second moments `Σ x xᵀ` (row-major, `width × width`) of what a weight matrix multiplies, gathered
/// from the f32 model on calibration data: they weigh each weight's rounding error by how much it moves
/// the layer's output ([`crate::quantize`] rounds with them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moments {
    /// Of the layer's input (the kernel's and a Dense weight's columns); `None` for an embedding.
    pub input: Option<Vec<f64>>,
    /// Of each direction's hidden state (the recurrent kernel's columns); `None` where the layer's
    /// output does not show one direction's `h` alone (a bidirectional sum, product or average).
    pub state: [Option<Vec<f64>>; 2],
    /// Mean of the layer's input, where `input` is known: `i8w` bias correction moves each row's mean
    /// rounding error `ΔW_r · mean(x)` into its bias.
    pub input_mean: Option<Vec<f64>>,
    /// Mean of each direction's hidden state, where `state` is known.
    pub state_mean: [Option<Vec<f64>>; 2],
    /// Mean of a residual layer's skip-map input, the series `x_j[t] − l_j` over the window (`l_j`
    /// its last value with `add_last`, else 0), `T` values: one per block of the map, so per target for
    /// per-target maps, and over every target's series for a shared map.
    pub skip_mean: Vec<Vec<f64>>,
}

/// The [`Moments`] of every layer, from running each prefix of `spec` over `data`.
pub fn moments(spec: &ModelSpec, data: &Array) -> Result<Vec<Moments>> {
    let mut out = Vec::with_capacity(spec.layers.len());
    // The feature input's windows, each timestep-major.
    let raw: Vec<Vec<f32>> = match (&data.data, spec.input.kind) {
        (Data::Float(_), InputKind::Features(_)) => {
            let blob = to_blob(spec)?;
            let model = AlignedBlob::new(&blob);
            let model = model.open()?;
            run::windows(&model, data)?
                .into_iter()
                .filter_map(|w| match w {
                    run::Window::Features { values, .. } => Some(values),
                    run::Window::Tokens(_) => None,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    // What enters layer 0: the feature input itself.
    let mut previous: Option<(Vec<f32>, usize)> = match spec.input.kind {
        InputKind::Features(n) if !raw.is_empty() => Some((raw.concat(), n as usize)),
        _ => None,
    };
    for (k, layer) in spec.layers.iter().enumerate() {
        let prefix = prefix(spec, k);
        let blob = to_blob(&prefix).with_context(|| format!("layer {k}: cutting the model"))?;
        let y = run::run_batch(&blob, data)
            .with_context(|| format!("layer {k}: running the f32 model on calibration data"))?;
        let width = *y.shape.last().unwrap_or(&1);
        let Data::Float(values) = y.data else {
            bail!("layer {k}: the engine returned integers");
        };
        let mut m = Moments {
            input: previous
                .as_ref()
                .map(|(rows, width)| second_moment(rows, *width, 0, *width)),
            state: [None, None],
            input_mean: previous
                .as_ref()
                .map(|(rows, width)| mean(rows, *width, 0, *width)),
            state_mean: [None, None],
            skip_mean: Vec::new(),
        };
        if let (
            Layer::Residual(tinyrnn::format::Residual {
                skip: Some(skip),
                inputs,
                add_last,
                ..
            }),
            InputKind::Features(width),
        ) = (layer, spec.input.kind)
        {
            let series = skip_series(&raw, width as usize, inputs, *add_last);
            // As the engine reads it: a map with one row per forecast value is per target.
            let forecast = previous.as_ref().map_or(0, |(_, w)| *w);
            let blocks = if skip.rows == forecast && inputs.len() > 1 {
                series
            } else {
                vec![series.concat()]
            };
            let steps = skip.cols;
            for rows in &blocks {
                m.skip_mean.push(mean(rows, steps, 0, steps));
            }
        }
        if let Layer::Recurrent(r) = layer {
            let hidden = r.hidden as usize;
            match r.direction {
                tinyrnn::format::Direction::Bidirectional(tinyrnn::format::Merge::Concat) => {
                    m.state = [
                        Some(second_moment(&values, width, 0, hidden)),
                        Some(second_moment(&values, width, hidden, hidden)),
                    ];
                    m.state_mean = [
                        Some(mean(&values, width, 0, hidden)),
                        Some(mean(&values, width, hidden, hidden)),
                    ];
                }
                tinyrnn::format::Direction::Bidirectional(_) => {}
                _ => {
                    m.state[0] = Some(second_moment(&values, width, 0, hidden));
                    m.state_mean[0] = Some(mean(&values, width, 0, hidden));
                }
            }
        }
        out.push(m);
        // A recurrent prefix returned every timestep; what the next layer sees is the real output.
        previous = match layer {
            Layer::Recurrent(r) if !r.return_sequences => {
                let mut cut = ModelSpec {
                    layers: spec.layers[..=k].to_vec(),
                    fixed: None,
                    io: tinyrnn::format::IoLayout {
                        output: OutputLayout::BatchFirst,
                        ..spec.io
                    },
                    ..spec.clone()
                };
                cut.scaling.output = None;
                let blob = to_blob(&cut)?;
                let y = run::run_batch(&blob, data)?;
                let width = *y.shape.last().unwrap_or(&1);
                match y.data {
                    Data::Float(v) => Some((v, width)),
                    Data::Int(_) => None,
                }
            }
            _ => Some((values, width)),
        };
    }
    Ok(out)
}

/// For each target a residual layer continues (input feature `inputs[j]`), the series its skip map
/// reads in every window, one window after another: `x_j[t] − l_j` with `l_j` the window's last value
/// of that feature when `add_last`, else 0 (what the engine's residual layer computes).
fn skip_series(
    windows: &[Vec<f32>],
    width: usize,
    inputs: &[u16],
    add_last: bool,
) -> Vec<Vec<f32>> {
    inputs
        .iter()
        .map(|&feature| {
            let feature = usize::from(feature);
            windows
                .iter()
                .flat_map(|w| {
                    let column: Vec<f32> = w
                        .iter()
                        .skip(feature)
                        .step_by(width.max(1))
                        .copied()
                        .collect();
                    let last = if add_last {
                        column.last().copied().unwrap_or(0.0)
                    } else {
                        0.0
                    };
                    column.into_iter().map(move |x| x - last)
                })
                .collect()
        })
        .collect()
}

/// `Σ x xᵀ` over the rows of `values` (each `width` wide), of columns `from..from + n`.
fn second_moment(values: &[f32], width: usize, from: usize, n: usize) -> Vec<f64> {
    let mut h = vec![0.0f64; n * n];
    for row in values.chunks_exact(width.max(1)) {
        let x = &row[from.min(row.len())..(from + n).min(row.len())];
        for (i, &a) in x.iter().enumerate() {
            for (j, &b) in x.iter().enumerate() {
                h[i * n + j] += f64::from(a) * f64::from(b);
            }
        }
    }
    h
}

/// The mean over the rows of `values` (each `width` wide) of columns `from..from + n`.
fn mean(values: &[f32], width: usize, from: usize, n: usize) -> Vec<f64> {
    let mut sum = vec![0.0f64; n];
    let mut count = 0usize;
    for row in values.chunks_exact(width.max(1)) {
        let x = &row[from.min(row.len())..(from + n).min(row.len())];
        sum.iter_mut().zip(x).for_each(|(s, &v)| *s += f64::from(v));
        count += 1;
    }
    sum.iter_mut().for_each(|s| *s /= count.max(1) as f64);
    sum
}
