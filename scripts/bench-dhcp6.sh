#!/usr/bin/env bash
# DHCPv6 exchanges a second, switchyard against Kea's kea-dhcp6, side by side in one run.
#
#   ./scripts/bench-dhcp6.sh                 # as root (no sudo needed): 1000 clients, 3 runs
#   CLIENTS="100 1000" RUNS=1 RATES="1000" ./scripts/bench-dhcp6.sh
#
# perfdhcp -6 (Debian kea-admin) drives full SOLICIT-ADVERTISE-REQUEST-REPLY exchanges (4-way,
# no rapid commit, one IA_NA each) in direct mode (-l IFNAME: from the interface's link-local
# to ff02::1:2) from a client namespace for PERIOD seconds at each rate in RATES, with CLIENTS
# distinct DUIDs, and the script reports per server the SOLICIT-ADVERTISE and REQUEST-REPLY
# exchanges a second (received ADVERTISEs / REPLYs over PERIOD), their drop ratios, and, at the
# lowest rate (perfdhcp -x t), the median delay of each exchange.
#
#   switchyard: client ns --tap--> switchyard (its own ns, via nsenter); [dhcp6] pool of
#               10,238 addresses in fd00:13:32::/64, every REPLY that commits a binding leaves
#               after leases6.journal has it on disk (fdatasync)
#   kea:        client ns --veth--> server ns running kea-dhcp6 (Kea 2.2) on the same pool,
#               memfile with persist = true (appends a CSV line per change, no fsync),
#               multi-threaded with 2 threads, as scripts/bench-dhcp.sh runs kea-dhcp4
#
# Both keep their state in the same temp dir (same file system); each try starts its server
# fresh (empty state). kea-dhcp6-server is installed if missing with services kept from
# starting (policy-rc.d) and its systemd unit disabled and stopped: only the copy this script
# starts by hand, with its private config, runs. Traffic stays inside namespaces the script
# creates (unique names); a trap removes every namespace, process and temp file, also on
# failure or Ctrl-C. Nothing is added to the root namespace. Every perfdhcp run is bounded
# (timeout PERIOD + 30 s).
#
# A run of a cell tries every rate in RATES and keeps the best REQUEST-REPLY rate (an
# overloaded server can do less than its best; an underloaded one is capped by the offered
# rate); the cell is the median of RUNS runs, servers alternating within a run.
#
# Knobs (environment): CLIENTS ("1000"), RUNS (3), PERIOD (10 s), RATES ("1000 4000"),
# SWITCHYARD (default: target/release/switchyard, built first), KEEP_LOGS=1 (keep the temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

CLIENTS=${CLIENTS:-"1000"}
RUNS=${RUNS:-3}
PERIOD=${PERIOD:-10}
RATES=${RATES:-"1000 4000"}
if [ -z "${SWITCHYARD:-}" ]; then
  BUILD=1
  SWITCHYARD=target/release/switchyard
fi

if [ "$(id -u)" != 0 ]; then
  echo "bench-dhcp6.sh: run as root (it creates network namespaces and taps)" >&2
  exit 1
fi

# Tools: command -> Debian package; installed only when missing.
declare -A need=([perfdhcp]=kea-admin [nsenter]=util-linux [ip]=iproute2 [ss]=iproute2
  [timeout]=coreutils)
install_missing
if ! command -v kea-dhcp6 >/dev/null 2>&1; then
  # The package would start (and enable) its own kea-dhcp6 on the machine's interfaces: keep
  # its maintainer scripts from starting anything while it installs.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kea-dhcp6-server || true
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  command -v kea-dhcp6 >/dev/null 2>&1 || { echo "bench-dhcp6.sh: kea-dhcp6 did not install" >&2; exit 1; }
fi
# Never leave the distribution's service running or enabled (works with or without systemd).
systemctl disable --now kea-dhcp6-server >/dev/null 2>&1 || true
modprobe tun 2>/dev/null || true
if [ "${BUILD:-0}" = 1 ]; then
  cargo build --release --locked # never measure a stale binary
fi
[ -x "$SWITCHYARD" ] || { echo "bench-dhcp6.sh: $SWITCHYARD is not an executable" >&2; exit 1; }
SWITCHYARD=$(realpath "$SWITCHYARD")

