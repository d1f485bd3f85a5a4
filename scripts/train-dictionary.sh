#!/usr/bin/env bash
# Trains protocol v4's zstd dictionary (core/src/sync/dict/records-v1.zdict, docs/protocol.md
# "Body encoding") on the records of a generated township, as pull pages carry them.
#
#   scripts/train-dictionary.sh            writes core/src/sync/dict/records-v1.zdict
#   scripts/train-dictionary.sh OUT        writes OUT (to compare with the committed one)
#
# Reproducible: the same seed and size give the same bytes (the dataset generator and
# zstd's trainer are deterministic). The seed is 20, not the benchmark's 7, so that the
# benchmark measures records the dictionary has not seen. A changed dictionary is a new
# protocol version: never overwrite records-v1 once a build that ships it is in the field.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target="${CARGO_TARGET_DIR:-target}"
out="${1:-core/src/sync/dict/records-v1.zdict}"
seed="${SEED:-20}"
size="${SIZE:-65536}"
cargo build --release -p gridsync-bench --bin gridsync-bench
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$target/release/gridsync-bench" train-dictionary --seed "$seed" --size "$size" \
  --out "$out" --work "$work"
sha256sum "$out"
