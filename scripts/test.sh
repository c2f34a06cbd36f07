#!/usr/bin/env bash
# The project's test command (README; .ci/run runs exactly this): set-up, builds, format and
# lint checks, then every unit and end-to-end test. Runs as root (the end-to-end tests start
# runc containers). Loud on failure: the failing step is named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
current="(none)"
timings=()

banner() { printf '\n==== %s\n' "$*" >&2; }
step() {
    current="$1"
    shift
    banner "$current: $*"
    local t0=$SECONDS
    "$@"
    timings+=("$(printf '%5ss  %s' $((SECONDS - t0)) "$current")")
}
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n' >&2
        printf '#%.0s' {1..72} >&2
        printf '\n#  TEST FAILED at step "%s" (exit %s) after %ss\n' "$current" "$rc" $((SECONDS - started)) >&2
        printf '#%.0s' {1..72} >&2
        printf '\n' >&2
    else
        banner "all steps passed in $((SECONDS - started))s"
        printf '%s\n' "${timings[@]}" >&2
    fi
}
trap on_exit EXIT

[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (runc containers, mounts)" >&2; exit 1; }

# A full build fills several GiB under target/. When the disk fills up mid-link, the linker
# dies of SIGBUS ("ld terminated with signal 7 [Bus error]"), which names nothing: say so first.
disk_space() {
    local need_gib=8 free_kib
    mkdir -p target
    free_kib="$(df --output=avail -k target | tail -n 1 | tr -d ' ')"
    echo "free on the filesystem of target/: $((free_kib / 1024 / 1024)) GiB"
    if [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
        echo "WARNING: under ${need_gib} GiB free; a clean build needs about 7 GiB. If a link fails" \
            "with 'signal 7 [Bus error]', the disk filled up." >&2
    fi
}

step disk       disk_space
step setup      scripts/setup.sh
step fmt        cargo fmt --all -- --check
# One release build serves the binaries and every test: the end-to-end tests time real
# transfers (1 GiB streams) and start the release hops, and CI has 2 cores and 30 minutes.
step release    cargo build --release --workspace --all-targets
step clippy     cargo clippy --workspace --all-targets -- -D warnings
step fuzz       scripts/fuzz.sh
# The whole suite runs in parallel on a loaded machine: the lab tests get a lenient ready-time
# budget there, and the 2 s budget is checked on its own at the end, on the release build.
export EXECLAB_READY_BUDGET_MS="${EXECLAB_READY_BUDGET_MS:-20000}"

# `execlab up` (release) must be ready in under 2 s and `down` must leave nothing.
ready_time() {
    local tmp out secs
    tmp="$(mktemp -d)"
    if ! out="$(target/release/execlab up --detach --dir "$tmp/lab")"; then
        target/release/execlab down --dir "$tmp/lab" || true
        rm -rf "$tmp"
        return 1
    fi
    echo "${out%%$'\n'*}"
    target/release/execlab down --dir "$tmp/lab"
    rm -rf "$tmp"
    [[ "$out" =~ lab\ ready\ in\ ([0-9.]+)\ s ]] || { echo "no ready time printed" >&2; return 1; }
    secs="${BASH_REMATCH[1]}"
    awk -v s="$secs" 'BEGIN { exit !(s < 2.0) }' || { echo "ready in $secs s: over the 2 s budget" >&2; return 1; }
}

step ready-time ready_time

if cargo nextest --version >/dev/null 2>&1; then
    step tests   cargo nextest run --release --workspace --no-fail-fast --failure-output final
else
    step tests   cargo test --release --workspace --no-fail-fast
fi
