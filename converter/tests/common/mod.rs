//! Scaffolding shared by the command-line tests: paths into the repository, the `tinyrnn` binary these
//! tests were built with, and scratch directories; seeded values for hand-built models; and, for the
//! quantization measurements, one kind of weight matrix swapped between two versions of a model.
#![allow(dead_code, reason = "each test binary uses a part of this module")]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Deterministic values in `[-scale, scale)`.
pub fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let unit =
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * unit - 1.0) * scale
        })
        .collect()
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The bundled KPI CSV (`examples/kpi/kpi.csv`).
pub fn kpi_csv() -> PathBuf {
    repo("examples/kpi/kpi.csv")
}

/// The three KPIs of the bundled CSV that the KPI models take in.
pub const KPI_INPUTS: &str = "CQI,UE_TX_POWER,DL_PRB_USAGE_RATE";

/// `tinyrnn train` on the bundled KPI CSV, the three KPIs in and `targets` out, then `args`; asserts that
/// training succeeded and returns what it printed on standard output.
pub fn train_kpis(targets: &str, args: &[&str]) -> String {
    let csv = kpi_csv();
    let mut all = vec![
        "train",
        "--csv",
        csv.to_str().unwrap(),
        "--inputs",
        KPI_INPUTS,
        "--targets",
        targets,
    ];
    all.extend_from_slice(args);
    let out = tinyrnn(&all);
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The mean squared error over all targets that `tinyrnn eval BLOB --csv CSV` prints on its `all` row.
pub fn eval_mse(blob: &Path, csv: &Path) -> f64 {
    let out = tinyrnn(&[
        "eval",
        blob.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "eval failed: {}", printed(&out));
    let all = stdout
        .lines()
        .find(|l| l.starts_with("all "))
        .unwrap_or_else(|| panic!("no 'all' row in {stdout}"));
    all.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A new directory for one test, unique to this run: `<tmp>/tinyrnn-<suite>-<pid>-<name>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyrnn-{suite}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `tinyrnn` binary with `args`.
pub fn tinyrnn<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyrnn"))
        .args(args)
        .output()
        .expect("the tinyrnn binary runs")
}

/// What a run printed: standard output, then standard error.
pub fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A kind of weight matrix, for measurements that put one kind of a quantized model back in f32 (or
/// the other way round).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum MatrixKind {
    /// Recurrent layers' input kernels.
    InputKernel,
    /// Recurrent layers' recurrent kernels.
    RecurrentKernel,
    /// Dense weights.
    Dense,
    /// Embedding tables.
    Table,
}

/// `base` with the matrices of `kind` taken from `from`: the same model at another precision.
pub fn with_kind(
    base: &tinyrnn_converter::spec::ModelSpec,
    from: &tinyrnn_converter::spec::ModelSpec,
    kind: MatrixKind,
) -> tinyrnn_converter::spec::ModelSpec {
    use tinyrnn::format::Layer;
    let mut out = base.clone();
    for (l, o) in out.layers.iter_mut().zip(&from.layers) {
        match (l, o) {
            (Layer::Recurrent(r), Layer::Recurrent(ro)) => {
                for (w, wo) in [Some(&mut r.forward), r.backward.as_mut()]
                    .into_iter()
                    .zip([Some(&ro.forward), ro.backward.as_ref()])
                {
                    let (Some(w), Some(wo)) = (w, wo) else {
                        continue;
                    };
                    match kind {
                        MatrixKind::InputKernel => w.kernel = wo.kernel.clone(),
                        MatrixKind::RecurrentKernel => w.recurrent = wo.recurrent.clone(),
                        _ => {}
                    }
                }
            }
            (Layer::Dense(d), Layer::Dense(dof)) if kind == MatrixKind::Dense => {
                d.weight = dof.weight.clone()
            }
            (Layer::Embedding(e), Layer::Embedding(eo)) if kind == MatrixKind::Table => {
                e.table = eo.table.clone()
            }
            _ => {}
        }
    }
    out
}
