//! Finding and reading a layer's variables in the two HDF5 layouts Keras writes.
//!
//! - Keras 3 `model.weights.h5` (inside a `.keras` archive): the variables of the layer stored at
//!   [`ConfigLayer::store_path`] sit in `<path>/<part>/vars/0`, `…/1`, … in `layer.weights` order, where
//!   `<part>` is `cell` for a recurrent layer, `forward_layer/cell` and `backward_layer/cell` for a
//!   bidirectional one, `layer` for `TimeDistributed`, and nothing for `Dense` or `Embedding`.
//! - Legacy `.h5`: `model_weights/<layer name>` lists its datasets in the `weight_names` attribute, in
//!   `layer.weights` order (a bidirectional layer: the forward direction's, then the backward's).

use anyhow::{anyhow, bail, ensure, Context, Result};
use hdf5_reader::{Dataset, Datatype, Hdf5File, OpenOptions};

use super::config::ConfigLayer;

/// Most bytes one dataset read may allocate (a blob could not hold more anyway).
const MAX_READ_BYTES: usize = 1 << 30;

/// One stored variable of a layer.
pub(super) struct Variable {
    /// Where it is in the file, for messages.
    pub path: String,
    /// Its name in `weight_names` (legacy files), without a `:0` suffix; empty in Keras 3 files.
    pub name: String,
    dataset: Dataset,
}

impl Variable {
    /// The stored shape.
    pub fn shape(&self) -> Vec<u64> {
        self.dataset.shape().to_vec()
    }

    /// Reads the values as f32 after checking that the shape is `expected`.
    pub fn read(&self, expected: &[usize], what: &str) -> Result<Vec<f32>> {
        let shape = self.shape();
        let matches = shape.len() == expected.len()
            && shape
                .iter()
                .zip(expected)
                .all(|(&s, &e)| usize::try_from(s).ok() == Some(e));
        ensure!(
            matches,
            "{what} ({}) has shape {shape:?}; expected {expected:?}",
            self.path
        );
        let count = expected
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_READ_BYTES / 8)
            .with_context(|| {
                format!("{what} ({}) of shape {expected:?} is too large", self.path)
            })?;
        let read_error =
            |e: hdf5_reader::error::Error| anyhow!("reading {what} ({}): {e}", self.path);
        match self.dataset.dtype() {
            Datatype::FloatingPoint { size: 4, .. } => {
                let mut values = vec![0f32; count];
                self.dataset.read_into(&mut values).map_err(read_error)?;
                Ok(values)
            }
            Datatype::FloatingPoint { size: 8, .. } => {
                let mut values = vec![0f64; count];
                self.dataset.read_into(&mut values).map_err(read_error)?;
                Ok(values.into_iter().map(|v| v as f32).collect())
            }
            other => bail!(
                "{what} ({}) is stored as {other:?}; float32 or float64 weights are supported",
                self.path
            ),
        }
    }
}

/// Opens HDF5 bytes, refusing a truncated file as libhdf5 does.
pub(super) fn open(bytes: &[u8]) -> Result<Hdf5File> {
    let options = OpenOptions::default().with_max_read_bytes(MAX_READ_BYTES);
    let file = Hdf5File::from_bytes_with_options(bytes, options)
        .map_err(|e| anyhow!("not a readable HDF5 file: {e}"))?;
    let superblock = file.superblock();
    let end = superblock.base_address.checked_add(superblock.eof_address);
    ensure!(
        end.is_some_and(|end| end <= bytes.len() as u64),
        "the HDF5 file is truncated: it declares {} bytes, {} are present",
        end.map_or_else(|| "more than 2^64".to_string(), |e| e.to_string()),
        bytes.len()
    );
    Ok(file)
}

/// Where a model's weights are.
pub(super) enum Store {
    /// A Keras 3 `model.weights.h5`.
    Keras3(Hdf5File),
    /// A legacy `.h5` model file.
    Legacy(Hdf5File),
}

impl Store {
    /// The variables of `layer`, one list per part (see the module doc), each in `layer.weights` order.
    pub fn variables(&self, layer: &ConfigLayer<'_>, parts: &[&str]) -> Result<Vec<Vec<Variable>>> {
        match self {
            Store::Keras3(file) => {
                check_keras3_name(file, layer)?;
                parts
                    .iter()
                    .map(|part| {
                        let path = if part.is_empty() {
                            format!("{}/vars", layer.store_path)
                        } else {
                            format!("{}/{part}/vars", layer.store_path)
                        };
                        keras3_vars(file, &path)
                    })
                    .collect()
            }
            Store::Legacy(file) => {
                let all = legacy_vars(file, &layer.name)?;
                let parts_len = parts.len().max(1);
                ensure!(
                    all.len() % parts_len == 0,
                    "the weights file lists {} weights for this layer, which do not split into {parts_len} \
                     equal parts",
                    all.len()
                );
                let per_part = all.len() / parts_len;
                let mut all = all.into_iter();
                Ok((0..parts_len)
                    .map(|_| all.by_ref().take(per_part).collect())
                    .collect())
            }
        }
    }
}