# ---- names, temp dir, cleanup -------------------------------------------------------------
TAG="sy6$(($$ % 100000))"
NS_SW="$TAG-sw" # switchyard runs here
NS_C1="$TAG-c1" # perfdhcp against switchyard (holds the tap)
NS_KS="$TAG-ks" # kea-dhcp6 runs here
NS_C2="$TAG-c2" # perfdhcp against Kea (holds one end of the veth)
TAP="${TAG}t"   # <= 15 bytes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-dhcp6.XXXXXX")
SW_PID=""
KS_PID=""
PD_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PD_PID"
  stop_pid "$SW_PID"
  stop_pid "$KS_PID"
  remove_lab "$TMP" "$NS_C1" "$NS_C2" "$NS_KS" "$NS_SW"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
  echo "bench-dhcp6.sh: $*" >&2
  exit 1
}

# ---- the pool: fd00:13:32::1:0 .. fd00:13:32::1:27fd = 10,238 addresses (as bench-dhcp.sh) --
SUBNET6=fd00:13:32::/64
GW6=fd00:13:32::1
POOL_LO=fd00:13:32::1:0
POOL_HI=fd00:13:32::1:27fd
POOL_SIZE=10238
[ $((0x27fd + 1)) = $POOL_SIZE ] || die "pool arithmetic is off"

# ---- topology ---------------------------------------------------------------------------
for ns in "$NS_SW" "$NS_C1" "$NS_KS" "$NS_C2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$NS_C2" link add c0 type veth peer name s0 netns "$NS_KS"
ip -n "$NS_KS" addr add "$GW6/64" dev s0 nodad
ip -n "$NS_KS" link set s0 up
ip -n "$NS_C2" link set c0 up

# wait_ll NS IFNAME: until the interface has a link-local address past DAD (perfdhcp -6 and
# kea-dhcp6 bind to it).
wait_ll() {
  for _ in $(seq 100); do
    if ip -n "$1" -6 addr show dev "$2" scope link 2>/dev/null | grep -q 'inet6' &&
      ! ip -n "$1" -6 addr show dev "$2" 2>/dev/null | grep -q tentative; then
      return 0
    fi
    sleep 0.1
  done
  die "no link-local address on $2 in $1 within 10 s"
}
wait_ll "$NS_KS" s0
wait_ll "$NS_C2" c0

# ---- one server at a time ----------------------------------------------------------------
start_switchyard() { # dir: fresh state dir, wait for the tap in the client namespace
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/switchyard.toml" <<EOF
[network]
name = "$TAG"
subnet = "10.13.0.0/18"
gateway = "10.13.0.1"
subnet6 = "$SUBNET6"
gateway6 = "$GW6"
domain = "bench.test"

[switch]
# perfdhcp sends every SOLICIT and REQUEST to a multicast group: flooded, like broadcasts.
storm_limit = "off"

[dhcp]
state_dir = "$dir/state"
rate_limit = "off"

[ra]
mode = "ra-stateful"

[dhcp6]
pool = ["$POOL_LO", "$POOL_HI"]
lease_time = "1h"

[[port]]
name = "client"
kind = "tap"
ifname = "$TAP"
netns = "$NS_C1"
address = "none"
trusted = true
EOF
  RUST_LOG=warn nsenter --net="/run/netns/$NS_SW" "$SWITCHYARD" run --config "$dir/switchyard.toml" \
    >"$dir/stdout" 2>"$dir/stderr" &
  SW_PID=$!
  for _ in $(seq 150); do
    if ip -n "$NS_C1" -br link show dev "$TAP" 2>/dev/null | grep -q UP; then
      wait_ll "$NS_C1" "$TAP"
      return 0
    fi
    kill -0 "$SW_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "switchyard exited at start"; }
    sleep 0.1
  done
  cat "$dir/stderr" >&2
  die "the tap $TAP did not come up in $NS_C1 within 15 s"
}

stop_switchyard() {
  stop_pid "$SW_PID"
  SW_PID=""
  for _ in $(seq 50); do
    ip -n "$NS_C1" link show dev "$TAP" >/dev/null 2>&1 || return 0
    sleep 0.1
  done
}

start_kea() { # dir: kea-dhcp6 with a private config, state and lock files in dir
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/kea6.json" <<EOF
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "s0" ] },
  "data-directory": "$dir",
  "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases6.csv",
                      "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2,
                       "packet-queue-size": 256 },
  "preferred-lifetime": 3600,
  "valid-lifetime": 3600,
  "subnet6": [ { "id": 1, "subnet": "$SUBNET6", "interface": "s0",
                 "pools": [ { "pool": "$POOL_LO - $POOL_HI" } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "severity": "WARN",
                 "output_options": [ { "output": "$dir/log" } ] } ]
} }
EOF
  KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir ip netns exec "$NS_KS" kea-dhcp6 -c "$dir/kea6.json" \
    >"$dir/stdout" 2>"$dir/stderr" &
  KS_PID=$!
  for _ in $(seq 100); do
    if ip netns exec "$NS_KS" ss -Hlun 'sport = :547' 2>/dev/null | grep -q .; then
      return 0
    fi
    kill -0 "$KS_PID" 2>/dev/null || { cat "$dir/stderr" "$dir/log" >&2 2>/dev/null || true; die "kea-dhcp6 exited at start"; }
    sleep 0.1
  done
  die "kea-dhcp6 did not listen on :547 within 10 s"
}

