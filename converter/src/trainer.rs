//! `tinyrnn train`, `tinyrnn eval` and `tinyrnn run --csv`: a forecaster learnt from a CSV, with its
//! scalers, settings and test metrics stored in the blob, and the same protocol rebuilt to check it.
//!
//! The protocol: a chronological train/validation/test split of the CSV's rows (validation and test
//! start one window early so their first window is complete), scalers fitted on the training rows only
//! (or physical ranges given per column), windows of `window` rows forecasting the `horizon` rows after
//! them, every `stride` rows for training and every row for validation and test. Metrics are over every
//! test window, step and target: in model units ("normalized") and in the CSV's own units ("raw").

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tinyrnn::format::Scaling;
use tinyrnn::{Mode, ModelScaler, Runtime, Scaler as _, Status};

use crate::plot::{self, Panel, Series};
use crate::run::AlignedBlob;
use crate::spec::{affine_map, affine_pairs, Annotations, ModelSpec};
use crate::train::{
    self, fit_scalers, Affine, Architecture, CellKind, EpochReport, Head, ScaleKind, Split, Table,
    TrainOptions, Windows,
};
use crate::write;

/// Marks the JSON document `train` writes into a blob's `Meta::info`.
pub const INFO_FORMAT: &str = "tinyrnn-train/1";

/// How columns without a `--range` are scaled.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleChoice {
    /// Zero mean and unit standard deviation on the training rows.
    Zscore,
    /// Training minimum to 0, maximum to 1.
    Minmax,
}

/// A physical range for one column (`--range CQI=0:15`): `min` maps to 0 and `max` to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnRange {
    /// The column.
    pub column: String,
    /// Raw value mapped to 0.
    pub min: f32,
    /// Raw value mapped to 1.
    pub max: f32,
}

impl std::str::FromStr for ColumnRange {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let usage =
            || format!("'{text}' is not COLUMN=MIN:MAX (e.g. CQI=0:15 or UE_TX_POWER=-17:23)");
        let (column, range) = text.rsplit_once('=').ok_or_else(usage)?;
        let (min, max) = range.split_once(':').ok_or_else(usage)?;
        let parse = |v: &str| v.trim().parse::<f32>().map_err(|_| usage());
        let (min, max) = (parse(min)?, parse(max)?);
        if column.trim().is_empty() {
            return Err(usage());
        }
        if !(min.is_finite() && max.is_finite() && max > min) {
            return Err(format!(
                "range of '{column}': {min}:{max} must have MIN < MAX, both finite"
            ));
        }
        Ok(Self {
            column: column.trim().to_string(),
            min,
            max,
        })
    }
}

/// A chronological split as given on the command line: `8640,2880,2880` (rows) or `0.7,0.1,0.2`
/// (fractions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitChoice {
    /// Row counts.
    Rows {
        /// Training rows.
        train: usize,
        /// Validation rows.
        val: usize,
        /// Test rows.
        test: usize,
    },
    /// Fractions of the rows.
    Fractions {
        /// Training fraction.
        train: f64,
        /// Validation fraction.
        val: f64,
        /// Test fraction.
        test: f64,
    },
}

impl SplitChoice {
    /// The training library's split.
    pub fn split(self) -> Split {
        match self {
            SplitChoice::Rows { train, val, test } => Split::Rows { train, val, test },
            SplitChoice::Fractions { train, val, test } => Split::Fractions { train, val, test },
        }
    }
}

impl std::str::FromStr for SplitChoice {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let usage = || {
            format!("'{text}' is not TRAIN,VAL,TEST: three row counts (8640,2880,2880) or three fractions (0.7,0.1,0.2)")
        };
        if parts.len() != 3 {
            return Err(usage());
        }
        if parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            let n: Vec<usize> = parts
                .iter()
                .map(|p| p.parse().map_err(|_| usage()))
                .collect::<std::result::Result<_, _>>()?;
            return Ok(SplitChoice::Rows {
                train: n[0],
                val: n[1],
                test: n[2],
            });
        }
        let f: Vec<f64> = parts
            .iter()
            .map(|p| p.parse().map_err(|_| usage()))
            .collect::<std::result::Result<_, _>>()?;
        if f.iter().any(|v| !(0.0..=1.0).contains(v)) || f.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(format!(
                "split fractions '{text}' must each lie in 0..1 and add up to at most 1"
            ));
        }
        Ok(SplitChoice::Fractions {
            train: f[0],
            val: f[1],
            test: f[2],
        })
    }
}

