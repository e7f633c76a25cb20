//! A front door for sizes known at compile time: one recurrent layer whose input width `I` and hidden
//! size `H` are type parameters, so every loop over them is monomorphised and LLVM can unroll it.
//!
//! [`Lstm`], [`Gru`] and [`SimpleRnn`] are opened on a layer of a [`Model`] that has already been
//! validated; opening checks that the layer is what the type says (cell, sizes, forward direction, f32
//! weights) and refuses it otherwise with [`Error::SizedMismatch`]. The weights stay in the blob. The
//! state lives in the value itself (`[f32; H]` arrays), so no memory is asked of the caller.
//!
//! The numbers are those of [`crate::Runtime`]: the same kernels are called in the same order, so a
//! front door and a runtime fed the same steps agree bit for bit. What the front door drops is the
//! run-time dispatch (element types, layer kinds, slice lengths checked per call).
//!
//! ```
//! # fn demo(blob: &[u8]) -> Result<(), tinyrnn::Error> {
//! use tinyrnn::sized::Lstm;
//! let model = tinyrnn::Model::open(blob)?;
//! // Layer 0 of the blob must be a forward f32 LSTM reading 3 features with 32 units.
//! let mut lstm = Lstm::<3, 32>::open(&model, 0)?;
//! let h: &[f32; 32] = lstm.step(&[0.1, 0.2, 0.3])?;
//! # let _ = h;
//! # Ok(())
//! # }
//! ```

use crate::activation::{apply, scalar};
use crate::cell::{Mat, Values};
use crate::error::Error;
use crate::format::{Activation, Cell, Direction, Layer};
use crate::kernels::float::{add, add_product, clip, dot};
use crate::model::Model;

/// The tensors and options of one direction of a recurrent layer, checked at open. Absent optional
/// vectors are empty slices: the kernels then do nothing with them, as the runtime does.
#[derive(Clone, Copy, Debug)]
struct Params<'a> {
    kernel: &'a [f32],
    recurrent: &'a [f32],
    bias: &'a [f32],
    recurrent_bias: &'a [f32],
    peephole: &'a [f32],
    initial_h: &'a [f32],
    initial_c: &'a [f32],
    activation: Activation,
    gate_activation: Activation,
    clip: Option<f32>,
}

/// Finds layer `index` of `model` and checks it against a front door of `cell_name` with `gates` gates,
/// input `input` and hidden size `hidden`; returns its tensors and its cell.
fn open<'a>(
    model: &Model<'a>,
    index: usize,
    cell_name: &'static str,
    fits: fn(Cell) -> bool,
    input: usize,
    hidden: usize,
) -> Result<(Params<'a>, Cell), Error> {
    let mismatch = |got: (usize, usize), problem: &'static str| Error::SizedMismatch {
        layer: u8::try_from(index).unwrap_or(u8::MAX),
        cell: cell_name,
        expected: (size(input), size(hidden)),
        got: (size(got.0), size(got.1)),
        problem,
    };
    let Some(Layer::Recurrent(r)) = model.layers().nth(index) else {
        return Err(mismatch((0, 0), "it is not a recurrent layer"));
    };
    let got = (r.forward.kernel.cols, r.hidden as usize);
    if !fits(r.cell) {
        return Err(mismatch(got, "its cell is another one"));
    }
    if r.direction != Direction::Forward {
        return Err(mismatch(got, "it is reverse or bidirectional"));
    }
    if got != (input, hidden) {
        return Err(mismatch(got, "its sizes differ"));
    }
    let w = &r.forward;
    let rows = r.cell.gates() * hidden;
    let f32_matrix = |m: &Mat<'a>, cols: usize| match m.values {
        Values::F32(v) if m.rows == rows && m.cols == cols && v.len() == rows * cols => Some(v),
        _ => None,
    };
    let (Some(kernel), Some(recurrent)) = (
        f32_matrix(&w.kernel, input),
        f32_matrix(&w.recurrent, hidden),
    ) else {
        return Err(mismatch(
            got,
            "its weights are not f32 (the front door runs f32 models)",
        ));
    };
    let vector = |v: &Option<Mat<'a>>| v.as_ref().map_or(&[][..], |m| m.f32());
    Ok((
        Params {
            kernel,
            recurrent,
            bias: vector(&w.bias),
            recurrent_bias: vector(&w.recurrent_bias),
            peephole: vector(&w.peephole),
            initial_h: vector(&w.initial_h),
            initial_c: vector(&w.initial_c),
            activation: r.activation,
            gate_activation: r.gate_activation,
            clip: r.clip,
        },
        r.cell,
    ))
}

