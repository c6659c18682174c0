#!/usr/bin/env bash
# Forwarding speed: switchyard against the Linux kernel bridge and Open vSwitch's userspace
# datapath, side by side in one run.
#
# Builds the same two namespace hosts once per "world", all at the same time:
#   kb  a kernel bridge over veth pairs (the reference; the bridge in a namespace of its own)
#   ov  Open vSwitch's userspace datapath (datapath_type=netdev) with tap ports and its userspace
#       TSO (other_config:userspace-tso-enable=true): Debian's openvswitch-switch, run by hand
#       with a private ovsdb in a temporary directory, in a namespace of its own (OVS=0: not run)
#   sy  switchyard (release build, tap ports with GSO passthrough, the guard on)
#   mq  a second switchyard with `multi_queue = true` (MQ_CONF; one tap queue per worker) (MQ=0:
#       not run)
#   pk  a third switchyard on `kind = "packet"` ports (AF_PACKET) on veth pairs (PACKET=0: not run)
# Nothing is added to the root namespace. Then it runs the same workloads through every world,
# alternating the order (forwards in odd rounds, backwards in even ones), and prints the median
# of ROUNDS runs of each, with each world's ratio to the bridge and to Open vSwitch:
#
#   - iperf3 TCP, 1 and 4 streams, at MTU 1500 and 9000 (Gbit/s received)
#   - small UDP frames (64 B on the wire): iperf3 -u -l 18 (sender-bound near 200 kpps here) and
#     trafgen (netsniff-ng), received frame rate at the receiving host's NIC and loss
#   - ping latency p50/p99 (500 pings, 2 ms apart)
#   - CPU seconds per GB moved during the 1-stream TCP run at MTU 1500: the whole machine's busy
#     time, its softirq time (where the kernel bridge's work is done, but the two hosts' stacks
#     run there too, so it is not the bridge's alone), and the switch process's own time
#     (switchyard, ovs-vswitchd; the kernel bridge has no process)
#   - idle CPU: the switch process's CPU over IDLE_S seconds with no traffic, % of one core
#
# PROFILE=1 adds a pass after the rounds: one more TCP 1-stream run per world in PROFILE_WORLDS
# (default "sy ov": switchyard's tap world and ovs-vswitchd) under `perf record -e cpu-clock -g
# -p PID`, not counted in the table, and writes `perf report --stdio` top-symbol summaries to
# PROFILE_DIR (default target/bench/profile/WORLD.txt). The release build keeps its debug line
# tables (Cargo.toml's profile.release debug = 1); Debian's ovs-vswitchd is stripped, so its own
# functions show as addresses in ovs-vswitchd (the kernel's symbols are all there).
#
# Bounded: about 7 minutes with the defaults (five worlds); every command has a timeout; a trap
# removes the namespaces and stops every process the script started, even on failure or Ctrl-C.
#
#   sudo ./scripts/bench-forward.sh            # ROUNDS=3 DUR=3 (seconds per iperf3 run)
#   sudo ROUNDS=5 DUR=5 ./scripts/bench-forward.sh
#   sudo TESTS=latency MTUS=1500 ./scripts/bench-forward.sh   # a part only
#   sudo SWITCH_CONF="workers = 1" ./scripts/bench-forward.sh  # extra [switch] settings
#   sudo MQ=0 OVS=0 PACKET=0 ./scripts/bench-forward.sh         # switchyard and the bridge only
#   sudo PROFILE=1 MTUS=1500 ./scripts/bench-forward.sh         # and the two profiles
# The table is also drawn as an SVG chart, at $CHART (default target/bench/forward.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
TESTS=${TESTS:-"tcp udp latency"} # any of: tcp udp latency
MTUS=${MTUS:-"1500 9000"}
SWITCH_CONF=${SWITCH_CONF:-}      # extra lines for switchyard's [switch] table, e.g. "poll_us = 50"
MQ=${MQ:-1}                       # 1: also a multi-queue switchyard ("mq")
MQ_CONF=${MQ_CONF:-"multi_queue = true"} # its extra [switch] lines
OVS=${OVS:-1}                     # 1: also Open vSwitch's userspace datapath ("ov")
PACKET=${PACKET:-1}               # 1: also switchyard on packet ports over veth ("pk")
IDLE_S=${IDLE_S:-2}               # seconds of idle CPU measured per switch
PROFILE=${PROFILE:-0}             # 1: perf profiles of PROFILE_WORLDS during TCP 1 stream
PROFILE_WORLDS=${PROFILE_WORLDS:-"sy ov"}
PROFILE_DIR=${PROFILE_DIR:-target/bench/profile}
CHART=${CHART:-target/bench/forward.svg} # the table as an SVG chart (scripts/chart.py)

