//! The integer-only (`i8x16`) engine built for a Cortex-M0 (`thumbv6m-none-eabi`, no FPU), run by QEMU,
//! with semihosting for output and exit. By default it is laid out for QEMU `-M mps2-an385` (a Cortex-M3
//! without FPU, which runs ARMv6-M code unchanged); with `--features microbit`, for the micro:bit's
//! nRF51822 (`-M microbit`, 16 KiB RAM), which needs `Model::open` to fit its stack first.
//!
//! It opens the reference model `tests/data/integer/model.trnn` (LSTM(8) → GRU(8) → Dense(2)), streams
//! the canned `i16` input `tests/data/integer/input.csv` through `Runtime::step_i16`, and prints each
//! step's output as `y <a>,<b>`. CI strips the prefix and compares the lines byte for byte with
//! `tests/data/integer/expected.csv`, which the host engine wrote: the integer path gives the same bits on
//! both. It then runs one window through the window-normalised forecaster
//! `tests/data/integer/window-model.trnn` (`Runtime::run_window_i16`) and prints `w <8 values>`, compared
//! the same way with `window-expected.csv`. Last it checks the engine's int16 row kernel on this core
//! against exact sums, most of them beyond `i32`, and prints `int16 rows: …`. Exits 0 when every line
//! was printed and every row matched.
//!
//! ```text
//! cargo run --release --target thumbv6m-none-eabi --features integer --bin integer
//! cargo run --release --features integer --bin integer     # the same for the Cortex-M4F (MPS2 AN386)
//! ```
//!
//! On the MPS2 machines it also counts instructions per step (QEMU `-icount shift=0`, the CMSDK timer at
//! 25 MHz: one tick per 40 instructions) of the integer step and of the same model in f32, which on the
//! Cortex-M3 runs in soft-float, and prints them as `instructions per step: …`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use tinyrnn::{Model, Runtime};
use tinyrnn_firmware::{include_blob, Aligned};

/// The reference model; `tests/examples/integer_reference.rs` writes it.
static MODEL: &[u8] = include_blob!("../../../tests/data/integer/model.trnn");
/// The f32 model it was quantized from.
#[cfg(not(feature = "microbit"))]
static MODEL_F32: &[u8] = include_blob!("../../../tests/data/integer/model-f32.trnn");
/// Three `i16` per line, in the model's input format.
static INPUT: &str = include_str!("../../../tests/data/integer/input.csv");

/// Engine memory in words (the model needs 85; `tinyrnn inspect` says 340 bytes).
const WORDS: usize = 128;

/// The window-normalised reference forecaster (`SubtractLast` → GRU → Dense → `Residual`), one window of
/// three `i16` per line, and its window length; `tests/examples/integer_reference.rs` writes them.
static WINDOW_MODEL: &[u8] = include_blob!("../../../tests/data/integer/window-model.trnn");
static WINDOW_INPUT: &str = include_str!("../../../tests/data/integer/window-input.csv");
const WINDOW_STEPS: usize = 16;
/// Engine memory in words for one window of it (the model needs 100).
const WINDOW_WORDS: usize = 112;

