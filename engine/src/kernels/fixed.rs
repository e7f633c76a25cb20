//! Fixed-point primitives of the integer-only mode (`i8x16`): int8 × int16 dot products into saturating
//! int32 accumulators, saturating requantization, and sigmoid and tanh as table lookups with linear
//! interpolation. Nothing here touches a float: built for `thumbv6m-none-eabi` (no FPU), these functions
//! link no soft-float routine (`tests/nofloat` checks the symbols).
//!
//! Formats: a pre-activation is an `i32` with [`ACT_FRAC`] fraction bits (Q·.12, any integer range); a
//! gate or cell output is an `i16` in Q0.15 (`q / 32768`, kept within `±32767`).
//!
//! The integer-only cells (`engine/src/integer.rs`) are built from these and nothing else.

use core::mem::MaybeUninit;

/// Fraction bits of an activation function's input.
pub const ACT_FRAC: u32 = 12;

/// Largest error of [`sigmoid`] against the exact `1 / (1 + e^−x)` for any input, in real units (the
/// table spacing is 1/16 on `[−16, 16]`; output rounding to Q0.15 included). Checked by a test over every
/// input in `[−20, 20]` at the input's resolution, and at the extremes of `i32`.
pub const SIGMOID_MAX_ERROR: f32 = SIGMOID_BOUND;

/// Largest error of [`tanh`] against the exact `tanh x` for any input, in real units (the table spacing is
/// 1/32 on `[−8, 8]`; output rounding to Q0.15 included). Checked as for [`SIGMOID_MAX_ERROR`].
pub const TANH_MAX_ERROR: f32 = TANH_BOUND;

/// `Σ w_i x_i` of int8 weights (two's-complement bytes) and int16 values, accumulated in `i32` with
/// saturation instead of wrap-around.
///
/// A row of at most [`EXACT_TERMS`] terms cannot leave the `i32` range at any partial sum, so its
/// saturating sum is its plain sum, which is computed without a check per term (on Armv7E-M two terms
/// per `SMLAD`); longer rows take the saturating fold. Both give the same bits.
#[inline]
pub fn dot_i8_i16(w: &[u8], x: &[i16]) -> i32 {
    let n = w.len().min(x.len());
    if n <= EXACT_TERMS {
        let (w, x) = (w.get(..n).unwrap_or(&[]), x.get(..n).unwrap_or(&[]));
        #[cfg(tinyrnn_dsp)]
        return dot_paired(w, x);
        #[cfg(not(tinyrnn_dsp))]
        return dot_plain(w, x);
    }
    dot_saturating(w, x)
}

/// Longest row whose plain `i32` sum equals its saturating one: each term is at most
/// `128 × 32768 = 2^22` in magnitude, and `511 × 2^22 < 2^31 − 1`.
pub const EXACT_TERMS: usize = 511;

/// The reference: a saturating add per term.
#[inline]
fn dot_saturating(w: &[u8], x: &[i16]) -> i32 {
    w.iter().zip(x).fold(0i32, |acc, (&w, &x)| {
        acc.saturating_add(i32::from(w as i8) * i32::from(x))
    })
}

/// The plain sum, four terms per iteration (for cores without the DSP extension; no partial sum of
/// the rows it gets can overflow, see [`EXACT_TERMS`]).
#[cfg_attr(tinyrnn_dsp, allow(dead_code))]
#[inline]
fn dot_plain(w: &[u8], x: &[i16]) -> i32 {
    let (w4, w_rest) = super::as_chunks::<_, 4>(w);
    let (x4, x_rest) = super::as_chunks::<_, 4>(x);
    let term = |w: u8, x: i16| i32::from(w as i8).wrapping_mul(i32::from(x));
    let mut acc = 0i32;
    #[cfg(all(target_arch = "arm", not(tinyrnn_dsp)))]
    {
        // The loop below in assembly for cores without the DSP extension (Cortex-M0/M0+/M3): LLVM
        // spills on the eight low registers of ARMv6-M and takes ~9 instructions per MAC; this takes 7.
        let chunks = w4.len().min(x4.len());
        if chunks > 0 {
            // SAFETY: `w` and `x` start at slices of at least `chunks ≥ 1` groups of four values and
            // move by one group per iteration, `chunks` times; the byte and halfword loads read
            // within the current group only, at their natural alignment. The block reads memory
            // only and writes only its operands and the flags. Every instruction is ARMv6-M Thumb
            // (low registers, which the `reg` class gives on Thumb-1 targets).
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldrb {t}, [{w}, #0]",
                    "sxtb {t}, {t}",
                    "ldrh {u}, [{x}, #0]",
                    "sxth {u}, {u}",
                    "muls {t}, {u}, {t}",
                    "adds {acc}, {acc}, {t}",
                    "ldrb {t}, [{w}, #1]",
                    "sxtb {t}, {t}",
                    "ldrh {u}, [{x}, #2]",
                    "sxth {u}, {u}",
                    "muls {t}, {u}, {t}",
                    "adds {acc}, {acc}, {t}",
                    "ldrb {t}, [{w}, #2]",
                    "sxtb {t}, {t}",
                    "ldrh {u}, [{x}, #4]",
                    "sxth {u}, {u}",
                    "muls {t}, {u}, {t}",
                    "adds {acc}, {acc}, {t}",
                    "ldrb {t}, [{w}, #3]",
                    "sxtb {t}, {t}",
                    "ldrh {u}, [{x}, #6]",
                    "sxth {u}, {u}",
                    "muls {t}, {u}, {t}",
                    "adds {acc}, {acc}, {t}",
                    "adds {w}, {w}, #4",
                    "adds {x}, {x}, #8",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    n = inout(reg) chunks => _,
                    w = inout(reg) w4.as_ptr() => _,
                    x = inout(reg) x4.as_ptr() => _,
                    acc = inout(reg) acc,
                    t = out(reg) _,
                    u = out(reg) _,
                    options(readonly, nostack),
                );
            }
        }
    }
    #[cfg(not(all(target_arch = "arm", not(tinyrnn_dsp))))]
    for (w, x) in w4.iter().zip(x4) {
        acc = acc
            .wrapping_add(term(w[0], x[0]))
            .wrapping_add(term(w[1], x[1]))
            .wrapping_add(term(w[2], x[2]))
            .wrapping_add(term(w[3], x[3]));
    }
    w_rest
        .iter()
        .zip(x_rest)
        .fold(acc, |acc, (&w, &x)| acc.wrapping_add(term(w, x)))
}

/// Two rows' plain sums in one pass over `x`, for Arm cores without the DSP extension (Armv6-M, and
/// Armv7-M without it): each input is loaded and sign-extended once for both rows, and the two sums
/// live in high registers (`ADD` reaches them on Thumb-1), which leaves the six low registers the
/// loop needs free: about 4.9 instructions per MAC against 7 for one row per pass. The same sums as
/// [`dot_plain`] on each row (integer addition in any order; callers give at most [`EXACT_TERMS`]
/// terms, so no partial sum overflows).
#[cfg(all(target_arch = "arm", not(tinyrnn_dsp)))]
#[inline]
fn dot_plain2(w0: &[u8], w1: &[u8], x: &[i16]) -> (i32, i32) {
    let (a4, a_rest) = super::as_chunks::<_, 4>(w0);
    let (b4, b_rest) = super::as_chunks::<_, 4>(w1);
    let (x4, x_rest) = super::as_chunks::<_, 4>(x);
    let chunks = a4.len().min(b4.len()).min(x4.len());
    let (mut s0, mut s1) = (0i32, 0i32);
    if chunks > 0 {
        let (sum0, sum1): (i32, i32);
        let x_end = x4.as_ptr().wrapping_add(chunks);
        // SAFETY: `a` and `b` start at slices of at least `chunks ≥ 1` groups of four bytes, read at
        // byte offset `i`, which goes up by one per value; `x` starts at `chunks` groups of four `i16`
        // and moves by one group per iteration until it reaches `x_end`, so `i` stays below
        // `4 · chunks` and every load is inside its slice, at its natural alignment. The block reads
        // memory only and writes only its operands, r8, r10 and r11 (declared clobbered) and the
        // flags. `ldrh`/`ldrsb`/`sxth`/`muls`/`adds` take the low registers (the `reg` class on
        // Thumb-1: the six operands use them all); `add`, `mov` and `cmp` also take high ones, so the
        // sums live in r8 and r10 and the end of `x` in r11.
        unsafe {
            core::arch::asm!(
                // The end of `x` comes in `t` and is kept in r11; the sums start at 0 in r8 and r10.
                // The weights are read with a register offset
                // (`LDRSB` has no immediate form on Thumb-1), which saves the `SXTB` of each.
                "mov r11, {t}",
                "movs {i}, #0",
                "mov r8, {i}",
                "mov r10, {i}",
                "2:",
                "ldrh {u}, [{x}, #0]",
                "sxth {u}, {u}",
                "ldrsb {t}, [{a}, {i}]",
                "muls {t}, {u}, {t}",
                "add r8, {t}",
                "ldrsb {t}, [{b}, {i}]",
                "muls {t}, {u}, {t}",
                "add r10, {t}",
                "adds {i}, #1",
                "ldrh {u}, [{x}, #2]",
                "sxth {u}, {u}",
                "ldrsb {t}, [{a}, {i}]",
                "muls {t}, {u}, {t}",
                "add r8, {t}",
                "ldrsb {t}, [{b}, {i}]",
                "muls {t}, {u}, {t}",
                "add r10, {t}",
                "adds {i}, #1",
                "ldrh {u}, [{x}, #4]",
                "sxth {u}, {u}",
                "ldrsb {t}, [{a}, {i}]",
                "muls {t}, {u}, {t}",
                "add r8, {t}",
                "ldrsb {t}, [{b}, {i}]",
                "muls {t}, {u}, {t}",
                "add r10, {t}",
                "adds {i}, #1",
                "ldrh {u}, [{x}, #6]",
                "sxth {u}, {u}",
                "ldrsb {t}, [{a}, {i}]",
                "muls {t}, {u}, {t}",
                "add r8, {t}",
                "ldrsb {t}, [{b}, {i}]",
                "muls {t}, {u}, {t}",
                "add r10, {t}",
                "adds {i}, #1",
                "adds {x}, #8",
                "cmp {x}, r11",
                "bne 2b",
                "mov {t}, r8",
                "mov {u}, r10",
                a = in(reg) a4.as_ptr(),
                b = in(reg) b4.as_ptr(),
                x = inout(reg) x4.as_ptr() => _,
                i = out(reg) _,
                t = inout(reg) x_end => sum0,
                u = out(reg) sum1,
                out("r8") _,
                out("r10") _,
                out("r11") _,
                options(readonly, nostack),
            );
        }
        (s0, s1) = (sum0, sum1);
    }
    let term = |w: u8, x: i16| i32::from(w as i8).wrapping_mul(i32::from(x));
    for ((&a, &b), &x) in a_rest.iter().zip(b_rest).zip(x_rest) {
        s0 = s0.wrapping_add(term(a, x));
        s1 = s1.wrapping_add(term(b, x));
    }
    (s0, s1)
}

/// The plain sum shaped for the Armv7E-M DSP instructions, four terms per iteration: one word of four
/// weights is split by `SXTB16` into its even and odd bytes as two `i16` pairs, the inputs are paired
/// to match by `PKHBT`/`PKHTB`, and two `SMLAD`s add the four products. [`dsp`] runs the instructions
/// on Armv7E-M and emulates them elsewhere, so host tests check this arrangement bit for bit. Callers
/// give equal lengths of at most [`EXACT_TERMS`].
#[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
#[inline]
fn dot_paired(w: &[u8], x: &[i16]) -> i32 {
    let (w4, w_rest) = super::as_chunks::<_, 4>(w);
    let (x4, x_rest) = super::as_chunks::<_, 4>(x);
    let mut acc = 0i32;
    for (w, x) in w4.iter().zip(x4) {
        let weights = u32::from_le_bytes(*w);
        let [even, odd] = arranged_group(x);
        // Even weights (bytes 0 and 2) meet x0 and x2; odd ones (bytes 1 and 3) meet x1 and x3.
        acc = dsp::smlad(dsp::sxtb16(weights), even, acc);
        acc = dsp::smlad(dsp::sxtb16_ror8(weights), odd, acc);
    }
    w_rest.iter().zip(x_rest).fold(acc, |acc, (&w, &x)| {
        acc.wrapping_add(i32::from(w as i8) * i32::from(x))
    })
}

