//! Calls the engine's integer-only primitives (`tinyrnn::kernels::fixed`) from a bare `thumbv6m-none-eabi`
//! entry point. `tests/tests/nofloat.rs` builds this ELF and checks that no soft-float routine is linked.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

use tinyrnn::kernels::fixed;

static WEIGHTS: [u8; 16] = [
    1, 2, 3, 4, 250, 251, 252, 253, 127, 128, 0, 9, 17, 33, 65, 129,
];
static VALUES: [i16; 16] = [
    100, -200, 300, -400, 500, -600, 700, -800, 900, -1000, 1100, -1200, 1300, -1400, 1500, -1600,
];

/// One gate of an integer step: dot product, requantization, activation, elementwise product.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let acc = fixed::dot_i8_i16(black_box(&WEIGHTS), black_box(&VALUES));
    let pre = fixed::rescale(acc, black_box(1 << 30), black_box(24));
    let gate = fixed::sigmoid(pre);
    let cell = fixed::tanh(black_box(pre));
    let product = fixed::rescale(i32::from(gate) * i32::from(cell), 1 << 30, 46);
    black_box(fixed::saturate_i16(product));
    #[cfg(feature = "with-float")]
    black_box(black_box(1.5f32) * black_box(f32::from(gate)));
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
