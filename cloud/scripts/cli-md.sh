#!/usr/bin/env bash
# Regenerates cloud/CLI.md from the binaries' own --help output, so the documented usage is
# exactly what `outpost help` prints (cloud/tests/cli.rs checks that it still is).
# Usage: cloud/scripts/cli-md.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet -p outpost-cloud --bins
bin=target/debug
out=cloud/CLI.md
# Environment values would otherwise leak into nothing (they are hidden), but keep it clean.
unset OUTPOST_DATA OUTPOST_CERT_DIR OUTPOST_LISTEN OUTPOST_HTTP OUTPOST_CA OUTPOST_CERT OUTPOST_KEY \
  OUTPOST_CONFIG OUTPOST_CACHE_MB OUTPOST_IDLE_SECS OUTPOST_DENY

block() { # title, command...
  local title=$1; shift
  printf '### `%s`\n\n```text\n' "$title"
  "$@" --help
  printf '```\n\n'
}

{
  sed -n '1,/^<!-- usage -->$/p' cloud/docs/cli-template.md
  printf '\n## `outpost`\n\n'
  block "outpost" $bin/outpost
  for sub in "cert ca" "cert issue" put get delete incr conflicts export import serve watch status; do
    # shellcheck disable=SC2086
    block "outpost $sub" $bin/outpost $sub
  done
  printf '## `outpost-cloud`\n\n'
  block "outpost-cloud" $bin/outpost-cloud
  sed -n '/^<!-- usage -->$/,$p' cloud/docs/cli-template.md | tail -n +2
} > "$out"
echo "wrote $out"
