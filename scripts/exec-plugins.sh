#!/usr/bin/env bash
# Runs every network in $NETCONFPATH/*.conf (default /etc/cni/net.d) for one
# container, as upstream's exec-plugins.sh: the N-th file's network gets eth<N>.
# A file with a "plugins" list has each plugin run in order with the list's name
# and cniVersion injected and the previous plugin's output as prevResult.
#
#   CNI_PATH=/opt/cni/bin exec-plugins.sh add|del CONTAINER-ID NETNS-PATH
#
# Needs jq. DEBUG=1 traces the script and pretty-prints each result.
# Fixed from upstream: plugin messages are reported (upstream's .msg lookup had
# a typo), JSON with spaces survives, and one network's result never leaks into
# the next network as its prevResult.
set -euo pipefail

if [[ ${DEBUG:-0} -gt 0 ]]; then set -x; fi

NETCONFPATH=${NETCONFPATH-/etc/cni/net.d}

# Runs the plugin named by $1 with stdin $2; prints its output, fails with a message.
run_plugin() {
	local plugin=$1 conf=$2 name=$3 out
	if ! out=$(echo "$conf" | "$plugin"); then
		local msg
		msg=$(echo "$out" | jq -r '.msg // empty' 2>/dev/null || true)
		echo "${name} : error executing ${CNI_COMMAND}: ${msg:-$out}" >&2
		return 1
	fi
	echo "$out"
}

exec_list() {
	local netconf=$1 name cni_version res="" conf plugin
	name=$(echo "$netconf" | jq -r '.name')
	cni_version=$(echo "$netconf" | jq -r '.cniVersion')
	while IFS= read -r conf; do
		plugin=$(echo "$conf" | jq -r '.type')
		conf=$(echo "$conf" | jq -c --arg name "$name" --arg v "$cni_version" '.name = $name | .cniVersion = $v')
		if [ -n "$res" ]; then
			conf=$(echo "$conf" | jq -c --argjson res "$res" '.prevResult = $res')
		fi
		res=$(run_plugin "$plugin" "$conf" "$name") || return 1
		if [[ ${DEBUG:-0} -gt 0 ]]; then echo "$res" | jq -r .; fi
	done < <(echo "$netconf" | jq -c '.plugins[]')
}

exec_plugin() {
	local netconf=$1 name plugin res
	name=$(echo "$netconf" | jq -r '.name')
	plugin=$(echo "$netconf" | jq -r '.type')
	res=$(run_plugin "$plugin" "$netconf" "$name") || return 1
	if [[ ${DEBUG:-0} -gt 0 ]]; then echo "$res" | jq -r .; fi
}

if [ $# -ne 3 ]; then
	echo "Usage: $0 add|del CONTAINER-ID NETNS-PATH"
	echo "  Adds or deletes the container specified by NETNS-PATH to the networks"
	echo "  specified in \$NETCONFPATH directory"
	exit 1
fi

CNI_COMMAND=$(echo "$1" | tr '[:lower:]' '[:upper:]')
export CNI_COMMAND
export PATH=${CNI_PATH:-}:$PATH
export CNI_PATH=${CNI_PATH:-}
export CNI_CONTAINERID=$2
export CNI_NETNS=$3

i=0
for netconf_file in "$NETCONFPATH"/*.conf; do
	[ -e "$netconf_file" ] || continue
	CNI_IFNAME=$(printf eth%d "$i")
	export CNI_IFNAME
	netconf=$(cat "$netconf_file")
	if [ "$(echo "$netconf" | jq 'has("plugins")')" = "true" ]; then
		exec_list "$netconf" || exit 1
	else
		exec_plugin "$netconf" || exit 1
	fi
	i=$((i + 1))
done
