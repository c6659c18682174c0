#!/usr/bin/env bash
# VXLAN encapsulation cost: switchyard's vxlan port against the kernel's vxlan device, side by
# side in one run, each talking to the same kind of far end (a kernel vxlan device on a kernel
# bridge in a "second host" namespace), over a veth underlay of MTU 1550 (inner 1500 + 50).
#
#   sy: host A (tap) - switchyard (vxlan port)      =underlay=  kernel vx0 + bridge - host B
#   kk: host A (veth) - kernel bridge + kernel vx0  =underlay=  kernel vx0 + bridge - host B
#
# Workloads: iperf3 TCP, 1 stream, A -> B and B -> A (Gbit/s received), and ping p50 A -> B.
# Prints the median of ROUNDS runs of DUR seconds each, alternating the two worlds, with the
# ratio switchyard / kernel. Bounded: about 40 s of traffic with the defaults (plus a release
# build); every command has a timeout; a trap removes the namespaces and stops every process.
#
#   ./scripts/bench-vxlan.sh                  # as root; ROUNDS=3 DUR=3
#   ROUNDS=5 DUR=5 ./scripts/bench-vxlan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}

if [ "$(id -u)" != 0 ]; then
  echo "bench-vxlan.sh: run as root (it creates taps and network namespaces)" >&2
  exit 1
fi
declare -A need=([iperf3]=iperf3 [ping]=iputils-ping [jq]=jq [nsenter]=util-linux [ip]=iproute2)
install_missing
modprobe tun 2>/dev/null || true
modprobe vxlan 2>/dev/null || true

cargo build --release --locked -q
BIN=$PWD/target/release/switchyard

P="syv$((RANDOM % 9000 + 1000))"
SW=$P-sw SA=$P-sa            # switchyard's namespace and its tap host
K1=$P-k1 KA=$P-ka            # the kernel's first VTEP and its host
F1=$P-f1 FB=$P-fb            # far end of the sy world: kernel VTEP and host B
F2=$P-f2 GB=$P-gb            # far end of the kk world
ALL=("$SW" "$SA" "$K1" "$KA" "$F1" "$FB" "$F2" "$GB")
WORK=$(mktemp -d /tmp/bench-vxlan.XXXXXX)
SY_PID=""
IPERF_PIDS=()

