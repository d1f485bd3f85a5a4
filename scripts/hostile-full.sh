#!/usr/bin/env bash
# The full-size property test of the server's judgement (issue 12): 10,000 generated
# hostile pushes against a real server on loopback, each checked against the model of
# what each role may do (tests/tests/hostile_property.rs). `cargo test` runs 300.
# Usage: scripts/hostile-full.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
GRIDSYNC_HOSTILE_CASES="${1:-10000}" GRIDSYNC_HOSTILE_SEED="${2:-1592594996}" \
  GRIDSYNC_TEST_BACKEND="${GRIDSYNC_TEST_BACKEND:-sqlite}" \
  cargo test -p gridsync-tests --test hostile_property -- --nocapture
