//! The engine's hot loops, one module per numeric mode. Nothing else in the crate loops over weights.
//! [`fixed`] is public so that firmware and tests can reach the integer-only primitives directly.
//!
//! The functions here pick the kernel for a weight matrix's element type; a model may mix f32 and int8
//! weights freely.

pub mod fixed;
pub(crate) mod float;
pub(crate) mod int8;

use crate::cell::{Mat, Values};

/// `y = W x`, where `W` has `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec(w: &Mat<'_>, x: &[f32], y: &mut [f32]) {
    match w.values {
        Values::F32(values) => float::matvec(values, x, y),
        Values::I8 { values, scales } => int8::matvec(values, scales, x, y),
    }
}

/// `y += W x`, where `W` has `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec_add(w: &Mat<'_>, x: &[f32], y: &mut [f32]) {
    match w.values {
        Values::F32(values) => float::matvec_add(values, x, y),
        Values::I8 { values, scales } => int8::matvec_add(values, scales, x, y),
    }
}

/// Writes row `row` of `w` into `y` (as f32 values; an int8 row is scaled): an embedding lookup.
#[inline]
pub(crate) fn row(w: &Mat<'_>, row: usize, y: &mut [f32]) {
    let one = w.rows(row, 1);
    match one.values {
        Values::F32(values) => y.iter_mut().zip(values).for_each(|(d, s)| *d = *s),
        Values::I8 { values, scales } => int8::dequantize_row(values, scales, y),
    }
}
