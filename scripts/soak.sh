#!/usr/bin/env bash
# Soak: mixed traffic through one switchyard daemon for DURATION seconds, with the daemon's
# resident memory, open fds and threads sampled; fails if any of them grew.
#
#   sudo ./scripts/soak.sh            # 600 s (the documented run)
#   sudo ./scripts/soak.sh 1800       # or any DURATION in seconds (at least 20)
#   sudo SOAK_SECONDS=30 ./scripts/soak.sh   # the short run tests/soak.rs does
#
# The lab (every name carries a unique tag; nothing touches the root namespace):
#   sw     the daemon's namespace (it runs there through nsenter, in the root mount namespace)
#   h1,h2  static hosts: iperf3 TCP bursts h1 -> h2 and back (-R), BITRATE, BURST s each
#   h3     no reservation: DHCP churn with udhcpc: a new MAC each round, DISCOVER..ACK, a renew
#          (SIGUSR1), a release (SIGTERM with -R); its hostname comes and goes in DNS
#   h4     static host: dig loops for local names (h1.lab.test, the churning DHCP name) and for
#          fresh names under example.org, forwarded to a fake upstream (dnsmasq in ns "up",
#          behind a veth into sw)
#   control  `switchyard host add` / `host del` of a reservation and `switchyard ports --json`,
#          in a loop (control-socket connections come and go)
#   hotplug  a stream port added and removed live (`switchyard port add/del`), twice a second
#
# Every SAMPLE s (default 5; 2 for runs under 120 s) the daemon's VmRSS and Threads
# (/proc/PID/status) and its open fds (/proc/PID/fd) are recorded. WARMUP s (default 60, a third
# of shorter runs) are the warm-up: caches, the lease journal and the upstream socket fill or
# open then. The verdict:
#   - RSS: the last sample may exceed the first sample after the warm-up by at most RSS_MARGIN
#     percent (default 20);
#   - fds and threads: once the loads have stopped and the daemon has settled (3 s), neither may
#     exceed the highest count seen during the warm-up (a transient control connection or helper
#     thread during the warm-up is allowed, growth after it is not).
# Each load's successes and failures are counted and printed; they do not decide the verdict
# (the machine is shared), but a load that never succeeded fails the run (it would prove nothing).
#
# Knobs (environment): SOAK_SECONDS (or $1), SAMPLE, WARMUP, RSS_MARGIN, BITRATE (300M), BURST
# (2), SWITCHYARD (default target/release/switchyard, built first), KEEP_LOGS=1 (keep the temp
# dir and print its path). Needs root, iperf3, udhcpc, dig, dnsmasq (installed with apt-get if
# missing). A trap stops every process the script started (those in its namespaces, by pid) and
# removes its namespaces and temp dir, also on failure or Ctrl-C. Every load is bounded by the
# duration and by timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

DURATION=${1:-${SOAK_SECONDS:-600}}
if ! [[ $DURATION =~ ^[0-9]+$ ]] || [ "$DURATION" -lt 20 ]; then
  echo "soak.sh: DURATION must be a whole number of seconds, at least 20 (got '$DURATION')" >&2
  exit 2
fi
if [ "$DURATION" -lt 120 ]; then
  SAMPLE=${SAMPLE:-2}
  WARMUP=${WARMUP:-$((DURATION / 3))}
else
  SAMPLE=${SAMPLE:-5}
  WARMUP=${WARMUP:-60}
fi
RSS_MARGIN=${RSS_MARGIN:-20}
BITRATE=${BITRATE:-300M}
BURST=${BURST:-2}

if [ "$(id -u)" != 0 ]; then
  echo "soak.sh: run as root (it creates network namespaces and taps)" >&2
  exit 1
fi

declare -A need=([iperf3]=iperf3 [udhcpc]=udhcpc [dig]=bind9-dnsutils [dnsmasq]=dnsmasq-base
  [nsenter]=util-linux [ip]=iproute2 [timeout]=coreutils)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "soak.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -z "${SWITCHYARD:-}" ]; then
  cargo build --release --quiet
  SWITCHYARD=target/release/switchyard