/// A size as the error reports it.
fn size(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `out = W x` over rows of exactly `N` columns: the runtime's `matvec` with the row length a constant.
#[inline(always)]
fn project<const N: usize>(w: &[f32], x: &[f32; N], out: &mut [f32]) {
    // `max(1)`: a constant, so the chunking folds away; a zero chunk size would panic.
    for (o, row) in out.iter_mut().zip(w.chunks_exact(N.max(1))) {
        *o = dot(row, x);
    }
}

/// `out += W x` over rows of exactly `N` columns: the runtime's `matvec_add`.
#[inline(always)]
fn project_add<const N: usize>(w: &[f32], x: &[f32; N], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(N.max(1))) {
        *o += dot(row, x);
    }
}

/// The index of the first NaN or infinity in `x`.
#[inline]
fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !v.is_finite())
}

/// Copies `init` into `state` (zeros when `init` is empty): the runtime's reset.
#[inline]
fn reset_state(state: &mut [f32], init: &[f32]) {
    state.iter_mut().for_each(|s| *s = 0.0);
    state.iter_mut().zip(init).for_each(|(s, v)| *s = *v);
}

/// Input projection with bias, `pre = W x + b`, of every gate: the start of every cell's step.
#[inline(always)]
fn input_projection<const I: usize>(p: &Params<'_>, x: &[f32; I], pre: &mut [f32]) {
    project(p.kernel, x, pre);
    add(pre, p.bias);
}

/// An LSTM layer (gates `i f g o`) of input `I` and hidden size `H`, its weights read in place from
/// the blob and its state `h`, `c` kept inside. Peepholes, a coupled input and forget gate, clipping
/// and the layer's activations are honoured as [`crate::Runtime`] does.
///
/// ```
/// # fn demo(blob: &[u8]) -> Result<(), tinyrnn::Error> {
/// let model = tinyrnn::Model::open(blob)?;
/// let mut lstm = tinyrnn::sized::Lstm::<3, 32>::open(&model, 0)?;
/// for x in [[0.1, 0.2, 0.3], [0.0, -0.5, 1.0]] {
///     let h = lstm.step(&x)?;
///     # let _ = h;
/// }
/// lstm.reset();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Lstm<'a, const I: usize, const H: usize> {
    params: Params<'a>,
    input_forget: bool,
    h: [f32; H],
    c: [f32; H],
    /// Gate pre-activations, `i f g o`.
    gates: [[f32; H]; 4],
}

impl<'a, const I: usize, const H: usize> Lstm<'a, I, H> {
    /// Opens layer `layer` (counting from 0) of `model`, which must be a forward LSTM with f32 weights,
    /// input width `I` and hidden size `H`; otherwise [`Error::SizedMismatch`] says what differs. The
    /// state starts at the layer's initial value.
    pub fn open(model: &Model<'a>, layer: usize) -> Result<Self, Error> {
        let (params, cell) = open(
            model,
            layer,
            "LSTM",
            |c| matches!(c, Cell::Lstm { .. }),
            I,
            H,
        )?;
        let mut lstm = Self {
            params,
            input_forget: matches!(cell, Cell::Lstm { input_forget: true }),
            h: [0.0; H],
            c: [0.0; H],
            gates: [[0.0; H]; 4],
        };
        lstm.reset();
        Ok(lstm)
    }

    /// Returns the state to its initial value.
    pub fn reset(&mut self) {
        reset_state(&mut self.h, self.params.initial_h);
        reset_state(&mut self.c, self.params.initial_c);
    }

    /// The hidden state `h`, the layer's output after the last step.
    pub fn h(&self) -> &[f32; H] {
        &self.h
    }

    /// The cell state `c`.
    pub fn c(&self) -> &[f32; H] {
        &self.c
    }