/// Keras 3.x writes the layer's name as the `name` attribute of `<path>/vars`; where it is present it
/// must be this layer's, or the config and the weights disagree about the layer order.
fn check_keras3_name(file: &Hdf5File, layer: &ConfigLayer<'_>) -> Result<()> {
    let path = format!("{}/vars", layer.store_path);
    let group = file.group(&path).map_err(|e| {
        anyhow!(
            "the weights file has no group '{path}' for this layer ({e}); it does not match the model config"
        )
    })?;
    if let Ok(attr) = group.attribute("name") {
        if let Ok(name) = attr.read_string() {
            ensure!(
                name == layer.name,
                "the weights stored at '{path}' belong to a layer named '{name}'; the weights file does not \
                 match the model config"
            );
        }
    }
    Ok(())
}

fn keras3_vars(file: &Hdf5File, path: &str) -> Result<Vec<Variable>> {
    let group = file
        .group(path)
        .map_err(|e| anyhow!("the weights file has no group '{path}' ({e})"))?;
    let (_, names) = group
        .member_names()
        .map_err(|e| anyhow!("listing '{path}' in the weights file: {e}"))?;
    let mut indexed: Vec<(usize, String)> = names
        .into_iter()
        .map(|n| {
            n.parse::<usize>()
                .map(|i| (i, n.clone()))
                .map_err(|_| anyhow!("'{path}/{n}' is not a numbered variable"))
        })
        .collect::<Result<_>>()?;
    indexed.sort();
    indexed
        .into_iter()
        .enumerate()
        .map(|(expected, (index, name))| {
            ensure!(
                index == expected,
                "'{path}' has no variable {expected} (found {index})"
            );
            let full = format!("{path}/{name}");
            let dataset = group
                .dataset(&name)
                .map_err(|e| anyhow!("reading '{full}': {e}"))?;
            Ok(Variable {
                path: full,
                name: String::new(),
                dataset,
            })
        })
        .collect()
}

fn legacy_vars(file: &Hdf5File, layer_name: &str) -> Result<Vec<Variable>> {
    let group_path = format!("model_weights/{layer_name}");
    let group = file
        .group(&group_path)
        .map_err(|e| anyhow!("the weights file has no group '{group_path}' ({e})"))?;
    let names = string_list(&group, "weight_names")
        .with_context(|| format!("the 'weight_names' of '{group_path}'"))?;
    names
        .into_iter()
        .map(|weight| {
            let path = format!("{group_path}/{weight}");
            let dataset = file
                .dataset(&path)
                .map_err(|e| anyhow!("reading '{path}': {e}"))?;
            let short = weight.rsplit('/').next().unwrap_or(&weight);
            let short = short.strip_suffix(":0").unwrap_or(short).to_string();
            Ok(Variable {
                path,
                name: short,
                dataset,
            })
        })
        .collect()
}

/// A string-list attribute (`layer_names`, `weight_names`); an empty list may be stored as an empty
/// float array.
pub(super) fn string_list(group: &hdf5_reader::group::Group, name: &str) -> Result<Vec<String>> {
    let attr = group
        .attribute(name)
        .map_err(|e| anyhow!("missing attribute '{name}' ({e})"))?;
    if attr
        .num_elements()
        .map_err(|e| anyhow!("attribute '{name}': {e}"))?
        == 0
    {
        return Ok(Vec::new());
    }
    attr.read_strings()
        .map_err(|e| anyhow!("attribute '{name}' is not a list of strings: {e}"))
}

/// A string attribute of the file's root group (`model_config`, `keras_version`).
pub(super) fn root_string(file: &Hdf5File, name: &str) -> Result<Option<String>> {
    let root = file
        .root_group()
        .map_err(|e| anyhow!("reading the root group: {e}"))?;
    let Ok(attr) = root.attribute(name) else {
        return Ok(None);
    };
    attr.read_string()
        .map(Some)
        .map_err(|e| anyhow!("the root attribute '{name}' is not a string: {e}"))
}
