#!/usr/bin/env bash
# DNS queries a second (and per server CPU second), switchyard against dnsmasq, nsd and unbound,
# side by side in one run.
#
#   sudo ./scripts/bench-dns.sh               # local and cached names, 5 s each, 1 run a cell
#   sudo PERIOD=3 RUNS=3 ./scripts/bench-dns.sh
#
# The tables are also drawn as an SVG chart, at $CHART (default target/bench/dns.svg).
#
# dnsperf (Debian dnsperf) sends from a client namespace for PERIOD seconds a cell
# (-c CLIENTS_DNSPERF sockets, -q OUTSTANDING queries in flight), cycling through a query file:
#   local:  NAMES reservations vm1.lab.test .. vmN.lab.test (A), 2 PTR (vm1's and vm2's
#           addresses) and 5 names that do not exist (nx1.lab.test .., NXDOMAIN), all answered
#           from local data;
#   cached: NAMES forwarded names n1.example.org .. nN.example.org (A), answered from the cache
#           (one warm-up second first; the upstream gives them a TTL of an hour). nsd is
#           authoritative only, so it runs the local load only.
#
#   switchyard: client ns --tap--> switchyard (own ns, via nsenter), gateway 10.13.31.1
#   peers:      client ns --veth--> peer ns, 10.13.31.1, the same names; dnsmasq, nsd and
#               unbound run there one at a time (started, measured, stopped, in turn each run)
#   upstream:   a dnsmasq in its own ns answering *.example.org with 192.0.2.7, reached over a
#               veth from each server's namespace (192.0.2.53 / 198.51.100.53)
#
# The peers' settings (config files in the temp dir; KEEP_LOGS=1 keeps them):
#   dnsmasq: --host-record per name, --local=/lab.test/, --cache-size=10000 (one thread: that is
#            dnsmasq);
#   nsd:     zones lab.test and 31.13.10.in-addr.arpa from zone files, server-count 2,
#            reuseport yes, rrl-ratelimit 0 and rrl-whitelist-ratelimit 0 (no rate limiting);
#   unbound: num-threads 2, local-zone "test." nodefault, local-zone "lab.test." static (and the
#            reverse zone) with local-data, forward-zone "." to the upstream, module-config
#            iterator (no DNSSEC validation: neither switchyard nor dnsmasq validates).
# Local names have TTL 0 everywhere (switchyard's and dnsmasq's default). The queries per CPU
# second count the server's user + system ticks (/proc/<pid>/stat, the process and all its
# descendants: nsd forks its servers) over the dnsperf run; for switchyard that includes the
# whole switch path (tap reads and writes), for the peers the kernel's veth path is not theirs.
#
# Packages missing are installed (apt-get; the script never enables or starts their services;
# Debian's postinst adds systemd links and tries a start, which is harmless here). Everything lives in namespaces
# the script creates (unique names); a trap removes every namespace, process and temp file,
# also on failure or Ctrl-C. Nothing touches the root namespace. Every load is bounded by
# PERIOD and a timeout.
#
# Knobs (environment): PERIOD (5 s), RUNS (1; the cell is the median), NAMES (50),
# CLIENTS_DNSPERF (4), OUTSTANDING (64), PEERS ("dnsmasq nsd unbound"; "" for switchyard alone),
# RATE (unset: as fast as the outstanding queries allow; a number: dnsperf -Q, a fixed offered
# load, so queries per server CPU second compare servers at one load), PERF_DATA (a file:
# `perf record -e cpu-clock -g` of switchyard during its first local cell, for `perf report -i`),
# SWITCHYARD (default target/release/switchyard, built first), KEEP_LOGS=1 (keep the temp dir
# and print its path).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

PERIOD=${PERIOD:-5}
RUNS=${RUNS:-1}
NAMES=${NAMES:-50}
CLIENTS_DNSPERF=${CLIENTS_DNSPERF:-4}
OUTSTANDING=${OUTSTANDING:-64}
PEERS=${PEERS-dnsmasq nsd unbound}
RATE=${RATE:-}
PERF_DATA=${PERF_DATA:-}
CHART=${CHART:-target/bench/dns.svg} # the tables as an SVG chart (scripts/chart.py)
if [ -z "${SWITCHYARD:-}" ]; then
  BUILD=1
  SWITCHYARD=target/release/switchyard
fi

