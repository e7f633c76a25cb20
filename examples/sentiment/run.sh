#!/usr/bin/env bash
# Imports the Keras sentiment model (vocabulary included) and scores a few texts.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p out
cargo run --release --bin tinyrnn -- import examples/sentiment/sentiment.keras -o out/sentiment.trnn
for text in "What a brilliant, moving film!" "Dull plot and a weak cast." "the soundtrack was lovely but the ending was awful"; do
  printf '%-55s %s\n' "$text" "$(cargo run -q --release --bin tinyrnn -- classify out/sentiment.trnn "$text")"
done
