#!/usr/bin/env bash
# The main demo: a whole site (cloud peer, two POS, a kiosk, a menu board, a kitchen printer)
# on this machine, over QUIC on loopback. Options: ./scripts/demo.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -p outpost-examples --example site -- "$@"
