#!/usr/bin/env bash
# bench/run.sh: rcni against Debian's Go plugins, side by side in one run.
#
#   sudo bash bench/run.sh          (N=30 WARM=3 PAR=8 SIZES="50 500" by default)
#
# Builds the release binary, installs our plugins as hard links in a temporary
# directory, then times ours and the Go plugins in /usr/lib/cni *interleaved*
# (iteration i of every scenario for both, then i+1), so slow drifts such as the
# kernel's asynchronous namespace teardown hit both alike. Every plugin runs inside
# private namespaces made here (rb<pid>-*); all firewall rules land in the bench's
# host namespace; everything is removed on exit. Prints a markdown table, writes it
# to bench/results/ with a description of the machine, and replaces the table in
# bench/README.md.
set -euo pipefail

N=${N:-30}
WARM=${WARM:-3}
PAR=${PAR:-8}
SIZES=${SIZES:-"50 500"}
GO_BIN=${GO_BIN:-/usr/lib/cni}
ONLY=${ONLY:-}   # a regex on scenario names: a partial run, which leaves bench/README.md and bench/results/ alone
# Seconds to let the kernel finish tearing down a deleted container namespace (done
# asynchronously, under the rtnl lock) before the next timed call, so one cycle's
# teardown is not billed to the next plugin. Outside every timed region.
SETTLE=${SETTLE:-0.05}

