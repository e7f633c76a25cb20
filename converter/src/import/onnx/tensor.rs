//! Constant tensors: initializers, `Constant` nodes and what the importer folds from them.
//!
//! Integer tensors may hold symbolic entries, [`Sym::Batch`] and [`Sym::Time`], so that shape arithmetic
//! exporters emit (`Shape` → `Gather` → `Concat` → `Reshape`/`ConstantOfShape`) folds even though the batch
//! size (and a free sequence length) is only known at run time.

use anyhow::{bail, ensure, Context, Result};

use super::proto::{data_type, TensorProto};

/// Most elements a folded constant may have; guards against files that ask for huge tensors.
pub const MAX_ELEMENTS: usize = 1 << 26;

/// An integer that may stand for a size only known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sym {
    /// A known value.
    Int(i64),
    /// The batch size.
    Batch,
    /// The sequence length, when the model does not fix it.
    Time,
}

/// Element values.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Floating-point values (any float type, read as f32).
    F(Vec<f32>),
    /// Integer or boolean values, possibly symbolic.
    I(Vec<Sym>),
}

/// A constant n-dimensional tensor in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Dimensions, outermost first; empty for a scalar.
    pub dims: Vec<usize>,
    /// `dims.iter().product()` values.
    pub data: Data,
}

