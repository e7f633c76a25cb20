//! A link-time proof that the engine has no panic path: this binary calls every entry point of the engine
//! on data the optimiser cannot see through, and its panic handler calls a function that does not exist.
//! If any panic site survives in the code linked from the engine, the release link fails with an
//! undefined reference to `tinyrnn_engine_has_a_panic_path`; `check-no-panic.sh` then also finds no
//! panic symbol in the ELF. It is built, never run (`cargo build --release --bin nopanic`, for
//! `thumbv7em-none-eabihf` and `thumbv6m-none-eabi`).
//!
//! The inputs come through `core::hint::black_box`, so lengths, bytes and values are unknown at compile
//! time: a bounds check the engine relies on cannot be folded away here and then reappear elsewhere.
//! With the `panic-report` feature the handler links, and `check-no-panic.sh` lists what calls the panic
//! functions.
//!
//! Debug builds keep panics for arithmetic overflow and are not what ships; only release counts.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use tinyrnn::{Forecaster, Mode, Model, ModelSlot, Runtime};
use tinyrnn_firmware::{include_blob, Aligned};

/// Any blob; its bytes are hidden from the optimiser below.
static MODEL: &[u8] = include_blob!("../../models/kpi_forecaster.trnn");

/// Window buffer capacity in values.
const W: usize = 64;
/// Engine memory per stream, in `f32` words.
const WORDS: usize = 256;

