//! The engine's hot loops, one module per numeric mode. Nothing else in the crate loops over weights.
//! [`fixed`] is public so that firmware and tests can reach the integer-only primitives directly.
//!
//! The functions here pick the kernel for a weight matrix's element type; a model may mix f32, int8 and
//! int16 weights freely.

pub mod fixed;
pub(crate) mod float;
pub(crate) mod int16;
pub(crate) mod int8;

use crate::cell::{Mat, Values};

/// `slice.as_chunks::<N>()`, which is stable only from Rust 1.88 (above the crate's MSRV): the
/// slice's whole groups of `N` as arrays, and the rest.
#[inline(always)]
pub(crate) fn as_chunks<T, const N: usize>(slice: &[T]) -> (&[[T; N]], &[T]) {
    const { assert!(N > 0) };
    let whole = slice.len() / N;
    let (head, tail) = slice.split_at_checked(whole * N).unwrap_or((&[], slice));
    // SAFETY: `head` holds `whole × N` consecutive `T`, which is the layout of `whole` arrays
    // `[T; N]` (same alignment as `T`, no padding), borrowed for the same lifetime.
    let chunks = unsafe { core::slice::from_raw_parts(head.as_ptr().cast::<[T; N]>(), whole) };
    (chunks, tail)
}

/// [`as_chunks`] for a mutable slice (the rest is dropped).
#[inline(always)]
pub(crate) fn as_chunks_mut<T, const N: usize>(slice: &mut [T]) -> &mut [[T; N]] {
    const { assert!(N > 0) };
    let whole = slice.len() / N;
    let head = slice.get_mut(..whole * N).unwrap_or(&mut []);
    // SAFETY: as in `as_chunks` (`head.len() / N` whole arrays); `head` is borrowed mutably and
    // uniquely for the returned lifetime.
    unsafe { core::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<[T; N]>(), head.len() / N) }
}

/// A weight stored as an integer with one f32 scale per row (f32-arithmetic models): an int8 byte or an
/// int16. The kernels form each product as `(q / UNIT) × x` in f32 (exact: `UNIT` is a power of two
/// and the integer converts exactly) and scale a row's sum once by `UNIT × scale`.
pub(crate) trait ScaledWeight: Copy {
    /// The power of two a stored value is divided by.
    const UNIT: f32;
    /// The stored value as the integer it encodes.
    fn integer(self) -> f32;
    /// The stored value divided by [`Self::UNIT`], exactly.
    #[inline(always)]
    fn unit_value(self) -> f32 {
        self.integer() * (1.0 / Self::UNIT)
    }
}

impl ScaledWeight for u8 {
    const UNIT: f32 = 128.0;
    #[inline(always)]
    fn integer(self) -> f32 {
        f32::from(self as i8)
    }
}

impl ScaledWeight for i16 {
    const UNIT: f32 = 32768.0;
    #[inline(always)]
    fn integer(self) -> f32 {
        f32::from(self)
    }
}

/// `Σ (q_i / UNIT) x_i`, accumulated in f32 from 0, left to right: a row's dot product, whichever
/// loop forms it.
#[inline]
pub(crate) fn scaled_dot<W: ScaledWeight>(q: &[W], x: &[f32]) -> f32 {
    q.iter()
        .zip(x)
        .fold(0.0, |acc, (&q, x)| acc + q.unit_value() * x)
}

/// `y_j = s q_j` for the one row `q` with its scale `scales[0]`: an embedding lookup.
#[inline]
fn scaled_row<W: ScaledWeight>(q: &[W], scales: &[f32], y: &mut [f32]) {
    let s = scales.first().copied().unwrap_or(0.0);
    y.iter_mut().zip(q).for_each(|(v, &q)| *v = s * q.integer());
}

/// `y_r = s_r Σ_j q_rj x_j` for a matrix of [`ScaledWeight`]s: one to three columns (a recurrent
/// layer's input projection from a few sensor channels) in one pass over the rows with each sum
/// written out, left to right from 0 as a row's dot product folds it; wider inputs go to `rows`,
/// the kernel's own row loop.
#[inline(always)]
pub(crate) fn scaled_matvec<W: ScaledWeight>(
    q: &[W],
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
    rows: impl FnOnce(&[W], &[f32], &[f32], &mut [f32]),
) {
    match *x {
        [] => y.iter_mut().for_each(|v| *v = 0.0),
        [a] => scaled_narrow(q, scales, y, |r: &[W; 1]| 0.0 + r[0].unit_value() * a),
        [a, b] => scaled_narrow(q, scales, y, |r: &[W; 2]| {
            0.0 + r[0].unit_value() * a + r[1].unit_value() * b
        }),
        [a, b, c] => scaled_narrow(q, scales, y, |r: &[W; 3]| {
            0.0 + r[0].unit_value() * a + r[1].unit_value() * b + r[2].unit_value() * c
        }),
        _ => rows(q, scales, x, y),
    }
}

