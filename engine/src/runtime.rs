//! Running a model: streaming (one timestep per call, state kept between calls) and windowed (a whole
//! window per call). Both drive the same cell bodies in [`crate::cell`], so a window and the same
//! timesteps streamed one by one give the same numbers.

use crate::activation::apply;
use crate::cell::{self, Mat};
use crate::error::Error;
use crate::format::{Dense, Direction, Layer, Merge, Recurrent, Residual};
use crate::integer;
use crate::kernels::float::add;
use crate::kernels::{self, matvec};
use crate::model::{check_mode_compiled_in, Model, Stage};

/// What a streaming step produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// The output holds a complete result.
    Ready,
    /// A model that outputs its last N timesteps has seen fewer than N samples since its reset; the
    /// output's oldest rows are still zeros.
    Warming {
        /// Steps still needed before the output is complete.
        remaining: usize,
    },
}

/// One input timestep or window.
#[derive(Clone, Copy)]
enum Source<'x> {
    Features(&'x [f32]),
    Fixed(&'x [i16]),
    Tokens(&'x [u32]),
}

/// Runs one model over caller-owned memory. Many runtimes can share one [`Model`].
#[derive(Debug)]
pub struct Runtime<'m, 'b> {
    model: &'m Model<'m>,
    state: &'b mut [f32],
    scratch: &'b mut [f32],
    /// Streaming steps since the last reset, saturating at the kept history length.
    seen: usize,
    /// Whether float recurrent cells use the fast sigmoid and tanh.
    fast_activations: bool,
}

impl<'m, 'b> Runtime<'m, 'b> {
    /// Prepares a runtime in `memory`, which must hold at least [`Model::memory`]`().state` words; the
    /// rest is scratch. Give [`Model::memory`]`().total()` words to stream (an integer-only LSTM model
    /// also streams in [`Model::memory_compact`]`().total()`, unit by unit, with the same outputs), or
    /// [`Model::window_memory`]`(steps).total()` to run windows. The state starts at its initial value.
    pub fn new(model: &'m Model<'m>, memory: &'b mut [f32]) -> Result<Self, Error> {
        let needed = model.memory().state;
        if memory.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: memory.len(),
            });
        }
        let got = memory.len();
        let (state, scratch) = memory
            .split_at_mut_checked(needed)
            .ok_or(Error::BufferTooSmall { needed, got })?;
        let mut runtime = Self {
            model,
            state,
            scratch,
            seen: 0,
            fast_activations: false,
        };
        runtime.reset();
        Ok(runtime)
    }

    /// Makes the recurrent cells of a float model use the fast sigmoid and tanh
    /// ([`crate::activation::sigmoid_fast`], [`crate::activation::tanh_fast`], each within a documented
    /// maximum error of the exact function) instead of the exact `libm` ones, which are the default.
    /// Steps and windows both follow the setting; Dense layers and integer-only models are not
    /// affected (the integer path has its own tables). A host runtime with the same setting gives the
    /// same bits as the microcontroller.
    pub fn set_fast_activations(&mut self, fast: bool) {
        self.fast_activations = fast;
    }

    /// Whether the recurrent cells use the fast activations ([`Runtime::set_fast_activations`]).
    pub fn fast_activations(&self) -> bool {
        self.fast_activations
    }

    /// The model this runtime runs.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    /// Returns every state to its initial value (constant initial states, or zeros).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|v| *v = 0.0);
        let model = self.model;
        let integer = model.is_integer();
        for (layer, plan) in model.compact_layers().iter().zip(model.plans()) {
            if let Stage::Recurrent(r) = layer {
                let words = cell::state_words(r.cell, r.hidden as usize);
                let directions = [Some(&r.forward), r.backward.as_ref()];
                for (d, weights) in directions.into_iter().flatten().enumerate() {
                    let offset = plan.state_offset + d * words;
                    if integer {
                        let state = integer::halves_mut(self.state);
                        let slot = state.get_mut(offset..offset + words);
                        if let Some((h, c)) =
                            slot.and_then(|s| s.split_at_mut_checked(r.hidden as usize))
                        {
                            integer::reset(&model.weights(weights), h, c);
                        }
                    } else {
                        let slot = self.state.get_mut(offset..offset + words);
                        if let Some((h, c)) =
                            slot.and_then(|s| s.split_at_mut_checked(r.hidden as usize))
                        {
                            cell::reset(&model.weights(weights), h, c);
                        }
                    }
                }
            }
        }
        self.seen = 0;
    }

    /// Number of `i16` state values of an integer-only model (its state words hold two each).
    fn state_values(&self) -> usize {
        let model = self.model;
        let history = if model.is_streamable() {
            model.step_output_len()
        } else {
            0
        };
        model.recurrent_state() + history
    }

    /// An integer-only model's state as `i16` values (to save across deep sleep); empty for a float
    /// model.
    pub fn state_i16(&self) -> &[i16] {
        if !self.model.is_integer() {
            return &[];
        }
        let values = self.state_values();
        integer::halves(self.state).get(..values).unwrap_or(&[])
    }

    /// Restores a state saved by [`Runtime::state_i16`] from a runtime of the same integer-only model.
    pub fn restore_state_i16(&mut self, state: &[i16]) -> Result<(), Error> {
        if !self.model.is_integer() {
            return Err(Error::NotInteger);
        }
        let values = self.state_values();
        if state.len() != values {
            return Err(Error::StateLength {
                expected: values,
                got: state.len(),
            });
        }
        integer::halves_mut(self.state)
            .iter_mut()
            .zip(state)
            .for_each(|(d, s)| *d = *s);
        self.seen = self.model.step_output_steps();
        Ok(())
    }

    /// The state kept between steps, to save across deep sleep. An integer-only model keeps `i16`
    /// values, two to a word: these words carry their bits (see [`Runtime::state_i16`]), and
    /// [`Runtime::restore_state`] puts them back unchanged.
    pub fn state(&self) -> &[f32] {
        self.state
    }

    /// Restores a state saved by [`Runtime::state`] from a runtime of the same model. A restored
    /// runtime counts as warmed up. A float model's state holding a NaN or an infinity is refused
    /// ([`Error::StateCorrupt`]): a step never leaves one. An integer-only model's words carry `i16`
    /// pairs, whatever `f32` they read as, and are put back unchanged.
    pub fn restore_state(&mut self, state: &[f32]) -> Result<(), Error> {
        if state.len() != self.state.len() {
            return Err(Error::StateLength {
                expected: self.state.len(),
                got: state.len(),
            });
        }
        if !self.model.is_integer() && state.iter().any(|v| !v.is_finite()) {
            return Err(Error::StateCorrupt);
        }
        copy(self.state, state);
        self.seen = self.model.step_output_steps();
        Ok(())
    }

    /// Restores a state from decoded values whose count the caller has checked against the state length.
    pub(crate) fn restore_state_values(&mut self, values: impl Iterator<Item = f32>) {
        self.state.iter_mut().zip(values).for_each(|(d, v)| *d = v);
        self.seen = self.model.step_output_steps();
    }

    /// Feeds one timestep of features and writes the output for the sequence so far:
    /// [`Model::step_output_len`] values.
    ///
    /// On an integer-only (`i8x16`) model the input is quantized to the model's input format (rounded;
    /// NaN becomes 0, ±∞ and values beyond the `i16` range saturate), the step runs in integers, and
    /// the output is converted back to f32.
    pub fn step(&mut self, input: &[f32], output: &mut [f32]) -> Result<Status, Error> {
        if self.model.is_integer() {
            let (in_scale, out_scale) = self.edge_scales();
            let source = Source::Features(input);
            return self.advance_fixed(
                source,
                output.len(),
                |x| quantize_into(x, input, in_scale),
                |y| dequantize_into(output, y, out_scale),
            );
        }
        self.advance(Source::Features(input), output)
    }

    /// Feeds one token id (models whose first layer is an embedding) and writes the output for the
    /// sequence so far.
    pub fn step_token(&mut self, token: u32, output: &mut [f32]) -> Result<Status, Error> {
        let tokens = core::slice::from_ref(&token);
        if self.model.is_integer() {
            let (_, out_scale) = self.edge_scales();
            return self.advance_fixed(
                Source::Tokens(tokens),
                output.len(),
                |_| {},
                |y| dequantize_into(output, y, out_scale),
            );
        }
        self.advance(Source::Tokens(tokens), output)
    }

    /// Runs a whole window of features, `steps × features` values, from the initial state, and writes
    /// [`Model::output_len`]`(steps)` values. Returns the number of output timesteps. An integer-only
    /// model converts at the edges as [`Runtime::step`] does.
    pub fn run_window(&mut self, input: &[f32], output: &mut [f32]) -> Result<usize, Error> {
        if self.model.is_integer() {
            let (in_scale, out_scale) = self.edge_scales();
            return self.window_fixed(
                Source::Features(input),
                output.len(),
                |x| quantize_into(x, input, in_scale),
                |k| input.get(k).map_or(0, |v| quantize_one(*v, in_scale)),
                |y| dequantize_into(output, y, out_scale),
            );
        }
        self.window(Source::Features(input), output)
    }

    /// Runs a whole window of token ids from the initial state; see [`Runtime::run_window`].
    pub fn run_window_tokens(
        &mut self,
        tokens: &[u32],
        output: &mut [f32],
    ) -> Result<usize, Error> {
        if self.model.is_integer() {
            let (_, out_scale) = self.edge_scales();
            return self.window_fixed(
                Source::Tokens(tokens),
                output.len(),
                |_| {},
                |_| 0,
                |y| dequantize_into(output, y, out_scale),
            );
        }
        self.window(Source::Tokens(tokens), output)
    }

    /// Integer-only models: feeds one timestep of `i16` features in the model's input format
    /// ([`crate::format::FixedPoint::input_frac`]) and writes the step's `i16` output in the model's
    /// output format ([`Model::output_frac`]). No floating point is involved.
    pub fn step_i16(&mut self, input: &[i16], output: &mut [i16]) -> Result<Status, Error> {
        if !self.model.is_integer() {
            return Err(Error::NotInteger);
        }
        self.advance_fixed(
            Source::Fixed(input),
            output.len(),
            |x| copy_i16(x, input),
            |y| copy_i16(output, y),
        )
    }

    /// Integer-only models: feeds one token id and writes the step's `i16` output.
    pub fn step_token_i16(&mut self, token: u32, output: &mut [i16]) -> Result<Status, Error> {
        if !self.model.is_integer() {
            return Err(Error::NotInteger);
        }
        self.advance_fixed(
            Source::Tokens(core::slice::from_ref(&token)),
            output.len(),
            |_| {},
            |y| copy_i16(output, y),
        )
    }

    /// Integer-only models: runs a whole window of `i16` features from the initial state; see
    /// [`Runtime::step_i16`] for the formats and [`Runtime::run_window`] for the shapes.
    pub fn run_window_i16(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, Error> {
        if !self.model.is_integer() {
            return Err(Error::NotInteger);
        }
        self.window_fixed(
            Source::Fixed(input),
            output.len(),
            |x| copy_i16(x, input),
            |k| input.get(k).copied().unwrap_or(0),
            |y| copy_i16(output, y),
        )
    }

    /// Integer-only models: runs a whole window of token ids from the initial state, writing `i16`.
    pub fn run_window_tokens_i16(
        &mut self,
        tokens: &[u32],
        output: &mut [i16],
    ) -> Result<usize, Error> {
        if !self.model.is_integer() {
            return Err(Error::NotInteger);
        }
        self.window_fixed(
            Source::Tokens(tokens),
            output.len(),
            |_| {},
            |_| 0,
            |y| copy_i16(output, y),
        )
    }

    /// `2^input_frac` and `2^output_frac` of an integer-only model, for the f32 edges.
    fn edge_scales(&self) -> (f32, f32) {
        let input = self.model.fixed_point().map_or(0, |f| f.input_frac);
        let output = self.model.output_frac().unwrap_or(0);
        let scale = |frac: u8| (1u32 << u32::from(frac).min(31)) as f32;
        (scale(input), scale(output))
    }

    // Not inlined: the float and integer paths each hold a resolved layer, and inlined into one caller
    // their frames would add up.
    #[inline(never)]
    fn advance_fixed(
        &mut self,
        source: Source<'_>,
        output_len: usize,
        fill: impl FnOnce(&mut [i16]),
        emit: impl FnOnce(&[i16]),
    ) -> Result<Status, Error> {
        check_mode_compiled_in(true)?;
        self.check_step(source, output_len)?;
        let input = match source {
            Source::Tokens(ids) => integer::Input::Tokens(ids),
            _ => integer::Input::Features,
        };
        Ok(integer::advance(
            self.model,
            self.state,
            self.scratch,
            &mut self.seen,
            input,
            fill,
            emit,
        ))
    }

    // Not inlined: the float and integer paths each hold a resolved layer, and inlined into one caller
    // their frames would add up.
    #[inline(never)]
    fn window_fixed(
        &mut self,
        source: Source<'_>,
        output_len: usize,
        fill: impl FnOnce(&mut [i16]),
        raw: impl Fn(usize) -> i16,
        emit: impl FnOnce(&[i16]),
    ) -> Result<usize, Error> {
        check_mode_compiled_in(true)?;
        let (steps, out_steps, sequence) = self.check_window(source, output_len)?;
        self.reset();
        let input = match source {
            Source::Tokens(ids) => integer::Input::Tokens(ids),
            _ => integer::Input::Features,
        };
        integer::window(
            self.model,
            self.state,
            self.scratch,
            (steps, sequence),
            input,
            fill,
            raw,
            emit,
        );
        Ok(out_steps)
    }

    fn check_source(&self, source: Source<'_>) -> Result<usize, Error> {
        let model = self.model;
        match (source, model.input().kind) {
            (Source::Features(_) | Source::Fixed(_), crate::format::InputKind::Features(n)) => {
                let n = n as usize;
                let len = source.len();
                if len == 0 || len.checked_rem(n) != Some(0) {
                    return Err(Error::InputLength {
                        expected: n,
                        got: len,
                    });
                }
                // A float model refuses NaN and infinities; an integer-only model reads them by its own
                // policy (NaN as 0, infinities saturated: see `quantize_into`).
                if let Source::Features(x) = source {
                    if !model.is_integer() {
                        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
                            return Err(Error::NonFiniteInput { index });
                        }
                    }
                }
                Ok(len.checked_div(n).unwrap_or(0))
            }
            (Source::Tokens(ids), crate::format::InputKind::Tokens) => {
                if ids.is_empty() {
                    return Err(Error::InputLength {
                        expected: 1,
                        got: 0,
                    });
                }
                if let Some(Layer::Embedding(e)) = model.layers().next() {
                    let vocab = e.table.rows;
                    if let Some(&token) = ids.iter().find(|&&t| t as usize >= vocab) {
                        return Err(Error::TokenOutOfRange {
                            token,
                            vocab: vocab as u32,
                        });
                    }
                }
                Ok(ids.len())
            }
            _ => Err(Error::WrongInputKind),
        }
    }

    /// Checks one streaming step's input, output length and memory.
    fn check_step(&self, source: Source<'_>, output_len: usize) -> Result<(), Error> {
        let model = self.model;
        if !model.is_streamable() {
            return Err(Error::NotStreamable);
        }
        if self.check_source(source)? != 1 {
            return Err(Error::InputLength {
                expected: model.input_width(),
                got: source.len(),
            });
        }
        let expected = model.step_output_len();
        if output_len != expected {
            return Err(Error::OutputLength {
                expected,
                got: output_len,
            });
        }
        // The least a step runs in; with less than `memory()` an integer LSTM steps unit by unit.
        let needed = model.memory_compact().scratch;
        if self.scratch.len() < needed {
            return Err(Error::BufferTooSmall {
                needed: needed + self.state.len(),
                got: self.scratch.len() + self.state.len(),
            });
        }
        Ok(())
    }

    /// Checks a window's input, output length and memory; returns its input and output timesteps and
    /// the words of one sequence buffer ([`Model::window_plan`]).
    fn check_window(
        &self,
        source: Source<'_>,
        output_len: usize,
    ) -> Result<(usize, usize, usize), Error> {
        let model = self.model;
        let steps = self.check_source(source)?;
        let plan = model.window_plan(steps)?;
        let expected = plan.out_steps * model.output_width();
        if output_len != expected {
            return Err(Error::OutputLength {
                expected,
                got: output_len,
            });
        }
        if self.scratch.len() < plan.memory.scratch {
            return Err(Error::BufferTooSmall {
                needed: plan.memory.total(),
                got: self.scratch.len() + self.state.len(),
            });
        }
        Ok((steps, plan.out_steps, plan.sequence))
    }

    // Not inlined: the float and integer paths each hold a resolved layer, and inlined into one caller
    // their frames would add up.
    #[inline(never)]
    fn advance(&mut self, source: Source<'_>, output: &mut [f32]) -> Result<Status, Error> {
        check_mode_compiled_in(false)?;
        let model = self.model;
        self.check_step(source, output.len())?;
        let width = model.max_width();
        let too_small = Error::BufferTooSmall {
            needed: model.memory().scratch + self.state.len(),
            got: self.scratch.len() + self.state.len(),
        };
        let (mut cur, rest) = self.scratch.split_at_mut_checked(width).ok_or(too_small)?;
        let (mut next, cells) = rest.split_at_mut_checked(width).ok_or(too_small)?;
        if let Source::Features(x) = source {
            copy(cur, x);
        }
        let (recurrent_state, history) = self
            .state
            .split_at_mut_checked(model.recurrent_state())
            .ok_or(too_small)?;
        // The compact layers: a step resolves only the tensors it uses, and copies no whole layer.
        for (stage, plan) in model.compact_layers().iter().zip(model.plans()) {
            let x = cur.get(..plan.input_width).unwrap_or(&[]);
            let y = next.get_mut(..plan.output_width).unwrap_or(&mut []);
            match stage {
                Stage::Embedding(e) => {
                    if let Source::Tokens(ids) = source {
                        let token = ids.first().copied().unwrap_or(0) as usize;
                        kernels::row(&model.mat(e.table), token, y);
                    }
                }
                Stage::Recurrent(r) => {
                    let words = cell::state_words(r.cell, r.hidden as usize);
                    let slot = recurrent_state
                        .get_mut(plan.state_offset..plan.state_offset + words)
                        .unwrap_or(&mut []);
                    let (h, c) = slot.split_at_mut((r.hidden as usize).min(slot.len()));
                    let weights = model.weights(&r.forward);
                    cell::step(
                        &cell::CellSpec::of(r).fast(self.fast_activations),
                        &weights,
                        x,
                        h,
                        c,
                        cells,
                    );
                    copy(y, h);
                }
                Stage::Dense(d) => dense(&model.dense(d), x, y),
                // Per step, every timestep is the last one so far.
                Stage::Crop { .. } | Stage::KeepLast { .. } | Stage::LastStep => copy(y, x),
                // Validation marks models with these layers not streamable.
                Stage::SubtractLast | Stage::Residual { .. } => copy(y, x),
            }
            core::mem::swap(&mut cur, &mut next);
        }
        let out_width = model.output_width();
        let last = cur.get(..out_width).unwrap_or(&[]);
        if model.stream_keep().is_some() {
            // The history is a shift register of the last `keep` outputs, oldest first.
            history.copy_within(out_width.min(history.len()).., 0);
            let newest = history.len().saturating_sub(out_width);
            copy(history.get_mut(newest..).unwrap_or(&mut []), last);
        }
        if recurrent_state
            .iter()
            .chain(history.iter())
            .any(|v| !v.is_finite())
        {
            // A NaN or infinity in the state would stay there for good; start over instead.
            self.reset();
            return Err(Error::StateOverflow);
        }
        match model.stream_keep() {
            None => {
                copy(output, last);
                Ok(Status::Ready)
            }
            Some(keep) => {
                copy(output, history);
                self.seen = (self.seen + 1).min(keep);
                Ok(if self.seen == keep {
                    Status::Ready
                } else {
                    Status::Warming {
                        remaining: keep - self.seen,
                    }
                })
            }
        }
    }

    // Not inlined: the float and integer paths each hold a resolved layer, and inlined into one caller
    // their frames would add up.
    #[inline(never)]
    fn window(&mut self, source: Source<'_>, output: &mut [f32]) -> Result<usize, Error> {
        check_mode_compiled_in(false)?;
        let model = self.model;
        let (steps, out_steps, sequence) = self.check_window(source, output.len())?;
        self.reset();
        // `check_window` has checked the memory; the error is only formed should a split fail.
        let got = self.scratch.len() + self.state.len();
        let too_small = || Error::BufferTooSmall {
            needed: model.window_memory(steps).map_or(0, |m| m.total()),
            got,
        };
        let (mut cur, rest) = self
            .scratch
            .split_at_mut_checked(sequence)
            .ok_or_else(too_small)?;
        let (mut next, cells) = rest.split_at_mut_checked(sequence).ok_or_else(too_small)?;
        if let Source::Features(x) = source {
            copy(cur, x);
        }
        let mut t = steps;
        // The compact layers: each arm resolves only the tensors it uses (cheap for tiny models run
        // window by window, such as a forecaster's push).
        for (stage, plan) in model.compact_layers().iter().zip(model.plans()) {
            let (w_in, w_out) = (plan.input_width, plan.output_width);
            let x = cur.get(..t * w_in).unwrap_or(&[]);
            match stage {
                Stage::Embedding(e) => {
                    if let Source::Tokens(ids) = source {
                        let table = model.mat(e.table);
                        // Row by row through `get`: a zip of `chunks_exact` keeps a division by the
                        // chunk size that the compiler cannot prove non-zero (a panic path).
                        for (k, &token) in ids.iter().enumerate() {
                            if let Some(row) = next.get_mut(k * w_out..(k + 1) * w_out) {
                                kernels::row(&table, token as usize, row);
                            }
                        }
                    }
                }
                Stage::Recurrent(r) => {
                    let slot = self.state.get_mut(plan.state_offset..).unwrap_or(&mut []);
                    let fast = self.fast_activations;
                    // What the input sequence leaves free of its buffer holds a block of input
                    // projections, so they take no memory of their own.
                    let (x, spare) = cur.split_at_mut((t * w_in).min(cur.len()));
                    let buffers = WindowBuffers {
                        out: next,
                        scratch: cells,
                        spare,
                        state: slot,
                    };
                    recurrent_window(model, r, fast, x, t, w_in, buffers);
                    if !r.return_sequences {
                        t = 1;
                    }
                }
                Stage::Dense(d) => {
                    let d = model.dense(d);
                    for k in 0..t {
                        let x_row = x.get(k * w_in..(k + 1) * w_in).unwrap_or(&[]);
                        if let Some(y_row) = next.get_mut(k * w_out..(k + 1) * w_out) {
                            dense(&d, x_row, y_row);
                        }
                    }
                }
                Stage::Crop { start, end } => {
                    let keep = t.saturating_sub(*start as usize + *end as usize);
                    copy(next, x.get(*start as usize * w_in..).unwrap_or(&[]));
                    t = keep;
                }
                Stage::KeepLast { steps: keep } => {
                    let keep = *keep as usize;
                    let from = t.saturating_sub(keep) * w_in;
                    copy(next, x.get(from..).unwrap_or(&[]));
                    t = keep;
                }
                Stage::LastStep => {
                    copy(next, x.get(t.saturating_sub(1) * w_in..).unwrap_or(&[]));
                    t = 1;
                }
                Stage::SubtractLast => {
                    let last = x.get(t.saturating_sub(1) * w_in..).unwrap_or(&[]);
                    // Row by row through `get`, as for the embedding above.
                    for k in 0..t {
                        let x_row = x.get(k * w_in..(k + 1) * w_in).unwrap_or(&[]);
                        if let Some(y_row) = next.get_mut(k * w_in..(k + 1) * w_in) {
                            y_row
                                .iter_mut()
                                .zip(x_row.iter().zip(last))
                                .for_each(|(y, (x, l))| *y = x - l);
                        }
                    }
                }
                Stage::Residual { .. } => {
                    copy(next, x);
                    if let (Source::Features(raw), Layer::Residual(r)) =
                        (source, model.resolve(stage))
                    {
                        let width = model.input_width();
                        residual(
                            &r,
                            raw,
                            steps,
                            width,
                            next.get_mut(..t * w_in).unwrap_or(&mut []),
                            cells,
                        );
                    }
                }
            }
            core::mem::swap(&mut cur, &mut next);
        }
        copy(output, cur);
        Ok(out_steps)
    }
}

