//! Setup of the peer benchmark (`benches/peers.rs`): the seeded models tinyrnn runs, the same weights
//! loaded into candle-nn's LSTM and GRU, and a micro-kernel that measures the machine's f32
//! multiply-add throughput.
//!
//! `cargo bench --manifest-path bench-peers/Cargo.toml`

use std::collections::HashMap;
use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use candle_nn::rnn::{gru, lstm, GRUConfig, LSTMConfig, GRU, LSTM};
use candle_nn::VarBuilder;
use tinyrnn::cell::Mat;
use tinyrnn::format::{Cell, Layer};
use tinyrnn::Model;
use tinyrnn_conformance::{model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

/// Input width of the benchmarked layers.
pub const INPUT: usize = 3;
/// Hidden size of the benchmarked layers.
pub const HIDDEN: usize = 32;
/// Timesteps of the benchmarked window.
pub const WINDOW: usize = 96;

/// The three cells, as the conformance crate's `step` bench names them.
pub fn cells() -> [(&'static str, Cell); 3] {
    [
        (
            "lstm",
            Cell::Lstm {
                input_forget: false,
            },
        ),
        ("gru", Cell::Gru { reset_after: true }),
        ("simple_rnn", Cell::SimpleRnn),
    ]
}

/// One forward recurrent layer, input [`INPUT`], hidden [`HIDDEN`], seeded random weights: the model of
/// the conformance crate's `step` bench.
pub fn blob(cell: Cell) -> AlignedBlob {
    let mut rng = Rng::new(3);
    let spec = model(
        "bench",
        INPUT,
        None,
        vec![recurrent(
            &mut rng,
            INPUT,
            RecurrentOptions::new(cell, HIDDEN),
        )],
    );
    AlignedBlob::new(&to_blob(&spec).expect("blob"))
}

/// The seeded window of [`WINDOW`] × [`INPUT`] inputs.
pub fn window_input() -> Vec<f32> {
    Rng::new(5).values(WINDOW * INPUT, 1.0)
}

/// The f32 values of a matrix or vector of the blob.
fn values(m: &Mat<'_>) -> Vec<f32> {
    m.f32().to_vec()
}

/// The tensors of the model's only recurrent layer: kernel, recurrent kernel, bias, recurrent bias
/// (zeros when the blob has none).
fn layer_tensors(model: &Model<'_>) -> [Vec<f32>; 4] {
    let Some(Layer::Recurrent(r)) = model.layers().next() else {
        panic!("the bench model starts with a recurrent layer");
    };
    let w = &r.forward;
    let rows = r.cell.gates() * r.hidden as usize;
    let vector = |v: &Option<Mat<'_>>| v.as_ref().map_or(vec![0.0; rows], values);
    [
        values(&w.kernel),
        values(&w.recurrent),
        vector(&w.bias),
        vector(&w.recurrent_bias),
    ]
}

/// The weights in candle's names (PyTorch's `weight_ih_l0`, …).
fn var_builder(
    tensors: [Vec<f32>; 4],
    input: usize,
    hidden: usize,
    gates: usize,
) -> VarBuilder<'static> {
    let [kernel, recurrent, bias, recurrent_bias] = tensors;
    let rows = gates * hidden;
    let dev = Device::Cpu;
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &dev).expect("tensor");
    let map = HashMap::from([
        ("weight_ih_l0".to_string(), t(kernel, &[rows, input])),
        ("weight_hh_l0".to_string(), t(recurrent, &[rows, hidden])),
        ("bias_ih_l0".to_string(), t(bias, &[rows])),
        ("bias_hh_l0".to_string(), t(recurrent_bias, &[rows])),
    ]);
    VarBuilder::from_tensors(map, DType::F32, &dev)
}

/// candle-nn's LSTM with the model's weights. Both use the gate order `i f g o` and add the bias to the
/// sum of both projections; tinyrnn keeps one bias, so candle's second one is zeros.
pub fn candle_lstm(model: &Model<'_>) -> LSTM {
    let vb = var_builder(layer_tensors(model), INPUT, HIDDEN, 4);
    lstm(INPUT, HIDDEN, LSTMConfig::default(), vb).expect("candle LSTM")
}

/// candle-nn's GRU with the model's weights. candle follows PyTorch: reset-after, gate blocks `r z n`,
/// where tinyrnn stores Keras's `z r n`; the blocks of every tensor are reordered.
pub fn candle_gru(model: &Model<'_>) -> GRU {
    let reorder = |v: Vec<f32>| {
        let block = v.len() / 3;
        let (z, rest) = v.split_at(block);
        let (r, n) = rest.split_at(block);
        [r, z, n].concat()
    };
    let tensors = layer_tensors(model).map(reorder);
    let vb = var_builder(tensors, INPUT, HIDDEN, 3);
    gru(INPUT, HIDDEN, GRUConfig::default(), vb).expect("candle GRU")
}

/// A `1 × INPUT` tensor of one timestep, as a streaming caller would build it from a sample.
pub fn candle_step_input(x: &[f32]) -> Tensor {
    Tensor::from_slice(x, (1, x.len()), &Device::Cpu).expect("tensor")
}

/// Independent f32 multiply-adds per round of the bound kernels: [`CHAINS`] vector accumulators of 8
/// lanes (AVX) or of 4 lanes twice over (SSE), so both kernels do the same arithmetic.
pub const MULTIPLY_ADDS_PER_ROUND: u64 = (CHAINS * 8) as u64;
/// Enough independent accumulators to hide the latency of two pipelined FMA units (Zen 2: 2 × 5 cycles)
/// while staying in the 16 vector registers with the two operands.
const CHAINS: usize = 12;

