//! Saved-state bytes against real models: restoring never panics, refuses what another model or mode wrote,
//! and a stream keeps running after any restore. The first byte picks the stream (a windowed forecaster on
//! the firmware's KPI model, streaming forecasters on an f32 and an int8-weight stacked model, or a bare
//! runtime restoring raw `f32` words); the rest are the state bytes, tried as given and with their closing
//! CRC-32 repaired.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyrnn::{Error, Forecaster, Mode, Model, Runtime};

#[path = "common/mod.rs"]
mod common;

const KPI: &[u8] = include_bytes!("../../firmware/models/kpi_forecaster.trnn");
const STACKED: &[u8] = include_bytes!("../corpus/open_blob/00-stacked-0.trnn");
const STACKED_I8W: &[u8] = include_bytes!("../corpus/open_blob/37-stacked-0-i8w.trnn");

fn forecaster(model: &Model<'_>, state: &[u8]) {
    let mode = Mode::of(model).expect("a runnable model");
    let words = Forecaster::<64>::memory_words(model, mode).expect("memory");
    let mut memory = vec![0.0f32; words];
    let mut stream = Forecaster::<64>::new(model, &mut memory).expect("forecaster");
    let before = stream.state_len();
    match stream.restore_state(state) {
        Ok(()) => {
            // What was restored saves back to the same bytes.
            let mut again = vec![0u8; stream.state_len()];
            stream.save_state(&mut again).expect("save");
            assert_eq!(again, state);
        }
        Err(Error::StateBytes { .. } | Error::StateCorrupt | Error::StateModel { .. }) => {}
        Err(other) => panic!("unexpected restore error {other:?}"),
    }
    assert_eq!(stream.state_len(), before);
    let sample = vec![0.25f32; model.input_width()];
    for _ in 0..8 {
        match stream.push(&sample) {
            Ok(_) | Err(Error::StateOverflow) => {}
            Err(other) => panic!("a stream keeps running after any restore: {other:?}"),
        }
    }
}

fn runtime(model: &Model<'_>, state: &[u8]) {
    let mut memory = vec![0.0f32; model.memory().total()];
    let mut runtime = Runtime::new(model, &mut memory).expect("runtime");
    let words = common::floats(state);
    let _ = runtime.restore_state(&words);
    let mut out = vec![0.0f32; model.step_output_len()];
    match runtime.step(&vec![0.5; model.input_width()], &mut out) {
        Ok(_) | Err(Error::StateOverflow) => {}
        Err(other) => panic!("step after restore: {other:?}"),
    }
    runtime.reset();
    runtime.step(&vec![0.5; model.input_width()], &mut out).expect("step after reset");
    assert!(out.iter().all(|v| v.is_finite()), "reset recovers from any restored state");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, state)) = data.split_first() else { return };
    let blobs = [KPI, STACKED, STACKED_I8W];
    let blob = common::AlignedBytes::new(blobs[usize::from(which) % blobs.len()]);
    let model = Model::open(blob.bytes()).expect("the bundled blobs open");
    let mut repaired = state.to_vec();
    common::repair_crc(&mut repaired);
    if which & 0x80 == 0 {
        forecaster(&model, state);
        forecaster(&model, &repaired);
    } else {
        runtime(&model, state);
    }
});
