#!/usr/bin/env bash
# Installs, idempotently, what the binding tests need beyond Rust and Python:
#   - JNA (uniffi's Kotlin bindings load the library through it): Debian `libjna-java`;
#   - the Kotlin compiler: npm package `kotlin-compiler`, unpacked under the tools dir.
# Prints nothing but progress on stderr; exports nothing. The tools dir defaults to
# `.tools/` at the repository root (git-ignored); override with GRIDSYNC_TOOLS_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${GRIDSYNC_TOOLS_DIR:-$ROOT/.tools}"
KOTLIN_VERSION="${KOTLIN_VERSION:-2.4.20}"
KOTLIN_HOME="$TOOLS/kotlin-compiler-$KOTLIN_VERSION"

if [[ ! -f /usr/share/java/jna.jar ]]; then
  echo "ensure-tools: installing libjna-java" >&2
  if ! apt-get install -y -qq libjna-java >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq libjna-java >/dev/null
  fi
fi

if [[ ! -x "$KOTLIN_HOME/bin/kotlinc" ]]; then
  echo "ensure-tools: fetching kotlin-compiler@$KOTLIN_VERSION (about 90 MB)" >&2
  mkdir -p "$TOOLS"
  tmp="$(mktemp -d "$TOOLS/.fetch.XXXXXX")"
  tgz="$TOOLS/kotlin-compiler-$KOTLIN_VERSION.tgz"
  if [[ ! -s "$tgz" ]]; then
    (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
    mv "$tmp/kotlin-compiler-$KOTLIN_VERSION.tgz" "$tgz"
  fi
  tar -xzf "$tgz" -C "$tmp"
  chmod +x "$tmp/package/bin/"*
  rm -rf "$KOTLIN_HOME"
  mv "$tmp/package" "$KOTLIN_HOME"
  rm -rf "$tmp"
fi

for jar in kotlin-stdlib.jar kotlinx-coroutines-core-jvm.jar; do
  [[ -f "$KOTLIN_HOME/lib/$jar" ]] || { echo "ensure-tools: $jar missing in $KOTLIN_HOME/lib" >&2; exit 1; }
done
echo "$KOTLIN_HOME"