/// Everything that defines a training run; stored in the blob so `eval` can rebuild the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The CSV's file name (where it was read from is not stored).
    pub csv: String,
    /// The timestamp column named by the user, if any.
    pub time_column: Option<String>,
    /// Input feature columns, in model input order.
    pub inputs: Vec<String>,
    /// Target columns, in forecast order.
    pub targets: Vec<String>,
    /// Rows per input window.
    pub window: usize,
    /// Rows forecast after each window.
    pub horizon: usize,
    /// Rows between training windows (validation and test use every row).
    pub stride: usize,
    /// The chronological split.
    pub split: SplitChoice,
    /// Scaling of columns without a range.
    pub scale: ScaleChoice,
    /// Physical ranges given per column.
    pub ranges: Vec<ColumnRange>,
    /// `rnn`, `lstm` or `gru`.
    pub cell: String,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Bidirectional recurrent layers.
    pub bidirectional: bool,
    /// With `bidirectional`: the directions are added (Keras `merge_mode='sum'`), not concatenated.
    #[serde(default)]
    pub merge_sum: bool,
    /// `dense` or `keep-last`.
    pub head: String,
    /// In-model window normalisation.
    pub window_norm: bool,
    /// Linear skip path into the head.
    pub skip: bool,
    /// With `skip`: one skip map per target instead of one shared map.
    #[serde(default)]
    pub skip_per_target: bool,
    /// Most epochs.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// Gradient clipping norm (0: off).
    pub clip_norm: f32,
    /// Early-stopping patience in epochs.
    pub patience: usize,
    /// Seed.
    pub seed: u64,
}

/// MSE and MAE of one target, or over all of them (`target` = `"all"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetMetrics {
    /// Target column, or `all`.
    pub target: String,
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
}

/// Metrics of one split in model units and in raw units; each list is per target, then `all` (or only
/// `all`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// Windows evaluated.
    pub windows: usize,
    /// In model units (what the loss sees).
    pub normalized: Vec<TargetMetrics>,
    /// In the CSV's units.
    pub raw: Vec<TargetMetrics>,
}

impl SplitMetrics {
    /// The `all` row of the normalized metrics.
    pub fn overall(&self) -> Option<&TargetMetrics> {
        self.normalized.last()
    }
}

/// What training produced and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Epochs run (early stopping may end before the maximum).
    pub epochs_run: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Wall-clock training time in seconds (fit only).
    pub train_seconds: f64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Rows of the CSV.
    pub rows: usize,
    /// Training split, overall only (the record lives in the device's flash, so it stays small).
    pub train: SplitMetrics,
    /// Validation split, overall only.
    pub val: SplitMetrics,
    /// Test split.
    pub test: SplitMetrics,
    /// Test split, forecasting each target's last value in the window for every step (persistence).
    pub test_persistence: SplitMetrics,
}

/// The JSON document in a trained blob's `Meta::info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainInfo {
    /// Always [`INFO_FORMAT`].
    pub format: String,
    /// How the model was trained.
    pub settings: Settings,
    /// What it measured.
    pub outcome: Outcome,
}

impl TrainInfo {
    /// The document in a blob's info text, if it is one.
    pub fn parse(info: &str) -> Option<TrainInfo> {
        serde_json::from_str::<TrainInfo>(info)
            .ok()
            .filter(|i| i.format == INFO_FORMAT)
    }
}

/// A `tinyrnn train` request.
#[derive(Clone, Debug)]
pub struct Request {
    /// The CSV file.
    pub csv: PathBuf,
    /// Settings (the CSV's file name is taken from `csv`).
    pub settings: Settings,
    /// Where to write the blob.
    pub output: PathBuf,
    /// Folder for the plots, if wanted.
    pub plots: Option<PathBuf>,
    /// Draw a progress bar (when stderr is a terminal); otherwise one line per epoch on stderr unless
    /// `quiet`.
    pub quiet: bool,
    /// Also write the model quantized to this mode, calibrated on the training windows.
    pub quantize: Option<crate::quantize::Mode>,
    /// How the quantizer uses those windows.
    pub quantizer: crate::quantize::Options,
}

/// What `train` returns besides printing.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The blob written.
    pub blob: Vec<u8>,
    /// The document stored in it.
    pub info: TrainInfo,
    /// The plots written.
    pub plots: Vec<PathBuf>,
    /// One report per epoch.
    pub history: Vec<EpochReport>,
    /// The quantized blob and where it was written, when asked for.
    pub quantized: Option<(PathBuf, Vec<u8>)>,
}

/// The CSV read and cut into the protocol's pieces.
struct Prepared {
    table: Table,
    inputs: Vec<usize>,
    targets: Vec<usize>,
    ranges: [std::ops::Range<usize>; 3],
}

