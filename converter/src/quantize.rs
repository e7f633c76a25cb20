//! Quantization: a float model becomes an integer one, and its error against the float model is
//! measured on data.
//!
//! `i8w` stores the weight matrices as int8 with one f32 scale per row (symmetric, values kept in
//! `-127..=127`; each row's scale is the one between `max|row| / 127` and twice that whose rounded
//! values fit the row best, [`per_row_i8`]), and as int16 where `i8x16` stores int16 (below). Biases,
//! peepholes and initial states stay f32, as do activations and state: the engine multiplies the
//! weights by f32 activations and scales each row's sum once.
//!
//! `i8x16` keeps the same int8 weights and turns everything else into integers: each row's scale becomes
//! a `(multiplier, shift)` requantization pair into the format the row feeds, biases become `i32` in that
//! format, and every activation and state an `i16` in a power-of-two format chosen from calibration
//! data ([`crate::calibrate`]): the largest magnitude seen, with [`HEADROOM`], fixes the fraction bits.
//! Values bounded by their activation (tanh, sigmoid) take Q·.15 without calibration. Matrices with
//! few columns (input and recurrent kernels of at most [`NARROW_KERNEL`]) and a residual layer's skip
//! map are int16 instead: there, int8 rounding has nothing to average out across.
//!
//! With calibration data, `i8w` also corrects each row's bias by its mean rounding error on the data
//! ([`Options::bias_correction`]), and `i8x16` may take ranges at a percentile instead of the largest
//! value ([`RangeRule`]). How many columns a matrix may have and still be int16 can also be chosen
//! from the data, as the fewest that keep the error within a target ([`Options::fit`],
//! [`fit_int16_columns`]).

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::{
    Activation, CellWeights, Direction, FixedLayer, FixedPoint, InputKind, Layer, Merge, MAX_FRAC,
    PEEPHOLE_FRAC, PRE_FRAC,
};

use crate::calibrate::{self, Ranges};
use crate::npy::{Array, Data};
use crate::run;
use crate::spec::{IntegerTensor, ModelSpec, Quantized, Tensor};

/// Calibrated magnitudes are multiplied by this before a format is chosen, so held-out data a little
/// beyond the calibration range still fits (values beyond it saturate).
pub const HEADROOM: f32 = 1.25;

/// What to pass when a mode needs calibration data and none was given.
pub const CALIBRATION_HINT: &str = "pass --calibrate X.npy|X.csv: an input batch laid out as \
    `tinyrnn run` reads it, or a CSV with a header row and one numeric column per input feature";

/// A numeric mode a model can be quantized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Int8 weights with one scale per output row (int16 for narrow matrices, embedding tables and skip
    /// maps, as in i8x16); f32 activations and state.
    I8w,
    /// Integer only: int8 weights, int16 activations and state, int32 accumulators, no floating point.
    I8x16,
}

impl Mode {
    /// The mode's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::I8w => "i8w",
            Mode::I8x16 => "i8x16",
        }
    }

    /// Whether the mode needs calibration data.
    pub fn needs_calibration(self) -> bool {
        matches!(self, Mode::I8x16)
    }

    /// The largest error against the float model the mode aims at, as a fraction of each output's
    /// range: `i8w` 5e-4, `i8x16` 2e-3 (issue 4's accuracy targets; TFLite Micro's own int8 LSTM tests
    /// allow 1e-2).
    pub fn target_error(self) -> f32 {
        match self {
            Mode::I8w => 5e-4,
            Mode::I8x16 => 2e-3,
        }
    }
}

/// How calibration data turns into the ranges the `i8x16` formats must hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeRule {
    /// The largest magnitude seen.
    MinMax,
    /// This percentile (in `(0, 100]`) of the magnitudes seen: a few outliers then saturate instead of
    /// costing every other value its resolution.
    Percentile(f64),
}

impl std::str::FromStr for RangeRule {
    type Err = String;

    /// `minmax` or `percentile:P` with `0 < P <= 100`, e.g. `percentile:99.99`.
    fn from_str(text: &str) -> Result<Self, String> {
        let expected =
            "expected 'minmax' or 'percentile:P' with 0 < P <= 100 (e.g. percentile:99.99)";
        if text == "minmax" {
            return Ok(RangeRule::MinMax);
        }
        let p = text
            .strip_prefix("percentile:")
            .ok_or_else(|| format!("'{text}': {expected}"))?;
        match p.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(RangeRule::Percentile(p)),
            _ => Err(format!("'{text}': {expected}")),
        }
    }
}

/// Choices of the quantizer beyond the mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// How `i8x16` turns calibration data into ranges.
    pub ranges: RangeRule,
    /// `i8w` with calibration data: move each weight row's mean rounding error on that data into the
    /// row's bias (`b_r −= ΔW_r · mean(x)`), so the quantized layer is unbiased where the data lies.
    /// (`i8x16` does not: measured, it moved the fixtures' median error by 3 %.)
    pub bias_correction: bool,
    /// Input kernels with at most this many columns (input features) are stored as int16 rather than
    /// int8 (0: none), in both modes. Default [`NARROW_KERNEL`].
    pub int16_input_columns: usize,
    /// Recurrent kernels with at most this many columns (hidden units) are stored as int16 rather than
    /// int8 (0: none), in both modes. Default [`NARROW_KERNEL`].
    pub int16_recurrent_columns: usize,
    /// Dense weights (softmax included) with at most this many columns are int16 (0: none), in both
    /// modes. Default [`NARROW_KERNEL`].
    pub int16_dense_columns: usize,
    /// With calibration data: choose the three limits above (then ignored) from the data, as
    /// [`fit_int16_columns`] does. Default `None`: the limits as given.
    pub fit: Option<ErrorTarget>,
}

/// The largest error a quantized model may make against its float model, as a fraction of each
/// output's range, for [`fit_int16_columns`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorTarget {
    /// The mode's own: [`Mode::target_error`].
    Mode,
    /// This fraction of each output's range.
    Relative(f32),
}

impl ErrorTarget {
    /// The target for `mode`.
    pub fn for_mode(self, mode: Mode) -> f32 {
        match self {
            ErrorTarget::Mode => mode.target_error(),
            ErrorTarget::Relative(e) => e,
        }
    }
}

