//! Integer-only inference (`i8x16`): the same layers and drivers as the f32 path, in fixed point.
//!
//! Formats (fraction bits `f`: a value `q` stands for `q / 2^f`):
//! - activations, states and outputs are `i16`, in the formats the blob's [`FixedLayer`] names;
//! - a weight row's `i32` dot product is requantized by its row's `(multiplier, shift)` pair straight
//!   into the format it feeds: Q·.12 for a gate's pre-activation ([`PRE_FRAC`]), the output format for
//!   a Dense layer without sigmoid or tanh;
//! - biases are `i32` in that same format, peepholes `i32` in Q·.16 ([`PEEPHOLE_FRAC`]);
//! - sigmoid and tanh read Q·.12 and give Q·.15 ([`fixed::activate`]); gate values are Q·.15 in `i32`.
//!
//! Every product is formed in `i64` and every narrowing saturates ([`fixed::requantize_i16`]), so no
//! value wraps around. Rounding is to nearest everywhere, so a state held constant by the f32 model is
//! not pulled towards zero by truncation. Nothing here touches a float: built for a core without an FPU,
//! it links no soft-float routine (`tests/nofloat`).

use crate::cell::{self, CellSpec, Mat, Values};
use crate::format::{
    Activation, Cell, CellWeights, Dense, Direction, FixedLayer, Layer, Merge, Recurrent,
    PEEPHOLE_FRAC, PRE_FRAC,
};
use crate::kernels::{self, fixed};
use crate::model::{Model, Stage};
use crate::runtime::Status;

/// Q·.15, the format of a gate's value.
const GATE_FRAC: u32 = 15;
/// 1.0 in Q·.15.
const ONE: i32 = 1 << GATE_FRAC;

/// Views `f32` words as `i16` halves: integer models keep two `i16` values in each word of the
/// caller's memory.
pub(crate) fn halves_mut(words: &mut [f32]) -> &mut [i16] {
    // SAFETY: i16 has no invalid bit patterns and an alignment (2) that divides f32's (4), so the prefix
    // is empty and the view covers exactly the words' bytes for the borrow's lifetime.
    let (prefix, halves, _) = unsafe { words.align_to_mut::<i16>() };
    debug_assert!(prefix.is_empty());
    halves
}

/// Views `f32` words as `i16` halves, read-only.
pub(crate) fn halves(words: &[f32]) -> &[i16] {
    // SAFETY: as in `halves_mut`, read-only.
    let (prefix, halves, _) = unsafe { words.align_to::<i16>() };
    debug_assert!(prefix.is_empty());
    halves
}

/// Views `f32` words as `i32`s: gate sums take one word each.
pub(crate) fn ints_mut(words: &mut [f32]) -> &mut [i32] {
    // SAFETY: i32 has no invalid bit patterns and the size and alignment of f32, so the view covers
    // exactly the same words.
    let (prefix, ints, _) = unsafe { words.align_to_mut::<i32>() };
    debug_assert!(prefix.is_empty());
    ints
}

/// Sets one direction's state to its initial value (constant, or zeros).
pub(crate) fn reset(weights: &CellWeights<Mat<'_>>, h: &mut [i16], c: &mut [i16]) {
    let fill = |dst: &mut [i16], init: &Option<Mat<'_>>| match init {
        Some(init) => dst.iter_mut().zip(init.i16()).for_each(|(d, v)| *d = *v),
        None => dst.iter_mut().for_each(|d| *d = 0),
    };
    fill(h, &weights.initial_h);
    fill(c, &weights.initial_c);
}

/// Where the integer drivers read one step's or window's input from.
#[derive(Clone, Copy)]
pub(crate) enum Input<'x> {
    /// Features already written into the first activation buffer by the caller's `fill`.
    Features,
    /// Token ids, looked up in the first layer's embedding.
    Tokens(&'x [u32]),
}

/// One streaming step of an integer model: `fill` writes the input features (`i16`, in the model's
/// input format) into the first activation buffer, `emit` receives the step's output. The caller has
/// checked every length against the model.
pub(crate) fn advance(
    model: &Model<'_>,
    state: &mut [f32],
    scratch: &mut [f32],
    seen: &mut usize,
    input: Input<'_>,
    fill: impl FnOnce(&mut [i16]),
    emit: impl FnOnce(&[i16]),
) -> Status {
    let width_words = model.max_width().div_ceil(2);
    let (cur, rest) = scratch.split_at_mut(width_words.min(scratch.len()));
    let (next, cells) = rest.split_at_mut(width_words.min(rest.len()));
    let (mut cur, mut next, cells) = (halves_mut(cur), halves_mut(next), ints_mut(cells));
    if let Input::Features = input {
        fill(cur);
    }
    let state = halves_mut(state);
    let (recurrent_state, rest) = state.split_at_mut(model.recurrent_state().min(state.len()));
    let history = rest.get_mut(..model.step_output_len()).unwrap_or(&mut []);
    let formats = model.fixed_point().map_or(&[][..], |f| &f.layers[..]);
    // The compact layers: a step resolves only the tensors it uses, and copies no whole layer.
    for ((stage, plan), format) in model
        .compact_layers()
        .iter()
        .zip(model.plans())
        .zip(formats)
    {
        let x = cur.get(..plan.input_width).unwrap_or(&[]);
        let y = next.get_mut(..plan.output_width).unwrap_or(&mut []);
        match stage {
            Stage::Embedding(e) => {
                if let Input::Tokens(ids) = input {
                    let token = ids.first().copied().unwrap_or(0) as usize;
                    kernels::row_q(&model.mat(e.table), token, y);
                }
            }
            Stage::Recurrent(r) => {
                let words = cell::state_words(r.cell, r.hidden as usize);
                let slot = recurrent_state
                    .get_mut(plan.state_offset..plan.state_offset + words)
                    .unwrap_or(&mut []);
                let (h, c) = slot.split_at_mut((r.hidden as usize).min(slot.len()));
                let weights = model.weights(&r.forward);
                step(&CellSpec::of(r), &weights, format, x, h, c, cells);
                merge(r.direction, format, 0, y, h);
            }
            Stage::Dense(d) => dense(&model.dense(d), format, x, y),
            Stage::Crop { .. } | Stage::KeepLast { .. } | Stage::LastStep => copy(y, x),
            // Windowed only: validation marks models with these layers not streamable.
            Stage::SubtractLast | Stage::Residual { .. } => {}
        }
        core::mem::swap(&mut cur, &mut next);
    }
    let out_width = model.output_width();
    let last = cur.get(..out_width).unwrap_or(&[]);
    match model.stream_keep() {
        None => {
            emit(last);
            Status::Ready
        }
        Some(keep) => {
            // The history is a shift register of the last `keep` outputs, oldest first.
            history.copy_within(out_width.min(history.len()).., 0);
            let newest = history.len().saturating_sub(out_width);
            copy(history.get_mut(newest..).unwrap_or(&mut []), last);
            emit(history);
            *seen = (*seen + 1).min(keep);
            if *seen == keep {
                Status::Ready
            } else {
                Status::Warming {
                    remaining: keep - *seen,
                }
            }
        }
    }
}

