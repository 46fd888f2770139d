#!/usr/bin/env bash
# Tests the generated bindings of outpost-ffi from Python, Kotlin (JVM) and Swift.
#
# 1. Installs what is missing (idempotent): JNA (Debian's libjna-java), a JVM Kotlin
#    compiler (npm's kotlin-compiler, into $TOOLS), and a Python venv with pytest and
#    tree-sitter-swift (into $TOOLS). TOOLS defaults to target/ffi-tools.
# 2. Builds the cdylib and generates the Kotlin, Swift and Python bindings (generate.sh).
# 3. Runs the Python test suite and the Python example; byte-compiles README's snippet.
# 4. Compiles the Kotlin bindings, test, example and README snippet in one kotlinc run;
#    runs the test and the example on the JVM.
# 5. Lays out the Android AAR + POM and the Swift package (package.sh) and checks the AAR's
#    structure, classes and R8 rules and the POM on the JVM.
# 6. Swift, without a Swift toolchain: the C header compiles with gcc and matches the
#    library's exports; the bindings, the Swift test, the example and README's snippet
#    parse with tree-sitter-swift, and their calls match the generated API (and the
#    hand-written layer's); the Swift package's manifest and XCFramework layout.
#
# Usage: bindings/test.sh        Exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
tools="${OUTPOST_FFI_TOOLS:-$target/ffi-tools}"
generated="$here/generated"

KOTLIN_COMPILER_VERSION=2.4.20
PY_PACKAGES=(pytest==9.2.0 tree-sitter==0.26.1 tree-sitter-swift==0.7.4)

started=$SECONDS
step_started=$SECONDS
current=""
timings=()
step() {
    if [[ -n "$current" ]]; then timings+=("$(printf '%4ss  %s' $((SECONDS - step_started)) "$current")"); fi
    current="$*"
    step_started=$SECONDS
    printf '\n==> %s\n' "$*"
}
trap 'status=$?; if [[ $status -ne 0 ]]; then echo; echo "bindings/test.sh FAILED in step: $current (exit $status)" >&2; fi' EXIT