/// The assembly text of four MACs of one row on Armv7E-M: a word of four weights loaded from `{ptr}`
/// (moving on by 4), split by `SXTB16` into its even and odd bytes, and added to `{acc}` against the
/// input pairs `{t}` (`x0, x2`) and `{o}` (`x1, x3`) by two `SMLAD`; `{w}` and `{e}` are scratch.
/// [`smlad_word`] is the same in Rust. One text for the two-row loops that share it.
#[cfg(tinyrnn_dsp)]
macro_rules! smlad_word_asm {
    ($ptr:literal, $acc:literal) => {
        concat!(
            "ldr {w}, [{",
            $ptr,
            "}], #4\n",
            "sxtb16 {e}, {w}\n",
            "smlad {",
            $acc,
            "}, {e}, {t}, {",
            $acc,
            "}\n",
            "sxtb16 {w}, {w}, ror #8\n",
            "smlad {",
            $acc,
            "}, {w}, {o}, {",
            $acc,
            "}\n",
        )
    };
}

/// Four inputs as the two words `SMLAD` takes against a word of weights split by `SXTB16`: `(x0, x2)`
/// for the even bytes, `(x1, x3)` for the odd ones (`PKHBT`/`PKHTB` of the pairs as loaded).
#[inline(always)]
fn arranged_group(x: &[i16; 4]) -> [u32; 2] {
    let (x01, x23) = (dsp::pair(x[0], x[1]), dsp::pair(x[2], x[3]));
    [dsp::pkhbt(x01, x23), dsp::pkhtb(x23, x01)]
}

/// Four MACs of one row: the weights of `word` against the input pairs `even` (`x0, x2`) and `odd`
/// (`x1, x3`), as [`smlad_word_asm`] does them.
#[cfg_attr(tinyrnn_dsp, allow(dead_code))]
#[inline(always)]
fn smlad_word(word: u32, even: u32, odd: u32, acc: i32) -> i32 {
    dsp::smlad(
        dsp::sxtb16_ror8(word),
        odd,
        dsp::smlad(dsp::sxtb16(word), even, acc),
    )
}

/// [`dot_paired`] of two rows at once: the input pairs are loaded and arranged once for both rows.
/// Callers give rows of the input's length, at most [`EXACT_TERMS`].
#[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
#[inline]
fn dot_paired2(w0: &[u8], w1: &[u8], x: &[i16]) -> (i32, i32) {
    let (a4, a_rest) = super::as_chunks::<_, 4>(w0);
    let (b4, b_rest) = super::as_chunks::<_, 4>(w1);
    let (x4, x_rest) = super::as_chunks::<_, 4>(x);
    let (mut acc0, mut acc1) = (0i32, 0i32);
    #[cfg(tinyrnn_dsp)]
    {
        // The loop below in assembly: LLVM splits the input-pair loads into halfword loads and runs
        // out of registers, taking 3.6 instructions per MAC where this takes 2.
        let chunks = a4.len().min(b4.len()).min(x4.len());
        if chunks > 0 {
            // SAFETY: `x`, `a` and `b` start at slices of at least `chunks ≥ 1` groups of four values
            // (4 `i16` = two words for `x`, 4 bytes = one word for the rows) and each moves by one
            // group per iteration, `chunks` times, so every load is inside its slice. Word loads at
            // byte or halfword alignment are allowed on Armv7E-M (`cfg(tinyrnn_dsp)`), as the
            // compiler's own code for `u32::from_le_bytes` assumes. The block reads memory only and
            // writes only its operands and the flags.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldr {e}, [{x}], #4",
                    "ldr {o}, [{x}], #4",
                    "pkhbt {t}, {e}, {o}, lsl #16",
                    "pkhtb {o}, {o}, {e}, asr #16",
                    smlad_word_asm!("a", "acc0"),
                    smlad_word_asm!("b", "acc1"),
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    n = inout(reg) chunks => _,
                    x = inout(reg) x4.as_ptr() => _,
                    a = inout(reg) a4.as_ptr() => _,
                    b = inout(reg) b4.as_ptr() => _,
                    acc0 = inout(reg) acc0,
                    acc1 = inout(reg) acc1,
                    e = out(reg) _,
                    o = out(reg) _,
                    w = out(reg) _,
                    t = out(reg) _,
                    options(readonly, nostack),
                );
            }
        }
    }
    #[cfg(not(tinyrnn_dsp))]
    for ((a, b), x) in a4.iter().zip(b4).zip(x4) {
        let [even, odd] = arranged_group(x);
        acc0 = smlad_word(u32::from_le_bytes(*a), even, odd, acc0);
        acc1 = smlad_word(u32::from_le_bytes(*b), even, odd, acc1);
    }
    let term = |w: u8, x: i16| i32::from(w as i8) * i32::from(x);
    for ((&a, &b), &x) in a_rest.iter().zip(b_rest).zip(x_rest) {
        acc0 = acc0.wrapping_add(term(a, x));
        acc1 = acc1.wrapping_add(term(b, x));
    }
    (acc0, acc1)
}

/// Longest input [`rows_requant`] arranges once for all rows ([`arrange_pairs`]): 128 values, 256
/// bytes of stack.
const ARRANGED_GROUPS: usize = 32;

/// Room for an arranged input ([`arrange_pairs`]), not zeroed first: only the groups written are read.
type ArrangedTable = [MaybeUninit<[u32; 2]>; ARRANGED_GROUPS];

/// The input arranged for [`dot_paired2_arranged`]: each group of four values `x0..x3` as the words
/// `(x0, x2)` and `(x1, x3)`, the pairs `SMLAD` takes against the even and odd bytes of a word of
/// weights (what [`dot_paired2`] builds with `PKHBT`/`PKHTB` for every pair of rows), written to the
/// front of `table`. Gives all of `x`'s whole groups arranged, or none if there are more than
/// [`ARRANGED_GROUPS`].
#[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
#[inline]
fn arrange_pairs<'t>(x: &[i16], table: &'t mut ArrangedTable) -> &'t [[u32; 2]] {
    let (x4, _) = super::as_chunks::<_, 4>(x);
    if x4.len() > ARRANGED_GROUPS {
        return &[];
    }
    for (slot, x) in table.iter_mut().zip(x4) {
        slot.write(arranged_group(x));
    }
    // SAFETY: the loop above wrote the first `x4.len() ≤ ARRANGED_GROUPS` slots of `table` (the zip
    // stops at the shorter side, and `x4` is not the longer one), so those are initialised
    // `[u32; 2]` values; `MaybeUninit<T>` has `T`'s layout, and the slice borrows `table`.
    unsafe { core::slice::from_raw_parts(table.as_ptr().cast::<[u32; 2]>(), x4.len()) }
}

/// [`dot_paired2`] of two rows stored one after the other (`rows`: twice the input's length, a whole
/// number of groups of four) with the input already arranged ([`arrange_pairs`]; one entry per group):
/// per four values of the two rows, two input words, two words of weights, four `SXTB16` and four
/// `SMLAD`. The same sums. At most [`EXACT_TERMS`] values per row.
#[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
#[inline(always)]
fn dot_paired2_arranged(rows: &[u8], pairs: &[[u32; 2]]) -> (i32, i32) {
    let (first, second) = rows.split_at(rows.len() / 2);
    let (a4, _) = super::as_chunks::<_, 4>(first);
    let (b4, _) = super::as_chunks::<_, 4>(second);
    let (mut acc0, mut acc1) = (0i32, 0i32);
    #[cfg(tinyrnn_dsp)]
    {
        let chunks = a4.len().min(b4.len()).min(pairs.len());
        if chunks > 0 {
            // SAFETY: `a` starts at the first row and `b` (formed in the block as `a` plus the row
            // length) at the second, each at least `chunks ≥ 1` words long, and `p` at `chunks` pairs
            // of words; each moves by one group per iteration, `chunks` times, so every load is inside
            // its slice. Word loads at byte alignment are allowed on Armv7E-M (`cfg(tinyrnn_dsp)`);
            // `LDRD` reads the word-aligned `pairs`. The block reads memory only and writes only its
            // operands and the flags.
            unsafe {
                core::arch::asm!(
                    "add {b}, {b}, {a}",
                    "2:",
                    "ldrd {t}, {o}, [{p}], #8",
                    smlad_word_asm!("a", "acc0"),
                    smlad_word_asm!("b", "acc1"),
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    n = inout(reg) chunks => _,
                    p = inout(reg) pairs.as_ptr() => _,
                    a = inout(reg) first.as_ptr() => _,
                    b = inout(reg) first.len() => _,
                    acc0 = inout(reg) acc0,
                    acc1 = inout(reg) acc1,
                    e = out(reg) _,
                    o = out(reg) _,
                    w = out(reg) _,
                    t = out(reg) _,
                    options(readonly, nostack),
                );
            }
        }
    }
    #[cfg(not(tinyrnn_dsp))]
    for ((a, b), &[even, odd]) in a4.iter().zip(b4).zip(pairs) {
        acc0 = smlad_word(u32::from_le_bytes(*a), even, odd, acc0);
        acc1 = smlad_word(u32::from_le_bytes(*b), even, odd, acc1);
    }
    (acc0, acc1)
}

/// The Armv7E-M DSP instructions [`dot_paired`] uses: inline assembly on `thumbv7em` (`cfg(tinyrnn_dsp)`,
/// set by the build script), plain Rust with the same results elsewhere. Each is pure: no memory, no
/// flags the compiler relies on (`SMLAD` may set the sticky Q flag, which nothing here reads).
mod dsp {
    /// Two `i16` as one word, `lo` in bits 0..16.
    #[inline(always)]
    pub(super) fn pair(lo: i16, hi: i16) -> u32 {
        u32::from(lo as u16) | (u32::from(hi as u16) << 16)
    }

    /// The halves of a word as `i16`s.
    #[cfg_attr(tinyrnn_dsp, allow(dead_code))]
    #[inline(always)]
    fn halves(word: u32) -> (i32, i32) {
        (
            i32::from(word as u16 as i16),
            i32::from((word >> 16) as u16 as i16),
        )
    }

    /// `SXTB16`: bytes 0 and 2, sign-extended to the two halves.
    #[inline(always)]
    pub(super) fn sxtb16(word: u32) -> u32 {
        #[cfg(tinyrnn_dsp)]
        {
            let out: u32;
            // SAFETY: a register-to-register instruction of Armv7E-M (`cfg(tinyrnn_dsp)` is set only for
            // such targets); it reads `word` and writes `out` only.
            unsafe {
                core::arch::asm!("sxtb16 {o}, {i}", o = lateout(reg) out, i = in(reg) word,
                    options(pure, nomem, nostack, preserves_flags));
            }
            out
        }
        #[cfg(not(tinyrnn_dsp))]
        pair(
            i16::from(word as u8 as i8),
            i16::from((word >> 16) as u8 as i8),
        )
    }

    /// `SXTB16 …, ROR #8`: bytes 1 and 3, sign-extended to the two halves.
    #[inline(always)]
    pub(super) fn sxtb16_ror8(word: u32) -> u32 {
        #[cfg(tinyrnn_dsp)]
        {
            let out: u32;
            // SAFETY: as in `sxtb16`.
            unsafe {
                core::arch::asm!("sxtb16 {o}, {i}, ror #8", o = lateout(reg) out, i = in(reg) word,
                    options(pure, nomem, nostack, preserves_flags));
            }
            out
        }
        #[cfg(not(tinyrnn_dsp))]
        sxtb16(word >> 8)
    }

    /// `PKHBT a, b, LSL #16`: the low half of `a`, then the low half of `b`.
    #[inline(always)]
    pub(super) fn pkhbt(a: u32, b: u32) -> u32 {
        #[cfg(tinyrnn_dsp)]
        {
            let out: u32;
            // SAFETY: as in `sxtb16`.
            unsafe {
                core::arch::asm!("pkhbt {o}, {a}, {b}, lsl #16", o = lateout(reg) out, a = in(reg) a,
                    b = in(reg) b, options(pure, nomem, nostack, preserves_flags));
            }
            out
        }
        #[cfg(not(tinyrnn_dsp))]
        ((a & 0xffff) | (b << 16))
    }

