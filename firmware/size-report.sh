#!/usr/bin/env bash
# Size report of a firmware ELF: sections, then code and read-only data split into engine (tinyrnn and the
# crates it uses), model blobs (statics made by include_blob!) and the rest (application, core, runtime).
# Usage: size-report.sh ELF [ELF...]   Needs arm-none-eabi-size and arm-none-eabi-nm (binutils-arm-none-eabi).
set -euo pipefail
for elf in "$@"; do
  echo "--- $elf"
  arm-none-eabi-size -A "$elf" | awk '$1 ~ /^\.(vector_table|text|rodata|data|bss|uninit)$/ { printf "%-14s %8d bytes\n", $1, $2 }'
  arm-none-eabi-nm -S -C "$elf" | awk '
    function hex(s,   i, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
    NF >= 4 {
      size = hex($2); kind = $3; name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
      if (kind ~ /[tT]/) sect = "text"; else if (kind ~ /[rR]/) sect = "rodata"; else if (kind ~ /[bB]/) sect = "bss"; else if (kind ~ /[dD]/) sect = "data"; else next
      if (name ~ /::BLOB/) part = "model"
      else if (name ~ /^(<)?(tinyrnn|postcard|heapless|libm|crc)::/ || name ~ /_ZN7tinyrnn|_ZN8postcard|_ZN4libm/) part = "engine"
      else part = "app"
      total[part, sect] += size
    }
    END {
      printf "%-8s %10s %10s %10s %10s   (symbols only; LTO inlines engine code into callers)\n", "part", ".text", ".rodata", ".data", ".bss"
      n = split("engine model app", parts, " ")
      for (i = 1; i <= n; i++) { p = parts[i]
        printf "%-8s %10d %10d %10d %10d\n", p, total[p, "text"], total[p, "rodata"], total[p, "data"], total[p, "bss"] }
    }'
done
