//! Streaming one timestep at a time gives exactly what windowed runs give.

use tinyrnn::format::InputKind;
use tinyrnn::{Error, Model, Runtime, Status};
use tinyrnn_conformance::{quantized_sample_models, sample_models, Rng};
use tinyrnn_converter::quantize::Mode;
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

/// Runs a window over the first `steps` timesteps of `input` from a fresh state.
fn window(
    model: &Model<'_>,
    tokens: bool,
    input: &[f32],
    width: usize,
    steps: usize,
) -> Option<Vec<f32>> {
    let len = model.output_len(steps).ok()?;
    let mut memory = vec![0.0; model.window_memory(steps).ok()?.total()];
    let mut runtime = Runtime::new(model, &mut memory).ok()?;
    let mut out = vec![0.0; len];
    if tokens {
        let ids: Vec<u32> = input[..steps].iter().map(|&v| v as u32).collect();
        runtime.run_window_tokens(&ids, &mut out).ok()?;
    } else {
        runtime.run_window(&input[..steps * width], &mut out).ok()?;
    }
    Some(out)
}

#[test]
fn every_streaming_step_equals_the_window_ending_there() {
    let mut rng = Rng::new(7);
    let mut compared = 0;
    let models = sample_models(11)
        .into_iter()
        .chain(quantized_sample_models(12, Mode::I8w));
    for (spec, steps) in models {
        let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
        let model = blob.open().unwrap();
        let tokens = model.input().kind == InputKind::Tokens;
        let width = model.input_width();
        let input: Vec<f32> = if tokens {
            (0..steps).map(|_| rng.below(11) as f32).collect()
        } else {
            rng.values(steps * width, 1.5)
        };
        let mut memory = vec![0.0; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let mut out = vec![0.0; model.step_output_len()];
        for t in 0..steps {
            let status = if tokens {
                runtime.step_token(input[t] as u32, &mut out)
            } else {
                runtime.step(&input[t * width..(t + 1) * width], &mut out)
            };
            let status = match status {
                Err(Error::NotStreamable) => {
                    assert!(!model.is_streamable(), "{}", spec.name);
                    break;
                }
                other => other.unwrap(),
            };
            let Some(expected) = window(&model, tokens, &input, width, t + 1) else {
                continue;
            };
            let tail = &expected[expected.len() - out.len()..];
            assert_eq!(status, Status::Ready, "{} step {t}", spec.name);
            // Same operations in the same order: equal to the bit.
            let same = out
                .iter()
                .zip(tail)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{} step {t}: streamed {out:?}, windowed {tail:?}",
                spec.name
            );
            compared += 1;
        }
    }
    assert!(compared >= 98, "only {compared} comparisons ran");
}

#[test]
fn bidirectional_and_reverse_models_refuse_streaming() {
    for (spec, _) in sample_models(3) {
        let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
        let model = blob.open().unwrap();
        let refused = spec.name.starts_with("bidirectional")
            || spec.name == "reverse"
            || spec.name == "crop-both-ends"
            || spec.name == "bidirectional-last-step";
        assert_eq!(model.is_streamable(), !refused, "{}", spec.name);
    }
}

#[test]
fn keep_last_models_report_warm_up() {
    let (spec, _) = sample_models(5)
        .into_iter()
        .find(|(s, _)| s.name == "keep-last-time-distributed")
        .unwrap();
    let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
    let model = blob.open().unwrap();
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut out = vec![0.0; model.step_output_len()];
    assert_eq!(
        runtime.step(&[0.1, 0.2, 0.3], &mut out),
        Ok(Status::Warming { remaining: 2 })
    );
    assert_eq!(
        runtime.step(&[0.1, 0.2, 0.3], &mut out),
        Ok(Status::Warming { remaining: 1 })
    );
    assert_eq!(runtime.step(&[0.1, 0.2, 0.3], &mut out), Ok(Status::Ready));
    runtime.reset();
    assert_eq!(
        runtime.step(&[0.1, 0.2, 0.3], &mut out),
        Ok(Status::Warming { remaining: 2 })
    );
}

#[test]
fn state_round_trips_through_save_and_restore() {
    let (spec, _) = sample_models(9).into_iter().next().unwrap();
    let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
    let model = blob.open().unwrap();
    let mut rng = Rng::new(1);
    let inputs: Vec<Vec<f32>> = (0..6).map(|_| rng.values(3, 1.0)).collect();
    let mut mem_a = vec![0.0; model.memory().total()];
    let mut a = Runtime::new(&model, &mut mem_a).unwrap();
    let mut out_a = vec![0.0; model.step_output_len()];
    for x in &inputs[..3] {
        a.step(x, &mut out_a).unwrap();
    }
    let saved = a.state().to_vec();
    let mut mem_b = vec![0.0; model.memory().total()];
    let mut b = Runtime::new(&model, &mut mem_b).unwrap();
    b.restore_state(&saved).unwrap();
    assert_eq!(
        b.restore_state(&saved[1..]),
        Err(Error::StateLength {
            expected: saved.len(),
            got: saved.len() - 1
        })
    );
    let mut out_b = vec![0.0; model.step_output_len()];
    for x in &inputs[3..] {
        a.step(x, &mut out_a).unwrap();
        b.step(x, &mut out_b).unwrap();
        assert_eq!(out_a, out_b);
    }
}

#[test]
fn wrong_sizes_are_errors() {
    let (spec, _) = sample_models(9).into_iter().next().unwrap();
    let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
    let model = blob.open().unwrap();
    let memory_needed = model.memory();
    let mut small = vec![0.0; memory_needed.state - 1];
    assert!(matches!(
        Runtime::new(&model, &mut small),
        Err(Error::BufferTooSmall { .. })
    ));
    let mut memory = vec![0.0; memory_needed.total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut out = vec![0.0; model.step_output_len()];
    assert_eq!(
        runtime.step(&[1.0, 2.0], &mut out),
        Err(Error::InputLength {
            expected: 3,
            got: 2
        })
    );
    assert!(matches!(
        runtime.step(&[1.0, 2.0, 3.0], &mut out[1..]),
        Err(Error::OutputLength { .. })
    ));
    assert_eq!(runtime.step_token(1, &mut out), Err(Error::WrongInputKind));
    // A window needs more scratch than streaming.
    let mut window_out = vec![0.0; model.output_len(7).unwrap()];
    assert!(matches!(
        runtime.run_window(&[0.5; 21], &mut window_out),
        Err(Error::BufferTooSmall { .. })
    ));
}
