#!/usr/bin/env bash
# DHCP leases a second, switchyard against dnsmasq, Kea and ISC dhcpd, side by side in one run.
#
#   sudo ./scripts/bench-dhcp.sh            # 100, 1000 and 10000 clients, median of 3 runs a cell
#   sudo CLIENTS="1000" RUNS=1 PEERS="dnsmasq kea" ./scripts/bench-dhcp.sh
#
# The tables are also drawn as an SVG chart, at $CHART (default target/bench/dhcp.svg).
#
# perfdhcp (Debian kea-admin) drives full DORA exchanges in direct mode (-l IFNAME, broadcast)
# from a client namespace for PERIOD seconds at each rate in RATES, with CLIENTS distinct MACs,
# and reports completed 4-way exchanges a second (every ACK is a lease granted or extended),
# with the CPU the server and perfdhcp used (percent of one core) in the per-run lines.
#
#   switchyard: client ns --tap--> switchyard (run in its own ns via nsenter); [dhcp] pool of
#               10,238 addresses in 10.13.0.0/18, rate_limit = "off", the port trusted
#               (a relay port: no per-port lease cap)
#   peers:      client ns --veth--> server ns running one peer at a time on the same pool:
#               dnsmasq 2.90 (lease file on: rewrites it on every change), Kea 2.2 kea-dhcp4
#               (memfile with persist = true: appends a CSV line per change, no fsync;
#               multi-threaded, 2 threads), ISC dhcpd 4.4 (its lease file, fsynced on commit;
#               ping-check false, as dnsmasq runs with --no-ping: no server pings before an offer)
#
# Both servers keep their lease state in the same temp dir (same file system); switchyard
# fsyncs its journal before every ACK leaves (one fsync per batch of queued messages: group
# commit), dnsmasq rewrites its lease file on every change. Each run
# starts both servers fresh (empty state). Traffic stays inside namespaces the script creates
# (unique names); a trap removes every namespace, process and temp file, also on failure or
# Ctrl-C. Nothing is added to the root namespace.
#
# A run of a cell tries every rate in RATES (the exchanges/s perfdhcp offers) and keeps the best
# completed rate: an overloaded server can do less than its best (stale requests, deep queues),
# and an underloaded one is capped by the offered rate. (perfdhcp's Rate, the DORA figure,
# divides by its whole test period, PERIOD plus the 1 s -W wait for late answers: it reads
# PERIOD / (PERIOD + 1) of the ACKs a second sent in, the same for every server.)
#
# Renew mix (RENEW): in the cells of the clients counts listed in RENEW, each server also gets
# one try per rate R in RATES of perfdhcp -r R -f R: DORAs at R a second plus renewal REQUESTs
# (ciaddr set, for leases perfdhcp acquired in that try; each lease is renewed at most once) at
# up to R a second, and the cell keeps the best renewal ACKs a second (received renewal ACKs /
# PERIOD; a NAK is not counted; the DORA ACKs on those lines are counted the same way). As
# perfdhcp renews only leases it got in that try, renewals a second are at most its DORAs a
# second: a server that falls behind on DORAs gets fewer renewals to answer. Default: at 1000
# clients only, which adds a try per rate and server to that cell (some 2 x 4 x 12 s a run by
# default); RENEW=all: every cell; RENEW=0: off.
#
# Delays: perfdhcp prints min/avg/max/std of each exchange's delay, no median; with -x t it
# lists every exchange's send and receive times, from which this script takes real medians. As
# -x t keeps every packet in memory (some 8 KB an exchange: ~350 MB at 2000/s for 10 s), it is
# only given at the lowest rate in RATES, in the DORA try and in the renew-mix try.
# The table reports the median REQUEST-ACK delay there (a lease committed), per run lines also
# DISCOVER-OFFER; a "*" marks a server that left over 1% of them unanswered at that rate (its
# delay then includes queueing; it is not taken as the fastest peer). Lower is better:
# switchyard / fastest peer below 1 is a win.
#
# Knobs (environment): CLIENTS ("100 1000 10000"), RUNS (3), PERIOD (10 s), RATES ("2000
# 10000"), RENEW ("1000", above), PEERS ("dnsmasq kea dhcpd"), SWITCHYARD (default: target/release/switchyard, built
# first), BASE (below), CAPTURE=1 (a pcap of the client side), KEEP_LOGS=1 (keep the temp dir with every log, perfdhcp report,
# the client namespace's UDP counters (*.udp) and switchyard's port counters, and print its path).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

