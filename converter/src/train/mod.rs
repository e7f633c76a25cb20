//! Training a forecaster from windows of a time series: backpropagation through time written by hand
//! over the engine's own f32 maths, Adam, gradient clipping and early stopping.
//!
//! What is trained is an ordinary engine model: [`fit`] returns a [`ModelSpec`] whose layers are
//! engine layers, and [`predict`] runs that spec with the engine (`Runtime::run_window`).

pub mod data;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::run::AlignedBlob;
use crate::spec::ModelSpec;
use crate::write;

pub use data::{fit_scalers, Affine, ScaleKind, Split, Table, Windows};

/// The recurrent cell of every recurrent layer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// Elman RNN with tanh.
    Rnn,
    /// LSTM (gates `i f g o`, forget bias initialised to 1).
    Lstm,
    /// GRU, reset-after (the Keras default).
    Gru,
}

/// How the recurrent layers' output becomes the forecast.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// The last state feeds one Dense layer that predicts `horizon × targets` values at once.
    Dense,
    /// The last recurrent layer returns its sequence; the last `horizon` steps are kept and a per-step
    /// Dense maps each to `targets` values (the seed's many-to-many form).
    KeepLast,
}

/// The shape of the model to train.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// Cell of every recurrent layer.
    pub cell: CellKind,
    /// Number of stacked recurrent layers (at least 1).
    pub layers: usize,
    /// Hidden size of each recurrent layer.
    pub hidden: usize,
    /// Whether the recurrent layers read the window in both directions (concatenated).
    pub bidirectional: bool,
    /// How the forecast is read out.
    pub head: Head,
    /// Input timesteps per window.
    pub window: usize,
    /// Output timesteps per window.
    pub horizon: usize,
    /// Input features per timestep.
    pub features: usize,
    /// Target values per output timestep.
    pub targets: usize,
    /// For each target, the input feature holding the same column (needed by window normalisation).
    pub target_inputs: Vec<Option<usize>>,
    /// Subtract each window's last value from its inputs and add it back to the forecast (in-model).
    pub window_norm: bool,
    /// A linear path from the window straight into the head.
    pub skip: bool,
}

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Most passes over the training windows.
    pub epochs: usize,
    /// Windows per minibatch.
    pub batch: usize,
    /// Adam's learning rate.
    pub learning_rate: f32,
    /// Gradients whose global L2 norm exceeds this are scaled down to it; 0 turns clipping off.
    pub clip_norm: f32,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Seed for initialisation and shuffling; the same seed gives the same model.
    pub seed: u64,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training MSE over the epoch's minibatches.
    pub train_loss: f32,
    /// Validation MSE after the epoch.
    pub val_loss: f32,
    /// Validation MAE after the epoch.
    pub val_mae: f32,
    /// Time since training started.
    pub elapsed: Duration,
    /// Whether the validation loss is the best so far (these weights are kept).
    pub improved: bool,
}

/// A trained model.
#[derive(Clone, Debug)]
pub struct Fitted {
    /// The model: f32, in model units, no scalers.
    pub spec: ModelSpec,
    /// One report per epoch run.
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
}

/// Trains a model of shape `arch` on `train`, early-stopping on `val`; calls `progress` after every
/// epoch. The best weights (lowest validation loss) are returned. Deterministic for a given seed.
pub fn fit(
    arch: &Architecture,
    train: &Windows,
    val: &Windows,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<Fitted> {
    let _ = (arch, train, val, options, progress);
    bail!("training is not implemented yet")
}

/// Runs `spec` with the engine over every window: `n × horizon × targets` values in model units.
pub fn predict(spec: &ModelSpec, windows: &Windows) -> Result<Vec<f32>> {
    let blob = AlignedBlob::new(&write::to_blob(spec)?);
    let model = blob.open()?;
    ensure!(
        model.input_width() == windows.features,
        "the model reads {} features per timestep; the windows have {}",
        model.input_width(),
        windows.features
    );
    let out_len = model
        .output_len(windows.window)
        .with_context(|| format!("the model cannot run windows of {}", windows.window))?;
    ensure!(
        out_len == windows.horizon * windows.targets,
        "the model forecasts {out_len} values per window; the windows hold {} × {}",
        windows.horizon,
        windows.targets
    );
    let memory = model.window_memory(windows.window)?;
    let mut buffer = vec![0.0f32; memory.total()];
    let mut runtime = tinyrnn::Runtime::new(&model, &mut buffer)?;
    let mut out = vec![0.0f32; windows.len() * out_len];
    for (i, chunk) in out.chunks_exact_mut(out_len).enumerate() {
        runtime
            .run_window(windows.input(i), chunk)
            .with_context(|| format!("window {i}"))?;
    }
    Ok(out)
}

/// Mean squared and mean absolute error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
}

/// MSE and MAE over every value (`predicted` and `actual` have the same layout); NaN when empty.
pub fn metrics(predicted: &[f32], actual: &[f32]) -> Metrics {
    let n = predicted.len().min(actual.len());
    let (se, ae) = predicted
        .iter()
        .zip(actual)
        .fold((0.0f64, 0.0f64), |(se, ae), (p, a)| {
            let d = f64::from(*p) - f64::from(*a);
            (se + d * d, ae + d.abs())
        });
    Metrics {
        mse: se / n as f64,
        mae: ae / n as f64,
    }
}