fn prepare(csv: &Path, settings: &Settings) -> Result<Prepared> {
    let table = Table::read_csv(csv, settings.time_column.as_deref())?;
    let find = |names: &[String], what: &str| -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| {
                table
                    .column(n)
                    .with_context(|| format!("{what} column in {}", csv.display()))
            })
            .collect()
    };
    let inputs = find(&settings.inputs, "input")?;
    let targets = find(&settings.targets, "target")?;
    ensure!(
        !inputs.is_empty(),
        "choose at least one input column (--inputs)"
    );
    ensure!(
        !targets.is_empty(),
        "choose at least one target column (--targets)"
    );
    ensure!(
        settings.window > 0 && settings.horizon > 0 && settings.stride > 0,
        "window, horizon and stride must be at least 1"
    );
    for r in &settings.ranges {
        ensure!(
            settings.inputs.contains(&r.column) || settings.targets.contains(&r.column),
            "--range {}: '{}' is neither an input nor a target column",
            r.column,
            r.column
        );
    }
    let ranges = settings
        .split
        .split()
        .ranges(table.rows, settings.window)
        .with_context(|| format!("splitting the {} rows of {}", table.rows, csv.display()))?;
    for (name, range) in ["validation", "test"].iter().zip(&ranges[1..]) {
        let needed = settings.window + settings.horizon;
        ensure!(
            range.len() >= needed,
            "the {name} split of {} has {} rows (window included); one window of {} plus a horizon of {} needs {needed}: use a larger split or a smaller window",
            csv.display(),
            range.len(),
            settings.window,
            settings.horizon
        );
    }
    Ok(Prepared {
        table,
        inputs,
        targets,
        ranges,
    })
}

fn kinds(settings: &Settings, columns: &[String]) -> Vec<ScaleKind> {
    columns
        .iter()
        .map(|c| match settings.ranges.iter().find(|r| &r.column == c) {
            Some(r) => ScaleKind::Range {
                min: r.min,
                max: r.max,
            },
            None => match settings.scale {
                ScaleChoice::Zscore => ScaleKind::ZScore,
                ScaleChoice::Minmax => ScaleKind::MinMax,
            },
        })
        .collect()
}

/// The settings name of a cell.
pub fn cell_name(cell: CellKind) -> &'static str {
    match cell {
        CellKind::Rnn => "rnn",
        CellKind::Lstm => "lstm",
        CellKind::Gru => "gru",
    }
}

/// The settings name of a head.
pub fn head_name(head: Head) -> &'static str {
    match head {
        Head::Dense => "dense",
        Head::KeepLast => "keep-last",
    }
}

/// The cell named in settings.
pub fn parse_cell(name: &str) -> Result<CellKind> {
    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru]
        .into_iter()
        .find(|c| cell_name(*c) == name)
        .with_context(|| format!("unknown cell '{name}'"))
}

/// The head named in settings.
pub fn parse_head(name: &str) -> Result<Head> {
    [Head::Dense, Head::KeepLast]
        .into_iter()
        .find(|h| head_name(*h) == name)
        .with_context(|| format!("unknown head '{name}'"))
}

/// Windows of `rows` with the given scalers.
fn windows(
    p: &Prepared,
    rows: std::ops::Range<usize>,
    inputs: &[Affine],
    targets: &[Affine],
    s: &Settings,
    stride: usize,
) -> Result<Windows> {
    Windows::build(
        &p.table, rows, &p.inputs, &p.targets, inputs, targets, s.window, s.horizon, stride,
    )
}

/// Metrics of `predicted` (model units) against the windows' targets, per target and overall, in model
/// units and, through `target_scalers`, raw units (against the CSV's own values in `raw`).
fn split_metrics(
    predicted: &[f32],
    windows: &Windows,
    raw: &Windows,
    target_scalers: &[Affine],
    names: &[String],
) -> SplitMetrics {
    let targets = windows.targets;
    let raw_predicted: Vec<f32> = predicted
        .iter()
        .enumerate()
        .map(|(k, v)| target_scalers[k % targets].to_raw(*v))
        .collect();
    let per = |pred: &[f32], actual: &[f32]| -> Vec<TargetMetrics> {
        let mut rows: Vec<TargetMetrics> = (0..targets)
            .map(|t| {
                let p: Vec<f32> = pred.iter().skip(t).step_by(targets).copied().collect();
                let a: Vec<f32> = actual.iter().skip(t).step_by(targets).copied().collect();
                let m = train::metrics(&p, &a);
                TargetMetrics {
                    target: names[t].clone(),
                    mse: m.mse,
                    mae: m.mae,
                }
            })
            .collect();
        let m = train::metrics(pred, actual);
        rows.push(TargetMetrics {
            target: "all".into(),
            mse: m.mse,
            mae: m.mae,
        });
        rows
    };
    SplitMetrics {
        windows: windows.len(),
        normalized: per(predicted, &windows.outputs),
        raw: per(&raw_predicted, &raw.outputs),
    }
}

/// Persistence: every step of the forecast repeats each target's value in the window's last row.
fn persistence(
    p: &Prepared,
    rows: std::ops::Range<usize>,
    s: &Settings,
    target_scalers: &[Affine],
    count: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(count * s.horizon * p.targets.len());
    for k in 0..count {
        let last = rows.start + k + s.window - 1;
        for _ in 0..s.horizon {
            for (&c, a) in p.targets.iter().zip(target_scalers) {
                out.push(a.to_model(p.table.value(last, c)));
            }
        }
    }
    out
}

