//! `[[segment]]`s with real clients: one daemon serves `[network]` on VLAN 1 and two segments
//! on VLANs 10 and 20. A host on an access port of each VLAN (untagged inside, so no kernel
//! 802.1Q is needed) gets a lease from its own segment's pool with busybox udhcpc, sending its
//! hostname; it pings its own gateway, resolves its own name in its segment's domain with dig at
//! that gateway, and cannot reach the other segment's host nor its gateway even with an on-link
//! route (the VLANs keep them apart). Each segment's leases are in a journal of their own and
//! all of them in `switchyard leases`. A second test asks across a trunk (a packet port on a
//! veth, scapy on the far end, as the kernel here has no 8021q): tagged ARP and DHCP get tagged
//! answers from the segment of the tag, and nothing from another segment. The lab is removed
//! even when the test fails.

mod common;

use std::path::Path;

use common::{clients, sh, Lab};

/// (host, VLAN, subnet prefix, gateway, domain).
const HOSTS: [(&str, u16, &str, &str, &str); 3] = [
    ("m1", 1, "10.13.31.", "10.13.31.1", "lab.test"),
    ("a10", 10, "10.10.0.", "10.10.0.1", "ten.test"),
    ("a20", 20, "10.20.0.", "10.20.0.1", "twenty.test"),
];

fn config(lab: &mut Lab) -> String {
    let mut c = segments_config(lab);
    for (h, vlan, ..) in HOSTS {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        c.push_str(&format!(
            "\n[[port]]\nname = \"{h}\"\nkind = \"tap\"\nifname = \"{ifname}\"\n\
             netns = \"{ns}\"\naddress = \"none\"\nvlan = {vlan}\n"
        ));
    }
    c
}

/// `[network]` and the two segments, without ports.
fn segments_config(lab: &mut Lab) -> String {
    format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.199\"]\n\
         state_dir = \"{state}\"\n\n[dns]\nupstreams = []\n\n[switch]\n\
         control_socket = \"{socket}\"\n\
         \n[[segment]]\nname = \"ten\"\nvlan = 10\nsubnet = \"10.10.0.0/24\"\n\
         gateway = \"10.10.0.1\"\ndomain = \"ten.test\"\npool = [\"10.10.0.100\", \"10.10.0.199\"]\n\
         \n[[segment]]\nname = \"twenty\"\nvlan = 20\nsubnet = \"10.20.0.0/24\"\n\
         gateway = \"10.20.0.1\"\ndomain = \"twenty.test\"\n\
         pool = [\"10.20.0.100\", \"10.20.0.199\"]\nlease_time = \"10m\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display()
    )
}

