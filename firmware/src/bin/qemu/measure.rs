//! Measurements on the QEMU machine: the stack's high-water mark (by painting the free stack), and
//! instruction counts from the MPS2 CMSDK timer when QEMU runs with `-icount shift=0` (one instruction per
//! nanosecond of virtual time; the 25 MHz timer then ticks once every 40 instructions). QEMU does not
//! emulate the DWT cycle counter, so it is not used.

/// Byte pattern painted over the free stack.
const PAINT: u32 = 0xA5A5_A5A5;
/// Bytes left unpainted below the stack pointer, for the painting function's own frame.
const MARGIN: usize = 256;

extern "C" {
    /// Top of the stack (cortex-m-rt).
    static _stack_start: u32;
    /// Lowest address the stack may reach: the end of the statics (cortex-m-rt).
    static _stack_end: u32;
}

/// Paints the free stack, from the end of the statics to just below the current stack pointer.
pub fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize - MARGIN;
    // Only the linker symbol's address is taken, which needs no `unsafe`.
    let mut p = core::ptr::addr_of!(_stack_end) as usize;
    while p + 4 <= sp {
        // SAFETY: [_stack_end, sp - MARGIN) is RAM reserved for the stack that no live frame uses yet
        // (the stack grows down from `_stack_start` and the current frame sits above `sp`); the address
        // is 4-aligned (cortex-m-rt aligns `_stack_end`).
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used since [`paint_stack`]: from the top down to the deepest word no longer painted.
pub fn stack_used() -> usize {
    let (top, end) = (
        core::ptr::addr_of!(_stack_start) as usize,
        core::ptr::addr_of!(_stack_end) as usize,
    );
    let mut p = end;
    // SAFETY: reads 4-aligned words of the stack region [_stack_end, _stack_start), which is RAM.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

/// The MPS2 CMSDK APB timer 0.
const TIMER0: usize = 0x4000_0000;

/// Starts timer 0 counting down from its maximum.
pub fn timer_start() {
    // SAFETY: TIMER0's CTRL (+0), VALUE (+4) and RELOAD (+8) registers on the mps2-an386 machine; this
    // binary runs only there, and nothing else uses the timer.
    unsafe {
        core::ptr::write_volatile((TIMER0 + 8) as *mut u32, u32::MAX);
        core::ptr::write_volatile((TIMER0 + 4) as *mut u32, u32::MAX);
        core::ptr::write_volatile(TIMER0 as *mut u32, 1);
    }
}

/// Timer 0 ticks since [`timer_start`].
pub fn timer_ticks() -> u32 {
    // SAFETY: reads TIMER0's VALUE register (see `timer_start`).
    u32::MAX - unsafe { core::ptr::read_volatile((TIMER0 + 4) as *const u32) }
}