if [ "$(id -u)" != 0 ]; then
  echo "bench-forward.sh: run as root (it creates taps and network namespaces)" >&2
  exit 1
fi

declare -A need=([iperf3]=iperf3 [ethtool]=ethtool [trafgen]=netsniff-ng [ping]=iputils-ping
  [jq]=jq [nsenter]=util-linux [ip]=iproute2)
[ "$PROFILE" = 1 ] && need[perf]=linux-perf
# Open vSwitch is installed only to be run by hand below: a policy-rc.d that answers 101 keeps
# the package's own service from being started by the install (removed again right after).
OWN_POLICY=""
if [ "$OVS" = 1 ] && ! command -v ovs-vswitchd >/dev/null; then
  need[ovs-vswitchd]=openvswitch-switch
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    OWN_POLICY=1
  fi
fi
# shellcheck disable=SC2119 # no packages beyond the need map
install_missing || { rc=$?; [ -n "$OWN_POLICY" ] && rm -f /usr/sbin/policy-rc.d; exit "$rc"; }
[ -n "$OWN_POLICY" ] && rm -f /usr/sbin/policy-rc.d
modprobe tun 2>/dev/null || true

cargo build --release --locked -q
BIN=$PWD/target/release/switchyard

P="syf$((RANDOM % 9000 + 1000))" # unique prefix: namespaces $P-*, taps and veths $P?
IP_A=10.77.0.11 IP_B=10.77.0.12
MAC_A=52:54:00:77:00:0b MAC_B=52:54:00:77:00:0c
WORK=$(mktemp -d /tmp/bench-forward.XXXXXX)
OVS_DIR=$WORK/ovs
# Each world: its switch's namespace, its two hosts' namespaces and their interfaces.
declare -A NS_SW=([sy]=$P-sw [mq]=$P-mw [pk]=$P-pw [ov]=$P-ow [kb]=$P-br)
declare -A NS_A=([sy]=$P-sa [mq]=$P-ma [pk]=$P-pa [ov]=$P-oa [kb]=$P-ka)
declare -A NS_B=([sy]=$P-sb [mq]=$P-mb [pk]=$P-pb [ov]=$P-ob [kb]=$P-kb)
declare -A IF_A=([sy]=${P}a [mq]=${P}c [pk]=eth0 [ov]=${P}e [kb]=eth0)
declare -A IF_B=([sy]=${P}b [mq]=${P}d [pk]=eth0 [ov]=${P}f [kb]=eth0)
declare -A PORT_A=([pk]=${P}g) PORT_B=([pk]=${P}h) # packet ports: the veth peers in pk's switch
declare -A LABEL=([kb]="kernel bridge" [ov]="OVS tap+TSO" [sy]="switchyard tap"
  [mq]="switchyard tap mq" [pk]="switchyard packet")
declare -A SHORT=([kb]=bridge [ov]=OVS [sy]=tap [mq]=mq [pk]=packet)
declare -A PID=()
WORLDS="sy"
[ "$MQ" = 1 ] && WORLDS="$WORLDS mq"
[ "$PACKET" = 1 ] && WORLDS="$WORLDS pk"
[ "$OVS" = 1 ] && WORLDS="$WORLDS ov"
WORLDS="$WORLDS kb"

