#!/usr/bin/env bash
# Full run of the convergence property test (tests/tests/convergence.rs): many more seeds
# than `cargo test` runs (1,000), starting after the seeds CI covers.
# usage: scripts/convergence-full.sh [SEEDS] [FIRST_SEED]   (default 20000 from 1001)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export GRIDSYNC_SEEDS="${1:-20000}"
export GRIDSYNC_SEED_BASE="${2:-1001}"
export GRIDSYNC_CONVERGENCE_SECS="${GRIDSYNC_CONVERGENCE_SECS:-86400}"
cargo test -p gridsync-tests --test convergence -- --nocapture
