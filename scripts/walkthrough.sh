#!/usr/bin/env bash
# The CNI walkthrough with rcni's plugins, in throwaway network namespaces only:
# a "host" netns stands in for the node (so this machine's own network is never
# changed) and a "container" netns is attached from inside it, exactly as a runtime
# would run the plugins. Everything is removed at the end, also on failure or Ctrl-C.
#
# For now the walkthrough attaches the loopback network; the bridge walkthrough
# replaces it once the bridge plugin exists.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "run as root: network namespaces need it" >&2; exit 1; }
command -v ip >/dev/null || { echo "needs iproute2 (apt-get install iproute2)" >&2; exit 1; }

cargo build --release --quiet --bin rcni
work=$(mktemp -d)
host="rcni-demo-$$-host"
ctr="rcni-demo-$$-ctr"
cleanup() {
    ip netns delete "$ctr" 2>/dev/null || true
    ip netns delete "$host" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

./target/release/rcni install "$work/bin" >/dev/null
ip netns add "$host"
ip netns add "$ctr"

conf='{"cniVersion":"1.1.0","name":"lo","type":"loopback"}'
cni() { # cni VERB: run the loopback plugin inside the host netns, as a runtime would
    echo "$conf" | ip netns exec "$host" env -i PATH="$PATH" \
        CNI_COMMAND="$1" CNI_CONTAINERID=demo-1 CNI_NETNS="/run/netns/$ctr" \
        CNI_IFNAME=lo CNI_PATH="$work/bin" "$work/bin/loopback"
}

echo "== plugins installed: $(cd "$work/bin" && printf '%s ' *)($(du -h "$work/bin/loopback" | cut -f1) in all)"
echo "== container before ADD:"; ip -n "$ctr" addr show lo
echo "== ADD result:"; cni ADD; echo
echo "== container after ADD:"; ip -n "$ctr" addr show lo
if command -v ping >/dev/null; then
    echo "== ping inside the container:"; ip netns exec "$ctr" ping -c 2 -W 1 127.0.0.1
fi
echo "== CHECK:"; cni CHECK && echo ok
echo "== DEL:"; cni DEL && echo ok
echo "== container after DEL:"; ip -n "$ctr" addr show lo
echo "== removing the namespaces"
