//! The streaming forecaster: window filling, sliding windows, streams sharing a model, saved state, and
//! the OTA model swap.

use tinyrnn::format::{Activation, Cell, Direction, Merge};
use tinyrnn::{Error, Forecaster, Mode, Model, ModelSlot, Runtime, Scaler};
use tinyrnn_conformance::{dense, model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::{run::AlignedBlob, spec::ModelSpec, write::to_blob};

/// Input features of the test models.
const FEATURES: usize = 3;
/// Ring capacity used throughout: windows of up to 8 steps of 3 features.
const W: usize = 24;

/// LSTM(4) → Dense(2), streamable, with an optional fixed window.
fn lstm_spec(seed: u64, steps: Option<u32>) -> ModelSpec {
    let mut rng = Rng::new(seed);
    let mut o = RecurrentOptions::new(
        Cell::Lstm {
            input_forget: false,
        },
        4,
    );
    o.return_sequences = false;
    model(
        "lstm",
        FEATURES,
        steps,
        vec![
            recurrent(&mut rng, FEATURES, o),
            dense(&mut rng, 4, 2, Activation::Linear),
        ],
    )
}

/// A bidirectional GRU: windowed only, with no fixed window length.
fn bidirectional_spec() -> ModelSpec {
    let mut rng = Rng::new(3);
    let mut o = RecurrentOptions::new(Cell::Gru { reset_after: true }, 3);
    o.direction = Direction::Bidirectional(Merge::Concat);
    o.return_sequences = false;
    model(
        "bigru",
        FEATURES,
        None,
        vec![recurrent(&mut rng, FEATURES, o)],
    )
}

fn blob(spec: &ModelSpec) -> AlignedBlob {
    AlignedBlob::new(&to_blob(spec).unwrap())
}

fn window_reference(model: &Model<'_>, window: &[f32]) -> Vec<f32> {
    let steps = window.len() / FEATURES;
    let mut memory = vec![0.0; model.window_memory(steps).unwrap().total()];
    let mut runtime = Runtime::new(model, &mut memory).unwrap();
    let mut out = vec![0.0; model.output_len(steps).unwrap()];
    runtime.run_window(window, &mut out).unwrap();
    out
}

#[test]
fn window_mode_gives_nothing_until_full_then_the_window_ending_there() {
    let blob = blob(&lstm_spec(1, Some(5)));
    let model = blob.open().unwrap();
    assert_eq!(Mode::of(&model), Ok(Mode::Window { steps: 5 }));
    let mut memory =
        vec![0.0; Forecaster::<W>::memory_words(&model, Mode::of(&model).unwrap()).unwrap()];
    let mut stream = Forecaster::<W>::new(&model, &mut memory).unwrap();
    let input = Rng::new(9).values(12 * FEATURES, 1.0);
    for t in 0..12 {
        let sample = &input[t * FEATURES..(t + 1) * FEATURES];
        let got = stream.push(sample).unwrap().map(<[f32]>::to_vec);
        if t < 4 {
            assert_eq!(got, None, "step {t}");
        } else {
            let window = &input[(t - 4) * FEATURES..(t + 1) * FEATURES];
            assert_eq!(got, Some(window_reference(&model, window)), "step {t}");
        }
    }
}

#[test]
fn stream_mode_equals_a_plain_runtime() {
    let blob = blob(&lstm_spec(2, None));
    let model = blob.open().unwrap();
    assert_eq!(Mode::of(&model), Ok(Mode::Stream));
    let mut memory = vec![0.0; Forecaster::<1>::memory_words(&model, Mode::Stream).unwrap()];
    let mut stream = Forecaster::<1>::new(&model, &mut memory).unwrap();
    let mut reference_memory = vec![0.0; model.memory().total()];
    let mut reference = Runtime::new(&model, &mut reference_memory).unwrap();
    let mut expected = vec![0.0; model.step_output_len()];
    let input = Rng::new(4).values(10 * FEATURES, 1.0);
    for sample in input.chunks_exact(FEATURES) {
        reference.step(sample, &mut expected).unwrap();
        assert_eq!(stream.push(sample).unwrap(), Some(&expected[..]));
    }
}

#[test]
fn windowed_only_models_run_as_sliding_windows() {
    let blob = blob(&bidirectional_spec());
    let model = blob.open().unwrap();
    assert_eq!(Mode::of(&model), Err(Error::NotStreamable));
    let mut memory = vec![0.0; 4096];
    let refused = Forecaster::<W, tinyrnn::Identity>::with_scaler(
        &model,
        Mode::Stream,
        tinyrnn::Identity,
        &mut memory,
    );
    assert_eq!(refused.err(), Some(Error::NotStreamable));
    let mode = Mode::Window { steps: 4 };
    let mut stream = Forecaster::<W, tinyrnn::Identity>::with_scaler(
        &model,
        mode,
        tinyrnn::Identity,
        &mut memory,
    )
    .unwrap();
    let input = Rng::new(5).values(9 * FEATURES, 1.0);
    for t in 0..9 {
        let got = stream
            .push(&input[t * FEATURES..(t + 1) * FEATURES])
            .unwrap()
            .map(<[f32]>::to_vec);
        let expected = (t >= 3)
            .then(|| window_reference(&model, &input[(t - 3) * FEATURES..(t + 1) * FEATURES]));
        assert_eq!(got, expected, "step {t}");
    }
}

#[test]
fn bad_configurations_are_refused() {
    let blob = blob(&lstm_spec(1, Some(5)));
    let model = blob.open().unwrap();
    let mut memory = vec![0.0; 4096];
    // A ring of 12 values cannot hold 5 steps of 3 features.
    let small = Forecaster::<12>::new(&model, &mut memory);
    assert_eq!(
        small.err(),
        Some(Error::BufferTooSmall {
            needed: 15,
            got: 12
        })
    );
    let words = Forecaster::<W>::memory_words(&model, Mode::of(&model).unwrap()).unwrap();
    let mut short = vec![0.0; words - 1];
    assert_eq!(
        Forecaster::<W>::new(&model, &mut short).err(),
        Some(Error::BufferTooSmall {
            needed: words,
            got: words - 1
        })
    );
    let mut stream = Forecaster::<W>::new(&model, &mut memory).unwrap();
    assert_eq!(
        stream.push(&[1.0]).err(),
        Some(Error::InputLength {
            expected: 3,
            got: 1
        })
    );
}

/// Raw units are model units × 10 + 1 on the way in; forecasts go back the other way.
struct Affine;

impl Scaler for Affine {
    fn scale_input(&self, _feature: usize, value: f32) -> f32 {
        (value - 1.0) / 10.0
    }
    fn unscale_output(&self, feature: usize, value: f32) -> f32 {
        value * 10.0 + feature as f32
    }
}

#[test]
fn a_scaler_maps_samples_in_and_forecasts_out() {
    let blob = blob(&lstm_spec(1, Some(5)));
    let model = blob.open().unwrap();
    let mode = Mode::of(&model).unwrap();
    let mut memory = vec![0.0; Forecaster::<W>::memory_words(&model, mode).unwrap()];
    let mut scaled =
        Forecaster::<W, Affine>::with_scaler(&model, mode, Affine, &mut memory).unwrap();
    let input = Rng::new(9).values(5 * FEATURES, 1.0);
    let mut got = None;
    for sample in input.chunks_exact(FEATURES) {
        let raw: Vec<f32> = sample.iter().map(|v| v * 10.0 + 1.0).collect();
        got = scaled.push(&raw).unwrap().map(<[f32]>::to_vec);
    }
    let window: Vec<f32> = input
        .iter()
        .map(|v| ((v * 10.0 + 1.0) - 1.0) / 10.0)
        .collect();
    let expected: Vec<f32> = window_reference(&model, &window)
        .iter()
        .enumerate()
        .map(|(i, v)| v * 10.0 + (i % 2) as f32)
        .collect();
    assert_eq!(got, Some(expected));
}

#[test]
fn streams_sharing_a_model_keep_their_own_state() {
    let blob = blob(&lstm_spec(2, None));
    let model = blob.open().unwrap();
    let words = Forecaster::<1>::memory_words(&model, Mode::Stream).unwrap();
    let mut memories = vec![vec![0.0; words]; 3];
    let mut streams: Vec<_> = memories
        .iter_mut()
        .map(|m| Forecaster::<1>::new(&model, m).unwrap())
        .collect();
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|k| Rng::new(20 + k).values(8 * FEATURES, 1.0))
        .collect();
    let mut last = vec![Vec::new(); 3];
    for t in 0..8 {
        for (k, stream) in streams.iter_mut().enumerate() {
            last[k] = stream
                .push(&inputs[k][t * FEATURES..(t + 1) * FEATURES])
                .unwrap()
                .unwrap()
                .to_vec();
        }
    }
    for (k, input) in inputs.iter().enumerate() {
        let mut memory = vec![0.0; words];
        let mut alone = Forecaster::<1>::new(&model, &mut memory).unwrap();
        let mut out = Vec::new();
        for sample in input.chunks_exact(FEATURES) {
            out = alone.push(sample).unwrap().unwrap().to_vec();
        }
        assert_eq!(last[k], out, "stream {k}");
    }
}

