//! `tinyrnn train --bidirectional sum|concat`: the KPI notebook's Bidirectional variant with
//! `merge_mode='sum'` is trainable, and a bare `--bidirectional` still concatenates.

mod common;

use std::path::{Path, PathBuf};

use tinyrnn::format::{Direction, Layer, Merge};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::trainer::TrainInfo;

fn scratch(name: &str) -> PathBuf {
    common::scratch("train-bidirectional", name)
}

/// Trains the seed's KPI model (window 5 → 2 steps of 2 KPIs, keep-last head) with `merge` flags;
/// returns the merge of every recurrent layer in the blob, the stored settings and stdout.
fn train(dir: &Path, merge: &[&str]) -> (Vec<Direction>, TrainInfo, String) {
    let blob = dir.join("kpi.trnn");
    let mut args = vec![
        "--window",
        "5",
        "--horizon",
        "2",
        "--cell",
        "rnn",
        "--hidden",
        "2",
        "--head",
        "keep-last",
        "--epochs",
        "2",
        "-o",
        blob.to_str().unwrap(),
        "--plots",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(merge);
    let stdout = common::train_kpis("CQI,DL_PRB_USAGE_RATE", &args);
    let bytes = std::fs::read(&blob).unwrap();
    let aligned = AlignedBlob::new(&bytes);
    let model = aligned.open().unwrap();
    let directions = model
        .layers()
        .filter_map(|l| match l {
            Layer::Recurrent(r) => Some(r.direction),
            _ => None,
        })
        .collect();
    let info = TrainInfo::parse(model.meta().info).unwrap();
    (directions, info, stdout)
}

#[test]
fn bidirectional_sum_and_concat_train_from_the_command_line() {
    let dir = scratch("merge");
    let (sum, info, stdout) = train(&dir, &["--bidirectional", "sum"]);
    assert_eq!(sum, [Direction::Bidirectional(Merge::Sum)]);
    assert!(info.settings.bidirectional && info.settings.merge_sum);
    assert!(stdout.contains("bidirectional (sum)"), "{stdout}");
    let (concat, info, _) = train(&dir, &["--bidirectional", "--seed", "2"]);
    assert_eq!(concat, [Direction::Bidirectional(Merge::Concat)]);
    assert!(info.settings.bidirectional && !info.settings.merge_sum);
    let (forward, info, _) = train(&dir, &[]);
    assert_eq!(forward, [Direction::Forward]);
    assert!(!info.settings.bidirectional);
    std::fs::remove_dir_all(dir).ok();
}
