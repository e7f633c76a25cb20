//! Forecasting from a stream of samples: push one raw sample at a time, get a forecast back once there is
//! enough history.
//!
//! A [`Forecaster`] ties together an input scaler, a sliding window buffer (`heapless`, for models
//! that run on whole windows), a [`Runtime`] and an output de-scaler. Several forecasters can share one [`Model`], each with
//! its own memory: three cells' KPIs, say, forecast by one model.
//!
//! **Units.** [`Forecaster::new`] uses the blob's own scalers ([`ModelScaler`], see
//! [`crate::format::Scaling`]): raw samples in, raw forecasts out. A blob without scalers (an imported
//! model) works in *model units*, whatever scaling it was trained on; [`Forecaster::with_scaler`] takes
//! any other [`Scaler`], e.g. [`Identity`] to feed model units to a model that has scalers.
//!
//! **State.** [`Forecaster::save_state`] writes the stream's state (the recurrent state, or the window
//! so far) as bytes that survive deep sleep; [`Forecaster::restore_state`] refuses bytes that are damaged
//! ([`Error::StateCorrupt`]), have the wrong length ([`Error::StateBytes`]) or were written for another
//! model ([`Error::StateModel`], checked against [`Model::id`]).
//!
//! Saved state layout, all little-endian: `TRST` magic, model id `u32`, mode `u32` (0 for streaming,
//! else the window length in timesteps), state words `u32`, valid words `u32`, the words as `f32`, and a
//! CRC-32 (the blob's) of everything before it.

use heapless::Vec;

use crate::error::Error;
use crate::format::{InputKind, CRC};
use crate::model::Model;
use crate::runtime::{Runtime, Status};

/// Maps raw samples to model units and forecasts back to raw units, one value at a time.
pub trait Scaler {
    /// Scales input feature `feature` of a raw sample into model units.
    fn scale_input(&self, feature: usize, value: f32) -> f32;
    /// Maps output feature `feature` of a forecast from model units back to raw units.
    fn unscale_output(&self, feature: usize, value: f32) -> f32;
}

/// The scaler of a model trained on raw units: values pass through unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl Scaler for Identity {
    #[inline]
    fn scale_input(&self, _feature: usize, value: f32) -> f32 {
        value
    }

    #[inline]
    fn unscale_output(&self, _feature: usize, value: f32) -> f32 {
        value
    }
}

/// The scalers a blob carries ([`Model::scaling`]): `model = (raw − offset) / scale` for input feature
/// `i` with row `i` of the input map, `raw = model × scale + offset` for output value `k` with row
/// `k % n` of the `n`-row output map. An absent map passes values through unchanged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelScaler<'a> {
    input: Option<&'a [f32]>,
    output: Option<&'a [f32]>,
}

impl<'a> ModelScaler<'a> {
    /// The scalers of `model` (checked when the blob was opened).
    pub fn of(model: &Model<'a>) -> Self {
        let scaling = model.scaling();
        Self {
            input: scaling.input,
            output: scaling.output,
        }
    }

    /// Whether the model has neither scaler, so raw units are model units.
    pub fn is_identity(&self) -> bool {
        self.input.is_none() && self.output.is_none()
    }
}

/// `[offset, scale]` of row `index % rows` of an `rows × 2` map.
#[inline]
fn pair(map: &[f32], index: usize) -> Option<(f32, f32)> {
    let row = index.checked_rem(map.len() / 2)?;
    let at = row.checked_mul(2)?;
    match map.get(at..at.checked_add(2)?) {
        Some(&[offset, scale]) => Some((offset, scale)),
        _ => None,
    }
}

impl Scaler for ModelScaler<'_> {
    #[inline]
    fn scale_input(&self, feature: usize, value: f32) -> f32 {
        match self.input.and_then(|map| pair(map, feature)) {
            Some((offset, scale)) => (value - offset) / scale,
            None => value,
        }
    }

    #[inline]
    fn unscale_output(&self, feature: usize, value: f32) -> f32 {
        match self.output.and_then(|map| pair(map, feature)) {
            Some((offset, scale)) => value * scale + offset,
            None => value,
        }
    }
}

/// How a forecaster feeds its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// One [`Runtime::step`] per sample; the recurrent state carries the whole history.
    Stream,
    /// A sliding window of the last `steps` samples, each forecast run from the initial state: what a
    /// model trained on fixed windows saw in training, and the only way to run a windowed-only model.
    Window {
        /// Window length in timesteps.
        steps: usize,
    },
}

