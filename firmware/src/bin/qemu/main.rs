//! The forecaster on QEMU's `mps2-an386` (Cortex-M4F), with semihosting for output and exit.
//!
//! It streams the canned KPI samples (`data/kpi_samples.csv`, text lines read through the same
//! `LineSource` a UART would feed) through the bundled KPI blob and prints one `forecast <index>
//! <values…>` line per forecast, the values as `{:e}` (shortest exact). CI compares these lines with the
//! host engine's. Halfway, stream 0 saves its state as bytes and a fresh stream restores it, as after deep
//! sleep; two more streams share the model. Then the OTA swap: a second copy of the blob is read from the
//! host through semihosting (or taken from flash if the host has no file), a corrupted copy is refused
//! and the old model keeps running, and the good copy replaces it. Exits 0 if all of it went as expected.
//!
//! Before all of that it runs the blob's boot self-test ([`tinyrnn::Model::self_test`]).
//!
//! With the `qemu-defmt` feature the library's log messages go out as defmt frames on the host's stdout
//! (defmt-semihosting) and this text moves to stderr:
//! `cargo run --release --features qemu-defmt | defmt-print -e target/thumbv7em-none-eabihf/release/qemu`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
#[cfg(feature = "qemu-defmt")]
use defmt_semihosting as _;

#[cfg(feature = "qemu-defmt")]
use cortex_m_semihosting::{heprint as say, heprintln as sayln};
/// Text output: the host's stdout, or its stderr when stdout carries defmt frames (`qemu-defmt`).
#[cfg(not(feature = "qemu-defmt"))]
use cortex_m_semihosting::{hprint as say, hprintln as sayln};
use tinyrnn::{Error, Forecaster, Mode, ModelSlot, SelfTestOutcome};
use tinyrnn_firmware::{forecast_stream, include_blob, Aligned, LineSource, SpinDelay};

mod measure;

/// The bundled KPI forecaster; `models/README.md` says how it is made.
static MODEL: &[u8] = include_blob!("../../../models/kpi_forecaster.trnn");
/// The canned input, one sample per line in model units.
static SAMPLES: &str = include_str!("../../../data/kpi_samples.csv");
/// Where the OTA step reads its second blob, relative to QEMU's working directory (`firmware/`).
const OTA_PATH: &str = "models/kpi_forecaster.trnn\0";

/// Window buffer capacity in values: up to 64 (steps × features).
const W: usize = 64;
/// Engine memory per stream, in `f32` words.
const WORDS: usize = 256;
/// Largest blob the OTA step accepts.
const OTA_MAX: usize = 4096;

