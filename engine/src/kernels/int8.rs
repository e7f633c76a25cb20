//! Int8-weight kernels (`i8w`): int8 weights with one f32 scale per row, f32 activations.
//!
//! A weight byte `q` in row `r` stands for `scales[r] × (q as i8)`. Every product `(q / 128) × x` is formed
//! in f32 (an i8 converts to f32 exactly, and dividing by a power of two is exact) and the row's sum is
//! scaled once by `128 × scales[r]`, so a row costs one multiply more than its f32 counterpart. The result
//! equals `scales[r] × Σ q x` bit for bit; keeping each term within `|x|` means a row's sum overflows no
//! sooner than an f32 row whose weights are at most 1 in magnitude. Lengths were checked when the model was opened; the loops use `zip` and
//! `chunks_exact`, so a mismatch shortens a loop instead of panicking.

/// `y_r = s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec(q: &[u8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    for ((out, row), s) in y.iter_mut().zip(q.chunks_exact(x.len().max(1))).zip(scales) {
        *out = s * 128.0 * dot(row, x);
    }
}

/// `y_r += s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec_add(q: &[u8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for ((out, row), s) in y.iter_mut().zip(q.chunks_exact(x.len().max(1))).zip(scales) {
        *out += s * 128.0 * dot(row, x);
    }
}

/// `y_j = s q_j` for the one row `q` with its scale `scales[0]`.
#[inline]
pub(crate) fn dequantize_row(q: &[u8], scales: &[f32], y: &mut [f32]) {
    let s = scales.first().copied().unwrap_or(0.0);
    y.iter_mut()
        .zip(q)
        .for_each(|(v, &q)| *v = s * f32::from(q as i8));
}

/// `Σ (q_i / 128) x_i`, accumulated in f32.
#[inline]
fn dot(q: &[u8], x: &[f32]) -> f32 {
    q.iter().zip(x).fold(0.0, |acc, (&q, x)| acc + value(q) * x)
}

/// A stored byte as the signed value it encodes, divided by 128 (exactly).
#[inline]
fn value(byte: u8) -> f32 {
    f32::from(byte as i8) * (1.0 / 128.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_twos_complement_and_rows_are_scaled() {
        // Rows [1, -2, 127] × 0.5 and [-128, 0, 3] × 2.
        let q = [1u8, 0xfe, 127, 0x80, 0, 3];
        let scales = [0.5, 2.0];
        let mut y = [0.0; 2];
        matvec(&q, &scales, &[1.0, 1.0, 1.0], &mut y);
        assert_eq!(y, [0.5 * 126.0, 2.0 * -125.0]);
        matvec_add(&q, &scales, &[0.0, 1.0, 0.0], &mut y);
        assert_eq!(y, [63.0 - 1.0, -250.0]);
        let mut row = [0.0; 3];
        dequantize_row(&q[3..], &scales[1..], &mut row);
        assert_eq!(row, [-256.0, 0.0, 6.0]);
    }

    #[test]
    fn sums_overflow_no_sooner_than_unit_weights() {
        // 127 × f32::MAX would be infinite; (127 / 128) × f32::MAX is not.
        let mut y = [0.0];
        matvec(
            &[127, 0x81],
            &[1.0 / 127.0],
            &[f32::MAX, f32::MAX / 2.0],
            &mut y,
        );
        assert!(y[0].is_finite(), "{y:?}");
    }

    #[test]
    fn empty_input_zeroes_the_output() {
        let mut y = [9.0; 2];
        matvec(&[], &[1.0, 1.0], &[], &mut y);
        assert_eq!(y, [0.0, 0.0]);
    }
}