/// A whole window of an integer model from the state the caller has reset: `fill` writes the
/// `steps × features` input into the first sequence buffer, `emit` receives the output. `raw(k)` is value
/// `k` of that same input (in the input format), which a [`Layer::Residual`] reads back after the layers
/// before it have overwritten the buffers. `sequence` is the words of each of the two sequence buffers
/// ([`Model::window_plan`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn window(
    model: &Model<'_>,
    state: &mut [f32],
    scratch: &mut [f32],
    (steps, sequence): (usize, usize),
    input: Input<'_>,
    fill: impl FnOnce(&mut [i16]),
    raw: impl Fn(usize) -> i16,
    emit: impl FnOnce(&[i16]),
) {
    let (cur, rest) = scratch.split_at_mut(sequence.min(scratch.len()));
    let (next, cells) = rest.split_at_mut(sequence.min(rest.len()));
    let (mut cur, mut next, cells) = (halves_mut(cur), halves_mut(next), ints_mut(cells));
    if let Input::Features = input {
        fill(cur);
    }
    let state = halves_mut(state);
    let fixed = model.fixed_point();
    let formats = fixed.map_or(&[][..], |f| &f.layers[..]);
    let input_frac = u32::from(fixed.map_or(0, |f| f.input_frac));
    // Format of the values entering the current layer.
    let mut frac = input_frac;
    let mut t = steps;
    for ((layer, plan), format) in model.layers().zip(model.plans()).zip(formats) {
        let (w_in, w_out) = (plan.input_width, plan.output_width);
        let x = cur.get(..t * w_in).unwrap_or(&[]);
        match &layer {
            Layer::Embedding(e) => {
                if let Input::Tokens(ids) = input {
                    // Row by row through `get`: a zip of `chunks_exact` keeps a division by the chunk
                    // size that the compiler cannot prove non-zero (a panic path).
                    for (k, &token) in ids.iter().enumerate() {
                        if let Some(row) = next.get_mut(k * w_out..(k + 1) * w_out) {
                            kernels::row_q(&e.table, token as usize, row);
                        }
                    }
                }
            }
            Layer::Recurrent(r) => {
                let slot = state.get_mut(plan.state_offset..).unwrap_or(&mut []);
                recurrent_window(r, format, x, t, w_in, next, cells, slot);
                if !r.return_sequences {
                    t = 1;
                }
            }
            Layer::Dense(d) => {
                for k in 0..t {
                    let x_row = x.get(k * w_in..(k + 1) * w_in).unwrap_or(&[]);
                    if let Some(y_row) = next.get_mut(k * w_out..(k + 1) * w_out) {
                        dense(d, format, x_row, y_row);
                    }
                }
            }
            Layer::Crop { start, end } => {
                let keep = t.saturating_sub(*start as usize + *end as usize);
                copy(next, x.get(*start as usize * w_in..).unwrap_or(&[]));
                t = keep;
            }
            Layer::KeepLast { steps: keep } => {
                let keep = *keep as usize;
                copy(next, x.get(t.saturating_sub(keep) * w_in..).unwrap_or(&[]));
                t = keep;
            }
            Layer::SubtractLast => {
                subtract_last(x, t, w_in, frac, u32::from(format.output_frac), next)
            }
            Layer::Residual(r) => {
                let forecast = (x, frac);
                let raw: (&dyn Fn(usize) -> i16, _, _, _) =
                    (&raw, steps, model.input_width(), input_frac);
                residual(r, forecast, raw, format, next, cells);
            }
            Layer::LastStep => {
                copy(next, x.get(t.saturating_sub(1) * w_in..).unwrap_or(&[]));
                t = 1;
            }
        }
        frac = u32::from(format.output_frac);
        core::mem::swap(&mut cur, &mut next);
    }
    emit(cur.get(..t * model.output_width()).unwrap_or(&[]));
}

/// Window normalisation: `y[t, f] = x[t, f] − x[T−1, f]`, from the input format `from` into the
/// layer's output format `to` (the difference is formed in `i32`, so only the narrowing saturates).
fn subtract_last(x: &[i16], steps: usize, width: usize, from: u32, to: u32, y: &mut [i16]) {
    let last = x.get(steps.saturating_sub(1) * width..).unwrap_or(&[]);
    // Row by row through `get`, as for the embedding above.
    for k in 0..steps {
        let x_row = x.get(k * width..(k + 1) * width).unwrap_or(&[]);
        if let Some(y_row) = y.get_mut(k * width..(k + 1) * width) {
            y_row
                .iter_mut()
                .zip(x_row.iter().zip(last))
                .for_each(|(y, (x, l))| {
                    *y = fixed::requantize_i16(i64::from(*x) - i64::from(*l), from, to)
                });
        }
    }
}

