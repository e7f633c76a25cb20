//! `tinyrnn`: import trained recurrent models, and inspect and run model blobs on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tinyrnn_converter::train::chars::{self, Optimizer};
use tinyrnn_converter::train::{CellKind, Head};
use tinyrnn_converter::trainer::{self, ColumnRange, ScaleChoice, SplitChoice};
use tinyrnn_converter::{calibrate, compare, import, npy, quantize, report, run, spec, write};
use tinyrnn_converter::{out, outln};

#[derive(Parser)]
#[command(
    name = "tinyrnn",
    version,
    about = "Recurrent networks for microcontrollers: train, import, inspect and run model blobs"
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
        /// Calibration data for --quantize (see `tinyrnn quantize --calibrate`).
        #[arg(long, value_name = "X.npy|X.csv", requires = "quantize")]
        calibrate: Option<PathBuf>,
        #[command(flatten)]
        quantizer: QuantizerFlags,
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
        /// the rest. For a model `tinyrnn train` wrote, the CSV it was trained on (any CSV with its
        /// columns) is read under the stored protocol: its training windows calibrate and its test
        /// windows measure; without this option that CSV is looked for beside the model and in the
        /// working directory.
        #[arg(long, value_name = "X.npy|X.csv")]
        calibrate: Option<PathBuf>,
        #[command(flatten)]
        quantizer: QuantizerFlags,
        /// Where to write the quantized blob.
        #[arg(short, long, value_name = "OUT.trnn")]
        output: PathBuf,
    },
    /// Learn a forecaster from a CSV: windows of input columns forecast the next rows of target
    /// columns. Writes the blob (with its scalers, settings and test metrics) and two plots.
    Train(TrainArgs),
    /// Learn a character model from a UTF-8 text file (min-char-rnn style: truncated backpropagation
    /// through time, Adagrad or Adam), showing samples the engine generates as it learns. Writes the blob
    /// with its vocabulary, ready for `tinyrnn generate`.
    TrainText(TrainTextArgs),
    /// Recompute a trained blob's test metrics on a CSV under the protocol stored in the blob.
    Eval {
        /// A blob written by `tinyrnn train`.
        model: PathBuf,
        /// The CSV it was trained on.
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
    },
    /// Run a blob over a batch read from .npy, laid out as the source framework lays it out; or, with
    /// --csv, forecast in raw units at every row of a CSV, as a device would.
    Run {
        /// The blob.
        model: PathBuf,
        /// Input batch: Keras (batch, time, features) or (batch, time) token ids; ONNX as its layout says.
        #[arg(
            short,
            long,
            value_name = "X.npy",
            required_unless_present = "csv",
            conflicts_with = "csv"
        )]
        input: Option<PathBuf>,
        /// A CSV holding the model's input columns (by name); each row is pushed through the blob's
        /// scalers and the engine, and every forecast is written in raw units.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// With --csv: the timestamp column, when it is not called date, time or timestamp.
        #[arg(long, value_name = "NAME", requires = "csv")]
        time_column: Option<String>,
        /// Where to write the output (float32 .npy, or CSV with --csv); printed when absent.
        #[arg(short, long, value_name = "OUT")]
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
        /// mode's error against f32 (the rest), per output. For a model `tinyrnn train` wrote, its
        /// training CSV: training windows calibrate, test windows measure.
        #[arg(long, value_name = "X.npy|X.csv")]
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
    /// The bundled example end to end: train a KPI forecaster on the bundled synthetic KPI CSV, save
    /// its blob and plots, evaluate it, stream raw samples through the engine; then import the same
    /// kind of model trained in Keras and check it against Keras' own outputs.
    Demo {
        /// Folder with kpi.csv, kpi_forecaster.keras, input.npy and expected.npy.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kpi"))]
        example: PathBuf,
        /// Folder for the blobs and plots.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The CSV: a header row, then one row per timestep; a date/time/timestamp column is kept aside.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// The timestamp column, when it is not called date, time or timestamp.
    #[arg(long, value_name = "NAME")]
    time_column: Option<String>,
    /// Input feature columns, comma-separated.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',', required = true)]
    inputs: Vec<String>,
    /// Target columns to forecast, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Rows per input window.
    #[arg(long)]
    window: usize,
    /// Rows to forecast after each window.
    #[arg(long)]
    horizon: usize,
    /// Rows between training windows (validation and test use every row).
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// Scaling of columns without --range, fitted on the training rows only.
    #[arg(long, value_enum, default_value_t = ScaleChoice::Zscore)]
    scale: ScaleChoice,
    /// A physical range for a column, mapped to 0..1 (overrides --scale for it); repeatable.
    #[arg(long = "range", value_name = "COL=MIN:MAX")]
    ranges: Vec<ColumnRange>,
    /// Chronological train,val,test split: row counts (8640,2880,2880) or fractions.
    #[arg(long, value_name = "TRAIN,VAL,TEST", default_value = "0.7,0.1,0.2")]
    split: SplitChoice,
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = CellKind::Gru)]
    cell: CellKind,
    /// Stacked recurrent layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Hidden size of each recurrent layer.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Read each window in both directions (windowed models only), the two outputs concatenated or
    /// added (Keras merge_mode 'concat' or 'sum'); a bare --bidirectional concatenates.
    #[arg(long, value_enum, value_name = "MERGE", num_args = 0..=1, default_missing_value = "concat")]
    bidirectional: Option<BidirectionalMerge>,
    /// dense: the last state predicts horizon × targets at once; keep-last: the last `horizon` steps of
    /// the sequence output, each mapped to the targets (the seed's many-to-many form).
    #[arg(long, value_enum, default_value_t = Head::Dense)]
    head: Head,
    /// Subtract each window's last value from its inputs and add it back to the forecast, in the model.
    #[arg(long)]
    window_norm: bool,
    /// A linear path from the window straight into the forecast.
    #[arg(long)]
    skip: bool,
    /// With --skip: one linear map per target instead of one shared by all targets.
    #[arg(long, requires = "skip")]
    skip_per_target: bool,
    /// Most passes over the training windows.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Windows per minibatch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Clip the gradients' global norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Stop after this many epochs without a better validation loss (best weights kept).
    #[arg(long, default_value_t = 5)]
    patience: usize,
    /// Seed for initialisation and shuffling: the same seed gives the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the blob.
    #[arg(short, long, value_name = "OUT.trnn")]
    output: PathBuf,
    /// Folder for the plots (default: the blob's folder).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Also write the model quantized to this mode (NAME-MODE.trnn beside the f32 blob), calibrated on
    /// the training windows, and report its test metrics against f32.
    #[arg(long, value_name = "MODE")]
    quantize: Option<quantize::Mode>,
    #[command(flatten)]
    quantizer: QuantizerFlags,
}

