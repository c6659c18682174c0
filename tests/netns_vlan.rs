//! Namespace tests of 802.1Q VLANs: two switchyard hosts on access ports of VLANs 10 and 20,
//! and a trunk uplink (a packet port on a veth) to a kernel bridge with `vlan_filtering 1` in
//! another namespace, with one host behind it on each VLAN (bridge ports with `pvid N
//! untagged`; the bridge's end of the uplink carries 10 and 20 tagged and nothing untagged).
//! All four hosts share one subnet, so only the VLANs keep them apart: a host reaches the one
//! on its own VLAN across the trunk, never the other VLAN's. A TCP flow crosses the trunk too:
//! the taps hand over GSO super-frames, which must keep their offloads when tagged. Each test
//! builds its own lab and removes it even when it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{sh, Lab};

const A10: &str = "10.13.31.11";
const A20: &str = "10.13.31.12";
const K10: &str = "10.13.31.21";
const K20: &str = "10.13.31.22";

fn run(args: &[&str]) {
    let out = sh(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// The far side on a kernel without VLANs: k10 and k20 as one scapy process on `iface`.
/// Answers ARP and ICMP echo for each host on its VLAN's tag only; after `wait` seconds pings
/// every target from every VLAN (ARP, then echo), prints `REACH vid target yes|no` lines and
/// `DONE`, and goes on answering until its stdin closes.
const FAR_SIDE: &str = r#"
import sys, time
from scapy.all import Ether, Dot1Q, ARP, IP, ICMP, AsyncSniffer, sendp, conf
conf.verb = 0
iface, wait = sys.argv[1], float(sys.argv[2])
targets = sys.argv[3:]
hosts = {10: ("10.13.31.21", "52:54:00:31:00:21"), 20: ("10.13.31.22", "52:54:00:31:00:22")}
seen = set()
def handle(p):
    if Dot1Q not in p or p[Dot1Q].vlan not in hosts:
        return
    vid = p[Dot1Q].vlan
    ip, mac = hosts[vid]
    if ARP in p and p[ARP].op == 1 and p[ARP].pdst == ip:
        sendp(Ether(dst=p.src, src=mac) / Dot1Q(vlan=vid) /
              ARP(op=2, hwsrc=mac, psrc=ip, hwdst=p[ARP].hwsrc, pdst=p[ARP].psrc), iface=iface)
    elif ARP in p and p[ARP].op == 2 and p[ARP].pdst == ip:
        seen.add(("arp", vid, p[ARP].psrc, p[ARP].hwsrc))
    elif IP in p and ICMP in p and p[IP].dst == ip and p[ICMP].type == 8:
        sendp(Ether(dst=p.src, src=mac) / Dot1Q(vlan=vid) /
              IP(src=ip, dst=p[IP].src) / ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq) /
              bytes(p[ICMP].payload), iface=iface)
    elif IP in p and ICMP in p and p[IP].dst == ip and p[ICMP].type == 0:
        seen.add(("echo", vid, p[IP].src))
sniffer = AsyncSniffer(iface=iface, prn=handle, store=False)
sniffer.start()
time.sleep(0.5)
print("READY", flush=True)
time.sleep(wait)
for vid, (ip, mac) in hosts.items():
    for t in targets:
        for _ in range(3):
            sendp(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / Dot1Q(vlan=vid) /
                  ARP(op=1, hwsrc=mac, psrc=ip, pdst=t), iface=iface)
            time.sleep(0.2)
        macs = [x[3] for x in list(seen) if x[0] == "arp" and x[1] == vid and x[2] == t]
        if macs:
            for seq in range(3):
                sendp(Ether(dst=macs[0], src=mac) / Dot1Q(vlan=vid) /
                      IP(src=ip, dst=t) / ICMP(type=8, id=vid, seq=seq), iface=iface)
                time.sleep(0.2)
        time.sleep(0.3)
        print("REACH %d %s %s" % (vid, t, "yes" if ("echo", vid, t) in seen else "no"), flush=True)
print("DONE", flush=True)
sys.stdin.read()
sniffer.stop()
"#;

/// Whether this kernel makes a bridge with `vlan_filtering 1` (a throwaway one in `ns`).
fn kernel_has_vlan_bridge(ns: &str) -> bool {
    let ok = sh(&[
        "ip",
        "-n",
        ns,
        "link",
        "add",
        "vfprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ])
    .status
    .success();
    let _ = sh(&["ip", "-n", ns, "link", "del", "vfprobe"]);
    ok
}

/// The far side: namespace `kb` holding the uplink veth's far end, and, if the kernel has a
/// VLAN-filtering bridge, `br0` over it (10 and 20 tagged, VLAN 1 removed) with hosts `k10`
/// and `k20` on ports with `pvid N untagged`. Returns (the uplink's switch-side name, its
/// namespace, the far end's name, whether the kernel bridge is there).
fn far_side(lab: &mut Lab) -> (String, String, String, bool) {
    let kb = lab.ns("kb");
    let up = lab.ns("up");
    for ns in [&kb, &up] {
        run(&["ip", "netns", "add", ns]);
    }
    let (sw_end, br_end) = (lab.ifname("ts"), lab.ifname("tb"));
    run(&[
        "ip", "link", "add", &sw_end, "netns", &up, "type", "veth", "peer", "name", &br_end,
        "netns", &kb,
    ]);
    run(&[
        "ip",
        "netns",
        "exec",
        &kb,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
    ]);
    if !kernel_has_vlan_bridge(&kb) {
        run(&["ip", "-n", &kb, "link", "set", &br_end, "up"]);
        return (sw_end, up, br_end, false);
    }
    run(&[
        "ip",
        "-n",
        &kb,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    run(&["ip", "-n", &kb, "link", "set", &br_end, "master", "br0"]);
    run(&[
        "bridge", "-n", &kb, "vlan", "del", "vid", "1", "dev", &br_end,
    ]);
    for vid in ["10", "20"] {
        run(&[
            "bridge", "-n", &kb, "vlan", "add", "vid", vid, "dev", &br_end,
        ]);
    }
    for (host, vid, ip, mac) in [
        ("k10", "10", K10, "52:54:00:31:00:21"),
        ("k20", "20", K20, "52:54:00:31:00:22"),
    ] {
        let ns = lab.ns(host);
        run(&["ip", "netns", "add", &ns]);
        let (h_end, b_end) = (
            lab.ifname(&format!("{host}h")),
            lab.ifname(&format!("{host}b")),
        );
        run(&[
            "ip", "link", "add", &h_end, "netns", &ns, "address", mac, "type", "veth", "peer",
            "name", &b_end, "netns", &kb,
        ]);
        run(&["ip", "-n", &kb, "link", "set", &b_end, "master", "br0"]);
        run(&[
            "bridge", "-n", &kb, "vlan", "del", "vid", "1", "dev", &b_end,
        ]);
        run(&[
            "bridge", "-n", &kb, "vlan", "add", "vid", vid, "dev", &b_end, "pvid", "untagged",
        ]);
        run(&["ip", "-n", &kb, "link", "set", &b_end, "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &h_end,
        ]);
        run(&["ip", "-n", &ns, "link", "set", &h_end, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]);
    }
    run(&["ip", "-n", &kb, "link", "set", &br_end, "up"]);
    run(&["ip", "-n", &kb, "link", "set", "br0", "up"]);
    (sw_end, up, br_end, true)
}

/// Two access hosts (a10 on VLAN 10, a20 on VLAN 20) on taps, and the trunk uplink. Returns
/// the far end of the uplink and whether the far side is a kernel bridge.
fn start(lab: &mut Lab) -> (String, bool) {
    let (uplink, up, far_end, kernel) = far_side(lab);
    let mut cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\n[switch]\n\
         control_socket = \"{socket}\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display()
    );
    for (h, octet, vlan) in [("a10", 11, 10), ("a20", 12, 20)] {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        cfg.push_str(&format!(
            "\n[[host]]\nname = \"{h}\"\nmac = \"52:54:00:31:00:{octet:02x}\"\n\
             ipv4 = \"10.13.31.{octet}\"\n\n[[port]]\nname = \"{h}\"\nkind = \"tap\"\n\
             ifname = \"{ifname}\"\nhost = \"{h}\"\nnetns = \"{ns}\"\nvlan = {vlan}\n"
        ));
    }
    cfg.push_str(&format!(
        "\n[[port]]\nname = \"uplink\"\nkind = \"packet\"\nifname = \"{uplink}\"\n\
         netns = \"{up}\"\ntrunk = [10, \"20-20\"]\n"
    ));
    let (i10, i20) = (lab.ifname("a10"), lab.ifname("a20"));
    lab.start(&cfg, &[("a10", &i10), ("a20", &i20)]);
    for h in ["a10", "a20"] {
        lab.exec(h, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    lab.wait_for("the uplink up", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &up, "-br", "link", "show", "dev", &uplink]);
        String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    (far_end, kernel)
}

/// The `vlan_not_allowed` count of `port` from `switchyard stats`.
fn vlan_not_allowed(lab: &Lab, port: &str) -> u64 {
    let out = lab.cli_ok(&["stats", port]);
    out.lines()
        .find(|l| l.trim_start().starts_with("drop.vlan_not_allowed"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// iperf3 for 2 s from `client` (a lab host) to `server_ip` served in namespace `server_ns`;
/// the bytes received.
fn tcp_bytes(lab: &mut Lab, client: &str, server_ns: &str, server_ip: &str) -> f64 {
    let _server = Killed(
        Command::new("ip")
            .args([
                "netns", "exec", server_ns, "timeout", "30", "iperf3", "-s", "-1", "-B",
            ])
            .arg(server_ip)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server"),
    );
    std::thread::sleep(Duration::from_millis(700));
    let out = lab.exec(
        client,
        &[
            "timeout",
            "20",
            "iperf3",
            "-c",
            server_ip,
            "-t",
            "2",
            "-J",
            "--connect-timeout",
            "3000",
        ],
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iperf3 {client} -> {server_ip}: {json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0)
}

/// A second switchyard daemon in its own namespace: a trunk (10, 20) packet port on `ifname`
/// in `netns`, and host b10 (10.13.31.31) on an access port of VLAN 10. Killed when dropped.
fn second_daemon(lab: &mut Lab, ifname: &str, netns: &str) -> Killed {
    let ns = lab.ns("swb");
    run(&["ip", "netns", "add", &ns]);
    let dir = lab.dir.join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let (b10_ns, b10_if) = (lab.ns("b10"), lab.ifname("b10"));
    let cfg = format!(
        "[network]\nname = \"{tag}b\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.2\"\n\
         domain = \"b.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\n[switch]\n\
         control_socket = \"{socket}\"\n\n\
         [[host]]\nname = \"b10\"\nmac = \"52:54:00:31:00:1f\"\nipv4 = \"10.13.31.31\"\n\n\
         [[port]]\nname = \"b10\"\nkind = \"tap\"\nifname = \"{b10_if}\"\nhost = \"b10\"\n\
         netns = \"{b10_ns}\"\nvlan = 10\n\n\
         [[port]]\nname = \"trunk\"\nkind = \"packet\"\nifname = \"{ifname}\"\n\
         netns = \"{netns}\"\ntrunk = [10, 20]\n",
        tag = lab.tag,
        state = dir.join("state").display(),
        socket = dir.join("control.sock").display(),
    );
    let path = dir.join("b.toml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&path)
        .envs(lab.env.iter().map(|(k, v)| (k, v)))
        .env("SWITCHYARD_RUN_DIR", dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the second daemon");
    let daemon = Killed(child);
    lab.wait_for("b10 up", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &b10_ns, "-br", "link", "show", "dev", &b10_if]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    lab.exec(
        "b10",
        &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
    );
    daemon
}

#[test]
fn access_vlans_are_apart_and_a_trunk_carries_both_to_the_far_side() {
    let mut lab = Lab::new();
    let (far_end, kernel) = start(&mut lab);
    eprintln!(
        "far side: {}",
        if kernel {
            "a kernel bridge with vlan_filtering 1"
        } else {
            "scapy's 802.1Q speaker (this kernel has no VLAN-filtering bridge and no 8021q)"
        }
    );
    // Access ports of two VLANs never reach each other (one subnet: only the VLANs part them).
    assert!(!lab.ping("a10", A20, 2), "a10 reached a20 on another VLAN");
    assert!(!lab.ping("a20", A10, 2), "a20 reached a10 on another VLAN");

    if kernel {
        assert!(lab.ping("a10", K10, 3), "a10 -> k10 across the trunk");
        assert!(lab.ping("a20", K20, 3), "a20 -> k20 across the trunk");
        assert!(lab.ping("k10", A10, 3), "k10 -> a10");
        assert!(lab.ping("k20", A20, 3), "k20 -> a20");
        assert!(!lab.ping("a10", K20, 2), "a10 reached k20 on another VLAN");
        assert!(!lab.ping("k20", A10, 2), "k20 reached a10 on another VLAN");
        assert!(!lab.ping("k10", A20, 2), "k10 reached a20 on another VLAN");
    } else {
        let kb = lab.ns("kb");
        let mut far = Killed(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &kb,
                    "timeout",
                    "90",
                    "/usr/bin/python3",
                    "-c",
                ])
                .args([FAR_SIDE, &far_end, "1", A10, A20])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the scapy far side"),
        );
        let mut lines = BufReader::new(far.0.stdout.take().unwrap()).lines();
        let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(next(), "READY", "the far side did not start");
        assert!(lab.ping("a10", K10, 3), "a10 -> k10 across the trunk");
        assert!(lab.ping("a20", K20, 3), "a20 -> k20 across the trunk");
        assert!(!lab.ping("a10", K20, 2), "a10 reached k20 on another VLAN");
        assert!(!lab.ping("a20", K10, 2), "a20 reached k10 on another VLAN");
        let mut reach = Vec::new();
        loop {
            let l = next();
            if l == "DONE" || l.is_empty() {
                break;
            }
            reach.push(l);
        }
        assert_eq!(
            reach,
            [
                format!("REACH 10 {A10} yes"),
                format!("REACH 10 {A20} no"),
                format!("REACH 20 {A10} no"),
                format!("REACH 20 {A20} yes"),
            ],
            "the far side's pings, from each VLAN"
        );
        drop(far.0.stdin.take());
    }

    // The MAC table: a10's MAC in VLAN 10 on its port, k20's in VLAN 20 on the uplink.
    let fdb = lab.cli_ok(&["fdb"]);
    let row = |mac: &str| {
        fdb.lines()
            .find(|l| l.contains(mac))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        row("52:54:00:31:00:0b").as_deref(),
        Some("52:54:00:31:00:0b 10 a10"),
        "{fdb}"
    );
    assert_eq!(
        row("52:54:00:31:00:22").as_deref(),
        Some("52:54:00:31:00:22 20 uplink"),
        "{fdb}"
    );

    // TCP across the trunk: the taps' GSO super-frames, tagged on the veth. Without a kernel
    // bridge, a second switchyard takes the trunk's far end, with b10 on VLAN 10 behind it.
    let bytes = if kernel {
        let k10 = lab.ns("k10");
        tcp_bytes(&mut lab, "a10", &k10, K10)
    } else {
        let kb = lab.ns("kb");
        let _b = second_daemon(&mut lab, &far_end, &kb);
        assert!(
            lab.ping("a10", "10.13.31.31", 3),
            "a10 -> b10 through two switchyards"
        );
        assert!(
            !lab.ping("a20", "10.13.31.31", 2),
            "a20 reached b10 on another VLAN"
        );
        let b10 = lab.ns("b10");
        tcp_bytes(&mut lab, "a10", &b10, "10.13.31.31")
    };
    assert!(bytes > 1e6, "TCP over the trunk moved only {bytes} bytes");

    // A tagged frame from an access port is refused and counted.
    let before = vlan_not_allowed(&lab, "a10");
    let a10_if = lab.ifname("a10");
    let send = format!(
        "from scapy.all import *; conf.verb=0; sendp(Ether(dst='ff:ff:ff:ff:ff:ff', \
         src='52:54:00:31:00:0b')/Dot1Q(vlan=20)/ARP(psrc='{A10}', pdst='{A20}', \
         hwsrc='52:54:00:31:00:0b'), iface='{a10_if}', count=3)"
    );
    let out = lab.exec("a10", &["timeout", "60", "/usr/bin/python3", "-c", &send]);
    assert!(out.status.success(), "scapy sendp: {out:?}");
    let after = vlan_not_allowed(&lab, "a10");
    assert_eq!(after, before + 3, "vlan_not_allowed {before} -> {after}");
    lab.stop_with("TERM");
}