/// [`scaled_matvec`] for `N` columns, `dot(row)` being the row's sum written out.
#[inline(always)]
fn scaled_narrow<W: ScaledWeight, const N: usize>(
    q: &[W],
    scales: &[f32],
    y: &mut [f32],
    dot: impl Fn(&[W; N]) -> f32,
) {
    y.iter_mut()
        .zip(as_chunks::<_, N>(q).0)
        .zip(scales)
        .for_each(|((out, row), s)| *out = s * W::UNIT * dot(row));
}

/// `y = W x`, where `W` has `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec(w: &Mat<'_>, x: &[f32], y: &mut [f32]) {
    match w.values {
        Values::F32(values) => float::matvec(values, x, y),
        Values::I8 { values, scales } => int8::matvec(values, scales, x, y),
        Values::I16Scaled { values, scales } => int16::matvec(values, scales, x, y),
        // Validation keeps integer-only tensors out of float models.
        _ => y.iter_mut().for_each(|v| *v = 0.0),
    }
}

/// `y += W x`, where `W` has `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec_add(w: &Mat<'_>, x: &[f32], y: &mut [f32]) {
    match w.values {
        Values::F32(values) => float::matvec_add(values, x, y),
        Values::I8 { values, scales } => int8::matvec_add(values, scales, x, y),
        Values::I16Scaled { values, scales } => int16::matvec_add(values, scales, x, y),
        _ => {}
    }
}

/// Writes row `row` of `w` into `y` (as f32 values; an int8 row is scaled): an embedding lookup.
#[inline]
pub(crate) fn row(w: &Mat<'_>, row: usize, y: &mut [f32]) {
    let one = w.rows(row, 1);
    match one.values {
        Values::F32(values) => y.iter_mut().zip(values).for_each(|(d, s)| *d = *s),
        Values::I8 { values, scales } => scaled_row(values, scales, y),
        Values::I16Scaled { values, scales } => scaled_row(values, scales, y),
        _ => y.iter_mut().for_each(|v| *v = 0.0),
    }
}

/// `y = W x` of an integer-only model: each row's sum requantized by its pair. Validation makes every
/// matrix of such a model [`Values::I8Requant`].
#[inline]
pub(crate) fn matvec_q(w: &Mat<'_>, x: &[i16], y: &mut [i32]) {
    match w.values {
        Values::I8Requant { values, requant } => fixed::matvec_requant(values, requant, x, y),
        Values::I16Requant { values, requant } => {
            y.iter_mut().for_each(|v| *v = 0);
            fixed::matvec_requant_i16_add(values, requant, x, y);
        }
        _ => y.iter_mut().for_each(|v| *v = 0),
    }
}

/// `y = W x + b` of an integer-only model, the bias added to each requantized row sum with saturation:
/// [`matvec_q`] then a saturating add of `b`, in one pass (the same values). Out of line: inlined into
/// the cell step it costs registers there (measured: more instructions, not fewer).
#[inline(never)]
pub(crate) fn matvec_q_bias(w: &Mat<'_>, x: &[i16], b: &[i32], y: &mut [i32]) {
    let mut bias = b.iter();
    let mut with_bias = |out: &mut i32, value: i32| {
        *out = value.saturating_add(bias.next().copied().unwrap_or(0));
    };
    match w.values {
        Values::I8Requant { values, requant } => {
            fixed::matvec_requant_map(values, requant, x, y, &mut with_bias)
        }
        Values::I16Requant { values, requant } => {
            fixed::matvec_requant_i16_map(values, requant, x, y, &mut with_bias)
        }
        _ => y.iter_mut().for_each(|v| *v = 0),
    }
}

/// An integer-only matrix resolved once for use row by row ([`QRows::pair`]).
#[derive(Clone, Copy)]
pub(crate) enum QRows<'a> {
    /// int8 weights, one requantization pair per row.
    I8(&'a [u8], &'a [[i32; 2]]),
    /// int16 weights, one requantization pair per row.
    I16(&'a [i16], &'a [[i32; 2]]),
    /// Not an integer matrix (validation keeps these out of integer models): every row is 0.
    None,
}