cleanup() {
  set +e
  for w in sy mq pk; do stop_switchyard "$w"; done
  stop_ovs
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  local ns=()
  for w in sy mq pk ov kb; do ns+=("${NS_SW[$w]}" "${NS_A[$w]}" "${NS_B[$w]}"); done
  remove_lab "$WORK" "${ns[@]}"
}
stop_switchyard() { # world
  stop_pid "${PID[$1]:-}"
  PID[$1]=""
}
stop_ovs() {
  local d
  for d in vswitchd ovsdb; do
    [ -s "$OVS_DIR/$d.pid" ] && stop_pid "$(cat "$OVS_DIR/$d.pid")"
    rm -f "$OVS_DIR/$d.pid"
  done
  PID[ov]=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the worlds -------------------------------------------------------------------------------

ports_toml() { # world
  local w=$1 h ns ifn
  for h in a b; do
    if [ "$w" = pk ]; then
      ifn=${PORT_A[pk]}
      [ $h = b ] && ifn=${PORT_B[pk]}
      printf '\n[[port]]\nname = "%s"\nkind = "packet"\nifname = "%s"\nhost = "%s"\n' "$h" "$ifn" "$h"
    else
      ns=${NS_A[$w]} ifn=${IF_A[$w]}
      [ $h = b ] && ns=${NS_B[$w]} ifn=${IF_B[$w]}
      printf '\n[[port]]\nname = "%s"\nkind = "tap"\nifname = "%s"\nhost = "%s"\nnetns = "%s"\n' \
        "$h" "$ifn" "$h" "$ns"
    fi
  done
}

# The two hosts of the packet world: a veth each, its peer in the switch's namespace.
make_veth_hosts() { # MTU
  local h ns ip mac peer
  for h in a b; do
    if [ $h = a ]; then ns=${NS_A[pk]} ip=$IP_A mac=$MAC_A peer=${PORT_A[pk]}; else
      ns=${NS_B[pk]} ip=$IP_B mac=$MAC_B peer=${PORT_B[pk]}; fi
    ip netns add "$ns"
    ip -n "$ns" link add eth0 type veth peer name "$peer" netns "${NS_SW[pk]}"
    ip -n "$ns" link set eth0 address "$mac" mtu "$1" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "${NS_SW[pk]}" link set "$peer" mtu "$1"
  done
}

is_up() { ip -n "$1" -br link show "$2" 2>/dev/null | grep -q UP; } # ns ifname

start_switchyard() { # MTU world
  local w=$2 conf=$SWITCH_CONF
  [ "$w" = mq ] && conf="$SWITCH_CONF
$MQ_CONF"
  cat >"$WORK/$w.toml" <<EOT
[network]
name = "${P}$w"
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
$(ports_toml "$w")
EOT
  nsenter --net="/run/netns/${NS_SW[$w]}" "$BIN" run --config "$WORK/$w.toml" \
    >"$WORK/$w.out" 2>"$WORK/$w.err" &
  PID[$w]=$!
  local ns=${NS_SW[$w]} ia=${PORT_A[$w]:-} ib=${PORT_B[$w]:-} nsa=${NS_SW[$w]} nsb=${NS_SW[$w]}
  if [ "$w" != pk ]; then ia=${IF_A[$w]} ib=${IF_B[$w]} nsa=${NS_A[$w]} nsb=${NS_B[$w]}; fi
  for _ in $(seq 100); do
    is_up "$nsa" "$ia" && is_up "$nsb" "$ib" && break
    kill -0 "${PID[$w]}" 2>/dev/null || { cat "$WORK/$w.err" >&2; exit 1; }
    sleep 0.1
  done
  for ns in "${NS_A[$w]}" "${NS_B[$w]}"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
}

# Open vSwitch, all private: its database, sockets, pid and log files in $OVS_DIR, its daemons
# in the namespace NS_SW[ov], its tap ports (created there by ovs-vswitchd) moved into the hosts'
# namespaces. ovs-vswitchd runs at nice -10, as ovs-ctl starts it (and as switchyard's workers run).
ovs_vsctl() { timeout 20 ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=10 "$@"; }
start_ovs() { # MTU
  local ns=${NS_SW[ov]} h t hns ip mac
  mkdir -p "$OVS_DIR"
  export OVS_RUNDIR=$OVS_DIR OVS_LOGDIR=$OVS_DIR OVS_DBDIR=$OVS_DIR
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  nsenter --net="/run/netns/$ns" ovsdb-server "$OVS_DIR/conf.db" \
    --remote="punix:$OVS_DIR/db.sock" --pidfile="$OVS_DIR/ovsdb.pid" \
    --unixctl="$OVS_DIR/ovsdb.ctl" --log-file="$OVS_DIR/ovsdb.log" --detach --no-chdir \
    2>>"$OVS_DIR/console.log"
  ovs_vsctl --no-wait init
  ovs_vsctl --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
  nsenter --net="/run/netns/$ns" nice -n -10 ovs-vswitchd "unix:$OVS_DIR/db.sock" \
    --pidfile="$OVS_DIR/vswitchd.pid" --unixctl="$OVS_DIR/vswitchd.ctl" \
    --log-file="$OVS_DIR/vswitchd.log" --detach --no-chdir 2>>"$OVS_DIR/console.log"
  PID[ov]=$(cat "$OVS_DIR/vswitchd.pid")
  ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev
  ovs_vsctl add-port br0 "${IF_A[ov]}" -- set interface "${IF_A[ov]}" type=tap \
    -- add-port br0 "${IF_B[ov]}" -- set interface "${IF_B[ov]}" type=tap
  grep -q "userspace_tso.*enabled" "$OVS_DIR/vswitchd.log" ||
    { echo "ovs-vswitchd did not enable userspace TSO:" >&2; tail "$OVS_DIR/vswitchd.log" >&2; exit 1; }
  for h in a b; do
    if [ $h = a ]; then t=${IF_A[ov]} hns=${NS_A[ov]} ip=$IP_A mac=$MAC_A; else
      t=${IF_B[ov]} hns=${NS_B[ov]} ip=$IP_B mac=$MAC_B; fi
    for _ in $(seq 50); do ip -n "$ns" link show "$t" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns add "$hns"
    ip -n "$ns" link set "$t" netns "$hns"
    ip netns exec "$hns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$hns" link set "$t" address "$mac" mtu "$1" up
    ip -n "$hns" link set lo up
    ip -n "$hns" addr add "$ip/24" dev "$t"
  done
}

start_bridge() { # MTU
  local ns ip mac br=${NS_SW[kb]}
  ip netns add "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 mtu "$1" up
  for h in a b; do
    if [ $h = a ]; then ns=${NS_A[kb]} ip=$IP_A mac=$MAC_A; else ns=${NS_B[kb]} ip=$IP_B mac=$MAC_B; fi
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link add eth0 type veth peer name "p$h" netns "$br"
    ip -n "$ns" link set eth0 address "$mac" mtu "$1" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$br" link set "p$h" mtu "$1" master br0 up
  done
}

set_mtu_bridge() { # MTU
  for ns in "${NS_A[kb]}" "${NS_B[kb]}"; do ip -n "$ns" link set eth0 mtu "$1"; done
  for d in pa pb br0; do ip -n "${NS_SW[kb]}" link set "$d" mtu "$1"; done
}

# A world at a new MTU: switchyard restarts with it (the packet world's veths first), the bridge
# and Open vSwitch's hosts only change their links (OVS reads its taps' frames into 64 KiB buffers
# with TSO on, whatever the MTU).
set_mtu() { # MTU world
  case $2 in
    kb) set_mtu_bridge "$1" ;;
    ov) ip -n "${NS_A[ov]}" link set "${IF_A[ov]}" mtu "$1"
      ip -n "${NS_B[ov]}" link set "${IF_B[ov]}" mtu "$1" ;;
    *) stop_switchyard "$2"
      if [ "$2" = pk ]; then
        for h in a b; do
          local ns=${NS_A[pk]} peer=${PORT_A[pk]}
          [ $h = b ] && ns=${NS_B[pk]} peer=${PORT_B[pk]}
          ip -n "$ns" link set eth0 mtu "$1"
          ip -n "${NS_SW[pk]}" link set "$peer" mtu "$1"
        done
      fi
      start_switchyard "$1" "$2" ;;
  esac
}