CLIENTS=${CLIENTS:-"100 1000 10000"}
PEERS=${PEERS:-"dnsmasq kea dhcpd"}
RUNS=${RUNS:-3}
PERIOD=${PERIOD:-10}
RATES=${RATES:-"2000 10000"}
RENEW=${RENEW-1000}
CHART=${CHART:-target/bench/dhcp.svg} # the tables as an SVG chart (scripts/chart.py)
if [ -z "${SWITCHYARD:-}" ]; then
  BUILD=1
  SWITCHYARD=target/release/switchyard
fi

if [ "$(id -u)" != 0 ]; then
  echo "bench-dhcp.sh: run as root (it creates network namespaces and taps)" >&2
  exit 1
fi

# Tools: command -> Debian package; installed only when missing.
declare -A need=([perfdhcp]=kea-admin [dnsmasq]=dnsmasq-base [kea-dhcp4]=kea-dhcp4-server
  [dhcpd]=isc-dhcp-server [nsenter]=util-linux [ip]=iproute2 [ss]=iproute2 [timeout]=coreutils
  [/usr/bin/time]=time)
install_missing
modprobe tun 2>/dev/null || true
if [ "${BUILD:-0}" = 1 ]; then
  cargo build --release --locked # never measure a stale binary
fi
[ -x "$SWITCHYARD" ] || { echo "bench-dhcp.sh: $SWITCHYARD is not an executable" >&2; exit 1; }
SWITCHYARD=$(realpath "$SWITCHYARD")
# BASE=PATH: another switchyard binary (e.g. the previous commit's), measured as one more peer
# named "base" in the same run: a before/after comparison under the same load.
if [ -n "${BASE:-}" ]; then
  [ -x "$BASE" ] || { echo "bench-dhcp.sh: BASE=$BASE is not an executable" >&2; exit 1; }
  BASE=$(realpath "$BASE")
  PEERS="base $PEERS"
fi

# ---- names, temp dir, cleanup -------------------------------------------------------------
TAG="syd$(($$ % 100000))"
NS_SW="$TAG-sw"    # switchyard runs here
NS_C1="$TAG-c1"    # perfdhcp against switchyard (holds the tap)
NS_DM="$TAG-dm"    # the peer (dnsmasq, Kea or dhcpd) runs here
NS_C2="$TAG-c2"    # perfdhcp against the peer (holds one end of the veth)
TAP="${TAG}t"      # <= 15 bytes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-dhcp.XXXXXX")
SW_PID=""
DM_PID=""
PD_PID=""
TD_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PD_PID"
  stop_pid "$TD_PID"
  stop_pid "$SW_PID"
  stop_pid "$DM_PID"
  remove_lab "$TMP" "$NS_C1" "$NS_C2" "$NS_DM" "$NS_SW"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
  echo "bench-dhcp.sh: $*" >&2
  exit 1
}

# ---- the pool: 10.13.0.10 .. 10.13.40.7 = 10,238 addresses (not a power of two) -------------
SUBNET=10.13.0.0/18
GW=10.13.0.1
POOL_LO=10.13.0.10
POOL_HI=10.13.40.7
POOL_SIZE=10238
CLIENT_IP=10.13.63.250 # perfdhcp's own address in the client namespaces (outside the pool)
ip2n() { local IFS=.; set -- $1; echo $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4)); }
[ $(($(ip2n $POOL_HI) - $(ip2n $POOL_LO) + 1)) = $POOL_SIZE ] || die "pool arithmetic is off"

# ---- topology ---------------------------------------------------------------------------
for ns in "$NS_SW" "$NS_C1" "$NS_DM" "$NS_C2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
# dnsmasq's side: a veth pair created directly inside the two namespaces.
ip -n "$NS_C2" link add c0 type veth peer name s0 netns "$NS_DM"
ip -n "$NS_DM" addr add "$GW/18" dev s0
ip -n "$NS_DM" link set s0 up
ip -n "$NS_C2" addr add "$CLIENT_IP/18" dev c0
ip -n "$NS_C2" link set c0 up