/// What [`fit_int16_columns`] chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// Matrices of at most this many columns are int16.
    pub int16_columns: usize,
    /// The largest error of the model so quantized on the calibration windows, as a fraction of the
    /// output's range (the worst output).
    pub error: f32,
    /// The target it was chosen for.
    pub target: f32,
    /// Whether `error` is within `target / FIT_MARGIN` (otherwise no width was, and this one came
    /// closest).
    pub met: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ranges: RangeRule::MinMax,
            bias_correction: true,
            int16_input_columns: NARROW_KERNEL,
            int16_recurrent_columns: NARROW_KERNEL,
            int16_dense_columns: NARROW_KERNEL,
            fit: None,
        }
    }
}

impl std::fmt::Display for Fit {
    /// One line on the choice, for reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.int16_columns {
            0 => write!(f, "int16 width: every weight matrix int8")?,
            n => write!(
                f,
                "int16 width: weight matrices of at most {n} columns int16, wider ones int8"
            )?,
        }
        write!(
            f,
            " (largest error on the calibration windows {:.2e} of the output range, ",
            self.error
        )?;
        if self.met {
            write!(
                f,
                "within a quarter of the target {:.0e}, as held-out data sees more",
                self.target
            )?;
        } else {
            write!(
                f,
                "no width keeps within a quarter of the target {:.0e}; this one comes closest",
                self.target
            )?;
        }
        write!(f, "; --int16-columns N sets it)")
    }
}

/// How far under the target [`fit_int16_columns`] wants the error on the calibration windows: those are
/// the windows the rounding and the ranges were fitted to, and held-out windows (more of them, so a
/// larger worst case too) see more. Measured: the ETTh1 GRU(8) per-target forecaster in `i8x16` with
/// every matrix int8 had 7.2e-4 on its 1,024 calibration windows and 2.1e-3 on its 2,857 test windows.
pub const FIT_MARGIN: f32 = 4.0;

/// The number of columns up to which `mode` stores weight matrices as int16 (see [`Options`]): the
/// fewest, among 0 and the widths of the model's input kernels, recurrent kernels and Dense weights,
/// that keep the model's error on `calibration` within `target / FIT_MARGIN` of every output's range
/// ([`FIT_MARGIN`]); or, when no width does, the one that comes closest (a closer narrower one wins a
/// tie, as the widest costs the most flash). Each candidate is quantized with `options` and run over
/// `calibration`, so the choice is made on the calibration windows, never on held-out ones.
pub fn fit_int16_columns(
    spec: &ModelSpec,
    mode: Mode,
    calibration: &Array,
    options: &Options,
    target: f32,
) -> Result<Fit> {
    fitted(spec, mode, calibration, options, target).map(|(_, fit)| fit)
}

/// [`fit_int16_columns`], with the model quantized at the chosen width.
fn fitted(
    spec: &ModelSpec,
    mode: Mode,
    calibration: &Array,
    options: &Options,
    target: f32,
) -> Result<(ModelSpec, Fit)> {
    let reference = crate::write::to_blob(spec)?;
    let mut widths = vec![0usize];
    for layer in &spec.layers {
        match layer {
            Layer::Recurrent(r) => {
                for w in [Some(&r.forward), r.backward.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    widths.extend([w.kernel.cols, w.recurrent.cols]);
                }
            }
            Layer::Dense(d) => widths.push(d.weight.cols),
            _ => {}
        }
    }
    widths.sort_unstable();
    widths.dedup();
    let mut closest: Option<(ModelSpec, Fit)> = None;
    for columns in widths {
        let fixed = Options {
            int16_input_columns: columns,
            int16_recurrent_columns: columns,
            int16_dense_columns: columns,
            fit: None,
            ..*options
        };
        let quantized = quantize_fixed(spec, mode, Some(calibration), &fixed)?;
        let errors = error_per_output(&reference, &crate::write::to_blob(&quantized)?, calibration)
            .context("measuring a candidate on the calibration windows")?;
        let error = errors.iter().fold(0.0f32, |m, e| m.max(e.relative()));
        let fit = Fit {
            int16_columns: columns,
            error,
            target,
            met: error <= target / FIT_MARGIN,
        };
        if fit.met {
            return Ok((quantized, fit));
        }
        if closest.as_ref().is_none_or(|(_, c)| error < c.error) {
            closest = Some((quantized, fit));
        }
    }
    closest.context("the model has no weight matrix to quantize")
}

/// [`quantize_with_options`], and what [`fit_int16_columns`] chose when [`Options::fit`] asked for it
/// and there was calibration data to fit on.
pub fn quantize_fitted(
    spec: &ModelSpec,
    mode: Mode,
    calibration: Option<&Array>,
    options: &Options,
) -> Result<(ModelSpec, Option<Fit>)> {
    match (options.fit, calibration) {
        (Some(target), Some(data)) => {
            let (model, fit) = fitted(spec, mode, data, options, target.for_mode(mode))?;
            Ok((model, Some(fit)))
        }
        _ => Ok((quantize_fixed(spec, mode, calibration, options)?, None)),
    }
}

/// The model quantized to `mode` without calibration data (`i8w`; `i8x16` fails and says what to
/// pass). Fails on a model that is already quantized, or whose weights are not finite.
pub fn quantize(spec: &ModelSpec, mode: Mode) -> Result<ModelSpec> {
    quantize_with(spec, mode, None)
}

/// The model quantized to `mode`, with calibration data (laid out as `tinyrnn run` reads it) for the
/// modes that need it.
pub fn quantize_with(
    spec: &ModelSpec,
    mode: Mode,
    calibration: Option<&Array>,
) -> Result<ModelSpec> {
    quantize_with_options(spec, mode, calibration, &Options::default())
}

/// [`quantize_with`], with the quantizer's [`Options`].
pub fn quantize_with_options(
    spec: &ModelSpec,
    mode: Mode,
    calibration: Option<&Array>,
    options: &Options,
) -> Result<ModelSpec> {
    quantize_fitted(spec, mode, calibration, options).map(|(model, _)| model)
}

