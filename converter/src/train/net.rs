//! The network being trained: its parameters as one flat vector, a forward pass that keeps what
//! backpropagation needs, and backpropagation through time written out by hand.
//!
//! The forward pass computes exactly what the engine computes, in the same order of operations, and in
//! f32 it uses the engine's own activation functions ([`tinyrnn::activation`]): a trained model gives
//! the same numbers in training and on the device. The maths is generic over [`Real`] so that the
//! gradient tests can run it in f64.
//!
//! Gate order is the engine's: LSTM `i f g o`, GRU `z r n` (reset-after, with a separate recurrent bias).

use anyhow::{ensure, Result};
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};
use tinyrnn::activation::{scalar, sigmoid};
use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Embedding, Input, InputKind, InputLayout,
    IoLayout, Layer, Merge, OutputLayout, Recurrent, Residual,
};

use super::optim::Rng;
use super::{Architecture, CellKind, Head};
use crate::spec::{ModelSpec, Tensor};

/// The float type the maths runs in: f32 for training (the engine's functions), f64 for gradient checks.
pub(crate) trait Real:
    Copy
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts from f32.
    fn from_f32(v: f32) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// `1 / (1 + e^-x)`.
    fn sigmoid(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Softmax over `values`, in place (in f32 the engine's own).
    fn softmax(values: &mut [Self]);
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn sigmoid(self) -> Self {
        sigmoid(self)
    }
    fn tanh(self) -> Self {
        scalar(Activation::Tanh, self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn softmax(values: &mut [Self]) {
        tinyrnn::activation::apply(Activation::Softmax, values);
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn softmax(values: &mut [Self]) {
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for v in values.iter_mut() {
            *v = (*v - max).exp();
            total += *v;
        }
        values.iter_mut().for_each(|v| *v /= total);
    }
}

/// `Σ a_i b_i`, summed left to right as the engine's f32 kernel does.
#[inline]
fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    a.iter().zip(b).fold(R::ZERO, |acc, (x, y)| acc + *x * *y)
}

/// `y = W x`, `W` row-major with `x.len()` columns.
#[inline]
fn matvec<R: Real>(w: &[R], x: &[R], y: &mut [R]) {
    for (out, row) in y.iter_mut().zip(w.chunks_exact(x.len())) {
        *out = dot(row, x);
    }
}

/// `G += a ⊗ b`, `G` row-major `a.len() × b.len()`.
#[inline]
fn outer_add<R: Real>(g: &mut [R], a: &[R], b: &[R]) {
    for (row, &ai) in g.chunks_exact_mut(b.len()).zip(a) {
        row.iter_mut().zip(b).for_each(|(g, &bj)| *g += ai * bj);
    }
}

/// `y += Wᵀ a`, `W` row-major `a.len() × y.len()`.
#[inline]
fn matvec_t_add<R: Real>(w: &[R], a: &[R], y: &mut [R]) {
    for (row, &ai) in w.chunks_exact(y.len()).zip(a) {
        y.iter_mut().zip(row).for_each(|(y, &wij)| *y += wij * ai);
    }
}

#[inline]
fn add_to<R: Real>(y: &mut [R], x: &[R]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += *x);
}

/// Where one direction's tensors sit in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
struct DirParams {
    kernel: usize,
    recurrent: usize,
    bias: usize,
    /// GRU only.
    recurrent_bias: Option<usize>,
}

#[derive(Clone, Debug)]
struct RecLayer {
    cell: CellKind,
    input: usize,
    hidden: usize,
    gates: usize,
    dirs: Vec<DirParams>,
    sequences: bool,
    /// Two directions added, not concatenated.
    merge_sum: bool,
}

impl RecLayer {
    fn width(&self) -> usize {
        if self.merge_sum {
            self.hidden
        } else {
            self.hidden * self.dirs.len()
        }
    }

    /// Where direction `pass` sits in each step's output.
    fn offset(&self, pass: usize) -> usize {
        if self.merge_sum {
            0
        } else {
            pass * self.hidden
        }
    }
}

/// The network of an [`Architecture`]: where every tensor sits in the flat parameter vector.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    pub arch: Architecture,
    recs: Vec<RecLayer>,
    head_weight: usize,
    head_bias: usize,
    head_in: usize,
    head_out: usize,
    /// Skip weights and bias.
    skip: Option<(usize, usize)>,
    /// Input feature of each target, for window normalisation and the skip path.
    residual_inputs: Vec<usize>,
    /// Token models: offset of the `vocabulary × features` embedding table, whose rows are the first
    /// recurrent layer's input.
    embedding: Option<usize>,
    /// Number of parameters.
    pub size: usize,
}

/// What one window's forward pass keeps for the backward pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache<R> {
    /// The window after normalisation, `T × F` (token models: the embedding rows of `ids`).
    x: Vec<R>,
    /// Token models: the ids of the chunk last run.
    ids: Vec<u32>,
    /// Raw window values of each target's input feature, `targets × T`.
    series: Vec<R>,
    /// Each target's added last value.
    last: Vec<R>,
    layers: Vec<LayerCache<R>>,
    /// The forecast, `horizon × targets`.
    pub y: Vec<R>,
    dy: Vec<R>,
    scratch: Vec<R>,
}

#[derive(Clone, Debug, Default)]
struct LayerCache<R> {
    /// `T × width` with sequences, else `width`.
    out: Vec<R>,
    d_out: Vec<R>,
    d_in: Vec<R>,
    dirs: Vec<DirCache<R>>,
}

#[derive(Clone, Debug, Default)]
struct DirCache<R> {
    /// States in processing order: `h[0]` the initial state, `h[k + 1]` after the k-th step read.
    h: Vec<R>,
    c: Vec<R>,
    /// Gate values after their activations, per step read.
    gates: Vec<R>,
    /// GRU: `R_n h + rb_n`, per step read.
    rn: Vec<R>,
}