/// Number of elements of `dims`, checked against [`MAX_ELEMENTS`].
pub fn numel(dims: &[usize]) -> Result<usize> {
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .with_context(|| {
            format!("a tensor of shape {dims:?} is too large (at most {MAX_ELEMENTS} elements)")
        })?;
    Ok(n)
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Normalises a possibly negative axis against `rank`.
pub fn axis_index(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    ensure!(
        (0..r).contains(&a),
        "axis {axis} is out of range for rank {rank}"
    );
    Ok(a as usize)
}

impl Const {
    /// A float tensor, checking the element count.
    pub fn float(dims: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        ensure!(
            numel(&dims)? == values.len(),
            "shape {dims:?} needs {} values, got {}",
            numel(&dims)?,
            values.len()
        );
        Ok(Self {
            dims,
            data: Data::F(values),
        })
    }

    /// An integer tensor, checking the element count.
    pub fn ints(dims: Vec<usize>, values: Vec<Sym>) -> Result<Self> {
        ensure!(
            numel(&dims)? == values.len(),
            "shape {dims:?} needs {} values, got {}",
            numel(&dims)?,
            values.len()
        );
        Ok(Self {
            dims,
            data: Data::I(values),
        })
    }

    /// A 1-D integer tensor.
    pub fn int_vector(values: Vec<Sym>) -> Self {
        Self {
            dims: vec![values.len()],
            data: Data::I(values),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    /// Reads an ONNX `TensorProto`.
    pub fn from_proto(t: &TensorProto) -> Result<Self> {
        ensure!(
            t.data_location != 1,
            "tensor '{}' keeps its values in an external file, which is not supported; save the model with \
             its weights inside (onnx.save_model(..., save_as_external_data=False))",
            t.name
        );
        let dims = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .with_context(|| format!("tensor '{}' has a negative dimension {d}", t.name))
            })
            .collect::<Result<Vec<_>>>()?;
        let n = numel(&dims)?;
        let raw = &t.raw_data;
        let from_raw = !raw.is_empty();
        let check = |got: usize| -> Result<()> {
            ensure!(
                got == n,
                "tensor '{}' of shape {dims:?} needs {n} values, the file has {got}",
                t.name
            );
            Ok(())
        };
        let data = match t.data_type {
            data_type::FLOAT if from_raw => {
                check(raw.len() / 4)?;
                ensure!(raw.len() % 4 == 0, "tensor '{}' has a truncated raw_data", t.name);
                Data::F(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            data_type::FLOAT => {
                check(t.float_data.len())?;
                Data::F(t.float_data.clone())
            }
            data_type::DOUBLE if from_raw => {
                check(raw.len() / 8)?;
                ensure!(raw.len() % 8 == 0, "tensor '{}' has a truncated raw_data", t.name);
                Data::F(
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                        .collect(),
                )
            }
            data_type::DOUBLE => {
                check(t.double_data.len())?;
                Data::F(t.double_data.iter().map(|&v| v as f32).collect())
            }
            data_type::FLOAT16 if from_raw => {
                check(raw.len() / 2)?;
                ensure!(raw.len() % 2 == 0, "tensor '{}' has a truncated raw_data", t.name);
                Data::F(raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect())
            }
            data_type::FLOAT16 => {
                check(t.int32_data.len())?;
                Data::F(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect())
            }
            data_type::INT64 if from_raw => {
                check(raw.len() / 8)?;
                ensure!(raw.len() % 8 == 0, "tensor '{}' has a truncated raw_data", t.name);
                Data::I(
                    raw.chunks_exact(8)
                        .map(|c| Sym::Int(i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])))
                        .collect(),
                )
            }
            data_type::INT64 => {
                check(t.int64_data.len())?;
                Data::I(t.int64_data.iter().map(|&v| Sym::Int(v)).collect())
            }
            data_type::INT32 | data_type::UINT32 if from_raw => {
                check(raw.len() / 4)?;
                ensure!(raw.len() % 4 == 0, "tensor '{}' has a truncated raw_data", t.name);
                let signed = t.data_type == data_type::INT32;
                Data::I(
                    raw.chunks_exact(4)
                        .map(|c| {
                            let b = [c[0], c[1], c[2], c[3]];
                            Sym::Int(if signed { i32::from_le_bytes(b) as i64 } else { u32::from_le_bytes(b) as i64 })
                        })
                        .collect(),
                )
            }
            data_type::UINT32 => {
                check(t.uint64_data.len())?;
                Data::I(t.uint64_data.iter().map(|&v| Sym::Int(v as i64)).collect())
            }
            data_type::INT16 | data_type::UINT16 if from_raw => {
                check(raw.len() / 2)?;
                ensure!(raw.len() % 2 == 0, "tensor '{}' has a truncated raw_data", t.name);
                let signed = t.data_type == data_type::INT16;
                Data::I(
                    raw.chunks_exact(2)
                        .map(|c| {
                            let b = [c[0], c[1]];
                            Sym::Int(if signed { i16::from_le_bytes(b) as i64 } else { u16::from_le_bytes(b) as i64 })
                        })
                        .collect(),
                )
            }
            data_type::INT8 | data_type::UINT8 | data_type::BOOL if from_raw => {
                check(raw.len())?;
                let signed = t.data_type == data_type::INT8;
                Data::I(raw.iter().map(|&b| Sym::Int(if signed { b as i8 as i64 } else { b as i64 })).collect())
            }
            data_type::INT32
            | data_type::INT16
            | data_type::UINT16
            | data_type::INT8
            | data_type::UINT8
            | data_type::BOOL => {
                check(t.int32_data.len())?;
                Data::I(t.int32_data.iter().map(|&v| Sym::Int(v as i64)).collect())
            }
            other => bail!(
                "tensor '{}' has element type {} ({other}), which is not supported; float, double, float16 and \
                 integer tensors are read",
                t.name,
                data_type_name(other)
            ),
        };
        Ok(Self { dims, data })
    }

    /// The values as f32 (integers converted), failing on symbolic entries.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        match &self.data {
            Data::F(v) => Ok(v.clone()),
            Data::I(v) => v
                .iter()
                .map(|s| match s {
                    Sym::Int(i) => Ok(*i as f32),
                    _ => bail!("a run-time size (batch or sequence length) is used as a number"),
                })
                .collect(),
        }
    }

    /// The values as integers, failing on floats and symbolic entries.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        match &self.data {
            Data::F(_) => bail!("expected an integer tensor, found a float one"),
            Data::I(v) => v
                .iter()
                .map(|s| match s {
                    Sym::Int(i) => Ok(*i),
                    Sym::Batch => bail!("the batch size is used where a fixed integer is needed"),
                    Sym::Time => {
                        bail!("the (free) sequence length is used where a fixed integer is needed")
                    }
                })
                .collect(),
        }
    }

    /// The values as possibly symbolic integers, failing on floats.
    pub fn to_syms(&self) -> Result<Vec<Sym>> {
        match &self.data {
            Data::F(_) => bail!("expected an integer tensor, found a float one"),
            Data::I(v) => Ok(v.clone()),
        }
    }

    /// The same values under new dimensions.
    pub fn reshaped(mut self, dims: Vec<usize>) -> Result<Self> {
        ensure!(
            numel(&dims)? == self.len(),
            "cannot reshape {} values to {dims:?}",
            self.len()
        );
        self.dims = dims;
        Ok(self)
    }

    /// Applies `f` to the flat element indices of a new layout: element `k` of the result is element
    /// `f(k)` of `self`.
    fn remap(&self, dims: Vec<usize>, index: impl Fn(usize) -> usize) -> Result<Self> {
        let n = numel(&dims)?;
        let data = match &self.data {
            Data::F(v) => Data::F(
                (0..n)
                    .map(|k| v.get(index(k)).copied().unwrap_or(0.0))
                    .collect(),
            ),
            Data::I(v) => Data::I(
                (0..n)
                    .map(|k| v.get(index(k)).copied().unwrap_or(Sym::Int(0)))
                    .collect(),
            ),
        };
        Ok(Self { dims, data })
    }

    /// Permutes the axes.
    pub fn transpose(&self, perm: &[usize]) -> Result<Self> {
        let rank = self.dims.len();
        let mut seen = vec![false; rank];
        ensure!(
            perm.len() == rank,
            "perm {perm:?} does not match rank {rank}"
        );
        for &p in perm {
            ensure!(p < rank && !seen[p], "perm {perm:?} is not a permutation");
            seen[p] = true;
        }
        let out_dims: Vec<usize> = perm.iter().map(|&p| self.dims[p]).collect();
        let in_strides = strides(&self.dims);
        let out_strides = strides(&out_dims);
        self.remap(out_dims.clone(), |k| {
            let mut src = 0;
            for (axis, &p) in perm.iter().enumerate() {
                let coord = (k / out_strides[axis]) % out_dims[axis].max(1);
                src += coord * in_strides[p];
            }
            src
        })
    }

    /// Elements `start..end` (step 1) along `axis`.
    pub fn slice(&self, axis: usize, start: usize, end: usize) -> Result<Self> {
        let dim = *self.dims.get(axis).context("slice axis out of range")?;
        ensure!(
            start <= end && end <= dim,
            "slice {start}..{end} is out of range for {dim}"
        );
        self.take(axis, &(start..end).collect::<Vec<_>>(), false)
    }

    /// Elements at `indices` along `axis`; `drop_axis` removes the axis (a scalar index).
    pub fn take(&self, axis: usize, indices: &[usize], drop_axis: bool) -> Result<Self> {
        let dim = *self.dims.get(axis).context("axis out of range")?;
        ensure!(
            indices.iter().all(|&i| i < dim),
            "index out of range for a dimension of {dim}"
        );
        let inner: usize = self.dims[axis + 1..].iter().product();
        let mut dims = self.dims.clone();
        dims[axis] = indices.len();
        let n_idx = indices.len().max(1);
        let mut out = self.remap(dims, |k| {
            let i = k % inner.max(1);
            let j = (k / inner.max(1)) % n_idx;
            let o = k / (inner.max(1) * n_idx);
            (o * dim + indices.get(j).copied().unwrap_or(0)) * inner + i
        })?;
        if drop_axis && indices.len() == 1 {
            out.dims.remove(axis);
        }
        Ok(out)
    }

    /// Concatenation along `axis`.
    pub fn concat(parts: &[Const], axis: i64) -> Result<Self> {
        let first = parts.first().context("Concat of nothing")?;
        let rank = first.dims.len();
        let axis = axis_index(axis, rank)?;
        let float = matches!(first.data, Data::F(_));
        let mut dims = first.dims.clone();
        dims[axis] = 0;
        for p in parts {
            ensure!(p.dims.len() == rank, "Concat of tensors of different ranks");
            ensure!(
                matches!(p.data, Data::F(_)) == float,
                "Concat of float and integer tensors"
            );
            for (a, (&d, &e)) in p.dims.iter().zip(&first.dims).enumerate() {
                ensure!(
                    a == axis || d == e,
                    "Concat of tensors of shapes {:?} and {:?}",
                    first.dims,
                    p.dims
                );
            }
            dims[axis] += p.dims[axis];
        }
        let outer: usize = dims[..axis].iter().product();
        let mut fv = Vec::new();
        let mut iv = Vec::new();
        for o in 0..outer {
            for p in parts {
                let chunk: usize = p.dims[axis..].iter().product();
                let range = o * chunk..(o + 1) * chunk;
                match &p.data {
                    Data::F(v) => {
                        fv.extend_from_slice(v.get(range).context("Concat: inconsistent tensor")?)
                    }
                    Data::I(v) => {
                        iv.extend_from_slice(v.get(range).context("Concat: inconsistent tensor")?)
                    }
                }
            }
        }
        numel(&dims)?;
        Ok(Self {
            dims,
            data: if float { Data::F(fv) } else { Data::I(iv) },
        })
    }

    /// Broadcasts to `dims` (numpy rules).
    pub fn broadcast_to(&self, dims: &[usize]) -> Result<Self> {
        ensure!(
            self.dims.len() <= dims.len(),
            "cannot broadcast {:?} to {dims:?}",
            self.dims
        );
        let offset = dims.len() - self.dims.len();
        for (i, &d) in self.dims.iter().enumerate() {
            ensure!(
                d == dims[offset + i] || d == 1,
                "cannot broadcast {:?} to {dims:?}",
                self.dims
            );
        }
        let in_strides = strides(&self.dims);
        let out_strides = strides(dims);
        let own = self.dims.clone();
        self.remap(dims.to_vec(), |k| {
            let mut src = 0;
            for (i, &d) in own.iter().enumerate() {
                if d != 1 {
                    let coord = (k / out_strides[offset + i]) % dims[offset + i].max(1);
                    src += coord * in_strides[i];
                }
            }
            src
        })
    }

    /// Element-wise `f(a, b)` with numpy broadcasting, for float tensors (integers are converted).
    pub fn binary_f32(a: &Const, b: &Const, f: impl Fn(f32, f32) -> f32) -> Result<Self> {
        let dims = broadcast_dims(&a.dims, &b.dims)?;
        let (x, y) = (
            a.broadcast_to(&dims)?.to_f32()?,
            b.broadcast_to(&dims)?.to_f32()?,
        );
        Const::float(dims, x.iter().zip(&y).map(|(p, q)| f(*p, *q)).collect())
    }

    /// Element-wise `f(a, b)` with numpy broadcasting, for integer tensors with fixed values.
    pub fn binary_i64(a: &Const, b: &Const, f: impl Fn(i64, i64) -> Option<i64>) -> Result<Self> {
        let dims = broadcast_dims(&a.dims, &b.dims)?;
        let (x, y) = (
            a.broadcast_to(&dims)?.to_i64()?,
            b.broadcast_to(&dims)?.to_i64()?,
        );
        let values = x
            .iter()
            .zip(&y)
            .map(|(p, q)| {
                f(*p, *q)
                    .map(Sym::Int)
                    .context("integer arithmetic overflows or divides by zero")
            })
            .collect::<Result<Vec<_>>>()?;
        Const::ints(dims, values)
    }
}

