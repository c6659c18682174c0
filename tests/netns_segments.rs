//! `[[segment]]`s with real clients: one daemon serves `[network]` on VLAN 1 and two segments
//! on VLANs 10 and 20. A host on an access port of each VLAN (untagged inside, so no kernel
//! 802.1Q is needed) gets a lease from its own segment's pool with busybox udhcpc, sending its
//! hostname; it pings its own gateway, resolves its own name in its segment's domain with dig at
//! that gateway, and cannot reach the other segment's host nor its gateway even with an on-link
//! route (the VLANs keep them apart). Each segment's leases are in a journal of their own and
//! all of them in `switchyard leases`. The lab is removed even when the test fails.

mod common;

use std::path::Path;

use common::{clients, Lab};

/// (host, VLAN, subnet prefix, gateway, domain).
const HOSTS: [(&str, u16, &str, &str, &str); 3] = [
    ("m1", 1, "10.13.31.", "10.13.31.1", "lab.test"),
    ("a10", 10, "10.10.0.", "10.10.0.1", "ten.test"),
    ("a20", 20, "10.20.0.", "10.20.0.1", "twenty.test"),
];

fn config(lab: &mut Lab) -> String {
    let mut c = format!(
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
    );
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
    let ifname = lab.ifname(host);
    let hostname = format!("hostname:{host}");
    let args = [
        "timeout",
        "30",
        "udhcpc",
        "-i",
        &ifname,
        "-n",
        "-q",
        "-f",
        "-t",
        "10",
        "-T",
        "1",
        "-x",
        &hostname,
        "-s",
        script.to_str().unwrap(),
    ];
    lab.exec(host, &args).status.success()
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
}