/// [`quantize_with_options`] with the int16 limits as `options` gives them (its `fit` unread).
fn quantize_fixed(
    spec: &ModelSpec,
    mode: Mode,
    calibration: Option<&Array>,
    options: &Options,
) -> Result<ModelSpec> {
    ensure!(
        !spec.is_quantized(),
        "model '{}' is already quantized; quantize its f32 blob instead",
        spec.name
    );
    match mode {
        Mode::I8x16 => {
            let Some(data) = calibration else {
                bail!(
                    "model '{}' carries no calibration data, and i8x16 needs some to choose its \
                     fixed-point formats: {CALIBRATION_HINT}",
                    spec.name
                );
            };
            let ranges =
                calibrate::ranges_with(spec, data, options.ranges).context("calibrating")?;
            let moments = calibrate::moments(spec, data).context("calibrating")?;
            let mut quantized = integer_model(spec, &ranges, &moments, options)?;
            quantized.source = format!("{} (quantized {})", spec.source, mode.name());
            Ok(quantized)
        }
        Mode::I8w => {
            let moments = match calibration {
                Some(data) => calibrate::moments(spec, data).context("calibrating")?,
                None => vec![calibrate::Moments::default(); spec.layers.len()],
            };
            let layers = spec
                .layers
                .iter()
                .zip(&moments)
                .enumerate()
                .map(|(index, (layer, m))| {
                    let mut q = quantize_weights(layer.clone(), m, options)
                        .with_context(|| format!("layer {index}"))?;
                    if options.bias_correction {
                        correct_biases(layer, &mut q, m);
                    }
                    Ok(q)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ModelSpec {
                layers,
                source: format!("{} (quantized {})", spec.source, mode.name()),
                ..spec.clone()
            })
        }
    }
}

/// Quantizes a layer's weight matrices and embedding table for `i8w` (with calibration-aware rounding
/// where `moments` has the inputs' statistics); vectors stay f32. Which matrices are int16 rather than
/// int8 is decided as for `i8x16` ([`integer_layer`]), so the two modes store the same weights at the
/// same widths: matrices of at most `options`' columns, embedding tables and skip maps.
fn quantize_weights(
    layer: Layer<Tensor>,
    moments: &calibrate::Moments,
    options: &Options,
) -> Result<Layer<Tensor>> {
    let int8_unless = |t: &Tensor, int16_columns: usize, h: Option<&[f64]>| {
        if t.cols <= int16_columns {
            per_row_i16(t)
        } else {
            per_row_i8_with(t, h)
        }
    };
    Ok(match layer {
        Layer::Recurrent(mut r) => {
            for (d, w) in [Some(&mut r.forward), r.backward.as_mut()]
                .into_iter()
                .enumerate()
            {
                let Some(w) = w else { continue };
                w.kernel = int8_unless(
                    &w.kernel,
                    options.int16_input_columns,
                    moments.input.as_deref(),
                )?;
                w.recurrent = int8_unless(
                    &w.recurrent,
                    options.int16_recurrent_columns,
                    moments.state[d].as_deref(),
                )?;
            }
            Layer::Recurrent(r)
        }
        Layer::Dense(mut d) => {
            d.weight = int8_unless(
                &d.weight,
                options.int16_dense_columns,
                moments.input.as_deref(),
            )?;
            Layer::Dense(d)
        }
        Layer::Embedding(mut e) => {
            // A lookup multiplies nothing: the wider table costs only flash.
            e.table = per_row_i16(&e.table)?;
            Layer::Embedding(e)
        }
        Layer::Residual(mut r) => {
            // The skip map carries most of a window-normalised forecast, and its rounding reaches the
            // output undamped (measured on ETTh1: int8 there was nearly all of `i8w`'s error).
            r.skip = r.skip.as_ref().map(per_row_i16).transpose()?;
            Layer::Residual(r)
        }
        other => other,
    })
}

/// Largest magnitude of an int16 weight: symmetric, as int8's.
const I16_LEVELS: f64 = 32767.0;

/// Symmetric int16 with one f32 scale per row (`max|row| / 32767`), rounded to nearest: at 256 times
/// int8's resolution, calibration-aware rounding and the scale search have nothing left to win.
pub fn per_row_i16(t: &Tensor) -> Result<Tensor> {
    check_weights(t)?;
    let mut values = Vec::with_capacity(t.data.len());
    let mut scales = Vec::with_capacity(t.rows);
    let mut data = Vec::with_capacity(t.data.len());
    for row in t.data.chunks_exact(t.cols.max(1)) {
        let max = row.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        let scale = if max > 0.0 { max / I16_LEVELS } else { 0.0 };
        let scale32 = scale as f32;
        for &v in row {
            let q = if scale > 0.0 {
                (f64::from(v) / scale)
                    .round()
                    .clamp(-I16_LEVELS, I16_LEVELS) as i16
            } else {
                0
            };
            values.push(q);
            data.push(scale32 * f32::from(q));
        }
        scales.push(scale32);
    }
    Ok(Tensor {
        rows: t.rows,
        cols: t.cols,
        data,
        quant: None,
        integer: Some(IntegerTensor::I16Scaled { values, scales }),
    })
}

/// Bias correction: for every weight matrix of `quantized` (an `i8w` layer with f32 biases) whose
/// input mean `moments` knows, adds `−(W_q − W)_r · mean(x)` to row `r`'s bias, creating the bias if the
/// layer had none. The recurrent kernel's share goes where `R h` is added: the bias, or for a
/// reset-after GRU the recurrent bias (its `n` block is gated by `r`); a reset-before GRU's `n` rows,
/// which read `r ⊙ h`, are left alone.
pub fn correct_biases(
    original: &Layer<Tensor>,
    quantized: &mut Layer<Tensor>,
    moments: &calibrate::Moments,
) {
    // −ΔW · mean for rows `rows` of a matrix pair.
    // Over the rows (`cols` wide) of a block of a matrix and of its quantized form.
    let shift_rows = |w: &[f32], q: &[f32], cols: usize, mean: &[f64]| -> Vec<f64> {
        w.chunks_exact(cols.max(1))
            .zip(q.chunks_exact(cols.max(1)))
            .map(|(a, b)| {
                -a.iter()
                    .zip(b)
                    .zip(mean)
                    .map(|((a, b), m)| (f64::from(*b) - f64::from(*a)) * m)
                    .sum::<f64>()
            })
            .collect()
    };
    let shift = |w: &Tensor, q: &Tensor, mean: &[f64]| shift_rows(&w.data, &q.data, w.cols, mean);
    let apply = |bias: &mut Option<Tensor>, delta: &[f64], rows: std::ops::Range<usize>| {
        let b = bias.get_or_insert_with(|| Tensor::vector(vec![0.0; delta.len()]));
        if b.data.len() != delta.len() || b.quant.is_some() || b.integer.is_some() {
            return;
        }
        for r in rows {
            b.data[r] = (f64::from(b.data[r]) + delta[r]) as f32;
        }
    };
    match (original, quantized) {
        (Layer::Dense(o), Layer::Dense(q)) => {
            if let Some(mean) = moments.input_mean.as_deref() {
                let delta = shift(&o.weight, &q.weight, mean);
                apply(&mut q.bias, &delta, 0..delta.len());
            }
        }
        (Layer::Residual(o), Layer::Residual(q)) => {
            let (Some(ow), Some(qw)) = (&o.skip, &q.skip) else {
                return;
            };
            let blocks = moments.skip_mean.len();
            if blocks == 0 || ow.rows == 0 || ow.rows % blocks != 0 || ow.cols == 0 {
                return;
            }
            let rows = ow.rows / blocks;
            let mut delta = Vec::with_capacity(ow.rows);
            for ((o_rows, q_rows), mean) in ow
                .data
                .chunks_exact(rows * ow.cols)
                .zip(qw.data.chunks_exact(rows * ow.cols))
                .zip(&moments.skip_mean)
            {
                delta.extend(shift_rows(o_rows, q_rows, ow.cols, mean));
            }
            if delta.len() == ow.rows {
                apply(&mut q.skip_bias, &delta, 0..delta.len());
            }
        }
        (Layer::Recurrent(o), Layer::Recurrent(q)) => {
            let hidden = q.hidden as usize;
            for (d, (ow, qw)) in [Some(&o.forward), o.backward.as_ref()]
                .into_iter()
                .zip([Some(&mut q.forward), q.backward.as_mut()])
                .enumerate()
            {
                let (Some(ow), Some(qw)) = (ow, qw) else {
                    continue;
                };
                if let Some(mean) = moments.input_mean.as_deref() {
                    let delta = shift(&ow.kernel, &qw.kernel, mean);
                    apply(&mut qw.bias, &delta, 0..delta.len());
                }
                if let Some(mean) = moments.state_mean[d].as_deref() {
                    let delta = shift(&ow.recurrent, &qw.recurrent, mean);
                    match q.cell {
                        tinyrnn::format::Cell::Gru { reset_after: true } => {
                            apply(&mut qw.recurrent_bias, &delta, 0..delta.len())
                        }
                        tinyrnn::format::Cell::Gru { reset_after: false } => {
                            apply(&mut qw.bias, &delta, 0..(2 * hidden).min(delta.len()))
                        }
                        _ => apply(&mut qw.bias, &delta, 0..delta.len()),
                    }
                }
            }
        }
        _ => {}
    }
}

/// [`per_row_i8`], with the rounding chosen for the data when `moments` (`Σ x xᵀ` of the inputs the
/// matrix multiplies, `cols × cols`) is given: the columns are rounded one after another, and each
/// rounding error is compensated on the columns not yet rounded in proportion to how the inputs
/// correlate (the optimal-brain-quantization update that GPTQ popularised), which minimises the error of
/// `W x` on the calibration data rather than of each weight. Each row's scale is searched as in
/// [`per_row_i8`], with the error of `W x` on the data as the measure.
pub fn per_row_i8_with(t: &Tensor, moments: Option<&[f64]>) -> Result<Tensor> {
    check_weights(t)?;
    let n = t.cols;
    let metric = moments
        .filter(|h| h.len() == n * n && n > 1)
        .and_then(|h| RowMetric::new(h, n));
    let mut values = Vec::with_capacity(t.data.len());
    let mut scales = Vec::with_capacity(t.rows);
    let mut data = Vec::with_capacity(t.data.len());
    for row in t.data.chunks_exact(n) {
        let w: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let (scale, q) = best_row_i8(&w, metric.as_ref());
        let scale = scale as f32;
        for &v in &q {
            values.push(v);
            data.push(scale * f32::from(v));
        }
        scales.push(scale);
    }
    Ok(Tensor {
        rows: t.rows,
        cols: t.cols,
        data,
        quant: Some(Quantized { values, scales }),
        integer: None,
    })
}

/// The measure a row's rounding error `e = w − s q` is judged by: `eᵀ A e` with `A = H + λI`, the
/// inputs' second moments damped as for the Cholesky factor GPTQ's update uses.
struct RowMetric {
    /// `H + λI`, `n × n`.
    a: Vec<f64>,
    /// The upper Cholesky factor of `(H + λI)⁻¹`.
    u: Vec<f64>,
}

impl RowMetric {
    fn new(h: &[f64], n: usize) -> Option<Self> {
        let (a, u) = inverse_cholesky_upper(h, n)?;
        Some(RowMetric { a, u })
    }
}

/// Largest magnitude of an int8 weight.
const I8_LEVELS: f64 = 127.0;

/// How many scales [`best_row_i8`] tries for a row of `n` weights: the most for narrow rows, where a
/// scale that puts several weights near the grid at once is most likely to exist, fewer for wide rows,
/// whose cost per try grows with `n²` (with a metric) and whose rounding errors average out anyway.
fn scale_tries(n: usize) -> usize {
    (SCALE_SEARCH_WORK / n.saturating_mul(n).max(1)).clamp(1, 4096)
}

/// Multiply-adds one row's scale search may take, about: 4,096 tries up to 8 columns, 256 at 32, 4 at
/// 256 (a row of 1,024 weights then costs what GPTQ's update alone costs).
const SCALE_SEARCH_WORK: usize = 1 << 18;

/// One row's int8 values and scale. A row's scale need not be `max|w| / 127`: any scale from that
/// one up to twice it (the largest weight on level 127 down to 64) keeps every value in range, and with
/// few weights one of them often sits every weight closer to its grid than the finest does (finding a
/// common scale for a few numbers is simultaneous Diophantine approximation: for two weights, the best
/// of these ~64 level choices beats plain rounding's error several times over). The values are
/// rounded at each tried scale (with GPTQ's update where `metric` is given), the scale is then fitted by
/// least squares to those values, and the pair with the smallest error under `metric` (`‖e‖²`
/// without one) wins; the first try is the plain scale, so no row comes out worse by that measure.
fn best_row_i8(w: &[f64], metric: Option<&RowMetric>) -> (f64, Vec<i8>) {
    let n = w.len();
    let max = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max <= 0.0 || n == 0 {
        return (0.0, vec![0; n]);
    }
    // `A w`, once per row; `qᵀ A q` per try, without allocating.
    let aw: Vec<f64> = match metric {
        Some(m) => {
            m.a.chunks_exact(n)
                .map(|row| row.iter().zip(w).map(|(a, w)| a * w).sum())
                .collect()
        }
        None => w.to_vec(),
    };
    let quadratic = |q: &[f64]| -> f64 {
        match metric {
            Some(m) => {
                m.a.chunks_exact(n)
                    .zip(q)
                    .map(|(row, qi)| qi * row.iter().zip(q).map(|(a, qj)| a * qj).sum::<f64>())
                    .sum()
            }
            None => q.iter().map(|v| v * v).sum(),
        }
    };
    let tries = scale_tries(n);
    let mut best: Option<(f64, f64, Vec<i8>)> = None;
    let mut q = vec![0.0f64; n];
    let mut work = vec![0.0f64; n];
    for i in 0..tries {
        let top = I8_LEVELS - (I8_LEVELS / 2.0) * i as f64 / tries as f64;
        let s = max / top;
        match metric {
            Some(m) => {
                work.copy_from_slice(w);
                for c in 0..n {
                    q[c] = (work[c] / s).round().clamp(-I8_LEVELS, I8_LEVELS);
                    let err = (work[c] - s * q[c]) / m.u[c * n + c];
                    let row = &m.u[c * n + c + 1..(c + 1) * n];
                    for (v, u) in work[c + 1..].iter_mut().zip(row) {
                        *v -= err * u;
                    }
                }
            }
            None => {
                for (q, &w) in q.iter_mut().zip(w) {
                    *q = (w / s).round().clamp(-I8_LEVELS, I8_LEVELS);
                }
            }
        }
        let qaq = quadratic(&q);
        let qaw: f64 = q.iter().zip(&aw).map(|(a, b)| a * b).sum();
        if qaq <= 0.0 || qaw <= 0.0 || !qaq.is_finite() || !qaw.is_finite() {
            continue;
        }
        // At the least-squares scale `qᵀAw / qᵀAq` the error is `wᵀAw − (qᵀAw)² / qᵀAq`: the largest
        // explained part wins.
        let explained = qaw * qaw / qaq;
        if best.as_ref().is_none_or(|b| explained > b.0) {
            best = Some((explained, qaw / qaq, q.iter().map(|&v| v as i8).collect()));
        }
    }
    match best {
        Some((_, scale, values)) => (scale, values),
        None => (0.0, vec![0; n]),
    }
}

/// `H + λI` and the upper Cholesky factor `U` of its inverse (`(H + λI)⁻¹ = Uᵀ U`), with a damping `λ`
/// of 1 % of the mean diagonal; `None` when `H` carries no information or is not positive definite.
fn inverse_cholesky_upper(h: &[f64], n: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    if mean_diag <= 0.0 || !mean_diag.is_finite() {
        return None;
    }
    let mut a = h.to_vec();
    for i in 0..n {
        a[i * n + i] += 0.01 * mean_diag;
    }
    let l = cholesky_lower(&a, n)?;
    // (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹: invert the triangular L by forward substitution.
    let mut li = vec![0.0f64; n * n];
    for c in 0..n {
        for r in c..n {
            let mut sum = if r == c { 1.0 } else { 0.0 };
            for k in c..r {
                sum -= l[r * n + k] * li[k * n + c];
            }
            li[r * n + c] = sum / l[r * n + r];
        }
    }
    let mut inv = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            inv[i * n + j] = (i.max(j)..n).map(|k| li[k * n + i] * li[k * n + j]).sum();
        }
    }
    // inv = M Mᵀ with M lower; U = Mᵀ.
    let m = cholesky_lower(&inv, n)?;
    let mut u = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            u[i * n + j] = m[j * n + i];
        }
    }
    Some((a, u))
}

