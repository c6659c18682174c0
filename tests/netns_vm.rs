//! A real VM on the switch: QEMU (TCG: KVM does not work on the test bed, see TESTBED.md) boots
//! Debian's kernel with a tiny busybox initramfs built here. Its init loads the virtio modules,
//! runs `udhcpc` on eth0, prints the address it was given, resolves its own name through the
//! appliance's DNS (busybox `nslookup`) and powers off. The VM must get its reservation from
//! the appliance's DHCP server and the name's address from its DNS server, attached to a `stream` port with `-netdev
//! stream`, to a `dgram` port with `-netdev dgram`, and through a tap QEMU creates (`-netdev tap`)
//! that the switch attaches to as a `packet` port when it appears. Each boot is bounded (90 s); on failure the console log is
//! printed.
//!
//! On a `vhost-user` port (guest memory in a shared memfd, `-netdev vhost-user`), the VM also
//! pings a namespace host on a tap, and keeps pinging while the switch is stopped and started
//! again: QEMU's `reconnect=1` brings the port back and the VM's traffic resumes, no reboot.
//!
//! Needs `qemu-system-x86`, `linux-image-amd64` and `busybox-static` (scripts/test.sh installs
//! them).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{build_initramfs, debian_kernel, guest_init};
use common::{lab_config, Lab};

const VM_MAC: &str = "52:54:00:31:00:28";
const VM_IP: &str = "10.13.31.40";
/// How long the VM may take from QEMU's start to its power-off.
const BOOT_LIMIT: Duration = Duration::from_secs(90);

fn init() -> String {
    guest_init(
        8,
        r#"echo "SY-ADDR $(ip -4 -o addr show dev eth0)"
echo "SY-DNS $(nslookup vm.lab.test 10.13.31.1 2>&1 | tr '\n' ' ')"
echo "SY-DONE"
poweroff -f
"#,
    )
}

/// The vhost-user VM's init: address, name, a ping to h1, then a ping every 0.3 s (for the
/// switch restart), each line marked, for up to about three minutes.
fn init_pinging() -> String {
    guest_init(
        8,
        r#"echo "SY-DNS $(nslookup vm.lab.test 10.13.31.1 2>&1 | tr '\n' ' ')"
ping -c 3 -W 2 10.13.31.11 >/dev/null 2>&1 && echo "SY-PING ok" || echo "SY-PING fail"
echo "SY-READY"
i=0
while [ $i -lt 600 ]; do
  if ping -c 1 -W 1 10.13.31.11 >/dev/null 2>&1; then echo "SY-P ok $i"; else echo "SY-P fail $i"; fi
  i=$((i+1))
  sleep 0.3
done
echo "SY-DONE"
poweroff -f
"#,
    )
}

/// udhcpc's hook: on a lease, configure it and say what it was.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "SY-LEASE $ip router=$router dns=$dns domain=$domain"
    ;;
esac
exit 0
"#;

/// A QEMU process, killed (only this one) when dropped.
struct Vm {
    child: Child,
    console: PathBuf,
}

impl Vm {
    /// The console log, then what QEMU wrote to stderr, if anything.
    fn console(&self) -> String {
        let mut log =
            String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned();
        let err = fs::read(self.console.with_file_name("qemu.stderr")).unwrap_or_default();
        if !err.is_empty() {
            log.push_str("\n--- qemu stderr ---\n");
            log.push_str(&String::from_utf8_lossy(&err));
        }
        log
    }

