//! The converter's in-memory model: the engine's layer schema with owned tensors.

use anyhow::{bail, ensure, Result};
use tinyrnn::cell::{Mat, Values};
use tinyrnn::format::{FixedPoint, Input, IoLayout, Layer, Scaling};
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
    /// The stored int8 form, when the tensor is quantized to `i8w`.
    pub quant: Option<Quantized>,
    /// The stored integer form, when the tensor belongs to an integer-only (`i8x16`) model or is an
    /// int16 matrix with f32 row scales ([`IntegerTensor::I16Scaled`]).
    pub integer: Option<IntegerTensor>,
}

/// How a tensor is stored as integers other than int8 with f32 row scales ([`Quantized`]): every
/// tensor of an integer-only (`i8x16`) model, and the int16 matrices of an `i8w` model. `Tensor::data`
/// then holds the values the integers stand for where the tensor alone says so (biases, states,
/// [`IntegerTensor::I16Scaled`]), or the raw integers (requantized matrices, whose real scale depends
/// on the formats around them).
#[derive(Clone, Debug, PartialEq)]
pub enum IntegerTensor {
    /// Int16 values with one f32 scale per row (`i8w` models: narrow matrices and skip maps);
    /// `data` holds `scales[r] × values[r][c]`.
    I16Scaled {
        /// `rows × cols` values, row-major.
        values: Vec<i16>,
        /// One scale per row.
        scales: Vec<f32>,
    },
    /// Int8 values with one `(multiplier, shift)` requantization pair per row.
    I8Requant {
        /// `rows × cols` values, row-major.
        values: Vec<i8>,
        /// One pair per row.
        requant: Vec<(i32, i32)>,
    },
    /// Int16 values with one `(multiplier, shift)` requantization pair per row (narrow input kernels).
    I16Requant {
        /// `rows × cols` values, row-major.
        values: Vec<i16>,
        /// One pair per row.
        requant: Vec<(i32, i32)>,
    },
    /// `i16` values (initial states).
    I16(Vec<i16>),
    /// `i32` values (biases, peepholes).
    I32(Vec<i32>),
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
            integer: None,
        })
    }

    /// A column vector.
    pub fn vector(data: Vec<f32>) -> Self {
        Self {
            rows: data.len(),
            cols: 1,
            data,
            quant: None,
            integer: None,
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
            integer: None,
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
    /// What a token model's ids stand for, when known.
    pub vocabulary: Option<TokenVocabulary>,
    /// Raw-unit scalers: `n × 2` tensors of `[offset, scale]` rows, `model = (raw − offset) / scale`
    /// (see [`Scaling`]). Default: none, the model works in raw units.
    pub scaling: Scaling<Tensor>,
    /// Feature names and free-form details for the blob's metadata.
    pub annotations: Annotations,
    /// The fixed-point formats of an integer-only (`i8x16`) model; `None` otherwise.
    pub fixed: Option<FixedPoint>,
}

/// The tokens of a token model, owned ([`tinyrnn::format::Vocabulary`] in a blob).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenVocabulary {
    /// How text splits into tokens.
    pub splitting: tinyrnn::format::Splitting,
    /// The tokens in id order (single characters for [`tinyrnn::format::Splitting::Chars`]).
    pub tokens: Vec<String>,
    /// Id of a token not in the vocabulary, if the model has one.
    pub unknown: Option<u32>,
}

impl TokenVocabulary {
    /// The vocabulary a blob holds.
    pub fn from_blob(v: &tinyrnn::format::Vocabulary<'_>) -> Self {
        let tokens = match v.splitting {
            tinyrnn::format::Splitting::Chars => v.tokens.chars().map(String::from).collect(),
            tinyrnn::format::Splitting::Words { .. } => {
                v.tokens.split_terminator('\n').map(String::from).collect()
            }
        };
        Self {
            splitting: v.splitting,
            tokens,
            unknown: v.unknown,
        }
    }
}

/// Names and details a blob carries in its metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    /// Input feature names, in input order (none when unknown).
    pub inputs: Vec<String>,
    /// Output names, one per row of the output scaler (none when unknown).
    pub outputs: Vec<String>,
    /// Free-form details; `tinyrnn train` stores a JSON document of settings and metrics.
    pub info: String,
}

/// An `n × 2` scaler tensor from `(offset, scale)` pairs.
pub fn affine_map(pairs: &[(f32, f32)]) -> Tensor {
    Tensor {
        rows: pairs.len(),
        cols: 2,
        data: pairs.iter().flat_map(|&(o, s)| [o, s]).collect(),
        quant: None,
        integer: None,
    }
}

