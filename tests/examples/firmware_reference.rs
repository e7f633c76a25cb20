//! Host side of the firmware check: the canned samples the QEMU firmware streams, and the forecasts the
//! host engine makes from them, printed exactly as the firmware prints them.
//!
//! ```text
//! cargo run -p tinyrnn-conformance --example firmware_reference -- samples examples/kpi/input.npy
//! cargo run -p tinyrnn-conformance --example firmware_reference -- forecast BLOB SAMPLES.csv
//! ```
//!
//! `samples` writes every timestep of a `(batch, time, features)` `.npy` as one comma-separated line;
//! `forecast` pushes each line through a `Forecaster` in the model's natural mode and prints one
//! `forecast <sample index> <values…>` line per forecast, the values as Rust's `{:e}` (shortest exact).

use std::path::Path;

use anyhow::{bail, Context, Result};
use tinyrnn::{Forecaster, Mode};
use tinyrnn_converter::npy::{self, Data};
use tinyrnn_converter::run::AlignedBlob;

/// Same ring capacity as the firmware.
const W: usize = 64;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["samples", npy_path] => samples(Path::new(npy_path)),
        ["forecast", blob, samples] => forecast(Path::new(blob), Path::new(samples)),
        _ => bail!("usage: firmware_reference samples IN.npy | forecast BLOB SAMPLES.csv"),
    }
}

fn samples(path: &Path) -> Result<()> {
    let array = npy::read(path)?;
    let Data::Float(values) = &array.data else {
        bail!("{} holds integers, expected floats", path.display());
    };
    let features = *array.shape.last().context("scalar array")?;
    for row in values.chunks_exact(features) {
        let line: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        println!("{}", line.join(","));
    }
    Ok(())
}

fn forecast(blob: &Path, samples: &Path) -> Result<()> {
    let bytes = std::fs::read(blob).with_context(|| blob.display().to_string())?;
    let blob = AlignedBlob::new(&bytes);
    let model = blob.open()?;
    let mode = Mode::of(&model).map_err(anyhow::Error::msg)?;
    let mut memory =
        vec![0.0; Forecaster::<W>::memory_words(&model, mode).map_err(anyhow::Error::msg)?];
    let mut stream = Forecaster::<W>::new(&model, &mut memory).map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(samples).with_context(|| samples.display().to_string())?;
    for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let sample = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("line {}", index + 1))?;
        if let Some(out) = stream.push(&sample).map_err(anyhow::Error::msg)? {
            let values: Vec<String> = out.iter().map(|v| format!("{v:e}")).collect();
            println!("forecast {index} {}", values.join(" "));
        }
    }
    Ok(())
}
