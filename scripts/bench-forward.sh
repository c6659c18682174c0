#!/usr/bin/env bash
# Forwarding speed, switchyard vs the Linux kernel bridge, side by side in one run.
#
# Builds two namespace hosts twice: once plugged into switchyard (release build, tap ports with
# GSO passthrough, the guard on), once into a kernel bridge over veth pairs (the bridge lives in
# a namespace of its own; nothing is added to the root namespace). Then it runs the same
# workloads through both, alternating (switchyard first in odd rounds, the bridge first in even
# ones), and prints the median of ROUNDS runs of each, with the ratio switchyard / bridge:
#
#   - iperf3 TCP, 1 and 4 streams, at MTU 1500 and 9000 (Gbit/s received)
#   - small UDP frames (64 B on the wire): iperf3 -u -l 18 (sender-bound near 200 kpps here) and
#     trafgen (netsniff-ng), received frame rate at the receiving host's NIC and loss
#   - ping latency p50/p99 (500 pings, 2 ms apart)
#   - CPU seconds per GB moved during the 1-stream TCP run at MTU 1500: the whole machine's
#     busy time for both (comparable), and switchyard's own process time
#
# With MQ=1 (the default) a third world runs in the same rounds: a second switchyard with
# `multi_queue = true` (MQ_CONF; one tap queue per worker), its own column and its own ratio
# to the bridge, so single-queue, multi-queue and the bridge are measured side by side.
#
# Bounded: about 3 minutes with the defaults; every command has a timeout; a trap removes the
# namespaces and stops every process the script started, even on failure or Ctrl-C.
#
#   sudo ./scripts/bench-forward.sh            # ROUNDS=3 DUR=3 (seconds per iperf3 run)
#   sudo ROUNDS=5 DUR=5 ./scripts/bench-forward.sh
#   sudo TESTS=latency MTUS=1500 ./scripts/bench-forward.sh   # a part only
#   sudo SWITCH_CONF="workers = 1" ./scripts/bench-forward.sh  # extra [switch] settings
#   sudo MQ=0 ./scripts/bench-forward.sh                        # no multi-queue column
# The table is also drawn as an SVG chart, at $CHART (default target/bench/forward.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
TESTS=${TESTS:-"tcp udp latency"} # any of: tcp udp latency
MTUS=${MTUS:-"1500 9000"}
SWITCH_CONF=${SWITCH_CONF:-}      # extra lines for switchyard's [switch] table, e.g. "poll_us = 50"
MQ=${MQ:-1}                       # 1: also a multi-queue switchyard ("mq")
MQ_CONF=${MQ_CONF:-"multi_queue = true"} # its extra [switch] lines
CHART=${CHART:-target/bench/forward.svg} # the table as an SVG chart (scripts/chart.py)

if [ "$(id -u)" != 0 ]; then
  echo "bench-forward.sh: run as root (it creates taps and network namespaces)" >&2
  exit 1
fi

declare -A need=([iperf3]=iperf3 [ethtool]=ethtool [trafgen]=netsniff-ng [ping]=iputils-ping
  [jq]=jq [nsenter]=util-linux [ip]=iproute2)
install_missing
modprobe tun 2>/dev/null || true

cargo build --release --locked -q
BIN=$PWD/target/release/switchyard

P="syf$((RANDOM % 9000 + 1000))" # unique prefix: namespaces $P-*, taps ${P}a / ${P}b
SW=$P-sw                         # switchyard's own namespace
SA=$P-sa SB=$P-sb                # hosts on switchyard
BR=$P-br                         # the kernel bridge's namespace
KA=$P-ka KB=$P-kb                # hosts on the kernel bridge
MW=$P-mw                         # the multi-queue switchyard's namespace
MA=$P-ma MB=$P-mb                # hosts on it (taps ${P}c / ${P}d)
IP_A=10.77.0.11 IP_B=10.77.0.12
MAC_A=52:54:00:77:00:0b MAC_B=52:54:00:77:00:0c
WORK=$(mktemp -d /tmp/bench-forward.XXXXXX)
SY_PID=""
MQ_PID=""
WORLDS="sy kb"
[ "$MQ" = 1 ] && WORLDS="sy mq kb"