impl Mode {
    /// The natural mode of a model: a sliding window of its fixed length if it declares one, else
    /// streaming. A windowed-only model without a fixed length has none ([`Error::NotStreamable`]).
    pub fn of(model: &Model<'_>) -> Result<Self, Error> {
        match model.input().steps {
            Some(steps) => Ok(Mode::Window {
                steps: steps as usize,
            }),
            None if model.is_streamable() => Ok(Mode::Stream),
            None => Err(Error::NotStreamable),
        }
    }

    fn tag(self) -> u32 {
        match self {
            Mode::Stream => 0,
            Mode::Window { steps } => steps as u32,
        }
    }
}

/// Magic at the start of saved stream state.
const STATE_MAGIC: [u8; 4] = *b"TRST";
/// Bytes of saved state before the words: magic, id, mode, words, valid.
const STATE_HEADER: usize = 20;
/// Bytes of the CRC-32 that ends a saved state.
const CRC_BYTES: usize = 4;

/// A stream of samples forecast by one model. `W` is the capacity of the window buffer (a `heapless::Vec`
/// that slides by one sample per push, so the window is always contiguous for the runtime; a
/// `heapless::Deque` with `make_contiguous` would save the copy, but in heapless 0.9.3 that call corrupts a
/// full, wrapped deque, rust-embedded/heapless#676) in `f32`
/// values: at least `steps × features` for [`Mode::Window`]; unused by [`Mode::Stream`], where 1 will do
/// (heapless needs a non-zero capacity).
#[derive(Debug)]
pub struct Forecaster<'m, 'b, const W: usize, S: Scaler = ModelScaler<'m>> {
    runtime: Runtime<'m, 'b>,
    mode: Mode,
    scaler: S,
    /// The scaled last `steps` samples, oldest first (window mode).
    window: Vec<f32, W>,
    /// One scaled sample (stream mode).
    sample: &'b mut [f32],
    /// The last forecast.
    output: &'b mut [f32],
}

impl<'m, 'b, const W: usize> Forecaster<'m, 'b, W, ModelScaler<'m>> {
    /// A forecaster in the model's natural [`Mode`] ([`Mode::of`]) with the blob's own scalers
    /// ([`ModelScaler`]: raw units in and out; model units for a blob without scalers), in `memory` of
    /// at least [`Forecaster::memory_words`] words.
    pub fn new(model: &'m Model<'m>, memory: &'b mut [f32]) -> Result<Self, Error> {
        Self::with_scaler(model, Mode::of(model)?, ModelScaler::of(model), memory)
    }
}

impl<'m, 'b, const W: usize, S: Scaler> Forecaster<'m, 'b, W, S> {
    /// `f32` words of caller memory a forecaster of `model` needs in `mode`: the runtime's memory plus one
    /// sample and one forecast.
    pub fn memory_words(model: &Model<'_>, mode: Mode) -> Result<usize, Error> {
        let (runtime, output) = match mode {
            Mode::Stream => (model.memory().total(), model.step_output_len()),
            Mode::Window { steps } => (
                model.window_memory(steps)?.total(),
                model.output_len(steps)?,
            ),
        };
        runtime
            .checked_add(output)
            .and_then(|words| words.checked_add(model.input_width()))
            .ok_or(Error::WindowLength {
                steps: match mode {
                    Mode::Stream => 1,
                    Mode::Window { steps } => steps,
                },
            })
    }