/// The metrics without the per-target rows.
fn overall_only(mut m: SplitMetrics) -> SplitMetrics {
    let keep = |rows: &mut Vec<TargetMetrics>| {
        let all = rows.pop();
        rows.clear();
        rows.extend(all);
    };
    keep(&mut m.normalized);
    keep(&mut m.raw);
    m
}

fn identity(n: usize) -> Vec<Affine> {
    vec![Affine::IDENTITY; n]
}

/// Metrics of a model on the three splits, plus persistence on test.
fn evaluate(
    spec: &ModelSpec,
    p: &Prepared,
    s: &Settings,
    input_scalers: &[Affine],
    target_scalers: &[Affine],
) -> Result<(
    SplitMetrics,
    SplitMetrics,
    SplitMetrics,
    SplitMetrics,
    Vec<f32>,
)> {
    let mut out = Vec::new();
    let mut test_pred = Vec::new();
    for (i, rows) in p.ranges.iter().enumerate() {
        let stride = if i == 0 { s.stride } else { 1 };
        let w = windows(p, rows.clone(), input_scalers, target_scalers, s, stride)?;
        let raw = windows(
            p,
            rows.clone(),
            input_scalers,
            &identity(p.targets.len()),
            s,
            stride,
        )?;
        let predicted = train::predict(spec, &w)?;
        out.push(split_metrics(
            &predicted,
            &w,
            &raw,
            target_scalers,
            &s.targets,
        ));
        if i == 2 {
            let naive = persistence(p, rows.clone(), s, target_scalers, w.len());
            out.push(split_metrics(&naive, &w, &raw, target_scalers, &s.targets));
            test_pred = predicted;
        }
    }
    let mut it = out.into_iter();
    let mut next = || it.next().context("missing split");
    Ok((next()?, next()?, next()?, next()?, test_pred))
}

/// Trains, evaluates, writes the blob and the plots, and prints the summary.
pub fn train(request: &Request) -> Result<Trained> {
    let s = &request.settings;
    let p = prepare(&request.csv, s)?;
    let [train_rows, val_rows, test_rows] = p.ranges.clone();
    let input_scalers = fit_scalers(
        &p.table,
        &p.inputs,
        &kinds(s, &s.inputs),
        train_rows.clone(),
    )?;
    let target_scalers = fit_scalers(
        &p.table,
        &p.targets,
        &kinds(s, &s.targets),
        train_rows.clone(),
    )?;
    let train_w = windows(
        &p,
        train_rows.clone(),
        &input_scalers,
        &target_scalers,
        s,
        s.stride,
    )?;
    let val_w = windows(&p, val_rows.clone(), &input_scalers, &target_scalers, s, 1)?;
    let test_w = windows(&p, test_rows.clone(), &input_scalers, &target_scalers, s, 1)?;
    crate::outln!(
        "{}: {} rows; train rows {}..{} ({} windows), validation {}..{} ({}), test {}..{} ({})",
        request.csv.display(),
        p.table.rows,
        train_rows.start,
        train_rows.end,
        train_w.len(),
        val_rows.start,
        val_rows.end,
        val_w.len(),
        test_rows.start,
        test_rows.end,
        test_w.len()
    );
    let arch = Architecture {
        cell: parse_cell(&s.cell)?,
        layers: s.layers,
        hidden: s.hidden,
        bidirectional: s.bidirectional,
        merge_sum: s.merge_sum,
        head: parse_head(&s.head)?,
        window: s.window,
        horizon: s.horizon,
        features: p.inputs.len(),
        targets: p.targets.len(),
        target_inputs: p
            .targets
            .iter()
            .map(|t| p.inputs.iter().position(|i| i == t))
            .collect(),
        window_norm: s.window_norm,
        skip: s.skip,
        skip_per_target: s.skip_per_target,
    };
    let options = TrainOptions {
        epochs: s.epochs,
        batch: s.batch,
        learning_rate: s.learning_rate,
        clip_norm: s.clip_norm,
        patience: s.patience,
        seed: s.seed,
    };
    let started = Instant::now();
    let fitted = {
        let mut progress = Progress::new(s.epochs, request.quiet);
        let fitted = train::fit(&arch, &train_w, &val_w, &options, &mut |r| {
            progress.epoch(r)
        });
        progress.finish();
        fitted?
    };
    let train_seconds = started.elapsed().as_secs_f64();

    let mut spec = fitted.spec.clone();
    spec.name = Path::new(&s.csv)
        .file_stem()
        .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    spec.source = format!("tinyrnn train on {}", s.csv);
    spec.scaling = Scaling {
        input: Some(affine_map(
            &input_scalers
                .iter()
                .map(|a| (a.offset, a.scale))
                .collect::<Vec<_>>(),
        )),
        output: Some(affine_map(
            &target_scalers
                .iter()
                .map(|a| (a.offset, a.scale))
                .collect::<Vec<_>>(),
        )),
    };
    // What is measured is what the blob holds: the spec read back from its own bytes.
    let spec = ModelSpec::from_model(&AlignedBlob::new(&write::to_blob(&spec)?).open()?)?;
    let (train_m, val_m, test_m, persistence_m, test_pred) =
        evaluate(&spec, &p, s, &input_scalers, &target_scalers)?;
    let info = TrainInfo {
        format: INFO_FORMAT.into(),
        settings: s.clone(),
        outcome: Outcome {
            epochs_run: fitted.history.len(),
            best_epoch: fitted.best_epoch,
            train_seconds,
            parameters: spec.parameter_count(),
            rows: p.table.rows,
            train: overall_only(train_m),
            val: overall_only(val_m),
            test: test_m,
            test_persistence: persistence_m,
        },
    };
    let mut spec = spec;
    spec.annotations = Annotations {
        inputs: s.inputs.clone(),
        outputs: s.targets.clone(),
        info: serde_json::to_string(&info)?,
    };
    let blob = write::to_blob_with_self_test(&spec)?;
    if let Some(dir) = request
        .output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&request.output, &blob)
        .with_context(|| format!("writing {}", request.output.display()))?;
    crate::outln!();
    crate::out!("{}", summary(&info, blob.len()));
    crate::outln!(
        "\nwrote {} ({} bytes)",
        request.output.display(),
        blob.len()
    );

    let mut plots = Vec::new();
    if let Some(dir) = &request.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let loss = dir.join(format!("{}-loss.png", spec.name));
        plot::save_png(
            &loss,
            &[loss_panel(&fitted.history, fitted.best_epoch)],
            900,
            420,
        )?;
        let forecast = dir.join(format!("{}-forecast.png", spec.name));
        let raw_test = windows(
            &p,
            test_rows.clone(),
            &input_scalers,
            &identity(p.targets.len()),
            s,
            1,
        )?;
        save_forecast_plot(
            &forecast,
            &test_pred,
            &raw_test,
            &target_scalers,
            s,
            test_rows.start + s.window,
        )?;
        crate::outln!(
            "plots: {} (loss curves), {} (test forecast vs actual)",
            loss.display(),
            forecast.display()
        );
        plots = vec![loss, forecast];
    }
    let quantized = match request.quantize {
        Some(mode) => Some(quantize_trained(
            request,
            &spec,
            &train_w,
            &info,
            blob.len(),
            mode,
        )?),
        None => None,
    };
    Ok(Trained {
        blob,
        info,
        plots,
        history: fitted.history,
        quantized,
    })
}