cleanup() {
  set +e
  stop_switchyard
  stop_switchyard mq
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for ns in "$SW" "$SA" "$SB" "$BR" "$KA" "$KB" "$MW" "$MA" "$MB"; do
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
stop_switchyard() { # [mq]
  local pid=$SY_PID
  [ "${1:-sy}" = mq ] && pid=$MQ_PID
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "${1:-sy}" = mq ]; then MQ_PID=""; else SY_PID=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the two worlds ---------------------------------------------------------------------------

start_switchyard() { # MTU [mq]
  local w=${2:-sy} conf=$SWITCH_CONF name=$P sw=$SW sa=$SA sb=$SB ta=${P}a tb=${P}b
  if [ "$w" = mq ]; then
    conf="$SWITCH_CONF
$MQ_CONF" name=${P}m sw=$MW sa=$MA sb=$MB ta=${P}c tb=${P}d
  fi
  cat >"$WORK/$w.toml" <<EOF
[network]
name = "$name"
subnet = "10.77.0.0/24"
gateway = "10.77.0.1"
domain = "bench.test"
mtu = $1

[switch]
$conf

[dhcp]
enabled = false
state_dir = "$WORK/state-$w"

[[host]]
name = "a"
mac = "$MAC_A"
ipv4 = "$IP_A"

[[host]]
name = "b"
mac = "$MAC_B"
ipv4 = "$IP_B"

[[port]]
name = "a"
kind = "tap"
ifname = "$ta"
host = "a"
netns = "$sa"

[[port]]
name = "b"
kind = "tap"
ifname = "$tb"
host = "b"
netns = "$sb"
EOF
  nsenter --net="/run/netns/$sw" "$BIN" run --config "$WORK/$w.toml" \
    >"$WORK/$w.out" 2>"$WORK/$w.err" &
  local pid=$!
  if [ "$w" = mq ]; then MQ_PID=$pid; else SY_PID=$pid; fi
  for _ in $(seq 100); do
    if ip -n "$sb" -br link show "$tb" 2>/dev/null | grep -q UP &&
      ip -n "$sa" -br link show "$ta" 2>/dev/null | grep -q UP; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/$w.err" >&2; exit 1; }
    sleep 0.1
  done
  for ns in "$sa" "$sb"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
}

start_bridge() { # MTU
  ip netns add "$BR"
  ip -n "$BR" link add br0 type bridge
  ip -n "$BR" link set br0 mtu "$1" up
  local ns ip mac
  for h in a b; do
    if [ $h = a ]; then ns=$KA ip=$IP_A mac=$MAC_A; else ns=$KB ip=$IP_B mac=$MAC_B; fi
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link add eth0 type veth peer name "p$h" netns "$BR"
    ip -n "$ns" link set eth0 address "$mac" mtu "$1" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$BR" link set "p$h" mtu "$1" master br0 up
  done
}

set_mtu_bridge() { # MTU
  for ns in "$KA" "$KB"; do ip -n "$ns" link set eth0 mtu "$1"; done
  for d in pa pb br0; do ip -n "$BR" link set "$d" mtu "$1"; done
}

# host namespaces of a world: "sy", "mq" or "kb"
ns_a() { case $1 in sy) echo "$SA" ;; mq) echo "$MA" ;; *) echo "$KA" ;; esac; }
ns_b() { case $1 in sy) echo "$SB" ;; mq) echo "$MB" ;; *) echo "$KB" ;; esac; }
if_a() { case $1 in sy) echo "${P}a" ;; mq) echo "${P}c" ;; *) echo eth0 ;; esac; }
if_b() { case $1 in sy) echo "${P}b" ;; mq) echo "${P}d" ;; *) echo eth0 ;; esac; }
pid_of() { if [ "$1" = mq ]; then echo "$MQ_PID"; else echo "$SY_PID"; fi; }

