//! Int16-weight kernels for f32-arithmetic models: int16 weights with one f32 scale per row, f32
//! activations. The converter stores narrow matrices, embedding tables and skip maps of `i8w` models
//! this way.
//!
//! A weight `q` in row `r` stands for `scales[r] × q`. Each product `(q / 2^15) × x` is formed in f32
//! (an i16 converts to f32 exactly, and dividing by a power of two is exact) and the row's sum is scaled
//! once by `2^15 × scales[r]`: the result equals `scales[r] × Σ q x` bit for bit, and each term stays
//! within `|x|`, as in [`super::int8`]. Every row's sum is formed left to right from 0 by the same
//! plain Rust on every target, so host and Cortex-M agree bit for bit. Lengths were checked when the
//! model was opened; the loops use `zip` and `chunks_exact`, so a mismatch shortens a loop instead of
//! panicking.

use super::{scaled_dot, ScaledWeight};

/// `2^15`: a weight's scale unit.
const UNIT: f32 = <i16 as ScaledWeight>::UNIT;

/// `y_r = s_r Σ_j q_rj x_j`; one to three columns as [`super::scaled_matvec`] writes them out.
#[inline]
pub(crate) fn matvec(q: &[i16], scales: &[f32], x: &[f32], y: &mut [f32]) {
    super::scaled_matvec(q, scales, x, y, |q, scales, x, y| {
        for_each_row_dot(q, scales, x, y, |out, s, dot| *out = s * UNIT * dot)
    });
}

/// `y_r += s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec_add(q: &[i16], scales: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for_each_row_dot(q, scales, x, y, |out, s, dot| *out += s * UNIT * dot);
}

/// Rows one pass over `x` serves: each `x_j` is loaded once for four rows.
const BLOCK: usize = 4;

/// Calls `finish(y_r, s_r, dot(row r, x))` for every row; `x` is not empty. Four rows per pass over
/// `x`, each row's sum still formed left to right from 0, so the results are those of one [`scaled_dot`]
/// per row.
#[inline(always)]
fn for_each_row_dot(
    q: &[i16],
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
    mut finish: impl FnMut(&mut f32, f32, f32),
) {
    let n = x.len().max(1);
    let rows = y.len().min(q.len() / n).min(scales.len());
    let blocked = rows - rows % BLOCK;
    let (q_blocks, q_tail) = q.split_at_checked(blocked * n).unwrap_or((&[], q));
    let (y_blocks, y_tail) = y
        .split_at_mut_checked(blocked)
        .unwrap_or((&mut [], &mut []));
    let (s_blocks, s_tail) = scales.split_at_checked(blocked).unwrap_or((&[], scales));
    for ((out, block), s) in super::as_chunks_mut::<_, BLOCK>(y_blocks)
        .iter_mut()
        .zip(q_blocks.chunks_exact(BLOCK * n))
        .zip(super::as_chunks::<_, BLOCK>(s_blocks).0)
    {
        let (r0, rest) = block.split_at_checked(n).unwrap_or((&[], &[]));
        let (r1, rest) = rest.split_at_checked(n).unwrap_or((&[], &[]));
        let (r2, r3) = rest.split_at_checked(n).unwrap_or((&[], &[]));
        let mut sums = [0.0f32; BLOCK];
        for ((((x, a), b), c), d) in x.iter().zip(r0).zip(r1).zip(r2).zip(r3) {
            sums[0] += a.unit_value() * x;
            sums[1] += b.unit_value() * x;
            sums[2] += c.unit_value() * x;
            sums[3] += d.unit_value() * x;
        }
        for ((out, s), sum) in out.iter_mut().zip(s).zip(sums) {
            finish(out, *s, sum);
        }
    }
    for ((out, row), s) in y_tail.iter_mut().zip(q_tail.chunks_exact(n)).zip(s_tail) {
        finish(out, *s, scaled_dot(row, x));
    }
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
        crate::kernels::scaled_row(&q[3..], &scales[1..], &mut row);
        assert_eq!(row, [-3.0 * 2.0e-5, 12345.0 * 2.0e-5, 0.0]);
    }

    #[test]
    fn blocked_and_narrow_rows_equal_one_dot_per_row() {
        // 9 rows (two blocks of four and one left over), at 1 to 6 columns.
        for n in 1..=6usize {
            let mut q = [0i16; 54];
            q.iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = ((k as i32 * 7919) % 65535 - 32767) as i16);
            let q = &q[..9 * n];
            let mut scales = [0.0f32; 9];
            scales
                .iter_mut()
                .enumerate()
                .for_each(|(r, s)| *s = 1.0e-4 * (r + 1) as f32);
            let mut x = [0.0f32; 6];
            x.iter_mut()
                .enumerate()
                .for_each(|(j, v)| *v = 0.37 * j as f32 - 0.9);
            let x = &x[..n];
            let mut y = [0.0f32; 9];
            matvec(q, &scales, x, &mut y);
            for (r, (row, s)) in q.chunks(n).zip(&scales).enumerate() {
                let one = s * UNIT * scaled_dot(row, x);
                assert_eq!(y[r].to_bits(), one.to_bits(), "{n} columns, row {r}");
            }
        }
    }

    #[test]
    fn short_inputs_shorten_loops_instead_of_panicking() {
        // Three rows declared, two stored: the third is left as it was.
        let mut y = [7.0f32; 3];
        matvec(&[1, 2, 3, 4], &[1.0, 1.0, 1.0], &[1.0, 0.0], &mut y);
        assert_eq!(y, [1.0, 3.0, 7.0]);
    }
}
