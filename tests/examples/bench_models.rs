//! Writes the blobs the firmware's `bench` binary measures: one recurrent layer (input 3) of each cell at
//! hidden 16, 32 and 64 in one numeric mode (f32, i8w or i8x16), with seeded random weights, plus a
//! `list.rs` that the firmware includes to know them. One mode per build keeps the binary inside the
//! 256 KiB of flash the QEMU layouts allow. `i8x16` is calibrated on 64 seeded random timesteps in
//! `[-1, 1]` (the bench feeds inputs in that range).
//!
//! `cargo run -p tinyrnn-conformance --example bench_models -- DIR MODE` (firmware/bench.sh runs it).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tinyrnn::format::Cell;
use tinyrnn_conformance::{model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::npy::Array;
use tinyrnn_converter::quantize::{quantize, quantize_with, Mode};
use tinyrnn_converter::write::to_blob;

fn main() -> Result<()> {
    let usage = "usage: bench_models DIR f32|i8w|i8x16";
    let dir = PathBuf::from(std::env::args().nth(1).context(usage)?);
    let wanted = std::env::args().nth(2).context(usage)?;
    std::fs::create_dir_all(&dir)?;
    let cells = [
        (
            "lstm",
            Cell::Lstm {
                input_forget: false,
            },
        ),
        ("gru", Cell::Gru { reset_after: true }),
        ("rnn", Cell::SimpleRnn),
    ];
    let mut list = String::from("&[\n");
    for (name, cell) in cells {
        for hidden in [16, 32, 64] {
            let mut rng = Rng::new(3);
            let spec = model(
                "bench",
                3,
                None,
                vec![recurrent(&mut rng, 3, RecurrentOptions::new(cell, hidden))],
            );
            let blob = match wanted.as_str() {
                "f32" => to_blob(&spec)?,
                "i8w" => to_blob(&quantize(&spec, Mode::I8w)?)?,
                "i8x16" => {
                    let mut data = Rng::new(7);
                    let x: Vec<f32> = (0..64 * 3).map(|_| data.uniform(1.0)).collect();
                    let calibration = Array::float(vec![1, 64, 3], x)?;
                    to_blob(&quantize_with(&spec, Mode::I8x16, Some(&calibration))?)?
                }
                other => anyhow::bail!("unknown mode {other}; {usage}"),
            };
            let mode = wanted.as_str();
            {
                let file = format!("{name}_{hidden}_{mode}.trnn");
                std::fs::write(dir.join(&file), &blob)?;
                writeln!(
                    list,
                    "    (\"{name} h{hidden} {mode}\", tinyrnn_firmware::include_blob!({:?})),",
                    dir.join(&file).canonicalize()?
                )?;
            }
        }
    }
    list.push_str("]\n");
    std::fs::write(dir.join("list.rs"), list)?;
    println!("wrote 9 {wanted} blobs to {}", dir.display());
    Ok(())
}
