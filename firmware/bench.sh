#!/usr/bin/env bash
# Instruction counts per streaming step, exact, with the qemu-insn plugin (../shared/tools/qemu-insn, or
# QEMU_INSN=DIR), on QEMU's mps2-an386 (Cortex-M4F: f32, i8w, i8x16, i8x16-int16) and microbit (Cortex-M0:
# i8x16, i8x16-int16, and f32 and i8w in soft-float); i8x16-int16 is i8x16 with every weight matrix int16.
# Each run ends with the naive Rust f32 LSTM reference of the bench binary. Prints Markdown tables for
# BENCHMARKS.md. Fails if a model's output on the emulated core is not the host engine's, bit for bit.
#   usage: firmware/bench.sh            (from the repository root or firmware/)
#   env:   CARGO_TARGET_DIR (default firmware/target/bench), INSN_PLUGIN_OPTS (e.g. hist=on,histby=sym),
#          CMSIS_NN_DIR: a CMSIS-NN checkout (firmware/peers/fetch-cmsis-nn.sh); when set, each run ends with
#          CMSIS-NN's own LSTM-32 step (arm_nn_lstm_step_s8 in the i8x16 runs, arm_nn_lstm_step_f32 in the
#          f32 run on the M4F), built with arm-none-eabi-gcc -O2, in the same emulator run.
#          BENCH_ONLY: a subset of the runs, e.g. "m4f:f32 m0:i8x16" (default: all of them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
insn=${QEMU_INSN:-$root/../shared/tools/qemu-insn}
work=${TMPDIR:-/tmp}/tinyrnn-bench
target_dir=${CARGO_TARGET_DIR:-$root/firmware/target/bench}
mkdir -p "$work"
sh "$insn/build.sh" "$work/plugin" >/dev/null

# run TRIPLE FEATURES MODE: one bench build and run; prints the table rows.
run() {
  local triple=$1 features=$2 mode=$3
  # The peer exists for i8x16 runs and the M4F's f32 run (the soft-float M0 run has none, and its f32
  # models leave no flash for CMSIS-NN's code on the micro:bit).
  if [ -n "${CMSIS_NN_DIR:-}" ] && { [ "$mode" = i8x16 ] || [ "$triple-$mode" = thumbv7em-none-eabihf-f32 ]; }; then
    features="$features,cmsis-nn"
  fi
  # The soft-float M0 builds (f32, i8w) hold only the h16 and h32 models in the micro:bit's flash.
  local max_hidden=64
  if [ "$triple" = thumbv6m-none-eabi ] && [ "${mode#i8x16}" = "$mode" ]; then max_hidden=32; fi
  (cd "$root" && cargo run -q --release -p tinyrnn-conformance --example bench_models -- "$work/$mode" "$mode" "$max_hidden" >/dev/null)
  (
    cd "$root/firmware"
    export TINYRNN_BENCH_MODELS="$work/$mode" CARGO_TARGET_DIR="$target_dir"
    cargo build -q --release --bin bench --features "$features" --target "$triple"
    QEMU_INSN_DIR="$work/plugin" sh "$insn/run.sh" "$target_dir/$triple/release/bench" >"$work/$triple-$mode.txt" 2>&1
  )
  # The firmware's outputs must equal the host engine's bit for bit (check.txt, written by bench_models).
  if ! diff <(grep '^check ' "$work/$triple-$mode.txt" | sed 's/^check //') "$work/$mode/check.txt" >&2; then
    echo "bench: $triple $mode outputs differ from the host's (above: < firmware, > host)" >&2
    exit 1
  fi
  awk '
  /^group / { label[$2] = $3 " " $4 " " $5; macs[$2] = $6; next }
  /^insnregion: group / {
    # The plugin numbers the regions before the first bench_next as group -1.
    id = $3; sub(":", "", id); id = id + 1
    for (i = 1; i <= NF; i++) if ($i ~ /^mean=/) { split($i, kv, "="); mean[id] = kv[2] }
    if (id + 1 > g) g = id + 1
  }
  END {
    for (k = 0; k < g; k++) printf "| %s | %d | %.0f | %.2f |\n", label[k], macs[k], mean[k], mean[k] / macs[k]
  }' "$work/$triple-$mode.txt"
}

header() {
  echo
  echo "$1"
  echo
  echo "| model (input 3) | MACs per step | instructions per step | instructions per MAC |"
  echo "|---|---:|---:|---:|"
}

# wanted CORE MODE: whether BENCH_ONLY (when set) lists CORE:MODE.
wanted() {
  [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1:$2 "* ]]
}

header "Cortex-M4F (mps2-an386, thumbv7em-none-eabihf)"
for mode in f32 i8w i8x16 i8x16-int16; do
  if wanted m4f "$mode"; then run thumbv7em-none-eabihf bench "$mode"; fi
done
header "Cortex-M0 (microbit, thumbv6m-none-eabi)"
for mode in i8x16 i8x16-int16 f32 i8w; do
  if wanted m0 "$mode"; then run thumbv6m-none-eabi bench,microbit "$mode"; fi
done
