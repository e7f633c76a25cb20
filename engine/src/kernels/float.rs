//! f32 kernels: matrix-vector products and element-wise helpers.
//!
//! Callers hand over slices whose lengths were checked when the model was opened; the kernels iterate
//! with `zip`/`chunks_exact`, so a length mismatch shortens a loop instead of panicking.

/// Rows of `W` one pass over `x` serves in [`matvec`] and [`matvec_add`]: each `x` value is loaded once
/// for four rows, and the four running sums stay in registers (a Cortex-M4F has 32 single-precision
/// registers: four sums, four inputs and sixteen weights per four columns).
const BLOCK: usize = 4;

/// `y = W x`, where `W` is row-major with `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec(w: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    for_each_row_dot(w, x, y, |out, sum| *out = sum);
}

/// `y += W x`, where `W` is row-major with `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec_add(w: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for_each_row_dot(w, x, y, |out, sum| *out += sum);
}

/// Calls `finish(y_r, dot(row r of W, x))` for every row, [`BLOCK`] rows per pass over `x`. Every row's
/// sum is still formed left to right from 0, as [`dot`] does, so the results are bit-identical to one
/// [`dot`] per row (the trainer mirrors that order). `x` is not empty.
#[inline(always)]
fn for_each_row_dot(w: &[f32], x: &[f32], y: &mut [f32], mut finish: impl FnMut(&mut f32, f32)) {
    // `max(1)`: never 0 here, but a zero chunk size would panic.
    let n = x.len().max(1);
    let rows = y.len().min(w.len() / n);
    if rows < BLOCK {
        // Tiny layers: the plain loop, without the blocks' setup.
        for (out, row) in y.iter_mut().zip(w.chunks_exact(n)) {
            finish(out, dot(row, x));
        }
        return;
    }
    let blocked = rows - rows % BLOCK;
    let (w_blocks, w_tail) = w.split_at_checked(blocked * n).unwrap_or((&[], w));
    let (y_blocks, y_tail) = y
        .split_at_mut_checked(blocked)
        .unwrap_or((&mut [], &mut []));
    // Arrays of BLOCK outputs, not `chunks_exact_mut`: two zipped `ChunksExact` make `Zip::new` divide
    // by a chunk size it cannot see is non-zero, a panic path.
    for (out, rows) in super::as_chunks_mut::<_, BLOCK>(y_blocks)
        .iter_mut()
        .zip(w_blocks.chunks_exact(BLOCK * n))
    {
        let sums = dot4(rows, n, x);
        out.iter_mut()
            .zip(sums)
            .for_each(|(out, sum)| finish(out, sum));
    }
    for (out, row) in y_tail.iter_mut().zip(w_tail.chunks_exact(n)) {
        finish(out, dot(row, x));
    }
}

