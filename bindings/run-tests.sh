#!/usr/bin/env bash
# Builds the bindings and runs every binding test on this machine:
#   1. installs (idempotently) JNA and the Kotlin compiler (bindings/scripts/ensure-tools.sh);
#   2. builds gridsync-server and the host cdylib, generates Kotlin, Swift and Python;
#   3. Python tests (bindings/tests/python) against the library and a loopback server;
#   4. Kotlin tests (bindings/tests/kotlin) compiled with kotlinc, run on the JVM;
#   5. examples/kotlin/LiaisonDay.kt against its own fresh server;
#   6. examples/kotlin/SyncWorker.kt: background sync through the async API while its own
#      server is down (retries with growing backoff), then up (success);
#   7. checks the Swift bindings were generated (no Swift compiler here).
# Ends with `bindings: N passed, M failed` and exits non-zero on any failure.
#
# Env: CARGO_TARGET_DIR (default target/), GRIDSYNC_TOOLS_DIR (default .tools/),
#      GRIDSYNC_SKIP_SERVER=1 to skip the scenarios that need the server.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export RUST_BACKTRACE=0 # the panic tests panic on purpose; keep their output short
# The servers the Python and Kotlin harnesses start inherit this: each suite enrols more
# than a production server's 10 phones a minute from 127.0.0.1 (the async tests need fresh
# devices for whole bootstraps), and no test is about that limit.
export GRIDSYNC_ENROL_PER_ADDRESS="${GRIDSYNC_ENROL_PER_ADDRESS:-60}"
WORK="$CARGO_TARGET_DIR/bindings-tests"
mkdir -p "$WORK"

passed=0
failed=0
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

now() { date +%s.%N; }
stage() { printf '\n== %s\n' "$*"; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
die() { echo "run-tests: $*" >&2; echo "bindings: $passed passed, $((failed + 1)) failed"; exit 1; }
# Adds the counts of a runner's `LANG: N passed, M failed` line; a missing line is a failure.
tally() {
  local line
  line="$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -n 1)"
  if [[ -z "$line" ]]; then
    echo "run-tests: $1 runner printed no summary" >&2
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(sed -E 's/^[a-z]+: ([0-9]+) passed.*/\1/' <<<"$line")))
  failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
}

t_all="$(now)"

stage "tools"
t="$(now)"
KOTLIN_HOME="$(bindings/scripts/ensure-tools.sh | tail -n 1)" || die "could not install JNA or kotlinc"
JNA=/usr/share/java/jna.jar
KLIB="$KOTLIN_HOME/lib"
echo "kotlinc: $KOTLIN_HOME ($(took "$t"))"

stage "build"
t="$(now)"
SERVER=""
if [[ "${GRIDSYNC_SKIP_SERVER:-0}" != 1 ]]; then
  cargo build -p gridsync-server || die "gridsync-server does not build"
  SERVER="$CARGO_TARGET_DIR/debug/gridsync-server"
  export GRIDSYNC_SERVER="$SERVER"
fi
LIB="$(bindings/generate.sh kotlin swift python | tail -n 1)" || die "generating the bindings failed"
LIBDIR="$(dirname "$LIB")"
ln -sf "$LIB" bindings/generated/python/libgridsync.so
echo "library: $LIB ($(took "$t"))"

stage "python"
t="$(now)"
python3 bindings/tests/python/run.py 2>&1 | tee "$WORK/python.log"
tally python "$WORK/python.log"
echo "python stage: $(took "$t")"