    /// Feeds one timestep and returns the new `h`. An input holding a NaN or an infinity is refused
    /// ([`Error::NonFiniteInput`], state unchanged); a step that leaves one in the state resets it
    /// ([`Error::StateOverflow`]), as [`crate::Runtime::step`] does.
    pub fn step(&mut self, x: &[f32; I]) -> Result<&[f32; H], Error> {
        if let Some(index) = first_non_finite(x) {
            return Err(Error::NonFiniteInput { index });
        }
        self.advance(x);
        if first_non_finite(&self.h)
            .or_else(|| first_non_finite(&self.c))
            .is_some()
        {
            self.reset();
            return Err(Error::StateOverflow);
        }
        Ok(&self.h)
    }

    /// The cell body of [`crate::cell`]'s LSTM with every length a constant.
    #[inline]
    fn advance(&mut self, x: &[f32; I]) {
        let p = &self.params;
        input_projection(p, x, self.gates.as_flattened_mut());
        project_add(p.recurrent, &self.h, self.gates.as_flattened_mut());
        let [i, f, g, o] = &mut self.gates;
        let peephole = |k: usize| p.peephole.get(k * H..(k + 1) * H).unwrap_or(&[]);
        add_product(i, peephole(0), &self.c);
        add_product(f, peephole(1), &self.c);
        clip(i, p.clip);
        clip(f, p.clip);
        clip(g, p.clip);
        let (ga, act) = (p.gate_activation, p.activation);
        for (((c, i), f), g) in self
            .c
            .iter_mut()
            .zip(i.iter_mut())
            .zip(f.iter_mut())
            .zip(g.iter())
        {
            *i = scalar(ga, *i);
            *f = if self.input_forget {
                1.0 - *i
            } else {
                scalar(ga, *f)
            };
            *c = *f * *c + *i * scalar(act, *g);
        }
        add_product(o, peephole(2), &self.c);
        clip(o, p.clip);
        for ((h, o), c) in self.h.iter_mut().zip(o.iter()).zip(self.c.iter()) {
            *h = scalar(ga, *o) * scalar(act, *c);
        }
    }
}

/// A GRU layer (gates `z r n`, reset after or before the recurrent projection, as the blob says) of
/// input `I` and hidden size `H`, weights in the blob and state `h` inside.
///
/// ```
/// # fn demo(blob: &[u8]) -> Result<(), tinyrnn::Error> {
/// let model = tinyrnn::Model::open(blob)?;
/// let mut gru = tinyrnn::sized::Gru::<7, 16>::open(&model, 0)?;
/// let h = gru.step(&[0.0; 7])?;
/// # let _ = h;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Gru<'a, const I: usize, const H: usize> {
    params: Params<'a>,
    reset_after: bool,
    h: [f32; H],
    /// Input projections, `z r n`.
    gates: [[f32; H]; 3],
    /// Recurrent projections `z r n` (reset-after), or `r ⊙ h` in the first block (reset-before).
    recurrent: [[f32; H]; 3],
}

impl<'a, const I: usize, const H: usize> Gru<'a, I, H> {
    /// Opens layer `layer` of `model`, which must be a forward GRU with f32 weights, input width `I` and
    /// hidden size `H`; otherwise [`Error::SizedMismatch`]. The state starts at its initial value.
    pub fn open(model: &Model<'a>, layer: usize) -> Result<Self, Error> {
        let (params, cell) = open(model, layer, "GRU", |c| matches!(c, Cell::Gru { .. }), I, H)?;
        let mut gru = Self {
            params,
            reset_after: matches!(cell, Cell::Gru { reset_after: true }),
            h: [0.0; H],
            gates: [[0.0; H]; 3],
            recurrent: [[0.0; H]; 3],
        };
        gru.reset();
        Ok(gru)
    }

    /// Returns the state to its initial value.
    pub fn reset(&mut self) {
        reset_state(&mut self.h, self.params.initial_h);
    }

    /// The hidden state `h`, the layer's output after the last step.
    pub fn h(&self) -> &[f32; H] {
        &self.h
    }

    /// Feeds one timestep and returns the new `h`; bad numbers as in [`Lstm::step`].
    pub fn step(&mut self, x: &[f32; I]) -> Result<&[f32; H], Error> {
        if let Some(index) = first_non_finite(x) {
            return Err(Error::NonFiniteInput { index });
        }
        self.advance(x);
        if first_non_finite(&self.h).is_some() {
            self.reset();
            return Err(Error::StateOverflow);
        }
        Ok(&self.h)
    }

