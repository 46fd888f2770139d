#!/usr/bin/env bash
# Builds the outpost-ffi cdylib and generates its Kotlin, Swift and Python bindings with
# uniffi-bindgen in library mode (the bindgen binary is built from this crate, so its
# version always matches the scaffolding).
#
# Usage: bindings/generate.sh [--release] [OUT_DIR]
#   OUTPOST_FFI_FEATURES: extra cargo features of outpost-ffi, e.g. "discovery" for mDNS.
#   OUT_DIR defaults to bindings/generated. It receives:
#     kotlin/dev/outpost/outpost.kt        (JNA loads liboutpost_ffi from lib/ via -Djna.library.path)
#     kotlin-android/dev/outpost/outpost.kt  the same with UniFFI's android = true (Android SDK only)
#     swift/Outpost.swift, OutpostFFI.h, OutpostFFI.modulemap
#     python/outpost.py                    + liboutpost_ffi.so beside it (ctypes loads it from there)
#     lib/liboutpost_ffi.{so,dylib}        the library the bindings were generated from
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
profile=debug
cargo_profile=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    cargo_profile=(--release)
    shift
fi
out="${1:-$here/generated}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

case "$(uname -s)" in
    Darwin) libfile=liboutpost_ffi.dylib ;;
    *) libfile=liboutpost_ffi.so ;;
esac

echo "==> building outpost-ffi ($profile) and uniffi-bindgen"
# One build for both: the library and the generator share the `bindgen` feature set, so
# the cdylib is compiled once.
features="bindgen${OUTPOST_FFI_FEATURES:+,$OUTPOST_FFI_FEATURES}"
(cd "$root" && cargo build --locked -p outpost-ffi --features "$features" --lib --bin uniffi-bindgen \
    "${cargo_profile[@]}")

lib="$target/$profile/$libfile"
bindgen="$target/$profile/uniffi-bindgen"
[[ -f "$lib" ]] || { echo "error: $lib was not built" >&2; exit 1; }

rm -rf "$out/kotlin" "$out/swift" "$out/python" "$out/lib"
mkdir -p "$out/lib"
cp "$lib" "$out/lib/"

for lang in kotlin swift python; do
    echo "==> generating $lang bindings"
    # --no-format: ktlint / swiftformat / black are not needed to use the output.
    (cd "$root" && "$bindgen" generate --library "$out/lib/$libfile" --language "$lang" \
        --out-dir "$out/$lang" --no-format)
done
cp "$lib" "$out/python/"
echo "==> generating kotlin bindings for Android (uniffi-android.toml: android = true)"
rm -rf "$out/kotlin-android"
(cd "$root" && "$bindgen" generate --library "$out/lib/$libfile" --language kotlin \
    --out-dir "$out/kotlin-android" --no-format --config "$here/uniffi-android.toml")

echo "==> bindings in $out:"
(cd "$out" && find kotlin kotlin-android swift python -type f -name '*.kt' -o -name '*.swift' -o -name '*.h' \
    -o -name '*.modulemap' -o -name '*.py' | sort | sed 's/^/    /')