start_iperf_servers() {
  for w in $WORLDS; do
    ip netns exec "$(ns_b $w)" iperf3 -s -D -p 5201 -I "$WORK/iperf-$w.pid"
  done
  sleep 0.3
}

# ---- measurements -----------------------------------------------------------------------------

record() { echo "$3" >>"$WORK/res.$1.$2"; } # metric world value

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_jiffies() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

tcp() { # world streams metric [cpu]
  local w=$1 j t0 p0
  t0=$(busy_jiffies)
  [ "$w" != kb ] && p0=$(proc_jiffies "$(pid_of "$w")")
  j=$(timeout $((DUR + 15)) ip netns exec "$(ns_a "$w")" \
    iperf3 -c $IP_B -p 5201 -t "$DUR" -P "$2" -J) || { echo "iperf3 failed ($w, $3)" >&2; return; }
  record "$3" "$w" "$(jq '.end.sum_received.bits_per_second / 1e9' <<<"$j")"
  if [ "${4:-}" = cpu ]; then
    local gb
    gb=$(jq '.end.sum_received.bytes / 1e9' <<<"$j")
    record cpu_sys "$w" "$(awk -v d=$(($(busy_jiffies) - t0)) -v hz="$HZ" -v gb="$gb" \
      'BEGIN{print d / hz / gb}')"
    if [ "$w" != kb ]; then
      record cpu_proc "$w" "$(awk -v d=$(($(proc_jiffies "$(pid_of "$w")") - p0)) -v hz="$HZ" \
        -v gb="$gb" 'BEGIN{print d / hz / gb}')"
    fi
  fi
}

udp_iperf() { # world
  local w=$1 j
  j=$(timeout $((DUR + 15)) ip netns exec "$(ns_a "$w")" \
    iperf3 -c $IP_B -p 5201 -u -l 18 -b 0 -t "$DUR" -J) || { echo "iperf3 -u failed" >&2; return; }
  record udp_kpps "$w" "$(jq '.end.sum_received.bytes / 18 / .end.sum_received.seconds / 1e3' <<<"$j")"
  record udp_loss "$w" "$(jq '.end.sum.lost_percent' <<<"$j")"
}

rx_packets() { # world
  ip netns exec "$(ns_b "$1")" cat "/sys/class/net/$(if_b "$1")/statistics/rx_packets"
}

# What the sender's NIC was offered: sent plus dropped for a full queue (a tap whose reader is
# behind, a veth whose peer's backlog is full). trafgen counts only what the driver took.
offered() { # world
  local d
  d=/sys/class/net/$(if_a "$1")/statistics
  ip netns exec "$(ns_a "$1")" sh -c "echo \$((\$(cat $d/tx_packets) + \$(cat $d/tx_dropped)))"
}

udp_trafgen() { # world
  local w=$1 r0 r1 o0 o1
  cat >"$WORK/trafgen.cfg" <<EOF
{ eth(da=$MAC_B, sa=$MAC_A), ipv4(saddr=$IP_A, daddr=$IP_B, ttl=64), udp(sport=9, dport=9), fill(0x00, 18) }
EOF
  r0=$(rx_packets "$w")
  o0=$(offered "$w")
  ip netns exec "$(ns_a "$w")" timeout -s INT "$DUR" \
    trafgen --dev "$(if_a "$w")" --conf "$WORK/trafgen.cfg" --cpus 1 >"$WORK/trafgen.out" 2>&1 || true
  sleep 0.2
  r1=$(rx_packets "$w")
  o1=$(offered "$w")
  [ $((o1 - o0)) -gt 0 ] || { echo "trafgen failed ($w):" >&2; tail -5 "$WORK/trafgen.out" >&2; return; }
  record tg_kpps "$w" "$(awk -v n=$((r1 - r0)) -v d="$DUR" 'BEGIN{print n / d / 1e3}')"
  record tg_offered "$w" "$(awk -v n=$((o1 - o0)) -v d="$DUR" 'BEGIN{print n / d / 1e3}')"
  record tg_loss "$w" "$(awk -v n=$((r1 - r0)) -v s=$((o1 - o0)) 'BEGIN{l = 100 * (1 - n / s); print (l < 0 ? 0 : l)}')"
}

