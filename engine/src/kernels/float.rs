//! f32 kernels: matrix-vector products and element-wise helpers.
//!
//! Callers hand over slices whose lengths were checked when the model was opened; the kernels iterate
//! with `zip`/`chunks_exact`, so a length mismatch shortens a loop instead of panicking.

/// Rows of `W` one pass over `x` serves in [`matvec`] and [`matvec_add`]: each `x` value is loaded once
/// for four rows, and the four running sums stay in registers (a Cortex-M4F has 32 single-precision
/// registers: four sums, four inputs and sixteen weights per four columns).
const BLOCK: usize = 4;

/// The loop over `x` of a block of four rows on the M4F (assembly text, for `asm!`): four values of `x`
/// into s8–s11 and of each row into s12–s15 per iteration (`VLDMIA` with write-back through `{x}` and
/// `{a}`…`{d}`), each row's sum in s0–s3 with non-fused `VMLA.F32`, `{$counter}` groups of four. Shared
/// by [`dot4`] and the whole-matrix loop, so the two cannot drift apart.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
macro_rules! block4x4_loop {
    ($counter:ident) => {
        concat!(
            "2:\n",
            "vldmia {x}!, {{s8-s11}}\n",
            "vldmia {a}!, {{s12-s15}}\n",
            "vmla.f32 s0, s12, s8\n",
            "vmla.f32 s0, s13, s9\n",
            "vmla.f32 s0, s14, s10\n",
            "vmla.f32 s0, s15, s11\n",
            "vldmia {b}!, {{s12-s15}}\n",
            "vmla.f32 s1, s12, s8\n",
            "vmla.f32 s1, s13, s9\n",
            "vmla.f32 s1, s14, s10\n",
            "vmla.f32 s1, s15, s11\n",
            "vldmia {c}!, {{s12-s15}}\n",
            "vmla.f32 s2, s12, s8\n",
            "vmla.f32 s2, s13, s9\n",
            "vmla.f32 s2, s14, s10\n",
            "vmla.f32 s2, s15, s11\n",
            "vldmia {d}!, {{s12-s15}}\n",
            "vmla.f32 s3, s12, s8\n",
            "vmla.f32 s3, s13, s9\n",
            "vmla.f32 s3, s14, s10\n",
            "vmla.f32 s3, s15, s11\n",
            "subs {",
            stringify!($counter),
            "}, {",
            stringify!($counter),
            "}, #1\n",
            "bne 2b",
        )
    };
}

