//! Sets `cfg(tinyrnn_dsp)` on targets whose every core has the Armv7E-M DSP extension (SMLAD, SXTB16,
//! PKHBT), so the integer kernels can use it. Stable Rust does not expose Arm target features to `cfg`,
//! so the target name decides: `thumbv7em-*` (Cortex-M4/M7). Armv8-M Mainline is left out: its DSP
//! extension is optional.
//!
//! Sets `cfg(tinyrnn_no_long_multiply)` on Armv6-M (`thumbv6m-*`: Cortex-M0/M0+), whose only multiply
//! is 32 × 32 → 32: a 64-bit product there is a call to `__aeabi_lmul`, which the integer kernels
//! avoid by multiplying 16-bit halves.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinyrnn_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinyrnn_no_long_multiply)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em-") {
        println!("cargo::rustc-cfg=tinyrnn_dsp");
    }
    if target.starts_with("thumbv6m-") {
        println!("cargo::rustc-cfg=tinyrnn_no_long_multiply");
    }
}
