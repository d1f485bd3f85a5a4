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

step "faketime for the wrong-clock tests"
if ! command -v faketime >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y faketime >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y faketime >/dev/null; })
  else
    sudo apt-get install -y faketime >/dev/null
  fi
fi
faketime -f +1d true && echo "faketime: $(command -v faketime)"
{ command -v pdftotext >/dev/null && [ -d /usr/share/poppler/cMap/Adobe-GB1 ]; } || { s=$([ "$(id -u)" = 0 ] || echo sudo); $s apt-get install -y poppler-utils poppler-data >/dev/null 2>&1 || { $s apt-get update >/dev/null && $s apt-get install -y poppler-utils poppler-data >/dev/null; }; } # pdftotext (+ Adobe-GB1 data) for the grid chart PDF test

step "Chromium and chromedriver for the desk console's browser test (CJK fonts for its screenshots)"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] \
  || [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
  browser_pkgs="chromium chromium-driver fonts-noto-cjk"
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    (apt-get install -y $browser_pkgs >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y $browser_pkgs >/dev/null; })
  else
    # shellcheck disable=SC2086
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $browser_pkgs >/dev/null
  fi
fi
/usr/bin/chromedriver --version

step "Rust workspace tests (scenario tests on PostgreSQL; conformance suite on both backends)"
mkdir -p target
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-rust.log
step "Scenario tests again on the embedded SQLite backend"
GRIDSYNC_TEST_BACKEND=sqlite cargo test -p gridsync-tests --no-fail-fast 2>&1 | tee -a target/test-rust.log
grep -E '^test result:' target/test-rust.log | awk '
  { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  END { printf "rust: %d passed, %d failed\n", p, f; exit (f > 0) }'

step "The README's run command: the demo walk-through (server with --demo, three phones)"
GRIDSYNC_DEMO_PORT="${GRIDSYNC_DEMO_PORT:-18080}" scripts/demo.sh --exit >target/demo.log 2>&1 || { tail -50 target/demo.log; exit 1; }
grep -q '冲突：1 处' target/demo.log || { echo "demo: the merged record shows no conflict"; tail -40 target/demo.log; exit 1; }
grep -q '退回理由：演示：请补充统一社会信用代码' target/demo.log || { echo "demo: the phone does not show the desk's return"; tail -40 target/demo.log; exit 1; }
echo "demo: 1 passed, 0 failed"

step "Kotlin and Python bindings against a real server"
bindings/run-tests.sh

step "Benchmarks at a small size (they must keep working; figures are in docs/benchmarks.md)"
if [ -x scripts/bench.sh ]; then scripts/bench.sh --small; fi

echo
echo "all tests passed"
