#!/usr/bin/env bash
# The test command of outpost: installs what a fresh machine lacks, then runs every check.
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
export RUST_BACKTRACE=1

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "PostgreSQL for the fleet-scale cloud's tests (they start throwaway clusters of their own)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y --no-install-recommends postgresql
    else
        echo "PostgreSQL is missing: run as root, or apt-get install postgresql" >&2
        exit 1
    fi
fi

step "format"
cargo fmt --all --check

step "clippy (all targets: libraries, tests, examples, benches)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "npm packages for the Automerge JS interop test"
(cd cli/tests/js && npm ci --no-audit --no-fund --loglevel=error)

step "tests"
cargo test --workspace --locked

step "bindings: generate Kotlin, Swift, Python; run their tests"
./bindings/test.sh

step "fuzz smoke (every target, a few seconds each)"
./scripts/fuzz-smoke.sh "${OUTPOST_FUZZ_SECONDS:-10}"

step "the demo (debug build): a whole site must converge"
cargo run --locked -q -p outpost-examples --example site

echo
echo "all checks passed"
