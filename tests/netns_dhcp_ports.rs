//! DHCP bound to ports, through the daemon (issue 17): a hostile guest forges DHCP messages
//! with scapy from its own port, claiming another host's lease, reservation or name. None
//! gets a reply, each is a counted drop by its reason, the rightful hosts keep (and renew)
//! their addresses, and the attacker's frames with the victim's address never reach anyone.
//!
//! Lab: `v1` (guarded, MAC …:21, reserved .21), `a` (guarded, MAC …:23, no reservation: a pool
//! address), `u` (no host, unguarded, MAC …:24: the guard cannot stop its chaddr), and in the
//! second test `web` (reserved .22 by hostname, its port unguarded). No address is configured
//! in the namespaces: every host gets its address from the daemon (udhcpc).

mod common;

use std::time::Duration;

use common::{clients, sh, Lab};

const V1_MAC: &str = "52:54:00:31:00:21";
const V1_IP: &str = "10.13.31.21";
const WEB_IP: &str = "10.13.31.22";
const A_MAC: &str = "52:54:00:31:00:23";
const U_MAC: &str = "52:54:00:31:00:24";

fn base(lab: &mut Lab) -> String {
    format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\
         pool = [\"10.13.31.100\", \"10.13.31.109\"]\nrate_limit = 100\n\n[switch]\n\
         control_socket = \"{socket}\"\n\n[metrics]\nlisten = \"127.0.0.1:9750\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display()
    )
}

/// A `[[port]]` for `name` (tap in its own namespace, no address), `extra` appended.
fn port(lab: &mut Lab, name: &str, extra: &str) -> String {
    let ns = lab.ns(name);
    let ifname = lab.ifname(name);
    // The tap's MAC in the namespace is the host's, so udhcpc's chaddr is too.
    format!(
        "\n[[port]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{ns}\"\n\
         address = \"none\"\n{extra}"
    )
}

fn host(name: &str, mac: &str, extra: &str) -> String {
    format!("\n[[host]]\nname = \"{name}\"\nmac = \"{mac}\"\n{extra}")
}