#[entry]
fn main() -> ! {
    // Unknown blobs, lengths and values.
    let running: &'static [u8] = black_box(MODEL);
    let mut download = Aligned([0u8; 1024]);
    black_box(&mut download);
    let download_len = black_box(running.len());
    let download: &[u8] = download.0.get(..download_len).unwrap_or(&[]);

    let mut place = None;
    let _ = black_box(Model::open_in(&mut place, black_box(running)).map(|m| m.id()));
    if let Ok(model) = Model::open(running) {
        exercise_runtime(&model);
        exercise_forecaster(&model);
        exercise_sized(&model);
    }
    let _ = black_box(tinyrnn::boot([running, download]).map(|b| (b.slot, b.model.id())));
    if let Ok(mut slot) = ModelSlot::new(running) {
        let _ = black_box(slot.replace(download));
        exercise_forecaster(slot.model());
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[inline(never)]
fn exercise_runtime(model: &Model<'_>) {
    let mut memory = [0.0f32; WORDS];
    black_box(&mut memory);
    let words = black_box(WORDS);
    let memory = memory.get_mut(..words).unwrap_or(&mut []);
    let Ok(mut runtime) = Runtime::new(model, memory) else {
        return;
    };
    let mut input = [0.0f32; 64];
    let mut output = [0.0f32; 64];
    black_box(&mut input);
    let (n_in, n_out) = (black_box(3usize), black_box(4usize));
    let x = input.get(..n_in).unwrap_or(&[]);
    let y = output.get_mut(..n_out).unwrap_or(&mut []);
    let _ = black_box(runtime.step(x, y));
    let _ = black_box(runtime.step_token(black_box(7), y));
    let window = input.get(..black_box(15usize)).unwrap_or(&[]);
    let _ = black_box(runtime.run_window(window, y));
    let tokens = [black_box(1u32), black_box(2), black_box(3)];
    let _ = black_box(runtime.run_window_tokens(&tokens, y));
    let mut saved = [0.0f32; WORDS];
    let state = runtime.state();
    saved
        .iter_mut()
        .zip(state)
        .for_each(|(d, s)| *d = black_box(*s));
    let saved_len = black_box(state.len());
    runtime.reset();
    let _ = black_box(runtime.restore_state(saved.get(..saved_len).unwrap_or(&[])));
    let _ = black_box(model.output_len(black_box(5)));
    let _ = black_box(model.window_memory(black_box(5)));
    let _ = black_box(model.macs_per_step());
    let _ = black_box(model.self_test(memory_for_self_test()).map(|o| o.is_ok()));
    exercise_integer(&mut runtime);
    exercise_text(&mut runtime, &mut output);
}

/// Scratch for the self-test, its length unknown.
fn memory_for_self_test() -> &'static mut [f32] {
    static mut SCRATCH: [f32; WORDS] = [0.0; WORDS];
    // SAFETY: `exercise_runtime`, the only caller, runs once at a time on a single core, and the borrow
    // ends before it returns.
    let all = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let words = black_box(WORDS);
    all.get_mut(..words).unwrap_or(&mut [])
}

/// The integer-only (`i8x16`) entry points.
#[inline(never)]
fn exercise_integer(runtime: &mut Runtime<'_, '_>) {
    let mut input = [0i16; 64];
    let mut output = [0i16; 64];
    black_box(&mut input);
    let (n_in, n_out) = (black_box(3usize), black_box(4usize));
    let x = input.get(..n_in).unwrap_or(&[]);
    let y = output.get_mut(..n_out).unwrap_or(&mut []);
    let _ = black_box(runtime.step_i16(x, y));
    let _ = black_box(runtime.step_token_i16(black_box(7), y));
    let window = input.get(..black_box(15usize)).unwrap_or(&[]);
    let _ = black_box(runtime.run_window_i16(window, y));
    let tokens = [black_box(1u32), black_box(2), black_box(3)];
    let _ = black_box(runtime.run_window_tokens_i16(&tokens, y));
    let mut saved = [0i16; 2 * WORDS];
    let state = runtime.state_i16();
    saved
        .iter_mut()
        .zip(state)
        .for_each(|(d, s)| *d = black_box(*s));
    let saved_len = black_box(state.len());
    let _ = black_box(runtime.restore_state_i16(saved.get(..saved_len).unwrap_or(&[])));
}

/// Vocabulary look-ups and generation.
#[inline(never)]
fn exercise_text(runtime: &mut Runtime<'_, '_>, output: &mut [f32]) {
    let n_out = black_box(4usize);
    let y = output.get_mut(..n_out).unwrap_or(&mut []);
    if let Some(vocabulary) = runtime.model().vocabulary() {
        let text = black_box("the cat");
        let _ = black_box(vocabulary.ids(text).filter_map(|id| id.ok()).count());
        let _ = black_box(vocabulary.token(black_box(3)).map(str::len));
        let _ = black_box(vocabulary.id(black_box("a")));
    }
    let mut sampler = tinyrnn::text::Sampler::new(black_box(42));
    let _ = black_box(tinyrnn::text::generate(
        runtime,
        y,
        black_box("The "),
        black_box(8),
        black_box(0.5),
        &mut sampler,
        |token| {
            black_box(token.len());
        },
    ));
}

#[inline(never)]
fn exercise_forecaster(model: &Model<'_>) {
    let mut memory = [0.0f32; WORDS];
    let Ok(mode) = Mode::of(model) else { return };
    let mode = black_box(mode);
    let Ok(mut stream) = Forecaster::<W, tinyrnn::Identity>::with_scaler(
        model,
        mode,
        tinyrnn::Identity,
        &mut memory,
    ) else {
        return;
    };
    let mut sample = [0.0f32; 8];
    black_box(&mut sample);
    let sample = sample.get(..black_box(3usize)).unwrap_or(&[]);
    for _ in 0..black_box(8) {
        let _ = black_box(stream.push(sample).map(|f| f.map(|f| f.len())));
    }
    let mut saved = [0u8; 1024];
    let len = black_box(stream.state_len());
    let saved = saved.get_mut(..len).unwrap_or(&mut []);
    let _ = black_box(stream.save_state(saved));
    black_box(&mut *saved);
    let _ = black_box(stream.restore_state(saved));
    stream.reset();
    exercise_scaled_forecaster(model);
}

/// A forecaster with the blob's own raw-unit scalers.
#[inline(never)]
fn exercise_scaled_forecaster(model: &Model<'_>) {
    let mut memory = [0.0f32; WORDS];
    let Ok(mut stream) = Forecaster::<W>::new(model, &mut memory) else {
        return;
    };
    let mut sample = [0.0f32; 8];
    black_box(&mut sample);
    let sample = sample.get(..black_box(3usize)).unwrap_or(&[]);
    for _ in 0..black_box(8) {
        let _ = black_box(stream.push(sample).map(|f| f.map(|f| f.len())));
    }
}

/// The compile-time-sized front door (`tinyrnn::sized`), one instance of each cell.
#[inline(never)]
fn exercise_sized(model: &Model<'_>) {
    let x = black_box([0.5f32; 3]);
    let layer = black_box(0usize);
    if let Ok(mut rnn) = tinyrnn::sized::SimpleRnn::<3, 2>::open(model, layer) {
        let _ = black_box(rnn.step(&x).map(|h| h.iter().sum::<f32>()));
        rnn.reset();
        let _ = black_box(rnn.h());
    }
    if let Ok(mut lstm) = tinyrnn::sized::Lstm::<3, 8>::open(model, layer) {
        let _ = black_box(lstm.step(&x).map(|h| h.iter().sum::<f32>()));
        lstm.reset();
    }
    if let Ok(mut gru) = tinyrnn::sized::Gru::<3, 8>::open(model, layer) {
        let _ = black_box(gru.step(&x).map(|h| h.iter().sum::<f32>()));
        gru.reset();
    }
}

#[cfg(feature = "panic-report")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}

#[cfg(not(feature = "panic-report"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "Rust" {
        /// Defined nowhere: referencing it fails the link, which is the point.
        fn tinyrnn_engine_has_a_panic_path() -> !;
    }
    // SAFETY: never runs; the link fails first if this handler is reachable at all.
    unsafe { tinyrnn_engine_has_a_panic_path() }
}
