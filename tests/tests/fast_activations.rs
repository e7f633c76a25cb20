//! `Runtime::set_fast_activations`: streaming and windows agree bit for bit with the fast sigmoid and
//! tanh too, and the outputs stay close to the exact ones.

use tinyrnn::format::InputKind;
use tinyrnn::{Model, Runtime};
use tinyrnn_conformance::{sample_models, Rng};
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

/// Streams `steps` timesteps and returns every step's output, concatenated.
fn stream(model: &Model<'_>, input: &[f32], steps: usize, fast: bool) -> Vec<f32> {
    let width = model.input_width();
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(model, &mut memory).unwrap();
    runtime.set_fast_activations(fast);
    assert_eq!(runtime.fast_activations(), fast);
    let mut out = vec![0.0; model.step_output_len()];
    let mut all = Vec::new();
    for t in 0..steps {
        runtime
            .step(&input[t * width..(t + 1) * width], &mut out)
            .unwrap();
        all.extend_from_slice(&out);
    }
    all
}

/// The window over all `steps` timesteps.
fn window(model: &Model<'_>, input: &[f32], steps: usize, fast: bool) -> Vec<f32> {
    let mut memory = vec![0.0; model.window_memory(steps).unwrap().total()];
    let mut runtime = Runtime::new(model, &mut memory).unwrap();
    runtime.set_fast_activations(fast);
    let mut out = vec![0.0; model.output_len(steps).unwrap()];
    runtime
        .run_window(&input[..steps * model.input_width()], &mut out)
        .unwrap();
    out
}

#[test]
fn fast_activations_stream_as_they_window_and_stay_near_the_exact_ones() {
    let mut rng = Rng::new(21);
    let (mut compared, mut differed) = (0, 0);
    for (spec, steps) in sample_models(5) {
        let blob = AlignedBlob::new(&to_blob(&spec).unwrap());
        let model = blob.open().unwrap();
        if !model.is_streamable() || model.input().kind == InputKind::Tokens {
            continue;
        }
        let input = rng.values(steps * model.input_width(), 1.5);
        let fast = stream(&model, &input, steps, true);
        let exact = stream(&model, &input, steps, false);
        // The last step's output against the window over the same timesteps: same operations.
        let last = &fast[fast.len() - model.step_output_len()..];
        let windowed = window(&model, &input, steps, true);
        let tail = &windowed[windowed.len() - last.len()..];
        assert!(
            last.iter()
                .zip(tail)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: streamed {last:?}, windowed {tail:?}",
            spec.name
        );
        // Each activation is within 4e-7 of the exact one; over a few layers and steps of these
        // small random models the outputs move by far less than 1e-4.
        for (f, e) in fast.iter().zip(&exact) {
            assert!((f - e).abs() <= 1e-4, "{}: fast {f}, exact {e}", spec.name);
        }
        differed += usize::from(fast != exact);
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} models compared");
    // The setting reaches the cells: some outputs are not the exact ones.
    assert!(differed > 0, "fast activations changed nothing");
}
