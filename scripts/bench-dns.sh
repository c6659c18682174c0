#!/usr/bin/env bash
# DNS queries a second, switchyard against dnsmasq, side by side in one run.
#
#   sudo ./scripts/bench-dns.sh               # local and cached names, 5 s each, 1 run a cell
#   sudo PERIOD=3 RUNS=3 ./scripts/bench-dns.sh
#
# dnsperf (Debian dnsperf) sends from a client namespace for PERIOD seconds a cell
# (-c CLIENTS_DNSPERF sockets, -q OUTSTANDING queries in flight), cycling through a query file:
#   local:  NAMES reservations vm1.lab.test .. vmN.lab.test (A), answered from local data;
#   cached: NAMES forwarded names n1.example.org .. nN.example.org (A), answered from the cache
#           (one warm-up pass first; the upstream gives them a TTL of an hour).
#
#   switchyard: client ns --tap--> switchyard (own ns, via nsenter), gateway 10.13.31.1
#   dnsmasq:    client ns --veth--> dnsmasq ns, 10.13.31.1, the same names (--host-record)
#   upstream:   a dnsmasq in its own ns answering *.example.org with 192.0.2.7, reached over a
#               veth from each server's namespace (192.0.2.53 / 198.51.100.53)
#
# Both servers answer local names with TTL 0 (their defaults) and cache 10,000 entries.
# Everything lives in namespaces the script creates (unique names); a trap removes every
# namespace, process and temp file, also on failure or Ctrl-C. Nothing touches the root
# namespace. Every load is bounded by PERIOD and a timeout.
#
# Knobs (environment): PERIOD (5 s), RUNS (1; the cell is the median), NAMES (50),
# CLIENTS_DNSPERF (4), OUTSTANDING (64), SWITCHYARD (default target/release/switchyard, built
# first), KEEP_LOGS=1 (keep the temp dir and print its path).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

PERIOD=${PERIOD:-5}
RUNS=${RUNS:-1}
NAMES=${NAMES:-50}
CLIENTS_DNSPERF=${CLIENTS_DNSPERF:-4}
OUTSTANDING=${OUTSTANDING:-64}
if [ -z "${SWITCHYARD:-}" ]; then
  BUILD=1
  SWITCHYARD=target/release/switchyard
fi

if [ "$(id -u)" != 0 ]; then
  echo "bench-dns.sh: run as root (it creates network namespaces and taps)" >&2
  exit 1
fi

declare -A need=([dnsperf]=dnsperf [dnsmasq]=dnsmasq-base [dig]=bind9-dnsutils
  [nsenter]=util-linux [ip]=iproute2 [timeout]=coreutils)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
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
NS_DM="$TAG-dm" # dnsmasq
NS_C2="$TAG-c2" # dnsperf against dnsmasq (one end of a veth)
NS_UP="$TAG-up" # the fake upstream
TAP="${TAG}t"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-dns.XXXXXX")
PIDS=()

stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  for ns in "$NS_C1" "$NS_C2" "$NS_DM" "$NS_SW" "$NS_UP"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then
    echo "logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
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
for ns in "$NS_SW" "$NS_C1" "$NS_DM" "$NS_C2" "$NS_UP"; do
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
veth "$NS_DM" 198.51.100.1/24 "$NS_UP" 198.51.100.53/24
veth "$NS_C2" 10.13.31.11/24 "$NS_DM" 10.13.31.1/24

# The upstream: every *.example.org is 192.0.2.7 for an hour.
ip netns exec "$NS_UP" dnsmasq --no-daemon --conf-file=/dev/null --user=root --group=root \
  --no-resolv --no-hosts --bind-interfaces --listen-address=192.0.2.53 \
  --listen-address=198.51.100.53 --address=/example.org/192.0.2.7 --local-ttl=3600 \
  --pid-file= >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)