    /// `PKHTB a, b, ASR #16`: the high half of `b` (moved down), then the high half of `a`.
    #[inline(always)]
    pub(super) fn pkhtb(a: u32, b: u32) -> u32 {
        #[cfg(tinyrnn_dsp)]
        {
            let out: u32;
            // SAFETY: as in `sxtb16`.
            unsafe {
                core::arch::asm!("pkhtb {o}, {a}, {b}, asr #16", o = lateout(reg) out, a = in(reg) a,
                    b = in(reg) b, options(pure, nomem, nostack, preserves_flags));
            }
            out
        }
        #[cfg(not(tinyrnn_dsp))]
        ((a & 0xffff_0000) | (b >> 16))
    }

    /// `SMULL`: the exact product of two `i32`.
    #[cfg(tinyrnn_dsp)]
    #[inline(always)]
    pub(super) fn smull(a: i32, b: i32) -> i64 {
        let (lo, hi): (u32, i32);
        // SAFETY: as in `sxtb16`; it reads `a` and `b` and writes `lo` and `hi` only.
        unsafe {
            core::arch::asm!("smull {lo}, {hi}, {a}, {b}", lo = lateout(reg) lo, hi = lateout(reg) hi,
                a = in(reg) a, b = in(reg) b, options(pure, nomem, nostack, preserves_flags));
        }
        (i64::from(hi) << 32) | i64::from(lo)
    }

    /// `SMLALD a, b, acc`: `acc + a.lo × b.lo + a.hi × b.hi` in 64 bits (never overflows here: the sums
    /// it takes are far below 2^63).
    #[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
    #[inline(always)]
    pub(super) fn smlald(a: u32, b: u32, acc: i64) -> i64 {
        #[cfg(tinyrnn_dsp)]
        {
            let (mut lo, mut hi) = (acc as u32, (acc >> 32) as u32);
            // SAFETY: as in `sxtb16`; it reads `a`, `b` and the accumulator pair and writes the pair.
            unsafe {
                core::arch::asm!("smlald {lo}, {hi}, {a}, {b}", lo = inout(reg) lo, hi = inout(reg) hi,
                    a = in(reg) a, b = in(reg) b, options(pure, nomem, nostack, preserves_flags));
            }
            (i64::from(hi) << 32) | i64::from(lo)
        }
        #[cfg(not(tinyrnn_dsp))]
        {
            let ((a0, a1), (b0, b1)) = (halves(a), halves(b));
            acc + i64::from(a0 * b0) + i64::from(a1 * b1)
        }
    }

    /// `SMLAD a, b, acc`: `acc + a.lo × b.lo + a.hi × b.hi`, wrapping.
    #[inline(always)]
    pub(super) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        #[cfg(tinyrnn_dsp)]
        {
            let out: i32;
            // SAFETY: as in `sxtb16`; the Q flag it may set is not read by compiled code.
            unsafe {
                core::arch::asm!("smlad {o}, {a}, {b}, {c}", o = lateout(reg) out, a = in(reg) a,
                    b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack));
            }
            out
        }
        #[cfg(not(tinyrnn_dsp))]
        {
            let ((a0, a1), (b0, b1)) = (halves(a), halves(b));
            acc.wrapping_add(a0 * b0).wrapping_add(a1 * b1)
        }
    }
}

/// `round(acc × multiplier / 2^shift)`, saturated to `i32`: how an accumulator moves from one scale to
/// another. `shift` is taken in `1..=62`; values outside are clamped to it. Ties round up.
#[inline]
pub fn rescale(acc: i32, multiplier: i32, shift: u32) -> i32 {
    let shift = shift.clamp(1, 62);
    let product = multiply_wide(acc, multiplier);
    if shift >= 33 {
        // The usual case (multipliers are normalized near 2^30): shifting right by 32 or more only
        // needs the high word, a 32-bit shift instead of a 64-bit one. `|p| ≤ 2^62` keeps the high
        // word within 2^30, so `+ 1` cannot overflow and the result needs no saturation.
        let high = (product >> 32) as i32;
        return ((high >> (shift - 33)) + 1) >> 1;
    }
    // `|p| ≤ 2^62`, so adding 1 after the first shift cannot overflow: a plain add, no saturation.
    let rounded = ((product >> (shift - 1)) + 1) >> 1;
    saturate_i32(rounded)
}

/// The exact product `a × b`. On Armv6-M (`cfg(tinyrnn_no_long_multiply)`) it is formed from 16-bit
/// halves with four 32-bit multiplies and 64-bit adds, about 20 instructions inline instead of a call
/// to `__aeabi_lmul` of about 50; elsewhere it is the plain widening multiply, on Armv7E-M one `SMULL`
/// in assembly (LLVM, knowing a sum checked to fit `i32` was an `i64`, otherwise multiplies 64 by 32
/// bits in four instructions). The same value either way.
#[inline(always)]
pub(crate) fn multiply_wide(a: i32, b: i32) -> i64 {
    #[cfg(tinyrnn_no_long_multiply)]
    {
        halves_product(a, b)
    }
    #[cfg(tinyrnn_dsp)]
    {
        dsp::smull(a, b)
    }
    #[cfg(not(any(tinyrnn_no_long_multiply, tinyrnn_dsp)))]
    {
        i64::from(a) * i64::from(b)
    }
}

/// `a × b` from halves: `a = a_hi·2^16 + a_lo` with `a_hi = a >> 16` (signed) and `a_lo` the low 16
/// bits (unsigned), `b` alike. Each partial product fits its type: `|a_hi b_hi| ≤ 2^30`,
/// `|a_hi b_lo| < 2^31`, `a_lo b_lo < 2^32`.
#[inline(always)]
#[cfg_attr(not(any(tinyrnn_no_long_multiply, test)), allow(dead_code))]
fn halves_product(a: i32, b: i32) -> i64 {
    let (a_hi, a_lo) = (a >> 16, a & 0xffff);
    let (b_hi, b_lo) = (b >> 16, b & 0xffff);
    let high = i64::from(a_hi * b_hi) << 32;
    let middle = (i64::from(a_hi * b_lo) + i64::from(a_lo * b_hi)) << 16;
    let low = i64::from((a_lo as u32) * (b_lo as u32));
    high + middle + low
}

/// [`rescale`] for a pair that `Model::open` validated (multiplier in `0..2^31`, shift in `1..=62`),
/// without clamping the shift on every row: the same value for every such pair. A shift outside the
/// range cannot reach it; were it to, the shifts wrap (`wrapping_shr`), so it gives some value and
/// still never panics.
#[inline(always)]
pub(crate) fn rescale_validated(acc: i32, multiplier: i32, shift: u32) -> i32 {
    // With a 64-bit multiply in hardware the product is formed once for both cases; without, the usual
    // case forms only its high word.
    #[cfg(not(tinyrnn_no_long_multiply))]
    let product = multiply_wide(acc, multiplier);
    if shift >= 33 {
        // As in `rescale`: the high word, within 2^30, shifted as an `i32`.
        #[cfg(not(tinyrnn_no_long_multiply))]
        let high = (product >> 32) as i32;
        #[cfg(tinyrnn_no_long_multiply)]
        let high = high_from_halves(acc, multiplier);
        return high.wrapping_shr(shift.wrapping_sub(33)).wrapping_add(1) >> 1;
    }
    #[cfg(tinyrnn_no_long_multiply)]
    let product = multiply_wide(acc, multiplier);
    let rounded = product.wrapping_shr(shift.wrapping_sub(1)).wrapping_add(1) >> 1;
    saturate_i32(rounded)
}

/// `⌊a × b / 2^32⌋`, the high word of the exact product, for `b ≥ 0` (a validated multiplier), from
/// 16-bit halves, without forming the low word or any 64-bit sum (for Armv6-M): with
/// `a = a_hi·2^16 + a_lo` (`a_hi` signed, `a_lo` the low bits) and `b` alike (`b ≥ 0`, so `b_hi < 2^15`), the high word is `a_hi·b_hi` plus the floor of
/// `(a_hi·b_lo + a_lo·b_hi + ⌊a_lo·b_lo / 2^16⌋) / 2^16`. `a_hi·b_lo` is split into its own high
/// part (an arithmetic shift) and its low 16 bits, which join the other, non-negative terms in a `u32`
/// sum below 2^32. Every product fits its type: `|a_hi·b_lo| < 2^31`, `a_lo·b_hi < 2^31`,
/// `a_lo·b_lo < 2^32`.
#[inline(always)]
#[cfg_attr(not(any(tinyrnn_no_long_multiply, test)), allow(dead_code))]
fn high_from_halves(a: i32, b: i32) -> i32 {
    let (a_hi, a_lo) = (a >> 16, (a & 0xffff) as u32);
    let (b_hi, b_lo) = (((b >> 16) & 0x7fff) as u32, (b & 0xffff) as u32);
    let cross = a_hi * b_lo as i32;
    let low = a_lo * b_hi + ((a_lo * b_lo) >> 16) + (cross as u32 & 0xffff);
    a_hi * b_hi as i32 + (cross >> 16) + (low >> 16) as i32
}

/// Saturates to `i16`.
#[inline]
pub fn saturate_i16(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// `y_r = rescale(Σ_j q_rj x_j, m_r, s_r)`: an int8 matrix with one requantization pair per row
/// (`requant = [m_0, s_0, m_1, s_1, …]`) times an `i16` vector, each row landing in its target format.
#[inline]
pub fn matvec_requant(q: &[u8], requant: &[i32], x: &[i16], y: &mut [i32]) {
    if x.is_empty() {
        y.iter_mut().for_each(|v| *v = 0);
        return;
    }
    rows_requant(q, requant, x, y, |out, value| *out = value);
}

/// The `(multiplier, shift)` pairs of a requantization table, one per row.
#[inline]
pub(crate) fn requant_pairs(requant: &[i32]) -> impl Iterator<Item = (i32, i32)> + '_ {
    // `chunks_exact(2)` only yields pairs; the other arm exists for the compiler (a shift of 0 is
    // never valid, so it would read as a zero row, not a wrong one).
    requant.chunks_exact(2).map(|pair| match *pair {
        [multiplier, shift] => (multiplier, shift),
        _ => (0, 0),
    })
}

/// Calls `finish(y_r, rescale(Σ_j q_rj x_j, m_r, s_r))` for every row, in row order: the rows of
/// [`matvec_requant`] with what is done with each left to the caller (with `x` empty, every sum is 0).
#[inline]
pub(crate) fn matvec_requant_map(
    q: &[u8],
    requant: &[i32],
    x: &[i16],
    y: &mut [i32],
    finish: impl FnMut(&mut i32, i32),
) {
    if x.is_empty() {
        let mut finish = finish;
        y.iter_mut().for_each(|v| finish(v, 0));
        return;
    }
    rows_requant(q, requant, x, y, finish);
}

/// `y_r += rescale(Σ_j q_rj x_j, m_r, s_r)`, saturating.
#[inline]
pub fn matvec_requant_add(q: &[u8], requant: &[i32], x: &[i16], y: &mut [i32]) {
    if x.is_empty() {
        return;
    }
    rows_requant(q, requant, x, y, |out, value| {
        *out = out.saturating_add(value)
    });
}