fn ipv4_of(lab: &mut Lab, host: &str) -> Option<String> {
    let ifname = lab.ifname(host);
    let out = lab.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

/// udhcpc once on `host`, sending its name (option 12); true if it bound.
fn udhcpc(lab: &mut Lab, host: &str, script: &Path) -> bool {
    let hostname = format!("hostname:{host}");
    clients::udhcpc_with(lab, host, script, "10", &["-x", &hostname])
}

/// `dig +short @server name` in `host` (bounded).
fn dig(lab: &mut Lab, host: &str, server: &str, name: &str) -> String {
    let at = format!("@{server}");
    let args = [
        "timeout", "20", "dig", &at, "+tries=1", "+time=3", "+short", name,
    ];
    let out = lab.exec(host, &args);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn each_vlan_gets_its_own_segment_leases_and_names_and_vlans_stay_apart() {
    let mut lab = Lab::new();
    let script = clients::udhcpc_script(&lab.dir);
    let cfg = config(&mut lab);
    let hosts: Vec<(String, String)> = HOSTS
        .iter()
        .map(|(h, ..)| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(&cfg, &refs);

    let mut addrs = Vec::new();
    for (h, _, prefix, gw, domain) in HOSTS {
        assert!(udhcpc(&mut lab, h, &script), "udhcpc on {h} got no lease");
        let a = ipv4_of(&mut lab, h).expect("no address after udhcpc");
        let last: u8 = a
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{h} got {a}, not from {prefix}0/24"))
            .parse()
            .unwrap();
        assert!((100..=199).contains(&last), "{h}: {a} is outside the pool");
        assert!(lab.ping(h, gw, 2), "{h} -> its gateway {gw}");
        let name = format!("{h}.{domain}");
        assert_eq!(dig(&mut lab, h, gw, &name), a, "{h} resolving {name}");
        addrs.push(a);
    }

    // a10's segment knows nothing of a20's name, and neither segment of the main one's.
    assert_eq!(dig(&mut lab, "a10", "10.10.0.1", "a20.twenty.test"), "");
    assert_eq!(dig(&mut lab, "a20", "10.20.0.1", "m1.lab.test"), "");

    // With on-link routes to every subnet, the hosts still reach nobody outside their VLAN:
    // not each other, not another segment's gateway.
    for (h, ..) in HOSTS {
        let ifname = lab.ifname(h);
        for (_, _, prefix, ..) in HOSTS {
            let net = format!("{prefix}0/24");
            let _ = lab.exec(h, &["ip", "route", "add", &net, "dev", &ifname]);
        }
    }
    for (i, (h, ..)) in HOSTS.iter().enumerate() {
        for (j, (other, _, _, gw, _)) in HOSTS.iter().enumerate() {
            if i != j {
                assert!(!lab.ping(h, &addrs[j], 1), "{h} reached {other}");
                assert!(!lab.ping(h, gw, 1), "{h} reached {other}'s gateway {gw}");
            }
        }
    }

    // Each segment's leases in a journal of its own; all of them in `switchyard leases`.
    let state = lab.dir.join("state");
    for f in [
        "leases.journal",
        "leases-ten.journal",
        "leases-twenty.journal",
    ] {
        assert!(state.join(f).exists(), "{f} missing in {}", state.display());
    }
    let table = lab.cli_ok(&["leases"]);
    for a in &addrs {
        assert!(
            table.contains(a.as_str()),
            "{a} missing from leases:\n{table}"
        );
    }
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    // With the daemon gone, `leases --offline` reads every segment's journal too.
    let cfg_path = lab.dir.join("switchyard.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "leases",
            "--offline",
            "--config",
            cfg_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let offline = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for a in &addrs {
        assert!(
            offline.contains(a.as_str()),
            "{a} missing offline:\n{offline}"
        );
    }
}

/// On `iface`, tagged: ARP requests for each segment's gateway on its VLAN and for 10.20.0.1 on
/// VLAN 10, and a DHCP DISCOVER on VLAN 20. Prints what came back: `ARP vid ip mac` (vid 0:
/// untagged) and `OFFER vid yiaddr`, then `DONE`.
const TRUNK_SIDE: &str = r#"
import sys, time
from scapy.all import Ether, Dot1Q, ARP, IP, UDP, BOOTP, DHCP, AsyncSniffer, sendp, conf
conf.verb = 0
iface = sys.argv[1]
mac = "52:54:00:31:00:77"
sniffer = AsyncSniffer(iface=iface, store=True)
sniffer.start()
time.sleep(0.5)
for vid, src, target in [(10, "10.10.0.50", "10.10.0.1"), (20, "10.20.0.50", "10.20.0.1"),
                         (10, "10.10.0.50", "10.20.0.1")]:
    for _ in range(2):
        sendp(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / Dot1Q(vlan=vid) /
              ARP(op=1, hwsrc=mac, psrc=src, pdst=target), iface=iface)
        time.sleep(0.3)
for _ in range(3):
    sendp(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / Dot1Q(vlan=20) /
          IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) /
          BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x5e6a) /
          DHCP(options=[("message-type", "discover"), "end"]), iface=iface)
    time.sleep(0.7)
for p in sniffer.stop():
    if p.src == mac:
        continue
    vid = p[Dot1Q].vlan if Dot1Q in p else 0
    if ARP in p and p[ARP].op == 2:
        print("ARP %d %s %s" % (vid, p[ARP].psrc, p[ARP].hwsrc), flush=True)
    if BOOTP in p and p[BOOTP].op == 2:
        print("OFFER %d %s" % (vid, p[BOOTP].yiaddr), flush=True)
print("DONE", flush=True)
"#;

#[test]
fn a_trunk_gets_each_segment_tagged_with_its_vlan() {
    let mut lab = Lab::new();
    let (up, far) = (lab.ns("up"), lab.ns("far"));
    for ns in [&up, &far] {
        assert!(
            sh(&["ip", "netns", "add", ns]).status.success(),
            "netns add {ns}"
        );
    }
    let (sw_end, far_end) = (lab.ifname("ts"), lab.ifname("tf"));
    let veth = [
        "ip", "link", "add", &sw_end, "netns", &up, "type", "veth", "peer", "name", &far_end,
        "netns", &far,
    ];
    assert!(sh(&veth).status.success(), "veth");
    for args in [
        vec!["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        vec!["ip", "link", "set", &far_end, "up"],
    ] {
        assert!(lab.exec("far", &args).status.success(), "{args:?}");
    }
    let mut cfg = segments_config(&mut lab);
    cfg.push_str(&format!(
        "\n[[port]]\nname = \"trunk\"\nkind = \"packet\"\nifname = \"{sw_end}\"\n\
         netns = \"{up}\"\ntrunk = [10, 20]\n"
    ));
    lab.spawn(&cfg);
    lab.wait_for("the trunk up", std::time::Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &up, "-br", "link", "show", "dev", &sw_end]);
        String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = lab.exec(
        "far",
        &[
            "timeout",
            "60",
            "/usr/bin/python3",
            "-c",
            TRUNK_SIDE,
            &far_end,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("DONE"), "scapy: {out:?}");
    let arp: Vec<&str> = text.lines().filter(|l| l.starts_with("ARP ")).collect();
    assert!(
        arp.iter().any(|l| l.starts_with("ARP 10 10.10.0.1 ")),
        "no tagged ARP reply from VLAN 10's gateway: {text}"
    );
    assert!(
        arp.iter().any(|l| l.starts_with("ARP 20 10.20.0.1 ")),
        "no tagged ARP reply from VLAN 20's gateway: {text}"
    );
    assert!(
        !arp.iter()
            .any(|l| !l.starts_with("ARP 10 10.10.0.1 ") && !l.starts_with("ARP 20 10.20.0.1 ")),
        "an answer in the wrong VLAN or from the wrong segment: {text}"
    );
    // The two segments' gateways have MACs of their own.
    let mac_of = |p: &str| {
        arp.iter()
            .find(|l| l.starts_with(p))
            .map(|l| l.rsplit(' ').next())
    };
    assert_ne!(mac_of("ARP 10 "), mac_of("ARP 20 "), "{text}");
    let offer = text
        .lines()
        .find_map(|l| l.strip_prefix("OFFER 20 10.20.0."))
        .unwrap_or_else(|| panic!("no tagged OFFER from VLAN 20's pool: {text}"));
    let last: u8 = offer.parse().unwrap();
    assert!((100..=199).contains(&last), "offer 10.20.0.{last}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("OFFER ") && !l.starts_with("OFFER 20 ")),
        "{text}"
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}
