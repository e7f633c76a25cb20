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
    } else if env::var_os("CARGO_FEATURE_BENCH").is_some() {
        "memory/mps2-an386-bench.x"
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
    #[cfg(feature = "cmsis-nn")]
    cmsis_nn::build();
}

/// The CMSIS-NN peer of the bench (`--features cmsis-nn`): CMSIS-NN's LSTM step functions and what they
/// call, compiled from the checkout at `CMSIS_NN_DIR` (`peers/fetch-cmsis-nn.sh` makes it), with
/// `peers/cmsis_nn_lstm.c`, which sets the steps up. Compiled with `arm-none-eabi-gcc -O2` for the target
/// core (`cc` passes `-march`/`-mfpu`/`-mfloat-abi` from the Rust target), as an application would.
#[cfg(feature = "cmsis-nn")]
mod cmsis_nn {
    use std::{env, path::PathBuf};

    const SOURCES: &[&str] = &[
        "Source/NNSupportFunctions/arm_nn_lstm_step_s8.c",
        "Source/NNSupportFunctions/arm_nn_lstm_calculate_gate_s8_s16.c",
        "Source/NNSupportFunctions/arm_nn_vec_mat_mul_result_acc_s8_s16.c",
        "Source/NNSupportFunctions/arm_nntables.c",
        "Source/NNSupportFunctions/arm_nn_lstm_step_f32.c",
        "Source/NNSupportFunctions/arm_nntables_flt.c",
        "Source/ActivationFunctions/arm_nn_activation_s16.c",
        "Source/BasicMathFunctions/arm_elementwise_mul_s16.c",
        "Source/BasicMathFunctions/arm_elementwise_mul_acc_s16.c",
        "Source/BasicMathFunctions/arm_elementwise_mul_s16_s8.c",
    ];

    pub fn build() {
        println!("cargo:rerun-if-env-changed=CMSIS_NN_DIR");
        println!("cargo:rerun-if-changed=peers/cmsis_nn_lstm.c");
        let Some(dir) = env::var_os("CMSIS_NN_DIR").map(PathBuf::from) else {
            panic!(
                "the cmsis-nn feature needs CMSIS_NN_DIR: a CMSIS-NN checkout \
                 (firmware/peers/fetch-cmsis-nn.sh makes one and prints its path)"
            );
        };
        let mut build = cc::Build::new();
        build
            .compiler("arm-none-eabi-gcc")
            .archiver("arm-none-eabi-ar")
            .opt_level(2)
            .define("ARM_NN_ENABLE_F32", "1")
            .include(dir.join("Include"))
            .file("peers/cmsis_nn_lstm.c")
            .warnings(false);
        for source in SOURCES {
            let path = dir.join(source);
            assert!(path.is_file(), "CMSIS_NN_DIR has no {}", path.display());
            build.file(path);
        }
        build.compile("cmsis_nn_peer");
    }
}
