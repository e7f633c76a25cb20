//! Character generation on QEMU's `mps2-an386` (Cortex-M4F): the bundled character model
//! (`models/chars.trnn`, the min-char-rnn model of `examples/chars/`, with its vocabulary) is primed with a
//! text, then draws characters one at a time with a seeded sampler, each fed back in
//! (`tinyrnn::text::generate`). It prints `generated <text>` for each temperature; CI compares the lines
//! with `tinyrnn generate` on the host, which runs the same engine code and must give the same text.
//!
//! `cargo run --release --bin generate` in `firmware/`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprint, hprintln};
use tinyrnn::text::{generate, Sampler};
use tinyrnn::{Model, Runtime};
use tinyrnn_firmware::include_blob;

/// The bundled character model; `models/README.md` says how it is made.
static MODEL: &[u8] = include_blob!("../../models/chars.trnn");
/// The generation settings CI gives the host too.
const PRIME: &str = "The ";
const LENGTH: usize = 200;
const SEED: u64 = 42;
const TEMPERATURES: [f32; 3] = [1.0, 0.5, 0.0];

#[entry]
fn main() -> ! {
    tinyrnn_firmware::exit_with(run())
}

fn run() -> Result<(), tinyrnn::Error> {
    let model = Model::open(MODEL)?;
    let mut memory = [0.0f32; 1024];
    match model.self_test(&mut memory)? {
        tinyrnn::SelfTestOutcome::Failed { index, .. } => {
            hprintln!("self-test: FAILED at output {}", index);
            return Err(tinyrnn::Error::BadSelfTest);
        }
        outcome => hprintln!("self-test: {:?}", outcome),
    }
    let mut output = [0.0f32; 128];
    let output =
        output
            .get_mut(..model.step_output_len())
            .ok_or(tinyrnn::Error::BufferTooSmall {
                needed: model.step_output_len(),
                got: 128,
            })?;
    let mut runtime = Runtime::new(&model, &mut memory)?;
    for temperature in TEMPERATURES {
        let mut text = heapless::String::<{ 4 * LENGTH }>::new();
        let mut sampler = Sampler::new(SEED);
        generate(
            &mut runtime,
            output,
            PRIME,
            LENGTH,
            temperature,
            &mut sampler,
            |token| {
                // The buffer holds LENGTH tokens of up to 4 bytes each.
                let _ = text.push_str(token);
            },
        )?;
        // Newlines would split the line CI compares; they go out escaped.
        hprint!("generated {:?} ", temperature);
        for c in PRIME.chars().chain(text.chars()) {
            match c {
                '\n' => hprint!("\\n"),
                c => hprint!("{}", c),
            }
        }
        hprintln!();
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
