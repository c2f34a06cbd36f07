#!/usr/bin/env bash
# Runs every cargo-fuzz target of the protocol crate (SPDY frame parser, SPDY header-block
# decoder, WebSocket channel decoder) for a bounded time each: FUZZ_SECONDS, default 20.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/../crates/k8s-stream/fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
secs="${FUZZ_SECONDS:-20}"
for target in spdy_frame spdy_header_block ws_channel; do
    echo "fuzz: $target for ${secs}s" >&2
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
