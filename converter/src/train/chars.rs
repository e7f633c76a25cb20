//! Training a character model from a text file (`tinyrnn train-text`), as min-char-rnn and the
//! TensorFlow char-RNN notebooks do.
//!
//! ```text
//! Embedding(vocabulary, embedding)       the file's distinct characters, sorted
//! Recurrent × layers                     SimpleRNN(tanh) / LSTM / GRU(reset-after), all per step
//! Dense(vocabulary, softmax)             per step: the next character's distribution
//! ```
//!
//! The loss is the mean cross-entropy over every position of a chunk of `seq_len` characters;
//! backpropagation is truncated at the chunk's start while the state carries on from chunk to chunk
//! (min-char-rnn's loop: the state and the position go back to the start when the text runs out).
//! Every element of the gradient is clipped to ±`clip`; Adagrad or Adam take the step.
//!
//! Samples and validation losses shown during training come from the engine running the current weights
//! as a blob (the same code as `tinyrnn generate` and the firmware), so what is shown is what a device
//! would produce.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tinyrnn::format::Splitting;

use super::net::{Cache, Net};
use super::optim::{clip_elementwise, Adagrad, Adam, Rng};
use crate::run::AlignedBlob;
use crate::spec::{ModelSpec, TokenVocabulary};
use crate::write;

/// Marks the JSON document `train-text` writes into a blob's `Meta::info`.
pub const TEXT_INFO_FORMAT: &str = "tinyrnn-train-text/1";

/// Most distinct characters a model may have: the output Dense layer is one value per character, and
/// the engine's widest vector is [`tinyrnn::format::MAX_WIDTH`].
pub const MAX_CHARACTERS: usize = tinyrnn::format::MAX_WIDTH as usize;

/// The optimiser.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adagrad (min-char-rnn's; default learning rate 0.1).
    Adagrad,
    /// Adam with Keras' defaults (default learning rate 2e-3).
    Adam,
}

impl Optimizer {
    /// The learning rate used when none is given.
    pub fn default_learning_rate(self) -> f32 {
        match self {
            Optimizer::Adagrad => 0.1,
            Optimizer::Adam => 2e-3,
        }
    }
}

/// How to train, as stored in the blob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TextSettings {
    /// The text file, as given.
    pub text: String,
    /// `rnn`, `lstm` or `gru`.
    pub cell: String,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Hidden size of every recurrent layer.
    pub hidden: usize,
    /// Embedding width.
    pub embedding: usize,
    /// Characters per chunk of truncated backpropagation through time.
    pub seq_len: usize,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// Its learning rate.
    pub learning_rate: f32,
    /// Element-wise gradient clip (0: none).
    pub clip: f32,
    /// Optimiser steps (one chunk each).
    pub steps: usize,
    /// Seed of initialisation and of the sampler.
    pub seed: u64,
    /// Fraction of the text held out at its end for validation.
    pub val_fraction: f64,
    /// Steps between samples (0: only at the end).
    pub sample_every: usize,
    /// Characters per sample.
    pub sample_len: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Text the samples start from.
    pub prime: String,
}

/// What training reached, as stored in the blob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TextOutcome {
    /// Distinct characters.
    pub vocabulary: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Characters trained on.
    pub train_chars: usize,
    /// Characters held out.
    pub val_chars: usize,
    /// Mean cross-entropy over the last report interval's training chunks, nats per character.
    pub train_nats: f64,
    /// The engine's cross-entropy on the held-out tail, nats per character (`None` without one).
    pub val_nats: Option<f64>,
    /// Entropy of the held-out tail's own character frequencies: what the best model that ignores
    /// context would reach, nats per character.
    pub val_unigram_nats: Option<f64>,
    /// Uniform guessing: ln(vocabulary).
    pub chance_nats: f64,
}

/// The JSON document in a `train-text` blob's `Meta::info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextInfo {
    /// Always [`TEXT_INFO_FORMAT`].
    pub format: String,
    /// How the model was trained.
    pub settings: TextSettings,
    /// What it reached.
    pub outcome: TextOutcome,
}

impl TextInfo {
    /// The document in a blob's info text, if it is one.
    pub fn parse(info: &str) -> Option<TextInfo> {
        serde_json::from_str::<TextInfo>(info)
            .ok()
            .filter(|i| i.format == TEXT_INFO_FORMAT)
    }
}

/// One progress report, every `sample_every` steps and after the last.
#[derive(Clone, Debug, PartialEq)]
pub struct TextReport {
    /// Steps done.
    pub step: usize,
    /// Mean training cross-entropy since the previous report, nats per character.
    pub train_nats: f64,
    /// The engine's cross-entropy on the held-out tail, nats per character.
    pub val_nats: Option<f64>,
    /// Text the engine generates from the current weights after the prime.
    pub sample: String,
    /// Time since training started.
    pub elapsed: Duration,
}

