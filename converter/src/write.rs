//! Serialises a [`ModelSpec`] into a blob (`docs/FORMAT.md`).

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{
    align_up, DType, Header, Layer, Meta, TensorRef, CRC, CRC_LEN, FORMAT_VERSION, MAGIC,
    MAX_LAYERS, MAX_TENSORS, PREAMBLE_LEN,
};

use crate::spec::{ModelSpec, Tensor};

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
    let tensors: usize = spec
        .layers
        .iter()
        .map(|layer| {
            let mut count = 0;
            let _ = layer.clone().try_map(|_| {
                count += 1;
                Ok::<(), ()>(())
            });
            count
        })
        .sum();
    ensure!(
        tensors <= MAX_TENSORS,
        "model '{}' has {tensors} tensors (weights, biases, initial states); the engine holds at most \
         {MAX_TENSORS}",
        spec.name
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