# ---- one server at a time ----------------------------------------------------------------
start_switchyard() { # run [binary]: fresh state dir, wait for the tap to be up in the client namespace
  local dir=$TMP/sw.$1 bin=${2:-$SWITCHYARD} i
  mkdir -p "$dir"
  cat >"$dir/switchyard.toml" <<EOF
[network]
name = "$TAG"
subnet = "$SUBNET"
gateway = "$GW"
domain = "bench.test"

[switch]
# perfdhcp sends every DISCOVER and REQUEST as a broadcast: at -r 10000 that is 20,000 a second
# from one port, twice the default storm limit.
storm_limit = "off"

[dhcp]
pool = ["$POOL_LO", "$POOL_HI"]
lease_time = "1h"
rate_limit = "off"
state_dir = "$dir/state"

[[port]]
name = "client"
kind = "tap"
ifname = "$TAP"
netns = "$NS_C1"
address = "none"
trusted = true
EOF
  RUST_LOG=warn nsenter --net="/run/netns/$NS_SW" "$bin" run --config "$dir/switchyard.toml" \
    >"$dir/stdout" 2>"$dir/stderr" &
  SW_PID=$!
  for i in $(seq 150); do
    if ip -n "$NS_C1" -br link show dev "$TAP" 2>/dev/null | grep -q UP; then
      client_address
      return 0
    fi
    kill -0 "$SW_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "switchyard exited at start"; }
    sleep 0.1
  done
  cat "$dir/stderr" >&2
  die "the tap $TAP did not come up in $NS_C1 within 15 s"
}

# perfdhcp 2.2 always acts as a DHCPv4 relay agent: it sends from CLIENT_IP:67 with
# giaddr = CLIENT_IP and hops = 1, and expects the answer at CLIENT_IP:67. Both servers serve
# it as a relay: switchyard accepts relayed messages on a `trusted` port (giaddr inside the
# subnet) and answers the relay at giaddr:67, at the MAC the request came from.
client_address() {
  ip -n "$NS_C1" addr add "$CLIENT_IP/18" dev "$TAP"
}

# Where frames were lost, kept with the run's logs (KEEP_LOGS=1): the daemon's port counters
# (drops by reason, `tx_full` on the appliance port: its queue was full) and the tap's own
# counters in the client namespace (TX dropped: the kernel's queue to the daemon overflowed).
switchyard_counters() { # dir
  "$SWITCHYARD" stats --socket "/run/switchyard/$TAG.sock" >"$1/stats" 2>&1 || true
  ip -n "$NS_C1" -s link show dev "$TAP" >"$1/tap" 2>&1 || true
}

stop_switchyard() {
  stop_pid "$SW_PID"
  SW_PID=""
  # The daemon removes its tap on exit; wait until it is gone before the next start.
  local i
  for i in $(seq 50); do
    ip -n "$NS_C1" link show dev "$TAP" >/dev/null 2>&1 || return 0
    sleep 0.1
  done
}

# One peer at a time in NS_DM on the veth s0, fresh state in $TMP/<peer>.<run>; sets DM_PID.
start_dnsmasq() { # dir
  local dir=$1
  : >"$dir/leases"
  ip netns exec "$NS_DM" dnsmasq --no-daemon --conf-file=/dev/null --user=root --group=root \
    --port=0 --interface=s0 --bind-interfaces --except-interface=lo \
    --dhcp-range="$POOL_LO,$POOL_HI,255.255.192.0,1h" --dhcp-leasefile="$dir/leases" \
    --dhcp-authoritative --dhcp-lease-max=20000 --no-ping --quiet-dhcp --log-facility="$dir/log" \
    --pid-file="$dir/pid" >"$dir/stdout" 2>"$dir/stderr" &
  DM_PID=$!
}

start_kea() { # dir
  local dir=$1
  cat >"$dir/kea.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "s0" ], "dhcp-socket-type": "raw" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases.csv",
                      "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2,
                       "packet-queue-size": 256 },
  "authoritative": true,
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "$SUBNET", "pools": [ { "pool": "$POOL_LO - $POOL_HI" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                 "output_options": [ { "output": "$dir/log" } ] } ]
} }
EOF
  KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir ip netns exec "$NS_DM" kea-dhcp4 -c "$dir/kea.json" \
    >"$dir/stdout" 2>"$dir/stderr" &
  DM_PID=$!
}

