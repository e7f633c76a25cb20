//! Sets `cfg(tinyrnn_dsp)` on targets whose every core has the Armv7E-M DSP extension (SMLAD, SXTB16,
//! PKHBT), so the integer kernels can use it. Stable Rust does not expose Arm target features to `cfg`,
//! so the target name decides: `thumbv7em-*` (Cortex-M4/M7). Armv8-M Mainline is left out: its DSP
//! extension is optional.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinyrnn_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em-") {
        println!("cargo::rustc-cfg=tinyrnn_dsp");
    }
}
