//! Puts the memory layout of the binary being built on the linker's search path as `memory.x`: the QEMU
//! machine's by default, a board's when its feature is on; and adds defmt's linker script when it logs.
//! The layouts live in `memory/`, not as a `memory.x` in this folder: the linker looks in the current
//! directory first, which would shadow the board's layout.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let layout = if env::var_os("CARGO_FEATURE_STM32F411").is_some() {
        "memory/stm32f411.x"
    } else if env::var_os("CARGO_FEATURE_RP2040").is_some() {
        "memory/rp2040.x"
    } else if env::var_os("CARGO_FEATURE_MICROBIT").is_some() {
        "memory/microbit.x"
    } else {
        "memory/mps2-an386.x"
    };
    fs::copy(layout, out.join("memory.x")).expect("copy the memory layout");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={layout}");
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_RP2040").is_some() {
        // The RP2040 layout starts the program 256 bytes into flash, after the second-stage bootloader:
        // no page-aligning of the segments, which would waste flash and move them.
        println!("cargo:rustc-link-arg=--nmagic");
    }
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