/// Feeds `n` samples of `input` from `start`.
fn feed<const N: usize>(
    stream: &mut Forecaster<'_, '_, N>,
    input: &[f32],
    range: core::ops::Range<usize>,
) -> Option<Vec<f32>> {
    let mut out = None;
    for t in range {
        out = stream
            .push(&input[t * FEATURES..(t + 1) * FEATURES])
            .unwrap()
            .map(<[f32]>::to_vec);
    }
    out
}

#[test]
fn saved_state_resumes_exactly_in_both_modes() {
    for steps in [None, Some(5)] {
        let blob = blob(&lstm_spec(6, steps));
        let model = blob.open().unwrap();
        let mode = Mode::of(&model).unwrap();
        let words = Forecaster::<W>::memory_words(&model, mode).unwrap();
        let input = Rng::new(8).values(12 * FEATURES, 1.0);
        let (mut m1, mut m2) = (vec![0.0; words], vec![0.0; words]);
        let mut through = Forecaster::<W>::new(&model, &mut m1).unwrap();
        let expected = feed(&mut through, &input, 0..12);
        // Window mode: save while the window is still filling, too.
        for cut in [3, 7] {
            let mut before = Forecaster::<W>::new(&model, &mut m2).unwrap();
            feed(&mut before, &input, 0..cut);
            let mut saved = vec![0u8; before.state_len()];
            before.save_state(&mut saved).unwrap();
            drop(before);
            let mut after = Forecaster::<W>::new(&model, &mut m2).unwrap();
            after.restore_state(&saved).unwrap();
            assert_eq!(
                feed(&mut after, &input, cut..12),
                expected,
                "{mode:?} cut {cut}"
            );
        }
    }
}