    /// Waits for the VM to power off or `BOOT_LIMIT` to pass; returns the console log.
    fn wait(&mut self) -> String {
        let deadline = Instant::now() + BOOT_LIMIT;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.console();
            }
            let log = self.console();
            assert!(
                Instant::now() < deadline,
                "the VM did not finish within {BOOT_LIMIT:?}; console:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots the VM with `-netdev NETDEV`; `netns`: run QEMU inside that namespace.
fn boot(dir: &Path, netdev: &str, netns: Option<&str>) -> Vm {
    boot_with(dir, &["-netdev", netdev], "", netns, &init())
}

/// Boots the VM with `net_args` (which define netdev `n0`), `nic_opts` appended to its
/// virtio-net-pci device, and `init`.
fn boot_with(dir: &Path, net_args: &[&str], nic_opts: &str, netns: Option<&str>, init: &str) -> Vm {
    let (kernel, modules) = debian_kernel();
    let initrd = dir.join("initramfs.cpio");
    build_initramfs(&initrd, &modules, init, UDHCPC_SCRIPT);
    let console = dir.join("console.log");
    let mut cmd = match netns {
        // `ip netns exec` execs QEMU: the child's pid is QEMU's.
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
            c
        }
        None => Command::new("qemu-system-x86_64"),
    };
    let child = cmd
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nodefaults",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-monitor", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args(net_args)
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={VM_MAC},romfile={nic_opts}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("qemu.stderr")).expect("qemu.stderr"))
        .spawn()
        .expect("qemu-system-x86_64: install qemu-system-x86 (scripts/test.sh does)");
    Vm { child, console }
}

/// Runs the daemon with `port_keys` as the VM's port, boots the VM on `netdev` (in `netns`),
/// and checks it got its reservation.
fn vm_gets_its_address(
    lab: &mut Lab,
    port_keys: &str,
    wait_for: Option<&Path>,
    netdev: &str,
    netns: Option<&str>,
) {
    let mut cfg = lab_config(lab, &[], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"{VM_MAC}\"\nipv4 = \"{VM_IP}\"\n\
         \n[[port]]\nname = \"vm\"\nhost = \"vm\"\n{port_keys}"
    ));
    lab.spawn(&cfg);
    if let Some(sock) = wait_for {
        let s = sock.to_path_buf();
        lab.wait_for("the port's socket", Duration::from_secs(10), || s.exists());
    } else {
        // Give the daemon its moment to start (the packet port starts down: no tap yet).
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut vm = boot(&lab.dir, netdev, netns);
    let log = vm.wait();
    assert!(
        log.contains(&format!("SY-LEASE {VM_IP} router= ")),
        "the VM did not get {VM_IP} (and no router: the lab has no forward); console:\n{log}"
    );
    let dns = log
        .lines()
        .find(|l| l.contains("SY-DNS"))
        .unwrap_or_else(|| panic!("no DNS answer line; console:\n{log}"));
    assert!(
        dns.contains(&format!("Address: {VM_IP}")),
        "vm.lab.test did not resolve to {VM_IP} through the appliance: {dns}\nconsole:\n{log}"
    );
    assert!(log.contains("SY-DONE"), "console:\n{log}");
    drop(vm);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let port = exit.counters("vm");
    assert!(
        port.rx_frames >= 2 && port.tx_frames >= 2,
        "{}",
        exit.stdout
    );
    let drops: Vec<&str> = port.drops.split(' ').collect();
    // A frame flooded to the port before the VM attached counts as port_down; nothing else.
    assert!(
        drops
            .iter()
            .all(|d| *d == "-" || d.starts_with("port_down=")),
        "{}",
        exit.stdout
    );
}

#[test]
fn vm_on_a_stream_port_gets_its_reserved_address() {
    let mut lab = Lab::new();
    let sock = lab.dir.join("vm.sock");
    let keys = format!("kind = \"stream\"\npath = \"{}\"\n", sock.display());
    let netdev = format!(
        "stream,id=n0,server=off,addr.type=unix,addr.path={}",
        sock.display()
    );
    vm_gets_its_address(&mut lab, &keys, Some(&sock), &netdev, None);
}

#[test]
fn vm_on_its_own_tap_attached_as_a_packet_port_gets_its_reserved_address() {
    let mut lab = Lab::new();
    // QEMU creates the tap in a namespace of the test's (as libvirt would in the host's); the
    // switch attaches to it there once it appears.
    let ns = lab.ns("qemu");
    let out = common::sh(&["ip", "netns", "add", &ns]);
    assert!(out.status.success(), "{out:?}");
    let tap = lab.ifname("vmt");
    let keys = format!("kind = \"packet\"\nifname = \"{tap}\"\nnetns = \"{ns}\"\n");
    let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
    vm_gets_its_address(&mut lab, &keys, None, &netdev, Some(&ns));
}

