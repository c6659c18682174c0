#!/usr/bin/env bash
# VM-to-VM forwarding, switchyard's vhost-user ports vs the Linux kernel bridge, side by side.
#
# Two pretend VMs (`sy-vmguest`, a virtio-net driver of this repository) send to each other:
#   - through switchyard: each guest is the vhost-user frontend of a `vhost-user` port (its own
#     memfd memory and virtqueues; the switch maps it and copies frames between the rings);
#   - through a kernel bridge: each guest drives a tap the way QEMU does without vhost-net
#     (read/write of virtio-net header + frame, TSO/checksum offloads on), both taps enslaved to
#     a bridge in a namespace of the script's own;
#   - through /dev/vhost-net where the kernel has one: this row is skipped with a message when
#     it does not (this project's machines have none; see TESTBED.md).
# Same frames, same run, alternating which path goes first each round, medians of ROUNDS:
#   - 64-byte frames: received Mpps and loss; 1500-byte frames: Mpps and Gbit/s;
#   - 64 KiB TCP super-frames with a GSO header: Gbit/s;
#   - ping-pong latency p50/p99 (64-byte frames, one in flight);
# each with the ratio switchyard / bridge, the CPU seconds of each side (the two guests, and
# switchyard's own process for its path), the machine, and the copy count of each path.
#
# Bounded: about 2 minutes with the defaults; every process has a timeout; a trap removes the
# namespaces and stops what the script started, even on failure or Ctrl-C. Nothing touches the
# root namespace's addresses, routes or links.
#
#   ./scripts/bench-vm.sh                 # as root; ROUNDS=3 DUR=3
#   ROUNDS=1 DUR=2 ./scripts/bench-vm.sh  # a quick look
#   TESTS=lat SWITCH_CONF="poll_us = 100" ./scripts/bench-vm.sh  # latency with busy polling
#   VERBOSE=1 TESTS=64 ./scripts/bench-vm.sh  # also each stream's raw sender and sink lines
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
SWITCH_CONF=${SWITCH_CONF:-}     # extra [switch] lines, e.g. "poll_us = 100"
TESTS=${TESTS:-"64 1500 gso lat"} # a part only, e.g. TESTS=lat

if [ "$(id -u)" != 0 ]; then
  echo "bench-vm.sh: run as root (it creates taps and network namespaces)" >&2
  exit 1
fi
modprobe tun 2>/dev/null || true

cargo build --release --locked -q --bin switchyard --bin sy-vmguest
BIN=$PWD/target/release/switchyard
GUEST=$PWD/target/release/sy-vmguest

P="syv$((RANDOM % 9000 + 1000))"
SW=$P-sw BR=$P-br
MAC_A=52:54:00:78:00:0a MAC_B=52:54:00:78:00:0b
WORK=$(mktemp -d /tmp/bench-vm.XXXXXX)
SY_PID=""

cleanup() {
  set +e
  stop_pid "$SY_PID"
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  remove_lab "$WORK" "$SW" "$BR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the two worlds ---------------------------------------------------------------------------

ip netns add "$SW"
cat >"$WORK/sy.toml" <<EOF
[network]
name = "$P"
subnet = "10.99.0.0/24"
gateway = "10.99.0.254"
domain = "bench.test"

[switch]
control_socket = "$WORK/control.sock"
$SWITCH_CONF

[dhcp]
enabled = false
state_dir = "$WORK/state"

[[port]]
name = "a"
kind = "vhost-user"
path = "$WORK/a.vhost"

[[port]]
name = "b"
kind = "vhost-user"
path = "$WORK/b.vhost"
EOF
nsenter --net="/run/netns/$SW" "$BIN" run --config "$WORK/sy.toml" >"$WORK/sy.out" 2>"$WORK/sy.err" &
SY_PID=$!
for _ in $(seq 100); do
  [ -S "$WORK/a.vhost" ] && [ -S "$WORK/b.vhost" ] && break
  kill -0 "$SY_PID" 2>/dev/null || { cat "$WORK/sy.err" >&2; exit 1; }
  sleep 0.1
done

ip netns add "$BR"
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
for t in ta tb; do
  ip -n "$BR" tuntap add mode tap vnet_hdr name "$t"
  ip -n "$BR" link set "$t" master br0
  ip -n "$BR" link set "$t" up
done

sy_cpu() { # switchyard's user+system seconds so far
  awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$SY_PID/stat"
}

# guest PATH ROLE... : runs one sy-vmguest on PATH ("sy": its vhost-user port, "br": its tap)
guest() {
  local world=$1 who=$2 mac=$3 secs=$4
  shift 4
  if [ "$world" = sy ]; then
    timeout $((${secs%.*} + 10)) "$GUEST" --vhost-user "$WORK/$who.vhost" --mac "$mac" --seconds "$secs" "$@"
  else
    timeout $((${secs%.*} + 10)) ip netns exec "$BR" "$GUEST" --tap "t$who" --mac "$mac" --seconds "$secs" "$@"
  fi
}

field() { # KEY LINE
  sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"
}

# one_stream WORLD SIZE GSO: sink on b, blast from a; prints "mpps gbps loss cpu_guests cpu_sy"
one_stream() {
  local world=$1 size=$2 gso=$3 sink tx rx sy0 sy1
  sy0=$(sy_cpu)
  guest "$world" b "$MAC_B" $((DUR + 4)) sink --idle-ms 700 >"$WORK/sink.out" &
  local sink_pid=$!
  for _ in $(seq 80); do grep -q ready "$WORK/sink.out" 2>/dev/null && break; sleep 0.1; done
  tx=$(guest "$world" a "$MAC_A" "$DUR" blast --to "$MAC_B" --size "$size" $gso)
  wait "$sink_pid" || true
  rx=$(tail -1 "$WORK/sink.out")
  [ -n "${VERBOSE:-}" ] && echo "  $world $size: sender: $tx; sink: $rx" >&2
  sy1=$(sy_cpu)
  awk -v txf="$(field tx_frames "$tx")" -v rxf="$(field rx_frames "$rx")" \
    -v rxb="$(field rx_bytes "$rx")" -v secs="$(field secs "$rx")" \
    -v c1="$(field cpu "$tx")" -v c2="$(field cpu "$rx")" -v s0="$sy0" -v s1="$sy1" -v w="$world" \
    'BEGIN { if (secs <= 0) secs = 1e-9; loss = txf > 0 ? 1 - rxf / txf : 1; if (loss < 0) loss = 0;
             sy = (w == "sy") ? s1 - s0 : 0;
             printf "%.4f %.3f %.4f %.2f %.2f\n", rxf / secs / 1e6, rxb * 8 / secs / 1e9, loss, c1 + c2, sy }'
}