start_world() { # MTU world
  case $2 in
    kb) start_bridge "$1" ;;
    ov) ip netns add "${NS_SW[ov]}"; start_ovs "$1" ;;
    pk) ip netns add "${NS_SW[pk]}"; make_veth_hosts "$1"; start_switchyard "$1" pk ;;
    *) ip netns add "${NS_SW[$2]}"; start_switchyard "$1" "$2" ;;
  esac
}

ns_a() { echo "${NS_A[$1]}"; }
ns_b() { echo "${NS_B[$1]}"; }
if_a() { echo "${IF_A[$1]}"; }
if_b() { echo "${IF_B[$1]}"; }
pid_of() { echo "${PID[$1]:-}"; }

start_iperf_server() { # world
  kill "$(cat "$WORK/iperf-$1.pid" 2>/dev/null)" 2>/dev/null || true
  rm -f "$WORK/iperf-$1.pid"
  ip netns exec "$(ns_b "$1")" iperf3 -s -D -p 5201 -I "$WORK/iperf-$1.pid"
}

# ---- measurements -----------------------------------------------------------------------------

record() { echo "$3" >>"$WORK/res.$1.$2"; } # metric world value

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
softirq_jiffies() { awk '/^cpu /{print $8}' /proc/stat; }
proc_jiffies() { awk '{print $14+$15}' "/proc/$1/stat"; } # all the process's threads
HZ=$(getconf CLK_TCK)
per_gb() { awk -v d="$1" -v hz="$HZ" -v gb="$2" 'BEGIN{print d / hz / gb}'; } # jiffies GB

