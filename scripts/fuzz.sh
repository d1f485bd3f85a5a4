#!/usr/bin/env bash
# Fuzzes every decoder that takes bytes from outside (fuzz/, cargo-fuzz), one target after
# another, each until it has had CPU_SECONDS of CPU time (wall time is longer on a busy
# machine; the fuzzer runs under nice). Inputs that crash a target are copied to
# tests/fuzz-regressions/<target>/, which `cargo test` replays
# (tests/tests/fuzz_regressions.rs): fix the bug and keep the file.
# usage: scripts/fuzz.sh [CPU_SECONDS_PER_TARGET] [TARGET...]   (default 600, every target)
set -uo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sync_request sync_response document push enrol_json grids_csv judge)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
# The one toolchain here is stable; cargo-fuzz needs nightly flags (-Zsanitizer=…).
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target_dir="$(pwd)/target/fuzz"
mkdir -p target
summary=target/fuzz-summary.txt
echo "fuzz run $(date -u +%FT%TZ), ${secs} CPU seconds per target" > "$summary"
nice cargo fuzz build -s none --target-dir "$target_dir" || exit 1
failed=0
TIMEFORMAT='%R %U %S'
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="target/fuzz-$t.log"
  : > "$log"
  cpu=0; wall=0; runs=0; rc=0
  echo "== $t (${secs} CPU s)"
  while awk -v c="$cpu" -v s="$secs" 'BEGIN { exit !(c < s) }'; do
    chunk=$(awk -v c="$cpu" -v s="$secs" 'BEGIN { x = s - c + 5; if (x > 300) x = 300; printf "%d", x }')
    # Build outside the timed part (the sources may change between chunks).
    nice cargo fuzz build -s none --target-dir "$target_dir" "$t" >> "$log" 2>&1 || { rc=1; break; }
    times=$( { time nice cargo fuzz run -s none --target-dir "$target_dir" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$chunk" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >> "$log" 2>&1 ; } 2>&1 )
    rc=$?
    read -r r u s <<< "$times"
    cpu=$(awk -v c="$cpu" -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", c + u + s }')
    wall=$(awk -v w="$wall" -v r="$r" 'BEGIN { printf "%.1f", w + r }')
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    runs=$((runs + ${n:-0}))
    [ $rc -eq 0 ] || break
  done
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  echo "$t: exit $rc, ${cpu} CPU s (${wall} s wall), $runs runs, ${cov:-cov ?}, corpus $corpus" | tee -a "$summary"
  for a in fuzz/artifacts/"$t"/*; do
    [ -f "$a" ] || continue
    mkdir -p "tests/fuzz-regressions/$t"
    cp "$a" "tests/fuzz-regressions/$t/"
    echo "  kept $(basename "$a") in tests/fuzz-regressions/$t/" | tee -a "$summary"
    failed=1
  done
  [ $rc -eq 0 ] || failed=1
done
cat "$summary"
exit $failed
