//! ONNX importer.

use std::path::Path;

use anyhow::{bail, Result};

use crate::spec::ModelSpec;

/// Imports an ONNX model.
pub fn import_onnx(path: &Path, _bytes: &[u8]) -> Result<ModelSpec> {
    bail!("{}: the ONNX importer is not written yet", path.display())
}