tcp() { # world streams metric [cpu]
  local w=$1 j t0 s0 p0 pid
  pid=$(pid_of "$w")
  t0=$(busy_jiffies)
  s0=$(softirq_jiffies)
  [ -n "$pid" ] && p0=$(proc_jiffies "$pid")
  j=$(timeout $((DUR + 15)) ip netns exec "$(ns_a "$w")" \
    iperf3 -c $IP_B -p 5201 -t "$DUR" -P "$2" -J) || { echo "iperf3 failed ($w, $3)" >&2; return; }
  record "$3" "$w" "$(jq '.end.sum_received.bits_per_second / 1e9' <<<"$j")"
  if [ "${4:-}" = cpu ]; then
    local gb
    gb=$(jq '.end.sum_received.bytes / 1e9' <<<"$j")
    record cpu_sys "$w" "$(per_gb $(($(busy_jiffies) - t0)) "$gb")"
    record cpu_si "$w" "$(per_gb $(($(softirq_jiffies) - s0)) "$gb")"
    [ -n "$pid" ] && record cpu_proc "$w" "$(per_gb $(($(proc_jiffies "$pid") - p0)) "$gb")"
  fi
  return 0
}

# The switch process's CPU with no traffic at all, % of one core over IDLE_S seconds.
idle_cpu() {
  local w pid
  declare -A p0=()
  for w in $WORLDS; do pid=$(pid_of "$w"); [ -n "$pid" ] && p0[$w]=$(proc_jiffies "$pid"); done
  sleep "$IDLE_S"
  for w in "${!p0[@]}"; do
    record idle_pct "$w" "$(awk -v d=$(($(proc_jiffies "$(pid_of "$w")") - p0[$w])) -v hz="$HZ" \
      -v s="$IDLE_S" 'BEGIN{print 100 * d / hz / s}')"
  done
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
  cat >"$WORK/trafgen.cfg" <<EOT
{ eth(da=$MAC_B, sa=$MAC_A), ipv4(saddr=$IP_A, daddr=$IP_B, ttl=64), udp(sport=9, dport=9), fill(0x00, 18) }
EOT
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
    # shellcheck disable=SC2086,SC2046 # WORLDS is a list
    if [ $((r % 2)) = 1 ]; then round "$1" $WORLDS; else round "$1" $(echo $WORLDS | tr ' ' '\n' | tac); fi
  done
}

perf_top() { # world GB N perf-report-options...: the first N lines of a flat report, each with
  # the CPU time it stands for per GB moved (cpu-clock's event count is in ns)
  local w=$1 gb=$2 n=$3 ev
  shift 3
  perf report -i "$WORK/perf.$w.data" --stdio -g none "$@" >"$WORK/report.$w" 2>/dev/null || true
  ev=$(sed -n 's/^# Event count (approx.): //p' "$WORK/report.$w" | head -1)
  awk -v n="$n" -v ev="${ev:-0}" -v gb="$gb" '/^ +[0-9]/ && k++ < n {
    p = $1; sub("%", "", p); printf "%7.1f ms/GB %s\n", (gb > 0 ? p / 100 * ev / 1e6 / gb : 0), $0 }' \
    "$WORK/report.$w"
}

SYSCALLS=raw_syscalls:sys_enter
for c in epoll_wait poll ppoll read readv write writev recvmsg recvmmsg sendmsg sendmmsg; do
  SYSCALLS="$SYSCALLS,syscalls:sys_enter_$c"
done