/// The lower Cholesky factor of a symmetric positive definite `n × n` matrix.
fn cholesky_lower(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - sum;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - sum) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Symmetric int8 with one scale per row, values in `-127..=127`. Each row's scale is the one, among
/// `max|row| / 127` and coarser ones up to twice it, whose rounded values (with the scale then fitted
/// to them by least squares) leave the smallest `‖w − scale × q‖²`. `data` of the
/// result holds `scale × q`, the values the engine computes with.
pub fn per_row_i8(t: &Tensor) -> Result<Tensor> {
    per_row_i8_with(t, None)
}

/// Refuses a weight tensor with a value that is not finite or whose data does not fill its shape.
fn check_weights(t: &Tensor) -> Result<()> {
    ensure!(
        t.data.iter().all(|v| v.is_finite()),
        "a {}×{} weight tensor holds a value that is not finite",
        t.rows,
        t.cols
    );
    ensure!(
        t.cols > 0 && t.data.len() == t.rows * t.cols,
        "tensor of {}×{} holds {} values",
        t.rows,
        t.cols,
        t.data.len()
    );
    Ok(())
}

/// Fraction bits for `i16` values whose largest magnitude is `max` (with [`HEADROOM`] when `headroom`):
/// as many as keep `max` within `±32767`, at most [`MAX_FRAC`]. A range of zero takes Q·.15.
pub fn frac_for(max: f32, headroom: bool) -> u8 {
    let max = if headroom { max * HEADROOM } else { max };
    if max.is_nan() || max.is_infinite() {
        return 0;
    }
    if max <= 0.0 {
        return 15;
    }
    let bits = (32767.0 / f64::from(max)).log2().floor();
    bits.clamp(0.0, f64::from(MAX_FRAC)) as u8
}

