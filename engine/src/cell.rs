//! Recurrent cell bodies: one timestep of SimpleRNN, LSTM or GRU. The sequence drivers in
//! [`crate::runtime`] call these; the cells differ only here.
//!
//! Gate order is the Keras/PyTorch order: LSTM `i f g o`, GRU `z r n`. Every weight matrix is row-major,
//! `G·H × input` for kernels and `G·H × H` for recurrent kernels, gate blocks stacked by rows.

use crate::activation::{apply_with, scalar_with, sigmoid, sigmoid_fast, tanh_fast};
use crate::format::{Activation, Cell, CellWeights, DType, Recurrent};
use crate::kernels::float::{add, add_product, clip};
use crate::kernels::{matvec, matvec_add};

/// The values of a tensor, viewed in place in the blob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values<'a> {
    /// f32 values, row-major.
    F32(&'a [f32]),
    /// int8 values, row-major, one byte each read as two's complement (`byte as i8`); row `r` stands for
    /// `scales[r] × value`.
    I8 {
        /// `rows × cols` bytes.
        values: &'a [u8],
        /// One scale per row.
        scales: &'a [f32],
    },
    /// int16 values, row-major; row `r` stands for `scales[r] × value` (f32 and `i8w` models).
    I16Scaled {
        /// `rows × cols` values.
        values: &'a [i16],
        /// One scale per row.
        scales: &'a [f32],
    },
    /// int8 values, row-major, with one `(multiplier, shift)` requantization pair per row (integer-only
    /// models).
    I8Requant {
        /// `rows × cols` bytes.
        values: &'a [u8],
        /// `rows` pairs, flattened: `[m_0, s_0, m_1, s_1, …]`.
        requant: &'a [i32],
    },
    /// int16 values, row-major, with one `(multiplier, shift)` pair per row (integer-only models).
    I16Requant {
        /// `rows × cols` values.
        values: &'a [i16],
        /// `rows` pairs, flattened.
        requant: &'a [i32],
    },
    /// `i16` values (initial states of integer-only models).
    I16(&'a [i16]),
    /// `i32` values (biases and peepholes of integer-only models).
    I32(&'a [i32]),
}

/// A validated view of a row-major matrix in the blob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mat<'a> {
    /// `rows × cols` values.
    pub values: Values<'a>,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl<'a> Mat<'a> {
    /// Number of values, `rows × cols`.
    pub const fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the matrix has no values.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub const fn dtype(&self) -> DType {
        match self.values {
            Values::F32(_) => DType::F32,
            Values::I8 { .. } => DType::I8,
            Values::I16Scaled { .. } => DType::I16Scaled,
            Values::I8Requant { .. } => DType::I8Requant,
            Values::I16Requant { .. } => DType::I16Requant,
            Values::I16(_) => DType::I16,
            Values::I32(_) => DType::I32,
        }
    }

    /// Bytes the tensor takes in the blob, scales included (alignment padding not included).
    pub const fn stored_bytes(&self) -> usize {
        match self.values {
            Values::F32(v) => 4 * v.len(),
            Values::I8 { values, scales } => values.len() + 4 * scales.len(),
            Values::I16Scaled { values, scales } => 2 * values.len() + 4 * scales.len(),
            Values::I8Requant { values, requant } => values.len() + 4 * requant.len(),
            Values::I16Requant { values, requant } => 2 * values.len() + 4 * requant.len(),
            Values::I16(v) => 2 * v.len(),
            Values::I32(v) => 4 * v.len(),
        }
    }

    /// The values of an f32 tensor; empty for an int8 one. Validation keeps every vector (biases,
    /// peepholes, initial states) f32, so the engine reads those through here.
    #[inline]
    pub const fn f32(&self) -> &'a [f32] {
        match self.values {
            Values::F32(v) => v,
            _ => &[],
        }
    }

    /// The values of an `i32` tensor; empty for any other type.
    #[inline]
    pub const fn i32(&self) -> &'a [i32] {
        match self.values {
            Values::I32(v) => v,
            _ => &[],
        }
    }

    /// The values of an `i16` tensor; empty for any other type.
    #[inline]
    pub const fn i16(&self) -> &'a [i16] {
        match self.values {
            Values::I16(v) => v,
            _ => &[],
        }
    }

    /// Rows `start..start + count`, as a matrix of their own.
    #[inline]
    pub(crate) fn rows(&self, start: usize, count: usize) -> Mat<'a> {
        let from = start.saturating_mul(self.cols);
        let to = from.saturating_add(count.saturating_mul(self.cols));
        let values = match self.values {
            Values::F32(v) => Values::F32(v.get(from..to).unwrap_or(&[])),
            Values::I8 { values, scales } => Values::I8 {
                values: values.get(from..to).unwrap_or(&[]),
                scales: scales
                    .get(start..start.saturating_add(count))
                    .unwrap_or(&[]),
            },
            Values::I16Scaled { values, scales } => Values::I16Scaled {
                values: values.get(from..to).unwrap_or(&[]),
                scales: scales
                    .get(start..start.saturating_add(count))
                    .unwrap_or(&[]),
            },
            Values::I8Requant { values, requant } => Values::I8Requant {
                values: values.get(from..to).unwrap_or(&[]),
                requant: requant
                    .get(2 * start..2 * start.saturating_add(count))
                    .unwrap_or(&[]),
            },
            Values::I16Requant { values, requant } => Values::I16Requant {
                values: values.get(from..to).unwrap_or(&[]),
                requant: requant
                    .get(2 * start..2 * start.saturating_add(count))
                    .unwrap_or(&[]),
            },
            Values::I16(v) => Values::I16(v.get(from..to).unwrap_or(&[])),
            Values::I32(v) => Values::I32(v.get(from..to).unwrap_or(&[])),
        };
        Mat {
            values,
            rows: count,
            cols: self.cols,
        }
    }
}

