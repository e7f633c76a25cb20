//! ETTh1 under the Informer protocol: trains a model with `tinyrnn_converter::train` and prints test
//! MSE/MAE beside persistence and least-squares linear baselines on the same windows.
//!
//! ```text
//! cargo run --release -p tinyrnn-converter --example etth1 -- ../shared/data/ETTh1.csv \
//!     --targets all --cell gru --hidden 32 --window-norm --skip
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use tinyrnn_converter::quantize::{quantize, Mode};
use tinyrnn_converter::train::{
    fit, fit_scalers, metrics, predict, Architecture, CellKind, Head, ScaleKind, Split, Table,
    TrainOptions, Windows,
};
use tinyrnn_converter::write::to_blob;

#[derive(Parser)]
struct Args {
    /// ETTh1.csv
    csv: PathBuf,
    /// `all` (7 → 7) or `OT` (OT → OT).
    #[arg(long, default_value = "all")]
    targets: String,
    #[arg(long, value_enum, default_value = "gru")]
    cell: CellKind,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    #[arg(long)]
    bidirectional: bool,
    #[arg(long, value_enum, default_value = "dense")]
    head: Head,
    #[arg(long)]
    window_norm: bool,
    #[arg(long)]
    skip: bool,
    #[arg(long)]
    skip_per_target: bool,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    #[arg(long, default_value_t = 5)]
    patience: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only print the baselines.
    #[arg(long)]
    baselines_only: bool,
}

const WINDOW: usize = 96;
const HORIZON: usize = 24;