#[test]
fn vm_on_a_dgram_port_gets_its_reserved_address() {
    let mut lab = Lab::new();
    let (sock, qemu_sock) = (lab.dir.join("vm.dgram"), lab.dir.join("qemu.dgram"));
    let keys = format!("kind = \"dgram\"\npath = \"{}\"\n", sock.display());
    let netdev = format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        qemu_sock.display(),
        sock.display()
    );
    vm_gets_its_address(&mut lab, &keys, Some(&sock), &netdev, None);
}

impl Vm {
    /// Waits (bounded) until the console, from byte `from` on, contains `marker`; the whole log.
    fn wait_marker(&mut self, marker: &str, from: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.console();
            if log.get(from..).is_some_and(|l| l.contains(marker)) {
                return log;
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            assert!(
                !exited && Instant::now() < deadline,
                "no '{marker}' on the console (VM exited: {exited}); console:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn vm_on_a_vhost_user_port_gets_its_address_pings_and_survives_a_switch_restart() {
    let mut lab = Lab::new();
    let sock = lab.dir.join("vm.vhost");
    let mut cfg = lab_config(&mut lab, &[("h1", 11, false)], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"{VM_MAC}\"\nipv4 = \"{VM_IP}\"\n\
         \n[[port]]\nname = \"vm\"\nhost = \"vm\"\nkind = \"vhost-user\"\npath = \"{}\"\n",
        sock.display()
    ));
    let i1 = lab.ifname("h1");
    lab.start(&cfg, &[("h1", &i1)]);
    let s = sock.clone();
    lab.wait_for("the vhost-user socket", Duration::from_secs(10), || {
        s.exists()
    });
    let chardev = format!("socket,id=c0,path={},reconnect=1", sock.display());
    let mut vm = boot_with(
        &lab.dir,
        &[
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-numa",
            "node,memdev=mem",
            "-chardev",
            &chardev,
            "-netdev",
            "vhost-user,id=n0,chardev=c0",
        ],
        // No MSI-X: QEMU 7.2 under TCG segfaults in its MSI-X guest-notifier path when a
        // vhost-user device starts (docs/vhost-user.md); legacy INTx works.
        ",vectors=0",
        None,
        &init_pinging(),
    );
    let log = vm.wait_marker("SY-READY", 0, Duration::from_secs(120));
    assert!(
        log.contains(&format!("SY-LEASE {VM_IP} router= ")),
        "the VM did not get {VM_IP} (and no router: the lab has no forward); console:\n{log}"
    );
    let dns = log
        .lines()
        .find(|l| l.contains("SY-DNS"))
        .unwrap_or_default();
    assert!(
        dns.contains(&format!("Address: {VM_IP}")),
        "{dns}\nconsole:\n{log}"
    );
    assert!(
        log.contains("SY-PING ok"),
        "the VM cannot ping h1; console:\n{log}"
    );
    // h1 pings the VM back, through the switch.
    assert!(lab.ping("h1", VM_IP, 2), "h1 cannot ping the VM");

    // The switch stops and starts again while QEMU keeps running.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let first = exit.counters("vm");
    assert!(
        first.rx_frames >= 4 && first.tx_frames >= 4,
        "{}",
        exit.stdout
    );
    lab.start(&cfg, &[("h1", &i1)]);
    let restarted = vm.console().len();
    let log = vm.wait_marker("SY-P ok", restarted, Duration::from_secs(60));
    assert!(
        lab.ping("h1", VM_IP, 2),
        "h1 cannot ping the VM after the restart\n{log}"
    );
    drop(vm);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let second = exit.counters("vm");
    assert!(
        second.rx_frames >= 2 && second.tx_frames >= 2,
        "no traffic through the restarted switch\n{}",
        exit.stdout
    );
}
