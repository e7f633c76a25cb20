//! Host front ends of the engine's text support (`tinyrnn generate`, `tinyrnn classify`): the same
//! [`tinyrnn::text`] code the firmware runs, so the same seed gives the same text on both.

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::{InputKind, Splitting};
use tinyrnn::text::{generate, Sampler};
use tinyrnn::{Model, Runtime};

use crate::run::AlignedBlob;

/// Generates `length` tokens after `prime` with a streaming token model whose blob carries a vocabulary,
/// sampling at `temperature` from a sampler seeded with `seed`. Returns the generated text (without the
/// prime).
pub fn generate_text(
    blob: &[u8],
    prime: &str,
    length: usize,
    temperature: f32,
    seed: u64,
) -> Result<String> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let vocabulary = model
        .vocabulary()
        .context("the blob carries no vocabulary; import the model with --vocab FILE")?;
    ensure!(
        model.step_output_len() == vocabulary.len(),
        "the model gives {} scores per step but its vocabulary has {} tokens; generation draws one \
         token per score",
        model.step_output_len(),
        vocabulary.len()
    );
    ensure!(
        model.is_streamable(),
        "this model cannot run one token at a time (bidirectional or end-cropped layers), so it cannot \
         generate"
    );
    let mut memory = vec![0.0; model.memory().total()];
    let mut output = vec![0.0; model.step_output_len()];
    let mut runtime = Runtime::new(&model, &mut memory)?;
    let mut sampler = Sampler::new(seed);
    let mut text = String::new();
    generate(
        &mut runtime,
        &mut output,
        prime,
        length,
        temperature,
        &mut sampler,
        |token| {
            text.push_str(token);
            if matches!(
                model.vocabulary().map(|v| v.splitting),
                Some(Splitting::Words { .. })
            ) {
                text.push(' ');
            }
        },
    )
    .map_err(|e| explain(&model, prime, e))?;
    Ok(text)
}

/// Runs a token model over `text` as one window: ids from the blob's vocabulary, padded with id 0 or cut
/// to the model's fixed length as Keras `TextVectorization(output_sequence_length=…)` does. Returns the
/// model's output.
pub fn classify(blob: &[u8], text: &str) -> Result<Vec<f32>> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let vocabulary = model
        .vocabulary()
        .context("the blob carries no vocabulary; import the model with --vocab FILE")?;
    ensure!(
        model.input().kind == InputKind::Tokens,
        "the model does not read token ids"
    );
    let mut ids = Vec::new();
    for id in vocabulary.ids(text) {
        ids.push(id.map_err(|e| explain(&model, text, e))?);
    }
    if let Some(steps) = model.input().steps {
        ids.resize(steps as usize, 0);
    }
    if ids.is_empty() {
        bail!("the text holds no tokens");
    }
    let mut memory = vec![0.0; model.window_memory(ids.len())?.total()];
    let mut output = vec![0.0; model.output_len(ids.len())?];
    Runtime::new(&model, &mut memory)?.run_window_tokens(&ids, &mut output)?;
    Ok(output)
}

/// An engine error about text, with the token that caused it named where that is the problem.
fn explain(model: &Model<'_>, text: &str, error: tinyrnn::Error) -> anyhow::Error {
    if error != tinyrnn::Error::UnknownToken {
        return anyhow::Error::new(error);
    }
    let unknown = model.vocabulary().and_then(|v| {
        text.chars()
            .find(|c| v.splitting == Splitting::Chars && v.id(c.encode_utf8(&mut [0; 4])).is_none())
    });
    match unknown {
        Some(c) => anyhow::anyhow!("{c:?} is not in the model's vocabulary"),
        None => anyhow::Error::new(error),
    }
}