/// `y[s, j] = forecast[s, j] + l_j + Σ_t skip[s, t] · (x_j[t] − l_j) + skip_bias[s]` in integers (see
/// [`crate::format::Residual`]): the forecast arrives in its own format, the raw window `x` in the model's
/// input format; each skip row's pair takes `Σ_t skip[s, t] · (x_j[t] − l_j)` (input format) into the
/// layer's output format, in which the skip bias is stored. Every term is summed in `i64` and narrowed
/// once. `scratch` holds the window's deviations (`T` values) and one target's projection (`horizon`).
fn residual(
    r: &crate::format::Residual<Mat<'_>>,
    (forecast, forecast_frac): (&[i16], u32),
    (raw, steps, width, input_frac): (&dyn Fn(usize) -> i16, usize, usize, u32),
    format: &FixedLayer,
    y: &mut [i16],
    scratch: &mut [i32],
) {
    let of = u32::from(format.output_frac);
    let targets = r.inputs.len().max(1);
    let values = forecast.len();
    let horizon = values / targets;
    let (series, projected) = scratch.split_at_mut(steps.min(scratch.len()));
    let projected = projected.get_mut(..horizon).unwrap_or(&mut []);
    let bias = r.skip_bias.as_ref().map_or(&[][..], |b| b.i32());
    for (j, &feature) in r.inputs.iter().enumerate() {
        let feature = feature as usize;
        let last = if r.add_last {
            i32::from(raw(steps.saturating_sub(1) * width + feature))
        } else {
            0
        };
        projected.iter_mut().for_each(|p| *p = 0);
        if let Some(skip) = &r.skip {
            series
                .iter_mut()
                .enumerate()
                .for_each(|(t, s)| *s = i32::from(raw(t * width + feature)) - last);
            // Validation allows `horizon` rows (shared) or `horizon·targets` (target j's block).
            let block = if skip.rows == values { j } else { 0 };
            for (s, p) in projected.iter_mut().enumerate() {
                let row = block * horizon + s;
                let b = bias.get(row).copied().unwrap_or(0);
                *p = row_dot(skip, row, series).saturating_add(b);
            }
        }
        let last = i64::from(fixed::requantize(i64::from(last), input_frac, of));
        let outputs = y.iter_mut().zip(forecast).skip(j).step_by(targets);
        for (s, (y, f)) in outputs.enumerate() {
            // Without skip weights validation reserves no scratch: the projection is 0.
            let p = i64::from(projected.get(s).copied().unwrap_or(0));
            let f = i64::from(fixed::requantize(i64::from(*f), forecast_frac, of));
            *y = fixed::requantize_i16(f + last + p, of, of);
        }
    }
}

/// Row `row` of an integer-only matrix times a vector of `i16` or `i32` values, requantized by the
/// row's pair. Each value is taken within ±65535 (what its callers pass: `i16` values, and the skip
/// path's differences of two of them), so each product with an int8 or int16 weight is exact in `i32`
/// (`32768 × 65535 < 2^31`: one multiply, no 64-bit product on Armv6-M), and their sum over any slice
/// is exact in `i64` (at most 2^30 terms of at most 2^31). The sum is rescaled as `i128` would
/// ([`fixed::rescale_wide`]), so nothing wraps for any row length or value.
fn row_dot<T: Copy + Into<i32>>(w: &Mat<'_>, row: usize, x: &[T]) -> i32 {
    let term = |w: i32, x: T| i64::from(w * x.into().clamp(-65535, 65535));
    let one = w.rows(row, 1);
    let (acc, pair) = match one.values {
        Values::I8Requant { values, requant } => (
            values
                .iter()
                .zip(x)
                .fold(0i64, |acc, (&w, &x)| acc + term(i32::from(w as i8), x)),
            requant,
        ),
        Values::I16Requant { values, requant } => (
            values
                .iter()
                .zip(x)
                .fold(0i64, |acc, (&w, &x)| acc + term(i32::from(w), x)),
            requant,
        ),
        _ => return 0,
    };
    let multiplier = pair.first().copied().unwrap_or(0);
    let shift = pair.get(1).copied().unwrap_or(1);
    fixed::rescale_wide(acc, multiplier, shift)
}

/// Runs a recurrent layer over a packed `steps × input` window (see the f32 driver in
/// [`crate::runtime`]).
#[allow(clippy::too_many_arguments)]
fn recurrent_window(
    r: &Recurrent<Mat<'_>>,
    format: &FixedLayer,
    input: &[i16],
    steps: usize,
    width: usize,
    out: &mut [i16],
    scratch: &mut [i32],
    state: &mut [i16],
) {
    let hidden = r.hidden as usize;
    let words = cell::state_words(r.cell, hidden);
    let out_width = match r.direction {
        Direction::Bidirectional(Merge::Concat) => 2 * hidden,
        _ => hidden,
    };
    let passes = [
        (Some(&r.forward), matches!(r.direction, Direction::Reverse)),
        (r.backward.as_ref(), true),
    ];
    for (pass, (weights, reversed)) in passes.into_iter().enumerate() {
        let Some(weights) = weights else { continue };
        let slot = state
            .get_mut(pass * words..(pass + 1) * words)
            .unwrap_or(&mut []);
        let (h, c) = slot.split_at_mut(hidden.min(slot.len()));
        for k in 0..steps {
            let t = if reversed { steps - 1 - k } else { k };
            let x = input.get(t * width..(t + 1) * width).unwrap_or(&[]);
            step(&CellSpec::of(r), weights, format, x, h, c, scratch);
            if r.return_sequences {
                let row = out
                    .get_mut(t * out_width..(t + 1) * out_width)
                    .unwrap_or(&mut []);
                merge(r.direction, format, pass, row, h);
            }
        }
        if !r.return_sequences {
            let row = out.get_mut(..out_width).unwrap_or(&mut []);
            merge(r.direction, format, pass, row, h);
        }
    }
}

/// Writes one direction's state `h` (state format) into an output row (output format). A bidirectional
/// layer that sums, multiplies or averages keeps the first pass in the state format, and the second
/// pass merges both into the output format.
fn merge(direction: Direction, format: &FixedLayer, pass: usize, row: &mut [i16], h: &[i16]) {
    let (sf, of) = (u32::from(format.state_frac), u32::from(format.output_frac));
    let hidden = h.len();
    let combine = |row: &mut [i16], f: &dyn Fn(i64, i64) -> i16| {
        row.iter_mut()
            .zip(h)
            .for_each(|(v, h)| *v = f(i64::from(*v), i64::from(*h)));
    };
    match (direction, pass) {
        (Direction::Bidirectional(Merge::Concat), _) => {
            let row = row.get_mut(pass * hidden..).unwrap_or(&mut []);
            row.iter_mut()
                .zip(h)
                .for_each(|(v, h)| *v = fixed::requantize_i16(i64::from(*h), sf, of));
        }
        (Direction::Bidirectional(_), 0) => copy(row, h),
        (_, 0) if sf == of => copy(row, h),
        (_, 0) => row
            .iter_mut()
            .zip(h)
            .for_each(|(v, h)| *v = fixed::requantize_i16(i64::from(*h), sf, of)),
        (Direction::Bidirectional(Merge::Sum), _) => {
            combine(row, &|a, b| fixed::requantize_i16(a + b, sf, of))
        }
        (Direction::Bidirectional(Merge::Mul), _) => {
            combine(row, &|a, b| fixed::requantize_i16(a * b, 2 * sf, of))
        }
        (Direction::Bidirectional(Merge::Ave), _) => {
            combine(row, &|a, b| fixed::requantize_i16(a + b, sf + 1, of))
        }
        _ => {}
    }
}

