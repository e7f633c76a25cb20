//! Text classification on QEMU's `mps2-an386` (Cortex-M4F), with the tokenizer on the device: the bundled
//! sentiment model (`models/sentiment.trnn`, imported from `examples/sentiment/sentiment.keras` with its
//! `TextVectorization` vocabulary) scores a few reviews given as raw text. Each text is lowercased,
//! stripped of punctuation, split into words and mapped to token ids by `tinyrnn::text::Vocabulary::ids`
//! (no allocation), padded or cut to the model's 16 steps as Keras does, and run as one window. It prints
//! `score <text> <score>` per text; CI compares the lines with `tinyrnn classify` on the host, which runs
//! the same engine code and must print the same scores.
//!
//! `cargo run --release --bin classify` in `firmware/`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use tinyrnn::{Error, Model, Runtime};
use tinyrnn_firmware::include_blob;

/// The bundled sentiment model; `models/README.md` says how it is made.
static MODEL: &[u8] = include_blob!("../../models/sentiment.trnn");
/// The texts CI also gives `tinyrnn classify`, one per line (`models/reviews.txt`).
static TEXTS: &str = include_str!("../../models/reviews.txt");

/// Longest token sequence the binary accepts (the model reads 16).
const MAX_TOKENS: usize = 64;
/// Engine memory in words (`tinyrnn inspect`: 2,432 bytes for a window of 16).
const WORDS: usize = 1024;

#[entry]
fn main() -> ! {
    tinyrnn_firmware::exit_with(run())
}

fn run() -> Result<(), Error> {
    let model = Model::open(MODEL)?;
    let vocabulary = model.vocabulary().ok_or(Error::BadVocabulary)?;
    let mut memory = [0.0f32; WORDS];
    let mut output = [0.0f32; 8];
    for text in TEXTS.lines().filter(|line| !line.is_empty()) {
        let mut ids = heapless::Vec::<u32, MAX_TOKENS>::new();
        for id in vocabulary.ids(text) {
            ids.push(id?).map_err(|_| Error::InputLength {
                expected: MAX_TOKENS,
                got: MAX_TOKENS + 1,
            })?;
        }
        // A fixed-length model reads exactly its steps: padding (id 0) after the text, or the text cut.
        if let Some(steps) = model.input().steps {
            ids.resize(steps as usize, 0)
                .map_err(|_| Error::InputLength {
                    expected: MAX_TOKENS,
                    got: steps as usize,
                })?;
        }
        let needed = model.window_memory(ids.len())?.total();
        let memory = memory
            .get_mut(..needed)
            .ok_or(Error::BufferTooSmall { needed, got: WORDS })?;
        let outputs = model.output_len(ids.len())?;
        let output = output.get_mut(..outputs).ok_or(Error::BufferTooSmall {
            needed: outputs,
            got: 8,
        })?;
        Runtime::new(&model, memory)?.run_window_tokens(&ids, output)?;
        let mut line = heapless::String::<64>::new();
        for (i, score) in output.iter().enumerate() {
            use core::fmt::Write as _;
            let _ = write!(line, "{}{score:.6}", if i == 0 { "" } else { " " });
        }
        hprintln!("score {} {}", text, line);
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