impl Net {
    /// Lays out the parameters of `arch`, checking that it describes a model the engine can run.
    pub fn new(arch: &Architecture) -> Result<Net> {
        ensure!(
            arch.layers >= 1,
            "a model needs at least one recurrent layer"
        );
        ensure!(arch.hidden >= 1, "the hidden size must be at least 1");
        ensure!(
            arch.window >= 1 && arch.horizon >= 1,
            "window and horizon must be at least 1"
        );
        ensure!(
            arch.features >= 1 && arch.targets >= 1,
            "a model needs at least one input feature and one target"
        );
        ensure!(
            arch.layers <= 8,
            "at most 8 recurrent layers (a blob holds 16 layers)"
        );
        ensure!(
            arch.target_inputs.len() == arch.targets,
            "{} targets but {} target-input entries",
            arch.targets,
            arch.target_inputs.len()
        );
        if let Head::KeepLast = arch.head {
            ensure!(
                arch.horizon <= arch.window,
                "the keep-last head keeps the last {} steps of a window of {}; the horizon must not exceed the window",
                arch.horizon,
                arch.window
            );
        }
        let mut residual_inputs = Vec::new();
        if arch.window_norm || arch.skip {
            ensure!(
                arch.targets <= tinyrnn::format::MAX_RESIDUAL_TARGETS,
                "window normalisation and the skip path support at most {} targets",
                tinyrnn::format::MAX_RESIDUAL_TARGETS
            );
            for (j, t) in arch.target_inputs.iter().enumerate() {
                match t {
                    Some(f) if *f < arch.features => residual_inputs.push(*f),
                    _ => anyhow::bail!(
                        "window normalisation and the skip path need every target among the inputs; target {j} is not"
                    ),
                }
            }
        }
        let gates = match arch.cell {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        };
        let mut size = 0;
        let mut take = |n: usize| {
            let at = size;
            size += n;
            at
        };
        let mut recs = Vec::new();
        let mut input = arch.features;
        let directions = if arch.bidirectional { 2 } else { 1 };
        for l in 0..arch.layers {
            let h = arch.hidden;
            let dirs = (0..directions)
                .map(|_| DirParams {
                    kernel: take(gates * h * input),
                    recurrent: take(gates * h * h),
                    bias: take(gates * h),
                    recurrent_bias: matches!(arch.cell, CellKind::Gru).then(|| take(gates * h)),
                })
                .collect();
            let last = l + 1 == arch.layers;
            let rec = RecLayer {
                cell: arch.cell,
                input,
                hidden: h,
                gates,
                dirs,
                sequences: !last || matches!(arch.head, Head::KeepLast),
                merge_sum: arch.bidirectional && arch.merge_sum,
            };
            input = rec.width();
            recs.push(rec);
        }
        let head_in = input;
        let head_out = match arch.head {
            Head::Dense => arch.horizon * arch.targets,
            Head::KeepLast => arch.targets,
        };
        let head_weight = take(head_out * head_in);
        let head_bias = take(head_out);
        let maps = if arch.skip_per_target {
            arch.targets
        } else {
            1
        };
        let skip = arch.skip.then(|| {
            (
                take(maps * arch.horizon * arch.window),
                take(maps * arch.horizon),
            )
        });
        Ok(Net {
            arch: arch.clone(),
            recs,
            head_weight,
            head_bias,
            head_in,
            head_out,
            skip,
            residual_inputs,
            embedding: None,
            size,
        })
    }

