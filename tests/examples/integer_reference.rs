//! Writes the integer-only reference files in `tests/data/integer/`:
//!
//! ```text
//! cargo run -p tinyrnn-conformance --example integer_reference
//! ```
//!
//! - `model.trnn`: [`tinyrnn_conformance::integer_reference_blob`], an `i8x16` LSTM → GRU → Dense;
//! - `model-f32.trnn`: the f32 model it was quantized from (the firmware counts its instructions too);
//! - `input.csv`: [`tinyrnn_conformance::integer_reference_input`] quantized to the model's input format,
//!   one timestep of three `i16` per line;
//! - `expected.csv`: the `i16` outputs of streaming `input.csv` through `Runtime::step_i16` on this host,
//!   one step per line. The firmware prints the same lines on a Cortex-M0 (QEMU), and CI compares them
//!   byte for byte: the integer path must give the same bits on every target.
//! - `window-model.trnn`, `window-input.csv`, `window-expected.csv`: the same for a window-normalised
//!   forecaster ([`tinyrnn_conformance::integer_window_reference_blob`]: `SubtractLast` → GRU → Dense →
//!   `Residual`), one window of three `i16` per line in, and its one output line, from
//!   `Runtime::run_window_i16`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use tinyrnn::Runtime;
use tinyrnn_converter::run::AlignedBlob;

fn main() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/integer");
    std::fs::create_dir_all(&dir)?;
    let blob = tinyrnn_conformance::integer_reference_blob();
    std::fs::write(dir.join("model.trnn"), &blob)?;
    let f32_blob =
        tinyrnn_converter::write::to_blob(&tinyrnn_conformance::integer_reference_spec())?;
    std::fs::write(dir.join("model-f32.trnn"), f32_blob)?;
    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open()?;
    let input_frac = model.fixed_point().map_or(0, |f| f.input_frac);
    let scale = (1u32 << input_frac) as f32;
    let x: Vec<i16> = tinyrnn_conformance::integer_reference_input()
        .iter()
        .map(|v| (v * scale).round() as i16)
        .collect();
    let mut input = String::new();
    for row in x.chunks_exact(3) {
        let _ = writeln!(input, "{},{},{}", row[0], row[1], row[2]);
    }
    std::fs::write(dir.join("input.csv"), input)?;
    let mut memory = vec![0.0f32; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory)?;
    let mut y = vec![0i16; model.step_output_len()];
    let mut expected = String::new();
    for row in x.chunks_exact(3) {
        runtime.step_i16(row, &mut y)?;
        let line: Vec<String> = y.iter().map(i16::to_string).collect();
        let _ = writeln!(expected, "{}", line.join(","));
    }
    std::fs::write(dir.join("expected.csv"), expected)?;
    write_window_reference(&dir)?;
    println!(
        "wrote model.trnn ({} bytes), input.csv and expected.csv in {}",
        blob.len(),
        dir.display()
    );
    Ok(())
}

/// The window-normalised reference: blob, one quantized window, and the host's `i16` output.
fn write_window_reference(dir: &Path) -> Result<()> {
    let blob = tinyrnn_conformance::integer_window_reference_blob();
    std::fs::write(dir.join("window-model.trnn"), &blob)?;
    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open()?;
    let scale = (1u32 << model.fixed_point().map_or(0, |f| f.input_frac)) as f32;
    let x: Vec<i16> = tinyrnn_conformance::integer_window_reference_input()
        .iter()
        .map(|v| (v * scale).round() as i16)
        .collect();
    let mut input = String::new();
    for row in x.chunks_exact(3) {
        let _ = writeln!(input, "{},{},{}", row[0], row[1], row[2]);
    }
    std::fs::write(dir.join("window-input.csv"), input)?;
    let steps = x.len() / 3;
    let mut memory = vec![0.0f32; model.window_memory(steps)?.total()];
    let mut runtime = Runtime::new(&model, &mut memory)?;
    let mut y = vec![0i16; model.output_len(steps)?];
    runtime.run_window_i16(&x, &mut y)?;
    let line: Vec<String> = y.iter().map(i16::to_string).collect();
    std::fs::write(
        dir.join("window-expected.csv"),
        format!("{}\n", line.join(",")),
    )?;
    println!(
        "wrote window-model.trnn ({} bytes; window memory {} words), window-input.csv and \
         window-expected.csv",
        blob.len(),
        model.window_memory(steps)?.total()
    );
    Ok(())
}