/// The broadcast shape of two shapes (numpy rules).
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        })
        .collect()
}

/// IEEE half precision bits to f32.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// A readable name of an ONNX `DataType`.
pub fn data_type_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        _ => "an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(dims: &[usize], v: &[f32]) -> Const {
        Const::float(dims.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn transpose_2x3() {
        let t = f(&[2, 3], &[1., 2., 3., 4., 5., 6.])
            .transpose(&[1, 0])
            .unwrap();
        assert_eq!(t, f(&[3, 2], &[1., 4., 2., 5., 3., 6.]));
    }

    #[test]
    fn take_slice_and_concat() {
        let t = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        assert_eq!(t.slice(1, 1, 3).unwrap(), f(&[2, 2], &[2., 3., 5., 6.]));
        assert_eq!(t.take(0, &[1], true).unwrap(), f(&[3], &[4., 5., 6.]));
        let c = Const::concat(&[t.slice(1, 0, 1).unwrap(), t.slice(1, 2, 3).unwrap()], -1).unwrap();
        assert_eq!(c, f(&[2, 2], &[1., 3., 4., 6.]));
    }

    #[test]
    fn broadcasting_binary() {
        let a = f(&[2, 1], &[1., 2.]);
        let b = f(&[3], &[10., 20., 30.]);
        let s = Const::binary_f32(&a, &b, |x, y| x + y).unwrap();
        assert_eq!(s, f(&[2, 3], &[11., 21., 31., 12., 22., 32.]));
    }

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    }

    #[test]
    fn huge_shapes_are_refused() {
        assert!(numel(&[1 << 20, 1 << 20]).is_err());
        assert!(numel(&[usize::MAX, 2]).is_err());
    }
}