/// y = act(W x + b), each row requantized into the pre-activation format (Q·.12 before sigmoid, tanh
/// or softmax, else the output format) and narrowed to the output format with saturation.
fn dense(d: &Dense<Mat<'_>>, format: &FixedLayer, x: &[i16], y: &mut [i16]) {
    let of = u32::from(format.output_frac);
    let bias = d.bias.as_ref().map_or(&[][..], |b| b.i32());
    if d.activation == Activation::Softmax {
        softmax(d, of, bias, x, y);
        return;
    }
    rows_map(&d.weight, x, y, |row, sum| {
        dense_output(d.activation, of, bias, row, sum)
    });
}

/// One Dense output from its row's requantized sum: bias, activation, narrowing to the output format.
#[inline]
fn dense_output(activation: Activation, of: u32, bias: &[i32], row: usize, sum: i32) -> i16 {
    let pre = sum.saturating_add(bias.get(row).copied().unwrap_or(0));
    let value = match activation {
        Activation::Sigmoid | Activation::Tanh => {
            return fixed::requantize_i16(
                i64::from(fixed::activate(activation, pre)),
                GATE_FRAC,
                of,
            )
        }
        Activation::Relu => pre.max(0),
        _ => pre,
    };
    fixed::saturate_i16(value)
}

/// y = softmax(W x + b) without a buffer of sums: one pass finds the largest pre-activation, a second
/// writes each `e^(pre − max)` (Q0.15, within `i16`), a third divides by their sum
/// ([`fixed::softmax`] does the same over a buffer).
fn softmax(d: &Dense<Mat<'_>>, of: u32, bias: &[i32], x: &[i16], y: &mut [i16]) {
    let pre = |row: usize, sum: i32| sum.saturating_add(bias.get(row).copied().unwrap_or(0));
    let mut max = i32::MIN;
    rows_map(&d.weight, x, y, |row, sum| {
        max = max.max(pre(row, sum));
        0
    });
    let mut total = 0i32;
    rows_map(&d.weight, x, y, |row, sum| {
        let e = fixed::exp_nonpositive(pre(row, sum).saturating_sub(max));
        total = total.saturating_add(i32::from(e));
        e
    });
    if total > 0 {
        y.iter_mut().for_each(|v| {
            let q = (i64::from(*v) * 32768 + i64::from(total / 2)) / i64::from(total);
            *v = fixed::requantize_i16(q.min(32767), GATE_FRAC, of);
        });
    }
}

/// `y_r = f(r, Σ_j w_rj x_j requantized)` for int8 or (the converter's choice for few columns) int16
/// weights: the int16 rows go one at a time through [`row_dot`].
fn rows_map(w: &Mat<'_>, x: &[i16], y: &mut [i16], mut f: impl FnMut(usize, i32) -> i16) {
    if let Values::I16Requant { .. } = w.values {
        y.iter_mut()
            .enumerate()
            .for_each(|(row, out)| *out = f(row, row_dot(w, row, x)));
    } else {
        kernels::matvec_q_map(w, x, y, f);
    }
}

/// Advances one direction by one timestep: reads `x`, updates `h` (and `c` for an LSTM) in place.
/// `scratch` holds at least [`cell::scratch_words`] values.
fn step(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    format: &FixedLayer,
    x: &[i16],
    h: &mut [i16],
    c: &mut [i16],
    scratch: &mut [i32],
) {
    let hidden = h.len();
    #[cfg(feature = "lstm")]
    if let Cell::Lstm { input_forget } = layer.cell {
        if scratch.len() < layer.cell.gates() * hidden {
            // The caller gave the compact memory (`Model::memory_compact`): unit by unit.
            let h_new = scratch.get_mut(..hidden).unwrap_or(&mut []);
            return lstm_by_unit(layer, weights, format, input_forget, x, h, c, h_new);
        }
    }
    let (pre, extra) = scratch.split_at_mut(scratch.len().min(layer.cell.gates() * hidden));
    // pre = W x + b, the input projection of every gate, in Q·.12.
    match &weights.bias {
        Some(bias) => kernels::matvec_q_bias(&weights.kernel, x, bias.i32(), pre),
        None => kernels::matvec_q(&weights.kernel, x, pre),
    }
    let clip = (format.clip > 0).then_some(format.clip);
    let sf = u32::from(format.state_frac);
    match layer.cell {
        #[cfg(feature = "simple-rnn")]
        Cell::SimpleRnn => {
            // h' = act(W x + b + R h)
            kernels::matvec_q_add(&weights.recurrent, h, pre);
            clamp(pre, clip);
            h.iter_mut().zip(pre.iter()).for_each(|(h, p)| {
                let a = fixed::activate(layer.activation, *p);
                *h = fixed::requantize_i16(i64::from(a), GATE_FRAC, sf);
            });
        }
        #[cfg(feature = "lstm")]
        Cell::Lstm { input_forget } => lstm(layer, weights, format, input_forget, pre, h, c),
        #[cfg(feature = "gru")]
        Cell::Gru { reset_after } => gru(layer, weights, format, reset_after, pre, extra, h),
        // Model::open refuses a layer whose cell is compiled out, so no step reaches this.
        #[cfg(not(all(feature = "lstm", feature = "gru", feature = "simple-rnn")))]
        _ => {}
    }
}

/// The least scratch of one integer step, in 4-byte words ([`crate::Model::memory_compact`]): given only
/// this, the LSTM step runs unit by unit ([`lstm_by_unit`]) and keeps just the new `h`, one word per
/// unit (`4·H` bytes); the SimpleRNN step needs its `H` sums anyway; the GRU keeps the gates' sums, as
/// with the full memory ([`cell::scratch_words`]).
pub(crate) fn compact_scratch_words(cell: Cell, hidden: usize) -> usize {
    match cell {
        Cell::Lstm { .. } | Cell::SimpleRnn => hidden,
        Cell::Gru { .. } => cell::scratch_words(cell, hidden),
    }
}

/// One recurrent direction's matrices resolved for use row by row, and its bias.
#[derive(Clone, Copy)]
struct Rows<'a> {
    kernel: kernels::QRows<'a>,
    recurrent: kernels::QRows<'a>,
    bias: &'a [i32],
}