impl<'a> QRows<'a> {
    /// The rows of `w`.
    pub(crate) fn of(w: &Mat<'a>) -> Self {
        match w.values {
            Values::I8Requant { values, requant } => Self::I8(values, as_chunks(requant).0),
            Values::I16Requant { values, requant } => Self::I16(values, as_chunks(requant).0),
            _ => Self::None,
        }
    }

    /// The requantized sums of rows `row` and `row + 1` with `x` (0 for a row that does not exist):
    /// the values [`matvec_q`] gives those rows. Out of line: the compact LSTM step calls it for eight
    /// row pairs per pass, and inlined there it cost ~15 kB of flash.
    #[inline(never)]
    pub(crate) fn pair(self, row: usize, x: &[i16]) -> (i32, i32) {
        match self {
            Self::I8(values, pairs) => fixed::row_pair_requant(values, pairs, row, x),
            Self::I16(values, pairs) => fixed::row_pair_requant_i16(values, pairs, row, x),
            Self::None => (0, 0),
        }
    }
}

/// `y += W x` of an integer-only model, saturating.
#[inline]
pub(crate) fn matvec_q_add(w: &Mat<'_>, x: &[i16], y: &mut [i32]) {
    match w.values {
        Values::I8Requant { values, requant } => fixed::matvec_requant_add(values, requant, x, y),
        Values::I16Requant { values, requant } => {
            fixed::matvec_requant_i16_add(values, requant, x, y)
        }
        _ => {}
    }
}

/// Row `row` of an integer-only embedding table, requantized to the layer's output format.
#[inline]
pub(crate) fn row_q(w: &Mat<'_>, row: usize, y: &mut [i16]) {
    match w.rows(row, 1).values {
        Values::I8Requant { values, requant } => {
            let (m, s) = (
                requant.first().copied().unwrap_or(0),
                requant.get(1).copied().unwrap_or(1),
            );
            y.iter_mut().zip(values).for_each(|(d, &q)| {
                *d = fixed::saturate_i16(fixed::rescale(i32::from(q as i8), m, s as u32))
            });
        }
        Values::I16Requant { values, requant } => {
            let (m, s) = (
                requant.first().copied().unwrap_or(0),
                requant.get(1).copied().unwrap_or(1),
            );
            y.iter_mut().zip(values).for_each(|(d, &q)| {
                *d = fixed::saturate_i16(fixed::rescale(i32::from(q), m, s as u32))
            });
        }
        _ => y.iter_mut().for_each(|v| *v = 0),
    }
}

/// `y_r = f(r, rescale(Σ_j q_rj x_j, m_r, s_r))` of an integer-only model: a row's requantized sum,
/// finished by `f` (bias, activation, narrowing) without a buffer of sums.
#[inline]
pub(crate) fn matvec_q_map(
    w: &Mat<'_>,
    x: &[i16],
    y: &mut [i16],
    mut f: impl FnMut(usize, i32) -> i16,
) {
    let Values::I8Requant { values, requant } = w.values else {
        y.iter_mut().for_each(|v| *v = 0);
        return;
    };
    if x.is_empty() {
        y.iter_mut().enumerate().for_each(|(r, v)| *v = f(r, 0));
        return;
    }
    for (r, ((out, row), pair)) in y
        .iter_mut()
        .zip(values.chunks_exact(x.len()))
        .zip(fixed::requant_pairs(requant))
        .enumerate()
    {
        let (multiplier, shift) = pair;
        *out = f(
            r,
            fixed::rescale_validated(fixed::dot_i8_i16(row, x), multiplier, shift as u32),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_slice_and_keep_the_rest() {
        let values = [1, 2, 3, 4, 5, 6, 7];
        let (chunks, rest) = as_chunks::<_, 2>(&values);
        assert_eq!(chunks, &[[1, 2], [3, 4], [5, 6]]);
        assert_eq!(rest, &[7]);
        let (none, all) = as_chunks::<_, 8>(&values);
        assert!(none.is_empty());
        assert_eq!(all, &values);
        let mut values = values;
        for pair in as_chunks_mut::<_, 3>(&mut values) {
            pair[0] = 0;
        }
        assert_eq!(values, [0, 2, 3, 0, 5, 6, 7]);
    }
}
