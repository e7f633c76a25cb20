//! One streaming step of each cell at input 3, hidden 32, and a windowed run of 96 steps, f32.
//!
//! `cargo bench -p tinyrnn-conformance --bench step`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tinyrnn::format::Cell;
use tinyrnn::Runtime;
use tinyrnn_conformance::{model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

fn cells() -> [(&'static str, Cell); 3] {
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

fn blob(cell: Cell, hidden: usize) -> AlignedBlob {
    let mut rng = Rng::new(3);
    let spec = model(
        "bench",
        3,
        None,
        vec![recurrent(&mut rng, 3, RecurrentOptions::new(cell, hidden))],
    );
    AlignedBlob::new(&to_blob(&spec).expect("blob"))
}

fn streaming_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("step_i3_h32");
    for (name, cell) in cells() {
        let blob = blob(cell, 32);
        let model = blob.open().expect("model");
        let mut memory = vec![0.0; model.memory().total()];
        let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
        let mut out = vec![0.0; model.step_output_len()];
        let input = [0.3f32, -0.7, 0.2];
        group.bench_function(name, |b| {
            b.iter(|| runtime.step(black_box(&input), black_box(&mut out)))
        });
    }
    group.finish();
}

fn windowed(c: &mut Criterion) {
    let mut group = c.benchmark_group("window96_i3_h32");
    let mut rng = Rng::new(5);
    let input = rng.values(96 * 3, 1.0);
    for (name, cell) in cells() {
        let blob = blob(cell, 32);
        let model = blob.open().expect("model");
        let mut memory = vec![0.0; model.window_memory(96).expect("memory").total()];
        let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
        let mut out = vec![0.0; model.output_len(96).expect("len")];
        group.bench_function(name, |b| {
            b.iter(|| runtime.run_window(black_box(&input), black_box(&mut out)))
        });
    }
    group.finish();
}

criterion_group!(benches, streaming_step, windowed);
criterion_main!(benches);
