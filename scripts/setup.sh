#!/usr/bin/env bash
# Installs what execlab needs on Debian 12, as root. Idempotent: installs only what is missing,
# so a second run changes nothing and needs no network.
#   - runc, busybox-static, iptables, conntrack, iproute2, ca-certificates, tmux, inotify-tools (apt)
#   - containerd (apt; only its binaries are used: labs run a private instance, never the service)
#   - kubectl 1.20 (SPDY only) from Debian's kubernetes-client, extracted aside into
#     /opt/execlab/kubectl-1.20/ — /usr/bin/kubectl is never replaced
#   - kubectl (current, WebSocket v5) from pkgs.k8s.io, only when no kubectl is on PATH
#     (skip with EXECLAB_INSTALL_KUBECTL=0)
# The Rust toolchain must already be there (cargo); see the message below if it is not.
set -euo pipefail

KUBECTL_120_DIR=/opt/execlab/kubectl-1.20
KUBECTL_120="$KUBECTL_120_DIR/usr/bin/kubectl"
KUBECTL_STABLE=v1.32
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the lab runs runc containers and mounts)"
command -v apt-get >/dev/null || die "apt-get not found: execlab's set-up targets Debian 12"

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
}

missing=()
for pkg in runc busybox-static iptables conntrack iproute2 ca-certificates tmux inotify-tools containerd; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    say "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "apt packages present"
fi
[ -x /bin/busybox ] || die "/bin/busybox missing after installing busybox-static"

# kubectl 1.20 (SPDY only), beside the system's kubectl.
if [ -x "$KUBECTL_120" ] && "$KUBECTL_120" version --client 2>/dev/null | grep -q 'v1\.20\.'; then
    say "kubectl 1.20 present: $KUBECTL_120"
else
    apt_update_once
    work="$(mktemp -d)"
    chmod 755 "$work"  # apt-get download runs as _apt
    trap 'rm -rf "$work"' EXIT
    say "extracting kubernetes-client (kubectl 1.20) into $KUBECTL_120_DIR"
    (cd "$work" && apt-get download -qq kubernetes-client)
    mkdir -p "$KUBECTL_120_DIR"
    dpkg -x "$work"/kubernetes-client_*.deb "$KUBECTL_120_DIR"
    "$KUBECTL_120" version --client 2>/dev/null | grep -q 'v1\.20\.' || die "$KUBECTL_120 is not kubectl 1.20"
fi

# A current kubectl (WebSocket v5) for the end-to-end tests, if there is none.
if command -v kubectl >/dev/null; then
    say "kubectl present: $(command -v kubectl)"
elif [ "${EXECLAB_INSTALL_KUBECTL:-1}" = 1 ]; then
    apt_update_once
    say "installing kubectl $KUBECTL_STABLE from pkgs.k8s.io"
    for pkg in curl gpg; do
        command -v "$pkg" >/dev/null || apt-get install -y -qq --no-install-recommends "$pkg"
    done
    mkdir -p /etc/apt/keyrings
    curl -fsSL "https://pkgs.k8s.io/core:/stable:/$KUBECTL_STABLE/deb/Release.key" \
        | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
    echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/$KUBECTL_STABLE/deb/ /" \
        > /etc/apt/sources.list.d/kubernetes.list
    apt-get update -qq
    apt-get install -y -qq kubectl
else
    say "no kubectl on PATH; the end-to-end tests will use $KUBECTL_120"
fi

if ! command -v cargo >/dev/null; then
    die "cargo not found. Install Rust (1.85 or newer) with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\""
fi
say "cargo present: $(cargo --version)"
say "done"
