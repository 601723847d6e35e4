#!/usr/bin/env bash
# Installs what the tests need, then runs them all: formatting, lints, unit tests,
# the protocol tests against the real binary, and the kernel tests in throwaway
# network namespaces (they need root; CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages:
#   iproute2                      ip netns, the tests' view of the kernel
#   containernetworking-plugins   upstream's Go plugins in /usr/lib/cni, for interop tests
#   iptables                      ipMasq with the iptables backend (ours and Go's)
#   nftables                      ipMasq with the nftables backend, bridge macspoofchk
#   iputils-ping                  ping from a container to its gateway
#   jq                            scripts/exec-plugins.sh
#   dbus-daemon                   a private bus for the D-Bus client firewall asks about firewalld
#   (and shellcheck)              lint of scripts/*.sh
PACKAGES="iproute2 containernetworking-plugins iptables nftables iputils-ping jq dbus-daemon shellcheck"
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $PACKAGES
else
    echo "not root: skipping 'apt-get install $PACKAGES'; kernel tests will report a skip" >&2
fi

cargo fmt --all -- --check
shellcheck scripts/*.sh .ci/run
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last of
# which is often an empty doctest block).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