# One more TCP 1-stream run per profiled world under perf (cpu-clock: a VM may have no hardware
# counters), not counted in the table; the summaries name the symbols the samples fell in.
profiles() {
  local w pid j out
  mkdir -p "$PROFILE_DIR"
  for w in $PROFILE_WORLDS; do
    pid=$(pid_of "$w")
    case " $WORLDS " in *" $w "*) ;; *) continue ;; esac
    [ -n "$pid" ] || { echo "no process to profile in world $w" >&2; continue; }
    out=$PROFILE_DIR/$w.txt
    timeout $((DUR + 20)) perf record -q -e cpu-clock -g -p "$pid" -o "$WORK/perf.$w.data" \
      -- sleep "$((DUR + 1))" 2>"$WORK/perf.$w.err" &
    local perf_pid=$! stat_pid
    # The same window counted by system call (tracepoints, no sampling): how often each daemon
    # enters the kernel per GB, and with which calls.
    timeout $((DUR + 20)) perf stat -x, -o "$WORK/stat.$w" -p "$pid" -e "$SYSCALLS" \
      -- sleep "$((DUR + 1))" 2>/dev/null &
    stat_pid=$!
    sleep 0.5
    j=$(timeout $((DUR + 15)) ip netns exec "$(ns_a "$w")" iperf3 -c $IP_B -p 5201 -t "$DUR" -J) ||
      j='{"end":{"sum_received":{"bits_per_second":0,"bytes":0}}}'
    wait "$stat_pid" || echo "perf stat failed ($w): no system call counts" >&2
    wait "$perf_pid" || { echo "perf record failed ($w):" >&2; cat "$WORK/perf.$w.err" >&2; continue; }
    local gb ev
    gb=$(jq '.end.sum_received.bytes / 1e9' <<<"$j")
    perf report -i "$WORK/perf.$w.data" --stdio -g none --sort dso >"$WORK/report.$w" 2>/dev/null || true
    ev=$(sed -n 's/^# Event count (approx.): //p' "$WORK/report.$w" | head -1)
    {
      echo "# ${LABEL[$w]} (pid $pid), TCP 1 stream at MTU 1500 under perf record -e cpu-clock -g:"
      echo "# $(jq '.end.sum_received.bits_per_second / 1e9' <<<"$j") Gbit/s, $gb GB moved;" \
        "$(awk -v ev="${ev:-0}" -v gb="$gb" 'BEGIN{printf "%.2f s of CPU sampled, %.3f s/GB", ev / 1e9, (gb > 0 ? ev / 1e9 / gb : 0)}')"
      echo "## by shared object"
      perf_top "$w" "$gb" 8 --no-children --sort dso
      echo "## system calls per GB (perf stat, tracepoints)"
      awk -F, -v gb="$gb" '$3 ~ /sys_enter/ && $1 + 0 > 0 {
        printf "%10.0f /GB  %s\n", (gb > 0 ? $1 / gb : 0), $3 }' "$WORK/stat.$w" 2>/dev/null || true
      echo "## top symbols (self)"
      perf_top "$w" "$gb" 40 --no-children --sort dso,sym
      echo "## top symbols with what they call (children)"
      perf_top "$w" "$gb" 30 --children --sort sym
    } >"$out"
    echo "profile: $out" >&2
  done
}

# ---- run --------------------------------------------------------------------------------------

echo "bench-forward: prefix $P, worlds $WORLDS, $ROUNDS rounds of ${DUR}s; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for w in $WORLDS; do start_world 1500 "$w"; done
for w in $WORLDS; do start_iperf_server "$w"; done
sleep 0.3
for w in $WORLDS; do
  ip netns exec "$(ns_a "$w")" ping -c 2 -i 0.2 -W 2 -q $IP_B >/dev/null || { echo "no path ($w)" >&2; exit 1; }
done
idle_cpu
case " $MTUS " in *" 1500 "*) rounds 1500 ;; esac
if [ "$PROFILE" = 1 ] && [[ " $MTUS " == *" 1500 "* ]]; then profiles; fi

if [[ " $MTUS " == *" 9000 "* ]]; then
  for w in $WORLDS; do
    set_mtu 9000 "$w"
    start_iperf_server "$w"
  done
  sleep 0.3
  for w in $WORLDS; do
    ip netns exec "$(ns_a "$w")" ping -c 2 -i 0.2 -W 2 -q -s 8000 $IP_B >/dev/null ||
      { echo "no path at MTU 9000 ($w)" >&2; exit 1; }
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
# shellcheck disable=SC2059 # the format is the caller's
fmt() { if [ "$2" = - ]; then echo -; else printf "$1" "$2"; fi; } # fmt value