/// What a cell body needs of its layer besides the weights: small and `Copy`, so a streaming step can
/// take it from the model's compact layer without resolving (and copying) every tensor of the layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CellSpec {
    /// The cell type.
    pub cell: Cell,
    /// The output / candidate activation.
    pub activation: Activation,
    /// The gates' activation.
    pub gate_activation: Activation,
    /// The pre-activation clip, if any.
    pub clip: Option<f32>,
    /// Whether sigmoid and tanh are the fast approximations of [`crate::activation`].
    pub fast: bool,
}

impl CellSpec {
    /// The spec of a recurrent layer, whatever its tensors are, with the exact activations.
    #[inline]
    pub(crate) fn of<T>(layer: &Recurrent<T>) -> Self {
        Self {
            cell: layer.cell,
            activation: layer.activation,
            gate_activation: layer.gate_activation,
            clip: layer.clip,
            fast: false,
        }
    }

    /// The same spec with the fast activations when `fast` is set.
    #[inline]
    pub(crate) fn fast(self, fast: bool) -> Self {
        Self { fast, ..self }
    }
}

/// Scratch words one timestep of `layer` needs.
pub(crate) fn scratch_words(cell: Cell, hidden: usize) -> usize {
    2 * cell.gates() * hidden
}

/// State words one direction of `layer` keeps: `h`, plus `c` for an LSTM.
pub(crate) fn state_words(cell: Cell, hidden: usize) -> usize {
    match cell {
        Cell::Lstm { .. } => 2 * hidden,
        Cell::SimpleRnn | Cell::Gru { .. } => hidden,
    }
}

/// Sets one direction's state to its initial value (constant, or zeros).
pub(crate) fn reset(weights: &CellWeights<Mat<'_>>, h: &mut [f32], c: &mut [f32]) {
    match &weights.initial_h {
        Some(init) => h.iter_mut().zip(init.f32()).for_each(|(s, v)| *s = *v),
        None => h.iter_mut().for_each(|s| *s = 0.0),
    }
    match &weights.initial_c {
        Some(init) => c.iter_mut().zip(init.f32()).for_each(|(s, v)| *s = *v),
        None => c.iter_mut().for_each(|s| *s = 0.0),
    }
}

/// Advances one direction by one timestep: reads `x`, updates `h` (and `c` for an LSTM) in place.
/// `scratch` holds at least [`scratch_words`] values.
pub(crate) fn step(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    x: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    scratch: &mut [f32],
) {
    let hidden = h.len();
    let (pre, extra) = scratch.split_at_mut(scratch.len().min(layer.cell.gates() * hidden));
    project_input(weights, x, pre);
    step_projected(layer, weights, pre, extra, h, c);
}

/// `pre = W x + b`, the input projection of every gate.
#[inline]
pub(crate) fn project_input(weights: &CellWeights<Mat<'_>>, x: &[f32], pre: &mut [f32]) {
    if let (Values::F32(kernel), Some(Values::F32(bias))) = (
        weights.kernel.values,
        weights.bias.as_ref().map(|b| b.values),
    ) {
        crate::kernels::float::matvec_bias(kernel, x, bias, pre);
        return;
    }
    matvec(&weights.kernel, x, pre);
    if let Some(bias) = &weights.bias {
        add(pre, bias.f32());
    }
}

/// Timesteps whose input projections a windowed run computes in one pass over the input kernel.
pub(crate) const PROJECTION_BLOCK: usize = 4;