#[entry]
fn main() -> ! {
    measure::paint_stack();
    #[cfg(feature = "defmt")]
    defmt::info!("tinyrnn firmware on mps2-an386");
    let open_stack = open_model_stack();
    sayln!("stack used by Model::open: {} bytes", open_stack);
    measure::paint_stack();
    let open_in_stack = open_in_model_stack();
    sayln!(
        "stack used by Model::open_in: {} bytes (model {} bytes)",
        open_in_stack,
        core::mem::size_of::<tinyrnn::Model<'static>>()
    );
    measure::paint_stack();
    let code = match run() {
        Ok(()) => {
            sayln!(
                "stack used: {} bytes (high-water mark)",
                measure::stack_used()
            );
            sayln!("all checks passed");
            debug::EXIT_SUCCESS
        }
        Err(message) => {
            sayln!("FAILED: {}", message);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::bkpt();
    }
}

fn run() -> Result<(), &'static str> {
    // Buffers for the OTA step, declared first so they outlive the slot that borrows them.
    let mut download = Aligned([0u8; OTA_MAX]);
    let mut corrupted = Aligned([0u8; OTA_MAX]);

    let mut slot = ModelSlot::new(MODEL).map_err(report)?;
    let old_id = slot.model().id();
    {
        let model = slot.model();
        // The boot self-test: the blob's known input must give, here, the output the host computed.
        let mut memory = [0.0f32; WORDS];
        match model.self_test(&mut memory).map_err(report)? {
            SelfTestOutcome::Passed { max_error } => {
                sayln!("self-test: passed (max error {:e})", max_error)
            }
            SelfTestOutcome::Absent => sayln!("self-test: the blob carries none"),
            SelfTestOutcome::Failed {
                index,
                expected,
                actual,
            } => {
                sayln!(
                    "self-test: FAILED at output {}: expected {:e}, computed {:e}",
                    index,
                    expected,
                    actual
                );
                return Err("the boot self-test failed");
            }
        }
        let mode = Mode::of(model).map_err(report)?;
        let needed = Forecaster::<W>::memory_words(model, mode).map_err(report)?;
        sayln!(
            "model {:08x}: {} bytes, {:?}, {} features in, {} values out, {} f32 words per stream",
            old_id,
            MODEL.len(),
            mode,
            model.input_width(),
            model
                .output_len(match mode {
                    Mode::Window { steps } => steps,
                    Mode::Stream => 1,
                })
                .unwrap_or(0),
            needed
        );
        // The runtime's share, in the words of `tinyrnn inspect` (CI compares the two lines).
        let runtime = match mode {
            Mode::Window { steps } => model.window_memory(steps),
            Mode::Stream => Ok(model.memory()),
        }
        .map_err(report)?;
        match mode {
            Mode::Window { steps } => say!("RAM, window of {}", steps),
            Mode::Stream => say!("RAM, streaming"),
        }
        sayln!(
            " {} bytes (state {} + scratch {})",
            runtime.bytes(),
            runtime.state * 4,
            runtime.scratch * 4
        );

        // Stream 0 forecasts the canned samples; it stops halfway to save its state.
        let mut memory = [0.0f32; WORDS];
        let mut stream = Forecaster::<W>::new(model, &mut memory).map_err(report)?;
        let lines = SAMPLES.lines().count();
        let (first, second) = split_lines(SAMPLES, lines / 2);
        let mut delay = SpinDelay { hz: 25_000_000 };
        let mut source = LineSource::<_, 128>::new(first.as_bytes());
        let seen = forecast_stream(&mut stream, &mut source, &mut delay, 0, print)
            .map_err(|_| "streaming the first half failed")?;

        // Timing, away from the printing: one full window's forecast, many times.
        let mut timed_memory = [0.0f32; WORDS];
        let mut timed = Forecaster::<W>::new(model, &mut timed_memory).map_err(report)?;
        let sample = [0.5f32, 0.4, 0.3];
        for _ in 0..8 {
            timed.push(&sample).map_err(report)?;
        }
        let pushed = push_stack(&mut timed, &sample);
        sayln!(
            "stack used by Forecaster::push (run_window): {} bytes",
            pushed
        );
        const PUSHES: u32 = 100;
        measure::timer_start();
        for _ in 0..PUSHES {
            timed.push(&sample).map_err(report)?;
        }
        let ticks = measure::timer_ticks();
        sayln!(
            "push with a full window: about {} instructions ({} timer ticks over {} pushes; meaningful under -icount shift=0)",
            ticks * 40 / PUSHES,
            ticks,
            PUSHES
        );
        let mut saved = [0u8; 1024];
        let len = stream.state_len();
        let saved = saved.get_mut(..len).ok_or("state larger than its buffer")?;
        stream.save_state(saved).map_err(report)?;
        drop(stream);
        sayln!("saved stream state: {} bytes after {} samples", len, seen);

        // As after deep sleep: a fresh stream in the same memory restores the state and goes on.
        let mut stream = Forecaster::<W>::new(model, &mut memory).map_err(report)?;
        stream.restore_state(saved).map_err(report)?;
        let mut source = LineSource::<_, 128>::new(second.as_bytes());
        forecast_stream(&mut stream, &mut source, &mut delay, 0, |i, f| {
            print(seen + i, f)
        })
        .map_err(|_| "streaming the second half failed")?;

        // Two more cells share the model, each with its own memory; a damaged state is refused.
        let (mut m1, mut m2) = ([0.0f32; WORDS], [0.0f32; WORDS]);
        let mut cell1 = Forecaster::<W>::new(model, &mut m1).map_err(report)?;
        let mut cell2 = Forecaster::<W>::new(model, &mut m2).map_err(report)?;
        let mut forecasts = 0;
        for k in 0..8 {
            let x = k as f32 / 8.0;
            forecasts += usize::from(cell1.push(&[x, 0.5, 1.0 - x]).map_err(report)?.is_some());
            forecasts += usize::from(cell2.push(&[0.5, x, x]).map_err(report)?.is_some());
        }
        sayln!("two more cells on the same model: {} forecasts", forecasts);
        saved[len / 2] ^= 0x01;
        match cell1.restore_state(saved) {
            Err(Error::StateCorrupt) => sayln!("damaged state refused: StateCorrupt"),
            _ => return Err("a damaged state was not refused"),
        }
    }

    // OTA: the new blob arrives in RAM, from the host if it has the file.
    let got = match read_host_file(OTA_PATH, &mut download.0) {
        Some(n) => {
            sayln!("ota: read {} bytes from the host", n);
            n
        }
        None => {
            sayln!("ota: no host file, using the flash copy");
            let n = MODEL.len().min(OTA_MAX);
            download.0[..n].copy_from_slice(&MODEL[..n]);
            n
        }
    };
    corrupted.0[..got].copy_from_slice(&download.0[..got]);
    corrupted.0[got / 2] ^= 0x40;
    match slot.replace(&corrupted.0[..got]) {
        Err(error) => sayln!("ota: corrupted blob rejected: {}", error),
        Ok(_) => return Err("a corrupted blob was accepted"),
    }
    if slot.model().id() != old_id {
        return Err("the running model changed after a rejected swap");
    }
    // The old model still runs.
    {
        let mut memory = [0.0f32; WORDS];
        let mut stream = Forecaster::<W>::new(slot.model(), &mut memory).map_err(report)?;
        let mut source = LineSource::<_, 128>::new(SAMPLES.as_bytes());
        let mut delay = SpinDelay { hz: 25_000_000 };
        let n = forecast_stream(&mut stream, &mut source, &mut delay, 0, |_, _| {})
            .map_err(|_| "the old model stopped running")?;
        sayln!("ota: model {:08x} keeps running ({} samples)", old_id, n);
    }
    let new_id = slot.replace(&download.0[..got]).map_err(report)?;
    sayln!("ota: model {:08x} installed", new_id);
    Ok(())
}