impl<'a> Rows<'a> {
    fn of(weights: &CellWeights<Mat<'a>>) -> Self {
        Rows {
            kernel: kernels::QRows::of(&weights.kernel),
            recurrent: kernels::QRows::of(&weights.recurrent),
            bias: weights.bias.as_ref().map_or(&[], |b| b.i32()),
        }
    }

    /// The pre-activations of rows `row` and `row + 1` (`W x + b + R h`, Q·.12, saturating in that
    /// order, as the whole-matrix passes add them).
    #[inline(always)]
    fn pair(self, row: usize, x: &[i16], h: &[i16]) -> (i32, i32) {
        let (in0, in1) = self.kernel.pair(row, x);
        let (rec0, rec1) = self.recurrent.pair(row, h);
        let b = |r: usize| self.bias.get(r).copied().unwrap_or(0);
        (
            in0.saturating_add(b(row)).saturating_add(rec0),
            in1.saturating_add(b(row + 1)).saturating_add(rec1),
        )
    }
}

/// `v` clamped to `[-limit, limit]`, as [`clamp`] does.
#[inline(always)]
fn clamped(v: i32, limit: Option<i32>) -> i32 {
    match limit {
        Some(limit) => v.max(-limit).min(limit),
        None => v,
    }
}

/// The LSTM step unit by unit (two per pass over `x` and `h`): each unit's four gate rows, its cell
/// update and its new `h`, kept in `h_new` until every unit has read the old `h`. The values of
/// [`lstm`]'s whole-matrix form: the same sums, saturations and roundings per unit, the products in
/// `i64` through [`fixed::multiply_wide`] (exact; no library call on Armv6-M). Working memory: the
/// `4·H` bytes of `h_new`, against `32·H` for the whole-matrix form, for about a third more
/// instructions (every pair of rows sets its kernel up again).
#[allow(
    clippy::too_many_arguments,
    reason = "one LSTM step's tensors and state"
)]
fn lstm_by_unit(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    format: &FixedLayer,
    input_forget: bool,
    x: &[i16],
    h: &mut [i16],
    c: &mut [i16],
    h_new: &mut [i32],
) {
    let hidden = h.len();
    let (sf, cf) = (u32::from(format.state_frac), u32::from(format.cell_frac));
    let clip = (format.clip > 0).then_some(format.clip);
    let unit_formats = UnitFormats {
        gate: layer.gate_activation,
        act: layer.activation,
        input_forget,
        cf,
        sf,
    };
    let peephole = weights.peephole.as_ref().map(|p| p.i32());
    let bounded = BoundedShifts::of(unit_formats, peephole.is_some());
    let peep = |gate: usize, u: usize, c: i16| {
        let p = peephole.and_then(|p| p.get(gate * hidden + u)).copied();
        p.map_or(0, |p| peephole_term(p, c, cf))
    };
    let rows = Rows::of(weights);
    let mut unit = 0;
    while unit < hidden {
        let i = rows.pair(unit, x, h);
        let f = rows.pair(hidden + unit, x, h);
        let g = rows.pair(2 * hidden + unit, x, h);
        let o = rows.pair(3 * hidden + unit, x, h);
        let units = [(unit, i.0, f.0, g.0, o.0), (unit + 1, i.1, f.1, g.1, o.1)];
        for (u, i, f, g, o) in units {
            let (Some(c), Some(out)) = (c.get_mut(u), h_new.get_mut(u)) else {
                continue;
            };
            if u >= hidden {
                continue;
            }
            let (mut i, mut f) = (i, f);
            if peephole.is_some() {
                i = i.saturating_add(peep(0, u, *c));
                f = f.saturating_add(peep(1, u, *c));
            }
            let (i, f, g) = (clamped(i, clip), clamped(f, clip), clamped(g, clip));
            if let Some(shifts) = bounded {
                *c = shifts.cell(input_forget, i, f, g, *c);
                *out = i32::from(shifts.hidden(clamped(o, clip), *c));
                continue;
            }
            *c = unit_formats.cell(i, f, g, *c);
            let mut o = o;
            if peephole.is_some() {
                o = o.saturating_add(peep(2, u, *c));
            }
            *out = i32::from(unit_formats.hidden(clamped(o, clip), *c));
        }
        unit += 2;
    }
    h.iter_mut()
        .zip(h_new.iter())
        .for_each(|(h, v)| *h = *v as i16);
}

/// i = σ(Wi x + Ri h + pi ⊙ c + bi)      f = σ(Wf x + Rf h + pf ⊙ c + bf)   (f = 1 − i with input_forget)
/// g = act(Wg x + Rg h + bg)              c' = f ⊙ c + i ⊙ g
/// o = σ(Wo x + Ro h + po ⊙ c' + bo)      h' = o ⊙ act(c')
/// Gates are Q·.15, `c` is in the cell format `cf`, `h` in the state format.
#[cfg(feature = "lstm")]
fn lstm(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    format: &FixedLayer,
    input_forget: bool,
    pre: &mut [i32],
    h: &mut [i16],
    c: &mut [i16],
) {
    let hidden = h.len();
    let (sf, cf) = (u32::from(format.state_frac), u32::from(format.cell_frac));
    let clip = (format.clip > 0).then_some(format.clip);
    kernels::matvec_q_add(&weights.recurrent, h, pre);
    let (i, rest) = pre.split_at_mut(hidden.min(pre.len()));
    let (f, rest) = rest.split_at_mut(hidden.min(rest.len()));
    let (g, o) = rest.split_at_mut(hidden.min(rest.len()));
    let peephole = weights.peephole.as_ref().map(|p| p.i32());
    let peep = |gate: &mut [i32], p: &[i32], c: &[i16]| {
        gate.iter_mut()
            .zip(p.iter().zip(c))
            .for_each(|(v, (p, c))| *v = v.saturating_add(peephole_term(*p, *c, cf)))
    };
    if let Some(p) = peephole {
        peep(i, p.get(..hidden).unwrap_or(&[]), c);
        peep(f, p.get(hidden..2 * hidden).unwrap_or(&[]), c);
    }
    clamp(i, clip);
    clamp(f, clip);
    clamp(g, clip);
    let unit = UnitFormats {
        gate: layer.gate_activation,
        act: layer.activation,
        input_forget,
        cf,
        sf,
    };
    if let Some(shifts) = BoundedShifts::of(unit, peephole.is_some()) {
        lstm_update_bounded(shifts, input_forget, clip, c, h, i, f, g, o);
        return;
    }
    for (((c, i), f), g) in c.iter_mut().zip(i.iter()).zip(f.iter()).zip(g.iter()) {
        *c = unit.cell(*i, *f, *g, *c);
    }
    if let Some(p) = peephole {
        peep(o, p.get(2 * hidden..3 * hidden).unwrap_or(&[]), c);
    }
    clamp(o, clip);
    for ((h, o), c) in h.iter_mut().zip(o.iter()).zip(c.iter()) {
        *h = unit.hidden(*o, *c);
    }
}