/// [`project_input`] for up to [`PROJECTION_BLOCK`] timesteps `xs` at once, into consecutive blocks of
/// `G·H` values of `pre`, reading each row of an f32 kernel once for all of them. Each sum is the one
/// [`project_input`] computes, in the same order, so the bits are the same. Other element types go
/// timestep by timestep.
pub(crate) fn project_inputs(weights: &CellWeights<Mat<'_>>, xs: &[&[f32]], pre: &mut [f32]) {
    let rows = weights.kernel.rows;
    let cols = weights.kernel.cols;
    let block = <[&[f32]; PROJECTION_BLOCK]>::try_from(xs).ok();
    let (Values::F32(kernel), 1.., Some([x0, x1, x2, x3])) = (weights.kernel.values, cols, block)
    else {
        // A partial block, or int8 weights: one timestep at a time.
        for (x, block) in xs.iter().zip(pre.chunks_mut(rows.max(1))) {
            project_input(weights, x, block);
        }
        return;
    };
    for (r, row) in kernel.chunks_exact(cols).enumerate() {
        // Each weight is read once for the four timesteps; each sum still runs left to right from
        // 0.0, as `dot` does.
        let mut sums = [0.0f32; PROJECTION_BLOCK];
        for ((((w, a), b), c), d) in row.iter().zip(x0).zip(x1).zip(x2).zip(x3) {
            sums[0] += w * a;
            sums[1] += w * b;
            sums[2] += w * c;
            sums[3] += w * d;
        }
        for (k, sum) in sums.into_iter().enumerate() {
            if let Some(out) = pre.get_mut(k * rows + r) {
                *out = sum;
            }
        }
    }
    if let Some(bias) = &weights.bias {
        for block in pre.chunks_mut(rows.max(1)).take(PROJECTION_BLOCK) {
            add(block, bias.f32());
        }
    }
}

/// The rest of one timestep once `pre` holds the input projection ([`project_input`]); `pre` is
/// overwritten, `extra` holds at least `G·H` values.
pub(crate) fn step_projected(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    pre: &mut [f32],
    extra: &mut [f32],
    h: &mut [f32],
    c: &mut [f32],
) {
    match layer.cell {
        #[cfg(feature = "simple-rnn")]
        Cell::SimpleRnn => {
            // h' = act(W x + b + R h)
            matvec_add(&weights.recurrent, h, pre);
            clip(pre, layer.clip);
            h.copy_from_slice_checked(pre);
            apply_with(layer.activation, h, layer.fast);
        }
        #[cfg(feature = "lstm")]
        Cell::Lstm { input_forget } => lstm(layer, weights, input_forget, pre, h, c),
        #[cfg(feature = "gru")]
        Cell::Gru { reset_after } => gru(layer, weights, reset_after, pre, extra, h),
        // Model::open refuses a layer whose cell is compiled out, so no step reaches this.
        #[cfg(not(all(feature = "lstm", feature = "gru", feature = "simple-rnn")))]
        _ => {}
    }
}

/// i = σ(Wi x + Ri h + pi ⊙ c + bi)      f = σ(Wf x + Rf h + pf ⊙ c + bf)   (f = 1 − i with input_forget)
/// g = act(Wg x + Rg h + bg)              c' = f ⊙ c + i ⊙ g
/// o = σ(Wo x + Ro h + po ⊙ c' + bo)      h' = o ⊙ act(c')
/// With a clip, every gate's pre-activation is clamped to [-clip, clip] before its activation.
#[cfg(feature = "lstm")]
fn lstm(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    input_forget: bool,
    pre: &mut [f32],
    h: &mut [f32],
    c: &mut [f32],
) {
    let hidden = h.len();
    matvec_add(&weights.recurrent, h, pre);
    let (i, rest) = pre.split_at_mut(hidden.min(pre.len()));
    let (f, rest) = rest.split_at_mut(hidden.min(rest.len()));
    let (g, o) = rest.split_at_mut(hidden.min(rest.len()));
    let peephole = weights.peephole.as_ref().map(|p| p.f32());
    if let Some(p) = peephole {
        add_product(i, p.get(..hidden).unwrap_or(&[]), c);
        add_product(f, p.get(hidden..2 * hidden).unwrap_or(&[]), c);
    }
    clip(i, layer.clip);
    clip(f, layer.clip);
    clip(g, layer.clip);
    let (ga, act, fast) = (layer.gate_activation, layer.activation, layer.fast);
    // The usual pair, sigmoid gates and tanh, gets its own loops with the functions inlined (their
    // constants stay in registers across units); any other pair goes through the general dispatch.
    match (ga, act, fast) {
        (Activation::Sigmoid, Activation::Tanh, true) => lstm_update(
            peephole,
            input_forget,
            layer.clip,
            c,
            h,
            i,
            f,
            g,
            o,
            sigmoid_fast,
            tanh_fast,
        ),
        (Activation::Sigmoid, Activation::Tanh, false) => lstm_update(
            peephole,
            input_forget,
            layer.clip,
            c,
            h,
            i,
            f,
            g,
            o,
            sigmoid,
            libm::tanhf,
        ),
        _ => lstm_update(
            peephole,
            input_forget,
            layer.clip,
            c,
            h,
            i,
            f,
            g,
            o,
            |x| scalar_with(ga, x, fast),
            |x| scalar_with(act, x, fast),
        ),
    }
}