latency() { # world
  local w=$1
  timeout 20 ip netns exec "$(ns_a "$w")" ping -n -c 500 -i 0.002 -W 1 $IP_B |
    sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -g >"$WORK/ping.$w"
  local n
  n=$(wc -l <"$WORK/ping.$w")
  [ "$n" -gt 0 ] || { echo "ping failed ($w)" >&2; return; }
  record ping_p50 "$w" "$(awk -v n="$n" 'NR==int(n*0.5+0.5){print $1*1000}' "$WORK/ping.$w")"
  record ping_p99 "$w" "$(awk -v n="$n" 'NR==int(n*0.99+0.5){print $1*1000}' "$WORK/ping.$w")"
}

has() { case " $TESTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

round() { # mtu worlds...
  local mtu=$1
  shift
  for w in "$@"; do
    if has tcp; then
      tcp "$w" 1 "tcp1_$mtu" cpu
      tcp "$w" 4 "tcp4_$mtu"
    fi
    if [ "$mtu" = 1500 ]; then
      if has udp; then
        udp_iperf "$w"
        udp_trafgen "$w"
      fi
      if has latency; then latency "$w"; fi
    fi
  done
}

rounds() { # mtu
  for r in $(seq "$ROUNDS"); do
    echo "  MTU $1, round $r/$ROUNDS" >&2
    # shellcheck disable=SC2086 # WORLDS is a list
    if [ $((r % 2)) = 1 ]; then round "$1" $WORLDS; else round "$1" $(echo $WORLDS | tr ' ' '\n' | tac); fi
  done
}

# ---- run --------------------------------------------------------------------------------------

echo "bench-forward: prefix $P, $ROUNDS rounds of ${DUR}s; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
ip netns add "$SW"
start_switchyard 1500
if [ "$MQ" = 1 ]; then
  ip netns add "$MW"
  start_switchyard 1500 mq
fi
start_bridge 1500
start_iperf_servers
for w in $WORLDS; do
  ip netns exec "$(ns_a $w)" ping -c 2 -i 0.2 -W 2 -q $IP_B >/dev/null || { echo "no path ($w)" >&2; exit 1; }
done
case " $MTUS " in *" 1500 "*) rounds 1500 ;; esac

if [[ " $MTUS " == *" 9000 "* ]]; then
  for w in $WORLDS; do
    [ "$w" = kb ] && continue
    stop_switchyard "$w"
    start_switchyard 9000 "$w"
    kill "$(cat "$WORK/iperf-$w.pid")" 2>/dev/null || true
    rm -f "$WORK/iperf-$w.pid"
    ip netns exec "$(ns_b "$w")" iperf3 -s -D -p 5201 -I "$WORK/iperf-$w.pid"
  done
  set_mtu_bridge 9000
  sleep 0.3
  for w in $WORLDS; do
    ip netns exec "$(ns_a "$w")" ping -c 2 -i 0.2 -W 2 -q $IP_B >/dev/null || { echo "no path at MTU 9000 ($w)" >&2; exit 1; }
  done
  rounds 9000
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ---- report -----------------------------------------------------------------------------------