/// The buffers a windowed recurrent layer works in.
struct WindowBuffers<'a> {
    /// Each output row (or the one final row).
    out: &'a mut [f32],
    /// The cell's scratch.
    scratch: &'a mut [f32],
    /// Free space for a block of input projections (may be too small for one).
    spare: &'a mut [f32],
    /// This layer's forward state, then its backward state.
    state: &'a mut [f32],
}

/// Runs a recurrent layer over a packed `steps × input` window, writing each output row (or the one
/// final row) into `out`. `state` starts with this layer's forward state, then its backward state.
/// Where `spare` holds [`cell::PROJECTION_BLOCK`] input projections, they are computed a block of
/// timesteps at a time, in one pass over the input kernel (the same bits as one at a time).
fn recurrent_window(
    model: &Model<'_>,
    r: &Recurrent<u8>,
    fast_activations: bool,
    input: &[f32],
    steps: usize,
    width: usize,
    buffers: WindowBuffers<'_>,
) {
    let WindowBuffers {
        out,
        scratch,
        spare,
        state,
    } = buffers;
    let spec = cell::CellSpec::of(r).fast(fast_activations);
    let hidden = r.hidden as usize;
    let words = cell::state_words(r.cell, hidden);
    let rows = r.cell.gates() * hidden;
    let out_width = match r.direction {
        Direction::Bidirectional(Merge::Concat) => 2 * hidden,
        _ => hidden,
    };
    // A block of projections in `spare`, else one at a time in the cell's own scratch.
    let (block, scratch) = match spare.get_mut(..cell::PROJECTION_BLOCK * rows) {
        Some(block) => (block, scratch),
        None => {
            let (pre, extra) = scratch.split_at_mut(rows.min(scratch.len()));
            (pre, extra)
        }
    };
    let block_steps = (block.len() / rows.max(1)).max(1);
    let passes = [
        (Some(&r.forward), matches!(r.direction, Direction::Reverse)),
        (r.backward.as_ref(), true),
    ];
    for (pass, (weights, reversed)) in passes.into_iter().enumerate() {
        let Some(weights) = weights else { continue };
        let weights = &model.weights(weights);
        let slot = state
            .get_mut(pass * words..(pass + 1) * words)
            .unwrap_or(&mut []);
        let (h, c) = slot.split_at_mut(hidden.min(slot.len()));
        let time = |k: usize| if reversed { steps - 1 - k } else { k };
        let row = |t: usize| input.get(t * width..(t + 1) * width).unwrap_or(&[]);
        let mut first = 0;
        while first < steps {
            let count = block_steps.min(steps - first);
            let xs: [&[f32]; cell::PROJECTION_BLOCK] =
                core::array::from_fn(|j| if j < count { row(time(first + j)) } else { &[] });
            cell::project_inputs(weights, xs.get(..count).unwrap_or(&[]), block);
            for (j, pre) in block.chunks_mut(rows.max(1)).take(count).enumerate() {
                let t = time(first + j);
                cell::step_projected(&spec, weights, pre, scratch, h, c);
                if r.return_sequences {
                    let row = out
                        .get_mut(t * out_width..(t + 1) * out_width)
                        .unwrap_or(&mut []);
                    merge(r.direction, pass, row, h);
                }
            }
            first += count;
        }
        if !r.return_sequences {
            merge(
                r.direction,
                pass,
                out.get_mut(..out_width).unwrap_or(&mut []),
                h,
            );
        }
    }
}

