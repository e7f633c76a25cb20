//! `tinyrnn`: import trained recurrent models, and inspect and run model blobs on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tinyrnn_converter::{compare, import, npy, quantize, report, run, spec, write};

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
    /// Convert a trained model (Keras .keras/.h5, ONNX .onnx, PyTorch .safetensors, NumPy .npz) into a
    /// tinyrnn blob.
    Import {
        /// The model file; its format is detected from its contents.
        model: PathBuf,
        /// PyTorch/NumPy state dicts only: the forward pass, where tensor names and shapes leave it open.
        /// The file's modules in order, `last` for `out[:, -1, :]`, options after a colon, e.g.
        /// "embedding, lstm, last, fc1:relu, fc2" (README, "Importing PyTorch and NumPy").
        #[arg(long, value_name = "DESCRIPTION")]
        arch: Option<String>,
        /// A token model's vocabulary, when the model file does not carry it: a JSON array of words
        /// (Keras `get_vocabulary()`), or {"chars": "..."} for a character model.
        #[arg(long, value_name = "VOCAB.json")]
        vocab: Option<PathBuf>,
        /// Where to write the blob.
        #[arg(short, long, value_name = "OUT.trnn")]
        output: PathBuf,
        /// Write the model quantized to this numeric mode instead of f32.
        #[arg(long, value_name = "MODE")]
        quantize: Option<quantize::Mode>,
    },
    /// Quantize an f32 blob: int8 weights with one scale per row (i8w), and report its error and size.
    Quantize {
        /// The f32 blob.
        model: PathBuf,
        /// The numeric mode.
        #[arg(long, value_enum)]
        mode: quantize::Mode,
        /// An input batch (.npy, laid out as `tinyrnn run` reads it) on which to measure the error against
        /// f32, per output.
        #[arg(long, value_name = "X.npy")]
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
        /// An input batch (.npy, laid out as `tinyrnn run` reads it) on which to measure each quantized
        /// mode's error against f32, per output.
        #[arg(long, value_name = "X.npy")]
        data: Option<PathBuf>,
    },
    /// Generate text with a token model (one-to-many: each drawn token is fed back in).
    Generate {
        /// The blob; it must carry a vocabulary.
        model: PathBuf,
        /// Text to start from.
        #[arg(long, default_value = " ")]
        prime: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 200)]
        length: usize,
        /// Sampling temperature: 1 follows the model, lower is more conservative, 0 always takes the
        /// most likely token.
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Seed of the sampler: the same seed gives the same text, here and on a device.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Score a text with a token model (e.g. a sentiment classifier).
    Classify {
        /// The blob; it must carry a vocabulary.
        model: PathBuf,
        /// The text.
        text: String,
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
            arch,
            vocab,
            output,
            quantize,
        } => {
            let mut spec = import::import_with_arch(&model, arch.as_deref())?;
            if let Some(path) = vocab {
                spec.vocabulary = Some(tinyrnn_converter::vocab::read(&path)?);
            }
            match quantize {
                None => {
                    let blob = write::to_blob_with_self_test(&spec)
                        .with_context(|| format!("writing {}", output.display()))?;
                    write_blob(&output, &blob)?;
                    print!("{}", describe(&output, &blob)?);
                    Ok(())
                }
                Some(mode) => {
                    let f32_blob = write::to_blob(&spec)?;
                    quantize_and_report(&f32_blob, mode, None, &output)
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
            let mode = quantize::Mode::I8w;
            let quantized = match quantize::quantize(&spec, mode).and_then(|q| write::to_blob(&q)) {
                Ok(q) => q,
                Err(err) => {
                    println!("\n{} is not available for this model: {err:#}", mode.name());
                    return Ok(());
                }
            };
            println!();
            print!(
                "{}",
                report::modes(&[("f32", &blob), (mode.name(), &quantized)])
            );
            if let Some(path) = data {
                let x = npy::read(&path)?;
                let errors = quantize::error_per_output(&blob, &quantized, &x)
                    .with_context(|| format!("measuring the error on {}", path.display()))?;
                println!(
                    "\nerror of {} against f32 on {}:",
                    mode.name(),
                    path.display()
                );
                print!("{}", report::accuracy(&errors));
            }
            Ok(())
        }
        Command::Generate {
            model,
            prime,
            length,
            temperature,
            seed,
        } => {
            let blob = read_blob(&model)?;
            let text =
                tinyrnn_converter::text::generate_text(&blob, &prime, length, temperature, seed)
                    .with_context(|| format!("generating with {}", model.display()))?;
            println!("{prime}{text}");
            Ok(())
        }
        Command::Classify { model, text } => {
            let blob = read_blob(&model)?;
            let scores = tinyrnn_converter::text::classify(&blob, &text)
                .with_context(|| format!("classifying with {}", model.display()))?;
            let shown: Vec<String> = scores.iter().map(|s| format!("{s:.6}")).collect();
            println!("{}", shown.join(" "));
            Ok(())
        }
        Command::Demo { example, output } => demo(&example, &output),
    }
}

fn demo(example: &Path, output: &Path) -> Result<()> {
    let source = example.join("kpi_forecaster.keras");
    println!("1. import {}", source.display());
    let spec = import::import(&source)?;
    let blob = write::to_blob_with_self_test(&spec)?;
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
/// its error against f32.
fn quantize_and_report(
    f32_blob: &[u8],
    mode: quantize::Mode,
    data: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let aligned = run::AlignedBlob::new(f32_blob);
    let spec = spec::ModelSpec::from_model(&aligned.open()?)?;
    let quantized = quantize::quantize(&spec, mode)?;
    let blob = write::to_blob(&quantized)?;
    write_blob(output, &write::with_self_test(&blob)?)?;
    print!("{}", describe(output, &blob)?);
    println!();
    print!(
        "{}",
        report::modes(&[("f32", f32_blob), (mode.name(), &blob)])
    );
    println!();
    match data {
        Some(path) => {
            let x = npy::read(path)?;
            let errors = quantize::error_per_output(f32_blob, &blob, &x)
                .with_context(|| format!("measuring the error on {}", path.display()))?;
            println!(
                "error of {} against f32 on {} ({} windows):",
                mode.name(),
                path.display(),
                x.shape.first().copied().unwrap_or(0)
            );
            print!("{}", report::accuracy(&errors));
        }
        None => println!(
            "no data given, so no error measured: pass --calibrate X.npy (an input batch laid out as \
             `tinyrnn run` reads it) to measure the error against f32 per output"
        ),
    }
    Ok(())
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