/// `y = W x`, where `W` is row-major with `x.len()` columns and `y.len()` rows.
#[inline]
pub(crate) fn matvec(w: &[f32], x: &[f32], y: &mut [f32]) {
    if x.is_empty() {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    if arm::whole_blocks::<false>(w, x, y) || arm::narrow_rows(w, x, y, arm::Finish::Store) {
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
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    if arm::whole_blocks::<true>(w, x, y) || arm::narrow_rows(w, x, y, arm::Finish::Add) {
        return;
    }
    for_each_row_dot(w, x, y, |out, sum| *out += sum);
}

/// `y = W x + b`, where `W` is row-major with `x.len()` columns and `y.len()` rows: [`matvec`], then
/// [`add`], with the same bits.
#[inline]
pub(crate) fn matvec_bias(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    if arm::narrow_rows(w, x, y, arm::Finish::AddBias(b)) {
        return;
    }
    matvec(w, x, y);
    add(y, b);
}

#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
mod arm {
    /// The assembly of [`whole_blocks`]: `$finish` stores (or adds and stores) the block's four sums
    /// s0–s3 at `y`. One macro for both, so the two loops cannot drift apart.
    macro_rules! blocks_asm {
        ($w:expr, $x:expr, $y:expr, $stride:expr, $blocks:expr, $($finish:literal),+) => {
            core::arch::asm!(
                "vpush {{s0-s15}}",
                "1:",
                "movs {cnt}, #0",
                "vmov s0, s1, {cnt}, {cnt}",
                "vmov s2, s3, {cnt}, {cnt}",
                "add {b}, {a}, {stride}",
                "add {c}, {b}, {stride}",
                "add {d}, {c}, {stride}",
                "lsrs {cnt}, {stride}, #4",
                block4x4_loop!(cnt),
                $($finish,)+
                "sub {x}, {x}, {stride}",
                "mov {a}, {d}",
                "subs {blocks}, {blocks}, #1",
                "bne 1b",
                "vpop {{s0-s15}}",
                stride = in(reg) $stride,
                blocks = inout(reg) $blocks => _,
                cnt = out(reg) _,
                x = inout(reg) $x => _,
                y = inout(reg) $y => _,
                a = inout(reg) $w => _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
            )
        };
    }

    /// The assembly of [`narrow_rows`]: `x` (1 to 3 values) is loaded once into s8…, each row into
    /// s12… with one `VLDMIA`, summed into s0 from +0.0 by `$mla`, and `$finish` stores s0 at `y`.
    macro_rules! narrow_asm {
        ($w:expr, $x:expr, $y:expr, $rows:expr, $load_x:literal, $load_w:literal,
         [$($mla:literal),+], [$($finish:literal),+] $(, ($($operands:tt)*))?) => {
            core::arch::asm!(
                "vpush {{s0-s15}}",
                $load_x,
                "1:",
                "vmov s0, {zero}",
                $load_w,
                $($mla,)+
                $($finish,)+
                "subs {rows}, {rows}, #1",
                "bne 1b",
                "vpop {{s0-s15}}",
                zero = in(reg) 0u32,
                rows = inout(reg) $rows => _,
                x = in(reg) $x,
                y = inout(reg) $y => _,
                a = inout(reg) $w => _,
                $($($operands)*)?
            )
        };
    }

    /// What [`narrow_rows`] does with each row's sum `s`.
    #[derive(Clone, Copy)]
    pub(super) enum Finish<'a> {
        /// `y = s`.
        Store,
        /// `y += s`.
        Add,
        /// `y = s + b`, one value of `b` per row (an input projection and its bias in one pass).
        AddBias(&'a [f32]),
    }

    /// `W x` for a matrix of 1 to 3 columns (a recurrent layer's input kernel on a few sensor values),
    /// stored into `y` as `finish` says, `x` held in registers and one pass per row; returns false, and
    /// does nothing, for other shapes. Each row's sum runs left to right from +0.0 with rounded products,
    /// as [`super::dot`] does, and the bias or old `y` is added after it as the portable code adds it,
    /// so the bits are the portable code's; the generic blocked loop spends about 20 instructions per
    /// row on such a short row, and the bias its own pass.
    #[inline(always)]
    pub(super) fn narrow_rows(w: &[f32], x: &[f32], y: &mut [f32], finish: Finish<'_>) -> bool {
        let (n, rows) = (x.len(), y.len());
        if !(1..=3).contains(&n) || rows == 0 || rows.checked_mul(n).is_none_or(|m| m > w.len()) {
            return false;
        }
        if let Finish::AddBias(b) = finish {
            if b.len() < rows {
                return false;
            }
        }
        let (w, x, y) = (w.as_ptr(), x.as_ptr(), y.as_mut_ptr());
        // SAFETY: `x` holds `n` values, loaded once; `w` holds at least `rows × n` values, read `n` per
        // row through `a`, `rows` times; `y` holds `rows` values, read (when adding) and written one per
        // row; `b` (with a bias) holds at least `rows` values, read one per row. s0–s15 are pushed first
        // and popped at the end; only the named core registers and the flags are written; the stack
        // use is the 64 bytes popped again.
        unsafe {
            macro_rules! finish {
                ($($args:tt)*) => {
                    match finish {
                        Finish::Store => narrow_asm!($($args)*, ["vstmia {y}!, {{s0}}"]),
                        Finish::Add => narrow_asm!(
                            $($args)*,
                            ["vldr s4, [{y}]", "vadd.f32 s0, s4, s0", "vstmia {y}!, {{s0}}"]
                        ),
                        Finish::AddBias(b) => narrow_asm!(
                            $($args)*,
                            ["vldmia {b}!, {{s4}}", "vadd.f32 s0, s0, s4", "vstmia {y}!, {{s0}}"],
                            (b = inout(reg) b.as_ptr() => _,)
                        ),
                    }
                };
            }
            match n {
                1 => finish!(
                    w,
                    x,
                    y,
                    rows,
                    "vldmia {x}, {{s8}}",
                    "vldmia {a}!, {{s12}}",
                    ["vmla.f32 s0, s12, s8"]
                ),
                2 => finish!(
                    w,
                    x,
                    y,
                    rows,
                    "vldmia {x}, {{s8-s9}}",
                    "vldmia {a}!, {{s12-s13}}",
                    ["vmla.f32 s0, s12, s8", "vmla.f32 s0, s13, s9"]
                ),
                _ => finish!(
                    w,
                    x,
                    y,
                    rows,
                    "vldmia {x}, {{s8-s10}}",
                    "vldmia {a}!, {{s12-s14}}",
                    [
                        "vmla.f32 s0, s12, s8",
                        "vmla.f32 s0, s13, s9",
                        "vmla.f32 s0, s14, s10"
                    ]
                ),
            }
        }
        true
    }

    /// `y = W x` (`y += W x` when `ACCUMULATE`) in one assembly loop over every block of four rows, when
    /// the shape is whole blocks: a multiple of 4 rows and of 4 columns. Returns false, and does nothing,
    /// otherwise. The sums are [`super::dot4`]'s (each row left to right from 0, products rounded
    /// before the add: `VMLA.F32` is not fused), and `y + sum` is added as `*out += sum` does, so the
    /// bits are those of the portable code; the loop only drops the per-block slicing (about 90
    /// instructions per block of a 32-column matrix).
    #[inline(always)]
    pub(super) fn whole_blocks<const ACCUMULATE: bool>(
        w: &[f32],
        x: &[f32],
        y: &mut [f32],
    ) -> bool {
        let (n, rows) = (x.len(), y.len());
        let fits = n % 4 == 0 && rows % 4 == 0 && rows.checked_mul(n).is_some_and(|m| m <= w.len());
        // The byte stride of a row must fit the asm's 32-bit arithmetic.
        let Some(stride) = n.checked_mul(4).filter(|_| fits && n > 0 && rows > 0) else {
            return false;
        };
        let blocks = rows / 4;
        let (w, x, y) = (w.as_ptr(), x.as_ptr(), y.as_mut_ptr());
        // SAFETY: `w` holds at least `rows × n` values: block k reads rows 4k..4k+4, each of `n`
        // values, through `a`..`d` (row starts `stride` bytes apart), `n / 4` groups of four per row;
        // after a block `d` has reached row 4k+4, the next block's first row. `x` is read `n / 4`
        // groups per block and rewound by `stride`. `y` holds `rows` values: four are read (when
        // accumulating) and written per block, `blocks = rows / 4` times. s0–s15 are pushed first and
        // popped at the end, leaving every FPU register as it was; only the named core registers and
        // the flags are written; the stack use is the 64 bytes popped again.
        unsafe {
            if ACCUMULATE {
                blocks_asm!(
                    w,
                    x,
                    y,
                    stride,
                    blocks,
                    "vldmia {y}, {{s4-s7}}",
                    "vadd.f32 s0, s4, s0",
                    "vadd.f32 s1, s5, s1",
                    "vadd.f32 s2, s6, s2",
                    "vadd.f32 s3, s7, s3",
                    "vstmia {y}!, {{s0-s3}}"
                );
            } else {
                blocks_asm!(w, x, y, stride, blocks, "vstmia {y}!, {{s0-s3}}");
            }
        }
        true
    }
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
                    block4x4_loop!(n),
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