/// The dot products of four consecutive rows of `n` values (`rows` holds `4 n`) with `x`, each summed
/// left to right from 0.
#[inline(always)]
fn dot4(rows: &[f32], n: usize, x: &[f32]) -> [f32; BLOCK] {
    let (r0, rest) = rows.split_at_checked(n).unwrap_or((&[], &[]));
    let (r1, rest) = rest.split_at_checked(n).unwrap_or((&[], &[]));
    let (r2, r3) = rest.split_at_checked(n).unwrap_or((&[], &[]));
    let (x4, x_tail) = super::as_chunks::<_, 4>(x);
    let (a4, a_tail) = super::as_chunks::<_, 4>(r0);
    let (b4, b_tail) = super::as_chunks::<_, 4>(r1);
    let (c4, c_tail) = super::as_chunks::<_, 4>(r2);
    let (d4, d_tail) = super::as_chunks::<_, 4>(r3);
    let (mut s0, mut s1, mut s2, mut s3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    for ((((x, a), b), c), d) in x4.iter().zip(a4).zip(b4).zip(c4).zip(d4) {
        s0 = s0 + a[0] * x[0] + a[1] * x[1] + a[2] * x[2] + a[3] * x[3];
        s1 = s1 + b[0] * x[0] + b[1] * x[1] + b[2] * x[2] + b[3] * x[3];
        s2 = s2 + c[0] * x[0] + c[1] * x[1] + c[2] * x[2] + c[3] * x[3];
        s3 = s3 + d[0] * x[0] + d[1] * x[1] + d[2] * x[2] + d[3] * x[3];
    }
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        // The same sums as the portable loop above, in the same order, with one `VLDMIA` per four
        // values: LLVM does not merge the loads itself. `VMLA.F32` rounds the product before adding
        // (it is not fused), exactly as `s + a * x` does. Stable Rust cannot name FPU registers as
        // operands, so the block saves and restores the ones it uses itself.
        let chunks = x4
            .len()
            .min(a4.len())
            .min(b4.len())
            .min(c4.len())
            .min(d4.len());
        if chunks > 0 {
            let (o0, o1, o2, o3): (u32, u32, u32, u32);
            // SAFETY: each pointer starts at a slice of at least `chunks ≥ 1` groups of four f32 and
            // moves by one group per iteration, `chunks` times, so every load is inside its slice. The
            // block pushes s0–s15 and pops them before it ends, leaving every FPU register as it found
            // it; it writes only the core registers named as operands (and the flags, not preserved);
            // its stack use is the 64 bytes it pops again.
            unsafe {
                core::arch::asm!(
                    "vpush {{s0-s15}}",
                    "vmov s0, s1, {zero}, {zero}",
                    "vmov s2, s3, {zero}, {zero}",
                    "2:",
                    "vldmia {x}!, {{s8-s11}}",
                    "vldmia {a}!, {{s12-s15}}",
                    "vmla.f32 s0, s12, s8",
                    "vmla.f32 s0, s13, s9",
                    "vmla.f32 s0, s14, s10",
                    "vmla.f32 s0, s15, s11",
                    "vldmia {b}!, {{s12-s15}}",
                    "vmla.f32 s1, s12, s8",
                    "vmla.f32 s1, s13, s9",
                    "vmla.f32 s1, s14, s10",
                    "vmla.f32 s1, s15, s11",
                    "vldmia {c}!, {{s12-s15}}",
                    "vmla.f32 s2, s12, s8",
                    "vmla.f32 s2, s13, s9",
                    "vmla.f32 s2, s14, s10",
                    "vmla.f32 s2, s15, s11",
                    "vldmia {d}!, {{s12-s15}}",
                    "vmla.f32 s3, s12, s8",
                    "vmla.f32 s3, s13, s9",
                    "vmla.f32 s3, s14, s10",
                    "vmla.f32 s3, s15, s11",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    "vmov {o0}, {o1}, s0, s1",
                    "vmov {o2}, {o3}, s2, s3",
                    "vpop {{s0-s15}}",
                    zero = in(reg) 0u32,
                    n = inout(reg) chunks => _,
                    x = inout(reg) x4.as_ptr() => _,
                    a = inout(reg) a4.as_ptr() => _,
                    b = inout(reg) b4.as_ptr() => _,
                    c = inout(reg) c4.as_ptr() => _,
                    d = inout(reg) d4.as_ptr() => _,
                    o0 = lateout(reg) o0,
                    o1 = lateout(reg) o1,
                    o2 = lateout(reg) o2,
                    o3 = lateout(reg) o3,
                    options(readonly),
                );
            }
            (s0, s1, s2, s3) = (
                f32::from_bits(o0),
                f32::from_bits(o1),
                f32::from_bits(o2),
                f32::from_bits(o3),
            );
        }
    }
    for ((((x, a), b), c), d) in x_tail
        .iter()
        .zip(a_tail)
        .zip(b_tail)
        .zip(c_tail)
        .zip(d_tail)
    {
        s0 += a * x;
        s1 += b * x;
        s2 += c * x;
        s3 += d * x;
    }
    [s0, s1, s2, s3]
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
    extern crate std;
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
    fn blocked_rows_are_bit_identical_to_one_dot_per_row() {
        let mut rng = crate::kernels::fixed::tests::Xorshift(0x2545_f491);
        let mut value = || (rng.next() as i32 as f32) / (1u32 << 28) as f32;
        let rounds = if cfg!(miri) { 30 } else { 600 };
        for round in 0..rounds {
            // Rows and columns around the block and chunk sizes, their remainders included.
            let (rows, cols) = (1 + round % 11, 1 + (round / 11) % 19);
            let w: std::vec::Vec<f32> = (0..rows * cols).map(|_| value()).collect();
            let x: std::vec::Vec<f32> = (0..cols).map(|_| value()).collect();
            let start: std::vec::Vec<f32> = (0..rows).map(|_| value()).collect();
            let mut y = start.clone();
            matvec(&w, &x, &mut y);
            let mut z = start.clone();
            matvec_add(&w, &x, &mut z);
            for (r, row) in w.chunks_exact(cols).enumerate() {
                let reference = row.iter().zip(&x).fold(0.0f32, |acc, (a, b)| acc + a * b);
                assert_eq!(y[r].to_bits(), reference.to_bits(), "{rows}x{cols} row {r}");
                assert_eq!(z[r].to_bits(), (start[r] + reference).to_bits());
            }
        }
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
