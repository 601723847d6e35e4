#!/usr/bin/env bash
# Runs a command in a new network namespace attached to the networks in
# $NETCONFPATH by exec-plugins.sh, then detaches and removes it (upstream's
# priv-net-run.sh; `cnitool exec NET... -- CMD` does the same in one process).
#
#   CNI_PATH=/opt/cni/bin priv-net-run.sh CMD [ARGS...]
#
# Fixed from upstream: it works from any directory, and the namespace is removed
# even when attaching fails.
set -euo pipefail

if [[ ${DEBUG:-0} -gt 0 ]]; then set -x; fi

if [ $# -eq 0 ]; then
	echo "Usage: $0 CMD [ARGS...]"
	echo "  Runs CMD in a private network namespace set up by the CNI plugins"
	exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
contid=$(printf '%x%x%x%x' "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM")
netnspath=/var/run/netns/$contid

ip netns add "$contid"
cleanup() {
	"$here/exec-plugins.sh" del "$contid" "$netnspath" || true
	ip netns delete "$contid"
}
trap cleanup EXIT

"$here/exec-plugins.sh" add "$contid" "$netnspath"
ip netns exec "$contid" "$@"
