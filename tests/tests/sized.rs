//! The compile-time-sized front door (`tinyrnn::sized`) gives the runtime's numbers bit for bit, over
//! many streaming steps and every cell option (peepholes, coupled gates, clipping, initial states, the
//! GRU's two reset placements, ReLU outputs), and refuses layers that are not what its type says.

use tinyrnn::format::{Activation, Cell, Direction, Merge};
use tinyrnn::sized::{Gru, Lstm, SimpleRnn};
use tinyrnn::{Error, Model, Runtime};
use tinyrnn_conformance::{dense, model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

const INPUT: usize = 3;
const HIDDEN: usize = 12;
const STEPS: usize = 2_000;

/// A one-layer model (plus a Dense head when `head`) of the given recurrent options.
fn blob(seed: u64, options: RecurrentOptions, head: bool) -> AlignedBlob {
    let mut rng = Rng::new(seed);
    let mut layers = vec![recurrent(&mut rng, INPUT, options)];
    if head {
        layers.push(dense(&mut rng, options.hidden, 2, Activation::Linear));
    }
    AlignedBlob::new(&to_blob(&model("sized", INPUT, None, layers)).expect("blob"))
}

/// The variants of every cell the front doors must match.
fn variants() -> Vec<(&'static str, RecurrentOptions)> {
    let o = |cell| RecurrentOptions::new(cell, HIDDEN);
    let lstm = Cell::Lstm {
        input_forget: false,
    };
    let mut all = vec![
        ("lstm", o(lstm)),
        (
            "lstm peephole, initial state, clip",
            RecurrentOptions {
                peephole: true,
                initial_state: true,
                clip: Some(0.7),
                ..o(lstm)
            },
        ),
        ("lstm input_forget", o(Cell::Lstm { input_forget: true })),
        ("gru reset-after", o(Cell::Gru { reset_after: true })),
        (
            "gru reset-before, initial state, clip",
            RecurrentOptions {
                initial_state: true,
                clip: Some(0.9),
                ..o(Cell::Gru { reset_after: false })
            },
        ),
        ("simple_rnn", o(Cell::SimpleRnn)),
    ];
    all.push((
        "simple_rnn relu, initial state",
        RecurrentOptions {
            activation: Activation::Relu,
            initial_state: true,
            ..o(Cell::SimpleRnn)
        },
    ));
    all
}

/// Streams `STEPS` random inputs through the runtime and through `step`, comparing every `h` bit for bit.
fn same_bits(
    name: &str,
    model: &Model<'_>,
    mut step: impl FnMut(&[f32; INPUT]) -> Result<[f32; HIDDEN], Error>,
) {
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(model, &mut memory).expect("runtime");
    let mut expected = [0.0f32; HIDDEN];
    let mut rng = Rng::new(99);
    let mut largest = 0.0f32;
    for t in 0..STEPS {
        // Large inputs now and then, so the gates saturate and the clip bites.
        let scale = if t % 17 == 0 { 6.0 } else { 1.5 };
        let x: [f32; INPUT] = std::array::from_fn(|_| rng.uniform(scale));
        runtime.step(&x, &mut expected).expect("runtime step");
        let got = step(&x).expect("sized step");
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&expected), "{name}, step {t}");
        largest = expected.iter().fold(largest, |m, v| m.max(v.abs()));
    }
    // The comparison is of real work: the state moved away from zero.
    assert!(largest > 0.05, "{name}: outputs stayed near 0 ({largest})");
}

#[test]
fn front_doors_match_the_runtime_bit_for_bit() {
    for (seed, (name, options)) in variants().into_iter().enumerate() {
        let blob = blob(seed as u64 + 1, options, false);
        let model = blob.open().expect("model");
        match options.cell {
            Cell::Lstm { .. } => {
                let mut lstm = Lstm::<INPUT, HIDDEN>::open(&model, 0).expect("open");
                same_bits(name, &model, |x| lstm.step(x).copied());
                lstm.reset();
                let mut fresh = Lstm::<INPUT, HIDDEN>::open(&model, 0).expect("open");
                assert_eq!(lstm.h(), fresh.h(), "{name}: reset");
                assert_eq!(lstm.c(), fresh.c(), "{name}: reset");
                let x = [0.25, -1.0, 0.5];
                assert_eq!(lstm.step(&x), fresh.step(&x), "{name}: after reset");
            }
            Cell::Gru { .. } => {
                let mut gru = Gru::<INPUT, HIDDEN>::open(&model, 0).expect("open");
                same_bits(name, &model, |x| gru.step(x).copied());
            }
            Cell::SimpleRnn => {
                let mut rnn = SimpleRnn::<INPUT, HIDDEN>::open(&model, 0).expect("open");
                same_bits(name, &model, |x| rnn.step(x).copied());
            }
        }
    }
}