/// Most training windows used to calibrate a quantized model (evenly spaced over the training split).
pub const CALIBRATION_WINDOWS: usize = 1024;

/// Writes the trained model quantized to `mode` beside the f32 blob (`NAME-MODE.trnn`), calibrated on the
/// training windows, and prints its test metrics against the f32 model's.
fn quantize_trained(
    request: &Request,
    spec: &ModelSpec,
    train_w: &Windows,
    info: &TrainInfo,
    f32_bytes: usize,
    mode: crate::quantize::Mode,
) -> Result<(PathBuf, Vec<u8>)> {
    let calibration = calibration_windows(train_w)?;
    let n = calibration.shape[0];
    let (quantized, fit) =
        crate::quantize::quantize_fitted(spec, mode, Some(&calibration), &request.quantizer)
            .with_context(|| format!("quantizing the trained model to {}", mode.name()))?;
    if let Some(fit) = fit {
        crate::outln!("{}: {fit}", mode.name());
    }
    let blob = write::to_blob_with_self_test(&quantized)?;
    let stem = request
        .output
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let path = request
        .output
        .with_file_name(format!("{stem}-{}.trnn", mode.name()));
    std::fs::write(&path, &blob).with_context(|| format!("writing {}", path.display()))?;
    let (test, _) = eval(&blob, &request.csv)?;
    match (test.overall(), info.outcome.test.overall()) {
        (Some(q), Some(f)) => crate::outln!(
            "quantized to {} (calibrated on {n} training windows): wrote {} ({} bytes; f32 {} bytes); \
             test MSE {:.5} (f32 {:.5}, {:+.2} %), MAE {:.5} (f32 {:.5})",
            mode.name(),
            path.display(),
            blob.len(),
            f32_bytes,
            q.mse,
            f.mse,
            100.0 * (q.mse / f.mse - 1.0),
            q.mae,
            f.mae
        ),
        _ => crate::outln!("quantized to {}: wrote {}", mode.name(), path.display()),
    }
    Ok((path, blob))
}

fn loss_panel(history: &[EpochReport], best: usize) -> Panel {
    let line = |label: &str, f: fn(&EpochReport) -> f32| Series {
        label: label.to_string(),
        points: history
            .iter()
            .map(|r| (r.epoch as f64, f64::from(f(r))))
            .collect(),
    };
    Panel {
        title: format!("Loss (MSE in model units, log scale); best epoch {best}"),
        x_label: "epoch".into(),
        y_label: "MSE".into(),
        series: vec![
            line("train", |r| r.train_loss),
            line("validation", |r| r.val_loss),
        ],
        log_y: true,
    }
}

