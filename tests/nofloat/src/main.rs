//! Runs the engine's integer-only step (`Runtime::step_i16`) and window (`Runtime::run_window_i16`, which
//! holds window normalisation and the skip path) on the `i8x16` reference model
//! (`tests/data/integer/model.trnn`: LSTM → GRU → Dense) from a bare `thumbv6m-none-eabi` entry point.
//! `tests/tests/nofloat.rs` builds this ELF and checks that no soft-float routine is linked.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

use tinyrnn::{Model, Runtime};

/// The blob, 16-byte aligned as the engine reads tensors in place.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("../../data/integer/model.trnn"));

/// Streams a few integer timesteps through the model; a failure to open or step ends in the loop too.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut memory = [0u32; 256];
    if let Ok(model) = Model::open(black_box(&BLOB.0)) {
        // The caller's memory is plain words; the engine takes them as f32 words and keeps i16 pairs in
        // them for an integer model, so zeroed u32 words reinterpreted in place are all it needs.
        let words = as_words(&mut memory);
        if let Ok(mut runtime) = Runtime::new(&model, words) {
            let mut output = [0i16; 2];
            let mut x = [1000i16, -2000, 300];
            for _ in 0..black_box(8) {
                let _ = runtime.step_i16(black_box(&x), &mut output);
                x[0] = x[0].wrapping_add(output[0]);
                black_box(&output);
            }
            // The windowed path too (window normalisation and the skip path live there).
            let mut window = [0i16; 4];
            let _ = runtime.run_window_i16(black_box(&[0i16; 6]), &mut window);
            black_box(&window);
            #[cfg(feature = "with-float")]
            black_box(black_box(1.5f32) * black_box(f32::from(output[0])));
        }
    }
    loop {
        core::hint::spin_loop();
    }
}

/// `u32` words as `f32` words, without a float operation (a float literal would be one on thumbv6m).
fn as_words(words: &mut [u32; 256]) -> &mut [f32] {
    // SAFETY: u32 and f32 have the same size and alignment and every bit pattern is a valid f32; the
    // view covers exactly the array for the borrow's lifetime.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<f32>(), words.len()) }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
