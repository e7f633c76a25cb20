//! `tinyrnn`: import trained recurrent models, and inspect and run model blobs on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tinyrnn_converter::{calibrate, compare, import, npy, quantize, report, run, spec, write};

#[derive(Parser)]
#[command(
    name = "tinyrnn",
    version,
    about = "Recurrent networks for microcontrollers: import, inspect and run model blobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a trained model (Keras .keras/.h5, ONNX .onnx) into a tinyrnn blob.
    Import {
        /// The model file; its format is detected from its contents.
        model: PathBuf,
        /// Where to write the blob.
        #[arg(short, long, value_name = "OUT.trnn")]
        output: PathBuf,
        /// Write the model quantized to this numeric mode instead of f32.
        #[arg(long, value_name = "MODE")]
        quantize: Option<quantize::Mode>,
        /// Calibration data for --quantize (see `tinyrnn quantize --calibrate`).
        #[arg(long, value_name = "X.npy|X.csv", requires = "quantize")]
        calibrate: Option<PathBuf>,
    },
    /// Quantize an f32 blob to int8 weights (i8w) or to integer-only inference (i8x16), and report its
    /// error and size.
    Quantize {
        /// The f32 blob.
        model: PathBuf,
        /// The numeric mode.
        #[arg(long, value_enum)]
        mode: quantize::Mode,
        /// Calibration data: an input batch (.npy, laid out as `tinyrnn run` reads it) or a CSV (a header
        /// row, then one numeric column per input feature and one row per timestep). i8x16 chooses its
        /// fixed-point formats from the first 80% of the windows; the error against f32 is measured on
        /// the rest.
        #[arg(long, value_name = "X.npy|X.csv")]
        calibrate: Option<PathBuf>,
        /// Where to write the quantized blob.
        #[arg(short, long, value_name = "OUT.trnn")]
        output: PathBuf,
    },
    /// Run a blob over a batch read from .npy, laid out as the source framework lays it out.
    Run {
        /// The blob.
        model: PathBuf,
        /// Input batch: Keras (batch, time, features) or (batch, time) token ids; ONNX as its layout says.
        #[arg(short, long, value_name = "X.npy")]
        input: PathBuf,
        /// Where to write the output (float32 .npy); printed when absent.
        #[arg(short, long, value_name = "Y.npy")]
        output: Option<PathBuf>,
        /// The source framework's output for the same input: fail unless every value is within
        /// 1e-5 + 1e-4·|reference|.
        #[arg(long, value_name = "REFERENCE.npy")]
        expect: Option<PathBuf>,
    },
    /// Print a blob's layers, shapes, parameter counts, memory and compute; for an f32 blob, also flash,
    /// RAM and MACs per step of each quantized mode, and with --data their error against f32.
    Inspect {
        /// The blob.
        model: PathBuf,
        /// An input batch (.npy laid out as `tinyrnn run` reads it, or a CSV as `quantize --calibrate`
        /// takes it) on which to calibrate i8x16 (first 80% of the windows) and measure each quantized
        /// mode's error against f32 (the rest), per output.
        #[arg(long, value_name = "X.npy|X.csv")]
        data: Option<PathBuf>,
    },
    /// The bundled example end to end: import the KPI forecaster trained in Keras, write its blob, run it
    /// windowed against Keras' own outputs, then stream one window sample by sample.
    Demo {
        /// Folder with kpi_forecaster.keras, input.npy and expected.npy.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kpi"))]
        example: PathBuf,
        /// Where to write the blob.
        #[arg(short, long, default_value = "out/kpi_forecaster.trnn")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import {
            model,
            output,
            quantize,
            calibrate,
        } => {
            let spec = import::import(&model)?;
            match quantize {
                None => {
                    let blob = write::to_blob(&spec)
                        .with_context(|| format!("writing {}", output.display()))?;
                    write_blob(&output, &blob)?;
                    print!("{}", describe(&output, &blob)?);
                    Ok(())
                }
                Some(mode) => {
                    let f32_blob = write::to_blob(&spec)?;
                    quantize_and_report(&f32_blob, mode, calibrate.as_deref(), &output)
                }
            }
        }
        Command::Quantize {
            model,
            mode,
            calibrate,
            output,
        } => {
            let blob = read_blob(&model)?;
            quantize_and_report(&blob, mode, calibrate.as_deref(), &output)
                .with_context(|| format!("quantizing {}", model.display()))
        }
        Command::Run {
            model,
            input,
            output,
            expect,
        } => {
            let blob = read_blob(&model)?;
            let x = npy::read(&input)?;
            let y = run::run_batch(&blob, &x)
                .with_context(|| format!("running {} on {}", model.display(), input.display()))?;
            match (output, &y.data) {
                (Some(path), npy::Data::Float(values)) => {
                    npy::write_f32(&path, &y.shape, values)?;
                    println!("wrote {} with shape {:?}", path.display(), y.shape);
                }
                (None, npy::Data::Float(values)) => print_array(&y.shape, values),
                (_, npy::Data::Int(_)) => anyhow::bail!("the engine returned integers"),
            }
            if let Some(reference) = expect {
                check_against(&y, &reference)?;
            }
            Ok(())
        }
        Command::Inspect { model, data } => {
            let blob = read_blob(&model)?;
            print!("{}", describe(&model, &blob)?);
            let aligned = run::AlignedBlob::new(&blob);
            let spec = spec::ModelSpec::from_model(&aligned.open()?)?;
            if spec.is_quantized() {
                if data.is_some() {
                    println!("\n(the blob is quantized: inspect its f32 blob to compare modes)");
                }
                return Ok(());
            }
            let data = match &data {
                Some(path) => Some((path, calibrate::load(path, &spec)?)),
                None => None,
            };
            let split = match &data {
                Some((_, x)) => Some(calibrate::split(x, spec.io.input)?),
                None => None,
            };
            let mut blobs: Vec<(&str, Vec<u8>)> = vec![("f32", blob.clone())];
            for mode in [quantize::Mode::I8w, quantize::Mode::I8x16] {
                let calibration = split.as_ref().map(|s| &s.calibration);
                if mode.needs_calibration() && calibration.is_none() {
                    println!(
                        "\n{} needs calibration data for its formats: pass --data X.npy|X.csv",
                        mode.name()
                    );
                    continue;
                }
                match quantize::quantize_with(&spec, mode, calibration)
                    .and_then(|q| write::to_blob(&q))
                {
                    Ok(q) => blobs.push((mode.name(), q)),
                    Err(err) => {
                        println!("\n{} is not available for this model: {err:#}", mode.name())
                    }
                }
            }
            println!();
            let table: Vec<(&str, &[u8])> = blobs.iter().map(|(n, b)| (*n, &b[..])).collect();
            print!("{}", report::modes(&table));
            if let (Some((path, _)), Some(split)) = (&data, &split) {
                for (name, quantized) in &blobs[1..] {
                    let errors = quantize::error_per_output(&blob, quantized, &split.held_out)
                        .with_context(|| format!("measuring the error on {}", path.display()))?;
                    println!(
                        "\nerror of {name} against f32 on {}:",
                        held_out_text(path, split)
                    );
                    print!("{}", report::accuracy(&errors));
                }
            }
            Ok(())
        }
        Command::Demo { example, output } => demo(&example, &output),
    }
}