cleanup() {
  set +e
  stop_pid "$SY_PID"
  for p in "${IPERF_PIDS[@]}"; do stop_pid "$p"; done
  remove_lab "$WORK" "${ALL[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "${ALL[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

# far NS_VTEP NS_HOST LOCAL REMOTE: a kernel vxlan device on a bridge, host B (10.77.0.12)
# behind a veth; the underlay's far side is added by the caller.
far() {
  ip -n "$1" link add vx0 type vxlan id 42 remote "$4" local "$3" dstport 4789 dev u1
  ip -n "$1" link set vx0 mtu 1500
  ip -n "$1" link add br0 type bridge
  ip -n "$1" link set vx0 master br0 up
  ip -n "$1" link add pb type veth peer name eth0 netns "$2"
  ip -n "$1" link set pb master br0 up
  ip -n "$1" link set br0 up
  ip -n "$2" link set eth0 address 52:54:00:77:00:0c up
  ip -n "$2" addr add 10.77.0.12/24 dev eth0
}
underlay() { # NS_A NS_B IP_A IP_B
  ip link add u0 netns "$1" mtu 1550 type veth peer name u1 netns "$2" mtu 1550
  ip -n "$1" addr add "$3/24" dev u0
  ip -n "$2" addr add "$4/24" dev u1
  ip -n "$1" link set u0 up
  ip -n "$2" link set u1 up
}

# The sy world.
underlay "$SW" "$F1" 10.99.0.1 10.99.0.2
far "$F1" "$FB" 10.99.0.2 10.99.0.1
cat >"$WORK/sy.toml" <<EOF
[network]
name = "$P"
subnet = "10.77.0.0/24"
gateway = "10.77.0.1"
domain = "bench.test"

[dhcp]
enabled = false
state_dir = "$WORK/state"

[[host]]
name = "a"
mac = "52:54:00:77:00:0b"
ipv4 = "10.77.0.11"

[[port]]
name = "a"
kind = "tap"
ifname = "${P}a"
host = "a"
netns = "$SA"

[[port]]
name = "vx"
kind = "vxlan"
vni = 42
local = "10.99.0.1"
remotes = ["10.99.0.2"]
EOF
nsenter --net="/run/netns/$SW" "$BIN" run --config "$WORK/sy.toml" \
  >"$WORK/sy.out" 2>"$WORK/sy.err" &
SY_PID=$!
for _ in $(seq 100); do
  ip -n "$SA" -br link show "${P}a" 2>/dev/null | grep -q UP && break
  kill -0 "$SY_PID" 2>/dev/null || { cat "$WORK/sy.err" >&2; exit 1; }
  sleep 0.1
done

# The kk world.
underlay "$K1" "$F2" 10.99.0.1 10.99.0.2
far "$F2" "$GB" 10.99.0.2 10.99.0.1
ip -n "$K1" link add vx0 type vxlan id 42 remote 10.99.0.2 local 10.99.0.1 dstport 4789 dev u0
ip -n "$K1" link set vx0 mtu 1500
ip -n "$K1" link add br0 type bridge
ip -n "$K1" link set vx0 master br0 up
ip -n "$K1" link add pa type veth peer name eth0 netns "$KA"
ip -n "$K1" link set pa master br0 up
ip -n "$K1" link set br0 up
ip -n "$KA" link set eth0 address 52:54:00:77:00:0b up
ip -n "$KA" addr add 10.77.0.11/24 dev eth0

for ns in "$FB" "$GB"; do
  ip netns exec "$ns" iperf3 -s -D -p 5201 -I "$WORK/iperf-$ns.pid"
done
sleep 0.5
for ns in "$FB" "$GB"; do IPERF_PIDS+=("$(cat "$WORK/iperf-$ns.pid")"); done
for ns in "$SA" "$KA"; do
  timeout 10 ip netns exec "$ns" ping -c 3 -i 0.2 -W 1 -q 10.77.0.12 >/dev/null ||
    { echo "bench-vxlan.sh: no ping through the $ns world" >&2; cat "$WORK/sy.err" >&2; exit 1; }
done

record() { echo "$3" >>"$WORK/res.$1.$2"; } # metric world value
host_a() { if [ "$1" = sy ]; then echo "$SA"; else echo "$KA"; fi; }
tcp() { # world metric [-R]
  local j
  j=$(timeout $((DUR + 15)) ip netns exec "$(host_a "$1")" \
    iperf3 -c 10.77.0.12 -p 5201 -t "$DUR" -J ${3:-}) || { echo "iperf3 failed ($1 $2)" >&2; return; }
  record "$2" "$1" "$(jq '.end.sum_received.bits_per_second / 1e9' <<<"$j")"
}
latency() { # world
  timeout 20 ip netns exec "$(host_a "$1")" ping -n -c 200 -i 0.005 -W 1 10.77.0.12 |
    awk -F'time=' '/time=/{split($2, a, " "); print a[1] * 1000}' | sort -n >"$WORK/ping.$1"
  record p50 "$1" "$(awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}' "$WORK/ping.$1")"
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="sy kk"; else order="kk sy"; fi
  for w in $order; do
    tcp "$w" tcp_ab
    tcp "$w" tcp_ba -R
    latency "$w"
  done
done

median() { [ -s "$1" ] && sort -g "$1" | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}' || echo -; }
row() { # label metric format
  local s k
  s=$(median "$WORK/res.$2.sy")
  k=$(median "$WORK/res.$2.kk")
  printf "| %-40s | %10s | %12s | %6s |\n" "$1" "$(printf "$3" "$s")" "$(printf "$3" "$k")" \
    "$(awk -v s="$s" -v k="$k" 'BEGIN{ if (s == "-" || k == "-" || k == 0) print "-"; else printf "%.2fx", s / k }')"
}
echo "switchyard vxlan vs kernel vxlan (far end: kernel vxlan in both), medians of $ROUNDS runs of ${DUR}s"
printf "| %-40s | %10s | %12s | %6s |\n" workload switchyard "kernel vxlan" ratio
echo "|---|---:|---:|---:|"
row "TCP 1 stream, A -> B, inner MTU 1500 (Gbit/s)" tcp_ab "%.2f"
row "TCP 1 stream, B -> A, inner MTU 1500 (Gbit/s)" tcp_ba "%.2f"
row "ping p50 A -> B (µs)" p50 "%.0f"
