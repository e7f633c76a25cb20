//! Cross-entropy of a character model on a text, in nats and bits per character, read by the engine one
//! character at a time from the zero state, beside chance and the part's own unigram entropy. The
//! figures in BENCHMARKS.md ("Character models") come from it.
//!
//! ```text
//! cargo run --release -p tinyrnn-converter --example text_nats -- out/chars.trnn docs/FORMAT.md --tail 0.1
//! cargo run --release -p tinyrnn-converter --example text_nats -- out/chars.trnn docs/FORMAT.md --first 3000
//! ```

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::train::chars::{engine_nats, unigram_entropy};

#[derive(Parser)]
struct Args {
    /// A blob with a character vocabulary.
    model: PathBuf,
    /// The text.
    text: PathBuf,
    /// Measure on the last fraction of the text (as `train-text --val-fraction` holds it out).
    #[arg(long, conflicts_with = "first")]
    tail: Option<f64>,
    /// Measure on the first this many characters.
    #[arg(long)]
    first: Option<usize>,
    /// Drop the text's characters that are not in the model's vocabulary (as
    /// `converter/tests/examples.rs` does for the imported min-char-rnn, trained on an older
    /// `docs/FORMAT.md`) instead of refusing the text.
    #[arg(long)]
    skip_unknown: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let blob =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("reading {}", args.text.display()))?;
    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open()?;
    let vocabulary = model
        .vocabulary()
        .context("the blob carries no vocabulary")?;
    let all: Vec<_> = vocabulary.ids(&text).collect();
    let ids: Vec<u32> = all.iter().filter_map(|id| id.ok()).collect();
    let unknown = all.len() - ids.len();
    ensure!(
        unknown == 0 || args.skip_unknown,
        "the text has {unknown} characters outside the model's vocabulary (--skip-unknown drops them)"
    );
    if unknown > 0 {
        println!("dropped {unknown} characters outside the vocabulary");
    }
    let part = match (args.tail, args.first) {
        (Some(f), _) => &ids[ids.len() - (ids.len() as f64 * f).floor() as usize..],
        (None, Some(n)) => &ids[..n.min(ids.len())],
        (None, None) => &ids[..],
    };
    ensure!(
        part.len() >= 2,
        "the measured part holds fewer than 2 characters"
    );
    let nats = engine_nats(&blob, part)?;
    let unigram = unigram_entropy(part, vocabulary.len());
    let chance = (vocabulary.len() as f64).ln();
    let bits = |n: f64| n / std::f64::consts::LN_2;
    println!(
        "{} characters: {nats:.4} nats/char ({:.4} bits); unigram {unigram:.4} ({:.4} bits); chance {chance:.4} ({:.4} bits)",
        part.len(),
        bits(nats),
        bits(unigram),
        bits(chance)
    );
    Ok(())
}