if [ "$(id -u)" != 0 ]; then
  echo "bench-dns.sh: run as root (it creates network namespaces and taps)" >&2
  exit 1
fi

# dnsmasq is needed in any case: it is the fake upstream.
declare -A need=([dnsperf]=dnsperf [dnsmasq]=dnsmasq-base [dig]=bind9-dnsutils
  [nsenter]=util-linux [ip]=iproute2 [timeout]=coreutils [ps]=procps)
[ -z "$PERF_DATA" ] || need[perf]=linux-perf
for p in $PEERS; do
  case $p in
    dnsmasq) ;;
    nsd) need[nsd]=nsd ;;
    unbound) need[unbound]=unbound ;;
    *)
      echo "bench-dns.sh: unknown peer $p (dnsmasq, nsd, unbound)" >&2
      exit 1
      ;;
  esac
done
install_missing
modprobe tun 2>/dev/null || true
if [ "${BUILD:-0}" = 1 ]; then
  cargo build --release --locked # never measure a stale binary
fi
[ -x "$SWITCHYARD" ] || { echo "bench-dns.sh: $SWITCHYARD is not an executable" >&2; exit 1; }
SWITCHYARD=$(realpath "$SWITCHYARD")

# ---- names, temp dir, cleanup -------------------------------------------------------------
TAG="syq$(($$ % 100000))"
NS_SW="$TAG-sw" # switchyard
NS_C1="$TAG-c1" # dnsperf against switchyard (holds the tap)
NS_PR="$TAG-pr" # the peer of the moment (dnsmasq, nsd or unbound)
NS_C2="$TAG-c2" # dnsperf against the peer (one end of a veth)
NS_UP="$TAG-up" # the fake upstream
TAP="${TAG}t"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-dns.XXXXXX")
PIDS=()     # processes alive for the whole run
PEER_PID="" # the peer running now
HZ=$(getconf CLK_TCK)

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  stop_pid "$PEER_PID"
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  remove_lab "$TMP" "$NS_C1" "$NS_C2" "$NS_PR" "$NS_SW" "$NS_UP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
  echo "bench-dns.sh: $*" >&2
  exit 1
}

# ---- topology ---------------------------------------------------------------------------
for ns in "$NS_SW" "$NS_C1" "$NS_PR" "$NS_C2" "$NS_UP"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
veth() { # ns_a addr_a ns_b addr_b: a veth pair between two namespaces, addressed, up
  local peer="p$RANDOM"
  ip -n "$1" link add v0 type veth peer name "$peer" netns "$3"
  ip -n "$1" addr add "$2" dev v0
  ip -n "$1" link set v0 up
  ip -n "$3" addr add "$4" dev "$peer"
  ip -n "$3" link set "$peer" up
}
veth "$NS_SW" 192.0.2.1/24 "$NS_UP" 192.0.2.53/24
veth "$NS_PR" 198.51.100.1/24 "$NS_UP" 198.51.100.53/24
veth "$NS_C2" 10.13.31.11/24 "$NS_PR" 10.13.31.1/24

# The upstream: every *.example.org is 192.0.2.7 for an hour.
ip netns exec "$NS_UP" dnsmasq --no-daemon --conf-file=/dev/null --user=root --group=root \
  --no-resolv --no-hosts --bind-interfaces --listen-address=192.0.2.53 \
  --listen-address=198.51.100.53 --address=/example.org/192.0.2.7 --local-ttl=3600 \
  --pid-file= >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)

# ---- the names and the configs ----------------------------------------------------------------
addr() { echo "10.13.31.$(($1 + 20))"; } # i: vm<i>'s address
rev() { echo "$(($1 + 20)).31.13.10.in-addr.arpa"; }
{
  cat <<EOF
[network]
name = "$TAG"
subnet = "10.13.31.0/24"
gateway = "10.13.31.1"
domain = "lab.test"

[dhcp]
enabled = false

[dns]
upstreams = ["192.0.2.53"]
cache_size = 10000

[[port]]
name = "client"
kind = "tap"
ifname = "$TAP"
netns = "$NS_C1"
address = "none"
guard = false
EOF
  for i in $(seq "$NAMES"); do
    printf '\n[[host]]\nname = "vm%d"\nmac = "52:54:00:31:%02x:%02x"\nipv4 = "%s"\n' \
      "$i" $((i / 256)) $((i % 256)) "$(addr "$i")"
  done
} >"$TMP/switchyard.toml"