/// A trained character model.
#[derive(Clone, Debug)]
pub struct TextTrained {
    /// The blob (vocabulary, settings and losses in its metadata, self-test).
    pub blob: Vec<u8>,
    /// What the blob's metadata holds.
    pub info: TextInfo,
    /// Every report, in order.
    pub reports: Vec<TextReport>,
}

/// A text as model input: its sorted distinct characters and the id of each of its characters.
#[derive(Clone, Debug, PartialEq)]
pub struct CharText {
    /// Distinct characters, sorted: id `i` is `chars[i]`.
    pub chars: Vec<char>,
    /// The text as ids.
    pub ids: Vec<u32>,
}

impl CharText {
    /// Reads UTF-8 text; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<CharText> {
        ensure!(
            !bytes.is_empty(),
            "{origin} is empty; there is nothing to learn"
        );
        let text = std::str::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{origin} is not UTF-8 text: invalid byte {:#04x} at byte offset {}",
                bytes[e.valid_up_to()],
                e.valid_up_to()
            )
        })?;
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        ensure!(
            chars.len() >= 2,
            "{origin} has only {} distinct character ({:?}); a character model needs at least 2",
            chars.len(),
            chars[0]
        );
        ensure!(
            chars.len() <= MAX_CHARACTERS,
            "{origin} has {} distinct characters; the engine's output layer holds at most {MAX_CHARACTERS}",
            chars.len()
        );
        let ids = text
            .chars()
            .map(|c| chars.binary_search(&c).map_or(0, |i| i as u32))
            .collect();
        Ok(CharText { chars, ids })
    }

    /// The blob's vocabulary.
    pub fn vocabulary(&self) -> TokenVocabulary {
        TokenVocabulary {
            splitting: Splitting::Chars,
            tokens: self.chars.iter().map(|c| c.to_string()).collect(),
            unknown: None,
        }
    }
}

/// Entropy of the character frequencies of `ids`, nats.
pub fn unigram_entropy(ids: &[u32], vocabulary: usize) -> f64 {
    let mut counts = vec![0usize; vocabulary];
    ids.iter().for_each(|&i| counts[i as usize] += 1);
    let n = ids.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// The engine's mean cross-entropy (nats per character) of `blob` on `ids`, read one character at a
/// time from the zero state: `ids.len() − 1` predictions.
pub fn engine_nats(blob: &[u8], ids: &[u32]) -> Result<f64> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let mut memory = vec![0.0; model.memory().total()];
    let mut output = vec![0.0; model.step_output_len()];
    let mut runtime = tinyrnn::Runtime::new(&model, &mut memory)?;
    let mut nats = 0.0f64;
    for pair in ids.windows(2) {
        runtime.step_token(pair[0], &mut output)?;
        nats -= f64::from(output[pair[1] as usize]).ln();
    }
    Ok(nats / (ids.len().saturating_sub(1)).max(1) as f64)
}

