//! A short training run on the committed ETTh1 excerpt (720 hourly rows, 7 variables) must forecast
//! the validation split far better than persistence, and the engine must reproduce the trainer's
//! validation loss. Benchmarks on the full data set are in BENCHMARKS.md.

use std::path::Path;

use tinyrnn_converter::train::{
    fit, fit_scalers, metrics, predict, Architecture, CellKind, Head, ScaleKind, Split, Table,
    TrainOptions, Windows,
};

#[test]
fn short_run_on_the_etth1_excerpt_beats_persistence() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/etth1/ETTh1-head720.csv");
    let table = Table::read_csv(&path, None).unwrap();
    assert_eq!(table.columns.len(), 7);
    let columns: Vec<usize> = (0..7).collect();
    let (window, horizon) = (24, 6);
    let [train_rows, val_rows, _] = Split::Rows {
        train: 480,
        val: 120,
        test: 120,
    }
    .ranges(table.rows, window)
    .unwrap();
    let scalers = fit_scalers(
        &table,
        &columns,
        &[ScaleKind::ZScore; 7],
        train_rows.clone(),
    )
    .unwrap();
    let build = |rows| {
        Windows::build(
            &table, rows, &columns, &columns, &scalers, &scalers, window, horizon, 1,
        )
        .unwrap()
    };
    let (train, val) = (build(train_rows), build(val_rows));
    let arch = Architecture {
        cell: CellKind::Gru,
        layers: 1,
        hidden: 8,
        bidirectional: false,
        merge_sum: false,
        head: Head::Dense,
        window,
        horizon,
        features: 7,
        targets: 7,
        target_inputs: (0..7).map(Some).collect(),
        window_norm: true,
        skip: true,
        skip_per_target: false,
    };
    let options = TrainOptions {
        epochs: 15,
        batch: 16,
        learning_rate: 3e-3,
        clip_norm: 1.0,
        patience: 0,
        seed: 0,
    };
    let fitted = fit(&arch, &train, &val, &options, &mut |_| {}).unwrap();
    let persistence: Vec<f32> = (0..val.len())
        .flat_map(|i| {
            let last = val.input(i)[(window - 1) * 7..].to_vec();
            (0..horizon).flat_map(move |_| last.clone())
        })
        .collect();
    let base = metrics(&persistence, &val.outputs);
    let model = metrics(&predict(&fitted.spec, &val).unwrap(), &val.outputs);
    let first = fitted.history[0].val_loss;
    let best = fitted.history[fitted.best_epoch - 1].val_loss;
    println!("persistence {base:?}, model {model:?}, first epoch {first}, best {best}");
    assert!(
        best < first,
        "validation loss did not fall: {first} → {best}"
    );
    assert!(
        model.mse < 0.75 * base.mse,
        "model {model:?} is not well below persistence {base:?}"
    );
    assert!((model.mse as f32 - best).abs() <= 1e-4 * best);
}