#[cfg(test)]
mod proto_tests {
    use super::*;

    fn proto(data_type: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: "t".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_every_storage_field() {
        let mut t = proto(data_type::FLOAT, &[2]);
        t.float_data = vec![1.5, -2.0];
        assert_eq!(
            Const::from_proto(&t).unwrap().to_f32().unwrap(),
            vec![1.5, -2.0]
        );

        let mut t = proto(data_type::FLOAT, &[2]);
        t.raw_data = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            Const::from_proto(&t).unwrap().to_f32().unwrap(),
            vec![1.5, -2.0]
        );

        let mut t = proto(data_type::INT64, &[3]);
        t.int64_data = vec![7, -1, 3];
        assert_eq!(
            Const::from_proto(&t).unwrap().to_i64().unwrap(),
            vec![7, -1, 3]
        );

        let mut t = proto(data_type::INT64, &[1]);
        t.raw_data = (-5i64).to_le_bytes().to_vec();
        assert_eq!(Const::from_proto(&t).unwrap().to_i64().unwrap(), vec![-5]);

        let mut t = proto(data_type::INT32, &[2]);
        t.int32_data = vec![4, -4];
        assert_eq!(
            Const::from_proto(&t).unwrap().to_i64().unwrap(),
            vec![4, -4]
        );

        let mut t = proto(data_type::FLOAT16, &[1]);
        t.int32_data = vec![0x3c00];
        assert_eq!(Const::from_proto(&t).unwrap().to_f32().unwrap(), vec![1.0]);

        let mut t = proto(data_type::DOUBLE, &[1]);
        t.double_data = vec![0.25];
        assert_eq!(Const::from_proto(&t).unwrap().to_f32().unwrap(), vec![0.25]);
    }

    #[test]
    fn inconsistent_tensors_are_errors() {
        let mut t = proto(data_type::FLOAT, &[3]);
        t.float_data = vec![1.0];
        assert!(Const::from_proto(&t).is_err());
        let mut t = proto(data_type::FLOAT, &[2]);
        t.raw_data = vec![0; 7];
        assert!(Const::from_proto(&t).is_err());
        assert!(Const::from_proto(&proto(data_type::FLOAT, &[-1])).is_err());
        assert!(
            Const::from_proto(&proto(8, &[1])).is_err(),
            "strings are refused"
        );
        let mut t = proto(data_type::FLOAT, &[1]);
        t.data_location = 1;
        assert!(Const::from_proto(&t)
            .unwrap_err()
            .to_string()
            .contains("external"));
    }
}
