//! VXLAN across "hosts", with real peers and clients.
//!
//! 1. Interop with the Linux kernel: a second "host" namespace runs the kernel's `vxlan` device
//!    (VNI 42, dstport 4789) on a kernel bridge with a namespace host behind it (a veth);
//!    switchyard's daemon, in its own namespace, has a vxlan port whose underlay is a veth to
//!    that second host, and a tap host. Both hosts ping each other and the gateway, iperf3 TCP
//!    runs both ways, and the remote host gets its lease from switchyard's appliance through
//!    the tunnel (udhcpc, with a resolv.conf of its own). A datagram with another VNI and one
//!    from an address that is no VTEP are counted drops, and nothing else is dropped.
//! 2. Two switchyard daemons joined over VXLAN (each in its own namespace, a veth between them,
//!    an IPv6 underlay): a host on the second daemon gets a lease from the first one's appliance
//!    and pings and moves TCP to the host on the first.
//!
//! The underlay MTU is the inner 1500 plus VXLAN's overhead: 1550 over IPv4, 1570 over IPv6, so
//! full-size frames cross unfragmented.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{clients, sh, Lab};

fn run(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/etc/netns/<ns>/resolv.conf`, empty, so a DHCP client in `ns` can never touch the machine's
/// resolver; removed on drop.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(ns: &str) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("resolv.conf"), "").unwrap();
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An iperf3 server for one test in a namespace; killed (by its pid) on drop.
struct Iperf(Child);

impl Iperf {
    fn serve(ns: &str) -> Iperf {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        std::thread::sleep(Duration::from_millis(500));
        Iperf(child)
    }
}

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes iperf3 received in a short TCP run from `from` to `to_ip` (in `server_ns`); `reverse`
/// sends the other way (`-R`).
fn iperf_bytes(from: &str, server_ns: &str, to_ip: &str, reverse: bool) -> u64 {
    let _server = Iperf::serve(server_ns);
    let mut args = vec![
        "ip", "netns", "exec", from, "timeout", "30", "iperf3", "-c", to_ip, "-p", "5201", "-t",
        "2", "-J",
    ];
    if reverse {
        args.push("-R");
    }
    let out = sh(&args);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iperf3 {args:?} failed: {json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

fn drop_count(drops: &str, reason: &str) -> u64 {
    drops
        .split_whitespace()
        .find_map(|d| d.strip_prefix(&format!("{reason}="))?.parse().ok())
        .unwrap_or(0)
}

/// A veth `a` (in `ns_a`, `ip_a`) to `b` (in `ns_b`, `ip_b`), /24 and MTU 1550 or (IPv6) /64
/// and MTU 1570, both up.
fn underlay(ns_a: &str, a: &str, ip_a: &str, ns_b: &str, b: &str, ip_b: &str) {
    // The inner 1500 plus VXLAN's 50 bytes over IPv4, 70 over IPv6.
    let mtu = if ip_a.contains(':') { "1570" } else { "1550" };
    run(&[
        "ip", "link", "add", a, "netns", ns_a, "mtu", mtu, "type", "veth", "peer", "name", b,
        "netns", ns_b, "mtu", mtu,
    ]);
    for (ns, dev, ip) in [(ns_a, a, ip_a), (ns_b, b, ip_b)] {
        if ip.contains(':') {
            // No duplicate address detection: the daemon binds the address at once.
            let cidr = format!("{ip}/64");
            run(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev, "nodad"]);
        } else {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
        }
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
}

const B_MAC: &str = "52:54:00:31:00:20";
const B_IP: &str = "10.13.31.20";

/// The `[[port]]` of a vxlan port and the `[[host]]` reservation for the remote host B.
fn vxlan_port(local: &str, remote: &str) -> String {
    format!(
        "\n[[host]]\nname = \"b\"\nmac = \"{B_MAC}\"\nipv4 = \"{B_IP}\"\n\
         \n[[port]]\nname = \"vx\"\nkind = \"vxlan\"\nvni = 42\nlocal = \"{local}\"\n\
         remotes = [\"{remote}\"]\n"
    )
}

#[test]
fn kernel_vxlan_host_pings_moves_tcp_and_gets_a_lease_through_the_tunnel() {
    let mut lab = Lab::new();
    let sw = lab.switch_ns();
    let (h2, b) = (lab.ns("h2"), lab.ns("b"));
    run(&["ip", "netns", "add", &h2]);
    run(&["ip", "netns", "add", &b]);
    let _resolv = ResolvConf::new(&b);
    underlay(
        &sw,
        &lab.ifname("u0"),
        "10.13.99.1",
        &h2,
        &lab.ifname("u1"),
        "10.13.99.2",
    );
    // The second host: the kernel's vxlan device and a bridge, host B behind a veth.
    let u1 = lab.ifname("u1");
    run(&[
        "ip",
        "-n",
        &h2,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "10.13.99.1",
        "local",
        "10.13.99.2",
        "dstport",
        "4789",
        "dev",
        &u1,
    ]);
    run(&["ip", "-n", &h2, "link", "set", "vx0", "mtu", "1500"]);
    run(&["ip", "-n", &h2, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &h2, "link", "set", "vx0", "master", "br0", "up"]);
    let b_if = lab.ifname("b");
    run(&[
        "ip", "-n", &h2, "link", "add", "pb", "type", "veth", "peer", "name", &b_if, "netns", &b,
    ]);
    run(&["ip", "-n", &h2, "link", "set", "pb", "master", "br0", "up"]);
    run(&["ip", "-n", &h2, "link", "set", "br0", "up"]);
    run(&["ip", "-n", &b, "link", "set", &b_if, "address", B_MAC, "up"]);
    run(&["ip", "-n", &b, "link", "set", "lo", "up"]);

    let mut cfg = common::lab_config(&mut lab, &[("a", 10, false)], "");
    cfg.push_str(&vxlan_port("10.13.99.1", "10.13.99.2"));
    let a_if = lab.ifname("a");
    lab.start(&cfg, &[("a", &a_if)]);

    // DHCP from switchyard's appliance, through the kernel's tunnel.
    let script = clients::udhcpc_script(&lab.dir);
    assert!(
        clients::udhcpc(&mut lab, "b", &script, "10"),
        "udhcpc on the far side of the tunnel got no lease"
    );
    let addr = sh(&["ip", "-n", &b, "-4", "-br", "addr", "show", "dev", &b_if]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains(&format!("{B_IP}/24")),
        "{addr:?}"
    );
    assert!(lab.ping("a", B_IP, 5), "a -> b through the tunnel");
    assert!(lab.ping("b", "10.13.31.10", 5), "b -> a through the tunnel");
    assert!(lab.ping("b", "10.13.31.1", 3), "b -> the gateway");
    // Full-size frames: 1472 bytes of ICMP payload, DF set (1500 inner, 1550 on the underlay).
    let big = lab.exec(
        "b",
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "3",
            "-i",
            "0.1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            "10.13.31.10",
        ],
    );
    assert!(big.status.success(), "full-MTU ping: {big:?}");

    // TCP both ways: a's TSO super-frames are cut to the MTU on the way in; the kernel's
    // partial checksums and GSO super-frames on the way back are completed at a's tap.
    let a_ns = lab.ns("a");
    let to_b = iperf_bytes(&a_ns, &b, B_IP, false);
    let from_b = iperf_bytes(&a_ns, &b, B_IP, true);
    assert!(to_b > 1_000_000 && from_b > 1_000_000, "{to_b} {from_b}");

    // Foreign datagrams: another VNI from the known VTEP, the right VNI from a stranger.
    run(&["ip", "-n", &h2, "addr", "add", "10.13.99.3/24", "dev", &u1]);
    let inject = "import socket\n\
        frame = bytes.fromhex('ffffffffffff525400310099' + '0806') + bytes(46)\n\
        for src, vni in (('10.13.99.2', 7), ('10.13.99.3', 42)):\n\
        \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        \x20   s.bind((src, 0))\n\
        \x20   s.sendto(bytes([8, 0, 0, 0]) + vni.to_bytes(3, 'big') + b'\\0' + frame, ('10.13.99.1', 4789))\n";
    run(&["ip", "netns", "exec", &h2, "/usr/bin/python3", "-c", inject]);
    std::thread::sleep(Duration::from_millis(500));

    let exit = lab.stop_with("TERM");
    let vx = exit.counters("vx");
    assert!(vx.rx_frames > 1000 && vx.tx_frames > 1000, "{vx:?}");
    assert_eq!(drop_count(&vx.drops, "wrong_vni"), 1, "{vx:?}");
    assert_eq!(drop_count(&vx.drops, "unknown_vtep"), 1, "{vx:?}");
    for reason in ["mtu", "malformed", "needs_offload", "tx_error"] {
        assert_eq!(drop_count(&vx.drops, reason), 0, "{reason}: {vx:?}");
    }
    let a = exit.counters("a");
    assert_eq!(drop_count(&a.drops, "mtu"), 0, "{a:?}");
}

/// A second daemon's config: its own gateway address and no DHCP (the first daemon serves the
/// segment), a tap host B plugged into namespace `ns_b`.
fn second_daemon_config(lab: &mut Lab) -> String {
    let ns = lab.ns("b");
    format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.2\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nenabled = false\nstate_dir = \"{state}\"\n\n\
         [switch]\ncontrol_socket = \"{socket}\"\n\n[[port]]\nname = \"b\"\nkind = \"tap\"\n\
         ifname = \"{ifname}\"\nnetns = \"{ns}\"\naddress = \"none\"\n\
         \n[[port]]\nname = \"vx\"\nkind = \"vxlan\"\nvni = 42\nlocal = \"[fd13:98::2]:4789\"\n\
         remotes = [\"fd13:98::1\"]\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display(),
        ifname = lab.ifname("b"),
    )
}

#[test]
fn two_switchyard_daemons_join_one_segment_over_vxlan() {
    let mut one = Lab::new();
    let mut two = Lab::new();
    underlay(
        &one.switch_ns(),
        &one.ifname("u0"),
        "fd13:98::1",
        &two.switch_ns(),
        &two.ifname("u1"),
        "fd13:98::2",
    );
    let mut cfg = common::lab_config(&mut one, &[("a", 10, false)], "");
    cfg.push_str(&vxlan_port("fd13:98::1", "[fd13:98::2]:4789"));
    let a_if = one.ifname("a");
    one.start(&cfg, &[("a", &a_if)]);
    let cfg2 = second_daemon_config(&mut two);
    let b_if = two.ifname("b");
    two.start(&cfg2, &[("b", &b_if)]);
    let b = two.ns("b");
    let _resolv = ResolvConf::new(&b);
    run(&["ip", "-n", &b, "link", "set", &b_if, "address", B_MAC]);

    let script = clients::udhcpc_script(&two.dir);
    assert!(
        clients::udhcpc(&mut two, "b", &script, "10"),
        "b got no lease from the first daemon's appliance"
    );
    assert!(two.ping("b", "10.13.31.10", 5), "b -> a across two daemons");
    assert!(one.ping("a", B_IP, 5), "a -> b");
    let a_ns = one.ns("a");
    let bytes = iperf_bytes(&a_ns, &b, B_IP, false);
    assert!(bytes > 1_000_000, "{bytes}");

    let exit2 = two.stop_with("TERM");
    let exit1 = one.stop_with("TERM");
    for (exit, who) in [(&exit1, "one"), (&exit2, "two")] {
        let vx = exit.counters("vx");
        assert!(vx.rx_frames > 100 && vx.tx_frames > 100, "{who}: {vx:?}");
        for reason in ["wrong_vni", "unknown_vtep", "malformed", "mtu"] {
            assert_eq!(drop_count(&vx.drops, reason), 0, "{who} {reason}: {vx:?}");
        }
    }
}
