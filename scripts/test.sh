#!/usr/bin/env bash
# Installs what the tests need, then runs them all: formatting, lints, unit tests,
# the protocol tests against the real binary, and the kernel tests in throwaway
# network namespaces (they need root; CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: iproute2 (ip netns, the tests' view of the kernel),
# containernetworking-plugins (upstream's Go plugins in /usr/lib/cni, for interop tests).
PACKAGES="iproute2 containernetworking-plugins"
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $PACKAGES
else
    echo "not root: skipping 'apt-get install $PACKAGES'; kernel tests will report a skip" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