/// Most test steps drawn, so the lines stay readable.
const PLOT_STEPS: usize = 720;

fn save_forecast_plot(
    path: &Path,
    predicted: &[f32],
    raw: &Windows,
    target_scalers: &[Affine],
    s: &Settings,
    first_row: usize,
) -> Result<()> {
    let targets = raw.targets;
    let per_window = raw.horizon * targets;
    let n = raw.len().min(PLOT_STEPS);
    let panels: Vec<Panel> = (0..targets)
        .map(|t| {
            let actual = (0..n)
                .map(|i| {
                    (
                        (first_row + i) as f64,
                        f64::from(raw.outputs[i * per_window + t]),
                    )
                })
                .collect();
            let forecast = (0..n)
                .map(|i| {
                    (
                        (first_row + i) as f64,
                        f64::from(target_scalers[t].to_raw(predicted[i * per_window + t])),
                    )
                })
                .collect();
            Panel {
                title: format!(
                    "{}: test split, 1 step ahead{}",
                    s.targets[t],
                    if raw.len() > n {
                        format!(" (first {n} of {} steps)", raw.len())
                    } else {
                        String::new()
                    }
                ),
                x_label: "CSV row".into(),
                y_label: s.targets[t].clone(),
                series: vec![
                    Series {
                        label: "actual".into(),
                        points: actual,
                    },
                    Series {
                        label: "forecast".into(),
                        points: forecast,
                    },
                ],
                log_y: false,
            }
        })
        .collect();
    plot::save_png(path, &panels, 1100, 300)
}

/// The summary table `train` prints and `inspect` shows for a trained blob.
pub fn summary(info: &TrainInfo, blob_len: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let o = &info.outcome;
    let s = &info.settings;
    let _ = writeln!(
        out,
        "{:<10} {:<22} {:>11} {:>11} {:>12} {:>12}",
        "split", "target", "MSE norm", "MAE norm", "MSE raw", "MAE raw"
    );
    for (name, m) in [
        ("train", &o.train),
        ("val", &o.val),
        ("test", &o.test),
        ("persist.", &o.test_persistence),
    ] {
        for (i, (n, r)) in m.normalized.iter().zip(&m.raw).enumerate() {
            let _ = writeln!(
                out,
                "{:<10} {:<22} {:>11.5} {:>11.5} {:>12.5} {:>12.5}",
                if i == 0 { name } else { "" },
                n.target,
                n.mse,
                n.mae,
                r.mse,
                r.mae
            );
        }
    }
    let _ = writeln!(out, "(persist.: the test split forecast by repeating each target's last value; raw 'all' mixes units)");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "model          {} {}×{}{}, {} head{}{}",
        s.cell,
        s.layers,
        s.hidden,
        if s.bidirectional && s.merge_sum {
            " bidirectional (sum)"
        } else if s.bidirectional {
            " bidirectional"
        } else {
            ""
        },
        s.head,
        if s.window_norm { ", window norm" } else { "" },
        match (s.skip, s.skip_per_target) {
            (false, _) => "",
            (true, false) => ", skip",
            (true, true) => ", skip per target",
        }
    );
    let _ = writeln!(
        out,
        "window         {} rows → {} steps of {} ({} inputs)",
        s.window,
        s.horizon,
        s.targets.join(", "),
        s.inputs.join(", ")
    );
    let _ = writeln!(out, "parameters     {}", o.parameters);
    let info_len = serde_json::to_string(info).map_or(0, |t| t.len());
    let _ = writeln!(
        out,
        "flash          {blob_len} bytes (the blob; {info_len} of them this training record)"
    );
    let _ = writeln!(
        out,
        "epochs         {} run, best {} (patience {}, seed {})",
        o.epochs_run, o.best_epoch, s.patience, s.seed
    );
    let _ = writeln!(out, "training time  {:.1} s", o.train_seconds);
    out
}

/// `tinyrnn eval`: recomputes the test metrics of a trained blob on `csv` under its stored protocol.
/// Returns the recomputed test metrics and the stored ones.
pub fn eval(blob: &[u8], csv: &Path) -> Result<(SplitMetrics, SplitMetrics)> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let info = TrainInfo::parse(model.meta().info).context("this blob was not written by `tinyrnn train` (no training settings in its metadata), so there is no protocol to rebuild")?;
    let s = &info.settings;
    let p = prepare(csv, s)?;
    let spec = ModelSpec::from_model(&model)?;
    let (input_scalers, target_scalers) = stored_scalers(&spec, &p)?;
    let (_, _, test, _, _) = evaluate(&spec, &p, s, &input_scalers, &target_scalers)?;
    Ok((test, info.outcome.test))
}

