//! Attacks from one lab host while two others talk: a MAC flood (50,000 frames with random
//! source MACs) and a broadcast storm (50,000 broadcast frames), each sent from an unguarded
//! port as fast as a raw socket goes. The FDB cap of the attacker's port is what fills, storm
//! control drops the storm (counted as `storm_control`), and pings between the two other hosts
//! keep being answered throughout. Bounded: each attack is a fixed number of frames under a
//! 30 s timeout.

mod common;

use std::process::{Child, Command, Stdio};

use common::Lab;

/// A process in a lab namespace, killed when dropped.
struct Bg(Option<Child>);

impl Bg {
    fn wait_output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn config(lab: &mut Lab) -> String {
    let mut c = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\n[switch]\n\
         storm_limit = 500\nmax_macs_per_port = 256\n",
        tag = lab.tag,
        state = lab.dir.join("state").display()
    );
    for (h, octet, guarded) in [("h1", 11, true), ("h2", 12, true), ("h3", 13, false)] {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        c.push_str(&format!(
            "\n[[host]]\nname = \"{h}\"\nmac = \"52:54:00:31:00:{octet:02x}\"\n\
             ipv4 = \"10.13.31.{octet}\"\n\n[[port]]\nname = \"{h}\"\nkind = \"tap\"\n\
             ifname = \"{ifname}\"\nhost = \"{h}\"\nnetns = \"{ns}\"\nguard = {guarded}\n"
        ));
    }
    c
}

/// Sends `count` frames from h3 through a raw socket: `dst` is a hex MAC, and the source MAC is
/// random (locally administered) per frame if `random_src`, else h3's own.
fn blast(lab: &mut Lab, dst: &str, random_src: bool, count: u32) {
    let iface = lab.ifname("h3");
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('{iface}', 0))\n\
         own = bytes.fromhex('52540031000d')\n\
         dst = bytes.fromhex('{dst}')\n\
         body = b'\\x88\\xb5' + bytes(46)\n\
         rnd = os.urandom(6 * {count})\n\
         for i in range({count}):\n\
         \x20   src = bytes([0x02]) + rnd[6*i+1:6*i+6] if {random_src} else own\n\
         \x20   try:\n\
         \x20       s.send(dst + src + body)\n\
         \x20   except BlockingIOError:\n\
         \x20       pass\n",
        random_src = if random_src { "True" } else { "False" },
    );
    let out = lab.exec("h3", &["timeout", "30", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "sender failed: {out:?}");
}

/// Pings h2 from h1, 40 times 50 ms apart, in the background.
fn ping_in_background(lab: &mut Lab) -> Bg {
    let ns = lab.ns("h1");
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns, "ping", "-n", "-q", "-c", "40", "-i", "0.05", "-W", "1",
        ])
        .arg("10.13.31.12")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Bg(Some(child))
}

/// Replies received, from ping's summary line.
fn received(out: &std::process::Output) -> u32 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let at = l.find(" received")?;
            l[..at].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no ping summary in {text:?}"))
}

#[test]
fn mac_flood_and_broadcast_storm_do_not_stop_other_hosts() {
    let mut lab = Lab::new();
    let cfg = config(&mut lab);
    let hosts: Vec<(String, String)> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(&cfg, &refs);
    assert!(
        lab.ping("h1", "10.13.31.12", 1),
        "h1 -> h2 before the attacks"
    );

    // MAC flood: unknown unicast destination, a new source MAC per frame.
    let ping = ping_in_background(&mut lab);
    blast(&mut lab, "5254ffeeeeee", true, 50_000);
    let during_flood = received(&ping.wait_output());

    // Broadcast storm from h3's own MAC.
    let ping = ping_in_background(&mut lab);
    blast(&mut lab, "ffffffffffff", false, 50_000);
    let during_storm = received(&ping.wait_output());

    assert!(
        lab.ping("h1", "10.13.31.12", 2),
        "h1 -> h2 after the attacks"
    );
    assert!(
        lab.ping("h2", "10.13.31.11", 2),
        "h2 -> h1 after the attacks"
    );
    let exit = lab.stop_with("TERM");
    let h3 = exit.counters("h3");
    println!(
        "pings answered during the MAC flood {during_flood}/40, during the storm {during_storm}/40\n{}",
        exit.stdout
    );
    // Legitimate traffic kept flowing: most pings were answered (not a speed assertion: 40
    // pings over 2 s, a lost one is a dropped frame, and none may be lost to the attacker's
    // share of the FDB or to flooding).
    assert!(
        during_flood >= 30,
        "only {during_flood}/40 pings during the MAC flood"
    );
    assert!(
        during_storm >= 30,
        "only {during_storm}/40 pings during the storm"
    );
    // The attacker's own FDB cap filled (256 learned, the rest counted), not anyone else's.
    assert!(h3.fdb_full > 1_000, "h3 fdb_full = {}", h3.fdb_full);
    assert_eq!(exit.counters("h1").fdb_full, 0);
    let storm: u64 = h3
        .drops
        .split_whitespace()
        .find_map(|d| d.strip_prefix("storm_control=")?.parse().ok())
        .unwrap_or(0);
    assert!(storm > 1_000, "storm_control drops on h3: {}", h3.drops);
}

#[test]
fn dhcp_starvation_from_one_port_leaves_the_pool_to_others() {
    let mut lab = Lab::new();
    let mut cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\n\
         pool = [\"10.13.31.100\", \"10.13.31.109\"]\n",
        tag = lab.tag,
        state = lab.dir.join("state").display()
    );
    for (h, octet) in [("h1", 0x21), ("h3", 0x23)] {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        cfg.push_str(&format!(
            "\n[[host]]\nname = \"{h}\"\nmac = \"52:54:00:31:00:{octet:02x}\"\n\n\
             [[port]]\nname = \"{h}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nhost = \"{h}\"\n\
             netns = \"{ns}\"\naddress = \"none\"\n"
        ));
    }
    let (i1, i3) = (lab.ifname("h1"), lab.ifname("h3"));
    lab.start(&cfg, &[("h1", &i1), ("h3", &i3)]);

    // h3 (guarded: its own Ethernet source, as the guard demands) asks for leases for 2,000
    // made-up clients, spread over 3 s so the per-port rate limit lets some through.
    let script = format!(
        "import logging, os, time\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\nconf.verb = 0\n\
         s = conf.L2socket(iface='{i3}')\n\
         for i in range(2000):\n\
         \x20   ch = bytes([0x02]) + os.urandom(5)\n\
         \x20   p = Ether(src='52:54:00:31:00:23', dst='ff:ff:ff:ff:ff:ff') / \
         IP(src='0.0.0.0', dst='255.255.255.255') / UDP(sport=68, dport=67) / \
         BOOTP(chaddr=ch + bytes(10), xid=i) / DHCP(options=[('message-type', 'discover'), 'end'])\n\
         \x20   s.send(p)\n\
         \x20   time.sleep(0.0015)\n"
    );
    let out = lab.exec("h3", &["timeout", "30", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "scapy failed: {out:?}");

    // h1 still gets an address from the 10-address pool.
    let usc = common::clients::udhcpc_script(&lab.dir);
    assert!(
        common::clients::udhcpc(&mut lab, "h1", &usc, "5"),
        "h1 got no lease after the starvation attempt"
    );
    let ifname = lab.ifname("h1");
    let out = lab.exec("h1", &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inet 10.13.31.10"), "h1: {text}");
}