fi
SWITCHYARD=$(realpath "$SWITCHYARD")

T="sk$(($$ % 100000))"
DIR=$(mktemp -d "/tmp/switchyard-soak-$T.XXXXXX")
SW="$T-sw" UP="$T-up"
NSES=("$SW" "$UP" "$T-h1" "$T-h2" "$T-h3" "$T-h4")
GW=10.13.31.1
SOCK="$DIR/control.sock"
DAEMON=""
LOOPS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  touch "$DIR/stop" 2>/dev/null || true
  for p in "${LOOPS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
    kill -TERM "$DAEMON" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON" 2>/dev/null || true
  fi
  # Whatever still runs inside the script's own namespaces was started by it.
  for ns in "${NSES[@]}"; do
    if ip netns list | grep -qw "^$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  for p in "${LOOPS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then
    echo "soak.sh: logs kept in $DIR" >&2
  else
    rm -rf "$DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the lab ----
ip netns add "$SW"
ip netns add "$UP"
ip -n "$SW" link set lo up
ip -n "$UP" link set lo up
ip link add "$T-u0" netns "$SW" type veth peer name "$T-u1" netns "$UP"
ip -n "$SW" addr add 192.0.2.1/24 dev "$T-u0"
ip -n "$SW" link set "$T-u0" up
ip -n "$UP" addr add 192.0.2.53/24 dev "$T-u1"
ip -n "$UP" link set "$T-u1" up
ip netns exec "$UP" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --user=root --listen-address=192.0.2.53 --address=/example.org/192.0.2.7 --local-ttl=5 \
  --pid-file="$DIR/dnsmasq.pid" >/dev/null 2>&1 &
LOOPS+=($!)

{
  cat <<EOF
[network]
name = "$T"
subnet = "10.13.31.0/24"
gateway = "$GW"
domain = "lab.test"

[switch]
control_socket = "$SOCK"

[dhcp]
pool = ["10.13.31.100", "10.13.31.199"]
lease_time = "2m"
state_dir = "$DIR/state"

[dns]
upstreams = ["192.0.2.53"]
timeout_ms = 1000
EOF
  for i in 1 2 4; do
    cat <<EOF

[[host]]
name = "h$i"
mac = "52:54:00:77:00:0$i"
ipv4 = "10.13.31.1$i"
EOF
  done
  for i in 1 2 3 4; do
    echo
    echo "[[port]]"
    echo "name = \"h$i\""
    echo "kind = \"tap\""
    echo "ifname = \"$T-t$i\""
    echo "netns = \"$T-h$i\""
    if [ "$i" = 3 ]; then echo 'address = "none"'; else echo "host = \"h$i\""; fi
  done
} >"$DIR/switchyard.toml"

RUST_LOG=warn nsenter --net="/run/netns/$SW" "$SWITCHYARD" run --config "$DIR/switchyard.toml" \
  >"$DIR/daemon.out" 2>"$DIR/daemon.err" &
DAEMON=$!
for _ in $(seq 150); do
  "$SWITCHYARD" ports --socket "$SOCK" >/dev/null 2>&1 && break
  kill -0 "$DAEMON" 2>/dev/null || { cat "$DIR/daemon.err" >&2; exit 1; }
  sleep 0.1
done
"$SWITCHYARD" ports --socket "$SOCK" >/dev/null
for i in 1 2 3 4; do
  ip netns exec "$T-h$i" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
cat >"$DIR/udhcpc-script" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
  deconfig) ip -4 addr flush dev "$interface" ;;
esac
exit 0
EOF
chmod +x "$DIR/udhcpc-script"

