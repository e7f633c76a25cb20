//! A blob and arbitrary inputs: opens the blob (as given and with its checksum repaired), then streams,
//! runs windows and steps token ids with values taken from the rest of the input: any bit pattern, NaN,
//! infinities and huge values included. Layout: blob length `u16` little-endian, the blob, then the
//! inputs as `f32` little-endian (also read as token ids).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyrnn::format::InputKind;
use tinyrnn::{Error, Model, Runtime, Status};

#[path = "common/mod.rs"]
mod common;

fn exercise(model: &Model<'_>, values: &[f32]) {
    let width = model.input_width();
    let tokens = model.input().kind == InputKind::Tokens;
    let steps = model.input().steps.map_or(values.len() / width.max(1), |s| s as usize);
    if steps == 0 || steps > 256 {
        return;
    }
    let Ok(memory) = model.window_memory(steps) else { return };
    if memory.total() > 1 << 20 {
        return;
    }
    let mut buffer = vec![0.0f32; memory.total()];
    let Ok(mut runtime) = Runtime::new(model, &mut buffer) else { return };
    let ids: Vec<u32> = values.iter().map(|v| v.to_bits() % 1024).collect();

    // Windows: of the declared length, and of lengths the model may refuse.
    let Ok(len) = model.output_len(steps) else { return };
    let mut out = vec![0.0f32; len];
    let window: Vec<f32> = values.iter().copied().cycle().take(steps * width).collect();
    let result = if tokens {
        runtime.run_window_tokens(&ids.iter().copied().cycle().take(steps).collect::<Vec<_>>(), &mut out)
    } else {
        runtime.run_window(&window, &mut out)
    };
    if let Ok(n) = result {
        assert_eq!(n * model.output_width(), out.len());
    }
    let _ = runtime.run_window(&values[..values.len().min(7)], &mut out);
    let _ = runtime.run_window_tokens(&ids[..ids.len().min(3)], &mut out);

    // Streaming, with a state save and restore half way.
    let mut step_out = vec![0.0f32; model.step_output_len()];
    runtime.reset();
    for (k, sample) in values.chunks(width.max(1)).enumerate().take(64) {
        let result = if tokens {
            runtime.step_token(ids[k % ids.len()], &mut step_out)
        } else {
            runtime.step(sample, &mut step_out)
        };
        match result {
            Ok(Status::Ready | Status::Warming { .. }) => {}
            Err(Error::NotStreamable | Error::InputLength { .. } | Error::TokenOutOfRange { .. }) => {}
            Err(Error::WrongInputKind | Error::NonFiniteInput { .. }) => {}
            // The state overflowed and was reset: it must be finite again.
            Err(Error::StateOverflow) => {
                assert!(runtime.state().iter().all(|v| v.is_finite()));
            }
            Err(other) => panic!("unexpected streaming error {other:?}"),
        }
        assert!(
            runtime.state().iter().all(|v| v.is_finite()),
            "a step never leaves a NaN or an infinity in the state"
        );
        if k == 3 {
            let saved = runtime.state().to_vec();
            runtime.reset();
            runtime.restore_state(&saved).expect("own state restores");
            assert!(runtime.restore_state(&saved[..saved.len().saturating_sub(1)]).is_err() || saved.is_empty());
        }
    }
    // Wrong kinds and lengths are errors, not panics.
    let _ = runtime.step(&[], &mut step_out);
    let _ = runtime.step(values, &mut []);
    let _ = runtime.step_token(u32::MAX, &mut step_out);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let blob_len = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (blob, rest) = data[2..].split_at(blob_len);
    let values = common::floats(rest);
    if values.is_empty() {
        return;
    }
    let mut aligned = common::AlignedBytes::new(blob);
    if let Ok(model) = Model::open(aligned.bytes()) {
        exercise(&model, &values);
    }
    aligned.repair_crc();
    if let Ok(model) = Model::open(aligned.bytes()) {
        exercise(&model, &values);
    }
});