/// The `(offset, scale)` pairs of an `n × 2` scaler tensor.
pub fn affine_pairs(map: &Tensor) -> Vec<(f32, f32)> {
    map.data.chunks_exact(2).map(|p| (p[0], p[1])).collect()
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
        let scaling = model.scaling();
        let map = |values: Option<&[f32]>| {
            values
                .map(|v| Tensor::matrix(v.len() / 2, 2, v.to_vec()))
                .transpose()
        };
        Ok(Self {
            input: model.input(),
            layers,
            io: model.io(),
            name: meta.name.to_string(),
            source: meta.source.to_string(),
            scaling: Scaling {
                input: map(scaling.input)?,
                output: map(scaling.output)?,
            },
            annotations: Annotations {
                inputs: meta.input_names().map(str::to_string).collect(),
                outputs: meta.output_names().map(str::to_string).collect(),
                info: meta.info.to_string(),
            },
            vocabulary: model.vocabulary().as_ref().map(TokenVocabulary::from_blob),
            fixed: model.fixed_point().cloned(),
        })
    }

    /// Whether any tensor is stored quantized.
    pub fn is_quantized(&self) -> bool {
        let mut quantized = false;
        for layer in &self.layers {
            let _ = layer.clone().try_map(|t| {
                quantized |= t.quant.is_some() || t.integer.is_some();
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
            let data = scaled_rows(m, &values, scales, "int8")?;
            Ok(Tensor {
                rows: m.rows,
                cols: m.cols,
                data,
                quant: Some(Quantized {
                    values,
                    scales: scales.to_vec(),
                }),
                integer: None,
            })
        }
        Values::I16Scaled { values, scales } => {
            let data = scaled_rows(m, values, scales, "int16")?;
            Ok(Tensor {
                integer: Some(IntegerTensor::I16Scaled {
                    values: values.to_vec(),
                    scales: scales.to_vec(),
                }),
                ..Tensor::matrix(m.rows, m.cols, data)?
            })
        }
        Values::I8Requant { values, requant } => {
            let values: Vec<i8> = values.iter().map(|&b| b as i8).collect();
            let requant: Vec<(i32, i32)> = requant.chunks_exact(2).map(|p| (p[0], p[1])).collect();
            let data = values.iter().map(|&q| f32::from(q)).collect();
            Ok(Tensor {
                integer: Some(IntegerTensor::I8Requant { values, requant }),
                ..Tensor::matrix(m.rows, m.cols, data)?
            })
        }
        Values::I16Requant { values, requant } => {
            let requant: Vec<(i32, i32)> = requant.chunks_exact(2).map(|p| (p[0], p[1])).collect();
            let data = values.iter().map(|&q| f32::from(q)).collect();
            Ok(Tensor {
                integer: Some(IntegerTensor::I16Requant {
                    values: values.to_vec(),
                    requant,
                }),
                ..Tensor::matrix(m.rows, m.cols, data)?
            })
        }
        Values::I16(v) => Ok(Tensor {
            integer: Some(IntegerTensor::I16(v.to_vec())),
            ..Tensor::matrix(m.rows, m.cols, v.iter().map(|&x| f32::from(x)).collect())?
        }),
        Values::I32(v) => Ok(Tensor {
            integer: Some(IntegerTensor::I32(v.to_vec())),
            ..Tensor::matrix(m.rows, m.cols, v.iter().map(|&x| x as f32).collect())?
        }),
    }
}

/// The values a matrix of integers with one scale per row stands for (`scales[r] × q`), after checking
/// that `values` and `scales` fit its shape.
fn scaled_rows<Q: Copy + Into<f32>>(
    m: &Mat<'_>,
    values: &[Q],
    scales: &[f32],
    kind: &str,
) -> Result<Vec<f32>> {
    if m.cols == 0 || values.len() != m.rows * m.cols || scales.len() != m.rows {
        bail!("{kind} tensor of {}×{} is inconsistent", m.rows, m.cols);
    }
    Ok(values
        .chunks_exact(m.cols)
        .zip(scales)
        .flat_map(|(row, s)| row.iter().map(move |&q| s * q.into()))
        .collect())
}

/// Parameters of one layer, as Keras counts them (initial states are not parameters).
pub fn layer_parameter_count(layer: &Layer<Tensor>) -> usize {
    layer.parameter_count(|t| t.data.len())
}
