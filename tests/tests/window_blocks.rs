//! A windowed run computes the input projections of a block of timesteps in one pass over the input
//! kernel (where the input buffer has room for them) and must still give, bit for bit, what streaming
//! each direction one step at a time gives: for every cell, reverse and bidirectional layers, and window
//! lengths on both sides of the block size and of the room the buffer has.

use tinyrnn::format::{Cell, Direction, Layer, Merge};
use tinyrnn::Runtime;
use tinyrnn_conformance::{model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::spec::ModelSpec;
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

const INPUT: usize = 3;
const HIDDEN: usize = 12;

fn blob(spec: &ModelSpec) -> AlignedBlob {
    AlignedBlob::new(&to_blob(spec).expect("blob"))
}

/// The `h` of every step of a forward model over `steps` rows of `input`, streamed.
fn streamed(spec: &ModelSpec, input: &[f32]) -> Vec<Vec<f32>> {
    let blob = blob(spec);
    let model = blob.open().expect("model");
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
    input
        .chunks(INPUT)
        .map(|x| {
            let mut h = vec![0.0; HIDDEN];
            runtime.step(x, &mut h).expect("step");
            h
        })
        .collect()
}

/// The model's window output over `input`.
fn windowed(spec: &ModelSpec, input: &[f32]) -> Vec<f32> {
    let blob = blob(spec);
    let model = blob.open().expect("model");
    let steps = input.len() / INPUT;
    let mut memory = vec![0.0; model.window_memory(steps).expect("memory").total()];
    let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
    let mut out = vec![0.0; model.output_len(steps).expect("len")];
    runtime.run_window(input, &mut out).expect("window");
    out
}

/// The layer of `spec` with `direction` and `return_sequences`, and the forward-only models that run
/// its forward and backward weights.
fn variants(
    cell: Cell,
    direction: Direction,
    return_sequences: bool,
    seed: u64,
) -> (ModelSpec, ModelSpec, Option<ModelSpec>) {
    let mut rng = Rng::new(seed);
    let options = RecurrentOptions {
        direction,
        return_sequences,
        initial_state: true,
        ..RecurrentOptions::new(cell, HIDDEN)
    };
    let layer = recurrent(&mut rng, INPUT, options);
    let Layer::Recurrent(r) = &layer else {
        unreachable!("recurrent() gives a recurrent layer")
    };
    let forward_only = |weights| {
        let mut one = r.clone();
        one.direction = Direction::Forward;
        one.return_sequences = true;
        one.forward = weights;
        one.backward = None;
        model("direction", INPUT, None, vec![Layer::Recurrent(one)])
    };
    let forward = forward_only(r.forward.clone());
    let backward = r.backward.clone().map(forward_only);
    (model("window", INPUT, None, vec![layer]), forward, backward)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn blocked_windows_equal_streamed_directions_bit_for_bit() {
    let cells = [
        Cell::Lstm {
            input_forget: false,
        },
        Cell::Gru { reset_after: true },
        Cell::Gru { reset_after: false },
        Cell::SimpleRnn,
    ];
    let mut checked = 0;
    for (c, cell) in cells.into_iter().enumerate() {
        for steps in [1, 3, 4, 5, 8, 9, 23, 40, 97] {
            let input = Rng::new(100 + steps as u64).values(steps * INPUT, 1.5);
            let reversed: Vec<f32> = input.chunks(INPUT).rev().flatten().copied().collect();
            let seed = 10 * c as u64 + 1;

            // Forward, every step.
            let (spec, forward, _) = variants(cell, Direction::Forward, true, seed);
            let expected: Vec<f32> = streamed(&forward, &input).concat();
            assert_eq!(
                bits(&windowed(&spec, &input)),
                bits(&expected),
                "{cell:?} forward {steps}"
            );

            // Reverse, every step: the forward weights over the reversed window, read back in time.
            let (spec, forward, _) = variants(cell, Direction::Reverse, true, seed);
            let mut rows = streamed(&forward, &reversed);
            rows.reverse();
            assert_eq!(
                bits(&windowed(&spec, &input)),
                bits(&rows.concat()),
                "{cell:?} reverse {steps}"
            );

            // Bidirectional, concatenated, every step; and only the final output.
            let (spec, forward, backward) =
                variants(cell, Direction::Bidirectional(Merge::Concat), true, seed);
            let backward = backward.expect("backward weights");
            let ahead = streamed(&forward, &input);
            let mut behind = streamed(&backward, &reversed);
            behind.reverse();
            let expected: Vec<f32> = ahead
                .iter()
                .zip(&behind)
                .flat_map(|(a, b)| a.iter().chain(b).copied())
                .collect();
            assert_eq!(
                bits(&windowed(&spec, &input)),
                bits(&expected),
                "{cell:?} bidirectional {steps}"
            );

            let (spec, ..) = variants(cell, Direction::Bidirectional(Merge::Concat), false, seed);
            let last: Vec<f32> = ahead[steps - 1].iter().chain(&behind[0]).copied().collect();
            assert_eq!(
                bits(&windowed(&spec, &input)),
                bits(&last),
                "{cell:?} final {steps}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 36);
}