SOA="ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 0"
: >"$TMP/dnsmasq.conf"
mkdir -p "$TMP/nsd" "$TMP/unbound"
cat >"$TMP/nsd/lab.test.zone" <<EOF
\$ORIGIN lab.test.
\$TTL 0
@ IN SOA $SOA
@ IN NS ns
@ IN A 10.13.31.1
ns IN A 10.13.31.1
EOF
cat >"$TMP/nsd/reverse.zone" <<EOF
\$ORIGIN 31.13.10.in-addr.arpa.
\$TTL 0
@ IN SOA $SOA
@ IN NS ns.lab.test.
EOF
cat >"$TMP/unbound/unbound.conf" <<EOF
server:
  interface: 10.13.31.1
  port: 53
  num-threads: 2
  so-reuseport: yes
  access-control: 10.13.31.0/24 allow
  do-ip6: no
  username: ""
  chroot: ""
  directory: "$TMP/unbound"
  pidfile: "$TMP/unbound/unbound.pid"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  local-zone: "test." nodefault
  local-zone: "lab.test." static
  local-data: "lab.test. 0 IN SOA $SOA"
  local-data: "lab.test. 0 IN NS ns.lab.test."
  local-data: "lab.test. 0 IN A 10.13.31.1"
  local-data: "ns.lab.test. 0 IN A 10.13.31.1"
  local-zone: "31.13.10.in-addr.arpa." static
  local-data: "31.13.10.in-addr.arpa. 0 IN SOA $SOA"
EOF
for i in $(seq "$NAMES"); do
  a=$(addr "$i")
  echo "host-record=vm$i.lab.test,vm$i,$a" >>"$TMP/dnsmasq.conf"
  echo "vm$i IN A $a" >>"$TMP/nsd/lab.test.zone"
  echo "$((i + 20)) IN PTR vm$i.lab.test." >>"$TMP/nsd/reverse.zone"
  echo "  local-data: \"vm$i.lab.test. 0 IN A $a\"" >>"$TMP/unbound/unbound.conf"
  echo "  local-data: \"$(rev "$i"). 0 IN PTR vm$i.lab.test.\"" >>"$TMP/unbound/unbound.conf"
  echo "vm$i.lab.test A" >>"$TMP/local.txt"
  echo "n$i.example.org A" >>"$TMP/cached.txt"
done
for i in 1 2; do echo "$(rev "$i") PTR" >>"$TMP/local.txt"; done
for i in 1 2 3 4 5; do echo "nx$i.lab.test A" >>"$TMP/local.txt"; done
cat >>"$TMP/unbound/unbound.conf" <<EOF
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 198.51.100.53
EOF
cat >"$TMP/nsd/nsd.conf" <<EOF
server:
  ip-address: 10.13.31.1
  port: 53
  server-count: 2
  reuseport: yes
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "$TMP/nsd"
  database: ""
  zonelistfile: "$TMP/nsd/zone.list"
  xfrdfile: "$TMP/nsd/xfrd.state"
  xfrdir: "$TMP/nsd"
  pidfile: "$TMP/nsd/nsd.pid"
  logfile: "$TMP/nsd/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "lab.test"
  zonefile: "$TMP/nsd/lab.test.zone"
zone:
  name: "31.13.10.in-addr.arpa"
  zonefile: "$TMP/nsd/reverse.zone"
EOF

# ---- servers --------------------------------------------------------------------------------
# answers NS NAME TYPE WANT: waits (bounded, 5 s) until the server at 10.13.31.1 seen from NS
# answers NAME TYPE with WANT somewhere in dig's answer (or status line for NXDOMAIN).
answers() {
  local i out
  for i in $(seq 50); do
    out=$(ip netns exec "$1" dig @10.13.31.1 +tries=1 +time=1 +noall +answer +comments \
      "$2" "$3" 2>/dev/null || true)
    grep -q -- "$4" <<<"$out" && return 0
    sleep 0.1
  done
  echo "$out" >&2
  die "no answer $4 for $2 $3 from $1"
}

check_answers() { # ns cached?: the server answers the local load's kinds right (and cached)
  answers "$1" vm1.lab.test A "$(addr 1)"
  answers "$1" "$(rev 2)" PTR vm2.lab.test.
  answers "$1" nx1.lab.test A NXDOMAIN
  if [ "$2" = 1 ]; then answers "$1" n1.example.org A 192.0.2.7; fi
}

