#!/usr/bin/env bash
# Polling settings side by side in one run: switchyard without polling (the default), with
# `poll_us = "adaptive"`, and with a fixed `poll_us = $FIXED_US`, against the kernel bridge.
#
# Four worlds, each two namespace hosts (a, b): three switchyard daemons (tap ports, release
# build), each in its own namespace, and a kernel bridge over veth pairs in a namespace of its
# own. All run at once; the workloads visit them in turn, in an order that rotates each round,
# and the medians of ROUNDS runs are printed with the ratio to the bridge:
#   - ping p50/p99 (PINGS pings, PING_GAP s apart)
#   - iperf3 TCP, 1 and 4 streams (DUR s, Gbit/s received)
#   - each daemon's CPU seconds (utime+stime from /proc/PID/stat): during the pings, and idle
#     for IDLE s after the traffic (all worlds quiet), which must be about 0.
#
#   sudo ./scripts/bench-poll.sh                     # ROUNDS=3 DUR=3 IDLE=10 FIXED_US=5000
#   sudo ROUNDS=5 PING_GAP=0.0005 ./scripts/bench-poll.sh
# Bounded: about 2 minutes with the defaults; a trap removes the namespaces and stops every
# process the script started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
IDLE=${IDLE:-10}
FIXED_US=${FIXED_US:-5000}
PINGS=${PINGS:-500}
PING_GAP=${PING_GAP:-0.002}
WORKERS=${WORKERS:-0}

if [ "$(id -u)" != 0 ]; then
  echo "bench-poll.sh: run as root (it creates taps and network namespaces)" >&2
  exit 1
fi
declare -A need=([iperf3]=iperf3 [ping]=iputils-ping [jq]=jq [nsenter]=util-linux [ip]=iproute2)
install_missing
modprobe tun 2>/dev/null || true
cargo build --release --locked -q
BIN=$PWD/target/release/switchyard

P="syp$((RANDOM % 9000 + 1000))"
WORK=$(mktemp -d /tmp/bench-poll.XXXXXX)
IP_A=10.78.0.11 IP_B=10.78.0.12
MAC_A=52:54:00:78:00:0b MAC_B=52:54:00:78:00:0c
WORLDS="off adaptive fixed kb"
declare -A CONF=([off]="poll_us = 0" [adaptive]='poll_us = "adaptive"' [fixed]="poll_us = $FIXED_US")
declare -A PID=()

