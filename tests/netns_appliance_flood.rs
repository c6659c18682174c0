//! The appliance shared fairly (issue 17): one guest floods the gateway address from its own
//! (guarded, legitimate) MAC and IP, as fast as a raw socket sends, with pings (which the
//! appliance answers, from its queue) and UDP to a closed port (which it does not), while
//! another guest's real
//! DHCP client (udhcpc) and resolver (dig, with cookies, so every query reaches the appliance's
//! queue instead of the workers' memo) must all succeed. The flooder's excess is counted on its
//! own port (`service_limit`, `not_served`), and a control call still answers during the flood.
//! Bounded: the flood stops by itself after 20 s.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{clients, lab_config, Lab};

/// A process in a lab namespace, killed when dropped.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The flood: prebuilt frames from h1 to the appliance's MAC, sent in a loop for `secs`.
fn flood(lab: &mut Lab, gw_mac: &str, secs: u32) -> Bg {
    let iface = lab.ifname("h1");
    let ns = lab.ns("h1");
    let script = format!(
        "import logging, socket, time\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import Ether, IP, UDP, ICMP\n\
         e = Ether(src='52:54:00:31:00:0b', dst='{gw_mac}') / IP(src='10.13.31.11', dst='10.13.31.1')\n\
         served = bytes(e / ICMP(type=8, id=7, seq=1) / (b'p' * 32))\n\
         closed = bytes(e / UDP(sport=40000, dport=9) / (b'x' * 20))\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('{iface}', 0))\n\
         end = time.time() + {secs}\n\
         n = 0\n\
         while time.time() < end:\n\
         \x20   for f in (served, closed) * 32:\n\
         \x20       try:\n\
         \x20           s.send(f)\n\
         \x20       except BlockingIOError:\n\
         \x20           pass\n\
         \x20   n += 64\n\
         print(n)\n"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, "/usr/bin/python3", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Bg(child)
}

#[test]
fn a_guest_flooding_the_gateway_does_not_starve_another_guests_dhcp_and_dns() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(&mut lab, &[("h1", 11, false), ("h2", 12, false)], "");
    // h2 gets its address from DHCP.
    cfg = cfg.replacen(
        &format!("netns = \"{}\"\n", lab.ns("h2")),
        &format!("netns = \"{}\"\naddress = \"none\"\n", lab.ns("h2")),
        1,
    );
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
    assert!(lab.ping("h1", "10.13.31.1", 1));
    let neigh = lab.exec("h1", &["ip", "neigh", "show", "10.13.31.1"]);
    let text = String::from_utf8_lossy(&neigh.stdout).to_string();
    let gw_mac = text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("no neighbour entry for the gateway: {text}"))
        .to_string();

    let mut attacker = flood(&mut lab, &gw_mac, 20);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // A real DHCP client on the other port.
    let usc = clients::udhcpc_script(&lab.dir);
    assert!(
        clients::udhcpc(&mut lab, "h2", &usc, "5"),
        "h2's udhcpc got no lease during the flood"
    );
    // Forty lookups, 50 ms apart, each given one try of 2 s.
    let mut answered = 0;
    for i in 0..40 {
        let name = if i % 2 == 0 {
            "h1.lab.test"
        } else {
            "h2.lab.test"
        };
        let out = lab.exec(
            "h2",
            &["dig", "@10.13.31.1", "+short", "+tries=1", "+time=2", name],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().starts_with("10.13.31.1") {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A control call (it asks the appliance) answers during the flood too.
    let leases = lab.cli_ok(&["leases"]);
    let during = started.elapsed();
    let sent: u64 = {
        let out = std::mem::replace(&mut attacker.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let n = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            n > 0,
            "the flooder failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        n
    };
    println!("flood: {sent} frames sent; h2: {answered}/40 answered in {during:?}\n{leases}");
    assert_eq!(answered, 40, "h2 lost DNS answers to h1's flood");
    assert!(
        during < Duration::from_millis(19_500),
        "the checks outlasted the flood ({during:?}): they did not run under it"
    );
    assert!(
        sent > 10_000,
        "the flood was too weak to mean anything: {sent}"
    );
    assert!(leases.contains("10.13.31."), "{leases}");

    let exit = lab.stop_with("TERM");
    let h1 = exit.counters("h1");
    let count = |reason: &str| -> u64 {
        h1.drops
            .split_whitespace()
            .find_map(|d| d.strip_prefix(&format!("{reason}="))?.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("service_limit") > 1_000, "h1 drops: {}", h1.drops);
    assert!(count("not_served") > 1_000, "h1 drops: {}", h1.drops);
    let h2 = exit.counters("h2");
    assert!(
        !h2.drops.contains("service_limit"),
        "h2 was limited: {}",
        h2.drops
    );
}