# start_peer NAME: starts it in NS_PR in the foreground (PEER_PID), waits for its answers.
start_peer() {
  case $1 in
    dnsmasq)
      ip netns exec "$NS_PR" dnsmasq --no-daemon --conf-file="$TMP/dnsmasq.conf" --user=root \
        --group=root --no-resolv --no-hosts --server=198.51.100.53 --bind-interfaces \
        --listen-address=10.13.31.1 --domain=lab.test --local=/lab.test/ --cache-size=10000 \
        --pid-file= >>"$TMP/dnsmasq.log" 2>&1 &
      ;;
    nsd) ip netns exec "$NS_PR" nsd -d -c "$TMP/nsd/nsd.conf" >>"$TMP/nsd.stderr" 2>&1 & ;;
    unbound) ip netns exec "$NS_PR" unbound -d -c "$TMP/unbound/unbound.conf" >>"$TMP/unbound.log" 2>&1 & ;;
  esac
  PEER_PID=$!
  check_answers "$NS_C2" "$([ "$1" = nsd ] && echo 0 || echo 1)"
  [[ "$(cat "/proc/$PEER_PID/comm")" == "$1"* ]] || die "pid $PEER_PID is $(cat "/proc/$PEER_PID/comm"), not $1"
}

stop_peer() {
  stop_pid "$PEER_PID"
  PEER_PID=""
}

RUST_LOG=warn nsenter --net="/run/netns/$NS_SW" "$SWITCHYARD" run --config "$TMP/switchyard.toml" \
  >"$TMP/switchyard.stdout" 2>"$TMP/switchyard.stderr" &
SW_PID=$!
PIDS+=("$SW_PID")
for i in $(seq 150); do
  ip -n "$NS_C1" -br link show dev "$TAP" 2>/dev/null | grep -q UP && break
  [ "$i" = 150 ] && { cat "$TMP/switchyard.stderr" >&2; die "the tap did not come up"; }
  sleep 0.1
done
ip -n "$NS_C1" addr add 10.13.31.11/24 dev "$TAP"
check_answers "$NS_C1" 1
[ "$(cat "/proc/$SW_PID/comm")" = switchyard ] || die "pid $SW_PID is not switchyard"

