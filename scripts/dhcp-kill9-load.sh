#!/usr/bin/env bash
# kill -9 under load loses no acknowledged lease: perfdhcp loads switchyard (full DORA, as a
# relay agent, like scripts/bench-dhcp.sh) while tcpdump records every reply in the client
# namespace; the daemon is killed with SIGKILL in the middle of the load; then the last ACK each
# client saw (chaddr -> yiaddr, and its expiry: capture time + option 51, read with scapy) must
# be in the journal (`switchyard leases --offline`) with at least that expiry, and a restarted
# daemon must list the same leases. Comparing expiries is what lets this fail: perfdhcp reuses
# its MACs, and each gets the same pool address again, so a lost record of the last ACK would
# hide behind an earlier one with the same address but an expiry seconds shorter.
#
#   sudo ./scripts/dhcp-kill9-load.sh              # CLIENTS=10000 RATE=5000 KILL_AFTER=3
#
# Bounded (about 30 s); everything lives in namespaces the script creates, and a trap removes
# them, the processes and the temp dir (KEEP_LOGS=1 keeps the dir), also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

CLIENTS=${CLIENTS:-10000}
RATE=${RATE:-5000}
KILL_AFTER=${KILL_AFTER:-3}
if [ -z "${SWITCHYARD:-}" ]; then
  cargo build --release --locked
  SWITCHYARD=target/release/switchyard
fi
SWITCHYARD=$(realpath "$SWITCHYARD")
[ "$(id -u)" = 0 ] || { echo "dhcp-kill9-load.sh: run as root" >&2; exit 1; }
declare -A need=([perfdhcp]=kea-admin [tcpdump]=tcpdump [nsenter]=util-linux [timeout]=coreutils)
install_missing
/usr/bin/python3 -c 'import scapy' 2>/dev/null || install_missing python3-scapy
modprobe tun 2>/dev/null || true

TAG="syk$(($$ % 100000))"
NS_SW="$TAG-sw"
NS_C="$TAG-c"
TAP="${TAG}t"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dhcp-kill9.XXXXXX")
SW_PID="" PD_PID="" TD_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PD_PID"
  stop_pid "$TD_PID"
  stop_pid "$SW_PID"
  remove_lab "$TMP" "$NS_C" "$NS_SW"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
die() { echo "dhcp-kill9-load.sh: $*" >&2; exit 1; }

for ns in "$NS_SW" "$NS_C"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
cat >"$TMP/switchyard.toml" <<EOF
[network]
name = "$TAG"
subnet = "10.13.0.0/18"
gateway = "10.13.0.1"
domain = "bench.test"

[switch]
storm_limit = "off"
control_socket = "$TMP/control.sock"

[dhcp]
pool = ["10.13.0.10", "10.13.40.7"]
rate_limit = "off"
state_dir = "$TMP/state"

[[port]]
name = "client"
kind = "tap"
ifname = "$TAP"
netns = "$NS_C"
address = "none"
trusted = true
EOF

start() {
  RUST_LOG=warn nsenter --net="/run/netns/$NS_SW" "$SWITCHYARD" run --config "$TMP/switchyard.toml" \
    >>"$TMP/stdout" 2>>"$TMP/stderr" &
  SW_PID=$!
  local i
  for i in $(seq 150); do
    ip -n "$NS_C" -br link show dev "$TAP" 2>/dev/null | grep -q UP && return 0
    kill -0 "$SW_PID" 2>/dev/null || { cat "$TMP/stderr" >&2; die "switchyard exited at start"; }
    sleep 0.1
  done
  die "the tap did not come up"
}

start
ip -n "$NS_C" addr add 10.13.63.250/18 dev "$TAP"
ip netns exec "$NS_C" timeout 40 tcpdump -q -n -s 400 -B 65536 -i "$TAP" -w "$TMP/replies.pcap" \
  'udp src port 67 and dst host 10.13.63.250' 2>"$TMP/tcpdump.err" &
TD_PID=$!
sleep 1
ip netns exec "$NS_C" timeout 30 perfdhcp -4 -l "$TAP" -R "$CLIENTS" -r "$RATE" -p 20 \
  >"$TMP/perfdhcp.out" 2>&1 &
PD_PID=$!
sleep "$KILL_AFTER"
kill -KILL "$SW_PID"
wait "$SW_PID" 2>/dev/null || true
SW_PID=""
sleep 0.5 # replies already in flight reach the capture
stop_pid "$PD_PID"
PD_PID=""
kill -INT "$TD_PID" 2>/dev/null || true
wait "$TD_PID" 2>/dev/null || true
TD_PID=""

# The ACKs the client saw, one "mac ip min-expiry" a line; the last one per MAC is the lease it
# holds. The server's clock read before the capture's, by the exchange's latency (< 2 s here).
/usr/bin/python3 - "$TMP/replies.pcap" >"$TMP/acked" <<'EOF'
import sys
from scapy.all import PcapReader, BOOTP, DHCP
last = {}
for p in PcapReader(sys.argv[1]):
    if BOOTP in p and DHCP in p and ("message-type", 5) in p[DHCP].options:
        mac = ":".join("%02x" % b for b in bytes(p[BOOTP].chaddr)[:6])
        opts = dict(o for o in p[DHCP].options if isinstance(o, tuple) and len(o) == 2)
        lease = opts.get("lease_time")
        last[mac] = (p[BOOTP].yiaddr, int(p.time) - 2 + int(lease) if lease else 0)
for mac, (ip, exp) in sorted(last.items()):
    print(mac, ip, exp)
EOF
acked=$(wc -l <"$TMP/acked")
[ "$acked" -gt 0 ] || die "no ACK was captured before the kill (raise KILL_AFTER)"

journal_leases() { # args: extra switchyard leases flags
  "$SWITCHYARD" leases --json --config "$TMP/switchyard.toml" "$@" |
    /usr/bin/python3 -c 'import json,sys; [print(l["mac"], l["ipaddr"], l["expiry_time"] or 0) for l in json.load(sys.stdin)]' |
    sort
}
journal_leases --offline >"$TMP/journal"
# Acknowledged leases the journal lacks, holds for another address, or holds only as an
# earlier ACK (a shorter expiry).
/usr/bin/python3 - "$TMP/acked" "$TMP/journal" >"$TMP/missing" <<'EOF'
import sys
journal = {}
for line in open(sys.argv[2]):
    mac, ip, exp = line.split()
    journal[mac] = (ip, int(exp))
for line in open(sys.argv[1]):
    mac, ip, exp = line.split()
    got = journal.get(mac)
    if got is None or got[0] != ip or got[1] < int(exp):
        print(line.strip(), "journal:", got)
EOF
missing=$(wc -l <"$TMP/missing")

start # the restarted daemon replays the journal
journal_leases >"$TMP/restarted"
stop_pid "$SW_PID"
SW_PID=""
differ=$(cmp -s "$TMP/journal" "$TMP/restarted" && echo 0 || echo 1)

echo "kill -9 after ${KILL_AFTER}s of perfdhcp -R $CLIENTS -r $RATE:" \
  "$acked clients saw an ACK; journal after the kill: $(wc -l <"$TMP/journal") leases;" \
  "acknowledged but missing: $missing; restarted daemon lists $(wc -l <"$TMP/restarted") leases" \
  "(same as the journal: $([ "$differ" = 0 ] && echo yes || echo no))"
if [ "$missing" != 0 ]; then
  head "$TMP/missing" >&2
  die "acknowledged leases are missing from the journal"
fi
[ "$differ" = 0 ] || die "the restarted daemon does not list the journal's leases"