/// Stack high-water mark of opening the model, measured from a painted stack.
#[inline(never)]
fn open_model_stack() -> usize {
    let before = measure::stack_used();
    let opened = core::hint::black_box(tinyrnn::Model::open(core::hint::black_box(MODEL)));
    core::hint::black_box(&opened);
    drop(opened);
    measure::stack_used() - before
}

/// Stack high-water mark of opening the model in place, the model's own bytes included.
#[inline(never)]
fn open_in_model_stack() -> usize {
    let before = measure::stack_used();
    let mut place = None;
    let opened = tinyrnn::Model::open_in(&mut place, core::hint::black_box(MODEL)).is_ok();
    core::hint::black_box((opened, &place));
    drop(place);
    measure::stack_used() - before
}

/// Stack high-water mark of one push with a full window (a whole `Runtime::run_window`).
#[inline(never)]
fn push_stack(forecaster: &mut Forecaster<'_, '_, W>, sample: &[f32]) -> usize {
    measure::paint_stack();
    let before = measure::stack_used();
    let pushed = forecaster.push(core::hint::black_box(sample)).is_ok();
    core::hint::black_box(pushed);
    measure::stack_used() - before
}

/// Prints one forecast line for CI to compare.
fn print(index: usize, forecast: &[f32]) {
    say!("forecast {}", index);
    for v in forecast {
        say!(" {:e}", v);
    }
    sayln!();
}

/// Prints an engine error and turns it into a failure message.
fn report(error: Error) -> &'static str {
    sayln!("engine error: {}", error);
    "engine error"
}

/// Splits text after its first `n` lines.
fn split_lines(text: &str, n: usize) -> (&str, &str) {
    let at = text
        .match_indices('\n')
        .nth(n.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i + 1);
    text.split_at(at)
}

/// Reads a host file through semihosting into `buf`; `None` if it cannot be opened or does not fit.
/// `path` ends with a NUL byte.
fn read_host_file(path: &str, buf: &mut [u8]) -> Option<usize> {
    use cortex_m_semihosting::{nr, syscall};
    // SAFETY: OPEN reads `path.len() - 1` bytes from a NUL-terminated string that lives for the call.
    let fd = unsafe { syscall!(OPEN, path.as_ptr(), nr::open::R_BINARY, path.len() - 1) } as isize;
    if fd < 0 {
        return None;
    }
    // SAFETY: FLEN takes the handle just opened and touches no memory of ours.
    let len = unsafe { syscall!(FLEN, fd) } as isize;
    let result = if len < 0 || len as usize > buf.len() {
        None
    } else {
        let len = len as usize;
        // SAFETY: READ writes at most `len` bytes into `buf`, which holds at least `len` bytes and is
        // borrowed mutably for the call. It returns the number of bytes *not* read.
        let missing = unsafe { syscall!(READ, fd, buf.as_mut_ptr(), len) };
        (missing == 0).then_some(len)
    };
    // SAFETY: CLOSE takes the handle opened above, closed only here.
    unsafe { syscall!(CLOSE, fd) };
    result
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    sayln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