    /// A forecaster of `model` in `mode`, with `scaler`, in `memory` of at least
    /// [`Forecaster::memory_words`] words. Token models are refused ([`Error::WrongInputKind`]); a window
    /// that does not fit `W` gives [`Error::BufferTooSmall`].
    pub fn with_scaler(
        model: &'m Model<'m>,
        mode: Mode,
        scaler: S,
        memory: &'b mut [f32],
    ) -> Result<Self, Error> {
        if !matches!(model.input().kind, InputKind::Features(_)) {
            return Err(Error::WrongInputKind);
        }
        let needed = Self::memory_words(model, mode)?;
        if memory.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: memory.len(),
            });
        }
        let features = model.input_width();
        let out_len = match mode {
            Mode::Stream => {
                if !model.is_streamable() {
                    return Err(Error::NotStreamable);
                }
                model.step_output_len()
            }
            Mode::Window { steps } => {
                let values = steps.saturating_mul(features);
                if values > W {
                    return Err(Error::BufferTooSmall {
                        needed: values,
                        got: W,
                    });
                }
                model.output_len(steps)?
            }
        };
        let too_small = Error::BufferTooSmall {
            needed,
            got: memory.len(),
        };
        let (output, rest) = memory.split_at_mut_checked(out_len).ok_or(too_small)?;
        let (sample, rest) = rest.split_at_mut_checked(features).ok_or(too_small)?;
        Ok(Self {
            runtime: Runtime::new(model, rest)?,
            mode,
            scaler,
            window: Vec::new(),
            sample,
            output,
        })
    }

    /// The model this stream runs.
    pub fn model(&self) -> &'m Model<'m> {
        self.runtime.model()
    }

    /// The stream's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of values in one forecast.
    pub fn forecast_len(&self) -> usize {
        self.output.len()
    }

    /// Pushes one raw sample (one value per input feature) and returns the forecast in raw units, or `None`
    /// while the window fills (or, streaming, while a model that outputs its last N steps warms up).
    pub fn push(&mut self, sample: &[f32]) -> Result<Option<&[f32]>, Error> {
        let features = self.sample.len();
        if sample.len() != features {
            return Err(Error::InputLength {
                expected: features,
                got: sample.len(),
            });
        }
        match self.mode {
            Mode::Stream => {
                for (feature, (d, s)) in self.sample.iter_mut().zip(sample).enumerate() {
                    *d = self.scaler.scale_input(feature, *s);
                }
                if self.runtime.step(self.sample, self.output)? != Status::Ready {
                    return Ok(None);
                }
            }
            Mode::Window { steps } => {
                // Checked before the window changes: a NaN kept in it would spoil the next `steps`
                // forecasts.
                let scaler = &self.scaler;
                let finite = |(f, s): (usize, &f32)| scaler.scale_input(f, *s).is_finite();
                if let Some(index) = sample.iter().enumerate().position(|x| !finite(x)) {
                    return Err(Error::NonFiniteInput { index });
                }
                // At most `W`: checked when the forecaster was made.
                let values = steps.saturating_mul(features);
                let len = self.window.len();
                // Slide by one sample when full: drop the oldest, keep the rest oldest first.
                let drop = len.saturating_add(features).saturating_sub(values).min(len);
                if drop > 0 {
                    // Moved by hand: `rotate_left` keeps an assertion the optimiser cannot drop
                    // (a panic path, see `firmware/check-no-panic.sh`).
                    for to in 0..len.saturating_sub(drop) {
                        if let Some(value) = self.window.get(to.saturating_add(drop)).copied() {
                            if let Some(slot) = self.window.get_mut(to) {
                                *slot = value;
                            }
                        }
                    }
                    self.window.truncate(len.saturating_sub(drop));
                }
                for (feature, s) in sample.iter().enumerate() {
                    let scaled = self.scaler.scale_input(feature, *s);
                    // Capacity was checked against W when the forecaster was made.
                    self.window
                        .push(scaled)
                        .map_err(|_| Error::BufferTooSmall {
                            needed: values,
                            got: W,
                        })?;
                }
                if self.window.len() < values {
                    return Ok(None);
                }
                self.runtime.run_window(&self.window, self.output)?;
            }
        }
        let width = self.runtime.model().output_width().max(1);
        for (i, v) in self.output.iter_mut().enumerate() {
            // `width` is at least 1.
            *v = self
                .scaler
                .unscale_output(i.checked_rem(width).unwrap_or(0), *v);
        }
        Ok(Some(self.output))
    }

    /// Forgets the history: the window empties, the recurrent state returns to its initial value.
    pub fn reset(&mut self) {
        self.window.clear();
        self.runtime.reset();
    }

    fn state_words(&self) -> usize {
        match self.mode {
            Mode::Stream => self.runtime.state().len(),
            Mode::Window { steps } => steps.saturating_mul(self.sample.len()),
        }
    }

    /// Length in bytes of this stream's saved state.
    pub fn state_len(&self) -> usize {
        self.state_words()
            .saturating_mul(4)
            .saturating_add(STATE_HEADER + CRC_BYTES)
    }

    /// Writes the stream's state into `out`, which must be exactly [`Forecaster::state_len`] bytes.
    pub fn save_state(&self, out: &mut [u8]) -> Result<(), Error> {
        let expected = self.state_len();
        if out.len() != expected {
            return Err(Error::StateBytes {
                expected,
                got: out.len(),
            });
        }
        let words = self.state_words();
        let values: &[f32] = match self.mode {
            Mode::Stream => self.runtime.state(),
            Mode::Window { .. } => &self.window,
        };
        let valid_words = match self.mode {
            Mode::Stream => words,
            Mode::Window { .. } => self.window.len(),
        };
        let fields = [
            u32::from_le_bytes(STATE_MAGIC),
            self.model().id(),
            self.mode.tag(),
            words as u32,
            valid_words as u32,
        ];
        out.fill(0);
        let wrong_length = Error::StateBytes {
            expected,
            got: out.len(),
        };
        let (header, rest) = out.split_at_mut_checked(STATE_HEADER).ok_or(wrong_length)?;
        for (chunk, field) in header.chunks_exact_mut(4).zip(fields) {
            put(chunk, field.to_le_bytes());
        }
        for (chunk, v) in rest.chunks_exact_mut(4).zip(values) {
            put(chunk, v.to_le_bytes());
        }
        let (covered, crc) = out
            .split_last_chunk_mut::<CRC_BYTES>()
            .ok_or(wrong_length)?;
        *crc = CRC.checksum(covered).to_le_bytes();
        Ok(())
    }

    /// Restores a state written by [`Forecaster::save_state`] of a stream of the same model, mode and
    /// window length. On error the stream is left as it was.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let expected = self.state_len();
        if bytes.len() != expected {
            return Err(Error::StateBytes {
                expected,
                got: bytes.len(),
            });
        }
        let (body, crc) = bytes
            .split_last_chunk::<CRC_BYTES>()
            .ok_or(Error::StateCorrupt)?;
        let stored = u32::from_le_bytes(*crc);
        let field = |i: usize| u32::from_le_bytes(word(body, i));
        if field(0) != u32::from_le_bytes(STATE_MAGIC) || CRC.checksum(body) != stored {
            return Err(Error::StateCorrupt);
        }
        let id = self.model().id();
        if field(1) != id || field(2) != self.mode.tag() {
            return Err(Error::StateModel {
                expected: id,
                got: field(1),
            });
        }
        let words = self.state_words();
        let valid = field(4) as usize;
        let valid_ok = match self.mode {
            Mode::Stream => valid == words,
            Mode::Window { .. } => valid <= words,
        };
        if field(3) as usize != words || !valid_ok {
            return Err(Error::StateCorrupt);
        }
        let values = (0..words).map(|i| {
            let words = body.get(STATE_HEADER..).unwrap_or(&[]);
            f32::from_le_bytes(word(words, i))
        });
        // Saved state is canonical: every word finite, and zeros past the valid ones (what `save_state`
        // writes). Anything else was not written by `save_state`, whatever its checksum says. The
        // streaming state of an integer-only model is `i16` pairs, whatever `f32` its words read as.
        let bits = matches!(self.mode, Mode::Stream) && self.runtime.model().is_integer();
        let canonical = values
            .clone()
            .enumerate()
            .all(|(i, v)| (bits || v.is_finite()) && (i < valid || v.to_bits() == 0));
        if !canonical {
            return Err(Error::StateCorrupt);
        }
        match self.mode {
            Mode::Stream => self.runtime.restore_state_values(values),
            Mode::Window { .. } => {
                if valid.checked_rem(self.sample.len()) != Some(0) {
                    return Err(Error::StateCorrupt);
                }
                self.window.clear();
                for v in values.take(valid) {
                    self.window.push(v).map_err(|_| Error::StateCorrupt)?;
                }
            }
        }
        Ok(())
    }
}

/// The first four bytes of `bytes` (zeros where it is shorter).
fn take(bytes: &[u8]) -> [u8; 4] {
    let mut word = [0u8; 4];
    word.iter_mut().zip(bytes).for_each(|(d, s)| *d = *s);
    word
}

/// Word `i` of `bytes` (`ChunksExact::nth` would link a panic path).
fn word(bytes: &[u8], i: usize) -> [u8; 4] {
    take(
        i.checked_mul(4)
            .and_then(|at| bytes.get(at..))
            .unwrap_or(&[]),
    )
}

/// Copies `word` into the front of `dst` (as far as it reaches).
fn put(dst: &mut [u8], word: [u8; 4]) {
    dst.iter_mut().zip(word).for_each(|(d, s)| *d = s);
}