#[test]
fn foreign_damaged_or_mis_sized_state_is_refused() {
    let blob_a = blob(&lstm_spec(6, None));
    let blob_b = blob(&lstm_spec(7, None));
    let (a, b) = (blob_a.open().unwrap(), blob_b.open().unwrap());
    assert_ne!(a.id(), b.id());
    let words = Forecaster::<1>::memory_words(&a, Mode::Stream).unwrap();
    let (mut ma, mut mb) = (vec![0.0; words], vec![0.0; words]);
    let mut sa = Forecaster::<1>::new(&a, &mut ma).unwrap();
    let mut sb = Forecaster::<1>::new(&b, &mut mb).unwrap();
    let input = Rng::new(1).values(4 * FEATURES, 1.0);
    feed(&mut sa, &input, 0..4);
    let mut saved = vec![0u8; sa.state_len()];
    sa.save_state(&mut saved).unwrap();
    assert_eq!(
        sb.restore_state(&saved),
        Err(Error::StateModel {
            expected: b.id(),
            got: a.id()
        })
    );
    let len = saved.len();
    assert_eq!(
        sa.restore_state(&saved[..len - 1]),
        Err(Error::StateBytes {
            expected: len,
            got: len - 1
        })
    );
    assert_eq!(
        sa.save_state(&mut vec![0u8; len + 1]),
        Err(Error::StateBytes {
            expected: len,
            got: len + 1
        })
    );
    for i in 0..len {
        let mut damaged = saved.clone();
        damaged[i] ^= 0x10;
        assert_eq!(
            sa.restore_state(&damaged),
            Err(Error::StateCorrupt),
            "byte {i}"
        );
    }
    // A stream of the same model in window mode does not take a streaming state.
    let mut mw = vec![0.0; Forecaster::<W>::memory_words(&a, Mode::Window { steps: 4 }).unwrap()];
    let sw = Forecaster::<W, tinyrnn::Identity>::with_scaler(
        &a,
        Mode::Window { steps: 4 },
        tinyrnn::Identity,
        &mut mw,
    )
    .unwrap();
    let mut window_state = vec![0u8; sw.state_len()];
    sw.save_state(&mut window_state).unwrap();
    assert!(sa.restore_state(&window_state).is_err());
}

