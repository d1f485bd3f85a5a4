#!/usr/bin/env bash
# Full run of the crash tests (tests/tests/crash.rs): the phone process SIGKILLed at
# 120 random points during edits and syncs, the server process SIGKILLed 30 times while
# three phones push. `cargo test` runs a bounded form (12 and 4 kills).
# usage: scripts/crash-full.sh   (GRIDSYNC_CRASH_POINTS, GRIDSYNC_SERVER_KILLS,
#        GRIDSYNC_CRASH_SEED override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export GRIDSYNC_CRASH_POINTS="${GRIDSYNC_CRASH_POINTS:-120}"
export GRIDSYNC_SERVER_KILLS="${GRIDSYNC_SERVER_KILLS:-30}"
cargo test -p gridsync-tests --test crash -- --nocapture --test-threads 1
