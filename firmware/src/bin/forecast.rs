//! A trained forecaster on the core, as a user runs it: raw samples pushed one at a time through
//! [`Forecaster::push`], forecasts back in raw units. The model and its samples are built in from
//! `TINYRNN_FORECAST_DIR` (`model.trnn`, `samples.csv`), which
//! `cargo run -p tinyrnn-converter --example forecast_reference` writes with the host engine's forecasts
//! beside them; `firmware/forecast-on-core.sh` builds, runs and compares the two.
//!
//! Prints `forecast <sample index> <values…>` per forecast (values as `{:e}`, shortest exact), the
//! engine memory and the stack high-water mark of one push. Each push is a region of
//! [`tinyrnn_firmware::markers`], the pushes that forecast a group of their own, so
//! `../shared/tools/qemu-insn` counts the instructions of one forecast exactly: the window slide, the
//! input scaling, the whole window through the model and the output scaling.
//!
//! ```text
//! TINYRNN_FORECAST_DIR=DIR cargo build --release --bin forecast --features forecast,microbit \
//!     --target thumbv6m-none-eabi     # Cortex-M0, micro:bit layout (16 KiB RAM)
//! TINYRNN_FORECAST_DIR=DIR cargo build --release --bin forecast --features forecast   # Cortex-M4F
//! ```
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprint, hprintln};
use tinyrnn::{Forecaster, Mode, Model};
use tinyrnn_firmware::{include_blob, markers, LineSource, SampleSource, MAX_FEATURES};

#[path = "qemu/measure.rs"]
#[allow(dead_code, reason = "the timer half serves the qemu binary")]
mod measure;

static MODEL: &[u8] = include_blob!(concat!(env!("TINYRNN_FORECAST_DIR"), "/model.trnn"));
static SAMPLES: &str = include_str!(concat!(env!("TINYRNN_FORECAST_DIR"), "/samples.csv"));

/// The window buffer, in values: at least window × features (96 × 7 = 672 for the ETTh1 forecasters).
const WINDOW_VALUES: usize = 768;
/// Engine memory, in `f32` words: the runtime's window memory plus one sample and one forecast (the
/// ETTh1 GRU(32) forecaster in `i8x16` takes 1,055, in f32 1,743). The micro:bit has 16 KiB of RAM.
#[cfg(feature = "microbit")]
const WORDS: usize = 1280;
#[cfg(not(feature = "microbit"))]
const WORDS: usize = 2560;

#[entry]
fn main() -> ! {
    tinyrnn_firmware::exit_with(run())
}

fn run() -> Result<(), &'static str> {
    let model = &Model::open(MODEL).map_err(report)?;
    let mode = Mode::of(model).map_err(report)?;
    let needed = Forecaster::<WINDOW_VALUES>::memory_words(model, mode).map_err(report)?;
    let mut memory = [0.0f32; WORDS];
    let Some(memory) = memory.get_mut(..needed) else {
        hprintln!("engine memory: {} words needed, {} built in", needed, WORDS);
        return Err("the model needs more memory than WORDS");
    };
    let mut forecaster = Forecaster::<WINDOW_VALUES>::new(model, memory).map_err(report)?;
    hprintln!(
        "engine memory: {} words ({} bytes), window buffer {} values",
        needed,
        4 * needed,
        WINDOW_VALUES
    );
    let width = model.input_width().min(MAX_FEATURES);
    let mut sample = [0.0f32; MAX_FEATURES];
    let sample = &mut sample[..width];
    let mut source: LineSource<&[u8], 512> = LineSource::new(SAMPLES.as_bytes());
    // The pushes that fill the window, then (a group of their own) the pushes that forecast.
    let first_forecast = match mode {
        Mode::Window { steps } => steps.saturating_sub(1),
        Mode::Stream => 0,
    };
    let mut index = 0;
    let mut stack = 0;
    while source
        .next_sample(sample)
        .map_err(|_| "samples.csv holds a line that is not a sample")?
    {
        if index == first_forecast {
            markers::next();
        }
        measure::paint_stack();
        let before = measure::stack_used();
        markers::start();
        let forecast = forecaster
            .push(core::hint::black_box(sample))
            .map_err(report)?;
        markers::stop();
        stack = stack.max(measure::stack_used() - before);
        if let Some(forecast) = forecast {
            hprint!("forecast {}", index);
            for v in forecast {
                hprint!(" {:e}", v);
            }
            hprintln!();
        }
        index += 1;
    }
    hprintln!(
        "{} samples; stack of one push at most {} bytes",
        index,
        stack
    );
    Ok(())
}

/// Prints an engine error and turns it into a failure message.
fn report(error: tinyrnn::Error) -> &'static str {
    hprintln!("engine error: {}", error);
    "engine error"
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}
