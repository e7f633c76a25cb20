//! tinyrnn (blob runtime and compile-time-sized front door) beside candle-nn, on the same seeded
//! weights and inputs, in one criterion run; and the machine's multiply-add throughput bound.
//!
//! `cargo bench --manifest-path bench-peers/Cargo.toml --bench peers`
//! (`RUSTFLAGS="-C target-cpu=native"` builds tinyrnn and the peer for this CPU; the bound kernel asks
//! the CPU at run time and needs no flag).
//!
//! Before anything is timed, each peer's outputs are checked against tinyrnn's (within 1e-5 over the
//! whole window), so the comparison is of the same computation.

use std::hint::black_box;

use candle_core::Tensor;
use candle_nn::rnn::RNN;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tinyrnn::format::Cell;
use tinyrnn::sized::{Gru, Lstm, SimpleRnn};
use tinyrnn::{Model, Runtime};
use tinyrnn_bench_peers::{
    blob, candle_gru, candle_lstm, candle_step_input, cells, kernel, multiply_adds, window_input,
    Kernel, HIDDEN, INPUT, MULTIPLY_ADDS_PER_ROUND, WINDOW,
};

/// The runtime's window output (`WINDOW × HIDDEN`) for `model`.
fn runtime_window(model: &Model<'_>, input: &[f32]) -> Vec<f32> {
    let mut memory = vec![0.0; model.window_memory(WINDOW).expect("memory").total()];
    let mut runtime = Runtime::new(model, &mut memory).expect("runtime");
    let mut out = vec![0.0; model.output_len(WINDOW).expect("len")];
    runtime.run_window(input, &mut out).expect("window");
    out
}

/// Panics unless `theirs` is within 1e-5 of `ours`, value by value.
fn assert_agrees(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let largest = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(largest <= 1e-5, "{what}: largest difference {largest}");
    eprintln!("{what}: agrees with tinyrnn, largest difference {largest:.1e}");
}

/// A window of `(1, WINDOW, INPUT)` for candle.
fn candle_window(input: &[f32]) -> Tensor {
    Tensor::from_slice(input, (1, WINDOW, INPUT), &candle_core::Device::Cpu).expect("tensor")
}

/// Runs a sized front door over the window from its initial state, writing every `h`.
macro_rules! sized_window {
    ($door:expr, $input:expr, $out:expr) => {{
        $door.reset();
        for (x, y) in $input
            .chunks_exact(INPUT)
            .zip($out.chunks_exact_mut(HIDDEN))
        {
            let x: &[f32; INPUT] = x.try_into().expect("row");
            y.copy_from_slice($door.step(x).expect("step"));
        }
    }};
}