/// `multiplier × 2^−shift ≈ real` with `multiplier` in `[2^30, 2^31)` and `shift` in `1..=62` where
/// `real` allows; a real multiplier too small for that keeps `shift = 62` and loses precision, one too
/// large saturates. Zero (an all-zero row) is `(0, 1)`.
pub fn requant_pair(real: f64) -> (i32, i32) {
    if real.is_nan() || real.is_infinite() || real <= 0.0 {
        return (0, 1);
    }
    let exponent = real.log2().floor() as i32;
    let mut shift = 30 - exponent;
    if shift < 1 {
        return (i32::MAX, 1);
    }
    shift = shift.min(62);
    let mut m = (real * 2f64.powi(shift)).round();
    if m >= 2f64.powi(31) {
        if shift > 1 {
            m = (m / 2.0).round();
            shift -= 1;
        } else {
            m = f64::from(i32::MAX);
        }
    }
    (m as i32, shift)
}

/// The integer-only form of `spec`, with formats from `ranges`.
fn integer_model(
    spec: &ModelSpec,
    ranges: &Ranges,
    moments: &[calibrate::Moments],
    options: &Options,
) -> Result<ModelSpec> {
    let input_frac = match spec.input.kind {
        InputKind::Features(_) => frac_for(ranges.input, true),
        InputKind::Tokens => 0,
    };
    let mut frac = input_frac;
    let mut layers = Vec::with_capacity(spec.layers.len());
    let mut formats = heapless::Vec::new();
    for (index, ((layer, range), m)) in spec
        .layers
        .iter()
        .zip(&ranges.layers)
        .zip(moments)
        .enumerate()
    {
        let (layer, format) = integer_layer(layer, range, m, (frac, input_frac), options)
            .with_context(|| format!("layer {index} in i8x16"))?;
        frac = format.output_frac;
        layers.push(layer);
        formats
            .push(format)
            .map_err(|_| anyhow::anyhow!("too many layers"))?;
    }
    Ok(ModelSpec {
        layers,
        fixed: Some(FixedPoint {
            input_frac,
            layers: formats,
        }),
        ..spec.clone()
    })
}

