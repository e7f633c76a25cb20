//! The integer-only (`i8x16`) engine built for a Cortex-M0 (`thumbv6m-none-eabi`, no FPU), run by QEMU,
//! with semihosting for output and exit. By default it is laid out for QEMU `-M mps2-an385` (a Cortex-M3
//! without FPU, which runs ARMv6-M code unchanged); with `--features microbit`, for the micro:bit's
//! nRF51822 (`-M microbit`, 16 KiB RAM), which needs `Model::open` to fit its stack first.
//!
//! It opens the reference model `tests/data/integer/model.trnn` (LSTM(8) → GRU(8) → Dense(2)), streams
//! the canned `i16` input `tests/data/integer/input.csv` through `Runtime::step_i16`, and prints each
//! step's output as `y <a>,<b>`. CI strips the prefix and compares the lines byte for byte with
//! `tests/data/integer/expected.csv`, which the host engine wrote: the integer path gives the same bits on
//! both. Exits 0 when every line was printed.
//!
//! ```text
//! cargo run --release --target thumbv6m-none-eabi --features integer --bin integer
//! ```
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use tinyrnn::{Model, Runtime};
use tinyrnn_firmware::{include_blob, Aligned};

/// The reference model; `tests/examples/integer_reference.rs` writes it.
static MODEL: &[u8] = include_blob!("../../../tests/data/integer/model.trnn");
/// Three `i16` per line, in the model's input format.
static INPUT: &str = include_str!("../../../tests/data/integer/input.csv");

/// Engine memory in words (the model needs 85; `tinyrnn inspect` says 340 bytes).
const WORDS: usize = 128;

#[entry]
fn main() -> ! {
    let code = match run() {
        Ok(steps) => {
            hprintln!("done {} steps", steps);
            debug::EXIT_SUCCESS
        }
        Err(err) => {
            hprintln!("error: {}", err);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::nop();
    }
}

fn run() -> Result<usize, tinyrnn::Error> {
    let model = Model::open(MODEL)?;
    // Plain words: the engine keeps i16 pairs and i32 sums in them; zero bits need no float literal.
    let mut words = Aligned([0u32; WORDS]);
    let memory = as_f32_words(&mut words.0);
    let mut runtime = Runtime::new(&model, memory)?;
    let mut y = [0i16; 2];
    let mut steps = 0;
    for line in INPUT.lines() {
        let mut x = [0i16; 3];
        for (v, field) in x.iter_mut().zip(line.split(',')) {
            *v = parse_i16(field);
        }
        runtime.step_i16(&x, &mut y)?;
        hprintln!("y {},{}", y[0], y[1]);
        steps += 1;
    }
    Ok(steps)
}

/// A decimal `i16` (the input file holds nothing else).
fn parse_i16(text: &str) -> i16 {
    let (negative, digits) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let magnitude = digits.bytes().fold(0i32, |n, d| {
        n.saturating_mul(10)
            .saturating_add(i32::from(d.wrapping_sub(b'0')))
    });
    let value = if negative { -magnitude } else { magnitude };
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// `u32` words as `f32` words, which is what `Runtime::new` takes.
fn as_f32_words(words: &mut [u32]) -> &mut [f32] {
    // SAFETY: u32 and f32 have the same size and alignment and every bit pattern is a valid f32; the view
    // covers exactly the same words for the borrow's lifetime.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<f32>(), words.len()) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}
