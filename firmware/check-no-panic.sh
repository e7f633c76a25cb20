#!/usr/bin/env bash
# Lists the panic machinery linked into a firmware ELF and the functions that call it; fails if there is any.
# Usage: check-no-panic.sh ELF
# The `nopanic` binary links only when there is none (its panic handler calls an undefined function); build
# it with `--features panic-report` to get an ELF this script can explain.
# Needs arm-none-eabi-nm and arm-none-eabi-objdump (binutils-arm-none-eabi).
set -euo pipefail
elf=$1
pattern='core::panicking|panic_bounds_check|unwrap_failed|expect_failed|slice_(start_|end_)?index_.*fail|slice_index_order_fail|str_index_overflow_fail|rust_begin_unwind|panic_fmt|panic_const|copy_from_slice.*len_mismatch|split_at.*fail'
symbols=$(arm-none-eabi-nm -C "$elf" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' | grep -E "$pattern" || true)
count=0
if [ -n "$symbols" ]; then
  count=$(printf '%s\n' "$symbols" | wc -l)
  echo "panic symbols in $elf:"
  printf '%s\n' "$symbols" | sort -u | sed 's/^/  /'
  echo "functions that call them:"
  arm-none-eabi-objdump -d -C --no-show-raw-insn "$elf" | awk -v pat="$pattern" '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
    /\tb(l|lx|\.w|)\t/ && $0 ~ pat && fn !~ pat { callee = $0; sub(/.*</, "", callee); sub(/>.*/, "", callee); print "  " fn " -> " callee }' | sort | uniq -c | sort -rn
fi
echo "panic sites: $count"
[ "$count" -eq 0 ]