fn integer_layer(
    layer: &Layer<Tensor>,
    range: &calibrate::LayerRange,
    moments: &calibrate::Moments,
    (input_frac, model_input_frac): (u8, u8),
    options: &Options,
) -> Result<(Layer<Tensor>, FixedLayer)> {
    let int16_recurrent_columns = options.int16_recurrent_columns;
    let input = moments.input.as_deref();
    let mut format = FixedLayer {
        output_frac: input_frac,
        state_frac: 0,
        cell_frac: 0,
        clip: 0,
    };
    let pre = PRE_FRAC;
    let layer = match layer {
        Layer::Embedding(e) => {
            let max = e.table.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            format.output_frac = frac_for(max, false);
            Layer::Embedding(tinyrnn::format::Embedding {
                // int16: a lookup multiplies nothing, so the wider table costs only flash, and an
                // int8 table set the error of every embedding fixture (BENCHMARKS.md).
                table: requant_matrix_i16(&e.table, format.output_frac, 0)?,
            })
        }
        Layer::Dense(d) => {
            let bounded = matches!(
                d.activation,
                Activation::Sigmoid | Activation::Tanh | Activation::Softmax
            );
            // The calibrated range with headroom, widened towards the most the layer can output for
            // any input its format holds (up to 16× the calibrated range, 4 bits): a few bits of an
            // i16 cost far less accuracy than saturating on data beyond the calibration set.
            let input_max = 32768.0 / 2f64.powi(i32::from(input_frac));
            let reach = d
                .weight
                .data
                .chunks_exact(d.weight.cols.max(1))
                .enumerate()
                .map(|(r, row)| {
                    let bias = d.bias.as_ref().map_or(0.0, |b| f64::from(b.data[r].abs()));
                    row.iter().map(|w| f64::from(w.abs())).sum::<f64>() * input_max + bias
                })
                .fold(0.0f64, f64::max) as f32;
            let calibrated = range.output * HEADROOM;
            format.output_frac = if bounded {
                15
            } else {
                frac_for(calibrated.max(reach.min(16.0 * range.output)), false)
            };
            let target = if bounded { pre } else { format.output_frac };
            // Narrow Dense layers take int16 weights, as narrow kernels do (softmax too: its
            // probabilities are read directly, so weight rounding reaches the output undamped).
            let narrow = d.weight.cols <= options.int16_dense_columns;
            Layer::Dense(tinyrnn::format::Dense {
                weight: if narrow {
                    requant_matrix_i16(&d.weight, target, input_frac)?
                } else {
                    requant_matrix(&d.weight, target, input_frac, input)?
                },
                bias: d.bias.as_ref().map(|b| i32_vector(b, target)),
                activation: d.activation,
            })
        }
        Layer::Recurrent(r) => {
            let bounded = |a: Activation| matches!(a, Activation::Sigmoid | Activation::Tanh);
            let weights = [Some(&r.forward), r.backward.as_ref()];
            let initial = |get: fn(&CellWeights<Tensor>) -> &Option<Tensor>| {
                weights
                    .iter()
                    .flatten()
                    .filter_map(|w| get(w).as_ref())
                    .flat_map(|t| t.data.iter())
                    .fold(0.0f32, |m, v| m.max(v.abs()))
            };
            let h0 = initial(|w| &w.initial_h);
            let c0 = initial(|w| &w.initial_c);
            format.state_frac = if bounded(r.activation) && bounded(r.gate_activation) && h0 <= 1.0
            {
                15
            } else {
                frac_for(range.state.max(h0), true)
            };
            format.cell_frac = match r.cell {
                tinyrnn::format::Cell::Lstm { .. } => frac_for(range.cell.max(c0), true),
                _ => 0,
            };
            // A merge of two directions: bounded by what each direction's `h` can reach (the largest
            // Q·.15 value for a bounded state). The calibrated range alone would miss a final-state
            // merge, which pairs `h` from opposite ends of the window.
            let h_max = if format.state_frac == 15 {
                32767.0 / 32768.0
            } else {
                range.state.max(h0)
            };
            format.output_frac = match r.direction {
                Direction::Bidirectional(Merge::Sum) => frac_for(2.0 * h_max, false),
                Direction::Bidirectional(Merge::Ave) => frac_for(h_max, false),
                Direction::Bidirectional(Merge::Mul) => frac_for(h_max * h_max, false),
                _ => format.state_frac,
            };
            if format.state_frac != 15 {
                format.output_frac = format.output_frac.min(frac_for(range.output, true));
            }
            if let Some(clip) = r.clip {
                format.clip = ((f64::from(clip) * 4096.0).round() as i64)
                    .clamp(1, i64::from(i32::MAX)) as i32;
            }
            let (sf, cf) = (format.state_frac, format.cell_frac);
            let cell = |w: &CellWeights<Tensor>, d: usize| -> Result<CellWeights<Tensor>> {
                let kernel = if w.kernel.cols <= options.int16_input_columns {
                    requant_matrix_i16(&w.kernel, pre, input_frac)?
                } else {
                    requant_matrix(&w.kernel, pre, input_frac, input)?
                };
                Ok(CellWeights {
                    kernel,
                    // Few columns: as for narrow input kernels (measured: with those int16, int8
                    // recurrent kernels of up to 8 columns set most of the fixtures' error).
                    recurrent: if w.recurrent.cols <= int16_recurrent_columns {
                        requant_matrix_i16(&w.recurrent, pre, sf)?
                    } else {
                        requant_matrix(&w.recurrent, pre, sf, moments.state[d].as_deref())?
                    },
                    bias: w.bias.as_ref().map(|b| i32_vector(b, pre)),
                    recurrent_bias: w.recurrent_bias.as_ref().map(|b| i32_vector(b, pre)),
                    peephole: w.peephole.as_ref().map(|p| i32_vector(p, PEEPHOLE_FRAC)),
                    initial_h: w.initial_h.as_ref().map(|h| i16_vector(h, sf)),
                    initial_c: w.initial_c.as_ref().map(|c| i16_vector(c, cf)),
                })
            };
            let mut out = r.clone();
            out.forward = cell(&r.forward, 0)?;
            out.backward = r.backward.as_ref().map(|b| cell(b, 1)).transpose()?;
            Layer::Recurrent(out)
        }
        Layer::SubtractLast => {
            // Deviations from the window's last value: their calibrated range with headroom.
            format.output_frac = frac_for(range.output, true);
            Layer::SubtractLast
        }
        Layer::Residual(r) => {
            // The forecast continues the input: its format holds at least what the input's does, so
            // a window beyond the calibration data saturates no sooner at the output than at the input.
            format.output_frac = frac_for(range.output, true).min(model_input_frac);
            let of = format.output_frac;
            // The skip map carries most of a window-normalised forecast: int16, like narrow kernels.
            Layer::Residual(tinyrnn::format::Residual {
                inputs: r.inputs.clone(),
                add_last: r.add_last,
                skip: r
                    .skip
                    .as_ref()
                    .map(|w| requant_matrix_i16(w, of, model_input_frac))
                    .transpose()?,
                skip_bias: r.skip_bias.as_ref().map(|b| i32_vector(b, of)),
            })
        }
        other => other.clone(),
    };
    Ok((layer, format))
}