/// Calls `finish(y_r, rescale(dot(row r, x), m_r, s_r))` for every row. On Armv7E-M, two rows per pass
/// over `x` ([`dot_paired2`]: each input pair is loaded and arranged once for both); elsewhere one
/// [`dot_i8_i16`] per row. The same bits either way. `x` is not empty.
#[inline(always)]
fn rows_requant(
    q: &[u8],
    requant: &[i32],
    x: &[i16],
    y: &mut [i32],
    mut finish: impl FnMut(&mut i32, i32),
) {
    let n = x.len().max(1);
    let requantize = |dot: i32, pair: &[i32; 2]| rescale_validated(dot, pair[0], pair[1] as u32);
    let pairs = super::as_chunks::<_, 2>(requant).0;
    #[cfg(any(tinyrnn_dsp, target_arch = "arm"))]
    if n <= EXACT_TERMS {
        #[cfg(not(tinyrnn_no_long_multiply))]
        let rows = y.len().min(q.len() / n).min(pairs.len());
        // Armv6-M has no divide instruction: validation makes `q` exactly `rows × n`, so the division
        // (a library call there) is left for a matrix that is not. `n ≤ EXACT_TERMS` < 2^9 here, so
        // below 2^22 rows the product cannot overflow (a checked multiply is another library call).
        #[cfg(tinyrnn_no_long_multiply)]
        let rows = {
            let rows = y.len().min(pairs.len());
            if rows < 1 << 22 && rows.wrapping_mul(n) <= q.len() {
                rows
            } else {
                rows.min(q.len() / n)
            }
        };
        let paired = rows - rows % 2;
        let (y_pairs, y_tail) = y.split_at_mut_checked(paired).unwrap_or((&mut [], &mut []));
        let (q_pairs, q_tail) = q.split_at_checked(paired * n).unwrap_or((&[], q));
        let (pairs_two, pairs_tail) = pairs.split_at_checked(paired).unwrap_or((&[], pairs));
        // The input arranged once for all rows when it is whole groups of four and not too long
        // (each pair of rows would otherwise arrange it again), in a loop of its own: fewer values
        // live across it than in one that could take either kernel.
        #[cfg(tinyrnn_dsp)]
        let mut table: ArrangedTable = [MaybeUninit::uninit(); ARRANGED_GROUPS];
        #[cfg(tinyrnn_dsp)]
        let arranged = if n % 4 == 0 && paired >= 4 {
            arrange_pairs(x, &mut table)
        } else {
            &[]
        };
        #[cfg(tinyrnn_dsp)]
        let groups = arranged.len();
        #[cfg(tinyrnn_dsp)]
        if groups > 0 {
            for ((out, rows), two) in super::as_chunks_mut::<_, 2>(y_pairs)
                .iter_mut()
                .zip(q_pairs.chunks_exact(2 * n))
                .zip(super::as_chunks::<_, 2>(pairs_two).0)
            {
                let (d0, d1) = dot_paired2_arranged(rows, arranged);
                finish(&mut out[0], requantize(d0, &two[0]));
                finish(&mut out[1], requantize(d1, &two[1]));
            }
        }
        #[cfg(tinyrnn_dsp)]
        let y_pairs = if groups > 0 { &mut [] } else { y_pairs };
        for ((out, rows), two) in super::as_chunks_mut::<_, 2>(y_pairs)
            .iter_mut()
            .zip(q_pairs.chunks_exact(2 * n))
            .zip(super::as_chunks::<_, 2>(pairs_two).0)
        {
            let (first, second) = rows.split_at_checked(n).unwrap_or((&[], &[]));
            #[cfg(tinyrnn_dsp)]
            let (d0, d1) = dot_paired2(first, second, x);
            #[cfg(not(tinyrnn_dsp))]
            let (d0, d1) = dot_plain2(first, second, x);
            finish(&mut out[0], requantize(d0, &two[0]));
            finish(&mut out[1], requantize(d1, &two[1]));
        }
        for ((out, row), pair) in y_tail
            .iter_mut()
            .zip(q_tail.chunks_exact(n))
            .zip(pairs_tail)
        {
            finish(out, requantize(dot_i8_i16(row, x), pair));
        }
        return;
    }
    for ((out, row), pair) in y.iter_mut().zip(q.chunks_exact(n)).zip(pairs) {
        finish(out, requantize(dot_i8_i16(row, x), pair));
    }
}

/// The requantized sums of rows `row` and `row + 1` of an int8 matrix (`pairs`: one `(multiplier,
/// shift)` per row) with `x`: the values [`matvec_requant`] gives those rows, two rows per pass over `x`
/// where the core has a paired kernel. A row that does not exist gives 0.
#[inline(always)]
pub(crate) fn row_pair_requant(q: &[u8], pairs: &[[i32; 2]], row: usize, x: &[i16]) -> (i32, i32) {
    let n = x.len();
    let requantize = |dot: i32, pair: &[i32; 2]| rescale_validated(dot, pair[0], pair[1] as u32);
    let start = row.saturating_mul(n);
    if let (Some(rows), Some([p0, p1])) = (
        q.get(start..start.saturating_add(2 * n)),
        pairs.get(row..row.saturating_add(2)),
    ) {
        if n <= EXACT_TERMS {
            let (a, b) = rows.split_at_checked(n).unwrap_or((&[], &[]));
            #[cfg(tinyrnn_dsp)]
            let (d0, d1) = dot_paired2(a, b, x);
            #[cfg(all(target_arch = "arm", not(tinyrnn_dsp)))]
            let (d0, d1) = dot_plain2(a, b, x);
            #[cfg(not(target_arch = "arm"))]
            let (d0, d1) = (dot_i8_i16(a, x), dot_i8_i16(b, x));
            return (requantize(d0, p0), requantize(d1, p1));
        }
    }
    let value = |r: usize| match (q.get(r * n..(r + 1) * n), pairs.get(r)) {
        (Some(cells), Some(pair)) => requantize(dot_i8_i16(cells, x), pair),
        _ => 0,
    };
    (value(row), value(row + 1))
}

/// [`row_pair_requant`] for an int16 matrix: the values [`matvec_requant_i16_add`] adds for those rows.
#[inline(always)]
pub(crate) fn row_pair_requant_i16(
    w: &[i16],
    pairs: &[[i32; 2]],
    row: usize,
    x: &[i16],
) -> (i32, i32) {
    (
        row_i16_at(w, pairs, row, x),
        row_i16_at(w, pairs, row + 1, x),
    )
}

/// The requantized sum of row `row` of an int16 matrix with `x`, 0 for a row that does not exist.
#[inline(always)]
fn row_i16_at(w: &[i16], pairs: &[[i32; 2]], row: usize, x: &[i16]) -> i32 {
    let n = x.len();
    match (w.get(row * n..(row + 1) * n), pairs.get(row)) {
        (Some(cells), Some(&[multiplier, shift])) => row_i16_requant(cells, x, multiplier, shift),
        _ => 0,
    }
}

/// `y_r += rescale(Σ_j w_rj x_j, m_r, s_r)` for an int16 matrix, saturating: each product fits `i32`
/// (`|w x| ≤ 2^30`), the sums are exact (summed in `i64`, or in `i32` while they fit) and requantized in
/// `i128` when beyond `i32`, so nothing wraps for any row length.
#[inline]
pub fn matvec_requant_i16_add(w: &[i16], requant: &[i32], x: &[i16], y: &mut [i32]) {
    if x.is_empty() {
        return;
    }
    rows_i16_requant(w, requant, x, y, |out, value| {
        *out = out.saturating_add(value)
    });
}

/// Calls `finish(y_r, rescale(Σ_j w_rj x_j, m_r, s_r))` for every row of an int16 matrix, in row order
/// (with `x` empty, every sum is 0): [`matvec_requant_i16_add`]'s sums. Inputs of one to four values (a
/// forecaster's few sensor channels) take a loop made for their length, which keeps `x` in registers
/// across the rows; the same values.
#[inline]
pub(crate) fn matvec_requant_i16_map(
    w: &[i16],
    requant: &[i32],
    x: &[i16],
    y: &mut [i32],
    mut finish: impl FnMut(&mut i32, i32),
) {
    match x {
        [] => y.iter_mut().for_each(|v| finish(v, 0)),
        [x0] => rows_i16_narrow(w, requant, &[*x0], y, finish),
        [x0, x1] => rows_i16_narrow(w, requant, &[*x0, *x1], y, finish),
        [x0, x1, x2] => rows_i16_narrow(w, requant, &[*x0, *x1, *x2], y, finish),
        [x0, x1, x2, x3] => rows_i16_narrow(w, requant, &[*x0, *x1, *x2, *x3], y, finish),
        _ => rows_i16_requant(w, requant, x, y, finish),
    }
}

/// The rows of [`matvec_requant_i16_map`] for an `x` that is not empty.
#[inline(always)]
fn rows_i16_requant(
    w: &[i16],
    requant: &[i32],
    x: &[i16],
    y: &mut [i32],
    mut finish: impl FnMut(&mut i32, i32),
) {
    let rows = y
        .iter_mut()
        .zip(w.chunks_exact(x.len().max(1)))
        .zip(requant_pairs(requant));
    // On Armv7E-M two rows per pass, each pair of `x` loaded once for both (in unit tests too, so the
    // pairing is checked on the host).
    #[cfg(any(tinyrnn_dsp, test))]
    let mut rows = rows;
    #[cfg(any(tinyrnn_dsp, test))]
    while let Some(((out0, row0), (m0, s0))) = rows.next() {
        let Some(((out1, row1), (m1, s1))) = rows.next() else {
            finish(out0, row_i16_requant(row0, x, m0, s0));
            break;
        };
        let (sum0, sum1) = dot2_i16_paired(row0, row1, x);
        finish(out0, requantize_row_i16(RowSum::of(sum0), m0, s0));
        finish(out1, requantize_row_i16(RowSum::of(sum1), m1, s1));
    }
    for ((out, row), (multiplier, shift)) in rows {
        finish(out, row_i16_requant(row, x, multiplier, shift));
    }
}

/// [`rows_i16_requant`] for an input of `N` values: each row is `N` weights, the loop over them unrolled.
#[inline(always)]
fn rows_i16_narrow<const N: usize>(
    w: &[i16],
    requant: &[i32],
    x: &[i16; N],
    y: &mut [i32],
    mut finish: impl FnMut(&mut i32, i32),
) {
    for ((out, row), (multiplier, shift)) in y
        .iter_mut()
        .zip(super::as_chunks::<_, N>(w).0)
        .zip(requant_pairs(requant))
    {
        #[cfg(tinyrnn_dsp)]
        let sum = row_i16_sum(row, x);
        #[cfg(not(tinyrnn_dsp))]
        let sum = row_i16_sum_unrolled(row, x);
        finish(out, requantize_row_i16(sum, multiplier, shift));
    }
}

/// [`row_i16_sum`] of a row of `N ≤ 4` terms written out term by term: a loop over so few terms is
/// not unrolled by the size-optimised builds of Armv6-M firmware, and its counter and exit tests cost
/// as much as the terms.
#[cfg_attr(tinyrnn_dsp, allow(dead_code))]
#[inline(always)]
fn row_i16_sum_unrolled<const N: usize>(row: &[i16; N], x: &[i16; N]) -> RowSum {
    let term = |j: usize| match (row.get(j), x.get(j)) {
        (Some(&w), Some(&x)) => i32::from(w) * i32::from(x),
        _ => 0,
    };
    let checked = || {
        let mut acc = term(0);
        if N > 1 {
            acc = acc.checked_add(term(1))?;
        }
        if N > 2 {
            acc = acc.checked_add(term(2))?;
        }
        if N > 3 {
            acc = acc.checked_add(term(3))?;
        }
        Some(acc)
    };
    match checked() {
        Some(acc) => RowSum::Narrow(acc),
        None => RowSum::of(row_i16_sum_wide(row, x)),
    }
}

/// The exact sum of an int16 row's terms: as an `i32` when it fits one (the usual case), else as the
/// `i64` it is.
#[derive(Clone, Copy)]
enum RowSum {
    Narrow(i32),
    Wide(i64),
}

impl RowSum {
    #[inline(always)]
    fn of(sum: i64) -> Self {
        i32::try_from(sum).map_or(RowSum::Wide(sum), RowSum::Narrow)
    }
}

/// `rescale(Σ_j w_j x_j, multiplier, shift)` of one int16 row, the sum exact whatever its size.
#[inline(always)]
fn row_i16_requant(row: &[i16], x: &[i16], multiplier: i32, shift: i32) -> i32 {
    requantize_row_i16(row_i16_sum(row, x), multiplier, shift)
}

/// The requantization of an int16 row's sum: in `i32` arithmetic when it fits one, else
/// [`rescale_wide`] (out of line).
#[inline(always)]
fn requantize_row_i16(sum: RowSum, multiplier: i32, shift: i32) -> i32 {
    match sum {
        RowSum::Narrow(acc) => rescale_validated(acc, multiplier, shift as u32),
        RowSum::Wide(acc) => rescale_wide(acc, multiplier, shift),
    }
}