/// The element-wise part of [`lstm`] once `i`, `f`, `g` and `o` hold the gates' pre-activations (clipped
/// except `o`, which the peephole may still change): `gate` is the gates' activation, `act` the cell's.
#[cfg(feature = "lstm")]
#[allow(
    clippy::too_many_arguments,
    reason = "the four gate blocks of one LSTM step"
)]
#[inline(always)]
fn lstm_update(
    peephole: Option<&[f32]>,
    input_forget: bool,
    limit: Option<f32>,
    c: &mut [f32],
    h: &mut [f32],
    i: &mut [f32],
    f: &mut [f32],
    g: &[f32],
    o: &mut [f32],
    gate: impl Fn(f32) -> f32,
    act: impl Fn(f32) -> f32,
) {
    for (((c, i), f), g) in c
        .iter_mut()
        .zip(i.iter_mut())
        .zip(f.iter_mut())
        .zip(g.iter())
    {
        *i = gate(*i);
        *f = if input_forget { 1.0 - *i } else { gate(*f) };
        *c = *f * *c + *i * act(*g);
    }
    if let Some(p) = peephole {
        let hidden = h.len();
        add_product(o, p.get(2 * hidden..3 * hidden).unwrap_or(&[]), c);
    }
    clip(o, limit);
    for ((h, o), c) in h.iter_mut().zip(o.iter()).zip(c.iter()) {
        *h = gate(*o) * act(*c);
    }
}

/// reset-after:  z = σ(Wz x + bz + Rz h + rbz)   r = σ(Wr x + br + Rr h + rbr)
///               n = act(Wn x + bn + r ⊙ (Rn h + rbn))
/// reset-before: n = act(Wn x + bn + Rn (r ⊙ h))
/// h' = (1 − z) ⊙ n + z ⊙ h
#[cfg(feature = "gru")]
fn gru(
    layer: &CellSpec,
    weights: &CellWeights<Mat<'_>>,
    reset_after: bool,
    pre: &mut [f32],
    extra: &mut [f32],
    h: &mut [f32],
) {
    let hidden = h.len();
    let recurrent = &weights.recurrent;
    let (zr, n) = pre.split_at_mut((2 * hidden).min(pre.len()));
    if reset_after {
        // extra = R h + rb, all three gates; r multiplies only its n block.
        let rh = extra.get_mut(..3 * hidden).unwrap_or(&mut []);
        matvec(recurrent, h, rh);
        if let Some(rb) = &weights.recurrent_bias {
            add(rh, rb.f32());
        }
        let (rh_zr, rh_n) = rh.split_at_mut((2 * hidden).min(rh.len()));
        add(zr, rh_zr);
        clip(zr, layer.clip);
        apply_with(layer.gate_activation, zr, layer.fast);
        let r = zr.get(hidden..).unwrap_or(&[]);
        add_product(n, r, rh_n);
    } else {
        matvec_add(&recurrent.rows(0, 2 * hidden), h, zr);
        clip(zr, layer.clip);
        apply_with(layer.gate_activation, zr, layer.fast);
        let r = zr.get(hidden..).unwrap_or(&[]);
        let rh = extra.get_mut(..hidden).unwrap_or(&mut []);
        rh.iter_mut()
            .zip(r.iter().zip(h.iter()))
            .for_each(|(v, (r, h))| *v = r * h);
        matvec_add(&recurrent.rows(2 * hidden, hidden), rh, n);
    }
    clip(n, layer.clip);
    apply_with(layer.activation, n, layer.fast);
    let z = zr.get(..hidden).unwrap_or(&[]);
    for ((h, z), n) in h.iter_mut().zip(z).zip(n.iter()) {
        *h = (1.0 - z) * n + z * *h;
    }
}

/// `copy_from_slice` that copies the common prefix instead of panicking on a length mismatch.
trait CopyChecked {
    fn copy_from_slice_checked(&mut self, src: &[f32]);
}

impl CopyChecked for [f32] {
    #[inline]
    fn copy_from_slice_checked(&mut self, src: &[f32]) {
        self.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
    }
}