/// An int8 matrix whose row sums (of inputs with `input_frac` fraction bits) land in `target` fraction
/// bits: row `r`'s pair stands for `scale_r × 2^(target − input_frac)`.
fn requant_matrix(
    t: &Tensor,
    target: u8,
    input_frac: u8,
    moments: Option<&[f64]>,
) -> Result<Tensor> {
    let q = per_row_i8_with(t, moments)?;
    let Some(Quantized { values, scales }) = q.quant else {
        bail!("int8 quantization gave no values");
    };
    let factor = 2f64.powi(i32::from(target) - i32::from(input_frac));
    let requant = scales
        .iter()
        .map(|&s| requant_pair(f64::from(s) * factor))
        .collect();
    Ok(Tensor {
        quant: None,
        integer: Some(IntegerTensor::I8Requant { values, requant }),
        ..q
    })
}

/// Input kernels with at most this many columns are stored as int16 in `i8x16` (and by default
/// recurrent kernels and Dense weights too): with so few columns, int8 rounding has nothing to average
/// out across (measured: it dominates the error of the fixtures), and the extra bytes are few. 16
/// rather than 8: the fixtures above the 2e-3 target fell from 9 to 4 of 136 (BENCHMARKS.md).
pub const NARROW_KERNEL: usize = 16;

/// [`requant_matrix`] in int16: `scale_r = max|row| / 32767`, values rounded to nearest.
fn requant_matrix_i16(t: &Tensor, target: u8, input_frac: u8) -> Result<Tensor> {
    ensure!(
        t.data.iter().all(|v| v.is_finite()),
        "a {}×{} weight tensor holds a value that is not finite",
        t.rows,
        t.cols
    );
    let factor = 2f64.powi(i32::from(target) - i32::from(input_frac));
    let mut values = Vec::with_capacity(t.data.len());
    let mut data = Vec::with_capacity(t.data.len());
    let mut requant = Vec::with_capacity(t.rows);
    for row in t.data.chunks_exact(t.cols.max(1)) {
        let scale = row.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs()))) / 32767.0;
        for &w in row {
            let q = if scale > 0.0 {
                (f64::from(w) / scale).round().clamp(-32767.0, 32767.0)
            } else {
                0.0
            };
            values.push(q as i16);
            data.push((q * scale) as f32);
        }
        requant.push(requant_pair(scale * factor));
    }
    Ok(Tensor {
        data,
        quant: None,
        integer: Some(IntegerTensor::I16Requant { values, requant }),
        ..t.clone()
    })
}

