//! Writes the blobs the firmware's `bench` binary measures: one recurrent layer (input 3) of each cell at
//! hidden 16, 32 and 64 in one numeric mode (f32, i8w, i8x16 or i8x16-int16), with seeded random
//! weights, plus a `list.rs` that the firmware includes to know them. One mode per build keeps the binary
//! inside the 256 KiB of flash the QEMU layouts allow. `i8x16` is calibrated on 64 seeded random
//! timesteps in `[-1, 1]` (the bench feeds inputs in that range) and keeps the library's int16 width
//! (matrices of at most 16 columns); `i8x16-int16` is the same with every weight matrix int16, as
//! `quantize` chooses for the ETTh1 GRU(32) forecaster.
//!
//! It also writes `check.txt`: per model (and per activation setting for float models) the FNV-1a hash of
//! the output bits after the bench's 1 + 8 steps, computed by the host engine; `firmware/bench.sh`
//! compares them with the firmware's, so the optimised Cortex-M kernels are checked bit for bit.
//!
//! `cargo run -p tinyrnn-conformance --example bench_models -- DIR MODE [MAX_HIDDEN]` (firmware/bench.sh
//! runs it).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tinyrnn::format::Cell;
use tinyrnn_conformance::{model, recurrent, RecurrentOptions, Rng};
use tinyrnn_converter::npy::Array;
use tinyrnn_converter::quantize::{quantize, quantize_with_options, Mode, Options};
use tinyrnn_converter::spec::ModelSpec;
use tinyrnn_converter::write::to_blob;

fn main() -> Result<()> {
    let usage = "usage: bench_models DIR f32|i8w|i8x16|i8x16-int16 [MAX_HIDDEN]";
    let dir = PathBuf::from(std::env::args().nth(1).context(usage)?);
    let wanted = std::env::args().nth(2).context(usage)?;
    // The micro:bit's 256 KiB of flash holds the soft-float build with the h16 and h32 models only.
    let max_hidden: usize = match std::env::args().nth(3) {
        Some(v) => v.parse().context(usage)?,
        None => 64,
    };
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
    let mut checks = String::new();
    for (name, cell) in cells {
        for hidden in [16, 32, 64].into_iter().filter(|&h| h <= max_hidden) {
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
                "i8x16" => to_blob(&quantize_i8x16(&spec, &Options::default())?)?,
                "i8x16-int16" => {
                    let every_matrix = Options {
                        int16_input_columns: usize::MAX,
                        int16_recurrent_columns: usize::MAX,
                        int16_dense_columns: usize::MAX,
                        ..Options::default()
                    };
                    to_blob(&quantize_i8x16(&spec, &every_matrix)?)?
                }
                other => anyhow::bail!("unknown mode {other}; {usage}"),
            };
            let mode = wanted.as_str();
            for (suffix, check) in host_checks(&blob)? {
                writeln!(checks, "{name} h{hidden} {mode}{suffix} {check:08x}")?;
            }
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
    std::fs::write(dir.join("check.txt"), checks)?;
    println!("wrote the {wanted} blobs to {}", dir.display());
    Ok(())
}

/// `spec` in `i8x16`, calibrated on 64 seeded random timesteps in `[-1, 1]`.
fn quantize_i8x16(spec: &ModelSpec, options: &Options) -> Result<ModelSpec> {
    let mut data = Rng::new(7);
    let x: Vec<f32> = (0..64 * 3).map(|_| data.uniform(1.0)).collect();
    let calibration = Array::float(vec![1, 64, 3], x)?;
    quantize_with_options(spec, Mode::I8x16, Some(&calibration), options)
}

/// The bench's input and step count (`firmware/src/bin/bench.rs`).
const INPUT: [f32; 3] = [0.25, -0.5, 0.75];
const STEPS: usize = 1 + 8;

/// FNV-1a over 32-bit words, as the bench binary computes it.
fn fnv1a(words: impl Iterator<Item = u32>) -> u32 {
    words.fold(0x811c_9dc5, |hash, word| {
        word.to_le_bytes()
            .iter()
            .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    })
}

/// The check values the firmware must print for `blob`: `("", exact)` and `("+fast", fast)` for a float
/// model, `("", integer)` for an integer-only one, and `("+compact", integer)` for one that also streams
/// in less memory (`Model::memory_compact`).
fn host_checks(blob: &[u8]) -> Result<Vec<(&'static str, u32)>> {
    let aligned = tinyrnn_converter::run::AlignedBlob::new(blob);
    let model = aligned.open().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut memory = vec![0.0f32; model.memory().total()];
    let err = |e: tinyrnn::Error| anyhow::anyhow!("{e}");
    if model.is_integer() {
        let frac = model.fixed_point().map_or(0, |f| f.input_frac);
        let one = 1i32 << u32::from(frac).min(14);
        let input = [(one / 4) as i16, (-one / 2) as i16, (3 * one / 4) as i16];
        let mut checks = Vec::new();
        // With `Model::memory_compact` (when it is less), the LSTM steps unit by unit: `+compact`.
        let compact = model.memory_compact().total();
        let mut sizes = vec![("", memory.len())];
        if compact < memory.len() {
            sizes.push(("+compact", compact));
        }
        for (suffix, words) in sizes {
            let memory = &mut memory[..words];
            let mut runtime = tinyrnn::Runtime::new(&model, memory).map_err(err)?;
            let mut out = vec![0i16; model.step_output_len()];
            for _ in 0..STEPS {
                runtime.step_i16(&input, &mut out).map_err(err)?;
            }
            checks.push((suffix, fnv1a(out.iter().map(|&v| v as u16 as u32))));
        }
        return Ok(checks);
    }
    let mut checks = Vec::new();
    for (suffix, fast) in [("", false), ("+fast", true)] {
        let mut runtime = tinyrnn::Runtime::new(&model, &mut memory).map_err(err)?;
        runtime.set_fast_activations(fast);
        let mut out = vec![0.0f32; model.step_output_len()];
        for _ in 0..STEPS {
            runtime.step(&INPUT, &mut out).map_err(err)?;
        }
        checks.push((suffix, fnv1a(out.iter().map(|v| v.to_bits()))));
    }
    Ok(checks)
}
