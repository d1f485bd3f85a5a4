#!/usr/bin/env bash
# Builds the host cdylib and generates the Kotlin, Swift and Python bindings from it in
# uniffi library mode, into bindings/generated/<lang> (git-ignored, never committed).
#
#   bindings/generate.sh [kotlin|swift|python ...]     (default: all three)
#
# Env: CARGO_TARGET_DIR (default: target/), PROFILE=debug|release (default: debug).
# Prints the path of the built library on the last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${PROFILE:-debug}"
LANGS=("$@")
[[ ${#LANGS[@]} -gt 0 ]] || LANGS=(kotlin swift python)

release_flag=()
[[ "$PROFILE" == release ]] && release_flag=(--release)

# One build for the library and the generator: the `cli` feature only adds the binary.
cargo build -p gridsync-bindings --features cli --lib --bin uniffi-bindgen "${release_flag[@]}" >&2

LIB="$TARGET_DIR/$PROFILE/libgridsync.so"
BINDGEN="$TARGET_DIR/$PROFILE/uniffi-bindgen"
[[ -f "$LIB" ]] || { echo "generate: $LIB was not built" >&2; exit 1; }

for lang in "${LANGS[@]}"; do
  out="$ROOT/bindings/generated/$lang"
  rm -rf "$out"
  mkdir -p "$out"
  "$BINDGEN" generate --library "$LIB" --language "$lang" --out-dir "$out" --no-format >&2
  case "$lang" in
    kotlin) test -f "$out/org/gridsync/gridsync.kt" ;;
    swift)  test -f "$out/GridSync.swift" && test -f "$out/gridsyncFFI.h" && test -f "$out/gridsyncFFI.modulemap" ;;
    python) test -f "$out/gridsync.py" ;;
    *) echo "generate: unknown language $lang" >&2; exit 2 ;;
  esac || { echo "generate: $lang bindings missing in $out" >&2; ls -R "$out" >&2; exit 1; }
  echo "generate: $lang -> ${out#"$ROOT"/}" >&2
done
echo "$LIB"