/// `p ⊙ c` of a peephole: Q·.16 × Q·.cf, moved to Q·.12.
#[inline(always)]
fn peephole_term(p: i32, c: i16, cf: u32) -> i32 {
    fixed::requantize(
        fixed::multiply_wide(p, i32::from(c)),
        u32::from(PEEPHOLE_FRAC) + cf,
        u32::from(PRE_FRAC),
    )
}

/// What the element-wise LSTM update of one unit needs to know: the gates' and the cell's activation,
/// the input-forget coupling, the cell and state formats. One definition for the whole-matrix loop and
/// the unit-by-unit step, so they cannot drift apart.
#[derive(Clone, Copy)]
struct UnitFormats {
    gate: Activation,
    act: Activation,
    input_forget: bool,
    cf: u32,
    sf: u32,
}

impl UnitFormats {
    /// `c' = f ⊙ c + i ⊙ g` from the (clamped) Q·.12 pre-activations of `i`, `f` and `g`.
    #[inline(always)]
    fn cell(self, i: i32, f: i32, g: i32, c: i16) -> i16 {
        let input = fixed::activate(self.gate, i);
        let forget = if self.input_forget {
            ONE - input
        } else {
            fixed::activate(self.gate, f)
        };
        let candidate = fixed::activate(self.act, g);
        // f ⊙ c is in Q·.(15 + cf); i ⊙ g in Q·.30, moved there before the sum. The products are
        // exact (`multiply_wide`: no library call on Armv6-M).
        let kept = fixed::multiply_wide(forget, i32::from(c));
        let added = fixed::shift_round(
            fixed::multiply_wide(input, candidate),
            2 * GATE_FRAC as i32 - (GATE_FRAC + self.cf) as i32,
        );
        fixed::requantize_i16(kept.saturating_add(added), GATE_FRAC + self.cf, self.cf)
    }

    /// `h' = o ⊙ act(c')` from the (clamped) Q·.12 pre-activation of `o` and the new cell value.
    #[inline(always)]
    fn hidden(self, o: i32, c: i16) -> i16 {
        let out = fixed::activate(self.gate, o);
        let cell = fixed::activate(
            self.act,
            fixed::requantize(i64::from(c), self.cf, u32::from(PRE_FRAC)),
        );
        fixed::requantize_i16(fixed::multiply_wide(out, cell), 2 * GATE_FRAC, self.sf)
    }
}

/// The element-wise part of [`lstm`] for sigmoid gates and a tanh cell, no peephole, and a cell format
/// of at most 15 fraction bits: every value is then an `i16` and every product at most 2^30, so the
/// arithmetic the general loop does in `i64` fits `i32` and runs as `i32` (one instruction per step on a
/// 32-bit core instead of a pair or a library call), with the layer's shifts worked out once. The same
/// operations in the same order, so the same bits (`bounded_lstm_update_is_the_general_one`):
/// `kept + added` reaches ±2^31 only where both loops saturate `c` to the same end value.
#[cfg(feature = "lstm")]
#[allow(
    clippy::too_many_arguments,
    reason = "the four gate blocks of one LSTM step"
)]
#[inline(always)]
fn lstm_update_bounded(
    shifts: BoundedShifts,
    input_forget: bool,
    clip: Option<i32>,
    c: &mut [i16],
    h: &mut [i16],
    i: &[i32],
    f: &[i32],
    g: &[i32],
    o: &mut [i32],
) {
    if input_forget {
        lstm_cells_bounded::<true>(shifts, c, i, f, g);
    } else {
        lstm_cells_bounded::<false>(shifts, c, i, f, g);
    }
    clamp(o, clip);
    for ((h, o), c) in h.iter_mut().zip(o.iter()).zip(c.iter()) {
        *h = shifts.hidden(*o, *c);
    }
}

/// `c' = f ⊙ c + i ⊙ g` of [`lstm_update_bounded`], the input-forget coupling known at compile time.
#[cfg(feature = "lstm")]
#[inline(always)]
fn lstm_cells_bounded<const INPUT_FORGET: bool>(
    shifts: BoundedShifts,
    c: &mut [i16],
    i: &[i32],
    f: &[i32],
    g: &[i32],
) {
    for (((c, i), f), g) in c.iter_mut().zip(i).zip(f).zip(g) {
        *c = shifts.cell(INPUT_FORGET, *i, *f, *g, *c);
    }
}

/// The format changes of [`lstm_update_bounded`], worked out once per step. Each gives the value
/// `fixed::shift_round` / `fixed::requantize` give for the same shift (ties up, no saturation needed).
#[derive(Clone, Copy)]
struct BoundedShifts {
    /// Q·.30 to Q·.(15 + cf): `15 − cf` (0 to 15).
    to_cell: u32,
    /// Q·.cf to the Q·.12 of tanh's input: a left shift for `cf < 12` …
    cell_up: u32,
    /// … a rounding right shift for `cf ≥ 12`.
    cell_down: u32,
    /// Q·.30 to Q·.sf: `30 − sf` (at least 6: `sf ≤ MAX_FRAC`).
    to_state: u32,
}

impl BoundedShifts {
    /// The shifts of a sigmoid/tanh LSTM without peephole whose cell format has at most 15 fraction
    /// bits, or `None` for a layer the general update must take.
    fn of(unit: UnitFormats, peephole: bool) -> Option<Self> {
        let bounded = (unit.gate, unit.act) == (Activation::Sigmoid, Activation::Tanh)
            && unit.cf <= GATE_FRAC
            && !peephole;
        bounded.then(|| Self::new(unit.cf, unit.sf))
    }

    fn new(cf: u32, sf: u32) -> Self {
        let pre = u32::from(PRE_FRAC);
        Self {
            to_cell: GATE_FRAC.saturating_sub(cf),
            cell_up: pre.saturating_sub(cf),
            cell_down: cf.saturating_sub(pre),
            to_state: (2 * GATE_FRAC).saturating_sub(sf),
        }
    }