    /// The cell body of [`crate::cell`]'s GRU with every length a constant.
    #[inline]
    fn advance(&mut self, x: &[f32; I]) {
        let p = &self.params;
        input_projection(p, x, self.gates.as_flattened_mut());
        let [z, r, n] = &mut self.gates;
        if self.reset_after {
            let rh = self.recurrent.as_flattened_mut();
            project(p.recurrent, &self.h, rh);
            add(rh, p.recurrent_bias);
            let [rh_z, rh_r, rh_n] = &self.recurrent;
            for (gate, rh) in [(&mut *z, rh_z), (&mut *r, rh_r)] {
                add(gate, rh);
                clip(gate, p.clip);
                apply(p.gate_activation, gate);
            }
            add_product(n, r, rh_n);
        } else {
            let (zr_rows, n_rows) = p
                .recurrent
                .split_at_checked(2 * H * H)
                .unwrap_or((p.recurrent, &[]));
            let (z_rows, r_rows) = zr_rows.split_at_checked(H * H).unwrap_or((zr_rows, &[]));
            for (gate, rows) in [(&mut *z, z_rows), (&mut *r, r_rows)] {
                project_add(rows, &self.h, gate);
                clip(gate, p.clip);
                apply(p.gate_activation, gate);
            }
            let rh = &mut self.recurrent[0];
            rh.iter_mut()
                .zip(r.iter().zip(self.h.iter()))
                .for_each(|(v, (r, h))| *v = r * h);
            project_add(n_rows, rh, n);
        }
        clip(n, p.clip);
        apply(p.activation, n);
        for ((h, z), n) in self.h.iter_mut().zip(z.iter()).zip(n.iter()) {
            *h = (1.0 - z) * n + z * *h;
        }
    }
}

/// A SimpleRNN layer, `h' = act(W x + b + R h)`, of input `I` and hidden size `H`, weights in the blob
/// and state `h` inside.
///
/// ```
/// # fn demo(blob: &[u8]) -> Result<(), tinyrnn::Error> {
/// let model = tinyrnn::Model::open(blob)?;
/// let mut rnn = tinyrnn::sized::SimpleRnn::<3, 2>::open(&model, 0)?;
/// let h = rnn.step(&[1.0, 2.0, 3.0])?;
/// # let _ = h;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SimpleRnn<'a, const I: usize, const H: usize> {
    params: Params<'a>,
    h: [f32; H],
    pre: [f32; H],
}

impl<'a, const I: usize, const H: usize> SimpleRnn<'a, I, H> {
    /// Opens layer `layer` of `model`, which must be a forward SimpleRNN with f32 weights, input width
    /// `I` and hidden size `H`; otherwise [`Error::SizedMismatch`]. The state starts at its initial
    /// value.
    pub fn open(model: &Model<'a>, layer: usize) -> Result<Self, Error> {
        let (params, _) = open(
            model,
            layer,
            "SimpleRNN",
            |c| matches!(c, Cell::SimpleRnn),
            I,
            H,
        )?;
        let mut rnn = Self {
            params,
            h: [0.0; H],
            pre: [0.0; H],
        };
        rnn.reset();
        Ok(rnn)
    }

    /// Returns the state to its initial value.
    pub fn reset(&mut self) {
        reset_state(&mut self.h, self.params.initial_h);
    }

    /// The hidden state `h`, the layer's output after the last step.
    pub fn h(&self) -> &[f32; H] {
        &self.h
    }

    /// Feeds one timestep and returns the new `h`; bad numbers as in [`Lstm::step`].
    pub fn step(&mut self, x: &[f32; I]) -> Result<&[f32; H], Error> {
        if let Some(index) = first_non_finite(x) {
            return Err(Error::NonFiniteInput { index });
        }
        let p = &self.params;
        input_projection(p, x, &mut self.pre);
        project_add(p.recurrent, &self.h, &mut self.pre);
        clip(&mut self.pre, p.clip);
        self.h = self.pre;
        apply(p.activation, &mut self.h);
        if first_non_finite(&self.h).is_some() {
            self.reset();
            return Err(Error::StateOverflow);
        }
        Ok(&self.h)
    }
}
