#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, integration, scenario tests against a real
# server on loopback, both storage backends), the generated Kotlin and Python bindings,
# and the benchmarks at a small size. Installs and starts what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR=never

step() { printf '\n==== %s ====\n' "$*"; }

step "PostgreSQL for the backend conformance and scenario tests"
GRIDSYNC_TEST_POSTGRES="$(scripts/postgres.sh start)"
export GRIDSYNC_TEST_POSTGRES
echo "using $GRIDSYNC_TEST_POSTGRES"

step "Rust workspace tests (SQLite and PostgreSQL backends)"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-rust.log
grep -E '^test result:' target/test-rust.log | awk '
  { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  END { printf "rust: %d passed, %d failed\n", p, f }'

step "Kotlin and Python bindings against a real server"
bindings/run-tests.sh

step "Benchmarks at a small size (they must keep working; figures are in docs/benchmarks.md)"
if [ -x scripts/bench.sh ]; then scripts/bench.sh --small; fi

echo
echo "all tests passed"