step "install tools (JNA, Kotlin compiler, Python venv) into $tools"
mkdir -p "$tools"
missing_apt=()
[[ -f /usr/share/java/jna.jar ]] || missing_apt+=(libjna-java)
command -v gcc >/dev/null || missing_apt+=(gcc)
command -v nm >/dev/null || missing_apt+=(binutils)
# Debian's system Python creates venvs only with python3-venv (ensurepip).
python3 -c 'import ensurepip' 2>/dev/null || missing_apt+=(python3-venv)
command -v java >/dev/null || { echo "error: no java on PATH (JDK 17 expected)" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: no npm on PATH (Node 20 expected)" >&2; exit 1; }
if ((${#missing_apt[@]})); then
    echo "apt-get install ${missing_apt[*]}"
    sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi
jna=/usr/share/java/jna.jar
kotlin_home="$tools/npm/node_modules/kotlin-compiler"
if [[ "$(cat "$kotlin_home/package.json" 2>/dev/null | grep -o "\"version\": \"$KOTLIN_COMPILER_VERSION\"")" == "" ]]; then
    echo "npm install kotlin-compiler@$KOTLIN_COMPILER_VERSION"
    npm install --no-audit --no-fund --loglevel=error --prefix "$tools/npm" "kotlin-compiler@$KOTLIN_COMPILER_VERSION"
fi
kotlinc="$kotlin_home/bin/kotlinc"
coroutines="$kotlin_home/lib/kotlinx-coroutines-core-jvm.jar"
stdlib="$kotlin_home/lib/kotlin-stdlib.jar"
for f in "$kotlinc" "$coroutines" "$stdlib" "$jna"; do
    [[ -f "$f" ]] || { echo "error: $f is missing after installing" >&2; exit 1; }
done
venv="$tools/venv"
python="$venv/bin/python"
if ! "$python" -c 'import pytest, tree_sitter, tree_sitter_swift' 2>/dev/null; then
    echo "python venv with ${PY_PACKAGES[*]}"
    python3 -m venv "$venv"
    "$python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

step "build the cdylib and generate the bindings"
"$here/generate.sh" "$generated"
lib_dir="$generated/lib"
lib="$(ls "$lib_dir"/liboutpost_ffi.* | head -n1)"

step "kotlin-android: generated with android = true (Android's cleaner), the JVM build without"
# Not compiled here: it imports android.os.Build and androidx.annotation (Android SDK only).
grep -q "AndroidSystemCleaner" "$generated/kotlin-android/dev/outpost/outpost.kt" \
    || { echo "error: kotlin-android/ lacks UniFFI's Android cleaner (android = true)" >&2; exit 1; }
if grep -q "AndroidSystemCleaner" "$generated/kotlin/dev/outpost/outpost.kt"; then
    echo "error: the JVM bindings (kotlin/) use the Android cleaner; android = true belongs in uniffi-android.toml" >&2
    exit 1
fi
echo "kotlin-android/dev/outpost/outpost.kt: android = true; kotlin/: the JVM cleaner"

step "extract the Kotlin, Swift and Python snippets of bindings/README.md and README.md"
snippets="$tools/readme-snippets"
rm -rf "$snippets"
mkdir -p "$snippets"
"$python" - "$here/README.md" "$root/README.md" "$snippets" <<'PY'
import pathlib, re, sys
out = pathlib.Path(sys.argv[3])
for src, prefix, package in [(sys.argv[1], "", None), (sys.argv[2], "Root", "outpost.readme.root")]:
    readme = pathlib.Path(src).read_text()
    for lang, name in [("kotlin", "Readme.kt"), ("swift", "Readme.swift"), ("python", "readme.py")]:
        blocks = re.findall(rf"^```{lang}\n(.*?)^```", readme, flags=re.S | re.M)
        if not blocks:
            if lang == "python" and prefix:
                continue
            sys.exit(f"no {lang} snippet in {src}")
        text = "\n".join(blocks)
        if lang == "kotlin" and package:
            # The root README's snippet gets its own package so its names cannot clash.
            text = f"package {package}\n\n" + text
        (out / (prefix + name)).write_text(text)
        print(f"{len(blocks)} {lang} snippet(s) of {src} -> {out / (prefix + name)}")
PY
"$python" -m py_compile "$snippets/readme.py"

step "python: test suite"
OUTPOST_PYTHON_BINDINGS="$generated/python" "$python" -m pytest -q -p no:cacheprovider \
    "$here/tests/python"

step "python: example"
PYTHONPATH="$generated/python" "$python" "$root/examples/python/kiosk.py"

step "kotlin: compile bindings, test and example (one kotlinc run)"
kt_out="$tools/kotlin-build"
rm -rf "$kt_out"
mkdir -p "$kt_out"
"$kotlinc" -nowarn -jvm-target 17 -cp "$jna:$coroutines" -d "$kt_out/outpost-test.jar" \
    "$generated/kotlin/dev/outpost/outpost.kt" "$here/kotlin/dev/outpost/OutpostFlows.kt" \
    "$here/tests/kotlin/OutpostTest.kt" "$here/tests/kotlin/AarCheck.kt" \
    "$root/examples/kotlin/Kiosk.kt" \
    "$snippets/Readme.kt" "$snippets/RootReadme.kt"
classpath="$kt_out/outpost-test.jar:$jna:$coroutines:$stdlib"

step "kotlin: test on the JVM"
java -Djna.library.path="$lib_dir" -cp "$classpath" dev.outpost.test.OutpostTestKt

step "kotlin: example on the JVM"
java -Djna.library.path="$lib_dir" -cp "$classpath" dev.outpost.examples.KioskKt

step "package: the AAR, its POM and the Swift package (host library, labelled), checked on the JVM"
packages="$tools/packages"
"$here/package.sh" "$kt_out/outpost-test.jar" "$generated" "$packages"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
java -cp "$classpath" dev.outpost.test.AarCheckKt \
    "$packages/android/outpost-ffi-$version.aar" "$packages/android/outpost-ffi-$version.pom"

step "swift: header, parse and API checks"
"$python" "$here/tests/swift/check_swift.py" "$generated/swift" "$lib" \
    --layer "$here/swift/OutpostAsync.swift" --package "$packages/swift" \
    "$here/tests/swift/OutpostTests.swift" "$root/examples/swift/KioskApp.swift" \
    "$snippets/Readme.swift" "$snippets/RootReadme.swift"

step "done"
printf '\nbindings/test.sh timings:\n'
printf '  %s\n' "${timings[@]}"
printf '  %4ss  total\n' $((SECONDS - started))
echo "bindings: all checks passed"