#[test]
fn bad_numbers_are_handled_as_the_runtime_handles_them() {
    let o = RecurrentOptions::new(Cell::SimpleRnn, HIDDEN);
    let blob = blob(
        7,
        RecurrentOptions {
            activation: Activation::Relu,
            ..o
        },
        false,
    );
    let model = blob.open().expect("model");
    let mut rnn = SimpleRnn::<INPUT, HIDDEN>::open(&model, 0).expect("open");
    rnn.step(&[0.5, 0.5, 0.5]).expect("step");
    let before = *rnn.h();
    assert_eq!(
        rnn.step(&[0.0, f32::NAN, 0.0]),
        Err(Error::NonFiniteInput { index: 1 })
    );
    assert_eq!(rnn.h(), &before, "a refused input leaves the state");
    // A ReLU recurrence fed f32::MAX overflows; the state is reset, never left infinite.
    assert_eq!(
        rnn.step(&[f32::MAX, f32::MAX, f32::MAX]),
        Err(Error::StateOverflow)
    );
    let fresh = SimpleRnn::<INPUT, HIDDEN>::open(&model, 0).expect("open");
    assert_eq!(rnn.h(), fresh.h());
}

#[test]
fn layers_that_do_not_fit_are_refused_with_what_differs() {
    let lstm = Cell::Lstm {
        input_forget: false,
    };
    let blob = blob(3, RecurrentOptions::new(lstm, HIDDEN), true);
    let model = blob.open().expect("model");
    let refused = |result: Result<(), Error>, problem: &str, got: (u32, u32)| {
        match result {
            Err(Error::SizedMismatch {
                problem: p, got: g, ..
            }) => {
                assert_eq!(p, problem);
                assert_eq!(g, got);
            }
            other => panic!("expected a mismatch ({problem}), got {other:?}"),
        }
        let message = result.unwrap_err().to_string();
        assert!(message.contains(problem), "{message}");
    };
    let sizes = (INPUT as u32, HIDDEN as u32);
    refused(
        Lstm::<INPUT, 16>::open(&model, 0).map(drop),
        "its sizes differ",
        sizes,
    );
    refused(
        Lstm::<4, HIDDEN>::open(&model, 0).map(drop),
        "its sizes differ",
        sizes,
    );
    refused(
        Gru::<INPUT, HIDDEN>::open(&model, 0).map(drop),
        "its cell is another one",
        sizes,
    );
    refused(
        Lstm::<INPUT, HIDDEN>::open(&model, 1).map(drop),
        "it is not a recurrent layer",
        (0, 0),
    );
    refused(
        Lstm::<INPUT, HIDDEN>::open(&model, 9).map(drop),
        "it is not a recurrent layer",
        (0, 0),
    );
    let message = Lstm::<INPUT, 16>::open(&model, 0).unwrap_err().to_string();
    assert_eq!(
        message,
        "layer 0: a sized LSTM of input 3 and hidden 16 cannot run it: its sizes differ \
         (the layer's input is 3, its hidden size 12)"
    );

    let bidirectional = RecurrentOptions {
        direction: Direction::Bidirectional(Merge::Concat),
        ..RecurrentOptions::new(lstm, HIDDEN)
    };
    let blob = blob_plain(bidirectional);
    let model = blob.open().expect("model");
    refused(
        Lstm::<INPUT, HIDDEN>::open(&model, 0).map(drop),
        "it is reverse or bidirectional",
        sizes,
    );
}

fn blob_plain(options: RecurrentOptions) -> AlignedBlob {
    blob(11, options, false)
}

#[test]
fn int8_weights_are_refused() {
    use tinyrnn_converter::quantize::{quantize, Mode};
    let lstm = Cell::Lstm {
        input_forget: false,
    };
    let mut rng = Rng::new(5);
    let spec = model(
        "sized",
        INPUT,
        None,
        vec![recurrent(
            &mut rng,
            INPUT,
            RecurrentOptions::new(lstm, HIDDEN),
        )],
    );
    let quantized = quantize(&spec, Mode::I8w).expect("quantize");
    let blob = AlignedBlob::new(&to_blob(&quantized).expect("blob"));
    let model = blob.open().expect("model");
    match Lstm::<INPUT, HIDDEN>::open(&model, 0) {
        Err(Error::SizedMismatch { problem, .. }) => assert!(problem.contains("not f32")),
        other => panic!("int8 weights were not refused: {other:?}"),
    }
}