/// How the quantizer uses its calibration data (`quantize`, `import --quantize`, `train --quantize`).
#[derive(clap::Args, Clone, Copy, Debug)]
struct QuantizerFlags {
    /// How i8x16 turns the calibration data into ranges: `minmax` (the largest magnitude seen) or
    /// `percentile:P` (the P-th percentile of the magnitudes, e.g. percentile:99.99: rare outliers
    /// saturate instead of coarsening every other value).
    #[arg(long, value_name = "RULE", default_value = "minmax")]
    calibration: quantize::RangeRule,
    /// Leave the biases as trained: without this, i8w moves each weight row's mean rounding error
    /// on the calibration data into the row's bias.
    #[arg(long)]
    no_bias_correction: bool,
    /// Both modes: store input and recurrent kernels and Dense weights with at most N columns as int16
    /// rather than int8 (embedding tables and skip maps are int16 whatever N). Wider int16 matrices cut
    /// the weights' rounding error (on the ETTh1 GRU(32), 32 takes the worst error from 1.7e-3 to
    /// 4.2e-5 of the output range in i8w, and from 1.8e-3 to 6.4e-4 in i8x16) at 2 bytes a weight (and
    /// in i8x16 slower 64-bit sums); 0 keeps every weight matrix int8. Without this option, N is chosen
    /// from the calibration data (see --max-error), or is 16 without data.
    #[arg(long, value_name = "N", conflicts_with = "max_error")]
    int16_columns: Option<usize>,
    /// The largest error against f32 to aim for, as a fraction of each output's range (default: 5e-4
    /// for i8w, 2e-3 for i8x16). With calibration data and without --int16-columns, N is the fewest
    /// columns (0, or the width of one of the model's matrices) whose model stays within a quarter of
    /// it on the calibration windows (held-out data sees more), or the one that comes closest; the
    /// report says which and measures the held-out error.
    #[arg(long, value_name = "E", value_parser = positive_fraction)]
    max_error: Option<f32>,
}

impl QuantizerFlags {
    fn options(self) -> quantize::Options {
        let columns = self.int16_columns.unwrap_or(quantize::NARROW_KERNEL);
        quantize::Options {
            ranges: self.calibration,
            bias_correction: !self.no_bias_correction,
            int16_input_columns: columns,
            int16_recurrent_columns: columns,
            int16_dense_columns: columns,
            fit: match (self.int16_columns, self.max_error) {
                (Some(_), _) => None,
                (None, Some(e)) => Some(quantize::ErrorTarget::Relative(e)),
                (None, None) => Some(quantize::ErrorTarget::Mode),
            },
        }
    }
}

