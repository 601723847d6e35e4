#!/usr/bin/env bash
# The CNI seed walkthrough with rcni's plugins and cnitool, in throwaway network
# namespaces only: a "host" netns stands in for the node (so this machine's own
# network is never changed) and a "container" netns is attached from inside it,
# exactly as a runtime would. Everything is removed at the end, also on failure or
# Ctrl-C.
#
# The network is the seed's `mynet` (bridge cni0, isGateway, ipMasq, host-local
# 10.22.0.0/16 with a default route) plus loopback. Set NETCONFPATH to use your own
# config files instead. It needs only iproute2 and Rust: without the iptables tool,
# the masquerade is written with nftables in-process (no `nft` binary either).
# RCNI_BIN=DIR uses an rcni and cnitool already built in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "run as root: network namespaces need it" >&2; exit 1; }
command -v ip >/dev/null || { echo "needs iproute2 (apt-get install iproute2)" >&2; exit 1; }

if [ -n "${RCNI_BIN:-}" ]; then
    bin=$RCNI_BIN
else
    cargo build --release --quiet --bin rcni --bin cnitool
    bin=./target/release
fi
work=$(mktemp -d)
host="rcni-demo-$$-host"
ctr="rcni-demo-$$-ctr"
cleanup() {
    ip netns delete "$ctr" 2>/dev/null || true
    ip netns delete "$host" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin/rcni" install "$work/bin" >/dev/null
ip netns add "$host"
ip netns add "$ctr"

if [ -z "${NETCONFPATH:-}" ]; then
    # The seed's netconf; only dataDir differs, so that the address files live in
    # the throwaway directory too.
    export NETCONFPATH="$work/net.d"
    mkdir -p "$NETCONFPATH"
    cat >"$NETCONFPATH/10-mynet.conf" <<CONF
{
    "cniVersion": "1.0.0",
    "name": "mynet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": true,
    "ipam": {
        "type": "host-local",
        "subnet": "10.22.0.0/16",
        "routes": [ { "dst": "0.0.0.0/0" } ],
        "dataDir": "$work/ipam"
    }
}
CONF
    cat >"$NETCONFPATH/99-loopback.conf" <<CONF
{ "cniVersion": "1.0.0", "name": "lo", "type": "loopback" }
CONF
fi

cnitool() { # run cnitool inside the host netns, as a runtime on the node would
    ip netns exec "$host" env CNI_PATH="$work/bin" NETCONFPATH="$NETCONFPATH" \
        CNI_CACHE_DIR="$work/cache" "$bin/cnitool" "$@"
}

echo "== plugins: $(cd "$work/bin" && printf '%s ' *)(one $(du -h "$bin/rcni" | cut -f1) binary, hard-linked)"
if command -v iptables >/dev/null; then
    echo "== firewall backend: iptables (iptables-restore, one transaction per family)"
else
    echo "== firewall backend: nftables, in-process (no iptables or nft binary needed)"
fi
echo "== cnitool add mynet:"; cnitool add mynet "/run/netns/$ctr"; echo
echo "== cnitool add lo:"; cnitool add lo "/run/netns/$ctr" >/dev/null && echo ok
echo "== masquerade rules (rcni firewall):"; ip netns exec "$host" "$bin/rcni" firewall
if command -v iptables >/dev/null; then ip netns exec "$host" iptables -t nat -S | grep -- '-A POSTROUTING.*CNI-' || true; fi
echo "== container:"; ip -n "$ctr" addr
echo "== container routes:"; ip -n "$ctr" route
if command -v ping >/dev/null; then
    echo "== ping the gateway from the container:"; ip netns exec "$ctr" ping -c 2 -W 1 10.22.0.1
fi
echo "== cnitool check mynet:"; cnitool check mynet "/run/netns/$ctr" && echo ok
echo "== cnitool del:"; cnitool del lo "/run/netns/$ctr"; cnitool del mynet "/run/netns/$ctr" && echo ok
echo "== container after DEL:"; ip -n "$ctr" addr
echo "== masquerade rules after DEL (rcni firewall):"; ip netns exec "$host" "$bin/rcni" firewall
echo "== removing the namespaces"