cleanup() {
  set +e
  for w in "${!PID[@]}"; do kill -TERM "${PID[$w]}" 2>/dev/null; done
  sleep 0.5
  for w in "${!PID[@]}"; do kill -KILL "${PID[$w]}" 2>/dev/null; wait "${PID[$w]}" 2>/dev/null; done
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for w in $WORLDS; do
    for h in sw a b; do ip netns del "$P-$w-$h" 2>/dev/null; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$P-$1-$2"; } # world host

start_switchyard() { # world
  local w=$1 i
  i=$(($(echo "$WORLDS" | tr ' ' '\n' | grep -n "^$w$" | cut -d: -f1)))
  for h in sw a b; do ip netns add "$(ns "$w" $h)"; done
  cat >"$WORK/$w.toml" <<EOF
[network]
name = "${P}$i"
subnet = "10.78.0.0/24"
gateway = "10.78.0.1"
domain = "bench.test"

[switch]
workers = $WORKERS
${CONF[$w]}

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
ifname = "${P}${i}a"
host = "a"
netns = "$(ns "$w" a)"

[[port]]
name = "b"
kind = "tap"
ifname = "${P}${i}b"
host = "b"
netns = "$(ns "$w" b)"
EOF
  nsenter --net="/run/netns/$(ns "$w" sw)" "$BIN" run --config "$WORK/$w.toml" \
    >"$WORK/$w.out" 2>"$WORK/$w.err" &
  PID[$w]=$!
  for _ in $(seq 100); do
    ip -n "$(ns "$w" a)" -br link show "${P}${i}a" 2>/dev/null | grep -q UP &&
      ip -n "$(ns "$w" b)" -br link show "${P}${i}b" 2>/dev/null | grep -q UP && break
    kill -0 "${PID[$w]}" 2>/dev/null || { cat "$WORK/$w.err" >&2; exit 1; }
    sleep 0.1
  done
  for h in a b; do
    ip netns exec "$(ns "$w" $h)" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$(ns "$w" $h)" link set lo up
  done
}

start_bridge() {
  local br ip mac n
  br=$(ns kb sw)
  ip netns add "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  for h in a b; do
    n=$(ns kb $h) ip=$IP_A mac=$MAC_A
    [ $h = b ] && ip=$IP_B mac=$MAC_B
    ip netns add "$n"
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$n" link add eth0 type veth peer name "p$h" netns "$br"
    ip -n "$n" link set eth0 address "$mac" up
    ip -n "$n" link set lo up
    ip -n "$n" addr add "$ip/24" dev eth0
    ip -n "$br" link set "p$h" master br0 up
  done
}

record() { echo "$3" >>"$WORK/res.$1.$2"; } # metric world value
cpu_s() { # world: the daemon's CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f\n", ($14 + $15) / hz}' "/proc/${PID[$1]}/stat"
}
delta() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f\n", b - a}'; }

tcp() { # world streams metric
  local j
  j=$(timeout $((DUR + 15)) ip netns exec "$(ns "$1" a)" \
    iperf3 -c $IP_B -p 5201 -t "$DUR" -P "$2" -J) || { echo "iperf3 failed ($1)" >&2; return; }
  record "$3" "$1" "$(jq '.end.sum_received.bits_per_second / 1e9' <<<"$j")"
}

latency() { # world
  local w=$1 n c0
  [ "$w" != kb ] && c0=$(cpu_s "$w")
  timeout 30 ip netns exec "$(ns "$w" a)" ping -n -c "$PINGS" -i "$PING_GAP" -W 1 $IP_B |
    sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -g >"$WORK/ping.$w"
  [ "$w" != kb ] && record ping_cpu "$w" "$(delta "$c0" "$(cpu_s "$w")")"
  n=$(wc -l <"$WORK/ping.$w")
  [ "$n" -gt 0 ] || { echo "ping failed ($w)" >&2; return; }
  record ping_p50 "$w" "$(awk -v n="$n" 'NR==int(n*0.5+0.5){print $1*1000}' "$WORK/ping.$w")"
  record ping_p99 "$w" "$(awk -v n="$n" 'NR==int(n*0.99+0.5){print $1*1000}' "$WORK/ping.$w")"
}

idle() { # every switchyard world at once, nothing moving
  declare -A c0=()
  sleep 1 # the last windows end
  for w in off adaptive fixed; do c0[$w]=$(cpu_s $w); done
  sleep "$IDLE"
  for w in off adaptive fixed; do record idle_cpu $w "$(delta "${c0[$w]}" "$(cpu_s $w)")"; done
}

echo "bench-poll: prefix $P, $ROUNDS rounds; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for w in off adaptive fixed; do start_switchyard $w; done
start_bridge
for w in $WORLDS; do
  ip netns exec "$(ns "$w" b)" iperf3 -s -D -p 5201 -I "$WORK/iperf-$w.pid"
done
sleep 0.3
for w in $WORLDS; do
  ip netns exec "$(ns "$w" a)" ping -c 2 -i 0.2 -W 2 -q $IP_B >/dev/null || { echo "no path ($w)" >&2; exit 1; }
done
set -- $WORLDS
for r in $(seq "$ROUNDS"); do
  echo "  round $r/$ROUNDS: $*" >&2
  for w in "$@"; do latency "$w"; done
  for w in "$@"; do tcp "$w" 1 tcp1; done
  for w in "$@"; do tcp "$w" 4 tcp4; done
  idle
  set -- "${@:2}" "$1" # rotate the order
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

median() { [ -s "$1" ] && sort -g "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}' || echo -; }
cell() { # metric world fmt: the median, with its ratio to the bridge's
  local v k
  v=$(median "$WORK/res.$1.$2") k=$(median "$WORK/res.$1.kb")
  awk -v v="$v" -v k="$k" -v f="$3" 'BEGIN{ if (v == "-") {print "-"; exit}
    s = sprintf(f, v); if (k != "-" && k > 0) s = s sprintf(" (%.2fx)", v / k); print s }'
}
{
  echo
  echo "switchyard polling settings vs kernel bridge, medians of $ROUNDS rounds (ratio to the bridge)"
  echo
  printf "| %-34s | %16s | %16s | %16s | %10s |\n" workload "poll_us = 0" '"adaptive"' \
    "poll_us = $FIXED_US" bridge
  echo "|------------------------------------|------------------|------------------|------------------|------------|"
  for m in "ping p50 (us)|ping_p50|%.0f" "ping p99 (us)|ping_p99|%.0f" \
    "TCP 1 stream (Gbit/s)|tcp1|%.2f" "TCP 4 streams (Gbit/s)|tcp4|%.2f" \
    "daemon CPU s during the pings|ping_cpu|%.2f" "daemon CPU s idle for ${IDLE} s|idle_cpu|%.3f"; do
    IFS='|' read -r label metric f <<<"$m"
    printf "| %-34s | %16s | %16s | %16s | %10s |\n" "$label" "$(cell $metric off "$f")" \
      "$(cell $metric adaptive "$f")" "$(cell $metric fixed "$f")" "$(cell $metric kb "$f" | cut -d' ' -f1)"
  done
} | tee "$WORK/table.md"
