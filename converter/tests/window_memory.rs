//! `Model::window_memory` sizes a window's two sequence buffers by what each layer writes where it sits
//! in the window, not by the widest layer times the window. On models whose widest layer comes after the
//! sequence is cut to one row, or is the last layer, or whose input is wider than every layer, in f32
//! and in `i8x16`, a window run in exactly that memory gives the outputs of the same computation
//! streamed (whose memory does not depend on windows), and one word less is refused.

mod common;

use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Input, InputKind, InputLayout, IoLayout,
    Layer, Merge, OutputLayout, Recurrent,
};
use tinyrnn::{Error, Model, Runtime};
use tinyrnn_converter::npy::Array;
use tinyrnn_converter::quantize::{quantize_with, Mode};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::{ModelSpec, Tensor};
use tinyrnn_converter::write::to_blob;

use common::noise;

const STEPS: usize = 12;
const FEATURES: usize = 2;

fn spec(name: &str, layers: Vec<Layer<Tensor>>) -> ModelSpec {
    ModelSpec {
        input: Input {
            kind: InputKind::Features(FEATURES as u32),
            steps: None,
        },
        layers,
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: name.into(),
        source: "hand-built".into(),
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    }
}

fn matrix(seed: u64, rows: usize, cols: usize) -> Tensor {
    Tensor::matrix(rows, cols, noise(seed, rows * cols, 0.7)).unwrap()
}

fn dense(seed: u64, rows: usize, cols: usize) -> Layer<Tensor> {
    Layer::Dense(Dense {
        weight: matrix(seed, rows, cols),
        bias: Some(Tensor::vector(noise(seed + 1, rows, 0.2))),
        activation: Activation::Linear,
    })
}

fn recurrent(
    cell: Cell,
    hidden: usize,
    input: usize,
    direction: Direction,
    return_sequences: bool,
) -> Layer<Tensor> {
    let rows = cell.gates() * hidden;
    let weights = |seed: u64| CellWeights {
        kernel: matrix(seed, rows, input),
        recurrent: matrix(seed + 1, rows, hidden),
        bias: Some(Tensor::vector(noise(seed + 2, rows, 0.2))),
        recurrent_bias: matches!(cell, Cell::Gru { reset_after: true })
            .then(|| Tensor::vector(noise(seed + 3, rows, 0.2))),
        peephole: None,
        initial_h: None,
        initial_c: None,
    };
    Layer::Recurrent(Recurrent {
        cell,
        hidden: hidden as u32,
        activation: Activation::Tanh,
        gate_activation: Activation::Sigmoid,
        clip: None,
        direction,
        return_sequences,
        forward: weights(10),
        backward: matches!(direction, Direction::Bidirectional(_)).then(|| weights(20)),
    })
}

fn gru() -> Cell {
    Cell::Gru { reset_after: true }
}

fn lstm() -> Cell {
    Cell::Lstm {
        input_forget: false,
    }
}

