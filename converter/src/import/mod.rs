//! Importers: each reads one framework's file format into a [`ModelSpec`].
//!
//! Only importers know the frameworks' gate orders and bias layouts; everything past them speaks the
//! engine's (LSTM `i f g o`, GRU `z r n`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::spec::ModelSpec;

pub mod keras;
pub mod onnx;
pub mod torch;

/// Model file formats the importer recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// Keras 3 `.keras`: a zip with `config.json` and `model.weights.h5`.
    KerasZip,
    /// Legacy Keras `.h5`: HDF5 with a `model_config` attribute.
    KerasH5,
    /// ONNX protobuf.
    Onnx,
    /// A PyTorch `state_dict` in safetensors.
    Safetensors,
    /// A NumPy `.npz` archive.
    Npz,
}

/// Recognises the format from the file's first bytes, falling back to its extension for ONNX, whose
/// protobuf encoding has no magic.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<SourceFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if bytes.starts_with(b"PK\x03\x04") {
        // Both are zips: a .npz holds .npy members, a .keras a config.json.
        return Ok(
            if ext.as_deref() == Some("npz") || zip_holds_only_npy(bytes) {
                SourceFormat::Npz
            } else {
                SourceFormat::KerasZip
            },
        );
    }
    // safetensors: an 8-byte little-endian header length, then a JSON object.
    if bytes.len() > 9 && bytes[8] == b'{' {
        return Ok(SourceFormat::Safetensors);
    }
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Ok(SourceFormat::KerasH5);
    }
    // ModelProto's first field is usually ir_version (field 1, varint): tag byte 0x08.
    if ext.as_deref() == Some("onnx") || bytes.first() == Some(&0x08) {
        return Ok(SourceFormat::Onnx);
    }
    bail!(
        "{}: not a recognised model file (expected a Keras .keras zip, a Keras .h5 HDF5 file, an ONNX \
         protobuf, a PyTorch .safetensors state_dict or a NumPy .npz)",
        path.display()
    )
}

/// Reads a model file of any supported format.
pub fn import(path: &Path) -> Result<ModelSpec> {
    import_with_arch(path, None)
}

/// Reads a model file of any supported format; `arch` describes the forward pass of a PyTorch or NumPy
/// state dict where its names and shapes leave it open ([`torch`] says how), and is refused for formats
/// that record their architecture.
pub fn import_with_arch(path: &Path, arch: Option<&str>) -> Result<ModelSpec> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let format = detect(path, &bytes)?;
    if arch.is_some() && !matches!(format, SourceFormat::Safetensors | SourceFormat::Npz) {
        bail!(
            "{}: --arch is for PyTorch .safetensors and NumPy .npz files; {format:?} files record their \
             architecture",
            path.display()
        );
    }
    let spec = match format {
        SourceFormat::KerasZip => keras::import_keras_zip(path, &bytes),
        SourceFormat::KerasH5 => keras::import_keras_h5(path, &bytes),
        SourceFormat::Onnx => onnx::import_onnx(path, &bytes),
        SourceFormat::Safetensors => torch::import_safetensors(path, &bytes, arch),
        SourceFormat::Npz => torch::import_npz(path, &bytes, arch),
    };
    spec.with_context(|| format!("importing {}", path.display()))
}

/// Whether a zip archive's members are all `.npy` arrays (a `.npz` under another name).
fn zip_holds_only_npy(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).is_ok_and(|archive| {
        !archive.is_empty() && archive.file_names().all(|n| n.ends_with(".npy"))
    })
}
