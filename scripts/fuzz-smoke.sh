#!/usr/bin/env bash
# A short run of every fuzz target (seconds each). Uses the stable toolchain with
# RUSTC_BOOTSTRAP=1, as cargo-fuzz needs nightly flags. Usage: ./scripts/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -O
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${secs}s"
  mkdir -p "corpus/$target"
  # Seed with the committed regression inputs of this target, if any.
  if [ -d "regressions/$target" ]; then cp -n regressions/"$target"/* "corpus/$target"/ 2>/dev/null || true; fi
  cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=4096
done