/// Sets `host`'s tap MAC (a port without a host gets a random one otherwise).
fn set_mac(lab: &mut Lab, host: &str, mac: &str) {
    let ifname = lab.ifname(host);
    for args in [
        vec!["ip", "link", "set", "dev", &ifname, "down"],
        vec!["ip", "link", "set", "dev", &ifname, "address", mac],
        vec!["ip", "link", "set", "dev", &ifname, "up"],
    ] {
        let out = lab.exec(host, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

fn start(lab: &mut Lab, cfg: &str, hosts: &[&str]) {
    // The metrics endpoint listens on the switch namespace's loopback.
    assert!(
        sh(&["ip", "-n", &lab.switch_ns(), "link", "set", "lo", "up"])
            .status
            .success()
    );
    let names: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = names
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(cfg, &refs);
}

/// The address `host` has on its tap, if any.
fn addr_of(lab: &mut Lab, host: &str) -> Option<String> {
    let ifname = lab.ifname(host);
    let out = lab.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let inet = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(inet.split('/').next()?.to_string())
}

/// Runs the attack `calls` (Python lines using the helpers below) in `host`'s namespace with
/// scapy; returns what it printed: one `name=reply` line per `ask`, where reply is `none` or
/// `TYPE:yiaddr`.
fn scapy(lab: &mut Lab, host: &str, calls: &str) -> String {
    let iface = lab.ifname(host);
    let script = format!(
        "import logging\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\nconf.verb = 0\nconf.checkIPaddr = False\n\
         IFACE = '{iface}'\nSID = '10.13.31.1'\n\
         def mac(m):\n    return bytes.fromhex(m.replace(':', '')) + bytes(10)\n\
         def dhcp(src, chaddr, opts, ciaddr='0.0.0.0', ipsrc='0.0.0.0', xid=1):\n\
         \x20   return (Ether(src=src, dst='ff:ff:ff:ff:ff:ff') / IP(src=ipsrc, dst='255.255.255.255') /\n\
         \x20           UDP(sport=68, dport=67) / BOOTP(chaddr=mac(chaddr), ciaddr=ciaddr, xid=xid) /\n\
         \x20           DHCP(options=opts + ['end']))\n\
         def ask(name, p):\n\
         \x20   r = srp1(p, iface=IFACE, timeout=1.5)\n\
         \x20   if r is None or DHCP not in r:\n\
         \x20       print(name + '=none')\n\
         \x20       return\n\
         \x20   t = [o[1] for o in r[DHCP].options if isinstance(o, tuple) and o[0] == 'message-type']\n\
         \x20   print(name + '=' + str(t[0] if t else '?') + ':' + r[BOOTP].yiaddr)\n\
         def send(p, count=3):\n    sendp(p, iface=IFACE, count=count)\n\
         {calls}\n"
    );
    let out = lab.exec(host, &["timeout", "60", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "scapy failed: {out:?}\n{script}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `text` without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of the metric line `name` (exact labels).
fn metric(lab: &Lab, name: &str) -> u64 {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &lab.switch_ns(),
        "curl",
        "-s",
        "http://127.0.0.1:9750/metrics",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// `(ip, port)` of every live lease.
fn leases(lab: &Lab) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&lab.cli_ok(&["leases", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ipaddr"].as_str().unwrap().to_string(),
                l["port"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn dhcp_drops(lab: &Lab, reason: &str) -> u64 {
    metric(
        lab,
        &format!("switchyard_dhcp_drops_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn forged_dhcp_from_other_ports_gets_nothing_and_the_victim_keeps_its_address() {
    let mut lab = Lab::new();
    let mut cfg = base(&mut lab);
    cfg += &host("v1", V1_MAC, &format!("ipv4 = \"{V1_IP}\"\n"));
    cfg += &host("a", A_MAC, "");
    cfg += &port(&mut lab, "v1", "host = \"v1\"\n");
    cfg += &port(&mut lab, "a", "host = \"a\"\n");
    cfg += &port(&mut lab, "u", "");
    start(&mut lab, &cfg, &["v1", "a", "u"]);
    set_mac(&mut lab, "u", U_MAC);
    let usc = clients::udhcpc_script(&lab.dir);
    assert!(
        clients::udhcpc(&mut lab, "v1", &usc, "5"),
        "v1 got no lease"
    );
    assert_eq!(addr_of(&mut lab, "v1").as_deref(), Some(V1_IP));
    assert!(clients::udhcpc(&mut lab, "a", &usc, "5"), "a got no lease");
    let a_ip = addr_of(&mut lab, "a").expect("a has an address");
    assert!(lab.ping("v1", "10.13.31.1", 1));

    // From the guarded port `a`: v1's chaddr in every message type, then a DECLINE and an
    // INFORM of v1's address with a's own chaddr.
    let calls = format!(
        "ask('discover', dhcp('{A_MAC}', '{V1_MAC}', [('message-type', 'discover')]))\n\
         ask('select', dhcp('{A_MAC}', '{V1_MAC}', [('message-type', 'request'), \
         ('server_id', SID), ('requested_addr', '{V1_IP}')]))\n\
         ask('reboot', dhcp('{A_MAC}', '{V1_MAC}', [('message-type', 'request'), \
         ('requested_addr', '{V1_IP}')]))\n\
         ask('renew', dhcp('{A_MAC}', '{V1_MAC}', [('message-type', 'request')], ciaddr='{V1_IP}', \
         ipsrc='{a_ip}'))\n\
         ask('inform', dhcp('{A_MAC}', '{A_MAC}', [('message-type', 'inform')], ciaddr='{V1_IP}', \
         ipsrc='{a_ip}'))\n\
         send(dhcp('{A_MAC}', '{V1_MAC}', [('message-type', 'release'), ('server_id', SID)], \
         ciaddr='{V1_IP}', ipsrc='{a_ip}'))\n\
         send(dhcp('{A_MAC}', '{A_MAC}', [('message-type', 'decline'), ('server_id', SID), \
         ('requested_addr', '{V1_IP}')]))\n"
    );
    let from_a = scapy(&mut lab, "a", &calls);
    // From the unguarded port `u`: v1's chaddr (no guard stops it there), and a's pool lease.
    let calls = format!(
        "ask('u_select', dhcp('{U_MAC}', '{V1_MAC}', [('message-type', 'request'), \
         ('server_id', SID), ('requested_addr', '{V1_IP}')]))\n\
         ask('u_reboot_a', dhcp('{U_MAC}', '{A_MAC}', [('message-type', 'request'), \
         ('requested_addr', '{a_ip}')]))\n\
         ask('u_inform', dhcp('{U_MAC}', '{U_MAC}', [('message-type', 'inform')], ciaddr='{a_ip}'))\n\
         send(dhcp('{U_MAC}', '{V1_MAC}', [('message-type', 'release'), ('server_id', SID)], \
         ciaddr='{V1_IP}'))\n\
         send(dhcp('{U_MAC}', '{A_MAC}', [('message-type', 'release'), ('server_id', SID)], \
         ciaddr='{a_ip}'))\n\
         send(dhcp('{U_MAC}', '{U_MAC}', [('message-type', 'decline'), ('server_id', SID), \
         ('requested_addr', '{V1_IP}')]))\n"
    );
    let from_u = scapy(&mut lab, "u", &calls);
    println!("from a:\n{from_a}from u:\n{from_u}");
    for name in [
        "discover",
        "select",
        "reboot",
        "renew",
        "inform",
        "u_select",
        "u_reboot_a",
        "u_inform",
    ] {
        let text = format!("{from_a}{from_u}");
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        assert_eq!(line, format!("{name}=none"), "a forged {name} got a reply");
    }

    // Nothing moved: both leases are where they were, and v1 renews its own address.
    let mut want = vec![
        (V1_IP.to_string(), "v1".to_string()),
        (a_ip.clone(), "a".to_string()),
    ];
    want.sort();
    let mut got = leases(&lab);
    got.sort();
    assert_eq!(got, want, "leases after the attacks");
    assert!(clients::udhcpc(&mut lab, "v1", &usc, "3"), "v1 renews");
    assert_eq!(
        addr_of(&mut lab, "v1").as_deref(),
        Some(V1_IP),
        "not quarantined"
    );
    assert!(
        lab.ping("v1", "10.13.31.1", 2),
        "v1 still reaches the gateway"
    );
    assert!(
        lab.ping("a", "10.13.31.1", 1),
        "a still has its own address"
    );
    // a's frames with v1's address (ARP and IP) are guard drops: u, capturing, never sees
    // them, and does see a's frame from its own address sent last (the positive control).
    let (ns, iface) = (lab.ns("u"), lab.ifname("u"));
    let capture = std::thread::spawn(move || {
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "timeout",
            "8",
            "tcpdump",
            "-n",
            "-e",
            "-l",
            "-i",
            &iface,
            "udp port 9 or arp",
        ])
    });
    std::thread::sleep(Duration::from_millis(1500));
    let calls = format!(
        "send(Ether(src='{A_MAC}', dst='ff:ff:ff:ff:ff:ff') / ARP(op=2, hwsrc='{A_MAC}', \
         psrc='{V1_IP}', pdst='{V1_IP}'), 20)\n\
         send(Ether(src='{A_MAC}', dst='ff:ff:ff:ff:ff:ff') / IP(src='{V1_IP}', dst='10.13.31.255') \
         / UDP(sport=9, dport=9) / b'spoof', 20)\n\
         send(Ether(src='{A_MAC}', dst='ff:ff:ff:ff:ff:ff') / IP(src='{a_ip}', dst='10.13.31.255') \
         / UDP(sport=9, dport=9) / b'control', 1)\n"
    );
    let _ = scapy(&mut lab, "a", &calls);
    let seen = String::from_utf8_lossy(&capture.join().unwrap().stdout).to_string();
    assert!(
        seen.contains(&format!("{a_ip}.9 > 10.13.31.255.9")),
        "the control frame was not captured on u:\n{seen}"
    );
    assert!(
        !seen.contains(V1_IP),
        "a frame with v1's address reached u:\n{seen}"
    );
    let spoofed_arp = metric(
        &lab,
        "switchyard_port_drops_total{port=\"a\",reason=\"spoofed_arp\"}",
    );
    let spoofed_ip = metric(
        &lab,
        "switchyard_port_drops_total{port=\"a\",reason=\"spoofed_ip\"}",
    );
    assert!(spoofed_arp >= 20, "spoofed_arp drops on a: {spoofed_arp}");
    assert!(spoofed_ip >= 20, "spoofed_ip drops on a: {spoofed_ip}");

    let imp = dhcp_drops(&lab, "impersonation");
    let owner = dhcp_drops(&lab, "not_owner");
    println!("impersonation {imp}, not_owner {owner}");
    // a: discover, select, reboot, renew, 3 releases (chaddr v1) = 7 impersonations; u: the
    // select, the reboot and 6 releases with a guarded host's MAC = 8. not_owner: a's inform
    // and 3 declines of v1's address, u's inform of a's address and 3 declines = 8.
    assert!(imp >= 15, "impersonation drops: {imp}");
    assert!(owner >= 8, "not_owner drops: {owner}");
    let exit = lab.stop_with("TERM");
    let log = plain(&exit.stderr);
    // The guard's enforced drops are logged too (at info, rate-limited per port and reason).
    for reason in ["spoofed_arp", "spoofed_ip"] {
        assert!(
            log.lines().any(|l| l.contains("guard dropped frames")
                && l.contains("port=a ")
                && l.contains(&format!("reason=\"{reason}\""))),
            "no guard drop logged for a/{reason}:\n{log}"
        );
    }
    for (port, reason) in [("a", "impersonation"), ("u", "not_owner")] {
        assert!(
            log.lines().any(|l| l.contains("DHCP message refused")
                && l.contains(&format!("port={port} "))
                && l.contains(&format!("reason=\"{reason}\""))),
            "no refusal logged for {port}/{reason}:\n{log}"
        );
    }
}

#[test]
fn a_hostname_reservation_cannot_be_claimed_from_another_port() {
    let mut lab = Lab::new();
    let mut cfg = base(&mut lab);
    cfg += &format!("\n[[host]]\nname = \"web\"\nmatch = \"hostname\"\nipv4 = \"{WEB_IP}\"\n");
    cfg += &host("a", A_MAC, "");
    cfg += &port(&mut lab, "web", "host = \"web\"\nguard = false\n");
    cfg += &port(&mut lab, "a", "host = \"a\"\n");
    start(&mut lab, &cfg, &["web", "a"]);
    // The attacker asks first, with web's name and its own (legitimate) chaddr.
    let calls = format!(
        "ask('discover', dhcp('{A_MAC}', '{A_MAC}', [('message-type', 'discover'), \
         ('hostname', b'web')]))\n\
         ask('reboot', dhcp('{A_MAC}', '{A_MAC}', [('message-type', 'request'), \
         ('requested_addr', '{WEB_IP}'), ('hostname', b'WEB')]))\n"
    );
    let out = scapy(&mut lab, "a", &calls);
    assert_eq!(out.trim(), "discover=none\nreboot=none", "{out}");
    assert!(dhcp_drops(&lab, "impersonation") >= 2);
    // web's own port gets it, by name.
    let usc = clients::udhcpc_script(&lab.dir);
    let ifname = lab.ifname("web");
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
        "5",
        "-T",
        "1",
        "-x",
        "hostname:web",
        "-s",
    ];
    let mut full: Vec<&str> = args.to_vec();
    full.push(usc.to_str().unwrap());
    assert!(lab.exec("web", &full).status.success(), "web got no lease");
    assert_eq!(addr_of(&mut lab, "web").as_deref(), Some(WEB_IP));
    // The attacker without the name still gets a pool address.
    assert!(clients::udhcpc(&mut lab, "a", &usc, "5"), "a got no lease");
    let a_ip = addr_of(&mut lab, "a").unwrap();
    assert!(a_ip.starts_with("10.13.31.10"), "a got {a_ip}");
    let _ = lab.stop_with("TERM");
}