/// Parses a fraction in `(0, 1]`.
fn positive_fraction(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "'{text}': expected a fraction of the output range in (0, 1], e.g. 5e-4"
        )),
    }
}

/// How `train --bidirectional` merges the two directions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BidirectionalMerge {
    /// Concatenated: `2 × hidden` values per step.
    Concat,
    /// Added: `hidden` values per step.
    Sum,
}

#[derive(clap::Args)]
struct TrainTextArgs {
    /// The text: UTF-8; its distinct characters are the vocabulary.
    text: PathBuf,
    /// Where to write the blob.
    #[arg(short, long, value_name = "OUT.trnn")]
    output: PathBuf,
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = CellKind::Rnn)]
    cell: CellKind,
    /// Hidden size of each recurrent layer.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Stacked recurrent layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Embedding width (values per character).
    #[arg(long, default_value_t = 32)]
    embedding: usize,
    /// Characters per chunk of truncated backpropagation through time; the state carries over.
    #[arg(long, default_value_t = 25)]
    seq_len: usize,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = Optimizer::Adagrad)]
    optimizer: Optimizer,
    /// Learning rate (default: 0.1 for Adagrad, 2e-3 for Adam).
    #[arg(long)]
    lr: Option<f32>,
    /// Clip every gradient element to ±this (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    clip: f32,
    /// Optimiser steps, one chunk each.
    #[arg(long, default_value_t = 2000, conflicts_with = "epochs")]
    steps: usize,
    /// Passes over the training text instead of --steps.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of initialisation and of the sampler: the same seed gives the same blob and samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of the text held out at its end for validation (0: none).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Print a sample and the losses every this many steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    sample_every: usize,
    /// Characters per sample.
    #[arg(long, default_value_t = 200)]
    sample_len: usize,
    /// Sampling temperature of the samples.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Text the samples start from (default: the text's first character).
    #[arg(long)]
    prime: Option<String>,
}

impl TrainTextArgs {
    fn request(self) -> Result<chars::TextRequest> {
        let settings = chars::TextSettings {
            text: self
                .text
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            cell: trainer::cell_name(self.cell).into(),
            layers: self.layers,
            hidden: self.hidden,
            embedding: self.embedding,
            seq_len: self.seq_len,
            optimizer: self.optimizer,
            learning_rate: self
                .lr
                .unwrap_or_else(|| self.optimizer.default_learning_rate()),
            clip: self.clip,
            steps: self.steps,
            seed: self.seed,
            val_fraction: self.val_fraction,
            sample_every: self.sample_every,
            sample_len: self.sample_len,
            temperature: self.temperature,
            prime: self.prime.unwrap_or_default(),
        };
        Ok(chars::TextRequest {
            settings,
            epochs: self.epochs,
            path: self.text,
            output: self.output,
        })
    }
}

