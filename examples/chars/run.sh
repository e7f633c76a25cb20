#!/usr/bin/env bash
# Character-level text generation, both ways: import the min-char-rnn model trained in NumPy, and train
# the same kind of model with `tinyrnn train-text`; then generate text with each.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p out
cargo build -q --release --bin tinyrnn
tinyrnn=target/release/tinyrnn
[ -n "${CARGO_TARGET_DIR:-}" ] && tinyrnn="$CARGO_TARGET_DIR/release/tinyrnn"

echo "=== imported: min-char-rnn (NumPy) -> chars.trnn"
"$tinyrnn" import examples/chars/chars.npz --vocab examples/chars/vocab.json -o out/chars.trnn
for t in 1.0 0.6; do
  echo "--- temperature $t, seed 1"
  "$tinyrnn" generate out/chars.trnn --prime "The " --length 300 --temperature "$t" --seed 1
done

echo "=== trained here: tinyrnn train-text docs/FORMAT.md -> chars-trained.trnn"
"$tinyrnn" train-text docs/FORMAT.md -o out/chars-trained.trnn --steps 30000 --sample-every 10000 \
  --seed 1 --prime "The "
for t in 1.0 0.6; do
  echo "--- temperature $t, seed 1"
  "$tinyrnn" generate out/chars-trained.trnn --prime "The " --length 300 --temperature "$t" --seed 1
done