    /// [`UnitFormats::cell`] for such a layer, in `i32`.
    #[inline(always)]
    fn cell(self, input_forget: bool, i: i32, f: i32, g: i32, c: i16) -> i16 {
        let input = i32::from(fixed::sigmoid(i));
        let forget = if input_forget {
            ONE - input
        } else {
            i32::from(fixed::sigmoid(f))
        };
        let candidate = i32::from(fixed::tanh(g));
        // f ⊙ c in Q·.(15 + cf); i ⊙ g from Q·.30 to there, rounded (|i g| < 2^30: no overflow).
        let kept = forget * i32::from(c);
        let added = self.round(input * candidate, self.to_cell);
        // Back to Q·.cf: a rounding shift by 15 that cannot overflow at ±2^31.
        let sum = kept.saturating_add(added);
        let q = sum >> (GATE_FRAC - 1);
        fixed::saturate_i16((q >> 1) + (q & 1))
    }

    /// [`UnitFormats::hidden`] for such a layer, in `i32`.
    #[inline(always)]
    fn hidden(self, o: i32, c: i16) -> i16 {
        let out = i32::from(fixed::sigmoid(o));
        let cell = i32::from(fixed::tanh(self.cell_to_pre(c)));
        fixed::saturate_i16(self.round(out * cell, self.to_state))
    }

    /// `round(x / 2^shift)`, ties up, for `|x| < 2^30` and `shift ≤ 30`: adding half a step cannot
    /// overflow, and a shift of 0 is the value itself.
    #[inline(always)]
    fn round(self, x: i32, shift: u32) -> i32 {
        (x + ((1 << shift) >> 1)) >> shift
    }

    /// A cell value (`|c| ≤ 2^15`, moved by at most 12 bits) in the Q·.12 of tanh's input.
    #[inline(always)]
    fn cell_to_pre(self, c: i16) -> i32 {
        self.round(i32::from(c) << self.cell_up, self.cell_down)
    }
}

/// reset-after:  z = σ(Wz x + bz + Rz h + rbz)   r = σ(Wr x + br + Rr h + rbr)
///               n = act(Wn x + bn + r ⊙ (Rn h + rbn))
/// reset-before: n = act(Wn x + bn + Rn (r ⊙ h))
/// h' = (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n), formed in Q·.15.
#[cfg(feature = "gru")]
#[allow(clippy::too_many_arguments)]
fn gru(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    format: &FixedLayer,
    reset_after: bool,
    pre: &mut [i32],
    extra: &mut [i32],
    h: &mut [i16],
) {
    let hidden = h.len();
    let sf = u32::from(format.state_frac);
    let clip = (format.clip > 0).then_some(format.clip);
    let recurrent = &weights.recurrent;
    let (zr, n) = pre.split_at_mut((2 * hidden).min(pre.len()));
    let gates = |zr: &mut [i32]| {
        clamp(zr, clip);
        activate_all(layer.gate_activation, zr);
    };
    if reset_after {
        // extra = R h + rb, all three gates; r multiplies only its n block.
        let rh = extra.get_mut(..3 * hidden).unwrap_or(&mut []);
        kernels::matvec_q(recurrent, h, rh);
        if let Some(rb) = &weights.recurrent_bias {
            add(rh, rb.i32());
        }
        let (rh_zr, rh_n) = rh.split_at_mut((2 * hidden).min(rh.len()));
        add(zr, rh_zr);
        gates(zr);
        let r = zr.get(hidden..).unwrap_or(&[]);
        n.iter_mut()
            .zip(r.iter().zip(rh_n.iter()))
            .for_each(|(n, (r, v))| {
                let gated = fixed::requantize(fixed::multiply_wide(*r, *v), GATE_FRAC, 0);
                *n = n.saturating_add(gated);
            });
    } else {
        kernels::matvec_q_add(&recurrent.rows(0, 2 * hidden), h, zr);
        gates(zr);
        // R_n reads r ⊙ h (state format): h is kept in `extra` while it holds r ⊙ h.
        let saved = extra.get_mut(..hidden).unwrap_or(&mut []);
        let r = zr.get(hidden..).unwrap_or(&[]);
        for ((h, s), r) in h.iter_mut().zip(saved.iter_mut()).zip(r) {
            *s = i32::from(*h);
            *h = fixed::requantize_i16(i64::from(*r) * i64::from(*h), GATE_FRAC, 0);
        }
        kernels::matvec_q_add(&recurrent.rows(2 * hidden, hidden), h, n);
        h.iter_mut()
            .zip(saved.iter())
            .for_each(|(h, s)| *h = fixed::saturate_i16(*s));
    }
    clamp(n, clip);
    let z = zr.get(..hidden).unwrap_or(&[]);
    if (layer.gate_activation, layer.activation) == (Activation::Sigmoid, Activation::Tanh)
        && sf >= GATE_FRAC
    {
        // sigmoid keeps z within [0, 2^15), tanh keeps n within i16, and a state of at least 15
        // fraction bits keeps `old` there too: `z (h − n)` is below 2^31 and everything fits `i32`. The same operations as the
        // general loop, in `i32` instead of `i64`: the same bits.
        for ((h, z), n) in h.iter_mut().zip(z).zip(n.iter()) {
            let n = i32::from(fixed::tanh(*n));
            let old = fixed::requantize(i64::from(*h), sf, GATE_FRAC);
            let blended =
                n + fixed::shift_round(i64::from(*z * (old - n)), GATE_FRAC as i32) as i32;
            *h = fixed::requantize_i16(i64::from(blended), GATE_FRAC, sf);
        }
        return;
    }
    for ((h, z), n) in h.iter_mut().zip(z).zip(n.iter()) {
        let n = i64::from(fixed::activate(layer.activation, *n));
        let old = i64::from(fixed::requantize(i64::from(*h), sf, GATE_FRAC));
        let blended = n + fixed::shift_round(i64::from(*z) * (old - n), GATE_FRAC as i32);
        *h = fixed::requantize_i16(blended, GATE_FRAC, sf);
    }
}

/// Every value through `activation` (Q·.12 to Q·.15), the function chosen once for the slice.
#[inline]
fn activate_all(activation: Activation, values: &mut [i32]) {
    match activation {
        Activation::Sigmoid => values
            .iter_mut()
            .for_each(|v| *v = i32::from(fixed::sigmoid(*v))),
        Activation::Tanh => values
            .iter_mut()
            .for_each(|v| *v = i32::from(fixed::tanh(*v))),
        other => values
            .iter_mut()
            .for_each(|v| *v = fixed::activate(other, *v)),
    }
}

