//! The converter's in-memory model: the engine's layer schema with owned tensors.

use anyhow::{bail, ensure, Result};
use tinyrnn::cell::{Mat, Values};
use tinyrnn::format::{Input, IoLayout, Layer};
use tinyrnn::Model;

/// A row-major `rows × cols` matrix; a vector has `cols == 1`. Its values are f32; a quantized tensor
/// also holds the int8 form the blob stores, and then `data` holds the values that int8 form stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Number of rows (for a weight matrix, its outputs).
    pub rows: usize,
    /// Number of columns (for a weight matrix, its inputs).
    pub cols: usize,
    /// `rows × cols` values, row-major (for a quantized tensor, `scales[r] × values[r][c]`).
    pub data: Vec<f32>,
    /// The stored int8 form, when the tensor is quantized.
    pub quant: Option<Quantized>,
}

/// A tensor in int8 with one scale per row: row `r` stands for `scales[r] × values[r]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// `rows × cols` values, row-major.
    pub values: Vec<i8>,
    /// One scale per row.
    pub scales: Vec<f32>,
}

impl Tensor {
    /// A matrix, checking that `data` holds exactly `rows × cols` values.
    pub fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        ensure!(
            rows.checked_mul(cols) == Some(data.len()),
            "tensor of {rows}×{cols} needs {} values, got {}",
            rows.saturating_mul(cols),
            data.len()
        );
        Ok(Self {
            rows,
            cols,
            data,
            quant: None,
        })
    }

    /// A column vector.
    pub fn vector(data: Vec<f32>) -> Self {
        Self {
            rows: data.len(),
            cols: 1,
            data,
            quant: None,
        }
    }

    /// The transpose of a row-major `rows × cols` matrix given as a flat slice (frameworks that store
    /// kernels as `input × output`, like Keras, need it to reach our `output × input`).
    pub fn transposed(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        ensure!(
            rows.checked_mul(cols) == Some(data.len()),
            "tensor of {rows}×{cols} needs {} values, got {}",
            rows.saturating_mul(cols),
            data.len()
        );
        let mut out = vec![0.0; data.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = data[r * cols + c];
            }
        }
        Ok(Self {
            rows: cols,
            cols: rows,
            data: out,
            quant: None,
        })
    }
}

/// A whole model as importers and training produce it and the writer serialises it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// What the model reads at each timestep.
    pub input: Input,
    /// Layers, first to last.
    pub layers: Vec<Layer<Tensor>>,
    /// Batch layouts of the source framework, for host tools.
    pub io: IoLayout,
    /// Model name.
    pub name: String,
    /// Where the model came from.
    pub source: String,
}

impl ModelSpec {
    /// Number of trainable parameters, counted as Keras `model.summary()` counts them.
    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(layer_parameter_count).sum()
    }

    /// The model an opened blob holds, with its tensors copied out (int8 tensors keep their int8 form).
    pub fn from_model(model: &Model<'_>) -> Result<Self> {
        let layers = model
            .layers()
            .map(|layer| layer.try_map(|m| tensor_of(&m)))
            .collect::<Result<Vec<_>>>()?;
        let meta = model.meta();
        Ok(Self {
            input: model.input(),
            layers,
            io: model.io(),
            name: meta.name.to_string(),
            source: meta.source.to_string(),
        })
    }

    /// Whether any tensor is stored quantized.
    pub fn is_quantized(&self) -> bool {
        let mut quantized = false;
        for layer in &self.layers {
            let _ = layer.clone().try_map(|t| {
                quantized |= t.quant.is_some();
                Ok::<_, ()>(())
            });
        }
        quantized
    }
}

/// Copies one tensor out of a blob.
fn tensor_of(m: &Mat<'_>) -> Result<Tensor> {
    match m.values {
        Values::F32(values) => Tensor::matrix(m.rows, m.cols, values.to_vec()),
        Values::I8 { values, scales } => {
            let values: Vec<i8> = values.iter().map(|&b| b as i8).collect();
            if m.cols == 0 || values.len() != m.rows * m.cols || scales.len() != m.rows {
                bail!("int8 tensor of {}×{} is inconsistent", m.rows, m.cols);
            }
            let data = values
                .chunks_exact(m.cols)
                .zip(scales)
                .flat_map(|(row, s)| row.iter().map(move |&q| s * f32::from(q)))
                .collect();
            Ok(Tensor {
                rows: m.rows,
                cols: m.cols,
                data,
                quant: Some(Quantized {
                    values,
                    scales: scales.to_vec(),
                }),
            })
        }
    }
}

/// Parameters of one layer, as Keras counts them (initial states are not parameters).
pub fn layer_parameter_count(layer: &Layer<Tensor>) -> usize {
    layer.parameter_count(|t| t.data.len())
}
