#!/usr/bin/env bash
# Imports the min-char-rnn model with its vocabulary and generates text with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p out
cargo run --release --bin tinyrnn -- import examples/chars/chars.npz --vocab examples/chars/vocab.json -o out/chars.trnn
for t in 1.0 0.6; do
  echo "--- temperature $t, seed 1"
  cargo run -q --release --bin tinyrnn -- generate out/chars.trnn --prime "The " --length 300 --temperature "$t" --seed 1
done
