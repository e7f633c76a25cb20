//! `tinyrnn`: import trained recurrent models, and inspect and run model blobs on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tinyrnn_converter::{import, npy, report, run, write};

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
    },
    /// Print a blob's layers, shapes, parameter counts, memory and compute.
    Inspect {
        /// The blob.
        model: PathBuf,
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
        Command::Import { model, output } => {
            let spec = import::import(&model)?;
            let blob =
                write::to_blob(&spec).with_context(|| format!("writing {}", output.display()))?;
            std::fs::write(&output, &blob)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} bytes)\n", output.display(), blob.len());
            print!("{}", describe(&output, &blob)?);
            Ok(())
        }
        Command::Run {
            model,
            input,
            output,
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
            Ok(())
        }
        Command::Inspect { model } => {
            let blob = read_blob(&model)?;
            print!("{}", describe(&model, &blob)?);
            Ok(())
        }
    }
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
