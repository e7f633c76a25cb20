#!/usr/bin/env bash
# Clones CMSIS-NN (Apache-2.0, github.com/ARM-software/CMSIS-NN, or CMSIS_NN_GIT, e.g. a local mirror) at
# the commit the CMSIS-NN peer of firmware/bench.sh was measured with, into DIR (default
# firmware/target/cmsis-nn), and prints DIR.
# Nothing of it is copied into this repository; firmware/build.rs compiles it from there when the
# firmware's `cmsis-nn` feature is on (CMSIS_NN_DIR=DIR).
set -euo pipefail
commit=99f736a63036613032f9b70de36b493bcd7802d4
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/firmware/target/cmsis-nn}
if [ ! -d "$dir/.git" ]; then
  git clone -q "${CMSIS_NN_GIT:-https://github.com/ARM-software/CMSIS-NN.git}" "$dir"
fi
git -C "$dir" -c advice.detachedHead=false checkout -q "$commit"
echo "$dir"