median() { # file
  [ -s "$1" ] || { echo "-"; return; }
  sort -g "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

ratio() { awk -v s="$1" -v k="$2" 'BEGIN{ if (s == "-" || k == "-" || k == 0) print "-"; else printf "%.2fx", s / k }'; }
fmt() { if [ "$2" = - ]; then echo -; else printf "$1" "$2"; fi; } # fmt value

row() { # label metric fmt
  local s k m
  s=$(median "$WORK/res.$2.sy")
  k=$(median "$WORK/res.$2.kb")
  m=$(median "$WORK/res.$2.mq")
  [ "$s$k$m" != "---" ] || return 0 # not measured in this run (TESTS, MTUS)
  if [ "$MQ" = 1 ]; then
    printf "| %-38s | %12s | %12s | %12s | %6s | %6s |\n" "$1" "$(fmt "$3" "$s")" "$(fmt "$3" "$m")" \
      "$(fmt "$3" "$k")" "$(ratio "$s" "$k")" "$(ratio "$m" "$k")"
  else
    printf "| %-38s | %12s | %12s | %6s |\n" "$1" "$(fmt "$3" "$s")" "$(fmt "$3" "$k")" "$(ratio "$s" "$k")"
  fi
}

{
  echo
  if [ "$MQ" = 1 ]; then
    echo "switchyard (single-queue taps, and multi-queue: $MQ_CONF) vs kernel bridge, medians of $ROUNDS runs of ${DUR}s (ratios: switchyard / bridge)"
    echo
    printf "| %-38s | %12s | %12s | %12s | %6s | %6s |\n" workload switchyard "switchyard mq" "kernel bridge" ratio "mq ratio"
    echo "|----------------------------------------|--------------|--------------|--------------|--------|--------|"
  else
    echo "switchyard vs kernel bridge, medians of $ROUNDS runs of ${DUR}s (ratio: switchyard / bridge)"
    echo
    printf "| %-38s | %12s | %12s | %6s |\n" workload switchyard "kernel bridge" ratio
    echo "|----------------------------------------|--------------|--------------|--------|"
  fi
  row "TCP 1 stream, MTU 1500 (Gbit/s)" tcp1_1500 "%.2f"
  row "TCP 4 streams, MTU 1500 (Gbit/s)" tcp4_1500 "%.2f"
  row "TCP 1 stream, MTU 9000 (Gbit/s)" tcp1_9000 "%.2f"
  row "TCP 4 streams, MTU 9000 (Gbit/s)" tcp4_9000 "%.2f"
  row "UDP 64 B iperf3, received (kpps)" udp_kpps "%.0f"
  row "UDP 64 B iperf3, loss (%)" udp_loss "%.1f"
  row "UDP 64 B trafgen, offered (kpps)" tg_offered "%.0f"
  row "UDP 64 B trafgen, received (kpps)" tg_kpps "%.0f"
  row "UDP 64 B trafgen, loss (%)" tg_loss "%.1f"
  row "ping p50 (us)" ping_p50 "%.0f"
  row "ping p99 (us)" ping_p99 "%.0f"
  row "CPU s/GB, TCP 1 stream, whole machine" cpu_sys "%.2f"
  if [ "$MQ" = 1 ]; then
    printf "| %-38s | %12s | %12s | %12s | %6s | %6s |\n" "CPU s/GB, TCP 1 stream, switchyard only" \
      "$(fmt "%.2f" "$(median "$WORK/res.cpu_proc.sy")")" "$(fmt "%.2f" "$(median "$WORK/res.cpu_proc.mq")")" "-" "-" "-"
  else
    printf "| %-38s | %12s | %12s | %6s |\n" "CPU s/GB, TCP 1 stream, switchyard only" \
      "$(fmt "%.2f" "$(median "$WORK/res.cpu_proc.sy")")" "-" "-"
  fi
} | tee "$WORK/table.md"
write_chart "$WORK/table.md" "$CHART" "Forwarding: switchyard against the kernel bridge ($(date -u +%F), $ROUNDS rounds of ${DUR}s)"
echo
echo "Kernel drops at the taps' rings (tx_dropped: frames the switch did not read in time), last phase:"
for h in a b; do
  ns=$SA
  [ $h = b ] && ns=$SB
  printf "  %s: %s\n" "${P}$h" "$(ip netns exec "$ns" cat "/sys/class/net/${P}$h/statistics/tx_dropped")"
done
echo "switchyard's own counters, last phase:"
stop_switchyard
grep -E "^(PORT|a|b) " "$WORK/sy.out" || true
if [ "$MQ" = 1 ]; then
  echo "the multi-queue switchyard's counters, per port, worker and queue, last phase:"
  stop_switchyard mq
  grep -E "^(PORT|a|b|WORKER\|QUEUE|sy-worker-[0-9]+|queue-[0-9]+) " "$WORK/mq.out" || true
fi