/// Trains a character model on `text` (`origin` names it in messages) and calls `progress` at every
/// report. Deterministic: the same text and settings give the same blob.
pub fn fit_text(
    text: &CharText,
    settings: &TextSettings,
    progress: &mut dyn FnMut(&TextReport),
) -> Result<TextTrained> {
    let s = settings;
    let cell = crate::trainer::parse_cell(&s.cell)?;
    ensure!(
        s.seq_len >= 1,
        "--seq-len must be at least 1 (characters per chunk)"
    );
    ensure!(s.steps >= 1, "train for at least one step");
    for (flag, width) in [("--hidden", s.hidden), ("--embedding", s.embedding)] {
        ensure!(
            width <= MAX_CHARACTERS,
            "{flag} {width} is wider than the engine's widest vector ({MAX_CHARACTERS})"
        );
    }
    ensure!(
        s.learning_rate.is_finite() && s.learning_rate > 0.0,
        "the learning rate must be a positive number, got {}",
        s.learning_rate
    );
    ensure!(
        s.clip.is_finite() && s.clip >= 0.0,
        "--clip must be a number ≥ 0, got {}",
        s.clip
    );
    ensure!(
        (0.0..1.0).contains(&s.val_fraction),
        "--val-fraction must be in [0, 1), got {}",
        s.val_fraction
    );
    ensure!(
        s.temperature.is_finite() && s.temperature >= 0.0,
        "--temperature must be a number ≥ 0, got {}",
        s.temperature
    );
    ensure!(
        !s.prime.is_empty(),
        "--prime must hold at least one character"
    );
    if let Some(c) = s
        .prime
        .chars()
        .find(|c| text.chars.binary_search(c).is_err())
    {
        bail!(
            "the prime's character {c:?} does not occur in {}, so the model has no id for it",
            s.text
        );
    }
    let vocabulary = text.chars.len();
    let val_chars = (text.ids.len() as f64 * s.val_fraction).floor() as usize;
    ensure!(
        s.val_fraction == 0.0 || val_chars >= 2,
        "{} has {} characters; a validation fraction of {} holds out {val_chars}, too few to measure \
         (at least 2)",
        s.text,
        text.ids.len(),
        s.val_fraction
    );
    let (train, val) = text.ids.split_at(text.ids.len() - val_chars);
    ensure!(
        train.len() > s.seq_len,
        "the training part of {} has {} characters; a chunk of --seq-len {} needs at least {}",
        s.text,
        train.len(),
        s.seq_len,
        s.seq_len + 1
    );
    let net = Net::new_text(cell, s.layers, s.hidden, s.embedding, vocabulary, s.seq_len)?;
    let mut rng = Rng::new(s.seed);
    let mut params = net.init_text(&mut rng);
    enum Step {
        Adagrad(Adagrad),
        Adam(Adam),
    }
    let mut optimizer = match s.optimizer {
        Optimizer::Adagrad => Step::Adagrad(Adagrad::new(net.size, s.learning_rate)),
        Optimizer::Adam => Step::Adam(Adam::new(net.size, s.learning_rate)),
    };
    let mut cache: Cache<f32> = net.cache();
    let mut grad = vec![0.0f32; net.size];
    let scale = 1.0 / s.seq_len as f32;
    let started = Instant::now();
    let mut reports = Vec::new();
    let (mut position, mut carry) = (0usize, false);
    let (mut interval_nats, mut interval_chars) = (0.0f64, 0usize);
    for step in 1..=s.steps {
        if position + s.seq_len + 1 > train.len() {
            (position, carry) = (0, false);
        }
        let chunk = &train[position..position + s.seq_len + 1];
        net.forward_tokens(&params, &chunk[..s.seq_len], &mut cache, carry);
        interval_nats += net.set_cross_entropy_gradient(&mut cache, &chunk[1..], scale);
        interval_chars += s.seq_len;
        grad.fill(0.0);
        net.backward(&params, &mut cache, &mut grad);
        clip_elementwise(&mut grad, s.clip);
        match &mut optimizer {
            Step::Adagrad(o) => o.step(&mut params, &grad),
            Step::Adam(o) => o.step(&mut params, &grad),
        }
        (position, carry) = (position + s.seq_len, true);
        let train_nats = interval_nats / interval_chars as f64;
        ensure!(
            train_nats.is_finite() && params.iter().all(|p| p.is_finite()),
            "training diverged at step {step} (loss {train_nats}); try a lower learning rate or \
             a smaller --clip"
        );
        let due = s.sample_every > 0 && step % s.sample_every == 0;
        if due || step == s.steps {
            let blob = write::to_blob(&spec_of(text, s, &net, &params)?)?;
            let val_nats = (!val.is_empty())
                .then(|| engine_nats(&blob, val))
                .transpose()?;
            let sample =
                crate::text::generate_text(&blob, &s.prime, s.sample_len, s.temperature, s.seed)?;
            let report = TextReport {
                step,
                train_nats,
                val_nats,
                sample,
                elapsed: started.elapsed(),
            };
            progress(&report);
            reports.push(report);
            (interval_nats, interval_chars) = (0.0, 0);
        }
    }
    let last = reports.last().context("training made no report")?.clone();
    let mut spec = spec_of(text, s, &net, &params)?;
    let info = TextInfo {
        format: TEXT_INFO_FORMAT.into(),
        settings: s.clone(),
        outcome: TextOutcome {
            vocabulary,
            parameters: spec.parameter_count(),
            train_chars: train.len(),
            val_chars: val.len(),
            train_nats: last.train_nats,
            val_nats: last.val_nats,
            val_unigram_nats: (!val.is_empty()).then(|| unigram_entropy(val, vocabulary)),
            chance_nats: (vocabulary as f64).ln(),
        },
    };
    spec.annotations.info = serde_json::to_string(&info)?;
    let blob = write::to_blob_with_self_test(&spec)?;
    Ok(TextTrained {
        blob,
        info,
        reports,
    })
}

