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

step "iproute2 for the DNS failover test (it makes a network namespace of its own, as root)"
if ! command -v ip >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y --no-install-recommends iproute2
    else
        echo "iproute2 (ip) is missing: run as root, or apt-get install iproute2" >&2
        exit 1
    fi
fi

step "fuse3 for the power-cut tests (a FUSE file system served by the test, as root)"
if ! command -v fusermount3 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y --no-install-recommends fuse3
    else
        echo "fuse3 (fusermount3) is missing: run as root, or apt-get install fuse3" >&2
        exit 1
    fi
fi

step "format"
cargo fmt --all --check

step "clippy (all targets: libraries, tests, examples, benches)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "npm packages for the Automerge JS interop test"
(cd cli/tests/js && npm ci --no-audit --no-fund --loglevel=error)

step "npm packages for the automerge-repo WebSocket interop test (the reference client) and the kitchen display's browser test (playwright-core)"
(cd ws/tests/js && npm ci --no-audit --no-fund --loglevel=error)

step "the kitchen display's bundle (ws/web/dist, embedded in outpost) matches ws/web/src"
(cd ws/web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- ws/web/dist; then
  echo "ws/web/dist is stale: run 'npm ci && npm run build' in ws/web and commit dist/" >&2
  exit 1
fi

step "Debian's chromium and schemathesis (pinned, in a venv under the target dir) for the cloud's head-office tests"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y --no-install-recommends chromium
fi
# Debian's system Python creates venvs only with python3-venv (ensurepip).
python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y --no-install-recommends python3-venv; }
VENV="${CARGO_TARGET_DIR:-target}/venv-schemathesis"
if ! cmp -s cloud/tests/schemathesis-requirements.txt "$VENV/requirements.txt" || ! "$VENV/bin/st" --version >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r cloud/tests/schemathesis-requirements.txt
  cp cloud/tests/schemathesis-requirements.txt "$VENV/requirements.txt"
fi

step "npm packages for the dashboard's browser test (playwright-core, no browser download)"
(cd cloud/tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "tests"
# Build every test (and the binaries the cli, cloud and power-cut tests run) once, with the
# workspace's features, then hand the tests those binaries: built by a test with `-p`, they
# would be a second feature set and rebuild half the dependency tree.
cargo test --workspace --locked --no-run
OUTPOST_BIN_DIR="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
export OUTPOST_BIN_DIR
cargo test --workspace --locked

step "the storage suites again on sled (the default engine is redb; the power-cut suites run both)"
# `--workspace` with `--test`: the features of the run above, so nothing is rebuilt (`-p` would
# be another feature set); `backup` also names the CLI's backup test, which runs on sled too.
OUTPOST_TEST_ENGINE=sled cargo test --locked --workspace --test durability --test backup \
  --test store_api --test tickets --test retention --test feed --test signed_changes \
  --test permissions

step "bindings: generate Kotlin, Swift, Python; run their tests"
./bindings/test.sh

step "fuzz smoke (every target, a few seconds each)"
./scripts/fuzz-smoke.sh "${OUTPOST_FUZZ_SECONDS:-10}"

step "the demo (debug build, as the tests built it): a whole site must converge"
"$OUTPOST_BIN_DIR/examples/site"

echo
echo "all checks passed"