# ---- measuring ----------------------------------------------------------------------------------
# user + system ticks of PID and all its descendants (nsd forks its server processes)
cpu_ticks() {
  local -a todo=("$1") f
  local -A kids=()
  local i=0 p pp total=0 line
  while read -r p pp; do kids[$pp]+=" $p"; done < <(ps -e -o pid=,ppid=)
  while [ "$i" -lt ${#todo[@]} ]; do
    for p in ${kids[${todo[$i]}]:-}; do todo+=("$p"); done
    i=$((i + 1))
  done
  for p in "${todo[@]}"; do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -r -a f <<<"${line##*) }" # fields from 3 (state) on: utime is 14, stime 15
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# measure NS FILE SECONDS PID: dnsperf from NS; sets QPS, QCPU (queries per server CPU second)
# and CPU (server CPU, % of one core).
measure() {
  local c0 c1 out="$TMP/dnsperf.out" n secs bad
  c0=$(cpu_ticks "$4")
  ip netns exec "$1" timeout $(($3 + 20)) dnsperf -s 10.13.31.1 -d "$2" -l "$3" \
    -c "$CLIENTS_DNSPERF" -q "$OUTSTANDING" ${RATE:+-Q "$RATE"} -t 2 >"$out" 2>&1 ||
    { cat "$out" >&2; die "dnsperf failed"; }
  c1=$(cpu_ticks "$4")
  QPS=$(grep -oP 'Queries per second:\s+\K[0-9.]+' "$out" | cut -d. -f1)
  n=$(grep -oP 'Queries completed:\s+\K[0-9]+' "$out")
  secs=$(grep -oP 'Run time \(s\):\s+\K[0-9.]+' "$out")
  [ -n "$QPS" ] && [ -n "$n" ] && [ -n "$secs" ] || { cat "$out" >&2; die "no figures in dnsperf's output"; }
  bad=$(grep -oE '(SERVFAIL|REFUSED|FORMERR|NOTIMP) [0-9]+' "$out" || true)
  [ -z "$bad" ] || { cat "$out" >&2; die "wrong answers from the server: $bad"; }
  QCPU=$(awk -v n="$n" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (t > 0) printf "%d", n * hz / t; else print 0 }')
  CPU=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v s="$secs" 'BEGIN { printf "%d", 100 * t / hz / s }')
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

loads_of() { if [ "$1" = nsd ]; then echo local; else echo local cached; fi; }
declare -A qps=() qcpu=() cpu=()
record() { # server kind
  qps[$1.$2]+=" $QPS"
  qcpu[$1.$2]+=" $QCPU"
  cpu[$1.$2]+=" $CPU"
}

# Warm switchyard's cache: one second through the forwarded names (it stays up for every run).
measure "$NS_C1" "$TMP/cached.txt" 1 "$SW_PID"
for r in $(seq "$RUNS"); do
  for kind in local cached; do
    perf_pid=""
    if [ -n "$PERF_DATA" ] && [ "$r" = 1 ] && [ "$kind" = local ]; then
      timeout $((PERIOD + 10)) perf record -q -e cpu-clock -g -p "$SW_PID" -o "$PERF_DATA" \
        -- sleep "$PERIOD" >"$TMP/perf.log" 2>&1 &
      perf_pid=$!
    fi
    measure "$NS_C1" "$TMP/$kind.txt" "$PERIOD" "$SW_PID"
    record switchyard "$kind"
    if [ -n "$perf_pid" ]; then wait "$perf_pid" || { cat "$TMP/perf.log" >&2; die "perf record failed"; }; fi
  done
  for p in $PEERS; do
    start_peer "$p"
    [ "$p" = nsd ] || measure "$NS_C2" "$TMP/cached.txt" 1 "$PEER_PID" # warm the cache
    for kind in $(loads_of "$p"); do
      measure "$NS_C2" "$TMP/$kind.txt" "$PERIOD" "$PEER_PID"
      record "$p" "$kind"
    done
    stop_peer
  done
  echo "run $r of $RUNS done" >&2
done

# ---- the tables -------------------------------------------------------------------------------
declare -A version=(
  [switchyard]="switchyard $("$SWITCHYARD" --version 2>/dev/null | awk '{print $2}')"
  [dnsmasq]="dnsmasq $(dnsmasq --version | awk 'NR == 1 {print $3}')"
  [nsd]="nsd $(nsd -v 2>&1 | awk 'NR == 1 {print $3}')"
  [unbound]="unbound $(unbound -V 2>&1 | awk 'NR == 1 {print $2}')"
)
echo "dnsperf -c $CLIENTS_DNSPERF -q $OUTSTANDING${RATE:+ -Q $RATE}, ${PERIOD}s a cell, median of $RUNS; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in local cached; do
  echo
  if [ "$kind" = local ]; then
    echo "local names ($NAMES A, 2 PTR, 5 NXDOMAIN):"
  else
    echo "cached forwarded names ($NAMES A):"
  fi
  printf '\n| server | queries/s | queries / server CPU s | server CPU |\n|---|---:|---:|---:|\n'
  best="" best_q=0 best_c="" best_cq=0
  for s in switchyard $PEERS; do
    [ -n "${qps[$s.$kind]:-}" ] || continue
    q=$(median <<<"${qps[$s.$kind]}")
    c=$(median <<<"${qcpu[$s.$kind]}")
    printf '| %s | %s | %s | %s%% |\n' "${version[$s]}" "$(commas "$q")" "$(commas "$c")" \
      "$(median <<<"${cpu[$s.$kind]}")"
    if [ "$s" = switchyard ]; then
      sq=$q sc=$c
      continue
    fi
    if [ "$q" -gt "$best_q" ]; then best=$s best_q=$q; fi
    if [ "$c" -gt "$best_cq" ]; then best_c=$s best_cq=$c; fi
  done
  if [ -n "$best" ]; then
    printf '| switchyard / best peer | %s (%s) | %s (%s) | |\n' \
      "$(awk -v a="$sq" -v b="$best_q" 'BEGIN { printf "%.2f", a / b }')" "$best" \
      "$(awk -v a="$sc" -v b="$best_cq" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" "${best_c:--}"
  fi
done | tee "$TMP/tables.md"
write_chart "$TMP/tables.md" "$CHART" "DNS: switchyard against $PEERS ($(date -u +%F), median of $RUNS)" --transpose
