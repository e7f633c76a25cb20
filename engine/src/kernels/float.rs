//! f32 kernels: matrix-vector products and element-wise helpers.
//!
//! Callers hand over slices whose lengths were checked when the model was opened; the kernels iterate
//! with `zip`/`chunks_exact`, so a length mismatch shortens a loop instead of panicking.

/// `y = W x`, where `W` is row-major with `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec(w: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    // `max(1)`: never 0 here, but a zero chunk size would panic.
    for (out, row) in y.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
        *out = dot(row, x);
    }
}

/// `y += W x`, where `W` is row-major with `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec_add(w: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for (out, row) in y.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
        *out += dot(row, x);
    }
}

/// `Σ a_i b_i`.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |acc, (x, y)| acc + x * y)
}

/// `y += b`.
#[inline]
pub(crate) fn add(y: &mut [f32], b: &[f32]) {
    y.iter_mut().zip(b).for_each(|(v, b)| *v += b);
}

/// `y += a ⊙ b`.
#[inline]
pub(crate) fn add_product(y: &mut [f32], a: &[f32], b: &[f32]) {
    y.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(v, (a, b))| *v += a * b);
}

/// Clamps every value to `[-limit, limit]` (a NaN stays NaN, as with `f32::clamp`, which is not used
/// because it panics when `limit` is NaN or negative; validation rules that out, but the compiler cannot
/// see it).
#[inline]
pub(crate) fn clip(values: &mut [f32], limit: Option<f32>) {
    if let Some(limit) = limit {
        values.iter_mut().for_each(|v| {
            if *v > limit {
                *v = limit;
            } else if *v < -limit {
                *v = -limit;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_matches_hand_computation() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = [0.0; 2];
        matvec(&w, &[1.0, 0.5, -1.0], &mut y);
        assert_eq!(y, [1.0 + 1.0 - 3.0, 4.0 + 2.5 - 6.0]);
        matvec_add(&w, &[1.0, 0.0, 0.0], &mut y);
        assert_eq!(y, [0.0, 4.5]);
    }

    #[test]
    fn clip_is_symmetric() {
        let mut v = [-5.0, 0.5, 7.0];
        clip(&mut v, Some(2.0));
        assert_eq!(v, [-2.0, 0.5, 2.0]);
        clip(&mut v, None);
        assert_eq!(v, [-2.0, 0.5, 2.0]);
    }
}
