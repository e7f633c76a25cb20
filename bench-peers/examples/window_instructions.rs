//! Runs `Runtime::run_window` on the bench model of one cell `N` times, for counting instructions under
//! valgrind (wall time on a shared machine is too noisy for small differences):
//!
//! ```sh
//! cargo build --release --manifest-path bench-peers/Cargo.toml --example window_instructions
//! for n in 0 20; do valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     bench-peers/target/release/examples/window_instructions lstm $n; done
//! ```
//!
//! Instructions per window = (I refs at 20 − I refs at 0) / 20.

use tinyrnn::Runtime;
use tinyrnn_bench_peers::{blob, cells, window_input, WINDOW};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "lstm".into());
    let windows: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let (_, cell) = cells()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("cell: lstm, gru or simple_rnn");
    let blob = blob(cell);
    let model = blob.open().expect("model");
    let input = window_input();
    let mut memory = vec![0.0; model.window_memory(WINDOW).expect("memory").total()];
    let mut runtime = Runtime::new(&model, &mut memory).expect("runtime");
    let mut out = vec![0.0; model.output_len(WINDOW).expect("len")];
    for _ in 0..windows {
        runtime.run_window(&input, &mut out).expect("window");
    }
    println!("{name}: {windows} windows, out[0] = {}", out[0]);
}
