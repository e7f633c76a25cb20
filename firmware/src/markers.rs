//! The marker functions `../shared/tools/qemu-insn` counts instructions between: a region runs from
//! [`start`] to the next [`stop`], and [`next`] begins a new group of regions. Each is a bare `bx lr`
//! of its own, in assembly, so that LLVM can neither merge the three nor drop their calls.

core::arch::global_asm!(
    ".section .text.bench_markers,\"ax\",%progbits",
    ".global bench_start",
    ".type bench_start,%function",
    ".thumb_func",
    "bench_start: bx lr",
    ".global bench_stop",
    ".type bench_stop,%function",
    ".thumb_func",
    "bench_stop: bx lr",
    ".global bench_next",
    ".type bench_next,%function",
    ".thumb_func",
    "bench_next: bx lr",
);

extern "C" {
    fn bench_start();
    fn bench_stop();
    fn bench_next();
}

/// Starts a measured region.
#[inline(always)]
pub fn start() {
    // SAFETY: `bench_start` is the bare `bx lr` above: it touches no memory and no register.
    unsafe { bench_start() }
}

/// Ends the measured region.
#[inline(always)]
pub fn stop() {
    // SAFETY: as in `start`.
    unsafe { bench_stop() }
}

/// Begins a new group of regions.
#[inline(always)]
pub fn next() {
    // SAFETY: as in `start`.
    unsafe { bench_next() }
}
