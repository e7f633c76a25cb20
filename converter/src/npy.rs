//! Reading and writing NumPy `.npy` arrays (format versions 1–3, little-endian, C order).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

/// The element values of an array, in the widest type of their family.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Floating-point values (`f4`, `f8`).
    Float(Vec<f32>),
    /// Integer values (`i1`…`i8`, `u1`…`u8`, `b1`).
    Int(Vec<i64>),
}

/// An n-dimensional array in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Data,
}

impl Array {
    /// A float array, checking that the shape matches the number of values.
    pub fn float(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        ensure!(
            shape.iter().product::<usize>() == data.len(),
            "shape {shape:?} needs {} values, got {}",
            shape.iter().product::<usize>(),
            data.len()
        );
        Ok(Self {
            shape,
            data: Data::Float(data),
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::Float(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a readable .npy array", path.display()))
}

/// Parses the bytes of an `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY",
        "missing the .npy magic (byte 0)"
    );
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy preamble");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy format version {v} (byte 6); versions 1 to 3 are read"),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .context("the .npy header runs past the end of the file")?;
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .context("the .npy header is not text")?;
    let descr = dict_value(header, "descr").context("the .npy header has no 'descr'")?;
    let fortran =
        dict_value(header, "fortran_order").context("the .npy header has no 'fortran_order'")?;
    ensure!(
        fortran.trim() == "False",
        "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"
    );
    let shape =
        parse_shape(dict_value(header, "shape").context("the .npy header has no 'shape'")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .context("the .npy shape overflows")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let body = &bytes[data_start..];
    let (order, kind, size) = {
        let mut chars = descr.chars();
        let order = chars.next().context("empty dtype")?;
        let kind = chars.next().context("dtype without a kind")?;
        let size: usize = chars
            .as_str()
            .parse()
            .with_context(|| format!("unknown dtype '{descr}'"))?;
        (order, kind, size)
    };
    ensure!(
        order == '<' || order == '|' || (order == '=' && cfg!(target_endian = "little")),
        "big-endian dtype '{descr}' is not supported"
    );
    let needed = count.checked_mul(size).context("the .npy size overflows")?;
    ensure!(
        body.len() >= needed,
        "the .npy data is truncated: shape {shape:?} of '{descr}' needs {needed} bytes, the file has {}",
        body.len()
    );
    let body = &body[..needed];
    let data = match (kind, size) {
        ('f', 4) => Data::Float(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        ('f', 8) => Data::Float(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        ('i', 1) => Data::Int(body.iter().map(|&b| b as i8 as i64).collect()),
        ('u', 1) | ('b', 1) => Data::Int(body.iter().map(|&b| b as i64).collect()),
        ('i', 2) => Data::Int(
            body.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        ('u', 2) => Data::Int(
            body.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
        ),
        ('i', 4) => Data::Int(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        ('u', 4) => Data::Int(
            body.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        ('i', 8) | ('u', 8) => Data::Int(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        _ => bail!("unsupported dtype '{descr}'; float32/64 and integer arrays are read"),
    };
    Ok(Array { shape, data })
}

/// Writes a float32 array as `.npy` version 1.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, encode_f32(shape, data))
        .with_context(|| format!("writing {}", path.display()))
}

/// Encodes a float32 array as the bytes of a `.npy` version 1 file.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The data must start on a 64-byte boundary; the header ends with a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let start = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[start + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        let end = rest.find(')')?;
        Some(&rest[..=end])
    } else {
        let end = rest.find(',').or_else(|| rest.find('}'))?;
        Some(&rest[..end])
    }
}

fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!("malformed shape '{text}'"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!("malformed shape '{text}'"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_round_trip() {
        let bytes = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(
            (bytes.len() - 6 * 4) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, Data::Float(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]));
    }

    #[test]
    fn scalar_and_vector_shapes() {
        assert_eq!(parse(&encode_f32(&[4], &[0.0; 4])).unwrap().shape, vec![4]);
        assert_eq!(
            parse(&encode_f32(&[], &[7.0])).unwrap().shape,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn truncated_data_is_an_error() {
        let bytes = encode_f32(&[2, 3], &[0.0; 6]);
        let err = parse(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }
}
