//! Host inference: runs a blob over a batch laid out as its source framework lays it out.

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::{InputKind, InputLayout, OutputLayout};
use tinyrnn::{Model, Runtime};

use crate::npy::{Array, Data};

/// A copy of a blob at a 16-byte-aligned address, as the engine reads tensors in place.
pub struct AlignedBlob {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBlob {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }

    /// The blob's bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }

    /// Opens the blob with the engine.
    pub fn open(&self) -> Result<Model<'_>> {
        Model::open(self.bytes()).context("the blob does not open")
    }
}

/// Runs every batch element of `input` from a fresh state and returns the outputs in the source
/// framework's layout (Keras `model.predict`, or ONNX Runtime's `Y`/`Y_h`).
pub fn run_batch(blob: &[u8], input: &Array) -> Result<Array> {
    let blob = AlignedBlob::new(blob);
    let model = blob.open()?;
    run_model(&model, input)
}

/// [`run_batch`] on an opened model.
pub fn run_model(model: &Model<'_>, input: &Array) -> Result<Array> {
    let io = model.io();
    let width = model.input_width();
    let tokens = model.input().kind == InputKind::Tokens;
    let expected_rank = if tokens { 2 } else { 3 };
    let layout_text = match (io.input, tokens) {
        (InputLayout::BatchFirst, false) => "(batch, time, features)",
        (InputLayout::TimeFirst, false) => "(time, batch, features)",
        (InputLayout::BatchFirst, true) => "(batch, time) of token ids",
        (InputLayout::TimeFirst, true) => "(time, batch) of token ids",
    };
    ensure!(
        input.shape.len() == expected_rank,
        "input has shape {:?}; this model takes {layout_text}",
        input.shape
    );
    let (batch, steps) = match io.input {
        InputLayout::BatchFirst => (input.shape[0], input.shape[1]),
        InputLayout::TimeFirst => (input.shape[1], input.shape[0]),
    };
    if !tokens {
        ensure!(
            input.shape[2] == width,
            "input has {} features per timestep (shape {:?}); the model takes {width}",
            input.shape[2],
            input.shape
        );
    }
    ensure!(
        batch > 0 && steps > 0,
        "input shape {:?} is empty",
        input.shape
    );
    if let Some(fixed) = model.input().steps {
        ensure!(
            steps == fixed as usize,
            "input has {steps} timesteps per window (shape {:?}); this model takes windows of exactly {fixed}",
            input.shape
        );
    }
    let out_steps = model.output_steps(steps).with_context(|| {
        format!(
            "input shape {:?}: the model crops more timesteps than the window has",
            input.shape
        )
    })?;
    let out_len = model.output_len(steps)?;
    let memory = model.window_memory(steps)?;
    let mut buffer = vec![0.0f32; memory.total()];
    let mut runtime = Runtime::new(model, &mut buffer)?;

    // Index of element (b, t, f) in the input array.
    let index = |b: usize, t: usize, f: usize| match io.input {
        InputLayout::BatchFirst => (b * steps + t) * width + f,
        InputLayout::TimeFirst => (t * batch + b) * width + f,
    };
    let mut outputs = Vec::with_capacity(batch * out_len);
    let mut element = vec![0.0f32; out_len];
    for b in 0..batch {
        match &input.data {
            Data::Float(values) if !tokens => {
                let window: Vec<f32> = (0..steps)
                    .flat_map(|t| (0..width).map(move |f| (t, f)))
                    .map(|(t, f)| values[index(b, t, f)])
                    .collect();
                runtime
                    .run_window(&window, &mut element)
                    .with_context(|| format!("batch element {b}"))?;
            }
            data if tokens => {
                let ids = (0..steps)
                    .map(|t| token_id(data, index(b, t, 0)))
                    .collect::<Result<Vec<u32>>>()
                    .with_context(|| format!("batch element {b}"))?;
                runtime
                    .run_window_tokens(&ids, &mut element)
                    .with_context(|| format!("batch element {b}"))?;
            }
            _ => bail!("this model takes float features; the input array holds integers"),
        }
        outputs.extend_from_slice(&element);
    }
    lay_out(model, io.output, batch, out_steps, outputs)
}

fn token_id(data: &Data, at: usize) -> Result<u32> {
    match data {
        Data::Int(v) => u32::try_from(v[at])
            .with_context(|| format!("token id {} is negative or too large", v[at])),
        Data::Float(v) => {
            let x = v[at];
            ensure!(
                x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f32,
                "token id {x} is not a non-negative integer"
            );
            Ok(x as u32)
        }
    }
}