/// Writes one direction's output into a row: the first pass writes, the backward pass merges.
fn merge(direction: Direction, pass: usize, row: &mut [f32], h: &[f32]) {
    match (direction, pass) {
        (Direction::Bidirectional(Merge::Concat), _) => {
            let hidden = h.len();
            copy(row.get_mut(pass * hidden..).unwrap_or(&mut []), h);
        }
        (_, 0) => copy(row, h),
        (Direction::Bidirectional(Merge::Sum), _) => add(row, h),
        (Direction::Bidirectional(Merge::Mul), _) => {
            row.iter_mut().zip(h).for_each(|(v, h)| *v *= h)
        }
        (Direction::Bidirectional(Merge::Ave), _) => {
            row.iter_mut().zip(h).for_each(|(v, h)| *v = (*v + h) / 2.0)
        }
        _ => {}
    }
}

/// forecast[s, j] += l_j + Σ_t skip[s, t] · (x_j[t] − l_j) + skip_bias[s], where `x_j` is input feature
/// `inputs[j]` over the raw window and `l_j` its last value when `add_last` (else 0). With per-target
/// maps, `skip` and `skip_bias` are target j's block of `horizon` rows.
fn residual(
    r: &Residual<Mat<'_>>,
    raw: &[f32],
    steps: usize,
    width: usize,
    forecast: &mut [f32],
    scratch: &mut [f32],
) {
    let targets = r.inputs.len();
    let values = forecast.len();
    let horizon = values / targets.max(1);
    let (series, projected) = scratch.split_at_mut(steps.min(scratch.len()));
    for (j, &feature) in r.inputs.iter().enumerate() {
        let feature = feature as usize;
        let column = raw.iter().skip(feature).step_by(width.max(1));
        let last = if r.add_last {
            raw.get((steps.saturating_sub(1)) * width + feature)
                .copied()
                .unwrap_or(0.0)
        } else {
            0.0
        };
        let outputs = forecast.iter_mut().skip(j).step_by(targets.max(1));
        match &r.skip {
            Some(skip) => {
                series
                    .iter_mut()
                    .zip(column)
                    .for_each(|(s, x)| *s = x - last);
                // Validation allows `horizon` rows (shared) or `horizon·targets` (target j's block).
                let block = if skip.rows == values { j } else { 0 };
                let projected = projected.get_mut(..horizon).unwrap_or(&mut []);
                matvec(&skip.rows(block * horizon, horizon), series, projected);
                if let Some(b) = &r.skip_bias {
                    let b = b.f32();
                    add(projected, b.get(block * horizon..).unwrap_or(&[]));
                }
                for (y, p) in outputs.zip(projected.iter()) {
                    *y += last + p;
                }
            }
            None => outputs.for_each(|y| *y += last),
        }
    }
}

