//! Importers: each reads one framework's file format into a [`ModelSpec`].
//!
//! Only importers know the frameworks' gate orders and bias layouts; everything past them speaks the
//! engine's (LSTM `i f g o`, GRU `z r n`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::spec::ModelSpec;

pub mod keras;
pub mod onnx;

/// Model file formats the importer recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// Keras 3 `.keras`: a zip with `config.json` and `model.weights.h5`.
    KerasZip,
    /// Legacy Keras `.h5`: HDF5 with a `model_config` attribute.
    KerasH5,
    /// ONNX protobuf.
    Onnx,
}

/// Recognises the format from the file's first bytes, falling back to its extension for ONNX, whose
/// protobuf encoding has no magic.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<SourceFormat> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(SourceFormat::KerasZip);
    }
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Ok(SourceFormat::KerasH5);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    // ModelProto's first field is usually ir_version (field 1, varint): tag byte 0x08.
    if ext.as_deref() == Some("onnx") || bytes.first() == Some(&0x08) {
        return Ok(SourceFormat::Onnx);
    }
    bail!(
        "{}: not a recognised model file (expected a Keras .keras zip, a Keras .h5 HDF5 file or an ONNX \
         protobuf)",
        path.display()
    )
}

/// Reads a model file of any supported format.
pub fn import(path: &Path) -> Result<ModelSpec> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = match detect(path, &bytes)? {
        SourceFormat::KerasZip => keras::import_keras_zip(path, &bytes),
        SourceFormat::KerasH5 => keras::import_keras_h5(path, &bytes),
        SourceFormat::Onnx => onnx::import_onnx(path, &bytes),
    };
    spec.with_context(|| format!("importing {}", path.display()))
}