stop_kea() {
  stop_pid "$KS_PID"
  KS_PID=""
}

# exchange_medians FILE: from perfdhcp's -x t timestamps, the median delay (ms) of each
# exchange type, one "TYPE MEDIAN" a line (as scripts/bench-dhcp.sh).
exchange_medians() {
  awk '/^\*\*\*Timestamps for packets: / { t = $0; sub(/^.*packets: /, "", t); sub(/\*+$/, "", t)
      gsub(/ \(/, "-", t); gsub(/[()]/, "", t); next }
    /^\*\*\*/ { t = "" }
    t != "" && /^sent \/ received:/ { print t, ($6 - $4) * 1000 }' "$1" |
    sort -k1,1 -k2,2g |
    awk '{ v[$1, ++n[$1]] = $2 } END { for (t in n) printf "%s %.3f\n", t, v[t, int((n[t] + 1) / 2)] }'
}

# stat FILE EXCHANGE FIELD: a line of perfdhcp's statistics block for EXCHANGE
# ("SOLICIT-ADVERTISE", "REQUEST-REPLY"): "received packets" or "drops ratio".
stat() {
  awk -v x="$2" -v f="$3" '/^\*\*\*Statistics for: / { s = $0 }
    index(s, x) && index($0, f ":") == 1 { sub(/^[^:]*: */, ""); sub(/ .*/, ""); print; exit }' "$1"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_perfdhcp NS IFNAME CLIENTS RATE OUT SERVER_PID TIMERS: sets SA, RR (exchanges/s), SA_DROP,
# RR_DROP (%), LAT_SA, LAT_RR (ms medians with TIMERS=1), CPU.
run_perfdhcp() {
  local ns=$1 ifname=$2 clients=$3 rate=$4 out=$5 server=$6 timers=$7 rc=0 t0 t1 c0 c1 extra=()
  if [ "$timers" = 1 ]; then extra+=(-x t); fi
  t0=$(date +%s%N)
  c0=$(cpu_ticks "$server")
  ip netns exec "$ns" timeout $((PERIOD + 30)) \
    perfdhcp -6 -l "$ifname" -R "$clients" -r "$rate" "${extra[@]}" -p "$PERIOD" -W 1000000 >"$out" 2>&1 &
  PD_PID=$!
  wait "$PD_PID" || rc=$?
  PD_PID=""
  c1=$(cpu_ticks "$server")
  t1=$(date +%s%N)
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    cat "$out" >&2
    die "perfdhcp -6 failed (exit $rc) in $ns"
  fi
  CPU="server $(((c1 - c0) * 1000000000 / $(getconf CLK_TCK) * 100 / (t1 - t0)))%"
  local sa rr
  sa=$(stat "$out" SOLICIT-ADVERTISE "received packets")
  rr=$(stat "$out" REQUEST-REPLY "received packets")
  [ -n "$sa" ] || { cat "$out" >&2; die "no SOLICIT-ADVERTISE statistics in perfdhcp's output"; }
  SA=$(awk -v n="$sa" -v p="$PERIOD" 'BEGIN { printf "%.0f", n / p }')
  RR=$(awk -v n="${rr:-0}" -v p="$PERIOD" 'BEGIN { printf "%.0f", n / p }')
  SA_DROP=$(stat "$out" SOLICIT-ADVERTISE "drops ratio")
  RR_DROP=$(stat "$out" REQUEST-REPLY "drops ratio")
  LAT_SA=- LAT_RR=-
  if [ "$timers" = 1 ]; then
    exchange_medians "$out" >"$out.lat"
    LAT_SA=$(awk '$1 == "SOLICIT-ADVERTISE" { print $2 }' "$out.lat")
    LAT_RR=$(awk '$1 == "REQUEST-REPLY" { print $2 }' "$out.lat")
    : "${LAT_SA:=-}" "${LAT_RR:=-}"
    sed -i '/^\*\*\*Timestamps for packets:/,$d' "$out"
  fi
}

try() { # server clients run rate timers
  local server=$1 n=$2 run=$3 rate=$4 timers=$5 d
  d=$TMP/$server.$n.$run.$rate
  if [ "$server" = switchyard ]; then
    start_switchyard "$d"
    run_perfdhcp "$NS_C1" "$TAP" "$n" "$rate" "$d/perfdhcp.out" "$SW_PID" "$timers"
    stop_switchyard
  else
    start_kea "$d"
    run_perfdhcp "$NS_C2" c0 "$n" "$rate" "$d/perfdhcp.out" "$KS_PID" "$timers"
    stop_kea
  fi
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

LAT_RATE=$(tr -s ' ' '\n' <<<"$RATES" | sort -n | head -1)
echo "DHCPv6 benchmark: perfdhcp -6 4-way (SOLICIT-ADVERTISE, REQUEST-REPLY), ${PERIOD}s per try, best of -r $RATES, pool $POOL_SIZE"
echo "switchyard $($SWITCHYARD --version 2>/dev/null | awk '{print $2}'), Kea $(kea-dhcp6 -v), perfdhcp $(perfdhcp -v 2>&1 | awk '{print $2}'), $(nproc) cores, state on $(findmnt -no FSTYPE -T "$TMP")"
echo "load before: $(uptime)"
declare -A CELL
for n in $CLIENTS; do
  declare -A rr_of=() sa_of=() sad_of=() rrd_of=() lsa_of=() lrr_of=()
  for run in $(seq "$RUNS"); do
    # Alternate which server goes first, so a load change hurts both alike.
    order="switchyard kea"
    if [ $((run % 2)) = 0 ]; then order="kea switchyard"; fi
    for server in $order; do
      best_rr=-1 best_sa=0 best_sad=- best_rrd=-
      for rate in $RATES; do
        timers=0
        if [ "$rate" = "$LAT_RATE" ]; then timers=1; fi
        try "$server" "$n" "$run" "$rate" "$timers"
        printf '    clients %s run %s -r %s: %-10s S-A %5s/s (drops %s%%), R-R %5s/s (drops %s%%), median S-A %s ms R-R %s ms (%s)\n' \
          "$n" "$run" "$rate" "$server" "$SA" "$SA_DROP" "$RR" "$RR_DROP" "$LAT_SA" "$LAT_RR" "$CPU"
        if [ "$timers" = 1 ]; then
          lsa_of[$server]+="$LAT_SA "
          lrr_of[$server]+="$LAT_RR "
        fi
        if [ "$RR" -gt "$best_rr" ]; then
          best_rr=$RR best_sa=$SA best_sad=$SA_DROP best_rrd=$RR_DROP
        fi
      done
      rr_of[$server]+="$best_rr "
      sa_of[$server]+="$best_sa "
      sad_of[$server]+="$best_sad "
      rrd_of[$server]+="$best_rrd "
    done
  done
  for server in switchyard kea; do
    # shellcheck disable=SC2086
    {
      CELL[$n.$server.rr]=$(median ${rr_of[$server]})
      CELL[$n.$server.sa]=$(median ${sa_of[$server]})
      CELL[$n.$server.sad]=$(median ${sad_of[$server]})
      CELL[$n.$server.rrd]=$(median ${rrd_of[$server]})
      CELL[$n.$server.lsa]=$(median ${lsa_of[$server]})
      CELL[$n.$server.lrr]=$(median ${lrr_of[$server]})
    }
  done
  unset rr_of sa_of sad_of rrd_of lsa_of lrr_of
done
echo "load after: $(uptime)"

if [ "$RUNS" -gt 1 ]; then what="median of $RUNS runs"; else what="1 run"; fi
echo
echo "DHCPv6 exchanges a second, best rate of -r $RATES ($what per cell); drops at that rate;"
echo "median delays at -r $LAT_RATE:"
echo
echo "| clients | server | SOLICIT-ADVERTISE /s | REQUEST-REPLY /s | drops S-A / R-R | median S-A ms | median R-R ms |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for n in $CLIENTS; do
  for s in switchyard kea; do
    echo "| $n | $s | ${CELL[$n.$s.sa]} | ${CELL[$n.$s.rr]} | ${CELL[$n.$s.sad]} % / ${CELL[$n.$s.rrd]} % | ${CELL[$n.$s.lsa]} | ${CELL[$n.$s.lrr]} |"
  done
  ratio=$(awk -v a="${CELL[$n.switchyard.rr]}" -v b="${CELL[$n.kea.rr]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  ratio_sa=$(awk -v a="${CELL[$n.switchyard.sa]}" -v b="${CELL[$n.kea.sa]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  echo "| $n | **switchyard / Kea** | **$ratio_sa** | **$ratio** | | | |"
done
echo
echo "switchyard's REPLYs are durable (fdatasync of leases6.journal before each leaves); Kea's"
echo "memfile appends without fsync."
