//! The host side of `firmware/forecast-on-core.sh`: a trained forecaster and a stretch of its CSV, as the
//! `forecast` firmware reads them, and the forecasts the host engine makes of them.
//!
//! ```text
//! cargo run --release -p tinyrnn-converter --example forecast_reference -- MODEL.trnn DATA.csv OUT_DIR \
//!     [--end ROW] [--forecasts N]
//! ```
//!
//! Writes to `OUT_DIR`: `model.trnn` (a copy), `samples.csv` (the raw samples of the model's input columns,
//! one per line, rows `END − window − N + 1 .. END`, in shortest round-trip decimals) and `expected.txt`
//! (`forecast <sample index> <values…>` for each forecast `tinyrnn::Forecaster` makes of them, the values
//! in raw units as `{:e}`, as the firmware prints them).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use tinyrnn::{Forecaster, Mode};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::train::Table;

/// Window capacity of the forecaster, in values (the firmware's is the same).
const WINDOW_VALUES: usize = 1024;

#[derive(Parser)]
struct Args {
    /// The forecaster (`tinyrnn train` output, f32 or quantized).
    model: PathBuf,
    /// The CSV it was trained on, with its input columns by name.
    csv: PathBuf,
    /// Where to write model.trnn, samples.csv and expected.txt.
    out: PathBuf,
    /// The row after the last sample (default: the last row of the CSV, plus one).
    #[arg(long)]
    end: Option<usize>,
    /// Forecasts to make: the first when the window is full, then one per further sample.
    #[arg(long, default_value_t = 4)]
    forecasts: usize,
    /// The CSV's time column, which is not a number.
    #[arg(long, default_value = "date")]
    time_column: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let blob =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let aligned = AlignedBlob::new(&blob);
    let model = aligned.open()?;
    let mode = Mode::of(&model)?;
    let Mode::Window { steps } = mode else {
        anyhow::bail!(
            "{} streams; this measures a windowed forecaster",
            args.model.display()
        );
    };
    let table = Table::read_csv(&args.csv, Some(&args.time_column))?;
    let columns: Vec<usize> = model
        .meta()
        .input_names()
        .map(|n| table.column(n))
        .collect::<Result<_>>()?;
    ensure!(
        columns.len() == model.input_width(),
        "{} names {} input columns for its {} features: the CSV's columns are found by those names, \
         which `tinyrnn train` stores (an imported model has none)",
        args.model.display(),
        columns.len(),
        model.input_width()
    );
    let end = args.end.unwrap_or(table.rows);
    let samples = steps + args.forecasts.max(1) - 1;
    ensure!(
        end <= table.rows,
        "--end {end} is past the last row of {} ({} rows)",
        args.csv.display(),
        table.rows
    );
    ensure!(
        end >= samples,
        "a window of {steps} and {} forecasts take {samples} rows of {}, and the {end} rows before \
         row {end} are fewer",
        args.forecasts.max(1),
        args.csv.display()
    );
    let mut memory = vec![0.0f32; Forecaster::<WINDOW_VALUES>::memory_words(&model, mode)?];
    let mut forecaster = Forecaster::<WINDOW_VALUES>::new(&model, &mut memory)?;
    let (mut lines, mut expected) = (String::new(), String::new());
    for (index, row) in (end - samples..end).enumerate() {
        let sample: Vec<f32> = columns.iter().map(|&c| table.value(row, c)).collect();
        let text: Vec<String> = sample.iter().map(f32::to_string).collect();
        writeln!(lines, "{}", text.join(","))?;
        if let Some(forecast) = forecaster.push(&sample)? {
            let values: Vec<String> = forecast.iter().map(|v| format!("{v:e}")).collect();
            writeln!(expected, "forecast {index} {}", values.join(" "))?;
        }
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("model.trnn"), &blob)?;
    std::fs::write(args.out.join("samples.csv"), lines)?;
    std::fs::write(args.out.join("expected.txt"), &expected)?;
    println!(
        "{}: {} samples of rows {}..{end}, {} forecasts of {} values; window memory {} words",
        args.out.display(),
        samples,
        end - samples,
        expected.lines().count(),
        forecaster.forecast_len(),
        model.window_memory(steps)?.total()
    );
    Ok(())
}