START=$(date +%s)
END=$((START + DURATION))
running() { [ "$(date +%s)" -lt "$END" ] && [ ! -e "$DIR/stop" ]; }
# count NAME ok|fail: one line per outcome, summed at the end.
count() { echo "$2" >>"$DIR/count.$1"; }

# ---- the loads ----
ip netns exec "$T-h2" iperf3 -s -p 5201 >/dev/null 2>&1 &
LOOPS+=($!)
sleep 0.5
(
  rev=""
  while running; do
    if timeout $((BURST + 10)) ip netns exec "$T-h1" iperf3 -c 10.13.31.12 -p 5201 -t "$BURST" \
      -b "$BITRATE" $rev >/dev/null 2>&1; then count iperf3 ok; else count iperf3 fail; fi
    if [ -z "$rev" ]; then rev="-R"; else rev=""; fi
    sleep 1
  done
) &
LOOPS+=($!)

(
  n=0
  while running; do
    n=$((n + 1))
    mac=$(printf '02:77:%02x:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
    ip -n "$T-h3" link set dev "$T-t3" address "$mac"
    ip netns exec "$T-h3" udhcpc -i "$T-t3" -f -R -n -t 5 -T 1 -x hostname:churn \
      -s "$DIR/udhcpc-script" >/dev/null 2>&1 &
    u=$!
    for _ in $(seq 40); do
      ip -n "$T-h3" -4 addr show dev "$T-t3" | grep -q inet && break
      kill -0 "$u" 2>/dev/null || break
      sleep 0.25
    done
    if ip -n "$T-h3" -4 addr show dev "$T-t3" | grep -q inet; then count dhcp ok; else count dhcp fail; fi
    sleep 1
    kill -USR1 "$u" 2>/dev/null || true # renew
    sleep 1
    kill -TERM "$u" 2>/dev/null || true # release (-R) and exit
    for _ in $(seq 50); do kill -0 "$u" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$u" 2>/dev/null || true
    wait "$u" 2>/dev/null || true
  done
) &
LOOPS+=($!)

(
  n=0
  while running; do
    n=$((n + 1))
    out=$(timeout 10 ip netns exec "$T-h4" dig @"$GW" +tries=1 +time=1 +short \
      h1.lab.test "n$n-$RANDOM.example.org" 2>/dev/null || true)
    if [ "$out" = "$(printf '10.13.31.11\n192.0.2.7')" ]; then count dns ok; else count dns fail; fi
    timeout 10 ip netns exec "$T-h4" dig @"$GW" +tries=1 +time=1 +short churn.lab.test >/dev/null 2>&1 || true
    sleep 0.1
  done
) &
LOOPS+=($!)

(
  n=0
  while running; do
    n=$((n + 1))
    if timeout 10 "$SWITCHYARD" host add soak --mac 52:54:00:77:01:01 --ipv4 10.13.31.50 \
      --socket "$SOCK" >/dev/null 2>&1 &&
      timeout 10 "$SWITCHYARD" ports --json --socket "$SOCK" >/dev/null 2>&1 &&
      timeout 10 "$SWITCHYARD" host del soak --socket "$SOCK" >/dev/null 2>&1; then
      count control ok
    else
      count control fail
    fi
    sleep 0.5
  done
) &
LOOPS+=($!)

# Ports added and removed live: a stream port (QEMU's socket kind, no namespace needed) comes
# and goes twice a second, so a leaked fd, thread or socket file would show in the samples.
(
  while running; do
    if timeout 10 "$SWITCHYARD" port add churn --kind stream --path "$DIR/churn.sock" \
      --socket "$SOCK" >/dev/null 2>&1 &&
      [ -S "$DIR/churn.sock" ] &&
      timeout 10 "$SWITCHYARD" port del churn --socket "$SOCK" >/dev/null 2>&1 &&
      [ ! -e "$DIR/churn.sock" ]; then
      count hotplug ok
    else
      count hotplug fail
    fi
    sleep 0.5
  done
) &
LOOPS+=($!)

# ---- sampling ----
sample() {
  local t=$(($(date +%s) - START)) rss thr fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status")
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$DAEMON/status")
  fds=$(find "/proc/$DAEMON/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$t $rss $fds $thr" >>"$DIR/samples"
}
while running; do
  kill -0 "$DAEMON" 2>/dev/null || { echo "soak.sh: the daemon died" >&2; cat "$DIR/daemon.err" >&2; exit 1; }
  sample
  sleep "$SAMPLE"
done
touch "$DIR/stop"
for p in "${LOOPS[@]:2}"; do wait "$p" 2>/dev/null || true; done
sleep 3
kill -0 "$DAEMON" 2>/dev/null || { echo "soak.sh: the daemon died" >&2; cat "$DIR/daemon.err" >&2; exit 1; }
echo "settled" >>"$DIR/samples"
sample # the settled sample, loads stopped

kill -TERM "$DAEMON"
rc=0
for _ in $(seq 150); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$DAEMON" 2>/dev/null; then
  echo "soak.sh: the daemon did not stop within 15 s of SIGTERM" >&2
  rc=1
else
  wait "$DAEMON" || { echo "soak.sh: the daemon exited with $?" >&2; rc=1; }
fi
DAEMON=""

# ---- the verdict ----
echo "soak: $DURATION s, a sample every $SAMPLE s, warm-up $WARMUP s, RSS margin $RSS_MARGIN %"
for load in iperf3 dhcp dns control hotplug; do
  ok=$(grep -c ok "$DIR/count.$load" 2>/dev/null || true)
  fail=$(grep -c fail "$DIR/count.$load" 2>/dev/null || true)
  echo "load $load: ${ok:-0} ok, ${fail:-0} failed"
  if [ "${ok:-0}" = 0 ]; then
    echo "soak.sh: FAIL: load $load never succeeded" >&2
    rc=1
  fi
done
grep -E '^dns: ' "$DIR/daemon.out" || true
awk -v warmup="$WARMUP" -v margin="$RSS_MARGIN" '
  $1 == "settled" { settled = 1; next }
  settled == 0 && $1 != "" {
    n++
    if (n == 1) { rss_first = $2; fd_first = $3; thr_first = $4; rss_min = $2; rss_max = $2 }
    if ($2 < rss_min) rss_min = $2
    if ($2 > rss_max) rss_max = $2
    if ($1 <= warmup) { if ($3 > fd_warm) fd_warm = $3; if ($4 > thr_warm) thr_warm = $4 }
    if ($1 > warmup && base == "") { base = $2; base_t = $1 }
    rss_last = $2; last_line = $0
    next
  }
  { fd_end = $3; thr_end = $4; rss_end = $2 }
  END {
    if (n < 3 || base == "") { print "soak.sh: FAIL: too few samples after the warm-up" > "/dev/stderr"; exit 1 }
    limit = base * (100 + margin) / 100
    printf "RSS kB: first %d, min %d, max %d, last %d (after warm-up, at %d s: %d; limit %d); %d samples\n", \
      rss_first, rss_min, rss_max, rss_last, base_t, base, limit, n
    printf "fds: first %d, warm-up max %d, settled %d; threads: first %d, warm-up max %d, settled %d\n", \
      fd_first, fd_warm, fd_end, thr_first, thr_warm, thr_end
    bad = 0
    if (rss_last > limit) { print "soak.sh: FAIL: RSS grew more than " margin " % after the warm-up" > "/dev/stderr"; bad = 1 }
    if (fd_end > fd_warm) { print "soak.sh: FAIL: open fds grew (a leak?)" > "/dev/stderr"; bad = 1 }
    if (thr_end > thr_warm) { print "soak.sh: FAIL: threads grew (a leak?)" > "/dev/stderr"; bad = 1 }
    exit bad
  }' "$DIR/samples" || rc=1
if [ "$rc" = 0 ]; then echo "soak: PASS"; else echo "soak: FAIL"; fi
exit "$rc"