# ---- the names ------------------------------------------------------------------------------
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
    printf '\n[[host]]\nname = "vm%d"\nmac = "52:54:00:31:%02x:%02x"\nipv4 = "10.13.31.%d"\n' \
      "$i" $((i / 256)) $((i % 256)) $((i + 20))
  done
} >"$TMP/switchyard.toml"
: >"$TMP/dnsmasq.conf"
for i in $(seq "$NAMES"); do
  echo "host-record=vm$i.lab.test,vm$i,10.13.31.$((i + 20))" >>"$TMP/dnsmasq.conf"
  echo "vm$i.lab.test A" >>"$TMP/local.txt"
  echo "n$i.example.org A" >>"$TMP/cached.txt"
done

RUST_LOG=warn nsenter --net="/run/netns/$NS_SW" "$SWITCHYARD" run --config "$TMP/switchyard.toml" \
  >"$TMP/switchyard.stdout" 2>"$TMP/switchyard.stderr" &
PIDS+=($!)
for i in $(seq 150); do
  ip -n "$NS_C1" -br link show dev "$TAP" 2>/dev/null | grep -q UP && break
  [ "$i" = 150 ] && { cat "$TMP/switchyard.stderr" >&2; die "the tap did not come up"; }
  sleep 0.1
done
ip -n "$NS_C1" addr add 10.13.31.11/24 dev "$TAP"

ip netns exec "$NS_DM" dnsmasq --no-daemon --conf-file="$TMP/dnsmasq.conf" --user=root \
  --group=root --no-resolv --no-hosts --server=198.51.100.53 --bind-interfaces \
  --listen-address=10.13.31.1 --domain=lab.test --local=/lab.test/ --cache-size=10000 \
  --pid-file= >"$TMP/dnsmasq.log" 2>&1 &
PIDS+=($!)

# Both answer a local and a forwarded name before the clock starts (bounded).
for ns in "$NS_C1" "$NS_C2"; do
  for name in vm1.lab.test n1.example.org; do
    for i in $(seq 50); do
      out=$(ip netns exec "$ns" dig @10.13.31.1 +short +tries=1 +time=1 "$name" 2>/dev/null || true)
      [ -n "$out" ] && break
      [ "$i" = 50 ] && die "no answer for $name in $ns"
      sleep 0.1
    done
  done
done

# dnsperf NS FILE SECONDS: prints queries a second.
dnsperf_qps() {
  ip netns exec "$1" timeout $(($3 + 20)) dnsperf -s 10.13.31.1 -d "$2" -l "$3" \
    -c "$CLIENTS_DNSPERF" -q "$OUTSTANDING" -t 2 >"$TMP/dnsperf.out" 2>&1 ||
    { cat "$TMP/dnsperf.out" >&2; die "dnsperf failed"; }
  grep -oP 'Queries per second:\s+\K[0-9.]+' "$TMP/dnsperf.out" | cut -d. -f1
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

# Warm both caches: one second through the forwarded names.
dnsperf_qps "$NS_C1" "$TMP/cached.txt" 1 >/dev/null
dnsperf_qps "$NS_C2" "$TMP/cached.txt" 1 >/dev/null

printf '| names | switchyard q/s | dnsmasq q/s | switchyard / dnsmasq |\n|---|---:|---:|---:|\n'
for kind in local cached; do
  sy="" dm=""
  for r in $(seq "$RUNS"); do
    sy="$sy $(dnsperf_qps "$NS_C1" "$TMP/$kind.txt" "$PERIOD")"
    dm="$dm $(dnsperf_qps "$NS_C2" "$TMP/$kind.txt" "$PERIOD")"
  done
  s=$(echo "$sy" | median)
  d=$(echo "$dm" | median)
  ratio=$(awk -v s="$s" -v d="$d" 'BEGIN { if (d > 0) printf "%.2f", s / d; else print "-" }')
  printf '| %s | %s | %s | %s |\n' "$kind" "$s" "$d" "$ratio"
done
