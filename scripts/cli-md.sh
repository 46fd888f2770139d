#!/usr/bin/env bash
# Regenerates cli/CLI.md and cloud/CLI.md from the binaries' own --help output, so the
# documented usage is exactly what `outpost help` and `outpost-cloud --help` print
# (cli/tests/cli.rs and cloud/tests/e2e.rs check that it still is).
# Usage: scripts/cli-md.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p outpost-cli -p outpost-cloud --bins
bin=${CARGO_TARGET_DIR:-target}/debug
# Environment values would otherwise leak into nothing (they are hidden), but keep it clean.
unset OUTPOST_DATA OUTPOST_CERT_DIR OUTPOST_POLICY OUTPOST_CONFIG OUTPOST_LISTEN OUTPOST_HTTP \
  OUTPOST_CA OUTPOST_CERT OUTPOST_KEY OUTPOST_CACHE_MB OUTPOST_IDLE_SECS OUTPOST_MAX_DOCUMENTS \
  OUTPOST_DENY OUTPOST_CA_KEY OUTPOST_HEAD_OFFICE_CERT OUTPOST_HEAD_OFFICE_KEY OUTPOST_RENEW_DAYS OUTPOST_STORE OUTPOST_SIGNATURES OUTPOST_WS_LISTEN OUTPOST_WS_PLAIN

block() { # title, command...
  local title=$1; shift
  printf '### `%s`\n\n```text\n' "$title"
  "$@" --help
  printf '```\n\n'
}

# template, then the usage blocks in place of its `<!-- usage -->` line
render() { # template, out, commands (function name)
  local template=$1 out=$2 blocks=$3
  {
    sed -n '1,/^<!-- usage -->$/p' "$template"
    printf '\n'
    "$blocks"
    sed -n '/^<!-- usage -->$/,$p' "$template" | tail -n +2
  } > "$out"
  echo "wrote $out"
}

cli_blocks() {
  printf '## `outpost`\n\n'
  block "outpost" "$bin/outpost"
  for sub in $(cat cli/docs/commands.txt); do
    # shellcheck disable=SC2086
    block "outpost ${sub//+/ }" "$bin/outpost" ${sub//+/ }
  done
}

cloud_blocks() {
  printf '## `outpost-cloud`\n\n'
  block "outpost-cloud" "$bin/outpost-cloud"
  for sub in backup restore erase migrate token; do
    block "outpost-cloud $sub" "$bin/outpost-cloud" "$sub"
  done
  for sub in issue revoke list; do
    block "outpost-cloud token $sub" "$bin/outpost-cloud" token "$sub"
  done
  block "outpost-cloud web-token" "$bin/outpost-cloud" web-token
  for sub in issue revoke; do
    block "outpost-cloud web-token $sub" "$bin/outpost-cloud" web-token "$sub"
  done
}

render cli/docs/cli-template.md cli/CLI.md cli_blocks
render cloud/docs/cli-template.md cloud/CLI.md cloud_blocks
