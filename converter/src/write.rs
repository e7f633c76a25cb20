//! Serialises a [`ModelSpec`] into a blob (`docs/FORMAT.md`).

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{
    align_up, DType, Header, Layer, Meta, TensorRef, CRC, CRC_LEN, FORMAT_VERSION, MAGIC,
    MAX_LAYERS, PREAMBLE_LEN,
};

use crate::spec::{IntegerTensor, ModelSpec, Tensor};

/// Identifies this converter in every blob it writes.
pub const PRODUCER: &str = concat!("tinyrnn-converter ", env!("CARGO_PKG_VERSION"));

/// Encodes `spec` as a complete blob, checksum included.
pub fn to_blob(spec: &ModelSpec) -> Result<Vec<u8>> {
    ensure!(
        spec.layers.len() <= MAX_LAYERS,
        "model '{}' has {} layers; a blob holds at most {MAX_LAYERS}",
        spec.name,
        spec.layers.len()
    );
    let mut data: Vec<u8> = Vec::new();
    let mut layers = heapless::Vec::<Layer<TensorRef>, MAX_LAYERS>::new();
    for (index, layer) in spec.layers.iter().enumerate() {
        let stored = layer
            .clone()
            .try_map(|t: Tensor| append_tensor(&mut data, &t))
            .with_context(|| format!("layer {index}"))?;
        layers
            .push(stored)
            .map_err(|_| anyhow!("too many layers"))?;
    }
    let header = Header {
        input: spec.input,
        layers,
        io: spec.io,
        meta: Meta {
            name: &spec.name,
            source: &spec.source,
            producer: PRODUCER,
        },
        fixed: spec.fixed.clone(),
    };
    let header_bytes = postcard::to_allocvec(&header).context("encoding the blob header")?;
    let data_offset =
        align_up(PREAMBLE_LEN + header_bytes.len()).context("header too large for a blob")?;
    let header_len = u32::try_from(header_bytes.len()).context("header too large for a blob")?;
    let data_offset_u32 = u32::try_from(data_offset).context("header too large for a blob")?;

    let mut blob = Vec::with_capacity(data_offset + data.len() + CRC_LEN);
    blob.extend_from_slice(&MAGIC);
    blob.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    blob.extend_from_slice(&0u16.to_le_bytes());
    blob.extend_from_slice(&header_len.to_le_bytes());
    blob.extend_from_slice(&data_offset_u32.to_le_bytes());
    blob.extend_from_slice(&header_bytes);
    blob.resize(data_offset, 0);
    blob.extend_from_slice(&data);
    let crc = CRC.checksum(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    Ok(blob)
}

fn append_tensor(data: &mut Vec<u8>, tensor: &Tensor) -> Result<TensorRef> {
    if tensor.rows.checked_mul(tensor.cols) != Some(tensor.data.len()) {
        bail!(
            "tensor declared {}×{} holds {} values",
            tensor.rows,
            tensor.cols,
            tensor.data.len()
        );
    }
    let rows = u32::try_from(tensor.rows).context("tensor too large")?;
    let cols = u32::try_from(tensor.cols).context("tensor too large")?;
    let offset = align_up(data.len()).context("data section too large")?;
    data.resize(offset, 0);
    let offset = u32::try_from(offset).context("data section too large")?;
    if let Some(integer) = &tensor.integer {
        return append_integer(data, tensor, integer, rows, cols, offset);
    }
    let Some(quant) = &tensor.quant else {
        for v in &tensor.data {
            data.extend_from_slice(&v.to_le_bytes());
        }
        return Ok(TensorRef {
            dtype: DType::F32,
            rows,
            cols,
            offset,
            scale: None,
        });
    };
    ensure!(
        quant.values.len() == tensor.data.len() && quant.scales.len() == tensor.rows,
        "int8 tensor of {}×{} holds {} values and {} scales",
        tensor.rows,
        tensor.cols,
        quant.values.len(),
        quant.scales.len()
    );
    data.extend(quant.values.iter().map(|&q| q as u8));
    // The scales (f32) follow their values, so the data section always ends on a whole f32.
    let scale = align_up(data.len()).context("data section too large")?;
    data.resize(scale, 0);
    for s in &quant.scales {
        data.extend_from_slice(&s.to_le_bytes());
    }
    Ok(TensorRef {
        dtype: DType::I8,
        rows,
        cols,
        offset,
        scale: Some(u32::try_from(scale).context("data section too large")?),
    })
}

/// Appends the stored form of an integer-only model's tensor at `offset` (already aligned).
fn append_integer(
    data: &mut Vec<u8>,
    tensor: &Tensor,
    integer: &IntegerTensor,
    rows: u32,
    cols: u32,
    offset: u32,
) -> Result<TensorRef> {
    let len = tensor.rows * tensor.cols;
    let (dtype, scale) = match integer {
        IntegerTensor::I8Requant { values, requant } => {
            ensure!(
                values.len() == len && requant.len() == tensor.rows,
                "int8 tensor of {}×{} holds {} values and {} requantization pairs",
                tensor.rows,
                tensor.cols,
                values.len(),
                requant.len()
            );
            data.extend(values.iter().map(|&q| q as u8));
            let scale = align_up(data.len()).context("data section too large")?;
            data.resize(scale, 0);
            for (m, s) in requant {
                data.extend_from_slice(&m.to_le_bytes());
                data.extend_from_slice(&s.to_le_bytes());
            }
            let scale = u32::try_from(scale).context("data section too large")?;
            (DType::I8Requant, Some(scale))
        }
        IntegerTensor::I16Requant { values, requant } => {
            ensure!(
                values.len() == len && requant.len() == tensor.rows,
                "int16 tensor of {}×{} holds {} values and {} requantization pairs",
                tensor.rows,
                tensor.cols,
                values.len(),
                requant.len()
            );
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            let scale = align_up(data.len()).context("data section too large")?;
            data.resize(scale, 0);
            for (m, s) in requant {
                data.extend_from_slice(&m.to_le_bytes());
                data.extend_from_slice(&s.to_le_bytes());
            }
            let scale = u32::try_from(scale).context("data section too large")?;
            (DType::I16Requant, Some(scale))
        }
        IntegerTensor::I16(values) => {
            ensure!(
                values.len() == len,
                "i16 tensor of {len} values holds {}",
                values.len()
            );
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            // Keep the data section a whole number of 4-byte words.
            data.resize(data.len().div_ceil(4) * 4, 0);
            (DType::I16, None)
        }
        IntegerTensor::I32(values) => {
            ensure!(
                values.len() == len,
                "i32 tensor of {len} values holds {}",
                values.len()
            );
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            (DType::I32, None)
        }
    };
    Ok(TensorRef {
        dtype,
        rows,
        cols,
        offset,
        scale,
    })
}