/// Opens `spec`'s blob and hands the model to `f`.
fn with_model<R>(spec: &ModelSpec, f: impl FnOnce(&Model<'_>) -> R) -> R {
    let blob = AlignedBlob::new(&to_blob(spec).unwrap());
    let model = blob.open().unwrap();
    f(&model)
}

/// One window through `model` in exactly [`Model::window_memory`]; checks that one word less is
/// refused.
fn window(model: &Model<'_>, x: &[f32]) -> Vec<f32> {
    let steps = x.len() / model.input_width();
    let words = model.window_memory(steps).unwrap().total();
    let run = |words: usize| -> Result<Vec<f32>, Error> {
        let mut memory = vec![0.0; words];
        let mut runtime = Runtime::new(model, &mut memory)?;
        let mut out = vec![0.0; model.output_len(steps)?];
        runtime.run_window(x, &mut out)?;
        Ok(out)
    };
    assert!(
        matches!(run(words - 1), Err(Error::BufferTooSmall { .. })),
        "{} words are not refused",
        words - 1
    );
    run(words).unwrap()
}

/// Each step's output of `model` streamed over `x` (its streaming memory does not depend on windows).
fn streamed(model: &Model<'_>, x: &[f32]) -> Vec<Vec<f32>> {
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(model, &mut memory).unwrap();
    x.chunks_exact(model.input_width())
        .map(|row| {
            let mut out = vec![0.0; model.step_output_len()];
            runtime.step(row, &mut out).unwrap();
            out
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
}

fn windows() -> (Array, Vec<f32>) {
    let batch = 4;
    let data = noise(7, batch * STEPS * FEATURES, 1.5);
    let array = Array::float(vec![batch, STEPS, FEATURES], data.clone()).unwrap();
    (array, data)
}

/// The widest layer last, on every timestep, a wide layer after a kept tail, and an input wider than
/// every layer: each window, in f32 and `i8x16`, gives the rows that streaming the same model gives.
#[test]
fn windows_with_a_wide_last_layer_give_the_streamed_outputs() {
    let (calibration, data) = windows();
    let models = [
        spec(
            "lstm sequence, wide dense last",
            vec![
                recurrent(lstm(), 3, FEATURES, Direction::Forward, true),
                dense(2, 20, 3),
            ],
        ),
        // The input wider than anything after it.
        spec(
            "lstm of one unit",
            vec![recurrent(lstm(), 1, FEATURES, Direction::Forward, true)],
        ),
        spec(
            "keep last 3, wide dense",
            vec![
                recurrent(lstm(), 4, FEATURES, Direction::Forward, true),
                Layer::KeepLast { steps: 3 },
                dense(3, 30, 4),
            ],
        ),
    ];
    for f32_spec in models {
        let integer = quantize_with(&f32_spec, Mode::I8x16, Some(&calibration)).unwrap();
        for (mode, spec) in [("f32", &f32_spec), ("i8x16", &integer)] {
            with_model(spec, |model| {
                for x in data.chunks_exact(STEPS * FEATURES) {
                    let windowed = window(model, x);
                    let steps = streamed(model, x);
                    // A model that keeps its last `k` steps streams those `k` rows at each step.
                    let expected: Vec<f32> = if model.step_output_steps() > 1 {
                        steps.last().unwrap().clone()
                    } else {
                        steps.concat()
                    };
                    assert!(
                        same_bits(&windowed, &expected),
                        "{} {mode}: window {windowed:?}, streamed {expected:?}",
                        spec.name
                    );
                }
            });
        }
    }
}

/// A forecaster's shape (the window normalised, one GRU state, a wide head) gives the output of the
/// normalisation done here and the rest streamed.
#[test]
fn a_window_normalised_forecaster_with_a_wide_head_gives_the_streamed_output() {
    let (_, data) = windows();
    let rest = vec![
        recurrent(gru(), 4, FEATURES, Direction::Forward, false),
        dense(1, 60, 4),
    ];
    let mut layers = vec![Layer::SubtractLast];
    layers.extend(rest.iter().cloned());
    let whole = spec("subtract-last gru dense", layers);
    let tail = spec("gru dense", rest);
    for x in data.chunks_exact(STEPS * FEATURES) {
        let last = &x[(STEPS - 1) * FEATURES..];
        let normalised: Vec<f32> = x
            .chunks_exact(FEATURES)
            .flat_map(|row| row.iter().zip(last).map(|(v, l)| v - l))
            .collect();
        let windowed = with_model(&whole, |model| window(model, x));
        let expected = with_model(&tail, |model| streamed(model, &normalised))
            .pop()
            .unwrap();
        assert!(
            same_bits(&windowed, &expected),
            "window {windowed:?}, streamed {expected:?}"
        );
    }
}

/// A bidirectional layer last, returning every timestep (its output twice as wide as its state):
/// each direction streamed on its own, the backward one over the reversed window, concatenated.
#[test]
fn a_bidirectional_concat_last_gives_both_directions_streamed() {
    let (_, data) = windows();
    let Layer::Recurrent(layer) = recurrent(
        gru(),
        5,
        FEATURES,
        Direction::Bidirectional(Merge::Concat),
        true,
    ) else {
        unreachable!()
    };
    let one_way = |weights: &CellWeights<Tensor>| {
        spec(
            "one direction",
            vec![Layer::Recurrent(Recurrent {
                direction: Direction::Forward,
                forward: weights.clone(),
                backward: None,
                ..layer.clone()
            })],
        )
    };
    let forward = one_way(&layer.forward);
    let backward = one_way(layer.backward.as_ref().unwrap());
    let whole = spec("bidirectional concat last", vec![Layer::Recurrent(layer)]);
    for x in data.chunks_exact(STEPS * FEATURES) {
        let reversed: Vec<f32> = x.chunks_exact(FEATURES).rev().flatten().copied().collect();
        let f = with_model(&forward, |model| streamed(model, x));
        let mut b = with_model(&backward, |model| streamed(model, &reversed));
        b.reverse();
        let expected: Vec<f32> = f
            .iter()
            .zip(&b)
            .flat_map(|(f, b)| [&f[..], &b[..]].concat())
            .collect();
        let windowed = with_model(&whole, |model| window(model, x));
        assert!(
            same_bits(&windowed, &expected),
            "window {windowed:?}, streamed {expected:?}"
        );
    }
}