/// Arranges per-element outputs (`batch × steps × width`, batch-major) as the source framework does.
fn lay_out(
    model: &Model<'_>,
    layout: OutputLayout,
    batch: usize,
    steps: usize,
    values: Vec<f32>,
) -> Result<Array> {
    let width = model.output_width();
    let sequence = model.output_is_sequence();
    let split = |directions: u32| -> Result<(usize, usize)> {
        let d = directions as usize;
        ensure!(
            d > 0 && width % d == 0,
            "output width {width} is not split into {d} directions"
        );
        Ok((d, width / d))
    };
    match layout {
        OutputLayout::BatchFirst | OutputLayout::TimeFirst if !sequence => {
            Array::float(vec![batch, width], values)
        }
        OutputLayout::BatchFirst => Array::float(vec![batch, steps, width], values),
        OutputLayout::TimeFirst => Array::float(
            vec![steps, batch, width],
            batch_inward(&values, batch, steps, width),
        ),
        OutputLayout::OnnxSequence {
            batch_first,
            directions,
        } => {
            let (d, h) = split(directions)?;
            if batch_first {
                Array::float(vec![batch, steps, d, h], values)
            } else {
                Array::float(
                    vec![steps, d, batch, h],
                    batch_inward(&values, batch, steps * d, h),
                )
            }
        }
        OutputLayout::OnnxFinalState {
            batch_first,
            directions,
        } => {
            let (d, h) = split(directions)?;
            if batch_first {
                Array::float(vec![batch, d, h], values)
            } else {
                Array::float(vec![d, batch, h], batch_inward(&values, batch, d, h))
            }
        }
    }
}

/// `(batch, outer, inner)` → `(outer, batch, inner)`: moves the batch axis inside, as time-major
/// layouts and ONNX's `Y`/`Y_h` have it.
fn batch_inward(values: &[f32], batch: usize, outer: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (b, element) in values.chunks_exact(outer * inner).enumerate().take(batch) {
        for (o, row) in element.chunks_exact(inner).enumerate() {
            let to = (o * batch + b) * inner;
            out[to..to + inner].copy_from_slice(row);
        }
    }
    out
}

/// One batch element of an input array: a window of features or of token ids.
pub enum Window {
    /// `steps × features` values.
    Features {
        /// Values, timestep-major.
        values: Vec<f32>,
        /// Features per timestep.
        width: usize,
    },
    /// One token id per timestep.
    Tokens(Vec<u32>),
}

impl Window {
    /// The same timesteps, last first.
    pub fn reversed(&self) -> Window {
        match self {
            Window::Features { values, width } => Window::Features {
                values: values
                    .chunks_exact((*width).max(1))
                    .rev()
                    .flatten()
                    .copied()
                    .collect(),
                width: *width,
            },
            Window::Tokens(ids) => Window::Tokens(ids.iter().rev().copied().collect()),
        }
    }

    /// Number of timesteps.
    pub fn steps(&self) -> usize {
        match self {
            Window::Features { values, width } => values.len() / (*width).max(1),
            Window::Tokens(ids) => ids.len(),
        }
    }

    /// Streams timestep `t` through `runtime`.
    pub fn step(&self, runtime: &mut Runtime<'_, '_>, t: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Window::Features { values, width } => {
                runtime.step(&values[t * width..(t + 1) * width], out)?;
            }
            Window::Tokens(ids) => {
                runtime.step_token(ids[t], out)?;
            }
        }
        Ok(())
    }

    /// Runs the first `steps` timesteps as a window from the initial state; returns the output.
    pub fn run_prefix(&self, runtime: &mut Runtime<'_, '_>, steps: usize) -> Result<Vec<f32>> {
        let model = runtime.model();
        let mut out = vec![0.0f32; model.output_len(steps)?];
        match self {
            Window::Features { values, width } => {
                runtime.run_window(&values[..steps * width], &mut out)?;
            }
            Window::Tokens(ids) => {
                runtime.run_window_tokens(&ids[..steps], &mut out)?;
            }
        }
        Ok(out)
    }
}

/// The batch elements of `input` (laid out as [`run_batch`] reads it) as separate windows.
pub fn windows(model: &Model<'_>, input: &Array) -> Result<Vec<Window>> {
    let io = model.io();
    let width = model.input_width();
    let tokens = model.input().kind == InputKind::Tokens;
    let rank = if tokens { 2 } else { 3 };
    ensure!(
        input.shape.len() == rank && (tokens || input.shape[2] == width),
        "input has shape {:?}; the model takes {width} features per timestep",
        input.shape
    );
    let (batch, steps) = match io.input {
        InputLayout::BatchFirst => (input.shape[0], input.shape[1]),
        InputLayout::TimeFirst => (input.shape[1], input.shape[0]),
    };
    let index = |b: usize, t: usize, f: usize| match io.input {
        InputLayout::BatchFirst => (b * steps + t) * width + f,
        InputLayout::TimeFirst => (t * batch + b) * width + f,
    };
    (0..batch)
        .map(|b| match &input.data {
            Data::Float(values) if !tokens => Ok(Window::Features {
                values: (0..steps)
                    .flat_map(|t| (0..width).map(move |f| (t, f)))
                    .map(|(t, f)| values[index(b, t, f)])
                    .collect(),
                width,
            }),
            data if tokens => Ok(Window::Tokens(
                (0..steps)
                    .map(|t| token_id(data, index(b, t, 0)))
                    .collect::<Result<Vec<u32>>>()?,
            )),
            _ => bail!("this model takes float features; the input array holds integers"),
        })
        .collect()
}
