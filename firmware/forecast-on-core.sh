#!/usr/bin/env bash
# A trained forecaster on emulated cores, as a user runs it (Forecaster::push, raw samples in, raw
# forecasts out): the `forecast` binary on QEMU's microbit (Cortex-M0, 16 KiB RAM), on mps2-an385 built
# for the M0 (thumbv6m code on a Cortex-M3 without FPU, 4 MiB RAM: the same instructions an M0 would
# run, for models the micro:bit cannot hold) and on mps2-an386 (Cortex-M4F), each forecast compared
# with the host engine's bit for bit, and the instructions of one forecast counted exactly with the
# qemu-insn plugin (../shared/tools/qemu-insn, or QEMU_INSN=DIR).
#   usage: firmware/forecast-on-core.sh DATA.csv MODEL.trnn [MODEL.trnn …]   (from anywhere)
#   env:   END (default: the CSV's last row + 1): the row after the last sample;
#          FORECASTS (default 4): forecasts per run; CORES (default "m0 m4f"; also m0-an385);
#          CARGO_TARGET_DIR (default firmware/target/forecast);
#          NO_COUNT=1: plain QEMU, no instruction counts (no qemu-insn needed; what CI runs).
# Prints one Markdown row per model and core. Fails if a core's forecasts are not the host's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
insn=${QEMU_INSN:-$root/../shared/tools/qemu-insn}
work=${TMPDIR:-/tmp}/tinyrnn-forecast
target_dir=${CARGO_TARGET_DIR:-$root/firmware/target/forecast}
[ $# -ge 2 ] || { sed -n 2,9p "$0" >&2; exit 2; }
csv=$(realpath "$1")
shift
mkdir -p "$work"
[ -n "${NO_COUNT:-}" ] || sh "$insn/build.sh" "$work/plugin" >/dev/null
end=()
[ -n "${END:-}" ] && end=(--end "$END")

echo "| model | core | flash (blob) | engine RAM | stack of one push | instructions per forecast |"
echo "|---|---|---:|---:|---:|---:|"
for model in "$@"; do
  name=$(basename "$model" .trnn)
  dir="$work/$name"
  (cd "$root" && cargo run -q --release -p tinyrnn-converter --example forecast_reference -- \
    "$(realpath "$model")" "$csv" "$dir" --forecasts "${FORECASTS:-4}" "${end[@]}" >&2)
  for core in ${CORES:-m0 m4f}; do
    case $core in
      m0) triple=thumbv6m-none-eabi features=forecast,microbit machine=microbit ;;
      m0-an385) triple=thumbv6m-none-eabi features=forecast machine=mps2-an385 ;;
      m4f) triple=thumbv7em-none-eabihf features=forecast machine=mps2-an386 ;;
      *) echo "unknown core $core (m0, m0-an385, m4f)" >&2; exit 2 ;;
    esac
    (
      cd "$root/firmware"
      export TINYRNN_FORECAST_DIR="$dir" CARGO_TARGET_DIR="$target_dir"
      cargo build -q --release --bin forecast --features "$features" --target "$triple"
      elf="$target_dir/$triple/release/forecast"
      if [ -n "${NO_COUNT:-}" ]; then
        timeout 600 qemu-system-arm -machine "$machine" -nographic -monitor none -serial none \
          -semihosting-config enable=on,target=native -kernel "$elf" >"$dir/$core.txt" 2>&1
      else
        QEMU_INSN_DIR="$work/plugin" QEMU_MACHINE=$machine timeout 600 sh "$insn/run.sh" "$elf" \
          >"$dir/$core.txt" 2>&1
      fi
    ) || {
      if grep -q 'needs more memory than WORDS' "$dir/$core.txt"; then
        needs=$(sed -n 's/^engine memory: \([0-9]*\) words needed, \([0-9]*\) built in/\1 words, over the \2 built in/p' "$dir/$core.txt")
        echo "| $name | $core | $(stat -c %s "$dir/model.trnn") B | does not fit: $needs | | |"
        continue
      fi
      cat "$dir/$core.txt" >&2
      echo "forecast: $name on $core failed" >&2
      exit 1
    }
    if ! diff <(grep '^forecast ' "$dir/$core.txt") "$dir/expected.txt" >/dev/null; then
      echo "forecast: $name on $core: forecasts differ from the host's" >&2
      diff <(grep '^forecast ' "$dir/$core.txt") "$dir/expected.txt" | head -4 >&2
      exit 1
    fi
    awk -v name="$name" -v core="$core" -v flash="$(stat -c %s "$dir/model.trnn")" '
      /^engine memory: / { ram = $5; sub(/\(/, "", ram) }
      /stack of one push at most/ { stack = $(NF - 1) }
      /^insnregion: group 0:/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^mean=/) { split($i, kv, "="); mean = kv[2] }
      }
      END {
        count = mean == "" ? "(not counted)" : sprintf("%.0f", mean)
        printf "| %s | %s | %d B | %d B | %d B | %s |\n", name, core, flash, ram, stack, count
      }
    ' "$dir/$core.txt"
  done
done
