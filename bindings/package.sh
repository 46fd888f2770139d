#!/usr/bin/env bash
# Lays out what apps depend on, from what was built on this machine:
#
#   OUT/android/outpost-ffi-VERSION.aar   AndroidManifest.xml, classes.jar, proguard.txt (consumer
#                                         R8 rules for JNA), R.txt, jni/<ABI>/liboutpost_ffi.so
#   OUT/android/outpost-ffi-VERSION.pom   its Maven dependencies (JNA @aar, kotlinx-coroutines-android)
#   OUT/swift/                            a Swift package: Package.swift, Sources/Outpost (generated
#                                         Outpost.swift + OutpostAsync.swift), Tests/OutpostTests,
#                                         OutpostFFI.xcframework (Info.plist, headers, modulemap, library)
#
# HOST BUILD, NOT FOR DEVICES: on Linux, the only native library built here is the host's
# (x86_64 glibc). It is placed where the x86_64 Android ABI's and the macOS slice's libraries go,
# with a HOST-BUILD-NOT-FOR-DEVICES.txt file beside it, so that the layout can be checked here.
# With real builds, pass them instead:
#   OUTPOST_JNI_DIR=DIR    cargo-ndk's output (DIR/<ABI>/liboutpost_ffi.so), e.g. app/src/main/jniLibs
#   OUTPOST_XCFRAMEWORK=DIR an XCFramework made by xcodebuild -create-xcframework (bindings/README.md)
#
# Usage: bindings/package.sh CLASSES_JAR GENERATED_DIR OUT_DIR
#   CLASSES_JAR: a jar with the compiled dev.outpost classes (bindings/test.sh passes the one of
#   its kotlinc run; only dev/outpost/*.class is taken from it).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
classes_jar="$1"
generated="$2"
out="$3"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
lib="$(ls "$generated"/lib/liboutpost_ffi.* | head -n1)"
label="HOST-BUILD-NOT-FOR-DEVICES.txt"
label_text="This $(basename "$lib") was built for the build machine ($(uname -sm)), not for this slot: it stands here so that the package layout can be checked. Build the real one with cargo-ndk (Android) or on macOS (Apple), see bindings/README.md."

rm -rf "$out/android" "$out/swift"
mkdir -p "$out/android" "$out/swift"

# --- Android AAR ---
aar_dir="$(mktemp -d)"
trap 'rm -rf "$aar_dir"' EXIT
cp "$here/android/AndroidManifest.xml" "$aar_dir/"
cp "$here/android/consumer-rules.pro" "$aar_dir/proguard.txt"
: > "$aar_dir/R.txt"
# Only the bindings' own package (dev/outpost/*.class), not tests or examples compiled in the
# same kotlinc run.
python3 - "$classes_jar" "$aar_dir/classes.jar" <<'PY'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as dst:
    for name in src.namelist():
        if re.fullmatch(r"dev/outpost/[^/]+\.class", name):
            dst.writestr(name, src.read(name))
PY
if [[ -n "${OUTPOST_JNI_DIR:-}" ]]; then
    cp -r "$OUTPOST_JNI_DIR" "$aar_dir/jni"
else
    mkdir -p "$aar_dir/jni/x86_64"
    cp "$lib" "$aar_dir/jni/x86_64/liboutpost_ffi.so"
    echo "$label_text" > "$aar_dir/jni/x86_64/$label"
fi
aar="$out/android/outpost-ffi-$version.aar"
(cd "$aar_dir" && python3 -c '
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for f in sorted(pathlib.Path(".").rglob("*")):
        if f.is_file():
            z.write(f, f.as_posix())
' "$aar")
sed "s/@VERSION@/$version/" "$here/android/outpost-ffi.pom" > "$out/android/outpost-ffi-$version.pom"

# --- Swift package wrapping an XCFramework ---
pkg="$out/swift"
cp "$here/swift/Package.swift" "$pkg/"
mkdir -p "$pkg/Sources/Outpost" "$pkg/Tests/OutpostTests"
cp "$generated/swift/Outpost.swift" "$here/swift/OutpostAsync.swift" "$pkg/Sources/Outpost/"
cp "$here/tests/swift/OutpostTests.swift" "$pkg/Tests/OutpostTests/"
xcf="$pkg/OutpostFFI.xcframework"
if [[ -n "${OUTPOST_XCFRAMEWORK:-}" ]]; then
    cp -r "$OUTPOST_XCFRAMEWORK" "$xcf"
else
    slice="macos-x86_64"
    mkdir -p "$xcf/$slice/Headers"
    cp "$generated/swift/OutpostFFI.h" "$xcf/$slice/Headers/"
    cp "$generated/swift/OutpostFFI.modulemap" "$xcf/$slice/Headers/module.modulemap"
    cp "$lib" "$xcf/$slice/liboutpost_ffi.a"
    echo "$label_text" > "$xcf/$slice/$label"
    cat > "$xcf/Info.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>AvailableLibraries</key>
    <array>
        <dict>
            <key>HeadersPath</key>
            <string>Headers</string>
            <key>LibraryIdentifier</key>
            <string>$slice</string>
            <key>LibraryPath</key>
            <string>liboutpost_ffi.a</string>
            <key>SupportedArchitectures</key>
            <array>
                <string>x86_64</string>
            </array>
            <key>SupportedPlatform</key>
            <string>macos</string>
        </dict>
    </array>
    <key>CFBundlePackageType</key>
    <string>XFWK</string>
    <key>XCFrameworkFormatVersion</key>
    <string>1.0</string>
</dict>
</plist>
PLIST
fi
echo "==> packages in $out:"
(cd "$out" && find android swift -maxdepth 3 | sort | sed 's/^/    /')