/// `Σ_j w_j x_j` of an int16 row, exact. Full-scale weights and states (an int16 matrix beside a
/// saturated tanh state) take 32-term sums past `i32` often, so the wide case is a common one, not an
/// exception:
/// - on Armv7E-M the sum is formed in `i64`, two terms per `SMLALD` ([`dot_i16_paired`]);
/// - on other Arm cores, rows of more than four terms take an out-of-line Thumb-1 loop that sums in
///   `i32` and counts the wraps ([`thumb1_row_i16_sum`]): as fast as a plain `i32` loop while the sum
///   fits, and one pass over the row when it does not. (Inlined into a row loop, LLVM's kept its
///   pointers on the stack and reloaded them for every term: 13 instructions per MAC instead of 8.)
/// - elsewhere it is summed in `i32` until a partial sum would overflow, then in `i64`
///   ([`row_i16_sum_wide`]).
#[inline(always)]
fn row_i16_sum(row: &[i16], x: &[i16]) -> RowSum {
    #[cfg(tinyrnn_dsp)]
    {
        RowSum::of(dot_i16_paired(row, x))
    }
    #[cfg(not(tinyrnn_dsp))]
    {
        #[cfg(target_arch = "arm")]
        if row.len().min(x.len()) > 4 {
            return match thumb1_row_i16_sum(row, x) {
                (sum, 0) => RowSum::Narrow(sum),
                (sum, wraps) => RowSum::Wide(i64::from(sum) + (i64::from(wraps) << 32)),
            };
        }
        let mut acc = 0i32;
        for (&w, &v) in row.iter().zip(x) {
            match acc.checked_add(i32::from(w) * i32::from(v)) {
                Some(sum) => acc = sum,
                None => return RowSum::of(row_i16_sum_wide(row, x)),
            }
        }
        RowSum::Narrow(acc)
    }
}

/// [`row_i16_sum`] as a Thumb-1 loop (Armv6-M, and Armv7-M without the DSP extension): `LDRSH` with a
/// register offset for both operands, `MULS`, `ADDS`, two terms per pass (7 instructions per term; an
/// odd first term is taken before the loop). When an add overflows (`BVS`), the loop counts the wrap,
/// +1 for a positive term (the true sum is 2^32 above the `i32`) and −1 for a negative one, and goes
/// on. It returns the `i32` and the count: the sum is the `i32` plus 2^32 times the count, which is 0
/// exactly when the sum fits `i32`. (Each term fits `i32`: `|w x| ≤ 2^30`.) Two words, so they come
/// back in registers.
#[cfg(all(target_arch = "arm", not(tinyrnn_dsp)))]
#[inline(never)]
fn thumb1_row_i16_sum(row: &[i16], x: &[i16]) -> (i32, i32) {
    let n = row.len().min(x.len());
    if n == 0 {
        return (0, 0);
    }
    let (sum, wraps): (i32, i32);
    // SAFETY: `w` and `x` point at `n ≥ 1` values each, read at byte offset `i` = 0, 2, …, 2(n − 1):
    // an odd `n` reads offset 0 first and starts the loop at 2, so the loop's offsets come in pairs
    // `i`, `i + 2` with `i + 2 < 2n`, and it stops when `i` reaches `2n` (kept in r11); every load is
    // inside both slices, at its natural alignment. The block reads memory only and writes only its
    // operands, r11 and r12 (declared clobbered) and the flags. Thumb-1 takes high registers only by
    // `mov`/`cmp`/`add`, so the end comes in through `t`, and the wrap count lives in r12 (a scratch
    // register: nothing to save), changed by `add` alone, and goes out through `i`.
    unsafe {
        core::arch::asm!(
            "mov r11, {t}",
            "movs {acc}, #0",
            "movs {i}, #0",
            "mov r12, {i}",
            // `n` odd (bit 1 of `2n`): its first term alone, which `0 +` cannot overflow.
            "movs {u}, #2",
            "tst {t}, {u}",
            "beq 2f",
            "ldrsh {t}, [{w}, {i}]",
            "ldrsh {u}, [{x}, {i}]",
            "muls {t}, {u}, {t}",
            "adds {acc}, {acc}, {t}",
            "movs {i}, #2",
            "cmp {i}, r11",
            "beq 4f",
            "2:",
            "ldrsh {t}, [{w}, {i}]",
            "ldrsh {u}, [{x}, {i}]",
            "muls {t}, {u}, {t}",
            "adds {acc}, {acc}, {t}",
            "bvs 5f",
            "3:",
            "adds {i}, #2",
            "ldrsh {t}, [{w}, {i}]",
            "ldrsh {u}, [{x}, {i}]",
            "muls {t}, {u}, {t}",
            "adds {acc}, {acc}, {t}",
            "bvs 6f",
            "7:",
            "adds {i}, #2",
            "cmp {i}, r11",
            "bne 2b",
            "b 4f",
            // An add wrapped: count +1 for a positive term, −1 for a negative one, and go back to
            // the half of the pass it came from.
            "5:",
            "asrs {u}, {t}, #31",
            "adds {u}, {u}, {u}",
            "adds {u}, #1",
            "add r12, {u}",
            "b 3b",
            "6:",
            "asrs {u}, {t}, #31",
            "adds {u}, {u}, {u}",
            "adds {u}, #1",
            "add r12, {u}",
            "b 7b",
            "4:",
            "mov {i}, r12",
            w = in(reg) row.as_ptr(),
            x = in(reg) x.as_ptr(),
            t = inout(reg) 2 * n => _,
            u = out(reg) _,
            acc = out(reg) sum,
            i = out(reg) wraps,
            out("r12") _,
            out("r11") _,
            options(readonly, nostack),
        );
    }
    (sum, wraps)
}

/// `Σ_j w_j x_j` of an int16 row in `i64`, where no row length can overflow it (each term is at most
/// 2^30 in magnitude).
#[cold]
#[inline(never)]
fn row_i16_sum_wide(row: &[i16], x: &[i16]) -> i64 {
    row.iter().zip(x).fold(0i64, |acc, (&w, &x)| {
        acc + i64::from(i32::from(w) * i32::from(x))
    })
}

/// The exact `Σ_j w_j x_j` of an int16 row in `i64`, two terms per `SMLALD` on Armv7E-M (emulated
/// elsewhere, so host tests check it).
#[cfg_attr(not(tinyrnn_dsp), allow(dead_code))]
#[inline(always)]
fn dot_i16_paired(w: &[i16], x: &[i16]) -> i64 {
    let (w2, w_rest) = super::as_chunks::<_, 2>(w);
    let (x2, x_rest) = super::as_chunks::<_, 2>(x);
    let mut acc = 0i64;
    for (w, x) in w2.iter().zip(x2) {
        acc = dsp::smlald(dsp::pair(w[0], w[1]), dsp::pair(x[0], x[1]), acc);
    }
    w_rest.iter().zip(x_rest).fold(acc, |acc, (&w, &x)| {
        acc + i64::from(i32::from(w) * i32::from(x))
    })
}

/// [`dot_i16_paired`] of two rows with the same `x`, each pair of `x` loaded once for both rows.
#[cfg_attr(not(any(tinyrnn_dsp, test)), allow(dead_code))]
#[inline(always)]
fn dot2_i16_paired(w0: &[i16], w1: &[i16], x: &[i16]) -> (i64, i64) {
    let (w0_2, w0_rest) = super::as_chunks::<_, 2>(w0);
    let (w1_2, w1_rest) = super::as_chunks::<_, 2>(w1);
    let (x2, x_rest) = super::as_chunks::<_, 2>(x);
    let (mut acc0, mut acc1) = (0i64, 0i64);
    for ((w0, w1), x) in w0_2.iter().zip(w1_2).zip(x2) {
        let x = dsp::pair(x[0], x[1]);
        acc0 = dsp::smlald(dsp::pair(w0[0], w0[1]), x, acc0);
        acc1 = dsp::smlald(dsp::pair(w1[0], w1[1]), x, acc1);
    }
    let tail = |acc: i64, w: &[i16]| {
        w.iter().zip(x_rest).fold(acc, |acc, (&w, &x)| {
            acc + i64::from(i32::from(w) * i32::from(x))
        })
    };
    (tail(acc0, w0_rest), tail(acc1, w1_rest))
}

/// [`rescale`] of a sum beyond `i32`. For the usual shifts (33 or more: multipliers are normalized
/// near 2^30) only `⌊acc × m / 2^32⌋` is needed, formed from the words of `acc` with two 32 × 32-bit
/// products ([`multiply_wide`]): with `acc = hi·2^32 + lo` (`lo` unsigned, which is its signed reading
/// plus 2^32 when that is negative), it is `hi·m + ⌊lo_signed·m / 2^32⌋ + (m if lo_signed < 0)`, within
/// `2^62 + 2^32` in magnitude. Other shifts take `i128`. The same value as `i128` throughout.
#[cfg_attr(not(tinyrnn_dsp), cold)]
#[inline(never)]
pub(crate) fn rescale_wide(acc: i64, multiplier: i32, shift: i32) -> i32 {
    let shift = (shift as u32).clamp(1, 62);
    if shift >= 33 {
        let (hi, lo) = ((acc >> 32) as i32, acc as i32);
        let mut high = multiply_wide(hi, multiplier) + (multiply_wide(lo, multiplier) >> 32);
        if lo < 0 {
            high += i64::from(multiplier);
        }
        return saturate_i32(((high >> (shift - 33)) + 1) >> 1);
    }
    rescale_wide_i128(acc, multiplier, shift)
}

/// [`rescale_wide`] in `i128`: the definition, and the path of shifts below 33.
#[cold]
#[inline(never)]
fn rescale_wide_i128(acc: i64, multiplier: i32, shift: u32) -> i32 {
    let shift = shift.clamp(1, 62);
    let product = i128::from(acc) * i128::from(multiplier);
    let rounded = ((product >> (shift - 1)) + 1) >> 1;
    rounded.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
}

/// `x / 2^shift` rounded to nearest (ties up) for `shift > 0`, `x × 2^−shift` saturating for
/// `shift ≤ 0`. Shifts are taken in `−62..=62`.
#[inline]
pub fn shift_round(x: i64, shift: i32) -> i64 {
    let shift = shift.clamp(-62, 62);
    if shift > 0 {
        if let (Ok(x), true) = (i32::try_from(x), shift <= 32) {
            // Most callers pass a widened `i32`: shift it as one (a 64-bit shift by a variable amount
            // is a dozen instructions on a 32-bit core). `(q + 1) >> 1` written so it cannot overflow.
            let q = x >> (shift - 1);
            return i64::from((q >> 1) + (q & 1));
        }
        (x >> (shift - 1)).saturating_add(1) >> 1
    } else {
        shift_left_saturating(x, (-shift) as u32)
    }
}

/// `x × 2^k`, saturated to `i64` (`k ≤ 62`). On Armv6-M as a shift and a check, so the core, which has
/// no 64-bit multiply, does not call `__aeabi_lmul` for it; elsewhere `saturating_mul`, which is
/// cheaper there than two 64-bit shifts by a variable amount.
#[inline(always)]
fn shift_left_saturating(x: i64, k: u32) -> i64 {
    #[cfg(not(tinyrnn_no_long_multiply))]
    if !cfg!(test) {
        return x.saturating_mul(1i64 << k);
    }
    let shifted = x << k;
    if shifted >> k == x {
        shifted
    } else if x < 0 {
        i64::MIN
    } else {
        i64::MAX
    }
}

/// A value with `from` fraction bits moved to `to` fraction bits, rounded to nearest and saturated to
/// `i32`. A value that fits `i32` (most callers widen one) is moved in `i32` arithmetic: the same
/// result without 64-bit shifts, which a 32-bit core does in several instructions or a library call.
#[inline]
pub fn requantize(x: i64, from: u32, to: u32) -> i32 {
    let shift = from as i32 - to as i32;
    if let Ok(x) = i32::try_from(x) {
        return shift_i32(x, shift);
    }
    saturate_i32(shift_round(x, shift))
}

/// A value with `from` fraction bits moved to `to` fraction bits, rounded and saturated to `i16`.
#[inline]
pub fn requantize_i16(x: i64, from: u32, to: u32) -> i16 {
    let shift = from as i32 - to as i32;
    if let Ok(x) = i32::try_from(x) {
        return shift_i32_to_i16(x, shift);
    }
    saturate_i16(saturate_i32(shift_round(x, shift)))
}

/// `saturate_i32(shift_round(x, shift))` of an `i32`, in `i32`: a right shift rounds to nearest (ties
/// up; by 32 or more every value rounds to 0), a left shift saturates.
#[inline(always)]
fn shift_i32(x: i32, shift: i32) -> i32 {
    if shift > 0 {
        let q = x >> (shift.min(32) - 1);
        (q >> 1) + (q & 1)
    } else {
        let k = shift.unsigned_abs();
        if k == 0 || x == 0 {
            x
        } else if k < 31 && (x << k) >> k == x {
            x << k
        } else if x < 0 {
            i32::MIN
        } else {
            i32::MAX
        }
    }
}

