//! Scaffolding shared by the command-line tests: paths into the repository, the `tinyrnn` binary these
//! tests were built with, and scratch directories.
#![allow(dead_code, reason = "each test binary uses a part of this module")]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The bundled KPI CSV (`examples/kpi/kpi.csv`).
pub fn kpi_csv() -> PathBuf {
    repo("examples/kpi/kpi.csv")
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