/// y = act(W x + b)
fn dense(d: &Dense<Mat<'_>>, x: &[f32], y: &mut [f32]) {
    matvec(&d.weight, x, y);
    if let Some(b) = &d.bias {
        add(y, b.f32());
    }
    apply(d.activation, y);
}

impl Source<'_> {
    /// Number of values (features or token ids).
    fn len(&self) -> usize {
        match self {
            Source::Features(x) => x.len(),
            Source::Fixed(x) => x.len(),
            Source::Tokens(t) => t.len(),
        }
    }
}

/// Quantizes f32 features into an integer model's input format: `round(x × scale)`, NaN → 0, ±∞ and
/// values beyond the `i16` range saturate (Rust's float-to-int `as` saturates and maps NaN to 0).
fn quantize_into(dst: &mut [i16], src: &[f32], scale: f32) {
    dst.iter_mut()
        .zip(src)
        .for_each(|(d, s)| *d = quantize_one(*s, scale));
}

/// One value of [`quantize_into`].
#[inline]
fn quantize_one(value: f32, scale: f32) -> i16 {
    libm::roundf(value * scale) as i16
}

/// Converts an integer model's `i16` output to f32: `y / scale` (exact).
fn dequantize_into(dst: &mut [f32], src: &[i16], scale: f32) {
    dst.iter_mut()
        .zip(src)
        .for_each(|(d, s)| *d = f32::from(*s) / scale);
}

/// Copies the common prefix of two `i16` slices.
#[inline]
fn copy_i16(dst: &mut [i16], src: &[i16]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}

/// Copies the common prefix of two slices.
#[inline]
fn copy(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}
