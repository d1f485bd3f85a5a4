#!/usr/bin/env bash
# Builds the iOS Swift package in bindings/ios (recipe; runs on macOS with Xcode, not on
# the Linux CI machines of this repository):
#   - libgridsync.a for iOS devices (aarch64-apple-ios) and the simulator
#     (aarch64-apple-ios-sim + x86_64-apple-ios, merged with lipo);
#   - GridSyncFFI.xcframework holding both, with the generated C headers (gridsyncFFI.h and
#     the core's gridsync_coreFFI.h) in one module map (module gridsyncFFI);
#   - Sources/GridSync/GridSync.swift and GridSyncCore.swift (the core's derived records and
#     enums), generated from the host library, compiled into the one module GridSync.
# The package in bindings/ios/Package.swift then builds with `swift build` / Xcode.
#
# Usage: bindings/scripts/build-xcframework.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PKG="$ROOT/bindings/ios"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cd "$ROOT"

[[ "$(uname)" == Darwin ]] || { echo "build-xcframework.sh needs macOS with Xcode" >&2; exit 1; }
rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-15.0}"
export CARGO_PROFILE_RELEASE_DEBUG=0
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  cargo build -p gridsync-bindings --lib --release --target "$t"
done

# Swift sources and the C header from the host library (library mode reads the dylib).
cargo build -p gridsync-bindings --features cli --lib --bin uniffi-bindgen --release
GEN="$TARGET_DIR/xcframework/generated"
rm -rf "$GEN" && mkdir -p "$GEN"
"$TARGET_DIR/release/uniffi-bindgen" generate --library "$TARGET_DIR/release/libgridsync.dylib" \
  --language swift --out-dir "$GEN"

HEADERS="$TARGET_DIR/xcframework/headers"
rm -rf "$HEADERS" && mkdir -p "$HEADERS"
cp "$GEN/gridsyncFFI.h" "$GEN/gridsync_coreFFI.h" "$HEADERS/"
# The generated module map lists gridsyncFFI.h; the core's header joins the same module.
awk '{ print } /^ *header "gridsyncFFI.h"$/ { print "    header \"gridsync_coreFFI.h\"" }' \
  "$GEN/gridsyncFFI.modulemap" >"$HEADERS/module.modulemap"
grep -q 'gridsync_coreFFI.h' "$HEADERS/module.modulemap"

SIM="$TARGET_DIR/xcframework/ios-sim"
mkdir -p "$SIM"
lipo -create \
  "$TARGET_DIR/aarch64-apple-ios-sim/release/libgridsync.a" \
  "$TARGET_DIR/x86_64-apple-ios/release/libgridsync.a" \
  -output "$SIM/libgridsync.a"

rm -rf "$PKG/GridSyncFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$TARGET_DIR/aarch64-apple-ios/release/libgridsync.a" -headers "$HEADERS" \
  -library "$SIM/libgridsync.a" -headers "$HEADERS" \
  -output "$PKG/GridSyncFFI.xcframework"

mkdir -p "$PKG/Sources/GridSync"
cp "$GEN/GridSync.swift" "$GEN/GridSyncCore.swift" "$PKG/Sources/GridSync/"
echo "built $PKG/GridSyncFFI.xcframework and $PKG/Sources/GridSync/{GridSync,GridSyncCore}.swift"
