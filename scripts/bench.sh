#!/usr/bin/env bash
# Sync benchmarks side by side (docs/benchmarks.md): grid sync against its floor (the same
# records as plain JSON in plain SQLite) and against Automerge's per-document sync, over
# real HTTP on loopback, plus the local write path (bench-local) and server ingest (the
# ingest example). Prints a Markdown table of medians with ratios against baselines
# measured in the same run.
#
#   scripts/bench.sh            full size: township, banner, 3 runs (release build)
#   scripts/bench.sh --small    CI size: reduced township and banner (debug build)
#
# Other arguments go to `gridsync-bench run`: --runs N, --out FILE, --work DIR, --keep,
# --no-banner, --no-external.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target="${CARGO_TARGET_DIR:-target}"
profile=release
build=(--release)
for a in "$@"; do
  if [ "$a" = "--small" ]; then
    profile=debug
    build=()
  fi
done
cargo build ${build[@]+"${build[@]}"} -p gridsync-bench -p gridsync-examples \
  --bin gridsync-bench --bin bench-local
if [ -f sync-server/examples/ingest.rs ]; then
  cargo build ${build[@]+"${build[@]}"} -p gridsync-server --example ingest ||
    echo "bench.sh: the ingest example did not build; W5 is left out" >&2
fi
# Memory and time under attack (docs/benchmarks.md, "Under attack"): the server as a child
# process, resource attacks while /healthz is polled; fails the run if the peak reaches 200 MB
# or a /healthz answer takes 1 s.
cargo build ${build[@]+"${build[@]}"} -p gridsync-server --bin gridsync-server --example attack
attack_args=(--server "$target/$profile/gridsync-server")
if [ "$profile" = debug ]; then attack_args+=(--small); fi
"$target/$profile/examples/attack" "${attack_args[@]}"
exec "$target/$profile/gridsync-bench" run "$@"
