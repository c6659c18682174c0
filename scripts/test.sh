#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), then runs the formatter check,
# clippy with warnings as errors, and every test (unit, scenario, namespace integration).
# Must run as root: the integration tests create taps and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (the namespace tests create taps and namespaces)" >&2
  exit 1
fi

# Debian packages the tests drive: command -> package.
declare -A need=(
  [ip]=iproute2
  [ping]=iputils-ping
  [rdisc6]=ndisc6
  [nsenter]=util-linux
  [sysctl]=procps
  [tcpdump]=tcpdump
  [dhclient]=isc-dhcp-client
  [udhcpc]=udhcpc
  [dhcpcd]=dhcpcd-base
  [timeout]=coreutils
  [dig]=bind9-dnsutils
  [dnsmasq]=dnsmasq-base
  [ethtool]=ethtool
  [qemu-system-x86_64]=qemu-system-x86
  [curl]=curl
  [setpriv]=util-linux
  [nft]=nftables
  [iptables]=iptables
  [iperf3]=iperf3
  [perfdhcp]=kea-admin
  [groff]=groff-base
  [tmux]=tmux
  [systemd-analyze]=systemd
  [capsh]=libcap2-bin
  [virsh]=libvirt-clients
  [libvirtd]=libvirt-daemon
)
extra=()
# Python modules the tests import, checked with Debian's interpreter (not a pyenv `python3`).
declare -A need_py=(
  [scapy]=python3-scapy
)
for mod in "${!need_py[@]}"; do
  /usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || extra+=("${need_py[$mod]}")
done
# The VM test boots Debian's kernel (with its virtio modules) and a static busybox initramfs.
compgen -G '/lib/modules/*/kernel/drivers/net/virtio_net.ko' >/dev/null || extra+=(linux-image-amd64)
dpkg -s busybox-static >/dev/null 2>&1 || extra+=(busybox-static)
# tests/libvirt_vm.rs runs Debian's libvirtd (in a private mount namespace of its own) with its
# QEMU driver. Without recommends: no libvirt-daemon-system, so no system libvirtd or virbr0.
dpkg -s libvirt-daemon-driver-qemu >/dev/null 2>&1 || extra+=(libvirt-daemon-driver-qemu)
install_missing "${extra[@]}"
# libvirt's QEMU driver looks its default user up even when qemu.conf says root; the user comes
# with libvirt-daemon-system, which the tests do not install.
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --no-create-home --shell /usr/sbin/nologin --user-group libvirt-qemu
modprobe tun 2>/dev/null || true
# tests/netns_vxlan.rs runs the kernel's vxlan device as the far VTEP.
modprobe vxlan 2>/dev/null || true
[ -c /dev/net/tun ] || { echo "scripts/test.sh: /dev/net/tun is missing" >&2; exit 1; }

# Every relative link in README.md and docs/ points at a file (and heading) that exists.
./scripts/check-links.sh
# No function over 80 lines in the config validation (issue 23).
./scripts/fn-length.sh 80
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked --all-targets
cargo test --locked
# The pure benchmarks must at least run (one quick pass, no measurement).
cargo bench --locked --bench forward -- --test
cargo bench --locked --bench dhcp -- --test
cargo bench --locked --bench dns -- --test
# kill -9 under perfdhcp's load loses no acknowledged lease (about 30 s, the debug build).
SWITCHYARD=target/debug/switchyard ./scripts/dhcp-kill9-load.sh
# Every fuzz target builds and runs for a short bounded time (FUZZ_SECONDS each, default 20).
./scripts/fuzz.sh