    /// Initial parameters: Glorot-uniform kernels, orthogonal recurrent kernels per gate block, zero
    /// biases except the LSTM forget gate's (1), and a zero skip path (the model starts near persistence
    /// when the window is normalised).
    pub fn init(&self, rng: &mut Rng) -> Vec<f32> {
        let mut p = vec![0.0f32; self.size];
        let glorot = |rng: &mut Rng, p: &mut [f32], fan_in: usize, fan_out: usize| {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
            p.iter_mut()
                .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * limit) as f32);
        };
        for rec in &self.recs {
            let (g, h) = (rec.gates, rec.hidden);
            for d in &rec.dirs {
                glorot(
                    rng,
                    &mut p[d.kernel..d.kernel + g * h * rec.input],
                    rec.input,
                    g * h,
                );
                for block in 0..g {
                    let at = d.recurrent + block * h * h;
                    orthogonal(rng, &mut p[at..at + h * h], h);
                }
                if let CellKind::Lstm = rec.cell {
                    p[d.bias + h..d.bias + 2 * h].fill(1.0);
                }
            }
        }
        glorot(
            rng,
            &mut p[self.head_weight..self.head_weight + self.head_out * self.head_in],
            self.head_in,
            self.head_out,
        );
        p
    }

    /// Offsets of target `j`'s skip weights and bias.
    fn skip_block(&self, sw: usize, sb: usize, j: usize) -> (usize, usize) {
        if self.arch.skip_per_target {
            let h = self.arch.horizon;
            (sw + j * h * self.arch.window, sb + j * h)
        } else {
            (sw, sb)
        }
    }

    /// Starts the skip path at the least-squares linear forecaster of the training windows (shared by
    /// all targets, over each target's input series after window normalisation) and the head at zero,
    /// so training begins from the best linear model and the recurrent layers learn what it misses.
    /// Does nothing without a skip path.
    pub fn init_skip(&self, p: &mut [f32], train: &super::Windows) {
        let Some((sw0, sb0)) = self.skip else { return };
        let a = &self.arch;
        let groups: Vec<Vec<usize>> = if a.skip_per_target {
            (0..a.targets).map(|j| vec![j]).collect()
        } else {
            vec![(0..a.targets).collect()]
        };
        for group in groups {
            let (sw, sb) = self.skip_block(sw0, sb0, group[0]);
            if let Some(w) = self.least_squares(train, &group) {
                let (t_len, h_len) = (a.window, a.horizon);
                for k in 0..h_len {
                    for t in 0..t_len {
                        p[sw + k * t_len + t] = w[t * h_len + k] as f32;
                    }
                    p[sb + k] = w[t_len * h_len + k] as f32;
                }
            }
        }
        p[self.head_weight..self.head_weight + self.head_out * self.head_in].fill(0.0);
    }

    /// Least squares from the (normalised) input series of `targets` to their horizon, with a bias
    /// row last: `(window + 1) × horizon` weights.
    fn least_squares(&self, train: &super::Windows, targets: &[usize]) -> Option<Vec<f64>> {
        let a = &self.arch;
        let (t_len, f_len, h_len) = (a.window, a.features, a.horizon);
        let n = t_len + 1;
        let mut xtx = vec![0.0f64; n * n];
        let mut xty = vec![0.0f64; n * h_len];
        let mut s = vec![0.0f64; n];
        for i in 0..train.len() {
            let (x, y) = (train.input(i), train.output(i));
            for &j in targets {
                let f = self.residual_inputs[j];
                let last = if a.window_norm {
                    x[(t_len - 1) * f_len + f]
                } else {
                    0.0
                };
                for t in 0..t_len {
                    s[t] = f64::from(x[t * f_len + f] - last);
                }
                s[t_len] = 1.0;
                for r in 0..n {
                    let row = &mut xtx[r * n..(r + 1) * n];
                    row.iter_mut().zip(&s).for_each(|(v, sc)| *v += s[r] * sc);
                    for k in 0..h_len {
                        xty[r * h_len + k] += s[r] * f64::from(y[k * a.targets + j] - last);
                    }
                }
            }
        }
        // A small ridge keeps the system solvable when a series is constant.
        let ridge = 1e-6 * (0..n).map(|r| xtx[r * n + r]).sum::<f64>() / n as f64 + 1e-12;
        (0..n).for_each(|r| xtx[r * n + r] += ridge);
        solve(xtx, xty, n, h_len)
    }

    /// A cache sized for this network.
    pub fn cache<R: Real>(&self) -> Cache<R> {
        let a = &self.arch;
        let t = a.window;
        let layers = self
            .recs
            .iter()
            .map(|rec| {
                let h = rec.hidden;
                LayerCache {
                    out: vec![R::ZERO; if rec.sequences { t } else { 1 } * rec.width()],
                    d_out: vec![R::ZERO; if rec.sequences { t } else { 1 } * rec.width()],
                    d_in: vec![R::ZERO; t * rec.input],
                    dirs: rec
                        .dirs
                        .iter()
                        .map(|_| DirCache {
                            h: vec![R::ZERO; (t + 1) * h],
                            c: vec![R::ZERO; (t + 1) * h],
                            gates: vec![R::ZERO; t * rec.gates * h],
                            rn: vec![R::ZERO; t * h],
                        })
                        .collect(),
                }
            })
            .collect();
        let widest = self
            .recs
            .iter()
            .map(|r| r.gates * r.hidden)
            .max()
            .unwrap_or(0);
        Cache {
            x: vec![R::ZERO; t * a.features],
            ids: vec![0; t],
            series: vec![R::ZERO; a.targets * t],
            last: vec![R::ZERO; a.targets],
            layers,
            y: vec![R::ZERO; a.horizon * a.targets],
            dy: vec![R::ZERO; a.horizon * a.targets],
            scratch: vec![R::ZERO; 5 * widest + a.horizon],
        }
    }

    /// Runs one window (`T × F` values in model units) and leaves the forecast in `cache.y`.
    pub fn forward<R: Real>(&self, p: &[R], window: &[f32], cache: &mut Cache<R>) {
        let a = &self.arch;
        let (t_len, f_len) = (a.window, a.features);
        let last_row = &window[(t_len - 1) * f_len..t_len * f_len];
        for (x, (i, &v)) in cache.x.iter_mut().zip(window.iter().enumerate()) {
            *x = if a.window_norm {
                R::from_f32(v - last_row[i % f_len])
            } else {
                R::from_f32(v)
            };
        }
        for (j, &f) in self.residual_inputs.iter().enumerate() {
            let last = if a.window_norm { last_row[f] } else { 0.0 };
            cache.last[j] = R::from_f32(last);
            for t in 0..t_len {
                cache.series[j * t_len + t] = R::from_f32(window[t * f_len + f] - last);
            }
        }
        self.forward_layers(p, cache, false);
    }

    /// Token models: runs one chunk of `window` token ids and leaves the per-step scores (logits, before
    /// the softmax) in `cache.y`, `window × vocabulary`. With `carry` every recurrent layer starts from
    /// the state the previous chunk run with this cache ended in (truncated backpropagation through time:
    /// the gradient stops at the chunk's start); otherwise from zero.
    pub fn forward_tokens<R: Real>(&self, p: &[R], ids: &[u32], cache: &mut Cache<R>, carry: bool) {
        let Some(table) = self.embedding else { return };
        let width = self.arch.features;
        cache.ids.copy_from_slice(ids);
        for (x, &id) in cache.x.chunks_exact_mut(width).zip(ids) {
            let at = table + id as usize * width;
            x.copy_from_slice(&p[at..at + width]);
        }
        self.forward_layers(p, cache, carry);
    }

    /// The recurrent layers and the head over `cache.x`.
    fn forward_layers<R: Real>(&self, p: &[R], cache: &mut Cache<R>, carry: bool) {
        let a = &self.arch;
        let t_len = a.window;
        for l in 0..self.recs.len() {
            let (before, rest) = cache.layers.split_at_mut(l);
            let input: &[R] = if l == 0 { &cache.x } else { &before[l - 1].out };
            self.rec_forward(
                p,
                &self.recs[l],
                input,
                &mut rest[0],
                &mut cache.scratch,
                carry,
            );
        }
        let top = &cache.layers[self.recs.len() - 1].out;
        let (w, b) = (
            &p[self.head_weight..self.head_weight + self.head_out * self.head_in],
            &p[self.head_bias..self.head_bias + self.head_out],
        );
        match a.head {
            Head::Dense => {
                matvec(w, top, &mut cache.y);
                add_to(&mut cache.y, b);
            }
            Head::KeepLast => {
                let first = t_len - a.horizon;
                for (s, y) in cache.y.chunks_exact_mut(a.targets).enumerate() {
                    let h = &top[(first + s) * self.head_in..(first + s + 1) * self.head_in];
                    matvec(w, h, y);
                    add_to(y, b);
                }
            }
        }
        if !self.residual_inputs.is_empty() {
            let targets = a.targets;
            let projected = &mut cache.scratch[..a.horizon];
            for j in 0..targets {
                let last = cache.last[j];
                match self.skip {
                    Some((sw, sb)) => {
                        let (sw, sb) = self.skip_block(sw, sb, j);
                        let series = &cache.series[j * t_len..(j + 1) * t_len];
                        matvec(&p[sw..sw + a.horizon * t_len], series, projected);
                        add_to(projected, &p[sb..sb + a.horizon]);
                        for (s, pr) in projected.iter().enumerate() {
                            cache.y[s * targets + j] += last + *pr;
                        }
                    }
                    None => {
                        for s in 0..a.horizon {
                            cache.y[s * targets + j] += last;
                        }
                    }
                }
            }
        }
    }

    fn rec_forward<R: Real>(
        &self,
        p: &[R],
        rec: &RecLayer,
        input: &[R],
        lc: &mut LayerCache<R>,
        scratch: &mut [R],
        carry: bool,
    ) {
        let t_len = self.arch.window;
        let (h_len, g) = (rec.hidden, rec.gates);
        let width = rec.width();
        for (pass, (d, dc)) in rec.dirs.iter().zip(lc.dirs.iter_mut()).enumerate() {
            let reversed = pass == 1;
            if carry {
                let last = t_len * h_len..(t_len + 1) * h_len;
                dc.h.copy_within(last.clone(), 0);
                dc.c.copy_within(last, 0);
            } else {
                dc.h[..h_len].fill(R::ZERO);
                dc.c[..h_len].fill(R::ZERO);
            }
            for k in 0..t_len {
                let t = if reversed { t_len - 1 - k } else { k };
                let x = &input[t * rec.input..(t + 1) * rec.input];
                let (h_prev, h_next) = dc.h.split_at_mut((k + 1) * h_len);
                let (c_prev, c_next) = dc.c.split_at_mut((k + 1) * h_len);
                cell_forward(
                    p,
                    rec,
                    d,
                    x,
                    &h_prev[k * h_len..],
                    &c_prev[k * h_len..],
                    &mut dc.gates[k * g * h_len..(k + 1) * g * h_len],
                    &mut dc.rn[k * h_len..(k + 1) * h_len],
                    &mut h_next[..h_len],
                    &mut c_next[..h_len],
                    scratch,
                );
                if rec.sequences {
                    let at = t * width + rec.offset(pass);
                    merge(rec, pass, &mut lc.out[at..at + h_len], &h_next[..h_len]);
                }
            }
            if !rec.sequences {
                let at = rec.offset(pass);
                merge(
                    rec,
                    pass,
                    &mut lc.out[at..at + h_len],
                    &dc.h[t_len * h_len..(t_len + 1) * h_len],
                );
            }
        }
    }

    /// Sets the forecast's loss gradient `scale · (y − target)` (the gradient of `scale/2 · Σ (y − t)²`)
    /// for [`Net::backward`]; returns the window's sum of squared errors.
    pub fn set_loss_gradient<R: Real>(
        &self,
        cache: &mut Cache<R>,
        target: &[f32],
        scale: R,
    ) -> f64 {
        let mut sse = 0.0;
        for ((d, y), t) in cache.dy.iter_mut().zip(&cache.y).zip(target) {
            let e = *y - R::from_f32(*t);
            sse += e.to_f64() * e.to_f64();
            *d = scale * e;
        }
        sse
    }

    /// Adds the gradient of `Σ dy · y` for the window last run by [`Net::forward`] to `grad`, where `dy`
    /// is `cache.dy` (set by the caller to the loss gradient of the forecast).
    pub fn backward<R: Real>(&self, p: &[R], cache: &mut Cache<R>, grad: &mut [R]) {
        let a = &self.arch;
        let t_len = a.window;
        if let Some((sw, sb)) = self.skip {
            for j in 0..a.targets {
                let (sw, sb) = self.skip_block(sw, sb, j);
                let series = &cache.series[j * t_len..(j + 1) * t_len];
                for s in 0..a.horizon {
                    let d = cache.dy[s * a.targets + j];
                    grad[sb + s] += d;
                    let row = &mut grad[sw + s * t_len..sw + (s + 1) * t_len];
                    row.iter_mut().zip(series).for_each(|(g, x)| *g += d * *x);
                }
            }
        }
        let top_index = self.recs.len() - 1;
        let w = &p[self.head_weight..self.head_weight + self.head_out * self.head_in];
        {
            let top = &mut cache.layers[top_index];
            top.d_out.fill(R::ZERO);
            match a.head {
                Head::Dense => {
                    outer_add(
                        &mut grad
                            [self.head_weight..self.head_weight + self.head_out * self.head_in],
                        &cache.dy,
                        &top.out,
                    );
                    add_to(
                        &mut grad[self.head_bias..self.head_bias + self.head_out],
                        &cache.dy,
                    );
                    matvec_t_add(w, &cache.dy, &mut top.d_out);
                }
                Head::KeepLast => {
                    let first = t_len - a.horizon;
                    let hi = self.head_in;
                    for (s, dy) in cache.dy.chunks_exact(a.targets).enumerate() {
                        let row = first + s;
                        outer_add(
                            &mut grad[self.head_weight..self.head_weight + self.head_out * hi],
                            dy,
                            &top.out[row * hi..(row + 1) * hi],
                        );
                        add_to(
                            &mut grad[self.head_bias..self.head_bias + self.head_out],
                            dy,
                        );
                        matvec_t_add(w, dy, &mut top.d_out[row * hi..(row + 1) * hi]);
                    }
                }
            }
        }
        for l in (0..self.recs.len()).rev() {
            let (before, rest) = cache.layers.split_at_mut(l);
            let input: &[R] = if l == 0 { &cache.x } else { &before[l - 1].out };
            let lc = &mut rest[0];
            let need_dx = l > 0 || self.embedding.is_some();
            self.rec_backward(
                p,
                &self.recs[l],
                input,
                lc,
                grad,
                need_dx,
                &mut cache.scratch,
            );
            if l > 0 {
                let below = &mut before[l - 1];
                below.d_out.copy_from_slice(&lc.d_in);
            }
        }
        if let Some(table) = self.embedding {
            let width = a.features;
            for (d, &id) in cache.layers[0].d_in.chunks_exact(width).zip(&cache.ids) {
                let at = table + id as usize * width;
                add_to(&mut grad[at..at + width], d);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rec_backward<R: Real>(
        &self,
        p: &[R],
        rec: &RecLayer,
        input: &[R],
        lc: &mut LayerCache<R>,
        grad: &mut [R],
        need_dx: bool,
        scratch: &mut [R],
    ) {
        let t_len = self.arch.window;
        let (h_len, g) = (rec.hidden, rec.gates);
        let width = rec.width();
        if need_dx {
            lc.d_in.fill(R::ZERO);
        }
        let (dh_next, rest) = scratch.split_at_mut(h_len);
        let (dc_next, rest) = rest.split_at_mut(h_len);
        let (da_in, rest) = rest.split_at_mut(g * h_len);
        let (da_rec, rest) = rest.split_at_mut(g * h_len);
        let dh = &mut rest[..h_len];
        for (pass, (d, dc)) in rec.dirs.iter().zip(lc.dirs.iter()).enumerate() {
            let reversed = pass == 1;
            dh_next.fill(R::ZERO);
            dc_next.fill(R::ZERO);
            for k in (0..t_len).rev() {
                let t = if reversed { t_len - 1 - k } else { k };
                // dh: from above at this step, plus from the next step read.
                dh.copy_from_slice(dh_next);
                // A sum passes its gradient to both directions whole; a concatenation splits it.
                let at = rec.offset(pass);
                if rec.sequences {
                    add_to(dh, &lc.d_out[t * width + at..t * width + at + h_len]);
                } else if k == t_len - 1 {
                    add_to(dh, &lc.d_out[at..at + h_len]);
                }
                let h_prev = &dc.h[k * h_len..(k + 1) * h_len];
                let h_new = &dc.h[(k + 1) * h_len..(k + 2) * h_len];
                let c_prev = &dc.c[k * h_len..(k + 1) * h_len];
                let c_new = &dc.c[(k + 1) * h_len..(k + 2) * h_len];
                let gates = &dc.gates[k * g * h_len..(k + 1) * g * h_len];
                let rn = &dc.rn[k * h_len..(k + 1) * h_len];
                // Fills da_in, da_rec; dh_next gets the direct part of dh_prev; dc_next becomes dc_prev.
                cell_backward(
                    rec.cell, dh, h_prev, h_new, c_prev, c_new, gates, rn, da_in, da_rec, dh_next,
                    dc_next,
                );
                let x = &input[t * rec.input..(t + 1) * rec.input];
                let gh = g * h_len;
                outer_add(&mut grad[d.kernel..d.kernel + gh * rec.input], da_in, x);
                add_to(&mut grad[d.bias..d.bias + gh], da_in);
                outer_add(
                    &mut grad[d.recurrent..d.recurrent + gh * h_len],
                    da_rec,
                    h_prev,
                );
                if let Some(rb) = d.recurrent_bias {
                    add_to(&mut grad[rb..rb + gh], da_rec);
                }
                if need_dx {
                    matvec_t_add(
                        &p[d.kernel..d.kernel + gh * rec.input],
                        da_in,
                        &mut lc.d_in[t * rec.input..(t + 1) * rec.input],
                    );
                }
                matvec_t_add(&p[d.recurrent..d.recurrent + gh * h_len], da_rec, dh_next);
            }
        }
    }

    /// One recurrent layer of the engine model.
    fn recurrent_spec(&self, p: &[f32], rec: &RecLayer) -> Result<Layer<Tensor>> {
        let slice = |at: usize, n: usize| p[at..at + n].to_vec();
        let gh = rec.gates * rec.hidden;
        let weights = |d: &DirParams| -> Result<CellWeights<Tensor>> {
            Ok(CellWeights {
                kernel: Tensor::matrix(gh, rec.input, slice(d.kernel, gh * rec.input))?,
                recurrent: Tensor::matrix(gh, rec.hidden, slice(d.recurrent, gh * rec.hidden))?,
                bias: Some(Tensor::vector(slice(d.bias, gh))),
                recurrent_bias: d.recurrent_bias.map(|rb| Tensor::vector(slice(rb, gh))),
                peephole: None,
                initial_h: None,
                initial_c: None,
            })
        };
        Ok(Layer::Recurrent(Recurrent {
            cell: match rec.cell {
                CellKind::Rnn => Cell::SimpleRnn,
                CellKind::Lstm => Cell::Lstm {
                    input_forget: false,
                },
                CellKind::Gru => Cell::Gru { reset_after: true },
            },
            hidden: rec.hidden as u32,
            activation: Activation::Tanh,
            gate_activation: Activation::Sigmoid,
            clip: None,
            direction: if rec.dirs.len() == 2 {
                Direction::Bidirectional(if rec.merge_sum {
                    Merge::Sum
                } else {
                    Merge::Concat
                })
            } else {
                Direction::Forward
            },
            return_sequences: rec.sequences,
            forward: weights(&rec.dirs[0])?,
            backward: rec.dirs.get(1).map(weights).transpose()?,
        }))
    }

    /// The trained model as an engine model.
    pub fn to_spec(&self, p: &[f32]) -> Result<ModelSpec> {
        let a = &self.arch;
        let mut layers = Vec::new();
        if a.window_norm {
            layers.push(Layer::SubtractLast);
        }
        let slice = |at: usize, n: usize| p[at..at + n].to_vec();
        for rec in &self.recs {
            layers.push(self.recurrent_spec(p, rec)?);
        }
        if let Head::KeepLast = a.head {
            layers.push(Layer::KeepLast {
                steps: a.horizon as u32,
            });
        }
        layers.push(Layer::Dense(Dense {
            weight: Tensor::matrix(
                self.head_out,
                self.head_in,
                slice(self.head_weight, self.head_out * self.head_in),
            )?,
            bias: Some(Tensor::vector(slice(self.head_bias, self.head_out))),
            activation: Activation::Linear,
        }));
        if !self.residual_inputs.is_empty() {
            let maps = if a.skip_per_target { a.targets } else { 1 };
            let mut inputs = heapless::Vec::new();
            for &f in &self.residual_inputs {
                inputs
                    .push(u16::try_from(f)?)
                    .map_err(|_| anyhow::anyhow!("too many targets"))?;
            }
            layers.push(Layer::Residual(Residual {
                inputs,
                add_last: a.window_norm,
                skip: self
                    .skip
                    .map(|(sw, _)| {
                        let rows = maps * a.horizon;
                        Tensor::matrix(rows, a.window, slice(sw, rows * a.window))
                    })
                    .transpose()?,
                skip_bias: self
                    .skip
                    .map(|(_, sb)| Tensor::vector(slice(sb, maps * a.horizon))),
            }));
        }
        Ok(ModelSpec {
            input: Input {
                kind: InputKind::Features(a.features as u32),
                steps: Some(a.window as u32),
            },
            layers,
            io: IoLayout {
                input: InputLayout::BatchFirst,
                output: OutputLayout::BatchFirst,
            },
            name: "trained".to_string(),
            source: "tinyrnn train".to_string(),
            vocabulary: None,
            scaling: Default::default(),
            annotations: Default::default(),
            fixed: None,
        })
    }
}

/// Token models (`tinyrnn train-text`): `Embedding(vocabulary, features)` → recurrent layers that all
/// return sequences → a per-step `Dense(vocabulary, softmax)`, trained on chunks of `window` ids with the
/// state carried from chunk to chunk. The maths is the forecaster's: the embedding rows are the first
/// layer's input and the keep-last head keeps every step.
impl Net {
    /// Lays out a token model: the architecture's `features` is the embedding width, `window` the chunk
    /// length, `targets` the vocabulary.
    pub fn new_text(
        cell: CellKind,
        layers: usize,
        hidden: usize,
        embedding: usize,
        vocabulary: usize,
        chunk: usize,
    ) -> Result<Net> {
        ensure!(vocabulary >= 2, "a token model needs at least 2 tokens");
        ensure!(embedding >= 1, "the embedding width must be at least 1");
        ensure!(chunk >= 1, "the chunk length must be at least 1");
        let mut net = Net::new(&Architecture {
            cell,
            layers,
            hidden,
            bidirectional: false,
            merge_sum: false,
            head: Head::KeepLast,
            window: chunk,
            horizon: chunk,
            features: embedding,
            targets: vocabulary,
            target_inputs: vec![None; vocabulary],
            window_norm: false,
            skip: false,
            skip_per_target: false,
        })?;
        net.embedding = Some(net.size);
        net.size += vocabulary * embedding;
        Ok(net)
    }

    /// Initial parameters of a token model: [`Net::init`], and the embedding uniform in ±0.05 (Keras'
    /// default for `Embedding`).
    pub fn init_text(&self, rng: &mut Rng) -> Vec<f32> {
        let mut p = self.init(rng);
        if let Some(table) = self.embedding {
            p[table..]
                .iter_mut()
                .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * 0.05) as f32);
        }
        p
    }

    /// Sets the gradient of `scale · Σ_t −ln softmax(y_t)[next_t]` over the chunk last run by
    /// [`Net::forward_tokens`] (softmax + cross-entropy: `scale · (p_t − onehot(next_t))`) for
    /// [`Net::backward`]; returns the chunk's summed cross-entropy in nats.
    pub fn set_cross_entropy_gradient<R: Real>(
        &self,
        cache: &mut Cache<R>,
        next: &[u32],
        scale: R,
    ) -> f64 {
        let vocabulary = self.arch.targets;
        let mut nats = 0.0;
        for ((dy, y), &target) in cache
            .dy
            .chunks_exact_mut(vocabulary)
            .zip(cache.y.chunks_exact(vocabulary))
            .zip(next)
        {
            dy.copy_from_slice(y);
            R::softmax(dy);
            let target = target as usize;
            nats -= dy[target].ln().to_f64();
            dy[target] = dy[target] - R::ONE;
            dy.iter_mut().for_each(|d| *d = scale * *d);
        }
        nats
    }

    #[cfg(test)]
    /// Summed cross-entropy in nats of the chunk last run by [`Net::forward_tokens`], whose next tokens
    /// are `next`; leaves the probabilities in the cache's gradient buffer.
    pub fn cross_entropy<R: Real>(&self, cache: &mut Cache<R>, next: &[u32]) -> f64 {
        let vocabulary = self.arch.targets;
        let mut nats = 0.0;
        for ((probabilities, y), &target) in cache
            .dy
            .chunks_exact_mut(vocabulary)
            .zip(cache.y.chunks_exact(vocabulary))
            .zip(next)
        {
            probabilities.copy_from_slice(y);
            R::softmax(probabilities);
            nats -= probabilities[target as usize].ln().to_f64();
        }
        nats
    }

    /// The trained token model as an engine model: streaming (no fixed length), token-id input.
    pub fn to_text_spec(&self, p: &[f32]) -> Result<ModelSpec> {
        let table = self
            .embedding
            .ok_or_else(|| anyhow::anyhow!("not a token model"))?;
        let (vocabulary, width) = (self.arch.targets, self.arch.features);
        let mut layers = vec![Layer::Embedding(Embedding {
            table: Tensor::matrix(
                vocabulary,
                width,
                p[table..table + vocabulary * width].to_vec(),
            )?,
        })];
        for rec in &self.recs {
            layers.push(self.recurrent_spec(p, rec)?);
        }
        layers.push(Layer::Dense(Dense {
            weight: Tensor::matrix(
                self.head_out,
                self.head_in,
                p[self.head_weight..self.head_weight + self.head_out * self.head_in].to_vec(),
            )?,
            bias: Some(Tensor::vector(
                p[self.head_bias..self.head_bias + self.head_out].to_vec(),
            )),
            activation: Activation::Softmax,
        }));
        Ok(ModelSpec {
            input: Input {
                kind: InputKind::Tokens,
                steps: None,
            },
            layers,
            io: IoLayout {
                input: InputLayout::BatchFirst,
                output: OutputLayout::BatchFirst,
            },
            name: "trained".to_string(),
            source: "tinyrnn train-text".to_string(),
            vocabulary: None,
            scaling: Default::default(),
            annotations: Default::default(),
            fixed: None,
        })
    }
}