/// `saturate_i16(shift_i32(x, shift))`: for a left shift, a value beyond `±2^16` saturates whatever the
/// shift, so it is clamped there first and the shift cannot overflow.
#[inline(always)]
fn shift_i32_to_i16(x: i32, shift: i32) -> i16 {
    if shift > 0 {
        return saturate_i16(shift_i32(x, shift));
    }
    let k = shift.unsigned_abs();
    if k < 16 {
        saturate_i16(x.clamp(-65536, 65535) << k)
    } else if x == 0 {
        0
    } else {
        saturate_i16(shift_i32(x, shift))
    }
}

/// An element-wise activation of a Q·.12 pre-activation, as Q·.15 in an `i32`: sigmoid and tanh through
/// their tables (within `±32767`), ReLU and linear exactly (`× 8`, saturating). Softmax is not
/// element-wise: Dense layers run it over the whole row ([`softmax`]); here it is linear.
#[inline]
pub fn activate(activation: crate::format::Activation, pre: i32) -> i32 {
    use crate::format::Activation;
    match activation {
        Activation::Sigmoid => i32::from(sigmoid(pre)),
        Activation::Tanh => i32::from(tanh(pre)),
        Activation::Relu => pre.max(0).saturating_mul(8),
        Activation::Linear | Activation::Softmax => pre.saturating_mul(8),
    }
}

#[inline]
fn saturate_i32(x: i64) -> i32 {
    x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// `σ(x)` of a Q·.12 input, in Q0.15. Inputs beyond `±16` take the end values of the table.
#[inline]
pub fn sigmoid(x: i32) -> i16 {
    // 16 in Q.12 is 65536; the table has one entry per 256 input steps. The input saturates at one
    // step below 16 (one `SSAT` on Armv7-M; the index then stays below 512, so both entries are read
    // without a check): there the interpolation gives the table's last entry, which its neighbour
    // equals (`end_entries_are_equal`), so this is the table on the whole of [−16, 16].
    interpolate(&SIGMOID, x.clamp(-65536, 65535) + 65536, 8)
}

/// `tanh(x)` of a Q·.12 input, in Q0.15. Inputs beyond `±8` take the end values of the table. Odd by
/// construction: `tanh(−x) = −tanh(x)` exactly.
#[inline]
pub fn tanh(x: i32) -> i16 {
    // 8 in Q.12 is 32768; one entry per 128 input steps. `|x|` saturates one step below 8, as in
    // `sigmoid`.
    let magnitude = x.unsigned_abs().min(32767) as i32;
    let y = interpolate(&TANH, magnitude + 32768, 7);
    if x < 0 {
        -y
    } else {
        y
    }
}

/// `e^x` of a Q·.12 input `x ≤ 0`, in Q0.15: a table with spacing 1/32 on `[−16, 0]` and linear
/// interpolation; inputs below −16 give the table's first entry (0), positive inputs are taken as 0.
#[inline]
pub fn exp_nonpositive(x: i32) -> i16 {
    // 16 in Q.12 is 65536; one entry per 128 input steps.
    interpolate(&EXP, x.clamp(-65536, 0) + 65536, 7)
}

/// Softmax of Q·.12 values, in place, as Q0.15: `e^(x_i − max) / Σ e^(x_j − max)`, the exponentials from
/// [`exp_nonpositive`] and the quotient rounded to nearest by integer division. Within
/// [`SOFTMAX_MAX_ERROR`] of the exact softmax.
pub fn softmax(values: &mut [i32]) {
    let max = values.iter().copied().max().unwrap_or(0);
    let mut sum = 0i32;
    for v in values.iter_mut() {
        *v = i32::from(exp_nonpositive(v.saturating_sub(max)));
        sum = sum.saturating_add(*v);
    }
    // The largest term is e^0 = 32767, so the sum is positive; each quotient fits Q0.15.
    if sum > 0 {
        for v in values.iter_mut() {
            *v = ((i64::from(*v) * 32768 + i64::from(sum / 2)) / i64::from(sum)).min(32767) as i32;
        }
    }
}

/// Largest error of [`softmax`] against the exact softmax, per output, in real units. Checked by a test
/// on random and extreme inputs.
pub const SOFTMAX_MAX_ERROR: f32 = 1e-4;

/// Linear interpolation in `table` at `u / 2^bits` (`u ≥ 0`), rounding to nearest. The result lies
/// between the two entries (`frac < 2^bits`), so it is an `i16` without saturation.
#[inline(always)]
fn interpolate(table: &[i16; 513], u: i32, bits: u32) -> i16 {
    let index = (u >> bits) as usize;
    let frac = u & ((1 << bits) - 1);
    let last = table[512];
    let a = i32::from(table.get(index).copied().unwrap_or(last));
    let b = i32::from(table.get(index + 1).copied().unwrap_or(last));
    (a + (((b - a) * frac + (1 << (bits - 1))) >> bits)) as i16
}

/// `σ(−16 + i/16)` in Q0.15, rounded to nearest, for `i` in `0..=512`.
const SIGMOID: [i16; 513] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 8, 8, 9, 9, 10,
    10, 11, 12, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 28, 30, 32, 34, 36, 38, 41, 43,
    46, 49, 52, 56, 59, 63, 67, 72, 76, 81, 86, 92, 98, 104, 111, 118, 125, 133, 142, 151, 161,
    171, 182, 194, 206, 219, 233, 248, 264, 281, 299, 318, 338, 360, 383, 407, 433, 461, 490, 521,
    554, 589, 627, 666, 708, 753, 800, 851, 904, 961, 1021, 1084, 1152, 1223, 1299, 1379, 1464,
    1554, 1649, 1750, 1856, 1969, 2088, 2213, 2346, 2486, 2633, 2789, 2952, 3124, 3306, 3496, 3696,
    3906, 4126, 4357, 4599, 4851, 5115, 5391, 5678, 5978, 6289, 6613, 6949, 7297, 7658, 8031, 8416,
    8813, 9221, 9641, 10072, 10513, 10964, 11424, 11894, 12371, 12856, 13348, 13845, 14347, 14852,
    15361, 15872, 16384, 16896, 17407, 17916, 18421, 18923, 19420, 19912, 20397, 20874, 21344,
    21804, 22255, 22696, 23127, 23547, 23955, 24352, 24737, 25110, 25471, 25819, 26155, 26479,
    26790, 27090, 27377, 27653, 27917, 28169, 28411, 28642, 28862, 29072, 29272, 29462, 29644,
    29816, 29979, 30135, 30282, 30422, 30555, 30680, 30799, 30912, 31018, 31119, 31214, 31304,
    31389, 31469, 31545, 31616, 31684, 31747, 31807, 31864, 31917, 31968, 32015, 32060, 32102,
    32141, 32179, 32214, 32247, 32278, 32307, 32335, 32361, 32385, 32408, 32430, 32450, 32469,
    32487, 32504, 32520, 32535, 32549, 32562, 32574, 32586, 32597, 32607, 32617, 32626, 32635,
    32643, 32650, 32657, 32664, 32670, 32676, 32682, 32687, 32692, 32696, 32701, 32705, 32709,
    32712, 32716, 32719, 32722, 32725, 32727, 32730, 32732, 32734, 32736, 32738, 32740, 32742,
    32743, 32745, 32746, 32747, 32749, 32750, 32751, 32752, 32753, 32754, 32755, 32756, 32756,
    32757, 32758, 32758, 32759, 32759, 32760, 32760, 32761, 32761, 32762, 32762, 32762, 32763,
    32763, 32763, 32764, 32764, 32764, 32764, 32765, 32765, 32765, 32765, 32765, 32766, 32766,
    32766, 32766, 32766, 32766, 32766, 32766, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
];

/// `tanh(−8 + i/32)` in Q0.15, rounded to nearest and kept in `±32767`, for `i` in `0..=512`.
const TANH: [i16; 513] = [
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767, -32767,
    -32767, -32767, -32766, -32766, -32766, -32766, -32766, -32766, -32766, -32766, -32765, -32765,
    -32765, -32765, -32765, -32764, -32764, -32764, -32764, -32763, -32763, -32763, -32762, -32762,
    -32762, -32761, -32761, -32760, -32760, -32759, -32759, -32758, -32758, -32757, -32756, -32755,
    -32755, -32754, -32753, -32752, -32751, -32750, -32749, -32747, -32746, -32745, -32743, -32741,
    -32740, -32738, -32736, -32734, -32732, -32729, -32727, -32724, -32721, -32718, -32715, -32712,
    -32708, -32704, -32700, -32696, -32691, -32686, -32681, -32676, -32670, -32663, -32657, -32649,
    -32642, -32634, -32625, -32616, -32606, -32596, -32584, -32573, -32560, -32547, -32532, -32517,
    -32501, -32484, -32466, -32447, -32426, -32404, -32381, -32356, -32329, -32301, -32271, -32240,
    -32206, -32170, -32132, -32091, -32048, -32002, -31953, -31901, -31846, -31788, -31726, -31659,
    -31589, -31515, -31435, -31351, -31262, -31167, -31067, -30960, -30847, -30727, -30600, -30465,
    -30322, -30170, -30010, -29840, -29660, -29470, -29268, -29055, -28830, -28592, -28341, -28076,
    -27797, -27502, -27191, -26864, -26519, -26157, -25776, -25376, -24956, -24516, -24054, -23571,
    -23066, -22538, -21986, -21411, -20813, -20189, -19542, -18870, -18173, -17452, -16706, -15936,
    -15143, -14326, -13486, -12625, -11743, -10840, -9919, -8980, -8025, -7056, -6073, -5079,
    -4075, -3063, -2045, -1024, 0, 1024, 2045, 3063, 4075, 5079, 6073, 7056, 8025, 8980, 9919,
    10840, 11743, 12625, 13486, 14326, 15143, 15936, 16706, 17452, 18173, 18870, 19542, 20189,
    20813, 21411, 21986, 22538, 23066, 23571, 24054, 24516, 24956, 25376, 25776, 26157, 26519,
    26864, 27191, 27502, 27797, 28076, 28341, 28592, 28830, 29055, 29268, 29470, 29660, 29840,
    30010, 30170, 30322, 30465, 30600, 30727, 30847, 30960, 31067, 31167, 31262, 31351, 31435,
    31515, 31589, 31659, 31726, 31788, 31846, 31901, 31953, 32002, 32048, 32091, 32132, 32170,
    32206, 32240, 32271, 32301, 32329, 32356, 32381, 32404, 32426, 32447, 32466, 32484, 32501,
    32517, 32532, 32547, 32560, 32573, 32584, 32596, 32606, 32616, 32625, 32634, 32642, 32649,
    32657, 32663, 32670, 32676, 32681, 32686, 32691, 32696, 32700, 32704, 32708, 32712, 32715,
    32718, 32721, 32724, 32727, 32729, 32732, 32734, 32736, 32738, 32740, 32741, 32743, 32745,
    32746, 32747, 32749, 32750, 32751, 32752, 32753, 32754, 32755, 32755, 32756, 32757, 32758,
    32758, 32759, 32759, 32760, 32760, 32761, 32761, 32762, 32762, 32762, 32763, 32763, 32763,
    32764, 32764, 32764, 32764, 32765, 32765, 32765, 32765, 32765, 32766, 32766, 32766, 32766,
    32766, 32766, 32766, 32766, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
    32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767, 32767,
];