/// The engine model of `net` at `params`, with the text's vocabulary, named after the file.
fn spec_of(text: &CharText, s: &TextSettings, net: &Net, params: &[f32]) -> Result<ModelSpec> {
    Ok(ModelSpec {
        name: Path::new(&s.text)
            .file_stem()
            .map_or_else(|| "chars".to_string(), |n| n.to_string_lossy().into_owned()),
        source: format!("tinyrnn train-text on {}", s.text),
        vocabulary: Some(text.vocabulary()),
        ..net.to_text_spec(params)?
    })
}

/// What `tinyrnn train-text` was asked to do.
#[derive(Clone, Debug)]
pub struct TextRequest {
    /// The settings; an empty prime means the text's first character.
    pub settings: TextSettings,
    /// Passes over the training text, replacing `settings.steps` when given.
    pub epochs: Option<usize>,
    /// The text file.
    pub path: PathBuf,
    /// Where to write the blob.
    pub output: PathBuf,
}

/// Optimiser steps for `epochs` passes over the training part of a text of `chars` characters.
pub fn steps_for_epochs(chars: usize, val_fraction: f64, seq_len: usize, epochs: usize) -> usize {
    let val = (chars as f64 * val_fraction).floor() as usize;
    let train = chars.saturating_sub(val);
    (train.saturating_sub(1) / seq_len.max(1)).max(1) * epochs
}

/// `tinyrnn train-text`: reads the text, trains with progress and samples on stdout, writes the blob.
pub fn train_text(request: &TextRequest) -> Result<TextTrained> {
    let bytes = std::fs::read(&request.path)
        .with_context(|| format!("reading {}", request.path.display()))?;
    let text = CharText::parse(&bytes, &request.path.display().to_string())?;
    let mut settings = request.settings.clone();
    if settings.prime.is_empty() {
        settings.prime = text.chars[text.ids[0] as usize].to_string();
    }
    if let Some(epochs) = request.epochs {
        ensure!(epochs >= 1, "train for at least one epoch");
        settings.steps = steps_for_epochs(
            text.ids.len(),
            settings.val_fraction,
            settings.seq_len,
            epochs,
        );
    }
    let s = &settings;
    let val_chars = (text.ids.len() as f64 * s.val_fraction).floor() as usize;
    crate::outln!(
        "{}: {} characters, {} distinct; training on the first {}, validating on the last {val_chars}",
        request.path.display(),
        text.ids.len(),
        text.chars.len(),
        text.ids.len() - val_chars,
    );
    crate::outln!(
        "model: Embedding({}, {}) → {} × {}({}) → Dense({}, softmax); {} steps of {} characters, {:?} lr {}, clip ±{}",
        text.chars.len(),
        s.embedding,
        s.layers,
        s.cell.to_uppercase(),
        s.hidden,
        text.chars.len(),
        s.steps,
        s.seq_len,
        s.optimizer,
        s.learning_rate,
        s.clip
    );
    let trained = fit_text(&text, s, &mut |r| {
        let val = r.val_nats.map_or(String::new(), |v| {
            format!(
                "  val {v:.4} nats/char ({:.4} bits)",
                v / std::f64::consts::LN_2
            )
        });
        crate::outln!(
            "step {:>6}/{}  loss {:.4} nats/char{val}  ({:.1} s)",
            r.step,
            s.steps,
            r.train_nats,
            r.elapsed.as_secs_f64()
        );
        crate::outln!("----\n{}{}\n----", s.prime, r.sample);
    })?;
    if let Some(dir) = request
        .output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&request.output, &trained.blob)
        .with_context(|| format!("writing {}", request.output.display()))?;
    crate::out!("{}", text_summary(&trained.info));
    crate::outln!(
        "wrote {} ({} bytes)",
        request.output.display(),
        trained.blob.len()
    );
    Ok(trained)
}

/// The closing summary: losses against the baselines.
pub fn text_summary(info: &TextInfo) -> String {
    let o = &info.outcome;
    let bits = |n: f64| n / std::f64::consts::LN_2;
    let mut out = format!(
        "parameters     {}\ntrain loss     {:.4} nats/char ({:.4} bits), last interval\n",
        o.parameters,
        o.train_nats,
        bits(o.train_nats)
    );
    if let (Some(v), Some(u)) = (o.val_nats, o.val_unigram_nats) {
        out += &format!(
            "validation     {v:.4} nats/char ({:.4} bits) on the last {} characters\n\
             unigram        {u:.4} nats/char ({:.4} bits): the tail's own character frequencies\n",
            bits(v),
            o.val_chars,
            bits(u)
        );
    }
    out += &format!(
        "chance         {:.4} nats/char ({:.4} bits): {} characters\n",
        o.chance_nats,
        bits(o.chance_nats),
        o.vocabulary
    );
    out
}