#[cfg(test)]
impl Net {
    /// The parameter vector of a spec written by [`Net::to_spec`] for this network.
    pub fn params_of(&self, spec: &ModelSpec) -> Result<Vec<f32>> {
        let mut p = vec![0.0f32; self.size];
        let mut put = |at: usize, t: &Tensor| p[at..at + t.data.len()].copy_from_slice(&t.data);
        let mut recs = self.recs.iter();
        for layer in &spec.layers {
            match layer {
                Layer::Recurrent(r) => {
                    let rec = recs
                        .next()
                        .ok_or_else(|| anyhow::anyhow!("more recurrent layers than the network"))?;
                    let dirs = [Some(&r.forward), r.backward.as_ref()];
                    for (d, w) in rec.dirs.iter().zip(dirs.into_iter().flatten()) {
                        put(d.kernel, &w.kernel);
                        put(d.recurrent, &w.recurrent);
                        if let Some(b) = &w.bias {
                            put(d.bias, b);
                        }
                        if let (Some(at), Some(b)) = (d.recurrent_bias, &w.recurrent_bias) {
                            put(at, b);
                        }
                    }
                }
                Layer::Dense(d) => {
                    put(self.head_weight, &d.weight);
                    if let Some(b) = &d.bias {
                        put(self.head_bias, b);
                    }
                }
                Layer::Residual(r) => {
                    if let (Some((sw, sb)), Some(w)) = (self.skip, &r.skip) {
                        put(sw, w);
                        if let Some(b) = &r.skip_bias {
                            put(sb, b);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Writes direction `pass`'s output `h` into `out`: copied, or added to the forward direction's for a sum.
fn merge<R: Real>(rec: &RecLayer, pass: usize, out: &mut [R], h: &[R]) {
    if rec.merge_sum && pass == 1 {
        add_to(out, h);
    } else {
        out.copy_from_slice(h);
    }
}

/// One step of one direction. Writes the gate values after activation into `gates` (LSTM `i f g o`,
/// GRU `z r n`, RNN the new state) and for a GRU `R_n h + rb_n` into `rn`.
#[allow(clippy::too_many_arguments)]
fn cell_forward<R: Real>(
    p: &[R],
    rec: &RecLayer,
    d: &DirParams,
    x: &[R],
    h_prev: &[R],
    c_prev: &[R],
    gates: &mut [R],
    rn: &mut [R],
    h: &mut [R],
    c: &mut [R],
    scratch: &mut [R],
) {
    let h_len = rec.hidden;
    let gh = rec.gates * h_len;
    let kernel = &p[d.kernel..d.kernel + gh * rec.input];
    let recurrent = &p[d.recurrent..d.recurrent + gh * h_len];
    let bias = &p[d.bias..d.bias + gh];
    // pre = W x + b, as the engine computes it.
    let pre = &mut gates[..gh];
    matvec(kernel, x, pre);
    add_to(pre, bias);
    match rec.cell {
        CellKind::Rnn => {
            // h' = tanh(W x + b + R h)
            for (v, row) in pre.iter_mut().zip(recurrent.chunks_exact(h_len)) {
                *v += dot(row, h_prev);
            }
            for (h, v) in h.iter_mut().zip(pre.iter_mut()) {
                *v = v.tanh();
                *h = *v;
            }
        }
        CellKind::Lstm => {
            // i f g o = σ, σ, tanh, σ of (W x + b + R h);  c' = f c + i g;  h' = o tanh(c')
            for (v, row) in pre.iter_mut().zip(recurrent.chunks_exact(h_len)) {
                *v += dot(row, h_prev);
            }
            let (i, rest) = pre.split_at_mut(h_len);
            let (f, rest) = rest.split_at_mut(h_len);
            let (g, o) = rest.split_at_mut(h_len);
            for k in 0..h_len {
                i[k] = i[k].sigmoid();
                f[k] = f[k].sigmoid();
                g[k] = g[k].tanh();
                c[k] = f[k] * c_prev[k] + i[k] * g[k];
                o[k] = o[k].sigmoid();
                h[k] = o[k] * c[k].tanh();
            }
        }
        CellKind::Gru => {
            // z r = σ(W x + b + R h + rb);  n = tanh(W_n x + b_n + r (R_n h + rb_n));  h' = (1−z) n + z h
            let rh = &mut scratch[..gh];
            matvec(recurrent, h_prev, rh);
            if let Some(rb) = d.recurrent_bias {
                add_to(rh, &p[rb..rb + gh]);
            }
            let (zr, n) = pre.split_at_mut(2 * h_len);
            for (v, r) in zr.iter_mut().zip(rh.iter()) {
                *v += *r;
                *v = v.sigmoid();
            }
            let r = &zr[h_len..];
            rn.copy_from_slice(&rh[2 * h_len..]);
            for k in 0..h_len {
                n[k] += r[k] * rn[k];
                n[k] = n[k].tanh();
                let z = zr[k];
                h[k] = (R::ONE - z) * n[k] + z * h_prev[k];
            }
        }
    }
}

/// Backward through one step. `dh` is the loss gradient of the new state. Fills `da_in` (gradient of the
/// input-projection pre-activations, for `W`, `b` and `x`) and `da_rec` (of the recurrent projection,
/// for `R`, `rb` and `h`); sets `dh_prev` to the part of the previous state's gradient that does not go
/// through `R`, and turns `dc` (the cell state's gradient from the next step) into the previous one's.
#[allow(clippy::too_many_arguments)]
fn cell_backward<R: Real>(
    cell: CellKind,
    dh: &[R],
    h_prev: &[R],
    h_new: &[R],
    c_prev: &[R],
    c_new: &[R],
    gates: &[R],
    rn: &[R],
    da_in: &mut [R],
    da_rec: &mut [R],
    dh_prev: &mut [R],
    dc: &mut [R],
) {
    let h_len = dh.len();
    let one = R::ONE;
    match cell {
        CellKind::Rnn => {
            for k in 0..h_len {
                let da = dh[k] * (one - h_new[k] * h_new[k]);
                da_in[k] = da;
                da_rec[k] = da;
                dh_prev[k] = R::ZERO;
            }
        }
        CellKind::Lstm => {
            for k in 0..h_len {
                let (i, f, g, o) = (
                    gates[k],
                    gates[h_len + k],
                    gates[2 * h_len + k],
                    gates[3 * h_len + k],
                );
                let tc = c_new[k].tanh();
                let d_o = dh[k] * tc;
                let d_c = dc[k] + dh[k] * o * (one - tc * tc);
                let d_i = d_c * g;
                let d_f = d_c * c_prev[k];
                let d_g = d_c * i;
                dc[k] = d_c * f;
                da_in[k] = d_i * i * (one - i);
                da_in[h_len + k] = d_f * f * (one - f);
                da_in[2 * h_len + k] = d_g * (one - g * g);
                da_in[3 * h_len + k] = d_o * o * (one - o);
                dh_prev[k] = R::ZERO;
            }
            da_rec.copy_from_slice(da_in);
        }
        CellKind::Gru => {
            for k in 0..h_len {
                let (z, r, n) = (gates[k], gates[h_len + k], gates[2 * h_len + k]);
                let d_n = dh[k] * (one - z);
                let d_z = dh[k] * (h_prev[k] - n);
                dh_prev[k] = dh[k] * z;
                let da_n = d_n * (one - n * n);
                let d_r = da_n * rn[k];
                da_in[k] = d_z * z * (one - z);
                da_in[h_len + k] = d_r * r * (one - r);
                da_in[2 * h_len + k] = da_n;
                da_rec[k] = da_in[k];
                da_rec[h_len + k] = da_in[h_len + k];
                da_rec[2 * h_len + k] = da_n * r;
            }
        }
    }
}

/// Solves `A X = B` (`A` `n × n`, `B` `n × m`) by Gaussian elimination with partial pivoting; `None`
/// when `A` is singular.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize, m: usize) -> Option<Vec<f64>> {
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if a[p * n + c].abs() < 1e-300 {
            return None;
        }
        for k in 0..n {
            a.swap(c * n + k, p * n + k);
        }
        for k in 0..m {
            b.swap(c * m + k, p * m + k);
        }
        let d = a[c * n + c];
        for r in (0..n).filter(|&r| r != c) {
            let factor = a[r * n + c] / d;
            if factor != 0.0 {
                for k in c..n {
                    a[r * n + k] -= factor * a[c * n + k];
                }
                for k in 0..m {
                    b[r * m + k] -= factor * b[c * m + k];
                }
            }
        }
    }
    for r in 0..n {
        let d = a[r * n + r];
        b[r * m..(r + 1) * m].iter_mut().for_each(|v| *v /= d);
    }
    b.iter().all(|v| v.is_finite()).then_some(b)
}

/// Fills an `n × n` block with an orthogonal matrix: Gram–Schmidt on Gaussian rows.
fn orthogonal(rng: &mut Rng, out: &mut [f32], n: usize) {
    let mut m: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for i in 0..n {
        for j in 0..i {
            let proj: f64 = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum();
            for k in 0..n {
                m[i * n + k] -= proj * m[j * n + k];
            }
        }
        let norm = (0..n)
            .map(|k| m[i * n + k] * m[i * n + k])
            .sum::<f64>()
            .sqrt();
        let norm = if norm > 1e-12 { norm } else { 1.0 };
        for k in 0..n {
            m[i * n + k] /= norm;
        }
    }
    out.iter_mut().zip(&m).for_each(|(o, v)| *o = *v as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(cell: CellKind, layers: usize, bidirectional: bool, head: Head) -> Architecture {
        Architecture {
            cell,
            layers,
            hidden: 4,
            bidirectional,
            merge_sum: false,
            head,
            window: 5,
            horizon: 2,
            features: 3,
            targets: 2,
            target_inputs: vec![Some(2), Some(0)],
            window_norm: false,
            skip: false,
            skip_per_target: false,
        }
    }

    /// Loss `½ Σ (y − t)²` of one window in f64, and its analytic gradient.
    fn loss_and_grad(net: &Net, p: &[f64], x: &[f32], t: &[f32]) -> (f64, Vec<f64>) {
        let mut cache = net.cache::<f64>();
        net.forward(p, x, &mut cache);
        let sse = net.set_loss_gradient(&mut cache, t, 1.0);
        let mut grad = vec![0.0; p.len()];
        net.backward(p, &mut cache, &mut grad);
        (sse / 2.0, grad)
    }

    fn loss(net: &Net, p: &[f64], x: &[f32], t: &[f32]) -> f64 {
        let mut cache = net.cache::<f64>();
        net.forward(p, x, &mut cache);
        cache
            .y
            .iter()
            .zip(t)
            .map(|(y, t)| (y - f64::from(*t)).powi(2))
            .sum::<f64>()
            / 2.0
    }

    /// Worst disagreement between `analytic` and central differences with step 1e-6, relative to
    /// `max(1, |analytic|, |numeric|)`. In f64 the truncation error of a central difference is
    /// O(h²·f''') ≈ 1e-12 and the rounding error ≈ 1e-16 / h = 1e-10, so a correct gradient stays far below
    /// 1e-6 while a wrong term (an error of order 1 in some derivative) lands far above it.
    fn worst_error(net: &Net, p: &[f64], x: &[f32], t: &[f32], analytic: &[f64]) -> (f64, usize) {
        let h = 1e-6;
        let mut worst = (0.0, 0);
        let mut q = p.to_vec();
        for i in 0..p.len() {
            q[i] = p[i] + h;
            let up = loss(net, &q, x, t);
            q[i] = p[i] - h;
            let down = loss(net, &q, x, t);
            q[i] = p[i];
            let numeric = (up - down) / (2.0 * h);
            let err =
                (numeric - analytic[i]).abs() / 1f64.max(numeric.abs()).max(analytic[i].abs());
            if err > worst.0 {
                worst = (err, i);
            }
        }
        worst
    }

    /// A network with random (not initial) parameters, a random window and random targets.
    fn case(a: &Architecture, seed: u64) -> (Net, Vec<f64>, Vec<f32>, Vec<f32>) {
        let net = Net::new(a).unwrap();
        let mut rng = Rng::new(seed);
        let p: Vec<f64> = net
            .init(&mut rng)
            .iter()
            .map(|&v| f64::from(v) + 0.3 * rng.normal())
            .collect();
        let x: Vec<f32> = (0..a.window * a.features)
            .map(|_| rng.normal() as f32)
            .collect();
        let t: Vec<f32> = (0..a.horizon * a.targets)
            .map(|_| rng.normal() as f32)
            .collect();
        (net, p, x, t)
    }

    fn check(a: Architecture) {
        let (net, p, x, t) = case(&a, 42);
        let (_, grad) = loss_and_grad(&net, &p, &x, &t);
        assert!(
            grad.iter().any(|g| g.abs() > 1e-3),
            "gradient is all but zero"
        );
        let (err, at) = worst_error(&net, &p, &x, &t, &grad);
        assert!(err < 1e-6, "{a:?}: parameter {at} relative error {err:e}");
    }

    #[test]
    fn rnn_gradient() {
        check(arch(CellKind::Rnn, 1, false, Head::Dense));
    }

    #[test]
    fn lstm_gradient() {
        check(arch(CellKind::Lstm, 1, false, Head::Dense));
    }

    #[test]
    fn gru_gradient() {
        check(arch(CellKind::Gru, 1, false, Head::Dense));
    }

    #[test]
    fn stacked_gradients() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            check(arch(cell, 2, false, Head::Dense));
        }
    }

    #[test]
    fn bidirectional_gradients() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            check(arch(cell, 1, true, Head::Dense));
        }
        check(arch(CellKind::Gru, 2, true, Head::KeepLast));
    }

    #[test]
    fn bidirectional_sum_gradients() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            for head in [Head::Dense, Head::KeepLast] {
                check(Architecture {
                    merge_sum: true,
                    ..arch(cell, 1, true, head)
                });
            }
        }
        check(Architecture {
            merge_sum: true,
            ..arch(CellKind::Lstm, 2, true, Head::Dense)
        });
    }

