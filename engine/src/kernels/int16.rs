//! Int16-weight kernels for f32-arithmetic models: int16 weights with one f32 scale per row, f32
//! activations. The converter stores narrow matrices and skip maps of `i8w` models this way.
//!
//! A weight `q` in row `r` stands for `scales[r] × q`. Each product `(q / 2^15) × x` is formed in f32
//! (an i16 converts to f32 exactly, and dividing by a power of two is exact) and the row's sum is scaled
//! once by `2^15 × scales[r]`: the result equals `scales[r] × Σ q x` bit for bit, and each term stays
//! within `|x|`, as in [`super::int8`]. Lengths were checked when the model was opened; the loops use
//! `zip` and `chunks_exact`, so a mismatch shortens a loop instead of panicking.

/// `2^15`: a weight's scale unit.
const UNIT: f32 = 32768.0;

/// `y_r = s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec(q: &[i16], scales: &[f32], x: &[f32], y: &mut [f32]) {
    for_each_row_dot(q, scales, x, y, |out, s, dot| *out = s * UNIT * dot);
}

/// `y_r += s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec_add(q: &[i16], scales: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for_each_row_dot(q, scales, x, y, |out, s, dot| *out += s * UNIT * dot);
}

/// Calls `finish(y_r, s_r, dot(row r, x))` for every row.
#[inline(always)]
fn for_each_row_dot(
    q: &[i16],
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
    mut finish: impl FnMut(&mut f32, f32, f32),
) {
    if x.is_empty() {
        y.iter_mut()
            .zip(scales)
            .for_each(|(out, s)| finish(out, *s, 0.0));
        return;
    }
    for ((out, row), s) in y.iter_mut().zip(q.chunks_exact(x.len().max(1))).zip(scales) {
        finish(out, *s, dot(row, x));
    }
}

/// `y_j = s q_j` for the one row `q` with its scale `scales[0]`.
#[inline]
pub(crate) fn dequantize_row(q: &[i16], scales: &[f32], y: &mut [f32]) {
    let s = scales.first().copied().unwrap_or(0.0);
    y.iter_mut()
        .zip(q)
        .for_each(|(v, &q)| *v = s * f32::from(q));
}

/// `Σ (q_i / 2^15) x_i`, accumulated in f32 from 0, left to right.
#[inline]
fn dot(q: &[i16], x: &[f32]) -> f32 {
    q.iter()
        .zip(x)
        .fold(0.0, |acc, (&q, x)| acc + f32::from(q) * (1.0 / UNIT) * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_equal_their_scaled_integer_sums() {
        let q: [i16; 6] = [32767, -32768, 1, -3, 12345, 0];
        let scales = [0.5f32, 2.0e-5];
        let x = [0.25f32, -1.5, 3.0];
        let mut y = [0.0f32; 2];
        matvec(&q, &scales, &x, &mut y);
        for (r, (row, s)) in q.chunks(3).zip(scales).enumerate() {
            let exact: f64 = row
                .iter()
                .zip(&x)
                .map(|(&q, &x)| f64::from(q) * f64::from(x))
                .sum::<f64>()
                * f64::from(s);
            assert!(
                (f64::from(y[r]) - exact).abs() <= 1e-6 * exact.abs().max(1e-30),
                "row {r}: {} against {exact}",
                y[r]
            );
        }
        let before = y;
        matvec_add(&q, &scales, &x, &mut y);
        assert_eq!(y, [2.0 * before[0], 2.0 * before[1]]);
        let mut row = [0.0f32; 3];
        dequantize_row(&q[3..], &scales[1..], &mut row);
        assert_eq!(row, [-3.0 * 2.0e-5, 12345.0 * 2.0e-5, 0.0]);
    }

    #[test]
    fn short_inputs_shorten_loops_instead_of_panicking() {
        // Three rows declared, two stored: the third is left as it was.
        let mut y = [7.0f32; 3];
        matvec(&[1, 2, 3, 4], &[1.0, 1.0, 1.0], &[1.0, 0.0], &mut y);
        assert_eq!(y, [1.0, 3.0, 7.0]);
    }
}
