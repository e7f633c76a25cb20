//! The integer-only step links no floating point on a core without an FPU: `tests/nofloat` is built as a
//! `thumbv6m-none-eabi` ELF (Cortex-M0+) that opens the `i8x16` reference model
//! (`tests/data/integer/model.trnn`: LSTM → GRU → Dense), streams it through `Runtime::step_i16` and
//! runs a window through `Runtime::run_window_i16` (whose code holds `SubtractLast` and `Residual`), and
//! its symbol table must hold no soft-float routine. A second build with one f32 multiply added shows
//! that the scan finds them.
//!
//! Needs the `thumbv6m-none-eabi` target (`rustup target add thumbv6m-none-eabi`, as `.ci/run` does) and
//! an `nm` (`llvm-nm`, `arm-none-eabi-nm` or binutils').

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the probe ELF, with or without its float negative control, and returns its path.
fn build_probe(with_float: bool) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("nofloat/Cargo.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(if with_float {
        "nofloat-with-float"
    } else {
        "nofloat"
    });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "thumbv6m-none-eabi",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags of the outer build (coverage, sanitizers) do not apply to the probe.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if with_float {
        command.args(["--features", "with-float"]);
    }
    let output = command.output().expect("running cargo");
    assert!(
        output.status.success(),
        "building the thumbv6m probe failed (is the target installed? `rustup target add \
         thumbv6m-none-eabi`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("thumbv6m-none-eabi/release/tinyrnn-nofloat-probe")
}

/// Every symbol in an ELF, through the first `nm` found.
fn symbols(elf: &Path) -> Vec<String> {
    for nm in ["llvm-nm", "arm-none-eabi-nm", "nm"] {
        if let Ok(output) = Command::new(nm).arg(elf).output() {
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|line| line.split_whitespace().last())
                    .map(str::to_string)
                    .collect();
            }
        }
    }
    panic!("no nm found (llvm-nm, arm-none-eabi-nm, nm)");
}

/// Whether a symbol is a soft-float routine of the ARM EABI or of compiler-builtins/libgcc.
fn is_soft_float(symbol: &str) -> bool {
    let eabi = symbol.strip_prefix("__aeabi_").is_some_and(|rest| {
        rest.starts_with(['f', 'd']) || rest.ends_with("2f") || rest.ends_with("2d")
    });
    // libgcc/compiler-builtins names: __addsf3, __fixdfsi, __floatsisf, __truncdfsf2, __ltsf2, …
    let gcc = symbol.starts_with("__") && (symbol.contains("sf") || symbol.contains("df"));
    eabi || gcc
}

#[test]
fn integer_step_links_no_soft_float_on_thumbv6m() {
    let clean = symbols(&build_probe(false));
    assert!(clean.iter().any(|s| s == "_start"), "{clean:?}");
    let float: Vec<&String> = clean.iter().filter(|s| is_soft_float(s)).collect();
    assert!(float.is_empty(), "soft-float routines linked: {float:?}");

    // The negative control: one f32 multiply must show up.
    let control = symbols(&build_probe(true));
    assert!(
        control.iter().any(|s| s == "__aeabi_fmul"),
        "the scan misses soft-float routines: {control:?}"
    );
    assert!(control.iter().any(|s| is_soft_float(s)));
}

#[test]
fn soft_float_names_are_recognised() {
    for name in [
        "__aeabi_fmul",
        "__aeabi_dadd",
        "__aeabi_i2f",
        "__aeabi_ul2d",
        "__addsf3",
        "__muldf3",
        "__fixsfsi",
        "__floatsisf",
        "__truncdfsf2",
    ] {
        assert!(is_soft_float(name), "{name}");
    }
    for name in [
        "__aeabi_lmul",
        "__aeabi_lasr",
        "__aeabi_uidiv",
        "__aeabi_memcpy",
        "_start",
    ] {
        assert!(!is_soft_float(name), "{name}");
    }
}