fn main() -> Result<()> {
    let args = Args::parse();
    let table = Table::read_csv(&args.csv, None)?;
    let columns: Vec<usize> = if args.targets == "all" {
        (0..table.columns.len()).collect()
    } else {
        vec![table.column(&args.targets)?]
    };
    let split = Split::Rows {
        train: 12 * 30 * 24,
        val: 4 * 30 * 24,
        test: 4 * 30 * 24,
    };
    let [train_rows, val_rows, test_rows] = split.ranges(table.rows, WINDOW)?;
    let scalers = fit_scalers(
        &table,
        &columns,
        &vec![ScaleKind::ZScore; columns.len()],
        train_rows.clone(),
    )?;
    let build = |rows| {
        Windows::build(
            &table, rows, &columns, &columns, &scalers, &scalers, WINDOW, HORIZON, 1,
        )
    };
    let (train, val, test) = (build(train_rows)?, build(val_rows)?, build(test_rows)?);
    println!(
        "windows: train {}, val {}, test {}; {} → {}",
        train.len(),
        val.len(),
        test.len(),
        columns.len(),
        columns.len()
    );
    let persistence = persistence(&test);
    let m = metrics(&persistence, &test.outputs);
    println!(
        "persistence          test MSE {:.4} MAE {:.4}",
        m.mse, m.mae
    );
    for (name, shared) in [("shared", true), ("per-variable", false)] {
        let predicted = linear_baseline(&train, &test, shared);
        let m = metrics(&predicted, &test.outputs);
        println!(
            "linear NLinear-style ({name}) test MSE {:.4} MAE {:.4}",
            m.mse, m.mae
        );
    }
    if args.baselines_only {
        return Ok(());
    }
    let arch = Architecture {
        cell: args.cell,
        layers: args.layers,
        hidden: args.hidden,
        bidirectional: args.bidirectional,
        merge_sum: false,
        head: args.head,
        window: WINDOW,
        horizon: HORIZON,
        features: columns.len(),
        targets: columns.len(),
        target_inputs: (0..columns.len()).map(Some).collect(),
        window_norm: args.window_norm,
        skip: args.skip,
        skip_per_target: args.skip_per_target,
    };
    let options = TrainOptions {
        epochs: args.epochs,
        batch: args.batch,
        learning_rate: args.lr,
        clip_norm: args.clip,
        patience: args.patience,
        seed: args.seed,
    };
    let started = Instant::now();
    let fitted = fit(&arch, &train, &val, &options, &mut |r| {
        println!(
            "epoch {:>3}  loss {:.4}  val {:.4}  val MAE {:.4}  {:>6.1}s{}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.val_mae,
            r.elapsed.as_secs_f64(),
            if r.improved { "  *" } else { "" }
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let blob = to_blob(&fitted.spec)?;
    let m = metrics(&predict(&fitted.spec, &test)?, &test.outputs);
    println!(
        "model: {} parameters, {} flash bytes (f32 blob), best epoch {}, trained in {seconds:.0} s",
        fitted.spec.parameter_count(),
        blob.len(),
        fitted.best_epoch
    );
    println!("f32  test MSE {:.4} MAE {:.4}", m.mse, m.mae);
    let i8w = quantize(&fitted.spec, Mode::I8w)?;
    let m = metrics(&predict(&i8w, &test)?, &test.outputs);
    println!(
        "i8w  test MSE {:.4} MAE {:.4} ({} flash bytes)",
        m.mse,
        m.mae,
        to_blob(&i8w)?.len()
    );
    Ok(())
}

/// Every step of the horizon repeats the window's last value.
fn persistence(w: &Windows) -> Vec<f32> {
    (0..w.len())
        .flat_map(|i| {
            let last = w.input(i)[(w.window - 1) * w.features..].to_vec();
            (0..w.horizon).flat_map(move |_| last.clone())
        })
        .collect()
}

/// Least squares from the last-value-subtracted window of one variable to its horizon (plus a bias),
/// fitted on the training windows: one map shared by all variables, or one per variable.
fn linear_baseline(train: &Windows, test: &Windows, shared: bool) -> Vec<f32> {
    let (t, h, f) = (train.window, train.horizon, train.features);
    let groups: Vec<Vec<usize>> = if shared {
        vec![(0..f).collect()]
    } else {
        (0..f).map(|v| vec![v]).collect()
    };
    let series = |w: &Windows, i: usize, v: usize| -> (Vec<f64>, f64) {
        let x = w.input(i);
        let last = f64::from(x[(t - 1) * f + v]);
        let mut s: Vec<f64> = (0..t).map(|k| f64::from(x[k * f + v]) - last).collect();
        s.push(1.0);
        (s, last)
    };
    let n = t + 1;
    let mut out = vec![0.0f32; test.outputs.len()];
    for vars in groups {
        let mut xtx = vec![0.0f64; n * n];
        let mut xty = vec![0.0f64; n * h];
        for i in 0..train.len() {
            for &v in &vars {
                let (s, last) = series(train, i, v);
                let y = train.output(i);
                for a in 0..n {
                    for b in 0..n {
                        xtx[a * n + b] += s[a] * s[b];
                    }
                    for k in 0..h {
                        xty[a * h + k] += s[a] * (f64::from(y[k * f + v]) - last);
                    }
                }
            }
        }
        for a in 0..n {
            xtx[a * n + a] += 1e-6;
        }
        let w = solve(xtx, xty, n, h);
        for i in 0..test.len() {
            for &v in &vars {
                let (s, last) = series(test, i, v);
                for k in 0..h {
                    let p: f64 = (0..n).map(|a| s[a] * w[a * h + k]).sum();
                    out[i * h * f + k * f + v] = (p + last) as f32;
                }
            }
        }
    }
    out
}

/// Solves `A X = B` (A `n × n` symmetric positive definite, B `n × m`) by Gaussian elimination.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize, m: usize) -> Vec<f64> {
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .unwrap_or(c);
        for k in 0..n {
            a.swap(c * n + k, p * n + k);
        }
        for k in 0..m {
            b.swap(c * m + k, p * m + k);
        }
        let d = a[c * n + c];
        for r in 0..n {
            if r != c {
                let factor = a[r * n + c] / d;
                for k in 0..n {
                    a[r * n + k] -= factor * a[c * n + k];
                }
                for k in 0..m {
                    b[r * m + k] -= factor * b[c * m + k];
                }
            }
        }
    }
    for r in 0..n {
        let d = a[r * n + r];
        for k in 0..m {
            b[r * m + k] /= d;
        }
    }
    b
}
