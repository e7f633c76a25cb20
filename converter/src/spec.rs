//! The converter's in-memory model: the engine's layer schema with owned f32 tensors.

use anyhow::{ensure, Result};
use tinyrnn::format::{Input, IoLayout, Layer};

/// A row-major `rows × cols` f32 matrix; a vector has `cols == 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Number of rows (for a weight matrix, its outputs).
    pub rows: usize,
    /// Number of columns (for a weight matrix, its inputs).
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f32>,
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
        Ok(Self { rows, cols, data })
    }

    /// A column vector.
    pub fn vector(data: Vec<f32>) -> Self {
        Self {
            rows: data.len(),
            cols: 1,
            data,
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
}

/// Parameters of one layer, as Keras counts them (initial states are not parameters).
pub fn layer_parameter_count(layer: &Layer<Tensor>) -> usize {
    layer.parameter_count(|t| t.data.len())
}
