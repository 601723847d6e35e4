#!/usr/bin/env bash
# Runs a Docker container whose network is set up by the CNI plugins (upstream's
# docker-run.sh): a busybox "pause" container with --net=none holds the network
# namespace, exec-plugins.sh attaches it to the networks in $NETCONFPATH, and the
# container asked for joins that namespace.
#
#   CNI_PATH=/opt/cni/bin docker-run.sh [docker run args...]
#   e.g. docker-run.sh --rm busybox /sbin/ifconfig
set -euo pipefail

if [[ ${DEBUG:-0} -gt 0 ]]; then set -x; fi

here=$(cd "$(dirname "$0")" && pwd)
contid=$(docker run -d --net=none busybox:latest /bin/sleep 10000000)
pid=$(docker inspect -f '{{ .State.Pid }}' "$contid")
netnspath=/proc/$pid/ns/net

cleanup() {
	"$here/exec-plugins.sh" del "$contid" "$netnspath" || true
	docker rm -f "$contid" >/dev/null
}
trap cleanup EXIT

"$here/exec-plugins.sh" add "$contid" "$netnspath"
docker run --net="container:$contid" "$@"
