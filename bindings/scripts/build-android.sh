#!/usr/bin/env bash
# Builds the Android library module in bindings/android (recipe; needs the Android NDK,
# which is not on the CI machines of this repository):
#   - libgridsync.so for arm64-v8a, armeabi-v7a and x86_64 with cargo-ndk
#     into bindings/android/src/main/jniLibs/<abi>/;
#   - the Kotlin bindings generated from the host library into
#     bindings/android/src/main/kotlin/ (the same code the JVM tests run);
#   - then, if Gradle is there, the AAR: bindings/android/build/outputs/aar/.
#
# Needs: ANDROID_NDK_HOME (NDK r26 or newer), rustup, cargo-ndk (installed if missing).
# Usage: bindings/scripts/build-android.sh [--no-gradle]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODULE="$ROOT/bindings/android"
ABIS=(arm64-v8a armeabi-v7a x86_64)
TARGETS=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)
API_LEVEL="${ANDROID_API_LEVEL:-24}" # keep in step with minSdk in build.gradle.kts

: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK}"
cd "$ROOT"

rustup target add "${TARGETS[@]}"
command -v cargo-ndk >/dev/null || cargo install cargo-ndk --locked

# Release build without debug info (the workspace keeps line tables in release builds
# for profiling; phones do not need them) and stripped symbols.
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_STRIP=symbols
abi_args=()
for abi in "${ABIS[@]}"; do abi_args+=(-t "$abi"); done
rm -rf "$MODULE/src/main/jniLibs"
cargo ndk "${abi_args[@]}" --platform "$API_LEVEL" -o "$MODULE/src/main/jniLibs" \
  build -p gridsync-bindings --lib --release

# Kotlin sources: generated in library mode from the host build (same metadata).
bindings/generate.sh kotlin >/dev/null
rm -rf "$MODULE/src/main/kotlin"
mkdir -p "$MODULE/src/main/kotlin"
cp -r bindings/generated/kotlin/. "$MODULE/src/main/kotlin/"

for abi in "${ABIS[@]}"; do
  test -f "$MODULE/src/main/jniLibs/$abi/libgridsync.so" || { echo "missing $abi library" >&2; exit 1; }
done
echo "native libraries and Kotlin sources are in $MODULE/src/main"

if [[ "${1:-}" != --no-gradle ]]; then
  if [[ -x "$MODULE/gradlew" ]]; then
    (cd "$MODULE" && ./gradlew assembleRelease)
  elif command -v gradle >/dev/null; then
    (cd "$MODULE" && gradle assembleRelease)
  else
    echo "no Gradle found: open $MODULE in Android Studio or run 'gradle assembleRelease' there"
  fi
fi