/// The input and target scalers a trained blob stores, checked against the protocol's columns.
fn stored_scalers(spec: &ModelSpec, p: &Prepared) -> Result<(Vec<Affine>, Vec<Affine>)> {
    let pairs = |t: &Option<crate::spec::Tensor>, n: usize| -> Vec<Affine> {
        match t {
            Some(t) => affine_pairs(t)
                .into_iter()
                .map(|(offset, scale)| Affine { offset, scale })
                .collect(),
            None => identity(n),
        }
    };
    let input_scalers = pairs(&spec.scaling.input, p.inputs.len());
    let target_scalers = pairs(&spec.scaling.output, p.targets.len());
    ensure!(
        input_scalers.len() == p.inputs.len() && target_scalers.len() == p.targets.len(),
        "the blob's scalers do not match its stored columns"
    );
    Ok((input_scalers, target_scalers))
}

/// The settings `tinyrnn train` stored in `blob`; `None` for a blob it did not write.
pub fn stored_settings(blob: &[u8]) -> Option<Settings> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open().ok()?;
    TrainInfo::parse(model.meta().info).map(|info| info.settings)
}

/// A trained model's own data, rebuilt from the CSV it was trained on under its stored protocol and
/// scalers (model units): what `tinyrnn quantize` and `inspect --data` calibrate on and measure with.
#[derive(Clone, Debug)]
pub struct TrainedData {
    /// Up to [`CALIBRATION_WINDOWS`] training windows, evenly spaced over the training split.
    pub calibration: crate::npy::Array,
    /// Training windows in the split (`calibration` holds all of them or an even sample).
    pub training_windows: usize,
    /// Every window of the test split: the quantized model's error is measured on these.
    pub test: crate::npy::Array,
    /// The CSV rows the test split spans.
    pub test_rows: std::ops::Range<usize>,
}

/// [`TrainedData`] of `blob` (written by `tinyrnn train`) from `csv`.
pub fn trained_data(blob: &[u8], csv: &Path) -> Result<TrainedData> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let info = TrainInfo::parse(model.meta().info)
        .context("this blob was not written by `tinyrnn train`: it stores no protocol")?;
    let s = &info.settings;
    let p = prepare(csv, s)?;
    let spec = ModelSpec::from_model(&model)?;
    let (input_scalers, target_scalers) = stored_scalers(&spec, &p)?;
    let [train_rows, _, test_rows] = p.ranges.clone();
    let train_w = windows(&p, train_rows, &input_scalers, &target_scalers, s, s.stride)?;
    let test_w = windows(&p, test_rows.clone(), &input_scalers, &target_scalers, s, 1)?;
    ensure!(
        !test_w.is_empty(),
        "the test split of {} holds no complete window",
        csv.display()
    );
    Ok(TrainedData {
        calibration: calibration_windows(&train_w)?,
        training_windows: train_w.len(),
        test: crate::npy::Array::float(
            vec![test_w.len(), test_w.window, test_w.features],
            test_w.inputs,
        )?,
        test_rows,
    })
}

/// Up to [`CALIBRATION_WINDOWS`] of `train_w`'s input windows, evenly spaced, as a batch.
fn calibration_windows(train_w: &Windows) -> Result<crate::npy::Array> {
    let n = train_w.len().min(CALIBRATION_WINDOWS);
    ensure!(
        n > 0,
        "no training windows to calibrate the quantized model on"
    );
    let per = train_w.window * train_w.features;
    let mut values = Vec::with_capacity(n * per);
    for k in 0..n {
        let i = k * train_w.len() / n;
        values.extend_from_slice(&train_w.inputs[i * per..(i + 1) * per]);
    }
    crate::npy::Array::float(vec![n, train_w.window, train_w.features], values)
}

/// The table `eval` prints: recomputed test metrics beside the stored ones.
pub fn eval_table(now: &SplitMetrics, stored: &SplitMetrics) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>11} {:>11} {:>12} {:>12}   stored at training",
        "target", "MSE norm", "MAE norm", "MSE raw", "MAE raw"
    );
    for ((n, r), (sn, sr)) in now
        .normalized
        .iter()
        .zip(&now.raw)
        .zip(stored.normalized.iter().zip(&stored.raw))
    {
        let same = n.mse == sn.mse && n.mae == sn.mae && r.mse == sr.mse && r.mae == sr.mae;
        let _ = writeln!(
            out,
            "{:<22} {:>11.5} {:>11.5} {:>12.5} {:>12.5}   {}",
            n.target,
            n.mse,
            n.mae,
            r.mse,
            r.mae,
            if same {
                "identical".to_string()
            } else {
                format!(
                    "differs: {:.5} {:.5} {:.5} {:.5}",
                    sn.mse, sn.mae, sr.mse, sr.mae
                )
            }
        );
    }
    out
}

/// Forecasts of `run --csv`: for every CSV row at which the model has a forecast, the row, its
/// timestamp (if the CSV has one) and the forecast in raw units, horizon-major.
pub struct CsvForecasts {
    /// Column names: `row`, maybe `timestamp`, then `TARGET+STEP` for each forecast value.
    pub header: Vec<String>,
    /// One line of fields per forecast.
    pub lines: Vec<Vec<String>>,
}