start_dhcpd() { # dir
  local dir=$1
  : >"$dir/leases"
  cat >"$dir/dhcpd.conf" <<EOF
authoritative;
ping-check false;
default-lease-time 3600;
max-lease-time 3600;
ddns-update-style none;
subnet ${SUBNET%/*} netmask 255.255.192.0 { range $POOL_LO $POOL_HI; }
EOF
  ip netns exec "$NS_DM" dhcpd -f -4 -q -cf "$dir/dhcpd.conf" -lf "$dir/leases" \
    -pf "$dir/pid" s0 >"$dir/stdout" 2>"$dir/stderr" &
  DM_PID=$!
}

start_peer() { # peer run: start it, wait until it listens on :67
  local peer=$1 dir=$TMP/$1.$2 i
  mkdir -p "$dir"
  "start_$peer" "$dir"
  for i in $(seq 100); do
    if ip netns exec "$NS_DM" ss -Hlun 'sport = :67' 2>/dev/null | grep -q .; then
      return 0
    fi
    kill -0 "$DM_PID" 2>/dev/null || { cat "$dir/stderr" "$dir/log" >&2 2>/dev/null || true; die "$peer exited at start"; }
    sleep 0.1
  done
  die "$peer did not listen on :67 within 10 s"
}

stop_peer() {
  stop_pid "$DM_PID"
  DM_PID=""
}

peer_version() {
  case $1 in
    dnsmasq) dnsmasq --version | head -1 | awk '{print "dnsmasq " $3}' ;;
    kea) echo "Kea $(kea-dhcp4 -v)" ;;
    dhcpd) dhcpd --version 2>&1 | head -1 | sed 's/^isc-dhcpd-/ISC dhcpd /' ;;
    base) echo "base $BASE" ;;
  esac
}

# perfdhcp NS IFNAME CLIENTS RATE OUT SERVER_PID [RENEW_RATE] [TIMERS]: full DORA, direct mode,
# bounded; sets RESULT to the completed exchanges a second and CPU to "server X%, perfdhcp Y%"
# (of one core) and the replies lost at perfdhcp's socket. RENEW_RATE: also renew acquired
# leases at up to that rate (-f), sets RENEWS and MIX_DORA. TIMERS=1: -x t, sets LAT_DO, LAT_RA, LAT_RN (median delays, ms) and LAT_FLAG.
# (Runs in this shell, not in a $(...) subshell, so the trap can stop perfdhcp.)
run_perfdhcp() {
  local ns=$1 ifname=$2 clients=$3 rate=$4 out=$5 server=$6 renew=${7:-} timers=${8:-0}
  local rc=0 t0 t1 c0 c1 extra=()
  if [ -n "$renew" ]; then extra+=(-f "$renew"); fi
  if [ "$timers" = 1 ]; then extra+=(-x t); fi
  udp_counters "$ns" >"$out.udp0"
  if [ "${CAPTURE:-0}" = 1 ]; then # diagnostic: the client side's packets, headers only
    ip netns exec "$ns" timeout $((PERIOD + 35)) tcpdump -q -n -s 300 -B 65536 -i "$ifname" \
      -w "$out.pcap" udp port 67 2>"$out.tcpdump" &
    TD_PID=$!
    sleep 1
  fi
  t0=$(date +%s%N)
  c0=$(cpu_ticks "$server")
  ip netns exec "$ns" timeout $((PERIOD + 30)) /usr/bin/time -o "$out.time" -f %P \
    perfdhcp -4 -l "$ifname" -R "$clients" -r "$rate" "${extra[@]}" -p "$PERIOD" -W 1000000 >"$out" 2>&1 &
  PD_PID=$!
  wait "$PD_PID" || rc=$?
  PD_PID=""
  c1=$(cpu_ticks "$server")
  t1=$(date +%s%N)
  if [ -n "$TD_PID" ]; then
    kill -INT "$TD_PID" 2>/dev/null || true
    wait "$TD_PID" 2>/dev/null || true
    TD_PID=""
  fi
  udp_counters "$ns" | paste "$out.udp0" - | awk '{print $1, $4 - $2}' >"$out.udp"
  CPU="server $(((c1 - c0) * 1000000000 / $(getconf CLK_TCK) * 100 / (t1 - t0)))%, perfdhcp $(tail -1 "$out.time" 2>/dev/null)"
  # Replies that reached perfdhcp's namespace and found its socket full: lost by the load
  # generator, not by the server (each is a drop in perfdhcp's report all the same).
  CPU+=", $(awk '$1 == "RcvbufErrors" { print $2 }' "$out.udp") lost at perfdhcp's socket"
  # perfdhcp exits 3 when some exchanges were dropped: expected when RATE exceeds the server.
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    cat "$out" >&2
    die "perfdhcp failed (exit $rc) in $ns"
  fi
  rate=$(sed -n 's/^Rate: \([0-9.]*\) 4-way exchanges\/second.*/\1/p' "$out" | tail -1)
  [ -n "$rate" ] || { cat "$out" >&2; die "no rate in perfdhcp's output"; }
  RESULT=$(printf '%.0f' "$rate")
  # Renewal ACKs: perfdhcp counts only ACKs to its renewal REQUESTs here (a NAK is no lease).
  # Over PERIOD, the time they were sent in (the Rate line above also counts the 1 s -W wait).
  # MIX_DORA: the DORA ACKs of the same try, counted the same way.
  RENEWS=- MIX_DORA=-
  if [ -n "$renew" ]; then
    RENEWS=$(awk -v p="$PERIOD" '/^\*\*\*Statistics for: / { s = $0 }
      s ~ /renewal/ && /^received packets:/ { n = $3 } END { printf "%.0f", n / p }' "$out")
    MIX_DORA=$(awk -v p="$PERIOD" '/^\*\*\*Statistics for: / { s = $0 }
      s ~ /REQUEST-ACK\*/ && /^received packets:/ { n = $3 } END { printf "%.0f", n / p }' "$out")
  fi
  LAT_DO=- LAT_RA=- LAT_RN=- LAT_FLAG=""
  if [ "$timers" = 1 ]; then
    exchange_medians "$out" >"$out.lat"
    LAT_DO=$(awk '$1 == "DISCOVER-OFFER" { print $2 }' "$out.lat")
    LAT_RA=$(awk '$1 == "REQUEST-ACK" { print $2 }' "$out.lat")
    LAT_RN=$(awk '$1 == "REQUEST-ACK-renewal" { print $2 }' "$out.lat")
    : "${LAT_DO:=-}" "${LAT_RA:=-}" "${LAT_RN:=-}"
    # More than 1% of DISCOVERs or REQUESTs unanswered: the server did not keep up with the
    # offered rate, its delays include queueing.
    LAT_FLAG=$(awk '/^\*\*\*Statistics for: / { s = $0 }
      s !~ /renewal/ && /^drops ratio:/ && $3 + 0 > 1 { f = "*" } END { print f }' "$out")
    # -x t lists every exchange (MBs): keep the report without them.
    sed -i '/^\*\*\*Timestamps for packets:/,$d' "$out"
  fi
}

# exchange_medians FILE: from perfdhcp's -x t timestamps ("sent / received: S / R", seconds),
# the median delay of each exchange type in ms, one "TYPE MEDIAN" a line (types: DISCOVER-OFFER,
# REQUEST-ACK, REQUEST-ACK-renewal). perfdhcp itself reports min/avg/max/std only.
exchange_medians() {
  awk '/^\*\*\*Timestamps for packets: / { t = $0; sub(/^.*packets: /, "", t); sub(/\*+$/, "", t)
      gsub(/ \(/, "-", t); gsub(/[()]/, "", t); next }
    /^\*\*\*/ { t = "" }
    t != "" && /^sent \/ received:/ { print t, ($6 - $4) * 1000 }' "$1" |
    sort -k1,1 -k2,2g |
    awk '{ v[$1, ++n[$1]] = $2 } END { for (t in n) printf "%s %.3f\n", t, v[t, int((n[t] + 1) / 2)] }'
}

# The client namespace's UDP counters, one "name value" a line: RcvbufErrors counts replies
# the kernel dropped because perfdhcp's socket buffer was full (replies that came in a burst).
udp_counters() { # ns
  ip netns exec "$1" awk '/^Udp:/ { if (!h) { split($0, n); h = 1 } else for (i = 2; i <= NF; i++) print n[i], $i }' /proc/net/snmp
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# ---- the runs ----------------------------------------------------------------------------
# try SERVER CLIENTS RUN RATE [RENEW_RATE] [TIMERS]: one perfdhcp try against a fresh server.
try() {
  local server=$1 n=$2 run=$3 rate=$4 renew=${5:-} timers=${6:-0} d
  d=$n.$run.$rate${renew:+.renew}
  if [ "$server" = switchyard ] || [ "$server" = base ]; then
    if [ "$server" = base ]; then d=base.$d; fi
    if [ "$server" = base ]; then start_switchyard "$d" "$BASE"; else start_switchyard "$d"; fi
    run_perfdhcp "$NS_C1" "$TAP" "$n" "$rate" "$TMP/sw.$d/perfdhcp.out" "$SW_PID" "$renew" "$timers"
    switchyard_counters "$TMP/sw.$d"
    stop_switchyard
  else
    start_peer "$server" "$d"
    run_perfdhcp "$NS_C2" c0 "$n" "$rate" "$TMP/$server.$d/perfdhcp.out" "$DM_PID" "$renew" "$timers"
    stop_peer
  fi
}

# Delays are taken at the lowest rate in RATES (perfdhcp's -x t keeps every packet in memory,
# some 8 KB an exchange, so only there): the delay of a server that keeps up, not of a full queue.
LAT_RATE=$(tr -s ' ' '\n' <<<"$RATES" | sort -n | head -1)
renew_cell() { # clients: does this cell run the renew mix?
  case " $RENEW " in
    " all "*) return 0 ;;
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

echo "DHCP benchmark: perfdhcp full DORA, as a relay agent, ${PERIOD}s per try, best of -r $RATES, pool $POOL_SIZE"
case $RENEW in
  0 | off | "") echo "renew mix: off" ;;
  *) echo "renew mix (-r R -f R, best of R in $RATES) at clients: $RENEW" ;;
esac
echo "delays: median per exchange (perfdhcp -x t) at -r $LAT_RATE"
versions="switchyard $($SWITCHYARD --version 2>/dev/null | awk '{print $2}')"
for p in $PEERS; do versions+=", $(peer_version "$p")"; done
echo "$versions, perfdhcp $(perfdhcp -v 2>&1 | awk '{print $2}'), $(nproc) cores, state on $(findmnt -no FSTYPE -T "$TMP")"
# RES, RENEW_RES and LAT_ALL are read by table() through a nameref (SC2034 does not see it).
declare -A RES RENEW_RES LAT LAT_RENEW
for n in $CLIENTS; do
  declare -A runs_of=() renews_of=() lat_of=() latrn_of=() flag_of=() flagrn_of=()
  for run in $(seq "$RUNS"); do
    for server in switchyard $PEERS; do
      best=0
      for rate in $RATES; do
        timers=0
        if [ "$rate" = "$LAT_RATE" ]; then timers=1; fi
        try "$server" "$n" "$run" "$rate" "" "$timers"
        lat=""
        if [ "$timers" = 1 ]; then
          lat=", median D-O $LAT_DO ms R-A $LAT_RA ms$LAT_FLAG"
          lat_of[$server]+="$LAT_RA "
          flag_of[$server]+=$LAT_FLAG
        fi
        printf '    clients %s run %s -r %s: %-10s %6s/s%s (%s)\n' "$n" "$run" "$rate" "$server" "$RESULT" "$lat" "$CPU"
        if [ "$RESULT" -gt "$best" ]; then best=$RESULT; fi
      done
      runs_of[$server]+="$best "
      renew_cell "$n" || continue
      best=0
      for rate in $RATES; do
        timers=0
        if [ "$rate" = "$LAT_RATE" ]; then timers=1; fi
        try "$server" "$n" "$run" "$rate" "$rate" "$timers"
        lat=""
        if [ "$timers" = 1 ]; then
          lat=", median renew R-A $LAT_RN ms$LAT_FLAG"
          latrn_of[$server]+="$LAT_RN "
          flagrn_of[$server]+=$LAT_FLAG
        fi
        printf '    clients %s run %s -r %s -f %s: %-10s renew %6s/s, DORA ACKs %6s/s%s (%s)\n' \
          "$n" "$run" "$rate" "$rate" "$server" "$RENEWS" "$MIX_DORA" "$lat" "$CPU"
        if [ "$RENEWS" -gt "$best" ]; then best=$RENEWS; fi
      done
      renews_of[$server]+="$best "
    done
  done
  for server in switchyard $PEERS; do
    # shellcheck disable=SC2034,SC2086
    RES[$n.$server]=$(median ${runs_of[$server]})
    # shellcheck disable=SC2086
    LAT[$n.$server]=$(median ${lat_of[$server]:--})${flag_of[$server]:+*}
    if renew_cell "$n"; then
      # shellcheck disable=SC2034,SC2086
      RENEW_RES[$n.$server]=$(median ${renews_of[$server]})
      # shellcheck disable=SC2086
      LAT_RENEW[$n.$server]=$(median ${latrn_of[$server]:--})${flagrn_of[$server]:+*}
    fi
  done
  unset runs_of renews_of lat_of latrn_of flag_of flagrn_of
done

if [ "$RUNS" -gt 1 ]; then what="median of $RUNS runs"; else what="1 run"; fi
# table TITLE ARRAY-NAME ORDER ROWS: one row per key in ROWS (a clients count, or "N-renew":
# shown as "N renew"); the last column is switchyard / the best peer (ORDER max: the highest is
# best; min: the lowest), "base" and starred values (a server that did not keep up) left out of
# the best.
table() {
  local title=$1 order=$3 rows=$4 n p row best ratio v
  local -n arr=$2
  echo
  echo "$title ($what per cell):"
  echo
  local header="| clients | switchyard |" rule="|---:|---:|"
  for p in $PEERS; do header+=" $p |"; rule+="---:|"; done
  echo "$header switchyard / best peer |"
  echo "$rule---:|"
  for n in $rows; do
    row="| ${n/-/ } | ${arr[$n.switchyard]} |" best=""
    for p in $PEERS; do
      v=${arr[$n.$p]}
      row+=" $v |"
      if [ "$p" = base ] || [ "${v%\*}" != "$v" ]; then continue; fi
      best=$(awk -v b="$best" -v v="$v" -v o="$order" 'BEGIN {
        if (v == "-") { print b; exit }
        if (b == "" || (o == "max" && v + 0 > b + 0) || (o == "min" && v + 0 < b + 0)) print v; else print b }')
    done
    ratio=$(awk -v a="${arr[$n.switchyard]%\*}" -v b="$best" 'BEGIN {
      if (a != "-" && b != "" && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }')
    echo "$row $ratio |"
  done
}

table "Completed DORA exchanges per second" RES max "$CLIENTS" | tee "$TMP/tables.md"
renew_rows="" lat_rows=""
declare -A LAT_ALL
for n in $CLIENTS; do
  lat_rows+="$n "
  for p in switchyard $PEERS; do LAT_ALL[$n.$p]=${LAT[$n.$p]}; done
  renew_cell "$n" || continue
  renew_rows+="$n "
  lat_rows+="$n-renew "
  # shellcheck disable=SC2034
  for p in switchyard $PEERS; do LAT_ALL[$n-renew.$p]=${LAT_RENEW[$n.$p]}; done
done
if [ -n "$renew_rows" ]; then
  table "Renewal ACKs per second in the renew mix -r R -f R, best R, higher is better" RENEW_RES max "$renew_rows" |
    tee -a "$TMP/tables.md"
fi
table "Median REQUEST-ACK delay in ms at -r $LAT_RATE, lower is better" LAT_ALL min "$lat_rows" |
  tee -a "$TMP/tables.md"
write_chart "$TMP/tables.md" "$CHART" "DHCP: switchyard against $PEERS ($(date -u +%F), $what per cell)"
echo
echo "Delays: a ratio below 1 means switchyard answers faster than the fastest peer. Rows \"N\": the"
echo "DORA's REQUEST-ACK (the lease commit); \"N renew\": a renewing client's REQUEST-ACK in the renew"
echo "mix. * = over 1% of DISCOVERs or REQUESTs unanswered in some run: that server did not keep up"
echo "with -r $LAT_RATE, its delay includes queueing and it is not taken as the best peer (n/a: no"
echo "peer kept up). perfdhcp prints only min/avg/max/std delays; the medians here come from its"
echo "per-exchange timestamps (-x t)."
echo
echo "switchyard's config (the load generator's port is trusted: a relay port, no lease cap):"
sed -n '/^\[switch\]/,$p' "$(ls -d "$TMP"/sw.* | head -1)/switchyard.toml" 2>/dev/null || true