/// Rewrites the closing CRC-32 of saved state bytes, as a forger would.
fn repair_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = tinyrnn::format::CRC.checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Found by the `restore_state` fuzz target: a window state whose unused words were not zero (with its
/// checksum repaired) was accepted, and saved back differently. Only what `save_state` writes restores;
/// nor does a state holding a NaN or an infinity, in either mode.
#[test]
fn forged_state_with_a_good_checksum_is_refused() {
    for steps in [None, Some(5)] {
        let blob = blob(&lstm_spec(6, steps));
        let model = blob.open().unwrap();
        let mode = Mode::of(&model).unwrap();
        let mut memory = vec![0.0; Forecaster::<W>::memory_words(&model, mode).unwrap()];
        let mut stream = Forecaster::<W>::new(&model, &mut memory).unwrap();
        // Window mode: two of five samples, so the state has unused words at the end.
        feed(&mut stream, &Rng::new(3).values(2 * FEATURES, 1.0), 0..2);
        let mut saved = vec![0u8; stream.state_len()];
        stream.save_state(&mut saved).unwrap();
        let words = (saved.len() - 24) / 4;
        let mut forged = Vec::new();
        if steps.is_some() {
            let mut padding = saved.clone();
            padding[20 + 4 * (words - 1)] = 0x2f;
            forged.push(padding);
        }
        if steps.is_none() {
            // Streaming: every word is valid; a state claiming fewer is forged.
            let mut short = saved.clone();
            short[16..20].copy_from_slice(&0u32.to_le_bytes());
            forged.push(short);
        }
        for bad in [f32::NAN, f32::INFINITY] {
            let mut value = saved.clone();
            value[20..24].copy_from_slice(&bad.to_le_bytes());
            forged.push(value);
        }
        for mut bytes in forged {
            repair_crc(&mut bytes);
            assert_eq!(
                stream.restore_state(&bytes),
                Err(Error::StateCorrupt),
                "{steps:?}"
            );
        }
        stream.restore_state(&saved).unwrap();
    }
    // A bare runtime refuses a non-finite state too.
    let blob = blob(&lstm_spec(6, None));
    let model = blob.open().unwrap();
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut state = runtime.state().to_vec();
    state[0] = f32::NAN;
    assert_eq!(runtime.restore_state(&state), Err(Error::StateCorrupt));
}

#[test]
fn model_swap_validates_first_and_keeps_the_old_model_on_error() {
    let (old, new) = (blob(&lstm_spec(6, None)), blob(&lstm_spec(7, None)));
    // A corrupted download (one flipped bit), a truncated one, and a valid blob of another shape.
    let mut flipped = new.bytes().to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let damaged = AlignedBlob::new(&flipped);
    let truncated = AlignedBlob::new(&new.bytes()[..new.bytes().len() - 8]);
    let other = blob(&bidirectional_spec());

    let mut slot = ModelSlot::new(old.bytes()).unwrap();
    let old_id = slot.model().id();
    assert!(matches!(
        slot.replace(damaged.bytes()),
        Err(Error::Checksum { .. })
    ));
    assert_eq!(slot.model().id(), old_id);
    assert!(slot.replace(truncated.bytes()).is_err());
    assert_eq!(slot.model().id(), old_id);
    assert_eq!(slot.replace(other.bytes()), Err(Error::ModelMismatch));
    assert_eq!(slot.model().id(), old_id);
    // A good blob replaces the model; forecasters made afterwards run it.
    let new_id = slot.replace(new.bytes()).unwrap();
    assert_eq!(new_id, new.open().unwrap().id());
    assert_eq!(slot.model().id(), new_id);
    let model = slot.model();
    let mut memory = vec![0.0; Forecaster::<1>::memory_words(model, Mode::Stream).unwrap()];
    let mut stream = Forecaster::<1>::new(model, &mut memory).unwrap();
    assert!(stream.push(&[0.1, 0.2, 0.3]).unwrap().is_some());
}