impl TrainArgs {
    fn request(self) -> trainer::Request {
        let settings = trainer::Settings {
            csv: self
                .csv
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            time_column: self.time_column,
            inputs: self.inputs,
            targets: self.targets,
            window: self.window,
            horizon: self.horizon,
            stride: self.stride,
            split: self.split,
            scale: self.scale,
            ranges: self.ranges,
            cell: trainer::cell_name(self.cell).into(),
            layers: self.layers,
            hidden: self.hidden,
            bidirectional: self.bidirectional.is_some(),
            merge_sum: self.bidirectional == Some(BidirectionalMerge::Sum),
            head: trainer::head_name(self.head).into(),
            window_norm: self.window_norm,
            skip: self.skip,
            skip_per_target: self.skip_per_target,
            epochs: self.epochs,
            batch: self.batch,
            learning_rate: self.lr,
            clip_norm: self.clip,
            patience: self.patience,
            seed: self.seed,
        };
        let plots = self.plots.or_else(|| {
            Some(
                self.output
                    .parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            )
        });
        trainer::Request {
            csv: self.csv,
            settings,
            output: self.output,
            plots,
            quiet: false,
            quantize: self.quantize,
            quantizer: self.quantizer.options(),
        }
    }
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
            calibrate,
            quantizer,
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
                    out!("{}", describe(&output, &blob)?);
                    Ok(())
                }
                Some(mode) => {
                    let f32_blob = write::to_blob(&spec)?;
                    quantize_and_report_with(
                        &f32_blob,
                        None,
                        mode,
                        calibrate.as_deref(),
                        &quantizer.options(),
                        &output,
                    )
                }
            }
        }
        Command::Quantize {
            model,
            mode,
            calibrate,
            quantizer,
            output,
        } => {
            let blob = read_blob(&model)?;
            quantize_and_report_with(
                &blob,
                Some(&model),
                mode,
                calibrate.as_deref(),
                &quantizer.options(),
                &output,
            )
            .with_context(|| format!("quantizing {}", model.display()))
        }
        Command::Train(args) => trainer::train(&args.request()).map(|_| ()),
        Command::TrainText(args) => chars::train_text(&args.request()?).map(|_| ()),
        Command::Eval { model, csv } => {
            let blob = read_blob(&model)?;
            let (now, stored) = trainer::eval(&blob, &csv)
                .with_context(|| format!("evaluating {} on {}", model.display(), csv.display()))?;
            outln!(
                "test split of {}: {} windows, metrics recomputed with the engine",
                csv.display(),
                now.windows
            );
            out!("{}", trainer::eval_table(&now, &stored));
            let aligned = run::AlignedBlob::new(&blob);
            if spec::ModelSpec::from_model(&aligned.open()?)?.is_quantized() {
                outln!("(a quantized blob: the stored metrics are those of its f32 model)");
                return Ok(());
            }
            trainer::check_identical(&now, &stored)
        }
        Command::Run {
            model,
            input,
            csv: Some(csv),
            time_column,
            output,
            expect,
        } => {
            anyhow::ensure!(
                expect.is_none(),
                "--expect compares .npy outputs; it does not apply to --csv"
            );
            let blob = read_blob(&model)?;
            let _ = input;
            let forecasts = trainer::run_csv(&blob, &csv, time_column.as_deref())
                .with_context(|| format!("running {} on {}", model.display(), csv.display()))?;
            let text = forecasts.to_csv();
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    outln!(
                        "wrote {} forecasts (raw units) to {}",
                        forecasts.lines.len(),
                        path.display()
                    );
                }
                None => out!("{text}"),
            }
            Ok(())
        }
        Command::Run {
            model,
            input,
            csv: None,
            output,
            expect,
            ..
        } => {
            let blob = read_blob(&model)?;
            let input = input.context("give --input X.npy or --csv FILE")?;
            let x = npy::read(&input)?;
            let y = run::run_batch(&blob, &x)
                .with_context(|| format!("running {} on {}", model.display(), input.display()))?;
            match (output, &y.data) {
                (Some(path), npy::Data::Float(values)) => {
                    npy::write_f32(&path, &y.shape, values)?;
                    outln!("wrote {} with shape {:?}", path.display(), y.shape);
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
            out!("{}", describe(&model, &blob)?);
            let aligned = run::AlignedBlob::new(&blob);
            out!("{}", training_details(&aligned.open()?, blob.len()));
            let spec = spec::ModelSpec::from_model(&aligned.open()?)?;
            if spec.is_quantized() {
                if data.is_some() {
                    outln!("\n(the blob is quantized: inspect its f32 blob to compare modes)");
                }
                return Ok(());
            }
            let data = match &data {
                Some(path) => Some(Measurement::load(&blob, &spec, path)?),
                None => None,
            };
            if let Some(text) = data.as_ref().and_then(|d| d.calibrated_on.as_ref()) {
                outln!("\ncalibrated on {text}");
            }
            let mut blobs: Vec<(&str, Vec<u8>)> = vec![("f32", blob.clone())];
            for mode in [quantize::Mode::I8w, quantize::Mode::I8x16] {
                let calibration = data.as_ref().map(|d| &d.split.calibration);
                if mode.needs_calibration() && calibration.is_none() {
                    outln!(
                        "\n{} needs calibration data for its formats: pass --data X.npy|X.csv",
                        mode.name()
                    );
                    continue;
                }
                // As `quantize` would by default: the int16 width fitted to the mode's target.
                let options = quantize::Options {
                    fit: Some(quantize::ErrorTarget::Mode),
                    ..quantize::Options::default()
                };
                match quantize::quantize_with_options(&spec, mode, calibration, &options)
                    .and_then(|q| write::to_blob(&q))
                {
                    Ok(q) => blobs.push((mode.name(), q)),
                    Err(err) => {
                        outln!("\n{} is not available for this model: {err:#}", mode.name())
                    }
                }
            }
            outln!();
            let table: Vec<(&str, &[u8])> = blobs.iter().map(|(n, b)| (*n, &b[..])).collect();
            out!("{}", report::modes(&table));
            if let Some(data) = &data {
                for (name, quantized) in &blobs[1..] {
                    outln!();
                    data.report(name, &blob, quantized)?;
                }
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
            outln!("{prime}{text}");
            Ok(())
        }
        Command::Classify { model, text } => {
            let blob = read_blob(&model)?;
            let scores = tinyrnn_converter::text::classify(&blob, &text)
                .with_context(|| format!("classifying with {}", model.display()))?;
            let shown: Vec<String> = scores.iter().map(|s| format!("{s:.6}")).collect();
            outln!("{}", shown.join(" "));
            Ok(())
        }
        Command::Demo { example, output } => demo(&example, &output),
    }
}

/// The demo's training run: the seed's KPI forecaster (3 KPIs in with their physical ranges, CQI and
/// DL PRB usage 2 steps ahead from windows of 5), a small GRU.
fn demo_request(csv: &Path, out: &Path) -> trainer::Request {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let range = |column: &str, min: f32, max: f32| ColumnRange {
        column: column.into(),
        min,
        max,
    };
    trainer::Request {
        csv: csv.to_path_buf(),
        settings: trainer::Settings {
            csv: "kpi.csv".into(),
            time_column: None,
            inputs: strings(&["CQI", "UE_TX_POWER", "DL_PRB_USAGE_RATE"]),
            targets: strings(&["CQI", "DL_PRB_USAGE_RATE"]),
            window: 5,
            horizon: 2,
            stride: 1,
            split: SplitChoice::Fractions {
                train: 0.7,
                val: 0.1,
                test: 0.2,
            },
            scale: ScaleChoice::Zscore,
            ranges: vec![
                range("CQI", 0.0, 15.0),
                range("UE_TX_POWER", -17.0, 23.0),
                range("DL_PRB_USAGE_RATE", 0.0, 100.0),
            ],
            cell: trainer::cell_name(CellKind::Gru).into(),
            layers: 1,
            hidden: 8,
            bidirectional: false,
            merge_sum: false,
            head: trainer::head_name(Head::Dense).into(),
            window_norm: false,
            skip: false,
            skip_per_target: false,
            epochs: 60,
            batch: 32,
            learning_rate: 1e-3,
            clip_norm: 1.0,
            patience: 8,
            seed: 0,
        },
        output: out.join("kpi.trnn"),
        plots: Some(out.to_path_buf()),
        quiet: true,
        quantize: None,
        quantizer: quantize::Options::default(),
    }
}

fn demo(example: &Path, output: &Path) -> Result<()> {
    let example = example
        .canonicalize()
        .unwrap_or_else(|_| example.to_path_buf());
    let example = example.as_path();
    let csv = example.join("kpi.csv");
    let request = demo_request(&csv, output);
    outln!(
        "1. train a KPI forecaster on {} (synthetic KPIs, 10-minute steps)",
        csv.display()
    );
    outln!(
        "   tinyrnn train --csv {} --inputs CQI,UE_TX_POWER,DL_PRB_USAGE_RATE \\\n     \
         --targets CQI,DL_PRB_USAGE_RATE --window 5 --horizon 2 --range CQI=0:15 \\\n     \
         --range UE_TX_POWER=-17:23 --range DL_PRB_USAGE_RATE=0:100 --cell gru --hidden 8 \\\n     \
         --epochs 60 --patience 8 -o {}\n",
        csv.display(),
        request.output.display()
    );
    let trained = trainer::train(&request)?;

    outln!(
        "\n2. evaluate {} on the test split again",
        request.output.display()
    );
    let (now, stored) = trainer::eval(&trained.blob, &csv)?;
    out!("{}", trainer::eval_table(&now, &stored));
    trainer::check_identical(&now, &stored)?;
    let persistence = &trained.info.outcome.test_persistence;
    if let (Some(model), Some(naive)) = (now.overall(), persistence.overall()) {
        outln!(
            "   test MSE {:.5} against {:.5} for persistence (repeating the last value): {:.0} % lower",
            model.mse,
            naive.mse,
            100.0 * (1.0 - model.mse / naive.mse)
        );
    }

    outln!("\n3. describe the blob (what `tinyrnn inspect` prints)");
    out!("{}", describe(&request.output, &trained.blob)?);

    let int8_path = output.join("kpi-i8w.trnn");
    outln!(
        "\n   quantized to int8 weights (tinyrnn quantize --mode i8w): {}",
        int8_path.display()
    );
    let f32_spec = spec::ModelSpec::from_model(&run::AlignedBlob::new(&trained.blob).open()?)?;
    let int8_blob =
        write::to_blob_with_self_test(&quantize::quantize(&f32_spec, quantize::Mode::I8w)?)?;
    std::fs::write(&int8_path, &int8_blob)
        .with_context(|| format!("writing {}", int8_path.display()))?;
    let (int8_test, _) = trainer::eval(&int8_blob, &csv)?;
    if let (Some(q), Some(f)) = (int8_test.overall(), now.overall()) {
        outln!(
            "   {} bytes instead of {}; test MSE {:.5} (f32 {:.5}), MAE {:.5} (f32 {:.5})",
            int8_blob.len(),
            trained.blob.len(),
            q.mse,
            f.mse,
            q.mae,
            f.mae
        );
    }

    outln!("\n4. stream raw samples through the engine's Forecaster, with the blob's own scalers");
    demo_stream(&trained.blob, &csv)?;

    outln!();
    demo_keras(example, &output.join("kpi_forecaster.trnn"))
}

/// Pushes the CSV's last rows, in raw units, through `Forecaster::new` and prints raw forecasts.
fn demo_stream(blob: &[u8], csv: &Path) -> Result<()> {
    const WINDOW_VALUES: usize = 16;
    let aligned = run::AlignedBlob::new(blob);
    let model = aligned.open()?;
    let table = tinyrnn_converter::train::Table::read_csv(csv, None)?;
    let columns: Vec<usize> = model
        .meta()
        .input_names()
        .map(|n| table.column(n))
        .collect::<Result<_>>()?;
    let targets: Vec<usize> = model
        .meta()
        .output_names()
        .map(|n| table.column(n))
        .collect::<Result<_>>()?;
    let mode = tinyrnn::Mode::of(&model)?;
    let mut memory =
        vec![0.0f32; tinyrnn::Forecaster::<WINDOW_VALUES>::memory_words(&model, mode)?];
    let mut forecaster = tinyrnn::Forecaster::<WINDOW_VALUES>::new(&model, &mut memory)?;
    outln!(
        "   {:<5} {:>6} {:>6} {:>6}      {:<29} actual t+1 | t+2",
        "row",
        "CQI",
        "TX dBm",
        "PRB %",
        "forecast CQI PRB: t+1 | t+2"
    );
    let first = table.rows.saturating_sub(10);
    for row in first..table.rows.saturating_sub(2) {
        let sample: Vec<f32> = columns.iter().map(|&c| table.value(row, c)).collect();
        let cells: Vec<String> = sample.iter().map(|v| format!("{v:>6.2}")).collect();
        let forecast = forecaster.push(&sample)?;
        let shown = match forecast {
            None => "(window filling)".to_string(),
            Some(f) => {
                let pairs: Vec<String> = f
                    .chunks(targets.len())
                    .map(|step| {
                        step.iter()
                            .map(|v| format!("{v:6.2}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                let actual: Vec<String> = (1..=2)
                    .map(|h| {
                        targets
                            .iter()
                            .map(|&c| format!("{:6.2}", table.value(row + h, c)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                format!("{:<29} {}", pairs.join(" | "), actual.join(" | "))
            }
        };
        outln!("   {row:<5} {}  ->  {shown}", cells.join(" "));
    }
    outln!(
        "   (raw units in and out: CQI 0-15, UE TX power dBm, PRB usage %; the blob scales them)"
    );
    Ok(())
}

fn demo_keras(example: &Path, output: &Path) -> Result<()> {
    let source = example.join("kpi_forecaster.keras");
    outln!(
        "5. import {} (the same kind of model, trained in Keras)",
        source.display()
    );
    let spec = import::import(&source)?;
    let blob = write::to_blob_with_self_test(&spec)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(output, &blob).with_context(|| format!("writing {}", output.display()))?;
    outln!("   wrote {} ({} bytes)", output.display(), blob.len());

    let input = npy::read(&example.join("input.npy"))?;
    outln!(
        "\n6. run {} windows of {:?} through the engine",
        input.shape[0],
        &input.shape[1..]
    );
    let y = run::run_batch(&blob, &input)?;
    outln!(
        "   output {:?}, compared with Keras model.predict:",
        y.shape
    );
    check_against(&y, &example.join("expected.npy"))?;
    let npy::Data::Float(ours) = &y.data else {
        anyhow::bail!("the engine returned integers");
    };

    outln!("\n7. stream the last window one sample at a time (state kept between calls)");
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
        outln!(
            "   sample {t}: {sample:?} -> {status:?} [{}]",
            values.join(", ")
        );
    }
    let windowed = &ours[ours.len() - forecast.len()..];
    outln!(
        "   streamed forecast equals the windowed one: {}",
        forecast
            .iter()
            .zip(windowed)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    outln!("   (CQI and DL PRB usage, 2 steps ahead, min-max scaled: CQI 0-15, PRB 0-100 %;");
    outln!(
        "   this blob has no scalers: it was imported from Keras, which scaled outside the model)"
    );
    Ok(())
}

/// The training settings and metrics of a trained blob, or its free-form info, for `inspect`.
fn training_details(model: &tinyrnn::Model<'_>, blob_len: usize) -> String {
    match trainer::TrainInfo::parse(model.meta().info) {
        Some(info) => {
            let s = &info.settings;
            let split = match s.split {
                SplitChoice::Rows { train, val, test } => format!("{train},{val},{test} rows"),
                SplitChoice::Fractions { train, val, test } => format!("{train},{val},{test}"),
            };
            let ranges: Vec<String> = s
                .ranges
                .iter()
                .map(|r| format!("{}={}:{}", r.column, r.min, r.max))
                .collect();
            format!(
                "\ntrained by `tinyrnn train` on {} (split {split}, stride {}, scale {}{}{}; \
                 epochs ≤ {}, batch {}, lr {}, clip {})\n{}",
                s.csv,
                s.stride,
                match s.scale {
                    ScaleChoice::Zscore => "zscore",
                    ScaleChoice::Minmax => "minmax",
                },
                if ranges.is_empty() { "" } else { ", ranges " },
                ranges.join(" "),
                s.epochs,
                s.batch,
                s.learning_rate,
                s.clip_norm,
                trainer::summary(&info, blob_len)
            )
        }
        None => {
            let text = report::info(model);
            if text.is_empty() {
                String::new()
            } else {
                format!("\ninfo\n{text}\n")
            }
        }
    }
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
    outln!(
        "   matches {} within {} + {}·|reference| (largest difference {:.2e})",
        reference.display(),
        compare::ATOL,
        compare::RTOL,
        c.max_abs_diff
    );
    Ok(())
}

/// Quantizes an f32 blob with the quantizer's `options` (the table's other modes use the same), writes
/// the result and prints its description, sizes per mode and (with data) its error against f32 on the
/// held-out part of the data.
fn quantize_and_report_with(
    f32_blob: &[u8],
    model: Option<&Path>,
    mode: quantize::Mode,
    data: Option<&Path>,
    options: &quantize::Options,
    output: &Path,
) -> Result<()> {
    let aligned = run::AlignedBlob::new(f32_blob);
    let spec = spec::ModelSpec::from_model(&aligned.open()?)?;
    let data = match (data, trainer::stored_settings(f32_blob)) {
        (Some(path), _) => Some(Measurement::load(f32_blob, &spec, path)?),
        (None, Some(settings)) => match find_training_csv(model, &settings.csv) {
            Some(csv) => Some(Measurement::load(f32_blob, &spec, &csv)?),
            None if mode.needs_calibration() => anyhow::bail!(
                "model '{}' was trained on {}, which is neither beside the model nor in the working \
                 directory, and {} needs data to choose its fixed-point formats: pass --calibrate \
                 PATH/{} (its training windows calibrate, its test windows measure the error), or \
                 {}",
                spec.name,
                settings.csv,
                mode.name(),
                settings.csv,
                quantize::CALIBRATION_HINT.trim_start_matches("pass ")
            ),
            None => {
                outln!(
                    "(trained on {}, which is neither beside the model nor in the working \
                     directory: pass --calibrate PATH/{} to round for its data and measure the \
                     error)\n",
                    settings.csv, settings.csv
                );
                None
            }
        },
        (None, None) => None,
    };
    if let Some(text) = data.as_ref().and_then(|d| d.calibrated_on.as_ref()) {
        outln!("calibrated on {text}\n");
    }
    let calibration = data.as_ref().map(|d| &d.split.calibration);
    let (quantized, fit) = quantize::quantize_fitted(&spec, mode, calibration, options)?;
    if let Some(fit) = fit {
        outln!("{fit}\n");
    }
    let blob = write::to_blob(&quantized)?;
    // What is described is the file as written, self-test vector included.
    let written = write::with_self_test(&blob)?;
    write_blob(output, &written)?;
    out!("{}", describe(output, &written)?);
    outln!();
    let mut table: Vec<(&str, Vec<u8>)> = vec![("f32", f32_blob.to_vec())];
    for other in [quantize::Mode::I8w, quantize::Mode::I8x16] {
        if other == mode {
            table.push((other.name(), blob.clone()));
        } else if let Ok(b) = quantize::quantize_with_options(&spec, other, calibration, options)
            .and_then(|q| write::to_blob(&q))
        {
            table.push((other.name(), b));
        }
    }
    let table: Vec<(&str, &[u8])> = table.iter().map(|(n, b)| (*n, &b[..])).collect();
    out!("{}", report::modes(&table));
    outln!();
    match &data {
        Some(data) => data.report(mode.name(), f32_blob, &blob)?,
        None => outln!(
            "no data given, so no error measured: {}",
            quantize::CALIBRATION_HINT
        ),
    }
    Ok(())
}

/// The CSV a trained model names (`file`, a bare file name), beside the model or in the working
/// directory.
fn find_training_csv(model: Option<&Path>, file: &str) -> Option<PathBuf> {
    let beside = model
        .and_then(Path::parent)
        .map(|dir| dir.join(file))
        .filter(|p| p.is_file());
    beside.or_else(|| Some(PathBuf::from(file)).filter(|p| p.is_file()))
}

/// Data a model is quantized with: windows to calibrate on and held-out windows to measure the error
/// on, and how to name them.
struct Measurement {
    split: calibrate::Split,
    /// The held-out windows, for the report's heading.
    measured_on: String,
    /// What calibrated, when it is not simply the first windows of the data.
    calibrated_on: Option<String>,
    /// For a model `tinyrnn train` wrote, measured on its own CSV: that CSV, to recompute the test
    /// metrics of the quantized model.
    trained_csv: Option<PathBuf>,
}

impl Measurement {
    /// Reads `path` for `f32_blob`. A CSV holding the columns a trained model stores is read under its
    /// protocol ([`trainer::trained_data`]); anything else as `calibrate::load` reads it, split into
    /// calibration and held-out windows.
    fn load(f32_blob: &[u8], spec: &spec::ModelSpec, path: &Path) -> Result<Measurement> {
        if let Some(settings) = trainer::stored_settings(f32_blob) {
            if csv_has_columns(path, &settings.inputs)? {
                let d = trainer::trained_data(f32_blob, path).with_context(|| {
                    format!(
                        "reading {} under the model's training protocol",
                        path.display()
                    )
                })?;
                let calibrated_on = format!(
                    "{} of the {} training windows of {}",
                    d.calibration.shape[0],
                    d.training_windows,
                    path.display()
                );
                let measured_on = format!(
                    "the {} test windows of {} (rows {}..{})",
                    d.test.shape[0],
                    path.display(),
                    d.test_rows.start,
                    d.test_rows.end
                );
                return Ok(Measurement {
                    split: calibrate::Split {
                        calibration: d.calibration,
                        held_out: d.test,
                        held_out_is_separate: true,
                    },
                    measured_on,
                    calibrated_on: Some(calibrated_on),
                    trained_csv: Some(path.to_path_buf()),
                });
            }
        }
        let loaded = calibrate::load(path, spec).map_err(|err| {
            match trainer::stored_settings(f32_blob) {
                Some(settings) => err.context(format!(
                    "(the model was trained on {} with columns {}: a CSV with those columns is \
                     read under its training protocol)",
                    settings.csv,
                    settings.inputs.join(", ")
                )),
                None => err,
            }
        })?;
        let split = calibrate::split(&loaded, spec.io.input)?;
        let measured_on = if split.held_out_is_separate {
            format!(
                "the held-out windows of {} (those not used for calibration)",
                path.display()
            )
        } else {
            format!(
                "{} (one window only, so the same one that calibrated: pass more windows for a \
                 held-out measure)",
                path.display()
            )
        };
        Ok(Measurement {
            split,
            measured_on,
            calibrated_on: None,
            trained_csv: None,
        })
    }

    /// Prints the error of `quantized` (mode `name`) against `f32_blob` on the held-out windows, and
    /// for a trained model its test metrics beside the f32 model's.
    fn report(&self, name: &str, f32_blob: &[u8], quantized: &[u8]) -> Result<()> {
        let errors = quantize::error_per_output(f32_blob, quantized, &self.split.held_out)
            .with_context(|| format!("measuring the error on {}", self.measured_on))?;
        outln!("error of {name} against f32 on {}:", self.measured_on);
        out!("{}", report::accuracy(&errors));
        if let Some(csv) = &self.trained_csv {
            let (now, stored) = trainer::eval(quantized, csv)?;
            if let (Some(q), Some(f)) = (now.overall(), stored.overall()) {
                outln!(
                    "test MSE {:.5} (f32 {:.5}, {:+.2} %), MAE {:.5} (f32 {:.5}), normalized",
                    q.mse,
                    f.mse,
                    100.0 * (q.mse / f.mse - 1.0),
                    q.mae,
                    f.mae
                );
            }
        }
        Ok(())
    }
}

/// Whether `path` is a CSV whose header names every one of `columns`.
fn csv_has_columns(path: &Path, columns: &[String]) -> Result<bool> {
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(false);
    }
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut header = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut header)
        .with_context(|| format!("reading {}", path.display()))?;
    let names: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|n| n.trim().trim_matches('"'))
        .collect();
    Ok(columns.iter().all(|c| names.contains(&c.as_str())))
}

fn write_blob(path: &Path, blob: &[u8]) -> Result<()> {
    std::fs::write(path, blob).with_context(|| format!("writing {}", path.display()))?;
    outln!("wrote {} ({} bytes)\n", path.display(), blob.len());
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
    outln!("shape {shape:?}");
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
        outln!("{index:?} {}", cells.join(" "));
    }
}