/// `e^(−16 + i/32)` in Q0.15, rounded to nearest and kept within 32767, for `i` in `0..=512`.
const EXP: [i16; 513] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4,
    4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10,
    11, 11, 11, 12, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 21, 21, 22,
    23, 23, 24, 25, 26, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40, 41, 42, 43, 45, 46,
    48, 49, 51, 52, 54, 56, 58, 59, 61, 63, 65, 67, 69, 72, 74, 76, 79, 81, 84, 86, 89, 92, 95, 98,
    101, 104, 108, 111, 115, 118, 122, 126, 130, 134, 138, 143, 147, 152, 157, 162, 167, 172, 177,
    183, 189, 195, 201, 207, 214, 221, 228, 235, 242, 250, 258, 266, 275, 283, 292, 302, 311, 321,
    331, 342, 353, 364, 376, 387, 400, 412, 426, 439, 453, 467, 482, 498, 513, 530, 546, 564, 582,
    600, 619, 639, 659, 680, 702, 724, 747, 771, 795, 820, 846, 873, 901, 930, 959, 990, 1021,
    1053, 1087, 1121, 1157, 1194, 1231, 1271, 1311, 1352, 1395, 1440, 1485, 1533, 1581, 1631, 1683,
    1737, 1792, 1849, 1907, 1968, 2030, 2095, 2161, 2230, 2301, 2374, 2449, 2527, 2607, 2690, 2775,
    2863, 2954, 3048, 3145, 3244, 3347, 3454, 3563, 3676, 3793, 3914, 4038, 4166, 4298, 4435, 4575,
    4721, 4871, 5025, 5185, 5349, 5519, 5694, 5875, 6061, 6254, 6452, 6657, 6869, 7087, 7312, 7544,
    7783, 8030, 8285, 8548, 8819, 9099, 9388, 9686, 9994, 10311, 10638, 10976, 11324, 11684, 12055,
    12437, 12832, 13239, 13660, 14093, 14541, 15002, 15479, 15970, 16477, 17000, 17539, 18096,
    18671, 19263, 19875, 20506, 21157, 21828, 22521, 23236, 23974, 24735, 25520, 26330, 27166,
    28028, 28918, 29836, 30783, 31760, 32767,
];

