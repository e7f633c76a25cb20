//! Quantization: a float model becomes an integer one, and its error against the float model is
//! measured on data.
//!
//! `i8w` stores every weight matrix and embedding table as int8 with one f32 scale per row (symmetric,
//! `scale = max|row| / 127`, values rounded to nearest and kept in `-127..=127`). Biases, peepholes and
//! initial states stay f32, as do activations and state: the engine multiplies int8 weights by f32
//! activations and scales each row's sum once.

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::Layer;

use crate::npy::{Array, Data};
use crate::run;
use crate::spec::{ModelSpec, Quantized, Tensor};

/// A numeric mode a model can be quantized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Int8 weights with one scale per output row; f32 activations and state.
    I8w,
}

impl Mode {
    /// The mode's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::I8w => "i8w",
        }
    }
}

/// The model quantized to `mode`. Fails on a model that is already quantized, or whose weights are not
/// finite.
pub fn quantize(spec: &ModelSpec, mode: Mode) -> Result<ModelSpec> {
    ensure!(
        !spec.is_quantized(),
        "model '{}' is already quantized; quantize its f32 blob instead",
        spec.name
    );
    match mode {
        Mode::I8w => {
            let layers = spec
                .layers
                .iter()
                .enumerate()
                .map(|(index, layer)| {
                    quantize_weights(layer.clone()).with_context(|| format!("layer {index}"))
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

/// Quantizes a layer's weight matrices and embedding table; vectors stay f32.
fn quantize_weights(layer: Layer<Tensor>) -> Result<Layer<Tensor>> {
    Ok(match layer {
        Layer::Recurrent(mut r) => {
            for w in [Some(&mut r.forward), r.backward.as_mut()]
                .into_iter()
                .flatten()
            {
                w.kernel = per_row_i8(&w.kernel)?;
                w.recurrent = per_row_i8(&w.recurrent)?;
            }
            Layer::Recurrent(r)
        }
        Layer::Dense(mut d) => {
            d.weight = per_row_i8(&d.weight)?;
            Layer::Dense(d)
        }
        Layer::Embedding(mut e) => {
            e.table = per_row_i8(&e.table)?;
            Layer::Embedding(e)
        }
        Layer::Residual(mut r) => {
            r.skip = r.skip.as_ref().map(per_row_i8).transpose()?;
            Layer::Residual(r)
        }
        other => other,
    })
}

/// Symmetric int8 with one scale per row: `scale = max|row| / 127`, `q = round(w / scale)`. `data` of
/// the result holds `scale × q`, the values the engine computes with.
pub fn per_row_i8(t: &Tensor) -> Result<Tensor> {
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
    let mut values = Vec::with_capacity(t.data.len());
    let mut scales = Vec::with_capacity(t.rows);
    let mut data = Vec::with_capacity(t.data.len());
    for row in t.data.chunks_exact(t.cols) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        for &w in row {
            let q = if scale > 0.0 {
                (w / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            };
            values.push(q);
            data.push(scale * f32::from(q));
        }
        scales.push(scale);
    }
    Ok(Tensor {
        rows: t.rows,
        cols: t.cols,
        data,
        quant: Some(Quantized { values, scales }),
    })
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
    fn rows_get_their_own_scale_and_round_to_nearest() {
        let t = Tensor::matrix(2, 3, vec![1.27, -0.635, 0.0, 0.0, 0.0, 0.0]).unwrap();
        let q = per_row_i8(&t).unwrap();
        let quant = q.quant.unwrap();
        assert_eq!(quant.values, vec![127, -64, 0, 0, 0, 0]);
        assert!((quant.scales[0] - 0.01).abs() < 1e-9);
        assert_eq!(quant.scales[1], 0.0);
        assert!((q.data[1] + 0.64).abs() < 1e-6);
    }

    #[test]
    fn non_finite_weights_are_refused() {
        let t = Tensor::matrix(1, 2, vec![1.0, f32::NAN]).unwrap();
        assert!(per_row_i8(&t).is_err());
    }
}