/// `y += b`, saturating.
#[inline]
fn add(y: &mut [i32], b: &[i32]) {
    y.iter_mut()
        .zip(b)
        .for_each(|(v, b)| *v = v.saturating_add(*b));
}

/// Clamps every value to `[-limit, limit]`.
#[inline]
fn clamp(values: &mut [i32], limit: Option<i32>) {
    if let Some(limit) = limit {
        values
            .iter_mut()
            // `max` then `min`, not `clamp`: `clamp` asserts `min <= max`, which the optimiser cannot
            // prove from the positive clip `check_fixed` guarantees (a panic path).
            .for_each(|v| *v = (*v).max(-limit).min(limit));
    }
}

/// Copies the common prefix of two slices.
#[inline]
fn copy(dst: &mut [i16], src: &[i16]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}

#[cfg(all(test, feature = "lstm"))]
mod tests {
    extern crate std;
    use super::*;
    use crate::kernels::fixed::tests::Xorshift;
    use std::vec::Vec;

    /// `row_dot` against its definition in `i128`, for int8 and int16 rows of full-scale weights and
    /// the values its callers pass (`i16`, and the skip path's differences of two `i16`, up to ±65535),
    /// with multipliers and shifts of every size: the `i32` products and `i64` sums are exact.
    #[test]
    fn row_dot_is_the_exact_requantized_sum() {
        let mut rng = Xorshift(0x0d07_2026);
        let rounds = if cfg!(miri) { 20 } else { 3000 };
        for round in 0..rounds {
            let n = 1 + round % 200;
            let extreme = |rng: &mut Xorshift, lo: i32, hi: i32| match rng.next() % 4 {
                0 => lo,
                1 => hi,
                _ => lo + (rng.next() % (hi - lo + 1) as u32) as i32,
            };
            let w16: Vec<i16> = (0..n)
                .map(|_| extreme(&mut rng, -32768, 32767) as i16)
                .collect();
            let w8: Vec<u8> = w16.iter().map(|&w| (w >> 8) as i8 as u8).collect();
            let x: Vec<i32> = (0..n).map(|_| extreme(&mut rng, -65535, 65535)).collect();
            let multiplier = (rng.next() >> 1) as i32;
            let shift = 1 + (rng.next() % 62) as i32;
            let requant = [multiplier, shift];
            let exact = |terms: &mut dyn Iterator<Item = i128>| {
                let product = terms.sum::<i128>() * i128::from(multiplier);
                let rounded = ((product >> (shift - 1)) + 1) >> 1;
                rounded.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
            };
            let int16 = Mat {
                values: Values::I16Requant {
                    values: &w16,
                    requant: &requant,
                },
                rows: 1,
                cols: n,
            };
            let int8 = Mat {
                values: Values::I8Requant {
                    values: &w8,
                    requant: &requant,
                },
                rows: 1,
                cols: n,
            };
            let sum16 = exact(
                &mut w16
                    .iter()
                    .zip(&x)
                    .map(|(&w, &x)| i128::from(w) * i128::from(x)),
            );
            let sum8 = exact(
                &mut w8
                    .iter()
                    .zip(&x)
                    .map(|(&w, &x)| i128::from(w as i8) * i128::from(x)),
            );
            assert_eq!(row_dot(&int16, 0, &x), sum16, "int16, {n} terms");
            assert_eq!(row_dot(&int8, 0, &x), sum8, "int8, {n} terms");
            let x16: Vec<i16> = x.iter().map(|&v| (v >> 1) as i16).collect();
            let sum = exact(
                &mut w16
                    .iter()
                    .zip(&x16)
                    .map(|(&w, &x)| i128::from(w) * i128::from(x)),
            );
            assert_eq!(row_dot(&int16, 0, &x16), sum, "int16 × i16, {n} terms");
        }
    }

    #[test]
    fn bounded_lstm_update_is_the_general_one() {
        // Pre-activations over the tables' whole range and beyond, cell values at the ends of i16, every
        // cell format the bounded loop takes and state formats up to MAX_FRAC.
        let mut rng = Xorshift(0x5157_0001);
        let pre = |rng: &mut Xorshift| match rng.next() % 6 {
            0 => (rng.next() as i32) >> 8,
            1 => [i32::MIN, i32::MAX, 65536, -65536, 32768, -32768][rng.next() as usize % 6],
            _ => ((rng.next() as i32) >> 13).clamp(-70_000, 70_000),
        };
        let cell_formats = if cfg!(miri) { 0..=2 } else { 0..=GATE_FRAC };
        for cf in cell_formats {
            for sf in [0, 7, 12, 15, 20, u32::from(crate::format::MAX_FRAC)] {
                for input_forget in [false, true] {
                    let n = 24;
                    let gates: Vec<[i32; 4]> = (0..n)
                        .map(|_| core::array::from_fn(|_| pre(&mut rng)))
                        .collect();
                    let c0: Vec<i16> = (0..n)
                        .map(|k| match k % 4 {
                            0 => i16::MIN,
                            1 => i16::MAX,
                            _ => rng.next() as i16,
                        })
                        .collect();
                    let (i, f, g): (Vec<i32>, Vec<i32>, Vec<i32>) = (
                        gates.iter().map(|v| v[0]).collect(),
                        gates.iter().map(|v| v[1]).collect(),
                        gates.iter().map(|v| v[2]).collect(),
                    );
                    let mut o: Vec<i32> = gates.iter().map(|v| v[3]).collect();
                    let (mut c, mut h) = (c0.clone(), std::vec![0i16; n]);
                    let shifts = BoundedShifts::new(cf, sf);
                    lstm_update_bounded(
                        shifts,
                        input_forget,
                        None,
                        &mut c,
                        &mut h,
                        &i,
                        &f,
                        &g,
                        &mut o,
                    );
                    let unit = UnitFormats {
                        gate: Activation::Sigmoid,
                        act: Activation::Tanh,
                        input_forget,
                        cf,
                        sf,
                    };
                    for k in 0..n {
                        let c_general = unit.cell(i[k], f[k], g[k], c0[k]);
                        assert_eq!(c[k], c_general, "cell, cf {cf} sf {sf} unit {k}");
                        assert_eq!(
                            h[k],
                            unit.hidden(o[k], c_general),
                            "hidden, cf {cf} sf {sf} unit {k}"
                        );
                    }
                }
            }
        }
    }
}