# ----------------------------------------------------------------------------- inner
# Runs inside the bench host namespace: every plugin is exec'd from here.
if [[ ${1:-} == __inner ]]; then
  cd "$W"
  mkdir -p raw tmp
  : >tmp/us
  us() { local a=${1/./} b=${2/./}; echo $((10#$b - 10#$a)); }
  # The microseconds bench-exec measured for the call just made (0 if it could not
  # run it; the call's non-zero rc is logged as an error). bench-exec spawns the
  # plugin the way a runtime does; timing from bash would add its own fork.
  elapsed() { local d; d=$(<tmp/us); echo "${d:-0}"; : >tmp/us; }

  # conf IMPL KEY -> the plugin configuration for this implementation. Networks,
  # bridges, subnets and host ports differ per implementation so both can coexist.
  conf() {
    local impl=$1 key=$2 n s p
    if [[ $impl == ours ]]; then n=o; s=41; p=18; else n=g; s=51; p=28; fi
    local ipam="\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.$s.0.0/16\",\"dataDir\":\"$W/ipam\"}"
    case $key in
      lo) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-lo\",\"type\":\"loopback\"}" ;;
      hl) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-hl-$n\",\"type\":\"host-local\",\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.$((s + 1)).0.0/16\",\"dataDir\":\"$W/ipam\"}}" ;;
      br0) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-br0-$n\",\"type\":\"bridge\",\"bridge\":\"rb0$n\",\"isGateway\":true,${ipam/10.$s./10.$((s + 2)).}}" ;;
      brm) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-brm-$n\",\"type\":\"bridge\",\"bridge\":\"rbm$n\",\"isGateway\":true,\"ipMasq\":true,${ipam/10.$s./10.$((s + 3)).}}" ;;
      brn) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-brn-$n\",\"type\":\"bridge\",\"bridge\":\"rbn$n\",\"isGateway\":true,\"ipMasq\":true,\"ipMasqBackend\":\"nftables\",${ipam/10.$s./10.$((s + 4)).}}" ;;
      ptp) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-ptp-$n\",\"type\":\"ptp\",${ipam/10.$s./10.$((s + 5)).}}" ;;
      mv) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-mv-$n\",\"type\":\"macvlan\",\"master\":\"rbmaster\",${ipam/10.$s./10.$((s + 9)).}}" ;;
      brc) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-c-$n\",\"type\":\"bridge\",\"bridge\":\"rbc$n\",\"isGateway\":true,\"ipMasq\":true,${ipam/10.$s./10.$((s + 6)).}}" ;;
      pm) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-c-$n\",\"type\":\"portmap\",\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":${p}080,\"containerPort\":80,\"protocol\":\"tcp\"}]}}" ;;
      brcn) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-cn-$n\",\"type\":\"bridge\",\"bridge\":\"rbd$n\",\"isGateway\":true,\"ipMasq\":true,\"ipMasqBackend\":\"nftables\",${ipam/10.$s./10.$((s + 7)).}}" ;;
      pmn) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-cn-$n\",\"type\":\"portmap\",\"backend\":\"nftables\",\"dataDir\":\"$W/portmap\",\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":${p}081,\"containerPort\":80,\"protocol\":\"tcp\"}]}}" ;;
      # podman's default network (bridge, portmap, firewall, tuning) at its cniVersion.
      pbr) echo "{\"cniVersion\":\"0.4.0\",\"name\":\"rb-p-$n\",\"type\":\"bridge\",\"bridge\":\"rbpod$n\",\"isGateway\":true,\"ipMasq\":true,\"hairpinMode\":true,\"ipam\":{\"type\":\"host-local\",\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"ranges\":[[{\"subnet\":\"10.$((s + 10)).0.0/16\"}]],\"dataDir\":\"$W/ipam\"}}" ;;
      ppm) echo "{\"cniVersion\":\"0.4.0\",\"name\":\"rb-p-$n\",\"type\":\"portmap\",\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":${p}082,\"containerPort\":80,\"protocol\":\"tcp\"}]}}" ;;
      pfw) echo "{\"cniVersion\":\"0.4.0\",\"name\":\"rb-p-$n\",\"type\":\"firewall\",\"dataDir\":\"$W/firewall\"}" ;;
      ptu) echo "{\"cniVersion\":\"0.4.0\",\"name\":\"rb-p-$n\",\"type\":\"tuning\"}" ;;
      par) echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-par-$n\",\"type\":\"bridge\",\"bridge\":\"rbp$n\",\"isGateway\":true,\"ipMasq\":true,${ipam/10.$s./10.$((s + 8)).}}" ;;
    esac
  }
  bin() { if [[ $1 == ours ]]; then echo "$OURS"; else echo "$GO_BIN"; fi; }
  plugin_of() { sed -n 's/.*"type":"\([^"]*\)".*/\1/p' <<<"${1/\"ipam\":*/}"; }
  with_prev() { if [[ -n $2 ]]; then echo "${1%\}},\"prevResult\":$2}"; else echo "$1"; fi; }

  # One ADD..DEL cycle of a chain: chain ITER IMPL NAME IFNAME KEY...
  # Rows: iter impl phase plugin microseconds rc
  chain() {
    local i=$1 impl=$2 name=$3 ifname=$4; shift 4
    local keys=("$@") dir out=raw/$name.tsv prev="" cfg plugin s e rc d tadd=0 tdel=0 k
    dir=$(bin "$impl")
    local cid="rb-$name-$impl-$i" ns=/run/netns/$CTR_PREFIX-$impl
    ip netns add "$CTR_PREFIX-$impl"   # a new namespace per container, as runtimes do
    for ((k = 0; k < ${#keys[@]}; k++)); do
      cfg=$(with_prev "$(conf "$impl" "${keys[k]}")" "$prev"); plugin=$(plugin_of "$(conf "$impl" "${keys[k]}")")
      rc=0
      CNI_COMMAND=ADD CNI_CONTAINERID=$cid CNI_NETNS=$ns CNI_IFNAME=$ifname CNI_PATH=$dir \
        "$EXEC" tmp/us "$dir/$plugin" <<<"$cfg" >tmp/out 2>tmp/err || rc=$?
      d=$(elapsed); tadd=$((tadd + d))
      printf '%s\t%s\tADD\t%s\t%s\t%s\n' "$i" "$impl" "$plugin" "$d" "$rc" >>"$out"
      if ((rc != 0)); then echo "ADD $name/$impl/$plugin rc=$rc: $(head -c 300 tmp/out)" >>errors.log; break; fi
      prev=$(<tmp/out)
    done
    for ((k = ${#keys[@]} - 1; k >= 0; k--)); do
      cfg=$(with_prev "$(conf "$impl" "${keys[k]}")" "$prev"); plugin=$(plugin_of "$(conf "$impl" "${keys[k]}")")
      rc=0
      CNI_COMMAND=DEL CNI_CONTAINERID=$cid CNI_NETNS=$ns CNI_IFNAME=$ifname CNI_PATH=$dir \
        "$EXEC" tmp/us "$dir/$plugin" <<<"$cfg" >tmp/out 2>tmp/err || rc=$?
      d=$(elapsed); tdel=$((tdel + d))
      printf '%s\t%s\tDEL\t%s\t%s\t%s\n' "$i" "$impl" "$plugin" "$d" "$rc" >>"$out"
      if ((rc != 0)); then echo "DEL $name/$impl/$plugin rc=$rc: $(head -c 300 tmp/out)" >>errors.log; fi
    done
    ip netns del "$CTR_PREFIX-$impl"
    sleep "$SETTLE"
    if ((${#keys[@]} > 1)); then
      printf '%s\t%s\tADD\tchain\t%s\t0\n%s\t%s\tDEL\tchain\t%s\t0\n' "$i" "$impl" "$tadd" "$i" "$impl" "$tdel" >>"$out"
    fi
  }

  # The chain bridge+host-local+portmap through our cnitool (a conflist with the
  # portMappings capability), for our plugins and for Go's.
  cnitool_cycle() {
    local i=$1 impl=$2 out=raw/ct-cnitool.tsv dir s e rc d verb
    dir=$(bin "$impl")
    ip netns add "$CTR_PREFIX-$impl"
    for verb in add del; do
      rc=0
      NETCONFPATH=$W/netconf-$impl CNI_PATH=$dir CNI_CACHE_DIR=$W/cache \
        CAP_ARGS='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}' \
        "$EXEC" tmp/us "$OURS/cnitool" "$verb" rb-ct "/run/netns/$CTR_PREFIX-$impl" >tmp/out 2>tmp/err || rc=$?
      d=$(elapsed)
      printf '%s\t%s\t%s\tcnitool\t%s\t%s\n' "$i" "$impl" "${verb^^}" "$d" "$rc" >>"$out"
      if ((rc != 0)); then echo "cnitool $verb $impl rc=$rc: $(head -c 300 tmp/out tmp/err)" >>errors.log; fi
    done
    ip netns del "$CTR_PREFIX-$impl"
    sleep "$SETTLE"
  }
  for impl in ours go; do
    mkdir -p "netconf-$impl"
    if [[ $impl == ours ]]; then s=60; else s=61; fi
    echo "{\"cniVersion\":\"1.0.0\",\"name\":\"rb-ct\",\"plugins\":[{\"type\":\"bridge\",\"bridge\":\"rbt${impl:0:1}\",\"isGateway\":true,\"ipMasq\":true,\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.$s.0.0/16\",\"dataDir\":\"$W/ipam\"}},{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}" \
      >"netconf-$impl/rb-ct.conflist"
  done

  # Scenarios: name ifname keys... ; "go" is skipped where Go v1.1.1 lacks the feature.
  SCENARIOS=(
    "a-loopback lo lo"
    "h-host-local eth0 hl"
    "b0-bridge eth0 br0"
    "b-bridge-masq-iptables eth0 brm"
    "bn-bridge-masq-nftables eth0 brn"
    "d-ptp eth0 ptp"
    "m-macvlan eth0 mv"
    "c-bridge-portmap-iptables eth0 brc pm"
    "cn-bridge-portmap-nftables eth0 brcn pmn"
    "p-podman-chain eth0 pbr ppm pfw ptu"
  )
  go_has() { [[ $1 != bn-* && $1 != cn-* ]]; }   # no nftables backends in Go v1.1.1

  for ((i = 0; i < WARM + N; i++)); do
    for sc in "${SCENARIOS[@]}"; do
      read -r -a a <<<"$sc"
      if [[ -n $ONLY && ! ${a[0]} =~ $ONLY ]]; then continue; fi
      for impl in ours go; do
        if [[ $impl == go ]] && ! go_has "${a[0]}"; then continue; fi
        chain "$i" "$impl" "${a[@]}"
      done
    done
    if [[ -z $ONLY || ct-cnitool =~ $ONLY ]]; then
      for impl in ours go; do cnitool_cycle "$i" "$impl"; done
    fi
  done
  echo "$WARM" >raw/warm

  # Peak RSS (kB), max of 3 runs of ADD and DEL. "own": loopback, host-local and
  # bridge without ipMasq (Go's bridge includes its host-local child; ours runs IPAM
  # in-process). "fw": bridge with ipMasq and portmap, which includes the iptables
  # processes both implementations run.
  rss() {   # rss IMPL GROUP IFNAME KEY...
    local impl=$1 group=$2 ifname=$3 dir prev="" cfg plugin k r; shift 3
    local keys=("$@"); dir=$(bin "$impl")
    for r in 1 2 3; do
      prev=""
      ip netns add "$CTR_PREFIX-$impl"
      for ((k = 0; k < ${#keys[@]}; k++)); do
        cfg=$(with_prev "$(conf "$impl" "${keys[k]}")" "$prev"); plugin=$(plugin_of "$(conf "$impl" "${keys[k]}")")
        CNI_COMMAND=ADD CNI_CONTAINERID=rb-rss-$r CNI_NETNS=/run/netns/$CTR_PREFIX-$impl CNI_IFNAME=$ifname CNI_PATH=$dir \
          /usr/bin/time -f %M -o tmp/rss "$dir/$plugin" <<<"$cfg" >tmp/out 2>/dev/null || true
        printf '%s\t%s\t%s\t%s\n' "$impl" "$group" "$plugin" "$(tail -1 tmp/rss)" >>raw/rss.tsv
        prev=$(<tmp/out)
      done
      for ((k = ${#keys[@]} - 1; k >= 0; k--)); do
        cfg=$(with_prev "$(conf "$impl" "${keys[k]}")" "$prev"); plugin=$(plugin_of "$(conf "$impl" "${keys[k]}")")
        CNI_COMMAND=DEL CNI_CONTAINERID=rb-rss-$r CNI_NETNS=/run/netns/$CTR_PREFIX-$impl CNI_IFNAME=$ifname CNI_PATH=$dir \
          /usr/bin/time -f %M -o tmp/rss "$dir/$plugin" <<<"$cfg" >/dev/null 2>&1 || true
        printf '%s\t%s\t%s\t%s\n' "$impl" "$group" "$plugin" "$(tail -1 tmp/rss)" >>raw/rss.tsv
      done
      ip netns del "$CTR_PREFIX-$impl"
    done
  }
  for impl in ours go; do
    rss "$impl" own lo lo
    rss "$impl" own eth0 hl
    rss "$impl" own eth0 br0
    rss "$impl" fw eth0 brc pm
  done

  # Parallel: SIZE containers ADDed at once (xargs -P PAR) onto one bridge that does
  # not exist yet, then DELeted at once. Counted from the kernel and the files.
  cat >one.sh <<'EOS'
#!/bin/sh
# $1 ADD|DEL, $2 index, $3 impl, $4 plugin dir
CNI_COMMAND=$1 CNI_CONTAINERID=rb-par-$3-$2 CNI_NETNS=/run/netns/$PAR_PREFIX-$2 CNI_IFNAME=eth0 CNI_PATH=$4 \
  "$4/bridge" <"$W/par-$3.json" >"$W/par/$1-$2.out" 2>&1
echo $? >"$W/par/$1-$2.rc"
EOS
  export W PAR_PREFIX
  for impl in ours go; do conf "$impl" par >"par-$impl.json"; done
  for size in $SIZES; do
    for impl in ours go; do
      rm -rf par; mkdir par
      dir=$(bin "$impl")
      if [[ $impl == ours ]]; then br=rbpo; net=rb-par-o; else br=rbpg; net=rb-par-g; fi
      s=$EPOCHREALTIME
      seq 1 "$size" | xargs -P "$PAR" -I{} sh one.sh ADD {} "$impl" "$dir"
      e=$EPOCHREALTIME; tadd=$(us "$s" "$e")
      fadd=$(cat par/ADD-*.rc | grep -vc '^0$' || true)
      ips=$(for j in $(seq 1 "$size"); do ip -n "$PAR_PREFIX-$j" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}'; done)
      nip=$(printf '%s\n' "$ips" | grep -c . || true)
      dup=$(printf '%s\n' "$ips" | grep . | sort | uniq -d | wc -l)
      s=$EPOCHREALTIME
      seq 1 "$size" | xargs -P "$PAR" -I{} sh one.sh DEL {} "$impl" "$dir"
      e=$EPOCHREALTIME; tdel=$(us "$s" "$e")
      fdel=$(cat par/DEL-*.rc | grep -vc '^0$' || true)
      files=$(find "$W/ipam/$net" -name '10.*' 2>/dev/null | wc -l)
      ports=$( (ip -br link show master "$br" 2>/dev/null || true) | grep -c . || true)
      rules=$( (iptables-save -t nat 2>/dev/null || true) | grep -c "rb-par-$impl" || true)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$impl" "$tadd" "$fadd" "$nip" "$dup" "$tdel" "$fdel" "$files" "$ports" "$rules" >>raw/par.tsv
      for x in par/*.rc; do
        [[ $(<"$x") == 0 ]] || echo "par $size $impl $(basename "$x" .rc): $(head -c 300 "${x%.rc}.out")" >>errors.log
      done
      ip link del "$br" 2>/dev/null || true
    done
  done
  exit 0
fi

# ----------------------------------------------------------------------------- outer
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) != 0 ]]; then echo "bench/run.sh: run as root (it creates network namespaces)" >&2; exit 1; fi
for tool in ip iptables nft /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: missing $tool (apt-get install iproute2 iptables nftables time)" >&2; exit 1; }
done
[[ -x $GO_BIN/bridge ]] || { echo "bench/run.sh: no Go plugins in $GO_BIN (apt-get install containernetworking-plugins)" >&2; exit 1; }

echo "building the release binaries..." >&2
REL=$("$ROOT/scripts/release.sh")
cargo build --release --locked -q --manifest-path "$ROOT/Cargo.toml" -p bench-exec
W=$(mktemp -d /tmp/rcni-bench.XXXXXX)
OURS=$W/plugins
"$REL/rcni" install "$OURS" >/dev/null
cp "$REL/cnitool" "$OURS/cnitool"
EXEC=$W/bench-exec
cp "$ROOT/target/release/bench-exec" "$EXEC"

P=rb$$
HOST=$P-host CTR_PREFIX=$P-ctr PAR_PREFIX=$P-p
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add "$HOST"
ip -n "$HOST" link set lo up
# The macvlan scenario's master: a veth end in the private host namespace.
ip -n "$HOST" link add rbmaster type veth peer name rbmasterp
ip -n "$HOST" link set rbmaster up
max=0; for s in $SIZES; do ((s > max)) && max=$s; done
for ((j = 1; j <= max; j++)); do ip netns add "$PAR_PREFIX-$j"; done

echo "running N=$N (+$WARM warm-up) interleaved, then parallel $SIZES..." >&2
start=$EPOCHSECONDS
W=$W OURS=$OURS EXEC=$EXEC GO_BIN=$GO_BIN N=$N WARM=$WARM PAR=$PAR SIZES=$SIZES ONLY=$ONLY SETTLE=$SETTLE CTR_PREFIX=$CTR_PREFIX PAR_PREFIX=$PAR_PREFIX \
  ip netns exec "$HOST" bash "$0" __inner
elapsed=$((EPOCHSECONDS - start))

# ----------------------------------------------------------------------------- report
# stats FILE IMPL PHASE PLUGIN -> "median p90" in ms over the timed iterations
stats() {
  awk -F'\t' -v impl="$2" -v phase="$3" -v plugin="$4" -v warm="$(cat "$W/raw/warm")" \
    '$1 >= warm && $2 == impl && $3 == phase && $4 == plugin { print $5 / 1000 }' "$1" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      p = v[int(NR * 0.9 + 0.999)]; printf "%.2f %.2f\n", m, p }'
}
ratio() { awk -v g="$1" -v o="$2" 'BEGIN { if (g == "-" || o == "-" || o == 0) print "n/a"; else printf "%.1fx\n", g / o }'; }
target_of() {
  case "$1 $2" in
    "b0-bridge ADD") echo 4 ;; "b-bridge-masq-iptables ADD") echo 5 ;;
    "c-bridge-portmap-iptables ADD") echo 6 ;; "c-bridge-portmap-iptables DEL") echo 3 ;;
    *) echo "" ;;
  esac
}
kb() { awk -F'\t' -v impl="$1" -v group="$2" '$1 == impl && $2 == group && $4 + 0 > m { m = $4 + 0 } END { print m + 0 }' "$W/raw/rss.tsv"; }
size_of() { du -sb "$1" | awk '{print $1}'; }
ours_size=$(du -sb --exclude=cnitool "$OURS" | awk '{print $1}')
go_size=$(size_of "$GO_BIN")

table() {
  echo "| scenario | phase | plugin | Go median / p90 ms | rcni median / p90 ms | Go/rcni | target |"
  echo "|---|---|---|---|---|---|---|"
  for f in "$W"/raw/*.tsv; do
    name=$(basename "$f" .tsv)
    case $name in rss | par) continue ;; esac
    for phase in ADD DEL; do
      # shellcheck disable=SC2013 # plugin names are single words
      for plugin in $(awk -F'\t' -v p="$phase" '$3 == p { print $4 }' "$f" | sort -u); do
        read -r gm gp <<<"$(stats "$f" go "$phase" "$plugin")"
        read -r om op <<<"$(stats "$f" ours "$phase" "$plugin")"
        r=$(ratio "$gm" "$om")
        t=""; if [[ $plugin == chain || $plugin == bridge && $name == b* ]]; then t=$(target_of "$name" "$phase"); fi
        verdict=""
        if [[ -n $t && $r != n/a ]]; then
          if awk -v r="${r%x}" -v t="$t" 'BEGIN { exit !(r >= t) }'; then verdict="≥${t}x met"; else verdict="≥${t}x **not met**"; fi
        fi
        echo "| $name | $phase | $plugin | $gm / $gp | $om / $op | $r | $verdict |"
      done
    done
  done
  echo
  echo "| measure | Go | rcni | rcni/Go | target |"
  echo "|---|---|---|---|---|"
  for group in own fw; do
    go_rss=$(kb go "$group"); our_rss=$(kb ours "$group")
    if [[ $group == own ]]; then what="peak RSS kB: loopback, host-local, bridge (no firewall)"; t="≤ 0.5"; else what="peak RSS kB: bridge ipMasq + portmap, iptables children included"; t=""; fi
    verdict=""
    if [[ -n $t ]]; then verdict="$t $(awk -v a="$our_rss" -v b="$go_rss" 'BEGIN{print (a/b <= 0.5) ? "met" : "**not met**"}')"; fi
    echo "| $what | $go_rss | $our_rss | $(awk -v a="$our_rss" -v b="$go_rss" 'BEGIN{printf "%.2f", a/b}') | $verdict |"
  done
  echo "| installed plugins (bytes) | $go_size | $ours_size | $(awk -v a="$ours_size" -v b="$go_size" 'BEGIN{printf "%.3f", a/b}') | ≤ 0.1 $(awk -v a="$ours_size" -v b="$go_size" 'BEGIN{print (a/b <= 0.1) ? "met" : "**not met**"}') |"
  echo
  echo "| parallel | impl | ADD wall ms | ADD failures | eth0 with IPv4 | duplicate IPs | DEL wall ms | DEL failures | left: files / ports / nat rules |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %.0f | %s | %s | %s | %.0f | %s | %s / %s / %s |\n", $1, ($2 == "ours" ? "rcni" : "Go"), $3 / 1000, $4, $5, $6, $7 / 1000, $8, $9, $10, $11 }' "$W/raw/par.tsv"
}

machine() {
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); run took ${elapsed} s; N=$N timed iterations after $WARM warm-up, interleaved; parallel with xargs -P $PAR"
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
  echo "- $(iptables --version), nft $(nft --version | awk '{print $2}'), Go plugins: $GO_BIN ($(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo unknown))"
  echo "- rcni: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), static release build for $(basename "$(dirname "$REL")") (scripts/release.sh), one binary ($ours_size bytes) hard-linked under every plugin name; every call timed by bench-exec"
}

report=$( {
  echo "## Results"
  echo
  machine
  echo
  table
  if [[ -s $W/errors.log ]]; then
    echo
    echo "Errors during the run (first 20):"
    echo
    head -20 "$W/errors.log" | sed 's/^/    /'
  fi
})
echo "$report"
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/$(date -u +%Y-%m-%d)-$(hostname).md"
# A partial run (ONLY) must not replace the day's full record.
if [[ -n $ONLY ]]; then out="$W/partial.md"; fi
echo "$report" >"$out"
if [[ -z $ONLY ]]; then echo "written: $out" >&2; fi
readme=$ROOT/bench/README.md
if [[ -z $ONLY && -f $readme ]] && grep -q '<!-- results:begin -->' "$readme"; then
  awk -v file="$out" '
    /<!-- results:begin -->/ { print; while ((getline line < file) > 0) print line; skip = 1; next }
    /<!-- results:end -->/ { skip = 0 }
    !skip' "$readme" >"$readme.new" && mv "$readme.new" "$readme"
  echo "updated: $readme" >&2
fi