stage "kotlin: compile"
t="$(now)"
JAR="$WORK/gridsync-kotlin.jar"
SOURCES=(bindings/generated/kotlin/org/gridsync/*.kt bindings/generated/kotlin/org/gridsync/core/*.kt
  bindings/tests/kotlin/*.kt examples/kotlin/*.kt)
STAMP="$(cat "${SOURCES[@]}" | sha256sum | cut -c1-16)"
if [[ -f "$JAR" && "$(cat "$JAR.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "sources unchanged: reusing $JAR"
else
  rm -f "$JAR" "$JAR.stamp"
  if "$KOTLIN_HOME/bin/kotlinc" -nowarn -cp "$JNA:$KLIB/kotlinx-coroutines-core-jvm.jar" \
      "${SOURCES[@]}" -d "$JAR"; then
    echo "$STAMP" >"$JAR.stamp"
  else
    die "kotlinc failed"
  fi
fi
echo "compile: $(took "$t")"
# kotlinx-coroutines: the generated suspend functions (async API) and the tests use it.
CP="$JAR:$KLIB/kotlin-stdlib.jar:$KLIB/kotlinx-coroutines-core-jvm.jar:$JNA"

stage "kotlin: tests"
t="$(now)"
java -Djna.library.path="$LIBDIR" -cp "$CP" gridsync.tests.MainKt 2>&1 | tee "$WORK/kotlin.log"
tally kotlin "$WORK/kotlin.log"
echo "kotlin stage: $(took "$t")"

stage "kotlin: examples/kotlin/LiaisonDay.kt"
t="$(now)"
if [[ -z "$SERVER" ]]; then
  echo "SKIP LiaisonDay (no server)"
else
  data="$(mktemp -d "$WORK/liaison-day.XXXXXX")"
  "$SERVER" serve --data "$data/server" --listen 127.0.0.1:0 --demo >"$data/stdout" 2>"$data/stderr" &
  pids+=($!)
  url=""
  for _ in $(seq 1 600); do
    url="$(sed -nE 's/^listening on (http:[^ ]+)$/\1/p' "$data/stdout")"
    [[ -n "$url" ]] && break
    sleep 0.1
  done
  code="$(sed -nE 's/^enrolment code for liaison [^ ]+ \(.*\): ([^ ]+)$/\1/p' "$data/stdout" | head -n 1)"
  if [[ -n "$url" && -n "$code" ]] &&
    java -Djna.library.path="$LIBDIR" -cp "$CP" gridsync.examples.LiaisonDayKt "$url" "$code" "$data/phone.db" \
      2>&1 | tee "$WORK/liaison-day.log" && grep -q '^liaison day done$' "$WORK/liaison-day.log"; then
    passed=$((passed + 1))
    echo "PASS LiaisonDay ($(took "$t"))"
  else
    failed=$((failed + 1))
    echo "FAIL LiaisonDay (url='$url' code='$code'); server log:"
    tail -n 20 "$data/stderr"
  fi
  kill "${pids[-1]}" 2>/dev/null
  wait "${pids[-1]}" 2>/dev/null
fi

stage "kotlin: examples/kotlin/SyncWorker.kt"
t="$(now)"
if [[ -z "$SERVER" ]]; then
  echo "SKIP SyncWorker (no server)"
else
  # The example starts, stops and restarts its own server (the outage it rides out).
  data="$(mktemp -d "$WORK/sync-worker.XXXXXX")"
  if timeout 600 java -Djna.library.path="$LIBDIR" -cp "$CP" gridsync.examples.SyncWorkerKt "$SERVER" "$data" \
    2>&1 | tee "$WORK/sync-worker.log" && grep -q '^sync worker done$' "$WORK/sync-worker.log"; then
    passed=$((passed + 1))
    echo "PASS SyncWorker ($(took "$t"))"
  else
    failed=$((failed + 1))
    echo "FAIL SyncWorker; server log:"
    tail -n 20 "$data/server.log" 2>/dev/null
  fi
fi

stage "swift: generated (compiled where Swift exists)"
swift_ok=1
for f in GridSync.swift GridSyncCore.swift gridsyncFFI.h gridsync_coreFFI.h gridsyncFFI.modulemap; do
  [[ -s "bindings/generated/swift/$f" ]] || swift_ok=0
done
if [[ $swift_ok == 1 ]] && grep -q 'class GridStore: GridStoreProtocol' bindings/generated/swift/GridSync.swift &&
  grep -q 'public protocol SyncListener' bindings/generated/swift/GridSync.swift; then
  passed=$((passed + 1))
  echo "PASS swift bindings generated ($(wc -l <bindings/generated/swift/GridSync.swift) lines)"
else
  failed=$((failed + 1))
  echo "FAIL swift bindings missing"
fi

echo
echo "binding tests took $(took "$t_all")"
echo "bindings: $passed passed, $failed failed"
[[ $failed == 0 ]]