fn cells_side_by_side(c: &mut Criterion) {
    let input = window_input();
    let sample = [0.3f32, -0.7, 0.2];
    for (name, cell) in cells() {
        let blob = blob(cell);
        let model = blob.open().expect("model");
        let expected = runtime_window(&model, &input);

        // One streaming step.
        let mut group = c.benchmark_group(format!("{name}_step_i{INPUT}_h{HIDDEN}"));
        group.throughput(Throughput::Elements(1));
        let mut memory = vec![0.0; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
        let mut out = vec![0.0; model.step_output_len()];
        group.bench_function("tinyrnn_runtime", |b| {
            b.iter(|| runtime.step(black_box(&sample), black_box(&mut out)))
        });
        // The same step with the fast sigmoid and tanh (`Runtime::set_fast_activations`).
        let mut fast_memory = vec![0.0; model.memory().total()];
        let mut fast = Runtime::new(&model, &mut fast_memory).expect("runtime");
        fast.set_fast_activations(true);
        group.bench_function("tinyrnn_runtime_fast", |b| {
            b.iter(|| fast.step(black_box(&sample), black_box(&mut out)))
        });
        match cell {
            Cell::Lstm { .. } => {
                let mut door = Lstm::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                let mut got = vec![0.0; expected.len()];
                sized_window!(door, input, got);
                assert_eq!(got, expected, "{name}: sized front door");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| door.step(black_box(&sample)).map(|h| h[0]))
                });
                let peer = candle_lstm(&model);
                let states = peer.seq(&candle_window(&input)).expect("candle seq");
                let seq = peer.states_to_tensor(&states).expect("candle outputs");
                let theirs = seq.flatten_all().and_then(|t| t.to_vec1()).expect("values");
                assert_agrees(&format!("candle-nn LSTM, {name}"), &expected, &theirs);
                let mut state = peer.zero_state(1).expect("state");
                group.bench_function("candle_nn", |b| {
                    b.iter(|| {
                        let x = candle_step_input(black_box(&sample));
                        state = peer.step(&x, &state).expect("step");
                    })
                });
            }
            Cell::Gru { .. } => {
                let mut door = Gru::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                let mut got = vec![0.0; expected.len()];
                sized_window!(door, input, got);
                assert_eq!(got, expected, "{name}: sized front door");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| door.step(black_box(&sample)).map(|h| h[0]))
                });
                let peer = candle_gru(&model);
                let states = peer.seq(&candle_window(&input)).expect("candle seq");
                let seq = peer.states_to_tensor(&states).expect("candle outputs");
                let theirs = seq.flatten_all().and_then(|t| t.to_vec1()).expect("values");
                assert_agrees(&format!("candle-nn GRU, {name}"), &expected, &theirs);
                let mut state = peer.zero_state(1).expect("state");
                group.bench_function("candle_nn", |b| {
                    b.iter(|| {
                        let x = candle_step_input(black_box(&sample));
                        state = peer.step(&x, &state).expect("step");
                    })
                });
            }
            Cell::SimpleRnn => {
                let mut door = SimpleRnn::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                let mut got = vec![0.0; expected.len()];
                sized_window!(door, input, got);
                assert_eq!(got, expected, "{name}: sized front door");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| door.step(black_box(&sample)).map(|h| h[0]))
                });
            }
        }
        group.finish();

        // A window of WINDOW steps from the initial state.
        let mut group = c.benchmark_group(format!("{name}_window{WINDOW}_i{INPUT}_h{HIDDEN}"));
        group.throughput(Throughput::Elements(WINDOW as u64));
        let mut memory = vec![0.0; model.window_memory(WINDOW).expect("memory").total()];
        let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
        let mut out = vec![0.0; model.output_len(WINDOW).expect("len")];
        group.bench_function("tinyrnn_runtime", |b| {
            b.iter(|| runtime.run_window(black_box(&input), black_box(&mut out)))
        });
        let mut out = vec![0.0; expected.len()];
        match cell {
            Cell::Lstm { .. } => {
                let mut door = Lstm::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| sized_window!(door, black_box(&input), black_box(&mut out)))
                });
                let peer = candle_lstm(&model);
                group.bench_function("candle_nn", |b| {
                    b.iter(|| {
                        let states = peer.seq(&candle_window(black_box(&input))).expect("seq");
                        peer.states_to_tensor(&states).expect("outputs")
                    })
                });
            }
            Cell::Gru { .. } => {
                let mut door = Gru::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| sized_window!(door, black_box(&input), black_box(&mut out)))
                });
                let peer = candle_gru(&model);
                group.bench_function("candle_nn", |b| {
                    b.iter(|| {
                        let states = peer.seq(&candle_window(black_box(&input))).expect("seq");
                        peer.states_to_tensor(&states).expect("outputs")
                    })
                });
            }
            Cell::SimpleRnn => {
                let mut door = SimpleRnn::<INPUT, HIDDEN>::open(&model, 0).expect("sized");
                group.bench_function("tinyrnn_sized", |b| {
                    b.iter(|| sized_window!(door, black_box(&input), black_box(&mut out)))
                });
            }
        }
        group.finish();
    }
}

/// The multiply-add throughput bound: criterion reports it as elements (multiply-adds) per second.
fn bound(c: &mut Criterion) {
    const ROUNDS: u64 = 10_000;
    let mut group = c.benchmark_group("multiply_add_bound");
    group.throughput(Throughput::Elements(ROUNDS * MULTIPLY_ADDS_PER_ROUND));
    for fma in [true, false] {
        let name = match kernel(fma) {
            Kernel::Fma => "fma_avx_8_lanes",
            Kernel::MulThenAdd => "mul_then_add_sse_4_lanes",
            Kernel::Portable => "portable",
        };
        group.bench_function(name, |b| b.iter(|| multiply_adds(black_box(ROUNDS), fma)));
    }
    group.finish();
}

criterion_group!(benches, bound, cells_side_by_side);
criterion_main!(benches);
