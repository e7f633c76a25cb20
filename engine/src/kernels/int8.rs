//! Int8-weight kernels (`i8w`): int8 weights with one f32 scale per row, f32 activations.
//!
//! A weight byte `q` in row `r` stands for `scales[r] × (q as i8)`. Every product `(q / 128) × x` is formed
//! in f32 (an i8 converts to f32 exactly, and dividing by a power of two is exact) and the row's sum is
//! scaled once by `128 × scales[r]`, so a row costs one multiply more than its f32 counterpart. The result
//! equals `scales[r] × Σ q x` bit for bit; keeping each term within `|x|` means a row's sum overflows no
//! sooner than an f32 row whose weights are at most 1 in magnitude. Lengths were checked when the model was opened; the loops use `zip` and
//! `chunks_exact`, so a mismatch shortens a loop instead of panicking.

use super::scaled_dot;

/// `y_r = s_r Σ_j q_rj x_j`. One to three columns as [`super::scaled_matvec`] writes them out (the
/// four-row blocks would be mostly setup at that width).
#[inline]
pub(crate) fn matvec(q: &[u8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    super::scaled_matvec(q, scales, x, y, |q, scales, x, y| {
        for_each_row_dot(q, scales, x, y, |out, s, dot| *out = s * 128.0 * dot)
    });
}

/// `y_r += s_r Σ_j q_rj x_j`.
#[inline]
pub(crate) fn matvec_add(q: &[u8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    for_each_row_dot(q, scales, x, y, |out, s, dot| *out += s * 128.0 * dot);
}

/// Rows of `W` one pass over `x` serves (Arm `eabihf` only; one row per pass elsewhere).
const BLOCK: usize = 4;

/// Calls `finish(y_r, s_r, dot(row r, x))` for every row. On Arm `eabihf`, four rows per pass over `x`
/// in assembly ([`dot4`]); each row's sum is still formed left to right from 0 with the same
/// operations, so the results are those of one [`scaled_dot`] per row, bit for bit. `x` is not empty.
#[inline(always)]
fn for_each_row_dot(
    q: &[u8],
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
    mut finish: impl FnMut(&mut f32, f32, f32),
) {
    let n = x.len().max(1);
    let rows = y.len().min(q.len() / n).min(scales.len());
    let blocked = if cfg!(all(target_arch = "arm", target_abi = "eabihf")) {
        rows - rows % BLOCK
    } else {
        0
    };
    let (q_blocks, q_tail) = q.split_at_checked(blocked * n).unwrap_or((&[], q));
    let (y_blocks, y_tail) = y
        .split_at_mut_checked(blocked)
        .unwrap_or((&mut [], &mut []));
    let (s_blocks, s_tail) = scales.split_at_checked(blocked).unwrap_or((&[], scales));
    for ((out, rows), s) in super::as_chunks_mut::<_, BLOCK>(y_blocks)
        .iter_mut()
        .zip(q_blocks.chunks_exact(BLOCK * n))
        .zip(super::as_chunks::<_, BLOCK>(s_blocks).0)
    {
        let sums = dot4(rows, n, x);
        for ((out, s), sum) in out.iter_mut().zip(s).zip(sums) {
            finish(out, *s, sum);
        }
    }
    for ((out, row), s) in y_tail.iter_mut().zip(q_tail.chunks_exact(n)).zip(s_tail) {
        finish(out, *s, scaled_dot(row, x));
    }
}

/// [`scaled_dot`] of four consecutive rows of `n` bytes (`rows` holds `4 n`) with `x`.
#[cfg_attr(not(all(target_arch = "arm", target_abi = "eabihf")), allow(dead_code))]
#[inline(always)]
fn dot4(rows: &[u8], n: usize, x: &[f32]) -> [f32; BLOCK] {
    let (r0, rest) = rows.split_at_checked(n).unwrap_or((&[], &[]));
    let (r1, rest) = rest.split_at_checked(n).unwrap_or((&[], &[]));
    let (r2, r3) = rest.split_at_checked(n).unwrap_or((&[], &[]));
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    return [
        scaled_dot(r0, x),
        scaled_dot(r1, x),
        scaled_dot(r2, x),
        scaled_dot(r3, x),
    ];
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        let (x4, x_tail) = super::as_chunks::<_, 4>(x);
        let (a4, a_tail) = super::as_chunks::<_, 4>(r0);
        let (b4, b_tail) = super::as_chunks::<_, 4>(r1);
        let (c4, c_tail) = super::as_chunks::<_, 4>(r2);
        let (d4, d_tail) = super::as_chunks::<_, 4>(r3);
        let (mut s0, mut s1, mut s2, mut s3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        let chunks = x4
            .len()
            .min(a4.len())
            .min(b4.len())
            .min(c4.len())
            .min(d4.len());
        if chunks > 0 {
            let (o0, o1, o2, o3): (u32, u32, u32, u32);
            // SAFETY: each pointer starts at a slice of at least `chunks ≥ 1` groups of four values (four
            // f32 for `x`, one word of four bytes per row) and moves by one group per iteration,
            // `chunks` times, so every load is inside its slice (word loads at any byte alignment are
            // allowed on Armv7-M). The block pushes s0–s15 and pops them before it ends, leaving every
            // FPU register as it found it; it writes only the core registers named as operands and
            // the flags; its stack use is the 64 bytes it pops again. Two sign-extended bytes go to the
            // FPU per `VMOV` (a core register pair to s12/s13, s14/s15). Each weight becomes `q / 2^7`
            // exactly (`VCVT` with 7 fraction bits), the product is rounded and then added (`VMLA` is
            // not fused): the operations of `acc + q.unit_value() * x`, in the same order.
            unsafe {
                core::arch::asm!(
                    "vpush {{s0-s15}}",
                    "vmov s0, s1, {zero}, {zero}",
                    "vmov s2, s3, {zero}, {zero}",
                    "2:",
                    "vldmia {x}!, {{s8-s11}}",
                    "ldr {w}, [{a}], #4",
                    "sxtb {t}, {w}", "sxtb {u}, {w}, ror #8", "vmov s12, s13, {t}, {u}",
                    "sxtb {t}, {w}, ror #16", "asr {u}, {w}, #24", "vmov s14, s15, {t}, {u}",
                    "vcvt.f32.s32 s12, s12, #7", "vcvt.f32.s32 s13, s13, #7",
                    "vcvt.f32.s32 s14, s14, #7", "vcvt.f32.s32 s15, s15, #7",
                    "vmla.f32 s0, s12, s8", "vmla.f32 s0, s13, s9",
                    "vmla.f32 s0, s14, s10", "vmla.f32 s0, s15, s11",
                    "ldr {w}, [{b}], #4",
                    "sxtb {t}, {w}", "sxtb {u}, {w}, ror #8", "vmov s12, s13, {t}, {u}",
                    "sxtb {t}, {w}, ror #16", "asr {u}, {w}, #24", "vmov s14, s15, {t}, {u}",
                    "vcvt.f32.s32 s12, s12, #7", "vcvt.f32.s32 s13, s13, #7",
                    "vcvt.f32.s32 s14, s14, #7", "vcvt.f32.s32 s15, s15, #7",
                    "vmla.f32 s1, s12, s8", "vmla.f32 s1, s13, s9",
                    "vmla.f32 s1, s14, s10", "vmla.f32 s1, s15, s11",
                    "ldr {w}, [{c}], #4",
                    "sxtb {t}, {w}", "sxtb {u}, {w}, ror #8", "vmov s12, s13, {t}, {u}",
                    "sxtb {t}, {w}, ror #16", "asr {u}, {w}, #24", "vmov s14, s15, {t}, {u}",
                    "vcvt.f32.s32 s12, s12, #7", "vcvt.f32.s32 s13, s13, #7",
                    "vcvt.f32.s32 s14, s14, #7", "vcvt.f32.s32 s15, s15, #7",
                    "vmla.f32 s2, s12, s8", "vmla.f32 s2, s13, s9",
                    "vmla.f32 s2, s14, s10", "vmla.f32 s2, s15, s11",
                    "ldr {w}, [{d}], #4",
                    "sxtb {t}, {w}", "sxtb {u}, {w}, ror #8", "vmov s12, s13, {t}, {u}",
                    "sxtb {t}, {w}, ror #16", "asr {u}, {w}, #24", "vmov s14, s15, {t}, {u}",
                    "vcvt.f32.s32 s12, s12, #7", "vcvt.f32.s32 s13, s13, #7",
                    "vcvt.f32.s32 s14, s14, #7", "vcvt.f32.s32 s15, s15, #7",
                    "vmla.f32 s3, s12, s8", "vmla.f32 s3, s13, s9",
                    "vmla.f32 s3, s14, s10", "vmla.f32 s3, s15, s11",
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
                    w = out(reg) _,
                    t = out(reg) _,
                    u = out(reg) _,
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
        for (j, x) in x_tail.iter().enumerate() {
            let at = |tail: &[u8]| {
                tail.get(j)
                    .map_or(0.0, |&q| super::ScaledWeight::unit_value(q))
            };
            s0 += at(a_tail) * x;
            s1 += at(b_tail) * x;
            s2 += at(c_tail) * x;
            s3 += at(d_tail) * x;
        }
        [s0, s1, s2, s3]
    }
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
        crate::kernels::scaled_row(&q[3..], &scales[1..], &mut row);
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
    fn blocked_rows_are_bit_identical_to_one_dot_per_row() {
        extern crate std;
        use std::vec::Vec;
        let mut rng = crate::kernels::fixed::tests::Xorshift(0x5eed_1234);
        let rounds = if cfg!(miri) { 30 } else { 600 };
        for round in 0..rounds {
            let (rows, cols) = (1 + round % 11, 1 + (round / 11) % 19);
            let q: Vec<u8> = (0..rows * cols).map(|_| rng.next() as u8).collect();
            let scales: Vec<f32> = (0..rows)
                .map(|_| (rng.next() % 1000) as f32 / 7e4)
                .collect();
            let x: Vec<f32> = (0..cols)
                .map(|_| (rng.next() as i32 as f32) / (1u32 << 28) as f32)
                .collect();
            let mut y = std::vec![0.5f32; rows];
            matvec(&q, &scales, &x, &mut y);
            let mut z = std::vec![0.5f32; rows];
            matvec_add(&q, &scales, &x, &mut z);
            for (r, row) in q.chunks_exact(cols).enumerate() {
                let reference = scales[r] * 128.0 * scaled_dot(row, &x);
                assert_eq!(y[r].to_bits(), reference.to_bits(), "{rows}x{cols} row {r}");
                assert_eq!(z[r].to_bits(), (0.5 + reference).to_bits());
            }
        }
    }

    #[test]
    fn empty_input_zeroes_the_output() {
        let mut y = [9.0; 2];
        matvec(&[], &[1.0, 1.0], &[], &mut y);
        assert_eq!(y, [0.0, 0.0]);
    }
}