#[entry]
fn main() -> ! {
    timer::start();
    let code = match run() {
        Ok(steps) if check_int16_rows() => {
            hprintln!("done {} steps", steps);
            debug::EXIT_SUCCESS
        }
        Ok(_) => debug::EXIT_FAILURE,
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
    let mut ticks = 0u32;
    for line in INPUT.lines() {
        let x = parse_row(line);
        let start = timer::ticks();
        runtime.step_i16(&x, &mut y)?;
        ticks = ticks.wrapping_add(timer::ticks().wrapping_sub(start));
        hprintln!("y {},{}", y[0], y[1]);
        steps += 1;
    }
    run_window()?;
    #[cfg(not(feature = "microbit"))]
    {
        let float_ticks = run_f32(model.fixed_point().map_or(0, |f| f.input_frac))?;
        hprintln!(
            "instructions per step: i8x16 {}, f32 {} {} ({} steps, -icount shift=0)",
            ticks / steps as u32 * 40,
            if cfg!(target_abi = "eabihf") {
                "on the FPU"
            } else {
                "in soft-float"
            },
            float_ticks / steps as u32 * 40,
            steps
        );
    }
    Ok(steps)
}

/// Streams the same input through the f32 model; returns the timer ticks its steps took.
#[cfg(not(feature = "microbit"))]
fn run_f32(input_frac: u8) -> Result<u32, tinyrnn::Error> {
    let model = Model::open(MODEL_F32)?;
    let mut words = Aligned([0u32; WORDS]);
    let mut runtime = Runtime::new(&model, as_f32_words(&mut words.0))?;
    let scale = (1u32 << input_frac) as f32;
    let mut y = [0f32; 2];
    let mut ticks = 0u32;
    for line in INPUT.lines() {
        let q = parse_row(line);
        let x = [
            f32::from(q[0]) / scale,
            f32::from(q[1]) / scale,
            f32::from(q[2]) / scale,
        ];
        let start = timer::ticks();
        runtime.step(&x, &mut y)?;
        ticks = ticks.wrapping_add(timer::ticks().wrapping_sub(start));
    }
    Ok(ticks)
}

/// Runs the window-normalised forecaster over its one window and prints its forecast as `w a,b,…`
/// (CI compares it with `tests/data/integer/window-expected.csv`).
fn run_window() -> Result<(), tinyrnn::Error> {
    let model = Model::open(WINDOW_MODEL)?;
    let mut words = Aligned([0u32; WINDOW_WORDS]);
    let mut runtime = Runtime::new(&model, as_f32_words(&mut words.0))?;
    let mut x = [0i16; 3 * WINDOW_STEPS];
    for (row, line) in x.chunks_exact_mut(3).zip(WINDOW_INPUT.lines()) {
        row.copy_from_slice(&parse_row(line));
    }
    let mut y = [0i16; 8];
    runtime.run_window_i16(&x, &mut y)?;
    hprintln!(
        "w {},{},{},{},{},{},{},{}",
        y[0],
        y[1],
        y[2],
        y[3],
        y[4],
        y[5],
        y[6],
        y[7]
    );
    Ok(())
}

/// Matrices [`check_int16_rows`] checks, of [`CHECKED_ROWS`] rows each.
const CHECKED_MATRICES: usize = 200;
/// Rows per checked matrix: a pair and a last odd row (the M4 sums int16 rows two at a time).
const CHECKED_ROWS: usize = 3;
/// The widest checked row.
const MAX_TERMS: usize = 40;

/// The engine's int16 matrix kernel on this core against the exact sums, requantized in `i128` here,
/// on seeded full-scale matrices of 5 to 40 columns: most of their sums pass `i32`, several times over
/// and in both directions, which the Thumb-1 row loop of cores without the DSP extension counts as it
/// goes. Prints `int16 rows: …` (CI looks for it); false, after printing the row, on a mismatch.
fn check_int16_rows() -> bool {
    let mut state = 0x1616_2024u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut beyond_i32 = 0;
    for matrix in 0..CHECKED_MATRICES {
        let n = 5 + matrix % (MAX_TERMS - 4);
        let mut w = [0i16; CHECKED_ROWS * MAX_TERMS];
        let mut x = [0i16; MAX_TERMS];
        for v in x.iter_mut().take(n) {
            let r = next();
            *v = match r % 8 {
                0 => i16::MIN,
                1 => (r >> 16) as i16,
                _ => i16::MAX,
            };
        }
        let mut requant = [0i32; 2 * CHECKED_ROWS];
        for (row, (w, pair)) in w
            .chunks_exact_mut(n)
            .zip(requant.chunks_exact_mut(2))
            .enumerate()
        {
            // Alternate rows lean negative, so sums leave `i32` on both sides.
            let lean = if (matrix + row) % 2 == 0 { 1 } else { -1 };
            for v in w.iter_mut() {
                let r = next();
                *v = match r % 8 {
                    0 => i16::MIN,
                    1 => (r >> 16) as i16,
                    _ => lean * i16::MAX,
                };
            }
            pair[0] = (next() >> 1) as i32;
            pair[1] = 1 + (next() % 62) as i32;
        }
        let mut y = [0i32; CHECKED_ROWS];
        let w = &w[..CHECKED_ROWS * n];
        tinyrnn::kernels::fixed::matvec_requant_i16_add(w, &requant, &x[..n], &mut y);
        for (row, (w, (&engine, pair))) in w
            .chunks_exact(n)
            .zip(y.iter().zip(requant.chunks_exact(2)))
            .enumerate()
        {
            let sum: i64 = w
                .iter()
                .zip(&x[..n])
                .map(|(&w, &x)| i64::from(w) * i64::from(x))
                .sum();
            let (multiplier, shift) = (pair[0], pair[1]);
            let product = i128::from(sum) * i128::from(multiplier);
            let exact = (((product >> (shift - 1)) + 1) >> 1)
                .clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
            if engine != exact {
                hprintln!(
                    "int16 rows: matrix {} row {} ({} terms, sum {}): engine {}, exact {}",
                    matrix,
                    row,
                    n,
                    sum,
                    engine,
                    exact
                );
                return false;
            }
            beyond_i32 += usize::from(i32::try_from(sum).is_err());
        }
    }
    hprintln!(
        "int16 rows: {} rows equal the exact sums requantized, {} of them beyond i32",
        CHECKED_MATRICES * CHECKED_ROWS,
        beyond_i32
    );
    true
}

/// One line of the input file: three `i16`.
fn parse_row(line: &str) -> [i16; 3] {
    let mut x = [0i16; 3];
    for (v, field) in x.iter_mut().zip(line.split(',')) {
        *v = parse_i16(field);
    }
    x
}

/// Instruction counting on the MPS2 machine (see `bin/qemu/measure.rs`); absent on the micro:bit.
mod timer {
    /// The MPS2 CMSDK APB timer 0.
    #[cfg(not(feature = "microbit"))]
    const TIMER0: usize = 0x4000_0000;

    /// Starts timer 0 counting down from its maximum.
    pub fn start() {
        #[cfg(not(feature = "microbit"))]
        // SAFETY: TIMER0's CTRL (+0), VALUE (+4) and RELOAD (+8) registers on the MPS2 machines; without
        // the `microbit` feature this binary runs only there, and nothing else uses the timer.
        unsafe {
            core::ptr::write_volatile((TIMER0 + 8) as *mut u32, u32::MAX);
            core::ptr::write_volatile((TIMER0 + 4) as *mut u32, u32::MAX);
            core::ptr::write_volatile(TIMER0 as *mut u32, 1);
        }
    }

    /// Timer 0 ticks since [`start`] (0 on the micro:bit).
    pub fn ticks() -> u32 {
        #[cfg(not(feature = "microbit"))]
        // SAFETY: reads TIMER0's VALUE register (see `start`).
        return u32::MAX - unsafe { core::ptr::read_volatile((TIMER0 + 4) as *const u32) };
        #[cfg(feature = "microbit")]
        0
    }
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
