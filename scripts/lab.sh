#!/usr/bin/env bash
# From a fresh Debian 12 machine (as root) to a running lab: set-up, release build, then
# `execlab up --dir ./lab` in the foreground (Ctrl-C stops it and removes what it made).
# Extra arguments go to `execlab up`: ./scripts/lab.sh --redirect-container-streaming
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace
exec target/release/execlab up --dir "${EXECLAB_DIR:-./lab}" "$@"