# pingpong WORLD: prints "p50 p99 cpu_guests cpu_sy"
pingpong() {
  local world=$1 out sy0 sy1
  sy0=$(sy_cpu)
  guest "$world" b "$MAC_B" $((DUR + 6)) echo >"$WORK/echo.out" &
  local echo_pid=$!
  sleep 0.5
  out=$(guest "$world" a "$MAC_A" $((DUR + 4)) ping --to "$MAC_B" --count 2000)
  # $echo_pid is the subshell running `guest`: stop its child (timeout, which passes the
  # signal on to the guest) by parent pid, so the guest's tap is free for the next run.
  pkill -TERM -P "$echo_pid" 2>/dev/null || true
  wait "$echo_pid" 2>/dev/null || true
  sy1=$(sy_cpu)
  awk -v a="$(field p50_us "$out")" -v b="$(field p99_us "$out")" -v c="$(field cpu "$out")" \
    -v s0="$sy0" -v s1="$sy1" -v w="$world" \
    'BEGIN { printf "%s %s %.2f %.2f\n", a, b, c, (w == "sy") ? s1 - s0 : 0 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }

declare -A res
run_round() {
  local first=$1 second=$2 w
  for w in $first $second; do
    case " $TESTS " in *" 64 "*) res[$w-64]+="$(one_stream "$w" 64 "")"$'\n' ;; esac
    case " $TESTS " in *" 1500 "*) res[$w-1500]+="$(one_stream "$w" 1500 "")"$'\n' ;; esac
    case " $TESTS " in *" gso "*) res[$w-gso]+="$(one_stream "$w" 65000 --gso)"$'\n' ;; esac
    case " $TESTS " in *" lat "*) res[$w-lat]+="$(pingpong "$w")"$'\n' ;; esac
  done
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run_round sy br; else run_round br sy; fi
done

col() { # KEY N: median of column N over the rounds
  printf '%s' "${res[$1]:-}" | awk -v n="$2" 'NF { print $n }' | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
echo "== bench-vm: two virtio-net guests, switchyard vhost-user vs kernel bridge + taps =="
echo "machine: $(nproc) cores, $(awk '/model name/ { $1 = $2 = $3 = ""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), kernel $(uname -r)"
echo "rounds=$ROUNDS dur=${DUR}s per stream, medians; ratio = switchyard / bridge"
printf '%-34s %14s %14s %8s\n' "workload" "switchyard" "kernel bridge" "ratio"
row() { printf '%-34s %14s %14s %8s\n' "$1" "$2" "$3" "$(ratio "$4" "$5")"; }
a=$(col sy-64 1) b=$(col br-64 1); row "64 B frames (Mpps received)" "$a" "$b" "$a" "$b"
la=$(col sy-64 3) lb=$(col br-64 3)
printf '%-34s %14s %14s\n' "64 B frames (loss)" "$(awk -v l="$la" 'BEGIN{printf "%.1f %%", l*100}')" "$(awk -v l="$lb" 'BEGIN{printf "%.1f %%", l*100}')"
a=$(col sy-1500 1) b=$(col br-1500 1); row "1500 B frames (Mpps received)" "$a" "$b" "$a" "$b"
a=$(col sy-1500 2) b=$(col br-1500 2); row "1500 B frames (Gbit/s)" "$a" "$b" "$a" "$b"
a=$(col sy-gso 2) b=$(col br-gso 2); row "64 KiB GSO frames (Gbit/s)" "$a" "$b" "$a" "$b"
a=$(col sy-lat 1) b=$(col br-lat 1); row "ping-pong p50 (us)" "$a" "$b" "$a" "$b"
a=$(col sy-lat 2) b=$(col br-lat 2); row "ping-pong p99 (us)" "$a" "$b" "$a" "$b"
echo
echo "CPU seconds per run (median; guests = sender + receiver user+sys, which for the bridge"
echo "includes the kernel's forwarding done in their syscalls; switchyard = its own process):"
for k in 64 1500 gso; do
  printf '  %-6s switchyard: guests %s + switch %s   bridge: guests %s\n' "$k" \
    "$(col "sy-$k" 4)" "$(col "sy-$k" 5)" "$(col "br-$k" 4)"
done
echo "copies per frame: switchyard vhost-user -> vhost-user: 2 (source ring -> switch buffer, where"
echo "  the guard decides, -> destination ring), no syscall per frame; kernel bridge + taps without"
echo "  vhost-net: 2 (sender's write into an skb, skb -> receiver's read), one syscall per frame each side."
if [ -e /dev/vhost-net ]; then
  echo "vhost-net row: /dev/vhost-net exists, but sy-vmguest has no vhost-net mode yet: skipped."
else
  echo "vhost-net row: skipped, this kernel has no /dev/vhost-net."
fi