/// How [`multiply_adds`] computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vfmadd` on 8-lane AVX registers: the machine's f32 multiply-add bound.
    Fma,
    /// `mulps` then `addps` on 4-lane SSE registers: what the x86-64 baseline target can issue.
    MulThenAdd,
    /// Scalar Rust, for targets other than x86-64.
    Portable,
}

/// Which kernel `multiply_adds` runs with `fma` allowed, on this CPU.
pub fn kernel(fma: bool) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if fma
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernel::Fma;
        }
        Kernel::MulThenAdd
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = fma;
        Kernel::Portable
    }
}

/// `rounds ×` [`MULTIPLY_ADDS_PER_ROUND`] independent f32 multiply-adds `v = v·a + b`, no memory
/// traffic: with `fma` and a CPU that has it, fused on 8 lanes (the machine's bound, whatever the build
/// flags, as the CPU is asked at run time); otherwise a multiply and an add on 4 lanes (the x86-64
/// baseline). Returns lane 0 summed over the accumulators, so that nothing is optimised away.
pub fn multiply_adds(rounds: u64, fma: bool) -> f32 {
    let (a, b) = (black_box(0.999_9f32), black_box(1e-4f32));
    match kernel(fma) {
        #[cfg(target_arch = "x86_64")]
        Kernel::Fma => {
            // SAFETY: `kernel` returned `Fma` only after the CPU reported AVX and FMA.
            unsafe { x86::fused(rounds, a, b) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::MulThenAdd => {
            // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
            unsafe { x86::mul_then_add(rounds, a, b) }
        }
        _ => {
            let mut acc = [0.5f32; CHAINS * 8];
            for _ in 0..rounds {
                acc.iter_mut().for_each(|v| *v = *v * a + b);
            }
            acc.iter().step_by(8).sum()
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    #[target_feature(enable = "avx,fma")]
    pub(super) fn fused(rounds: u64, a: f32, b: f32) -> f32 {
        let (a, b) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut acc = [_mm256_set1_ps(0.5); CHAINS];
        for _ in 0..rounds {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
        _mm256_cvtss_f32(sum)
    }

    /// Twice [`CHAINS`] 4-lane accumulators would not fit the 16 SSE registers; each 4-lane accumulator
    /// does two multiply-adds per round instead, so a round is still `CHAINS × 8` of them.
    #[target_feature(enable = "sse2")]
    pub(super) fn mul_then_add(rounds: u64, a: f32, b: f32) -> f32 {
        let (a, b) = (_mm_set1_ps(a), _mm_set1_ps(b));
        let mut acc = [_mm_set1_ps(0.5); CHAINS];
        for _ in 0..rounds {
            for v in acc.iter_mut() {
                *v = _mm_add_ps(_mm_mul_ps(*v, a), b);
            }
            for v in acc.iter_mut() {
                *v = _mm_add_ps(_mm_mul_ps(*v, a), b);
            }
        }
        let sum = acc.iter().fold(_mm_setzero_ps(), |s, v| _mm_add_ps(s, *v));
        _mm_cvtss_f32(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::rnn::RNN;
    use tinyrnn::Runtime;

    /// Streams the window through tinyrnn and through `peer`, returning the largest difference of `h`.
    fn largest_difference(cell: Cell, mut peer: impl FnMut(&[f32]) -> Vec<f32>) -> f32 {
        let blob = blob(cell);
        let model = blob.open().expect("model");
        let mut memory = vec![0.0; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
        let mut h = vec![0.0; HIDDEN];
        let mut largest = 0.0f32;
        for x in window_input().chunks(INPUT) {
            runtime.step(x, &mut h).expect("step");
            let theirs = peer(x);
            for (a, b) in h.iter().zip(&theirs) {
                largest = largest.max((a - b).abs());
            }
        }
        largest
    }

    #[test]
    fn candle_lstm_computes_what_tinyrnn_computes() {
        let lstm_cell = cells()[0].1;
        let blob = blob(lstm_cell);
        let model = blob.open().expect("model");
        let peer = candle_lstm(&model);
        let mut state = peer.zero_state(1).expect("state");
        let diff = largest_difference(lstm_cell, |x| {
            state = peer.step(&candle_step_input(x), &state).expect("step");
            state
                .h()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("h")
        });
        assert!(diff <= 1e-5, "largest difference {diff}");
    }

    #[test]
    fn candle_gru_computes_what_tinyrnn_computes() {
        let gru_cell = cells()[1].1;
        let blob = blob(gru_cell);
        let model = blob.open().expect("model");
        let peer = candle_gru(&model);
        let mut state = peer.zero_state(1).expect("state");
        let diff = largest_difference(gru_cell, |x| {
            state = peer.step(&candle_step_input(x), &state).expect("step");
            state
                .h()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("h")
        });
        assert!(diff <= 1e-5, "largest difference {diff}");
    }

    #[test]
    fn multiply_adds_do_the_arithmetic() {
        // Every lane starts at 0.5 and takes `v·a + b` per multiply-add: after 3 rounds the lanes of
        // the fused and portable kernels hold f³(0.5), those of the SSE kernel (two per round) f⁶(0.5).
        let f = |v: f32| v * 0.999_9 + 1e-4;
        let chains = CHAINS as f32;
        for fma in [true, false] {
            let expected = match kernel(fma) {
                Kernel::MulThenAdd => chains * f(f(f(f(f(f(0.5)))))),
                Kernel::Fma | Kernel::Portable => chains * f(f(f(0.5))),
            };
            let got = multiply_adds(3, fma);
            assert!(
                (got - expected).abs() < 1e-4,
                "{fma}: {got} against {expected}"
            );
        }
    }
}
