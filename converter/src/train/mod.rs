//! Training a forecaster from windows of a time series: backpropagation through time written by hand
//! over the engine's own f32 maths, Adam, gradient clipping and early stopping.
//!
//! What is trained is an ordinary engine model: [`fit`] returns a [`ModelSpec`] whose layers are
//! engine layers, and [`predict`] runs that spec with the engine (`Runtime::run_window`).
//!
//! The model [`fit`] builds, first layer to last:
//!
//! ```text
//! [SubtractLast]                         window_norm: x[t] − x[T−1], per feature
//! Recurrent × layers                     SimpleRNN(tanh) / LSTM / GRU(reset-after), optionally
//!                                        Bidirectional(concat or sum); all but the last return
//!                                        sequences
//! Dense(horizon·targets)                 Head::Dense: from the last recurrent layer's final state
//!   or KeepLast(horizon), Dense(targets) Head::KeepLast: per step, from the last `horizon` states
//! [Residual]                             window_norm: + each target's last input value;
//!                                        skip: + a horizon×window linear map of its (normalised)
//!                                        input series, shared by all targets or one per target
//! ```
//! The input is the fixed window (`Input.steps = window`), the output `horizon × targets` values in
//! model units (timestep-major), exactly the layout of [`Windows::outputs`].

pub mod chars;
pub mod data;
mod net;
mod optim;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use net::{Cache, Net};
use optim::{clip_global_norm, Adam, Rng};

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
    /// With `bidirectional`: add the two directions' outputs instead of concatenating them (Keras
    /// `merge_mode='sum'`).
    pub merge_sum: bool,
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
    /// With `skip`: one linear map per target (`horizon·targets × window` weights) instead of one
    /// shared by all targets (`horizon × window`).
    pub skip_per_target: bool,
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
/// epoch. The best weights (lowest validation loss) are returned. Deterministic for a given seed: every
/// minibatch is split into the same two halves whose gradients are summed in a fixed order, whether or
/// not the halves run on two threads.
///
/// `options.patience` counts epochs without a better validation loss before stopping; 0 never stops
/// early.
pub fn fit(
    arch: &Architecture,
    train: &Windows,
    val: &Windows,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<Fitted> {
    for (name, w) in [("training", train), ("validation", val)] {
        ensure!(
            !w.is_empty(),
            "the {name} split has no complete window; give it more rows"
        );
        ensure!(
            (w.window, w.features, w.horizon, w.targets)
                == (arch.window, arch.features, arch.horizon, arch.targets),
            "the {name} windows are {}×{} → {}×{}, but the model is {}×{} → {}×{}",
            w.window,
            w.features,
            w.horizon,
            w.targets,
            arch.window,
            arch.features,
            arch.horizon,
            arch.targets
        );
    }
    ensure!(options.epochs >= 1, "train for at least one epoch");
    ensure!(options.batch >= 1, "the batch size must be at least 1");
    ensure!(
        options.learning_rate.is_finite() && options.learning_rate > 0.0,
        "the learning rate must be a positive number, got {}",
        options.learning_rate
    );
    ensure!(
        options.clip_norm.is_finite() && options.clip_norm >= 0.0,
        "the clipping norm must be a number ≥ 0, got {}",
        options.clip_norm
    );
    let net = Net::new(arch)?;
    let mut rng = Rng::new(options.seed);
    let mut params = net.init(&mut rng);
    net.init_skip(&mut params, train);
    let mut adam = Adam::new(net.size, options.learning_rate);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut caches = [net.cache::<f32>(), net.cache::<f32>()];
    let mut grads = [vec![0.0f32; net.size], vec![0.0f32; net.size]];
    let started = Instant::now();
    let mut best = (f32::INFINITY, params.clone(), 0usize);
    let mut history = Vec::new();
    let mut waited = 0;
    let per_window = (arch.horizon * arch.targets) as f64;
    for epoch in 1..=options.epochs {
        rng.shuffle(&mut order);
        let mut squared = 0.0f64;
        for batch in order.chunks(options.batch) {
            squared += batch_gradient(&net, &params, train, batch, &mut caches, &mut grads);
            clip_global_norm(&mut grads[0], options.clip_norm);
            adam.step(&mut params, &grads[0]);
        }
        let train_loss = (squared / (train.len() as f64 * per_window)) as f32;
        let (val_loss, val_mae) = evaluate(&net, &params, val, &mut caches);
        if !train_loss.is_finite() || !val_loss.is_finite() {
            bail!(
                "training diverged in epoch {epoch} (loss {train_loss}, validation loss {val_loss}); \
                 try a lower learning rate or a smaller clipping norm"
            );
        }
        let improved = val_loss < best.0;
        if improved {
            best = (val_loss, params.clone(), epoch);
            waited = 0;
        } else {
            waited += 1;
        }
        let report = EpochReport {
            epoch,
            train_loss,
            val_loss,
            val_mae,
            elapsed: started.elapsed(),
            improved,
        };
        progress(&report);
        history.push(report);
        if options.patience > 0 && waited >= options.patience {
            break;
        }
    }
    Ok(Fitted {
        spec: net.to_spec(&best.1)?,
        history,
        best_epoch: best.2,
    })
}

/// Gradient of the minibatch's mean squared error into `grads[0]`; returns its sum of squared errors.
/// The two halves of the batch run on two threads and are summed in a fixed order.
fn batch_gradient(
    net: &Net,
    params: &[f32],
    windows: &Windows,
    batch: &[usize],
    caches: &mut [Cache<f32>; 2],
    grads: &mut [Vec<f32>; 2],
) -> f64 {
    let scale = 2.0 / (batch.len() * windows.horizon * windows.targets) as f32;
    let (first, second) = batch.split_at(batch.len().div_ceil(2));
    let [cache_a, cache_b] = caches;
    let [grad_a, grad_b] = grads;
    let (sse_a, sse_b) = std::thread::scope(|scope| {
        let other =
            scope.spawn(|| half_gradient(net, params, windows, second, cache_b, grad_b, scale));
        let mine = half_gradient(net, params, windows, first, cache_a, grad_a, scale);
        (mine, other.join().unwrap_or(f64::NAN))
    });
    grad_a
        .iter_mut()
        .zip(grad_b.iter())
        .for_each(|(a, b)| *a += b);
    sse_a + sse_b
}

fn half_gradient(
    net: &Net,
    params: &[f32],
    windows: &Windows,
    batch: &[usize],
    cache: &mut Cache<f32>,
    grad: &mut [f32],
    scale: f32,
) -> f64 {
    grad.fill(0.0);
    let mut sse = 0.0f64;
    for &i in batch {
        net.forward(params, windows.input(i), cache);
        sse += net.set_loss_gradient(cache, windows.output(i), scale);
        net.backward(params, cache, grad);
    }
    sse
}

/// Validation MSE and MAE of the trainer's own forward pass (identical to the engine's).
fn evaluate(
    net: &Net,
    params: &[f32],
    windows: &Windows,
    caches: &mut [Cache<f32>; 2],
) -> (f32, f32) {
    let n = windows.len();
    let [cache_a, cache_b] = caches;
    let run = |range: std::ops::Range<usize>, cache: &mut Cache<f32>| {
        let (mut se, mut ae) = (0.0f64, 0.0f64);
        for i in range {
            net.forward(params, windows.input(i), cache);
            for (y, t) in cache.y.iter().zip(windows.output(i)) {
                let d = f64::from(*y) - f64::from(*t);
                se += d * d;
                ae += d.abs();
            }
        }
        (se, ae)
    };
    let mid = n.div_ceil(2);
    let ((se_a, ae_a), (se_b, ae_b)) = std::thread::scope(|scope| {
        let other = scope.spawn(|| run(mid..n, cache_b));
        let mine = run(0..mid, cache_a);
        (mine, other.join().unwrap_or((f64::NAN, f64::NAN)))
    });
    let count = (n * windows.horizon * windows.targets) as f64;
    (
        ((se_a + se_b) / count) as f32,
        ((ae_a + ae_b) / count) as f32,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use tinyrnn::format::{Direction, Layer, Merge};

    /// Three noisy daily-cycle series; targets are columns 2 and 0.
    fn windows(rows: std::ops::Range<usize>, window: usize, horizon: usize) -> Windows {
        let mut rng = Rng::new(5);
        let mut text = String::from("a,b,c\n");
        for r in 0..rows.end {
            let t = r as f64 * std::f64::consts::TAU / 24.0;
            text += &format!(
                "{},{},{}\n",
                t.sin() + 0.1 * rng.normal(),
                (t * 0.5).cos() + 0.1 * rng.normal(),
                (t + 1.0).sin() * 2.0 + 0.3 + 0.1 * rng.normal()
            );
        }
        let table = Table::parse_csv(&text, None).unwrap();
        let id = [Affine::IDENTITY; 3];
        Windows::build(
            &table,
            rows,
            &[0, 1, 2],
            &[2, 0],
            &id,
            &id[..2],
            window,
            horizon,
            1,
        )
        .unwrap()
    }

    fn arch(cell: CellKind, head: Head) -> Architecture {
        Architecture {
            cell,
            layers: 1,
            hidden: 6,
            bidirectional: false,
            merge_sum: false,
            head,
            window: 12,
            horizon: 3,
            features: 3,
            targets: 2,
            target_inputs: vec![Some(2), Some(0)],
            window_norm: false,
            skip: false,
            skip_per_target: false,
        }
    }

    fn options(epochs: usize) -> TrainOptions {
        TrainOptions {
            epochs,
            batch: 16,
            learning_rate: 1e-2,
            clip_norm: 1.0,
            patience: 0,
            seed: 1,
        }
    }

    /// The trainer's own f32 forward pass over every window.
    fn trainer_forecast(fitted: &Fitted, arch: &Architecture, w: &Windows) -> Vec<f32> {
        // Re-read the parameters from the spec through a fresh net: the spec is what the engine runs.
        let net = Net::new(arch).unwrap();
        let params = net.params_of(&fitted.spec).unwrap();
        let mut cache = net.cache::<f32>();
        (0..w.len())
            .flat_map(|i| {
                net.forward(&params, w.input(i), &mut cache);
                cache.y.clone()
            })
            .collect()
    }

    #[test]
    fn engine_runs_what_was_trained() {
        let train = windows(0..200, 12, 3);
        let val = windows(200..260, 12, 3);
        let mut cases = Vec::new();
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            for head in [Head::Dense, Head::KeepLast] {
                cases.push(arch(cell, head));
            }
        }
        cases.push(Architecture {
            layers: 2,
            bidirectional: true,
            window_norm: true,
            skip: true,
            ..arch(CellKind::Gru, Head::Dense)
        });
        // The KPI notebook's Bidirectional(merge_mode='sum') variant, and a stack of sums.
        cases.push(Architecture {
            bidirectional: true,
            merge_sum: true,
            ..arch(CellKind::Rnn, Head::KeepLast)
        });
        cases.push(Architecture {
            layers: 2,
            bidirectional: true,
            merge_sum: true,
            ..arch(CellKind::Lstm, Head::Dense)
        });
        cases.push(Architecture {
            window_norm: true,
            ..arch(CellKind::Lstm, Head::KeepLast)
        });
        cases.push(Architecture {
            skip: true,
            ..arch(CellKind::Rnn, Head::Dense)
        });
        cases.push(Architecture {
            window_norm: true,
            skip: true,
            skip_per_target: true,
            ..arch(CellKind::Lstm, Head::Dense)
        });
        for a in cases {
            let fitted = fit(&a, &train, &val, &options(2), &mut |_| {}).unwrap();
            let engine = predict(&fitted.spec, &val).unwrap();
            let ours = trainer_forecast(&fitted, &a, &val);
            assert_eq!(engine.len(), val.outputs.len());
            // Same operations in the same order with the same activation functions: bit for bit.
            assert_eq!(engine, ours, "{a:?}");
            let merges: Vec<_> = fitted
                .spec
                .layers
                .iter()
                .filter_map(|l| match l {
                    Layer::Recurrent(r) => Some(r.direction),
                    _ => None,
                })
                .collect();
            let want = match (a.bidirectional, a.merge_sum) {
                (false, _) => Direction::Forward,
                (true, false) => Direction::Bidirectional(Merge::Concat),
                (true, true) => Direction::Bidirectional(Merge::Sum),
            };
            assert!(merges.iter().all(|d| *d == want), "{merges:?}");
        }
    }

    #[test]
    fn training_is_deterministic_and_learns() {
        let train = windows(0..300, 12, 3);
        let val = windows(300..400, 12, 3);
        let a = Architecture {
            window_norm: true,
            skip: true,
            ..arch(CellKind::Gru, Head::Dense)
        };
        let mut seen = 0;
        let first = fit(&a, &train, &val, &options(8), &mut |r| {
            seen += 1;
            assert_eq!(r.epoch, seen);
        })
        .unwrap();
        let again = fit(&a, &train, &val, &options(8), &mut |_| {}).unwrap();
        assert_eq!(first.spec, again.spec);
        assert_eq!(seen, 8);
        let persistence: Vec<f32> = (0..val.len())
            .flat_map(|i| {
                let last = &val.input(i)[(val.window - 1) * 3..];
                (0..3).flat_map(move |_| [last[2], last[0]])
            })
            .collect();
        let base = metrics(&persistence, &val.outputs);
        let ours = metrics(&predict(&first.spec, &val).unwrap(), &val.outputs);
        assert!(
            ours.mse < 0.5 * base.mse,
            "{ours:?} vs persistence {base:?}"
        );
        let best = first.history[first.best_epoch - 1].val_loss;
        assert!((ours.mse as f32 - best).abs() < 1e-4 * best.max(1.0));
    }

    #[test]
    fn early_stopping_keeps_the_best_epoch() {
        let train = windows(0..100, 12, 3);
        let val = windows(100..150, 12, 3);
        let fitted = fit(
            &arch(CellKind::Lstm, Head::Dense),
            &train,
            &val,
            &TrainOptions {
                learning_rate: 0.3,
                patience: 2,
                ..options(40)
            },
            &mut |_| {},
        )
        .unwrap();
        let h = &fitted.history;
        let best = h.iter().map(|r| r.val_loss).fold(f32::INFINITY, f32::min);
        assert_eq!(h[fitted.best_epoch - 1].val_loss, best);
        assert!(
            h.len() < 40 && h.len() >= fitted.best_epoch + 2,
            "{}",
            h.len()
        );
        let engine = metrics(&predict(&fitted.spec, &val).unwrap(), &val.outputs);
        assert!((engine.mse as f32 - best).abs() < 1e-4 * best.max(1.0));
    }

    #[test]
    fn bad_arguments_are_refused_clearly() {
        let train = windows(0..100, 12, 3);
        let e = format!(
            "{:#}",
            fit(
                &Architecture {
                    window_norm: true,
                    target_inputs: vec![Some(2), None],
                    ..arch(CellKind::Rnn, Head::Dense)
                },
                &train,
                &train,
                &options(1),
                &mut |_| {}
            )
            .unwrap_err()
        );
        assert!(e.contains("target 1"), "{e}");
        let e = format!(
            "{:#}",
            fit(
                &Architecture {
                    window: 10,
                    ..arch(CellKind::Rnn, Head::Dense)
                },
                &train,
                &train,
                &options(1),
                &mut |_| {}
            )
            .unwrap_err()
        );
        assert!(e.contains("12×3 → 3×2") && e.contains("10×3"), "{e}");
    }
}
