#!/usr/bin/env bash
# Instruction counts per streaming step on QEMU's mps2-an386 (Cortex-M4F), exact, with the qemu-insn
# plugin (../shared/tools/qemu-insn, or QEMU_INSN=DIR). Prints a Markdown table for BENCHMARKS.md.
#   usage: firmware/bench.sh            (from the repository root or firmware/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
insn=${QEMU_INSN:-$root/../shared/tools/qemu-insn}
work=${TMPDIR:-/tmp}/tinyrnn-bench
mkdir -p "$work"
sh "$insn/build.sh" "$work/plugin" >/dev/null
echo "| model (input 3) | MACs per step | instructions per step | instructions per MAC |"
echo "|---|---:|---:|---:|"
for mode in f32 i8w; do
  (cd "$root" && cargo run -q --release -p tinyrnn-conformance --example bench_models -- "$work/$mode" "$mode" >/dev/null)
  (
    cd "$root/firmware"
    export TINYRNN_BENCH_MODELS="$work/$mode" CARGO_TARGET_DIR=target/bench
    cargo build -q --release --bin bench --features bench
    QEMU_INSN_DIR="$work/plugin" sh "$insn/run.sh" target/bench/thumbv7em-none-eabihf/release/bench >"$work/$mode.txt" 2>&1
  )
  awk '
  /^group / { label[$2] = $3 " " $4 " " $5; macs[$2] = $6; next }
  /^insnregion: group / {
    # The plugin numbers the regions before the first bench_next as group -1.
    id = $3; sub(":", "", id); id = id + 1
    for (i = 1; i <= NF; i++) if ($i ~ /^mean=/) { split($i, kv, "="); mean[id] = kv[2] }
    if (id + 1 > g) g = id + 1
  }
  END {
    for (k = 0; k < g; k++) printf "| %s | %d | %.0f | %.1f |\n", label[k], macs[k], mean[k], mean[k] / macs[k]
  }' "$work/$mode.txt"
done
