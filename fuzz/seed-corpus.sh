#!/usr/bin/env bash
# Rebuilds every fuzz target's seed corpus from the project's own files:
#   engine targets: blobs, inputs and saved states written by the fuzz_corpus example;
#   importers: the smallest committed fixtures of each format.
# Usage (from anywhere): fuzz/seed-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p tinyrnn-conformance --example fuzz_corpus -- fuzz/corpus
seed() { # target, then the files to copy
  local target=$1; shift
  rm -rf "fuzz/corpus/$target"; mkdir -p "fuzz/corpus/$target"
  cp "$@" "fuzz/corpus/$target/"
}
smallest() { # find pattern, count
  find tests/fixtures examples -name "$1" -size -64k -printf '%s %p\n' | sort -n | head -n "$2" | cut -d' ' -f2
}
seed import_keras $(smallest '*.keras' 12)
seed import_h5 $(smallest '*.h5' 12)
seed import_onnx $(smallest '*.onnx' 16)
seed parse_npy $(smallest '*.npy' 12)
for dir in fuzz/corpus/*/; do echo "$dir: $(ls "$dir" | wc -l) seeds"; done