    #[test]
    fn keep_last_head_gradients() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            check(arch(cell, 1, false, Head::KeepLast));
        }
    }

    #[test]
    fn window_norm_and_skip_gradients() {
        for (window_norm, skip) in [(true, false), (false, true), (true, true)] {
            for head in [Head::Dense, Head::KeepLast] {
                for skip_per_target in [false, true] {
                    check(Architecture {
                        window_norm,
                        skip,
                        skip_per_target,
                        ..arch(CellKind::Lstm, 1, false, head)
                    });
                }
            }
        }
    }

    #[test]
    fn the_check_catches_a_wrong_gradient() {
        let (net, p, x, t) = case(&arch(CellKind::Gru, 1, false, Head::Dense), 3);
        let (_, mut grad) = loss_and_grad(&net, &p, &x, &t);
        // A wrong derivative in one recurrent weight, as a dropped term would give.
        let at = net.recs[0].dirs[0].recurrent + 5;
        grad[at] += 1e-3 * 1f64.max(grad[at].abs());
        let (err, worst) = worst_error(&net, &p, &x, &t, &grad);
        assert!(err > 1e-4 && worst == at, "{err:e} at {worst}");
    }

    /// Sum over `windows` of the MSE gradient, in f64.
    fn total_gradient(net: &Net, p: &[f64], w: &super::super::Windows) -> Vec<f64> {
        let mut grad = vec![0.0; p.len()];
        let mut cache = net.cache::<f64>();
        for i in 0..w.len() {
            net.forward(p, w.input(i), &mut cache);
            net.set_loss_gradient(&mut cache, w.output(i), 1.0);
            net.backward(p, &mut cache, &mut grad);
        }
        grad
    }

    #[test]
    fn skip_path_starts_at_the_least_squares_solution() {
        for skip_per_target in [false, true] {
            least_squares_start(Architecture {
                window_norm: true,
                skip: true,
                skip_per_target,
                window: 8,
                ..arch(CellKind::Gru, 1, false, Head::Dense)
            });
        }
    }

    fn least_squares_start(a: Architecture) {
        let net = Net::new(&a).unwrap();
        let mut rng = Rng::new(11);
        // Two noisy cycles, as windows of 8 steps → 2, targets continuing features 2 and 0.
        let rows = 200;
        let series: Vec<[f32; 3]> = (0..rows)
            .map(|r| {
                let t = r as f64 * 0.4;
                [t.sin(), t.cos(), (0.7 * t).sin() + 0.2 * rng.normal()].map(|v| v as f32)
            })
            .collect();
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        for s in 0..rows - 10 {
            inputs.extend(series[s..s + 8].iter().flatten());
            outputs.extend(series[s + 8..s + 10].iter().flat_map(|r| [r[2], r[0]]));
        }
        let w = super::super::Windows {
            window: 8,
            features: 3,
            horizon: 2,
            targets: 2,
            inputs,
            outputs,
        };
        let mut p = net.init(&mut rng);
        let before: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        net.init_skip(&mut p, &w);
        let after: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        let (sw, sb) = net.skip.unwrap();
        let maps = if a.skip_per_target { a.targets } else { 1 };
        let skip = sw..sb + maps * a.horizon;
        let largest = |g: &[f64]| g[skip.clone()].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (g0, g1) = (
            total_gradient(&net, &before, &w),
            total_gradient(&net, &after, &w),
        );
        // The loss is quadratic in the skip weights with the head at zero: at the least-squares
        // solution their gradient vanishes (up to the ridge and f32 rounding of the weights).
        assert!(
            largest(&g1) < 1e-3 * largest(&g0),
            "{} vs {}",
            largest(&g1),
            largest(&g0)
        );
        assert!(
            after[net.head_weight..net.head_weight + net.head_out * net.head_in]
                .iter()
                .all(|&v| v == 0.0)
        );
    }

    /// A token model with random (not initial) parameters and a random text of three chunks.
    fn text_case(cell: CellKind, layers: usize, seed: u64) -> (Net, Vec<f64>, Vec<u32>) {
        let (vocabulary, chunk) = (7, 5);
        let net = Net::new_text(cell, layers, 4, 3, vocabulary, chunk).unwrap();
        let mut rng = Rng::new(seed);
        let p: Vec<f64> = net
            .init_text(&mut rng)
            .iter()
            .map(|&v| f64::from(v) + 0.3 * rng.normal())
            .collect();
        let ids = (0..3 * chunk + 1)
            .map(|_| rng.below(vocabulary) as u32)
            .collect();
        (net, p, ids)
    }

    /// Cross-entropy of the second chunk of `ids` at parameters `q`, starting from the state the first
    /// chunk reached at parameters `p` (held fixed: truncated backpropagation stops at the chunk's start).
    fn second_chunk_nats(net: &Net, p: &[f64], q: &[f64], ids: &[u32]) -> f64 {
        let t = net.arch.window;
        let mut cache = net.cache::<f64>();
        net.forward_tokens(p, &ids[..t], &mut cache, false);
        net.forward_tokens(q, &ids[t..2 * t], &mut cache, true);
        net.cross_entropy(&mut cache, &ids[t + 1..2 * t + 1])
    }

    fn check_text(cell: CellKind, layers: usize) {
        let (net, p, ids) = text_case(cell, layers, 17);
        let t = net.arch.window;
        let mut cache = net.cache::<f64>();
        net.forward_tokens(&p, &ids[..t], &mut cache, false);
        net.forward_tokens(&p, &ids[t..2 * t], &mut cache, true);
        let nats = net.set_cross_entropy_gradient(&mut cache, &ids[t + 1..2 * t + 1], 1.0);
        assert!((nats - second_chunk_nats(&net, &p, &p, &ids)).abs() < 1e-12);
        let mut grad = vec![0.0; p.len()];
        net.backward(&p, &mut cache, &mut grad);
        let table = net.embedding.unwrap();
        assert!(
            grad[table..].iter().any(|g| g.abs() > 1e-3),
            "the embedding gets no gradient"
        );
        let h = 1e-6;
        let mut q = p.clone();
        for i in 0..p.len() {
            q[i] = p[i] + h;
            let up = second_chunk_nats(&net, &p, &q, &ids);
            q[i] = p[i] - h;
            let down = second_chunk_nats(&net, &p, &q, &ids);
            q[i] = p[i];
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - grad[i]).abs() / 1f64.max(numeric.abs()).max(grad[i].abs());
            assert!(
                err < 1e-6,
                "{cell:?} × {layers}: parameter {i} relative error {err:e} ({numeric} vs {})",
                grad[i]
            );
        }
    }

    #[test]
    fn token_model_gradients() {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            check_text(cell, 1);
            check_text(cell, 2);
        }
    }

    #[test]
    fn engine_streams_what_the_token_trainer_computes() {
        use crate::run::AlignedBlob;
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            for layers in [1, 2] {
                let (net, p, ids) = text_case(cell, layers, 5);
                let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
                let blob = crate::write::to_blob(&net.to_text_spec(&p32).unwrap()).unwrap();
                let aligned = AlignedBlob::new(&blob);
                let model = aligned.open().unwrap();
                let mut memory = vec![0.0; model.memory().total()];
                let mut runtime = tinyrnn::Runtime::new(&model, &mut memory).unwrap();
                let vocabulary = net.arch.targets;
                let mut output = vec![0.0f32; vocabulary];
                let mut cache = net.cache::<f32>();
                let t = net.arch.window;
                for (k, chunk) in ids.chunks_exact(t).enumerate() {
                    net.forward_tokens(&p32, chunk, &mut cache, k > 0);
                    let mut probabilities = cache.y.clone();
                    probabilities
                        .chunks_exact_mut(vocabulary)
                        .for_each(f32::softmax);
                    for (s, &id) in chunk.iter().enumerate() {
                        runtime.step_token(id, &mut output).unwrap();
                        // The same operations in the same order with the engine's functions.
                        assert_eq!(
                            output,
                            probabilities[s * vocabulary..(s + 1) * vocabulary],
                            "{cell:?} × {layers}, chunk {k}, step {s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn text_cross_entropy_gradient_is_softmax_minus_one_hot() {
        let (net, p, ids) = text_case(CellKind::Gru, 1, 3);
        let t = net.arch.window;
        let mut cache = net.cache::<f64>();
        net.forward_tokens(&p, &ids[..t], &mut cache, false);
        net.set_cross_entropy_gradient(&mut cache, &ids[1..t + 1], 0.5);
        for (row, &next) in cache.dy.chunks_exact(net.arch.targets).zip(&ids[1..]) {
            let sum: f64 = row.iter().sum();
            assert!(sum.abs() < 1e-12, "{sum}");
            assert!(row[next as usize] < 0.0 && row.iter().filter(|d| **d < 0.0).count() == 1);
        }
    }

    #[test]
    fn f32_and_f64_forward_agree() {
        let a = Architecture {
            window_norm: true,
            skip: true,
            ..arch(CellKind::Lstm, 2, true, Head::Dense)
        };
        let (net, p, x, _) = case(&a, 9);
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        let p64: Vec<f64> = p32.iter().map(|&v| f64::from(v)).collect();
        let (mut c32, mut c64) = (net.cache::<f32>(), net.cache::<f64>());
        net.forward(&p32, &x, &mut c32);
        net.forward(&p64, &x, &mut c64);
        for (a, b) in c32.y.iter().zip(&c64.y) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-5 * (1.0 + b.abs()),
                "{a} vs {b}"
            );
        }
    }
}