/// Documented maximum errors; the tests below measure them.
const SIGMOID_BOUND: f32 = 7e-5;
const TANH_BOUND: f32 = 1.2e-4;

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;

    /// A small xorshift generator for the property tests.
    pub(crate) struct Xorshift(pub(crate) u32);

    impl Xorshift {
        pub(crate) fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }
    }

    #[test]
    fn saturating_left_shift_is_saturating_multiplication() {
        let mut rng = Xorshift(0x1234_5679);
        let values = (0..if cfg!(miri) { 200 } else { 20_000 }).map(|i| {
            let wide = (i64::from(rng.next()) << 32) | i64::from(rng.next());
            // Every magnitude: shift the random value right by 0..63.
            wide >> (i % 64)
        });
        for x in values.chain([0, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1]) {
            for k in 0..=62 {
                assert_eq!(
                    shift_left_saturating(x, k),
                    x.saturating_mul(1i64 << k),
                    "{x} << {k}"
                );
            }
        }
    }

    #[test]
    fn rescale_of_validated_pairs_is_rescale() {
        let mut rng = Xorshift(0x0bad_cafe);
        for shift in 1..=62u32 {
            for _ in 0..if cfg!(miri) { 20 } else { 5_000 } {
                let (acc, multiplier) = (rng.next() as i32, (rng.next() >> 1) as i32);
                assert_eq!(
                    rescale_validated(acc, multiplier, shift),
                    rescale(acc, multiplier, shift),
                    "{acc} × {multiplier} >> {shift}"
                );
            }
            for acc in [i32::MIN, i32::MAX, 0, -1, 1] {
                let multiplier = i32::MAX;
                assert_eq!(
                    rescale_validated(acc, multiplier, shift),
                    rescale(acc, multiplier, shift)
                );
            }
        }
        // Out of range (never after validation): some value, no panic.
        let _ = (rescale_validated(5, 1, 0), rescale_validated(5, 1, 99));
    }

    #[test]
    fn high_word_from_halves_is_the_exact_one() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -65537,
            -65536,
            -65535,
            -32769,
            -32768,
            -1,
            0,
            1,
            32767,
            32768,
            65535,
            65536,
            i32::MAX,
        ];
        let exact = |a: i32, b: i32| ((i64::from(a) * i64::from(b)) >> 32) as i32;
        for &a in &edges {
            for &b in edges.iter().filter(|&&b| b >= 0) {
                assert_eq!(high_from_halves(a, b), exact(a, b), "{a} × {b}");
            }
        }
        let mut rng = Xorshift(0x1357_9bdf);
        for _ in 0..if cfg!(miri) { 1_000 } else { 1_000_000 } {
            let (a, b) = (rng.next() as i32, (rng.next() >> 1) as i32);
            assert_eq!(high_from_halves(a, b), exact(a, b), "{a} × {b}");
        }
    }

    #[test]
    fn product_from_halves_is_the_exact_product() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -65537,
            -65536,
            -65535,
            -32769,
            -32768,
            -1,
            0,
            1,
        ];
        let edges = edges
            .iter()
            .flat_map(|&v| [v, v.wrapping_neg(), v.wrapping_sub(1)]);
        let edges: std::vec::Vec<i32> = edges.chain([i32::MAX, 65535, 65536, 32767]).collect();
        for &a in &edges {
            for &b in &edges {
                assert_eq!(
                    halves_product(a, b),
                    i64::from(a) * i64::from(b),
                    "{a} × {b}"
                );
            }
        }
        let mut rng = Xorshift(0x9e37_79b9);
        for _ in 0..if cfg!(miri) { 1_000 } else { 1_000_000 } {
            let (a, b) = (rng.next() as i32, rng.next() as i32);
            assert_eq!(
                halves_product(a, b),
                i64::from(a) * i64::from(b),
                "{a} × {b}"
            );
            assert_eq!(multiply_wide(a, b), i64::from(a) * i64::from(b));
        }
    }

    #[test]
    fn shift_round_fast_path_matches_the_64_bit_rounding() {
        let reference = |x: i64, shift: i32| {
            let shift = shift.clamp(-62, 62);
            if shift > 0 {
                (x >> (shift - 1)).saturating_add(1) >> 1
            } else {
                x.saturating_mul(1i64 << (-shift))
            }
        };
        let mut rng = Xorshift(0x0bad_cafe);
        let extremes = [
            i64::MIN,
            i64::from(i32::MIN),
            -1,
            0,
            1,
            i64::from(i32::MAX),
            i64::MAX,
        ];
        let rounds = if cfg!(miri) { 200 } else { 200_000 };
        for _ in 0..rounds {
            let v = rng.next();
            let x = match v % 4 {
                0 => extremes[(v as usize / 4) % extremes.len()],
                1 => i64::from(rng.next() as i32),
                2 => i64::from(rng.next() as i32) >> (v % 31),
                _ => (i64::from(rng.next()) << 32 | i64::from(rng.next())) >> (v % 63),
            };
            let shift = (rng.next() % 140) as i32 - 70;
            assert_eq!(shift_round(x, shift), reference(x, shift), "{x} >> {shift}");
        }
    }

    #[test]
    fn rescale_matches_the_two_shift_rounding() {
        let reference = |acc: i32, m: i32, shift: u32| {
            let shift = shift.clamp(1, 62);
            let p = i64::from(acc) * i64::from(m);
            saturate_i32((p >> (shift - 1)).saturating_add(1) >> 1)
        };
        let mut rng = Xorshift(0x1234_5678);
        let extremes = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX];
        let rounds = if cfg!(miri) { 200 } else { 200_000 };
        for round in 0..rounds {
            let pick = |rng: &mut Xorshift| {
                let v = rng.next();
                if v % 5 == 0 {
                    extremes[(v as usize / 5) % extremes.len()]
                } else {
                    (v as i32) >> (v % 31)
                }
            };
            let (acc, m) = (pick(&mut rng), pick(&mut rng));
            let shift = if round % 7 == 0 {
                rng.next() % 70
            } else {
                1 + rng.next() % 62
            };
            assert_eq!(
                rescale(acc, m, shift),
                reference(acc, m, shift),
                "{acc} × {m} >> {shift}"
            );
        }
    }

    #[test]
    fn every_dot_product_matches_the_saturating_reference() {
        let mut rng = Xorshift(0x9e37_79b9);
        let rounds = if cfg!(miri) { 40 } else { 2000 };
        for round in 0..rounds {
            // Random lengths around the remainder cases and the exactness limit, random and extreme values.
            let n = match round % 4 {
                0 => (rng.next() % 9) as usize,
                1 => (rng.next() % 70) as usize,
                2 => EXACT_TERMS - 2 + (rng.next() % 5) as usize,
                _ => (rng.next() % 1200) as usize,
            };
            let extreme = round % 3 == 0;
            let w: std::vec::Vec<u8> = (0..n)
                .map(|_| if extreme { 0x80 } else { rng.next() as u8 })
                .collect();
            let x: std::vec::Vec<i16> = (0..n)
                .map(|_| if extreme { i16::MIN } else { rng.next() as i16 })
                .collect();
            let reference = dot_saturating(&w, &x);
            assert_eq!(dot_i8_i16(&w, &x), reference, "n = {n}");
            if n <= EXACT_TERMS {
                assert_eq!(dot_plain(&w, &x), reference, "plain, n = {n}");
                assert_eq!(dot_paired(&w, &x), reference, "paired, n = {n}");
                let other: std::vec::Vec<u8> = w.iter().map(|b| b.wrapping_mul(7)).collect();
                assert_eq!(
                    dot_paired2(&w, &other, &x),
                    (reference, dot_saturating(&other, &x)),
                    "two rows, n = {n}"
                );
                let mut table: ArrangedTable = [MaybeUninit::uninit(); ARRANGED_GROUPS];
                let pairs = arrange_pairs(&x, &mut table);
                if n % 4 == 0 && pairs.len() == n / 4 {
                    let rows: std::vec::Vec<u8> = w.iter().chain(&other).copied().collect();
                    assert_eq!(
                        dot_paired2_arranged(&rows, pairs),
                        (reference, dot_saturating(&other, &x)),
                        "two rows, arranged input, n = {n}"
                    );
                }
            }
            // Unequal lengths use the common prefix.
            let cut = n / 2;
            assert_eq!(
                dot_i8_i16(&w, &x[..cut]),
                dot_saturating(&w[..cut], &x[..cut])
            );
        }
        // Past the limit, saturation shows: 600 × 2^22 is beyond i32.
        assert_eq!(dot_i8_i16(&[0x80; 600], &[i16::MIN; 600]), i32::MAX);
    }

    /// Largest error of `f` against `exact` over every Q·.12 input in `[−20, 20]` and the `i32` extremes.
    fn max_error(f: fn(i32) -> i16, exact: fn(f64) -> f64) -> f64 {
        let step = if cfg!(miri) { 97 } else { 1 };
        (-20 * 4096..=20 * 4096)
            .step_by(step)
            .chain([i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX])
            .map(|x| {
                let got = f64::from(f(x)) / 32768.0;
                (got - exact(f64::from(x) / 4096.0)).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn sigmoid_stays_within_its_documented_error() {
        let e = max_error(sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
        std::println!("sigmoid max error {e:.3e}");
        assert!(e <= f64::from(SIGMOID_MAX_ERROR), "{e}");
    }

    #[test]
    fn tanh_stays_within_its_documented_error() {
        let e = max_error(tanh, f64::tanh);
        std::println!("tanh max error {e:.3e}");
        assert!(e <= f64::from(TANH_MAX_ERROR), "{e}");
    }

    #[test]
    fn softmax_stays_within_its_documented_error() {
        let mut worst = 0.0f64;
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for case in 0..if cfg!(miri) { 20 } else { 2000 } {
            let n = 2 + (next() % 7) as usize;
            let spread = [4096i64, 20_000, 80_000, 1 << 20][case % 4];
            let x: std::vec::Vec<i32> = (0..n)
                .map(|_| (i64::from(next() % 1_000_000) * spread / 1_000_000 - spread / 2) as i32)
                .collect();
            let mut y = x.clone();
            softmax(&mut y);
            let max = x.iter().copied().max().unwrap();
            let exps: std::vec::Vec<f64> = x
                .iter()
                .map(|&v| (f64::from(v - max) / 4096.0).exp())
                .collect();
            let total: f64 = exps.iter().sum();
            for (got, e) in y.iter().zip(&exps) {
                worst = worst.max((f64::from(*got) / 32768.0 - e / total).abs());
            }
        }
        std::println!("softmax max error {worst:.3e}");
        assert!(worst <= f64::from(SOFTMAX_MAX_ERROR), "{worst}");
        let mut extreme = [i32::MIN, i32::MAX, 0];
        softmax(&mut extreme);
        assert_eq!(extreme, [0, 32767, 0]);
    }

    #[test]
    fn tables_are_the_rounded_functions() {
        let q15 = |v: f64| (v * 32768.0 + 0.5).floor().clamp(-32767.0, 32767.0) as i16;
        for i in 0..=512 {
            let x = f64::from(i);
            assert_eq!(
                SIGMOID[i as usize],
                q15(1.0 / (1.0 + (16.0 - x / 16.0).exp()))
            );
            assert_eq!(TANH[i as usize], q15((-8.0 + x / 32.0).tanh()));
            assert_eq!(EXP[i as usize], q15((-16.0 + x / 32.0).exp()));
        }
    }

    /// The table lookups as first written: the input clamped to the table's ends, the second entry read
    /// with a check, the result saturated.
    fn interpolate_reference(table: &[i16; 513], u: i32, bits: u32) -> i16 {
        let index = (u >> bits) as usize;
        let frac = u & ((1 << bits) - 1);
        let a = i32::from(table.get(index).copied().unwrap_or(table[512]));
        let b = i32::from(table.get(index + 1).copied().unwrap_or(table[512]));
        saturate_i16(a + (((b - a) * frac + (1 << (bits - 1))) >> bits))
    }

    #[test]
    fn requantization_of_i32_values_is_the_64_bit_one() {
        // `requantize`/`requantize_i16` take their `i32` path for these; the reference is the 64-bit
        // arithmetic they used for every value.
        let mut rng = Xorshift(0x0bad_cafe);
        let mut values: std::vec::Vec<i32> = (0..if cfg!(miri) { 12 } else { 3000 })
            .map(|k| match k % 4 {
                0 => rng.next() as i32,
                1 => (rng.next() as i32) >> (rng.next() % 31),
                _ => (rng.next() as i32) >> 16,
            })
            .collect();
        values.extend([
            0,
            1,
            -1,
            2,
            -2,
            i32::MIN,
            i32::MAX,
            i32::MIN + 1,
            65535,
            -65536,
            65536,
        ]);
        for from in 0..=66 {
            for to in [0, 1, 7, 12, 15, 16, 24, 30, 31, 32, 33, 40, 48, 62, 66] {
                for &x in &values {
                    let wide = saturate_i32(shift_round(i64::from(x), from as i32 - to as i32));
                    assert_eq!(
                        requantize(i64::from(x), from, to),
                        wide,
                        "{x} {from} -> {to}"
                    );
                    assert_eq!(
                        requantize_i16(i64::from(x), from, to),
                        saturate_i16(wide),
                        "{x} {from} -> {to}, i16"
                    );
                    assert_eq!(
                        requantize(i64::from(x), to, from),
                        saturate_i32(shift_round(i64::from(x), to as i32 - from as i32)),
                        "{x} {to} -> {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn end_entries_are_equal() {
        assert_eq!(SIGMOID[511], SIGMOID[512]);
        assert_eq!(TANH[511], TANH[512]);
    }

    #[test]
    fn activations_equal_the_clamped_reference_for_every_input() {
        let sigmoid_reference =
            |x: i32| interpolate_reference(&SIGMOID, x.clamp(-65536, 65536) + 65536, 8);
        let tanh_reference = |x: i32| {
            let y = interpolate_reference(&TANH, x.clamp(-32768, 32768).abs() + 32768, 7);
            if x < 0 {
                -y
            } else {
                y
            }
        };
        let extremes = [
            i32::MIN,
            i32::MIN + 1,
            -1 << 20,
            1 << 20,
            i32::MAX - 1,
            i32::MAX,
        ];
        let step = if cfg!(miri) { 613 } else { 1 };
        for x in (-140_000..=140_000).step_by(step).chain(extremes) {
            assert_eq!(sigmoid(x), sigmoid_reference(x), "sigmoid({x})");
            assert_eq!(tanh(x), tanh_reference(x), "tanh({x})");
        }
    }

    #[test]
    fn activations_are_monotonic_and_odd_where_they_should_be() {
        let mut previous = (sigmoid(-20 * 4096), tanh(-20 * 4096));
        for x in (-20 * 4096..=20 * 4096).step_by(if cfg!(miri) { 331 } else { 7 }) {
            let now = (sigmoid(x), tanh(x));
            assert!(now.0 >= previous.0 && now.1 >= previous.1, "at {x}");
            assert_eq!(tanh(-x), -tanh(x), "at {x}");
            previous = now;
        }
    }

    #[test]
    fn accumulators_saturate_instead_of_wrapping() {
        let w = [0x80u8; 4096]; // -128
        let x = [i16::MIN; 4096];
        assert_eq!(dot_i8_i16(&w, &x), i32::MAX);
        let x = [i16::MAX; 4096];
        assert_eq!(dot_i8_i16(&w, &x), i32::MIN);
        assert_eq!(dot_i8_i16(&[1, 0xff], &[100, 7]), 93);
    }

    #[test]
    fn requantization_rounds_to_nearest_and_saturates() {
        assert_eq!(shift_round(5, 1), 3);
        assert_eq!(shift_round(-5, 1), -2);
        assert_eq!(shift_round(-6, 1), -3);
        assert_eq!(shift_round(3, -2), 12);
        assert_eq!(shift_round(i64::MAX, -3), i64::MAX);
        assert_eq!(requantize(1 << 40, 0, 0), i32::MAX);
        assert_eq!(requantize(-(1 << 40), 0, 0), i32::MIN);
        assert_eq!(requantize_i16(1 << 20, 4, 0), i16::MAX);
        assert_eq!(requantize_i16(-(1 << 20), 4, 0), i16::MIN);
        assert_eq!(requantize_i16(4096, 12, 15), 32767);
        assert_eq!(requantize_i16(-4096, 12, 15), -32768);
        let (w, pairs) = ([1u8, 2, 0xff, 0x80], [1 << 30, 31, 1 << 30, 30]);
        let mut y = [0; 2];
        matvec_requant(&w, &pairs, &[10, 20], &mut y);
        assert_eq!(y, [25, -2 * (128 * 20 + 10) / 2]);
        matvec_requant_add(&w, &pairs, &[i16::MAX, i16::MAX], &mut y);
        assert_eq!(y[0], 25 + (3 * 32767 + 1) / 2);
    }

    #[test]
    fn int16_rows_requantize_without_wrapping() {
        // Rows [2, -3] × 1/2 and [32767, 32767] × 1 (pair (2^30, 30)).
        let (w, pairs) = ([2i16, -3, 32767, 32767], [1 << 30, 31, 1 << 30, 30]);
        let mut y = [1, 0];
        matvec_requant_i16_add(&w, &pairs, &[100, 10], &mut y);
        assert_eq!(y, [1 + 85, 32767 * 110]);
        // 3 × 32767 × 32767 is beyond i32: the i64 sum holds it and the result saturates.
        let mut y = [0];
        matvec_requant_i16_add(&[32767; 3], &[1 << 30, 30], &[i16::MAX; 3], &mut y);
        assert_eq!(y, [i32::MAX]);
        let mut y = [0];
        matvec_requant_i16_add(&[32767; 3], &[1 << 30, 31], &[i16::MIN; 3], &mut y);
        assert_eq!(y, [-3 * 32767 * 16384]);
    }

    #[test]
    fn int16_rows_of_every_length_match_the_exact_sum() {
        // Every row kernel (the narrow loops of one to four inputs, the general loop, the paired
        // `SMLALD` arrangement, the `i32` sum with its overflow exit) against the exact sum requantized
        // in `i128`, with extreme weights and inputs that push the sums past `i32`.
        let mut rng = Xorshift(0x1616_2024);
        let value = |rng: &mut Xorshift| match rng.next() % 8 {
            0 => i16::MIN,
            1 => i16::MAX,
            2 => -i16::MAX,
            _ => rng.next() as i16,
        };
        for n in 0..=19usize {
            for _ in 0..if cfg!(miri) { 2 } else { 40 } {
                let rows = 1 + rng.next() as usize % 5;
                let w: std::vec::Vec<i16> = (0..rows * n).map(|_| value(&mut rng)).collect();
                let x: std::vec::Vec<i16> = (0..n).map(|_| value(&mut rng)).collect();
                let requant: std::vec::Vec<i32> = (0..rows)
                    .flat_map(|_| [(rng.next() >> 1) as i32, 1 + (rng.next() % 62) as i32])
                    .collect();
                let expected: std::vec::Vec<i32> = (0..rows)
                    .map(|r| {
                        let sum: i64 = (0..n)
                            .map(|j| i64::from(w[r * n + j]) * i64::from(x[j]))
                            .sum();
                        if n > 0 {
                            let row = &w[r * n..(r + 1) * n];
                            assert_eq!(dot_i16_paired(row, &x), sum);
                            let other = &w[(r + 1) % rows * n..][..n];
                            let (sum_row, sum_other) = dot2_i16_paired(row, other, &x);
                            assert_eq!((sum_row, sum_other), (sum, dot_i16_paired(other, &x)));
                            assert_eq!(row_i16_sum_wide(row, &x), sum);
                            match row_i16_sum(row, &x) {
                                RowSum::Narrow(acc) => assert_eq!(i64::from(acc), sum),
                                RowSum::Wide(acc) => {
                                    assert_eq!(acc, sum);
                                    assert!(i32::try_from(acc).is_err());
                                }
                            }
                        }
                        let (m, s) = (requant[2 * r], requant[2 * r + 1]);
                        let product = i128::from(sum) * i128::from(m);
                        let rounded = ((product >> (s - 1)) + 1) >> 1;
                        rounded.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
                    })
                    .collect();
                let mut mapped = std::vec![7; rows];
                matvec_requant_i16_map(&w, &requant, &x, &mut mapped, |out, v| *out = v);
                assert_eq!(mapped, expected, "n = {n}");
                let mut added = std::vec![0; rows];
                matvec_requant_i16_add(&w, &requant, &x, &mut added);
                let expected_added: std::vec::Vec<i32> = expected
                    .iter()
                    .map(|&v| if n == 0 { 0 } else { v })
                    .collect();
                assert_eq!(added, expected_added, "n = {n}");
            }
        }
    }

    #[test]
    fn wide_rescale_from_words_is_the_i128_rescale() {
        let mut rng = Xorshift(0x0e5c_a1e5);
        let (min, max) = (i64::from(i32::MIN), i64::from(i32::MAX));
        let edges = [
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            1 << 32,
            -(1 << 32),
            max + 1,
            min - 1,
        ];
        // Row sums are within 2^30 · n: mostly such, some of every size.
        let random: std::vec::Vec<i64> = (0..if cfg!(miri) { 500 } else { 200_000 })
            .map(|i| ((i64::from(rng.next()) << 32) | i64::from(rng.next())) >> (i % 40))
            .collect();
        let multipliers = [0, 1, -1, i32::MAX, i32::MIN, 1 << 30, (1 << 30) + 12345];
        for (i, acc) in edges.into_iter().chain(random).enumerate() {
            let m = match i % 3 {
                0 => multipliers[i % multipliers.len()],
                _ => (rng.next() >> (i % 2)) as i32,
            };
            for shift in [-5, 0, 1, 31, 32, 33, 34, 40, 47, 61, 62, 70] {
                let reference = rescale_wide_i128(acc, m, shift as u32);
                assert_eq!(
                    rescale_wide(acc, m, shift),
                    reference,
                    "acc {acc}, m {m}, shift {shift}"
                );
            }
        }
    }

    #[test]
    fn activations_map_q12_to_q15() {
        use crate::format::Activation;
        assert_eq!(activate(Activation::Linear, 4096), 32768);
        assert_eq!(activate(Activation::Relu, -4096), 0);
        assert_eq!(activate(Activation::Relu, i32::MAX), i32::MAX);
        assert_eq!(activate(Activation::Sigmoid, 0), 16384);
        assert_eq!(activate(Activation::Tanh, 1 << 30), 32767);
    }

    #[test]
    fn rescale_rounds_and_saturates() {
        // × 0.5 (2^30 / 2^31), ties round up.
        assert_eq!(rescale(3, 1 << 30, 31), 2);
        assert_eq!(rescale(-3, 1 << 30, 31), -1);
        assert_eq!(rescale(1000, 1 << 30, 31), 500);
        assert_eq!(rescale(i32::MAX, i32::MAX, 1), i32::MAX);
        assert_eq!(rescale(i32::MIN, i32::MAX, 1), i32::MIN);
        assert_eq!(rescale(i32::MIN, i32::MIN, 62), 1);
        // Shifts outside 1..=62 are clamped rather than overflowing.
        assert_eq!(rescale(5, 1, 0), rescale(5, 1, 1));
        assert_eq!(rescale(5, 1, 99), 0);
        assert_eq!(saturate_i16(70000), i16::MAX);
        assert_eq!(saturate_i16(-70000), i16::MIN);
    }
}