/// A vector as `i32` with `frac` fraction bits (rounded, saturated).
fn i32_vector(t: &Tensor, frac: u8) -> Tensor {
    let scale = 2f64.powi(i32::from(frac));
    let values: Vec<i32> = t
        .data
        .iter()
        .map(|&v| {
            (f64::from(v) * scale)
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect();
    Tensor {
        data: values
            .iter()
            .map(|&v| (f64::from(v) / scale) as f32)
            .collect(),
        integer: Some(IntegerTensor::I32(values)),
        ..t.clone()
    }
}

/// A vector as `i16` with `frac` fraction bits (rounded, saturated).
fn i16_vector(t: &Tensor, frac: u8) -> Tensor {
    let scale = 2f64.powi(i32::from(frac));
    let values: Vec<i16> = t
        .data
        .iter()
        .map(|&v| (f64::from(v) * scale).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    Tensor {
        data: values
            .iter()
            .map(|&v| (f64::from(v) / scale) as f32)
            .collect(),
        integer: Some(IntegerTensor::I16(values)),
        ..t.clone()
    }
}

/// The error of one output feature against the float model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureError {
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Mean absolute difference.
    pub mean_abs: f32,
    /// Range (max − min) of the float model's output for this feature.
    pub range: f32,
}

impl FeatureError {
    /// `max_abs / range` (0 when the range is 0 and so is the error).
    pub fn relative(&self) -> f32 {
        if self.range > 0.0 {
            self.max_abs / self.range
        } else if self.max_abs == 0.0 {
            0.0
        } else {
            f32::INFINITY
        }
    }
}

/// Runs both blobs over `input` (in the layout `tinyrnn run` reads) and returns the error of `quantized`
/// against `reference` per output feature (the last axis of the output array).
pub fn error_per_output(
    reference: &[u8],
    quantized: &[u8],
    input: &Array,
) -> Result<Vec<FeatureError>> {
    let want = run::run_batch(reference, input).context("running the f32 model")?;
    let got = run::run_batch(quantized, input).context("running the quantized model")?;
    let (Data::Float(want_v), Data::Float(got_v)) = (&want.data, &got.data) else {
        bail!("the engine returned integers");
    };
    ensure!(
        want.shape == got.shape,
        "the two models give outputs of shapes {:?} and {:?}",
        want.shape,
        got.shape
    );
    let width = want.shape.last().copied().unwrap_or(1).max(1);
    let mut errors = Vec::with_capacity(width);
    for feature in 0..width {
        let pairs = want_v.iter().zip(got_v).skip(feature).step_by(width);
        let (mut max_abs, mut sum, mut n) = (0.0f32, 0.0f64, 0usize);
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (w, g) in pairs {
            let d = (w - g).abs();
            // NaN compares false: count it as an infinite error.
            max_abs = if d.is_nan() {
                f32::INFINITY
            } else {
                max_abs.max(d)
            };
            sum += f64::from(d);
            n += 1;
            lo = lo.min(*w);
            hi = hi.max(*w);
        }
        errors.push(FeatureError {
            max_abs,
            mean_abs: if n > 0 { (sum / n as f64) as f32 } else { 0.0 },
            range: if n > 0 { hi - lo } else { 0.0 },
        });
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_their_own_scale() {
        // At `max / 127` the second weight sits half a step off the grid (−63.5); one level down
        // (126, −63) both are on it, and the search finds that scale.
        let t = Tensor::matrix(2, 3, vec![1.27, -0.635, 0.0, 0.0, 0.0, 0.0]).unwrap();
        let q = per_row_i8(&t).unwrap();
        let quant = q.quant.unwrap();
        assert_eq!(quant.values, vec![126, -63, 0, 0, 0, 0]);
        assert!((f64::from(quant.scales[0]) - 1.27 / 126.0).abs() < 1e-8);
        assert_eq!(quant.scales[1], 0.0);
        for (got, want) in q.data.iter().zip(&t.data) {
            assert!((got - want).abs() < 1e-6, "{got} for {want}");
        }
    }

    /// Seeded uniform values in `[-1, 1)` (xorshift64*), so the test needs no random-number crate.
    fn uniform(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                (bits as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// `‖w − data‖²` of one row, and the same for plain rounding at `max|w| / 127`.
    fn row_errors(row: &[f32], quantized: &[f32]) -> (f64, f64) {
        let max = row.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        let scale = max / 127.0;
        let plain: f64 = row
            .iter()
            .map(|&w| {
                let w = f64::from(w);
                (w - scale * (w / scale).round()).powi(2)
            })
            .sum();
        let searched: f64 = row
            .iter()
            .zip(quantized)
            .map(|(&w, &q)| (f64::from(w) - f64::from(q)).powi(2))
            .sum();
        (searched, plain)
    }

    #[test]
    fn the_scale_search_never_loses_to_the_plain_scale_and_wins_on_narrow_rows() {
        for cols in [1usize, 2, 3, 4, 8, 16, 40] {
            let rows = 64;
            let t = Tensor::matrix(rows, cols, uniform(cols as u64, rows * cols)).unwrap();
            let q = per_row_i8(&t).unwrap();
            let quant = q.quant.as_ref().unwrap();
            let (mut searched, mut plain) = (0.0, 0.0);
            for (r, (row, got)) in t
                .data
                .chunks_exact(cols)
                .zip(q.data.chunks_exact(cols))
                .enumerate()
            {
                let (s, p) = row_errors(row, got);
                // The plain scale is the first one tried; only the f32 of `data` may add to it.
                assert!(
                    s <= p * (1.0 + 1e-6) + 1e-14,
                    "{cols} columns, row {r}: {s} > {p}"
                );
                assert!(quant.scales[r] > 0.0);
                searched += s;
                plain += p;
            }
            assert!(quant.values.iter().all(|v| (-127..=127).contains(v)));
            if cols == 1 {
                // One weight is always on the grid (±127), with either scale.
                assert!(searched < 1e-12, "{searched}");
                continue;
            }
            let ratio = searched / plain;
            println!("{cols} columns: squared error {ratio:.3} of plain rounding's");
            // Measured: 0.016, 0.072, 0.126, 0.372, 0.581 and 0.796 for 2, 3, 4, 8, 16 and 40
            // columns: the fewer the weights, the likelier a scale that suits them all.
            let bound = match cols {
                2 => 0.03,
                3 => 0.12,
                4 => 0.2,
                8 => 0.5,
                16 => 0.75,
                _ => 0.95,
            };
            assert!(
                ratio <= bound,
                "{cols} columns: {ratio:.3} of plain rounding's error"
            );
        }
    }

    #[test]
    fn requant_pairs_stand_for_their_multiplier() {
        for real in [1e-12, 3.7e-5, 0.01, 0.5, 0.999_999_9, 1.0, 17.25, 1e6] {
            let (m, s) = requant_pair(real);
            assert!((1..=62).contains(&s), "{real}: shift {s}");
            let back = f64::from(m) / 2f64.powi(s);
            assert!(
                (back - real).abs() <= real * 1e-9 + 2f64.powi(-62),
                "{real}: {back}"
            );
        }
        assert_eq!(requant_pair(0.0), (0, 1));
        assert_eq!(requant_pair(1e12), (i32::MAX, 1));
    }

    #[test]
    fn formats_hold_the_calibrated_range() {
        assert_eq!(frac_for(1.0, false), 14);
        assert_eq!(frac_for(0.9, false), 15);
        assert_eq!(frac_for(0.0, true), 15);
        assert_eq!(frac_for(1e-9, true), MAX_FRAC);
        assert_eq!(frac_for(1e9, true), 0);
        for max in [0.3f32, 2.0, 100.0] {
            let f = frac_for(max, true);
            assert!(f64::from(max * HEADROOM) * 2f64.powi(i32::from(f)) <= 32767.0);
            assert!(f64::from(max * HEADROOM) * 2f64.powi(i32::from(f) + 1) > 32767.0);
        }
    }

    #[test]
    fn i8x16_without_calibration_data_says_what_to_pass() {
        let spec = crate::spec::ModelSpec {
            input: tinyrnn::format::Input {
                kind: InputKind::Features(1),
                steps: None,
            },
            layers: vec![],
            io: tinyrnn::format::IoLayout {
                input: tinyrnn::format::InputLayout::BatchFirst,
                output: tinyrnn::format::OutputLayout::BatchFirst,
            },
            name: "m".into(),
            source: "s".into(),
            vocabulary: None,
            scaling: Default::default(),
            annotations: Default::default(),
            fixed: None,
        };
        let err = format!("{:#}", quantize(&spec, Mode::I8x16).unwrap_err());
        assert!(err.contains("--calibrate X.npy|X.csv"), "{err}");
    }

    #[test]
    fn non_finite_weights_are_refused() {
        let t = Tensor::matrix(1, 2, vec![1.0, f32::NAN]).unwrap();
        assert!(per_row_i8(&t).is_err());
    }
}