fn demo(example: &Path, output: &Path) -> Result<()> {
    let source = example.join("kpi_forecaster.keras");
    println!("1. import {}", source.display());
    let spec = import::import(&source)?;
    let blob = write::to_blob(&spec)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(output, &blob).with_context(|| format!("writing {}", output.display()))?;
    println!("   wrote {} ({} bytes)\n", output.display(), blob.len());
    print!("{}", describe(output, &blob)?);

    let input = npy::read(&example.join("input.npy"))?;
    println!(
        "\n2. run {} windows of {:?} through the engine",
        input.shape[0],
        &input.shape[1..]
    );
    let y = run::run_batch(&blob, &input)?;
    println!(
        "   output {:?}, compared with Keras model.predict:",
        y.shape
    );
    check_against(&y, &example.join("expected.npy"))?;
    let npy::Data::Float(ours) = &y.data else {
        anyhow::bail!("the engine returned integers");
    };

    println!("\n3. stream the last window one sample at a time (state kept between calls)");
    let aligned = run::AlignedBlob::new(&blob);
    let model = aligned.open()?;
    let mut memory = vec![0.0f32; model.memory().total()];
    let mut runtime = tinyrnn::Runtime::new(&model, &mut memory)?;
    let npy::Data::Float(x) = &input.data else {
        anyhow::bail!("expected float input");
    };
    let (steps, width) = (input.shape[1], input.shape[2]);
    let last = &x[x.len() - steps * width..];
    let mut forecast = vec![0.0f32; model.step_output_len()];
    for (t, sample) in last.chunks_exact(width).enumerate() {
        let status = runtime.step(sample, &mut forecast)?;
        let values: Vec<String> = forecast.iter().map(|v| format!("{v:.4}")).collect();
        println!(
            "   sample {t}: {sample:?} -> {status:?} [{}]",
            values.join(", ")
        );
    }
    let windowed = &ours[ours.len() - forecast.len()..];
    println!(
        "   streamed forecast equals the windowed one: {}",
        forecast
            .iter()
            .zip(windowed)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    println!("   (CQI and DL PRB usage, 2 steps ahead, min-max scaled: CQI 0-15, PRB 0-100 %)");
    Ok(())
}

/// Compares an output with a reference file and fails when any value is out of tolerance.
fn check_against(y: &npy::Array, reference: &Path) -> Result<()> {
    let expected = npy::read(reference)?;
    let c = compare::compare(y, &expected)
        .with_context(|| format!("comparing with {}", reference.display()))?;
    if let Some((index, ours, theirs)) = c.first_mismatch {
        anyhow::bail!(
            "output differs from {} at element {index}: {ours} vs {theirs} (tolerance {} + {}·|reference|)",
            reference.display(),
            compare::ATOL,
            compare::RTOL
        );
    }
    println!(
        "   matches {} within {} + {}·|reference| (largest difference {:.2e})",
        reference.display(),
        compare::ATOL,
        compare::RTOL,
        c.max_abs_diff
    );
    Ok(())
}

/// Quantizes an f32 blob, writes the result and prints its description, sizes per mode and (with data)
/// its error against f32 on the held-out part of the data.
fn quantize_and_report(
    f32_blob: &[u8],
    mode: quantize::Mode,
    data: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let aligned = run::AlignedBlob::new(f32_blob);
    let spec = spec::ModelSpec::from_model(&aligned.open()?)?;
    let loaded = match data {
        Some(path) => Some(calibrate::load(path, &spec)?),
        None => None,
    };
    let split = match &loaded {
        Some(x) => Some(calibrate::split(x, spec.io.input)?),
        None => None,
    };
    let quantized = quantize::quantize_with(&spec, mode, split.as_ref().map(|s| &s.calibration))?;
    let blob = write::to_blob(&quantized)?;
    write_blob(output, &blob)?;
    print!("{}", describe(output, &blob)?);
    println!();
    let mut table: Vec<(&str, Vec<u8>)> = vec![("f32", f32_blob.to_vec())];
    for other in [quantize::Mode::I8w, quantize::Mode::I8x16] {
        if other == mode {
            table.push((other.name(), blob.clone()));
        } else if let Ok(b) =
            quantize::quantize_with(&spec, other, split.as_ref().map(|s| &s.calibration))
                .and_then(|q| write::to_blob(&q))
        {
            table.push((other.name(), b));
        }
    }
    let table: Vec<(&str, &[u8])> = table.iter().map(|(n, b)| (*n, &b[..])).collect();
    print!("{}", report::modes(&table));
    println!();
    match (data, &split) {
        (Some(path), Some(split)) => {
            let errors = quantize::error_per_output(f32_blob, &blob, &split.held_out)
                .with_context(|| format!("measuring the error on {}", path.display()))?;
            println!(
                "error of {} against f32 on {}:",
                mode.name(),
                held_out_text(path, split)
            );
            print!("{}", report::accuracy(&errors));
        }
        _ => println!(
            "no data given, so no error measured: {}",
            quantize::CALIBRATION_HINT
        ),
    }
    Ok(())
}

/// Which windows of `path` the error was measured on.
fn held_out_text(path: &Path, split: &calibrate::Split) -> String {
    if split.held_out_is_separate {
        format!(
            "the held-out windows of {} (those not used for calibration)",
            path.display()
        )
    } else {
        format!(
            "{} (one window only, so the same one that calibrated: pass more windows for a held-out \
             measure)",
            path.display()
        )
    }
}

fn write_blob(path: &Path, blob: &[u8]) -> Result<()> {
    std::fs::write(path, blob).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {} ({} bytes)\n", path.display(), blob.len());
    Ok(())
}

fn read_blob(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn describe(path: &Path, blob: &[u8]) -> Result<String> {
    let aligned = run::AlignedBlob::new(blob);
    let model = aligned
        .open()
        .with_context(|| format!("{} is not a valid tinyrnn blob", path.display()))?;
    Ok(report::describe(&model, blob.len()))
}

/// Prints an array as rows of its last axis, indexed by the leading axes.
fn print_array(shape: &[usize], values: &[f32]) {
    println!("shape {shape:?}");
    let last = shape.last().copied().unwrap_or(1).max(1);
    let lead = &shape[..shape.len().saturating_sub(1)];
    for (row, chunk) in values.chunks(last).enumerate() {
        let mut index = Vec::with_capacity(lead.len());
        let mut rest = row;
        for &d in lead.iter().rev() {
            index.push(rest % d.max(1));
            rest /= d.max(1);
        }
        index.reverse();
        let cells: Vec<String> = chunk.iter().map(|v| format!("{v:>10.5}")).collect();
        println!("{index:?} {}", cells.join(" "));
    }
}