/// `tinyrnn run MODEL --csv FILE`: streams the CSV's rows through the engine with the blob's scalers,
/// exactly as a device would (a sliding window for a model with a fixed window, else step by step).
pub fn run_csv(blob: &[u8], csv: &Path, time_column: Option<&str>) -> Result<CsvForecasts> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let meta = model.meta();
    let info = TrainInfo::parse(meta.info);
    let time_column = time_column.or(info
        .as_ref()
        .and_then(|i| i.settings.time_column.as_deref()));
    let table = Table::read_csv(csv, time_column)?;
    let names: Vec<&str> = meta.input_names().collect();
    ensure!(
        names.len() == model.input_width(),
        "the blob does not name its {} input features, so its columns cannot be found in a CSV; use `tinyrnn run --input X.npy`",
        model.input_width()
    );
    let columns: Vec<usize> = names
        .iter()
        .map(|n| {
            table
                .column(n)
                .with_context(|| format!("input column of the model, in {}", csv.display()))
        })
        .collect::<Result<_>>()?;
    let scaler = ModelScaler::of(&model);
    let mode = Mode::of(&model)?;
    let outputs: Vec<&str> = meta.output_names().collect();
    let (memory, out_len) = match mode {
        Mode::Window { steps } => (
            model.window_memory(steps)?.total(),
            model.output_len(steps)?,
        ),
        Mode::Stream => (model.memory().total(), model.step_output_len()),
    };
    let mut buffer = vec![0.0f32; memory];
    let mut runtime = Runtime::new(&model, &mut buffer)?;
    let width = model.output_width().max(1);
    let per_step = if outputs.is_empty() {
        width
    } else {
        outputs.len()
    };
    let mut header = vec!["row".to_string()];
    if table.timestamps.is_some() {
        header.push("timestamp".into());
    }
    for k in 0..out_len {
        let name = outputs
            .get(k % per_step)
            .map_or_else(|| format!("y{}", k % per_step), |n| n.to_string());
        header.push(format!("{name}+{}", k / per_step + 1));
    }
    let features = columns.len();
    let mut window: Vec<f32> = Vec::new();
    let mut forecast = vec![0.0f32; out_len];
    let mut lines = Vec::new();
    for row in 0..table.rows {
        let sample: Vec<f32> = columns
            .iter()
            .enumerate()
            .map(|(f, &c)| scaler.scale_input(f, table.value(row, c)))
            .collect();
        let ready = match mode {
            Mode::Window { steps } => {
                window.extend_from_slice(&sample);
                if window.len() > steps * features {
                    window.drain(..features);
                }
                if window.len() == steps * features {
                    runtime
                        .run_window(&window, &mut forecast)
                        .with_context(|| format!("row {row}"))?;
                    true
                } else {
                    false
                }
            }
            Mode::Stream => {
                runtime
                    .step(&sample, &mut forecast)
                    .with_context(|| format!("row {row}"))?
                    == Status::Ready
            }
        };
        if !ready {
            continue;
        }
        let mut line = vec![row.to_string()];
        if let Some(t) = &table.timestamps {
            line.push(t[row].clone());
        }
        line.extend(
            forecast
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{}", scaler.unscale_output(k % width, *v))),
        );
        lines.push(line);
    }
    ensure!(
        !lines.is_empty(),
        "{} has {} rows, fewer than the model's window",
        csv.display(),
        table.rows
    );
    Ok(CsvForecasts { header, lines })
}

impl CsvForecasts {
    /// As CSV text.
    pub fn to_csv(&self) -> String {
        let mut out = self.header.join(",");
        out.push('\n');
        for line in &self.lines {
            out.push_str(
                &line
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        out
    }
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A progress bar with epoch, loss, validation loss and ETA when stderr is a terminal; otherwise one
/// line per epoch on stderr (unless quiet).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    epochs: usize,
}

impl Progress {
    fn new(epochs: usize, quiet: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(epochs as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "epoch {pos:>3}/{len} [{bar:30}] {msg} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, quiet, epochs }
    }

    fn epoch(&mut self, r: &EpochReport) {
        let text = format!(
            "loss {:.5}  val loss {:.5}  val MAE {:.5}{}",
            r.train_loss,
            r.val_loss,
            r.val_mae,
            if r.improved { " *" } else { "" }
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(r.epoch as u64);
                bar.set_message(text);
            }
            None if !self.quiet => eprintln!(
                "epoch {:>3}/{}  {text}  ({:.1} s)",
                r.epoch,
                self.epochs,
                r.elapsed.as_secs_f64()
            ),
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// Reads a blob file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Fails unless every recomputed metric equals the stored one.
pub fn check_identical(now: &SplitMetrics, stored: &SplitMetrics) -> Result<()> {
    if now != stored {
        bail!("the recomputed test metrics differ from those stored at training (different CSV, or a different engine)");
    }
    Ok(())
}