# Column order: the bridge, OVS, then the switchyard worlds; ratios after the values.
SHOWN=""
for w in kb ov sy mq pk; do case " $WORLDS " in *" $w "*) SHOWN="$SHOWN $w" ;; esac; done
RATIOS="" # pairs world:reference
for w in $SHOWN; do [ "$w" != kb ] && RATIOS="$RATIOS $w:kb"; done
if [ "$OVS" = 1 ]; then
  for w in $SHOWN; do case $w in kb | ov) ;; *) RATIOS="$RATIOS $w:ov" ;; esac; done
fi

line() { # cells... : one Markdown table row
  local out="|" c
  for c in "$@"; do out="$out $c |"; done
  echo "$out"
}

header() {
  local cells=(workload) sep="|---|" w p
  for w in $SHOWN; do cells+=("${LABEL[$w]}"); sep="$sep---:|"; done
  for p in $RATIOS; do cells+=("${SHORT[${p%:*}]} / ${SHORT[${p#*:}]}"); sep="$sep---:|"; done
  line "${cells[@]}"
  echo "$sep"
}

# The same rows for scripts/chart.py, which writes one ratio beside each bar: every world but
# the bridge followed by its ratio to the bridge, the bridge last.
chart_header() {
  local cells=(workload) sep="|---|" w
  for w in $SHOWN; do [ "$w" != kb ] && { cells+=("${LABEL[$w]}" ratio); sep="$sep---:|---:|"; }; done
  cells+=("${LABEL[kb]}")
  line "${cells[@]}"
  echo "$sep---:|"
}

row() { # label metric fmt
  local w p cells=("$1") chart=("$1") any=""
  declare -A v=()
  for w in $SHOWN; do
    v[$w]=$(median "$WORK/res.$2.$w")
    [ "${v[$w]}" != - ] && any=1
  done
  [ -n "$any" ] || return 0 # not measured in this run (TESTS, MTUS)
  for w in $SHOWN; do cells+=("$(fmt "$3" "${v[$w]}")"); done
  for p in $RATIOS; do cells+=("$(ratio "${v[${p%:*}]}" "${v[${p#*:}]}")"); done
  line "${cells[@]}" >>"$WORK/table.md"
  for w in $SHOWN; do
    [ "$w" != kb ] && chart+=("$(fmt "$3" "${v[$w]}")" "$(ratio "${v[$w]}" "${v[kb]}" | tr -d x)")
  done
  chart+=("$(fmt "$3" "${v[kb]}")")
  line "${chart[@]}" >>"$WORK/chart.md"
}

{
  echo
  echo "Forwarding, medians of $ROUNDS runs of ${DUR}s (ratios: the world on the left / the one on the right)"
  echo
  header
} >"$WORK/table.md"
{
  echo "Forwarding, medians of $ROUNDS runs of ${DUR}s (ratios: against the kernel bridge)"
  echo
  chart_header
} >"$WORK/chart.md"
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
row "CPU s/GB, TCP 1 stream, softirq (all)" cpu_si "%.2f"
row "CPU s/GB, TCP 1 stream, switch process" cpu_proc "%.2f"
row "idle CPU, switch process (% of a core)" idle_pct "%.1f"
cat "$WORK/table.md"
write_chart "$WORK/chart.md" "$CHART" "Forwarding: switchyard, Open vSwitch and the kernel bridge ($(date -u +%F), $ROUNDS rounds of ${DUR}s)"
echo
echo "Kernel drops at the hosts' interfaces (tx_dropped: frames the switch did not take in time), last phase:"
for w in $SHOWN; do
  [ "$w" = kb ] && continue
  printf "  %s: a %s, b %s\n" "${LABEL[$w]}" \
    "$(ip netns exec "$(ns_a "$w")" cat "/sys/class/net/$(if_a "$w")/statistics/tx_dropped")" \
    "$(ip netns exec "$(ns_b "$w")" cat "/sys/class/net/$(if_b "$w")/statistics/tx_dropped")"
done
for w in sy mq pk; do
  case " $WORLDS " in *" $w "*) ;; *) continue ;; esac
  echo "${LABEL[$w]}: its counters, per port (and per worker and queue), last phase:"
  stop_switchyard "$w"
  grep -E "^(PORT|a|b|WORKER|sy-worker-[0-9]+|queue-[0-9]+) " "$WORK/$w.out" || true
done
