//! Namespace tests of the per-port guard: host h1 sends crafted frames with scapy (Debian's
//! python3-scapy, run with /usr/bin/python3), host h2 captures with tcpdump, and the daemon's exit
//! counter table says what was dropped and why. Each test builds its own lab and removes it.

mod common;

use std::fs;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_config, Lab};

const H1_MAC: &str = "52:54:00:31:00:0b";
const H1_IP: &str = "10.13.31.11";
const H2_MAC: &str = "52:54:00:31:00:0c";
const H2_IP: &str = "10.13.31.12";
const VIP: &str = "10.13.31.50";
/// The marker payload of the positive control: proves the capture saw h1's frames at all.
const CONTROL: &str = "guard-control";

/// Starts h1 (with `VIP` declared as an extra address) and h2.
fn start(lab: &mut Lab) {
    let mut cfg = lab_config(lab, &[("h1", 11, false), ("h2", 12, false)], "");
    cfg = cfg.replacen(
        &format!("ipv4 = \"{H1_IP}\"\n"),
        &format!("ipv4 = \"{H1_IP}\"\nextra_ipv4 = [\"{VIP}\"]\n"),
        1,
    );
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
}

/// Runs a scapy script in h1's namespace; `frames` are Python expressions, each sent `count`
/// times with `sendp` out of h1's interface.
fn send_from_h1(lab: &mut Lab, frames: &[&str], count: u32) {
    let iface = lab.ifname("h1");
    let mut script = String::from(
        "import logging\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\nfrom scapy.layers.vrrp import VRRP\nconf.verb = 0\n",
    );
    for f in frames {
        script.push_str(&format!("sendp({f}, iface='{iface}', count={count})\n"));
    }
    let out = lab.exec("h1", &["timeout", "20", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "scapy failed: {out:?}\n{script}");
}

/// A tcpdump running in h2's namespace, writing to a file in the lab dir.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
    /// Kept open so tcpdump's last words on stderr never meet a closed pipe.
    _stderr: std::process::ChildStderr,
}

impl Capture {
    fn start(lab: &mut Lab) -> Capture {
        let ns = lab.ns("h2");
        let iface = lab.ifname("h2");
        let file = lab.dir.join("h2.pcap");
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &ns, "tcpdump", "-i", &iface, "-n", "-U", "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        // tcpdump says "listening on ..." once the capture is open.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            let n = err.read(&mut buf).unwrap_or(0);
            assert!(n > 0, "tcpdump exited: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        Capture {
            child,
            file,
            _stderr: err,
        }
    }

    /// Stops the capture (after a moment for the last frames) and returns it as text.
    fn finish(mut self) -> String {
        // h1 sends the control frame last: once it is in the file (tcpdump -U writes each
        // packet as it comes), everything sent before it has had its chance to arrive.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let bytes = fs::read(&self.file).unwrap_or_default();
            if bytes
                .windows(CONTROL.len())
                .any(|w| w == CONTROL.as_bytes())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        // SIGINT: tcpdump flushes and closes the file (`ip netns exec` execs it: same pid).
        common::sh(&["kill", "-INT", &self.child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("tcpdump")
            .args(["-n", "-e", "-v", "-A", "-r"])
            .arg(&self.file)
            .output()
            .expect("tcpdump -r");
        let _ = fs::remove_file(&self.file);
        format!(
            "{}\n(tcpdump -r: {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A legitimate frame from h1 to h2 carrying `CONTROL`: proves the capture saw h1's frames.
fn control_frame() -> String {
    format!(
        "Ether(src='{H1_MAC}', dst='{H2_MAC}')/IP(src='{H1_IP}', dst='{H2_IP}')/UDP(sport=4000, \
         dport=4001)/Raw(b'{CONTROL}')"
    )
}

/// The count of `reason` in a DROPS column like "spoofed_ip=3 rogue_ra=1" (0 if absent).
fn drops_of(drops: &str, reason: &str) -> u64 {
    drops
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == reason)
        .map_or(0, |(_, v)| v.parse().unwrap())
}

#[test]
fn spoofed_and_rogue_frames_are_dropped_and_counted() {
    let mut lab = Lab::new();
    start(&mut lab);
    let cap = Capture::start(&mut lab);
    let n = 3;
    send_from_h1(
        &mut lab,
        &[
            // Spoofed source MAC.
            &format!(
                "Ether(src='52:54:00:99:99:99', dst='{H2_MAC}')/IP(src='{H1_IP}', \
                 dst='{H2_IP}')/UDP(sport=4000, dport=4001)/Raw(b'spoofed-mac')"
            ),
            // Spoofed source IP.
            &format!(
                "Ether(src='{H1_MAC}', dst='{H2_MAC}')/IP(src='10.13.31.99', \
                 dst='{H2_IP}')/UDP(sport=4000, dport=4001)/Raw(b'spoofed-ip')"
            ),
            // ARP claiming the gateway's IP.
            &format!(
                "Ether(src='{H1_MAC}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, hwsrc='{H1_MAC}', \
                 psrc='10.13.31.1', hwdst='{H2_MAC}', pdst='{H2_IP}')"
            ),
            // ARP with a foreign sender MAC.
            &format!(
                "Ether(src='{H1_MAC}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, \
                 hwsrc='52:54:00:31:00:0c', psrc='{H1_IP}', pdst='{H2_IP}')"
            ),
            // A rogue DHCP OFFER aimed at h2.
            &format!(
                "Ether(src='{H1_MAC}', dst='{H2_MAC}')/IP(src='{H1_IP}', \
                 dst='255.255.255.255')/UDP(sport=67, dport=68)/BOOTP(op=2, \
                 yiaddr='10.13.31.200', chaddr=mac2str('{H2_MAC}'))/DHCP(options=[\
                 ('message-type', 'offer'), ('router', '{H1_IP}'), 'end'])"
            ),
            // A rogue router advertisement from h1's own link-local.
            &format!(
                "Ether(src='{H1_MAC}', dst='33:33:00:00:00:01')/IPv6(src='fe80::5054:ff:fe31:b', \
                 dst='ff02::1')/ICMPv6ND_RA()/ICMPv6NDOptPrefixInfo(prefix='2001:db8::', \
                 prefixlen=64)"
            ),
            // The positive control, last: a legitimate frame that must arrive.
            &control_frame(),
        ],
        n,
    );
    let seen = cap.finish();
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        seen.contains(CONTROL),
        "control frame not captured:\n{seen}"
    );
    for marker in [
        "52:54:00:99:99:99",
        "10.13.31.99",
        "10.13.31.1 is-at",
        &format!("{H1_IP} is-at {H2_MAC}"),
        "10.13.31.200",
        "router advertisement",
    ] {
        assert!(!seen.contains(marker), "{marker} reached h2:\n{seen}");
    }
    let drops = exit.counters("h1").drops;
    let n = u64::from(n);
    for (reason, want) in [
        ("spoofed_mac", n),
        ("spoofed_ip", n),
        ("spoofed_arp", 2 * n),
        ("rogue_dhcp", n),
        ("rogue_ra", n),
    ] {
        assert!(
            drops_of(&drops, reason) >= want,
            "{reason}: want >= {want} in {drops}\n{}",
            exit.stdout
        );
    }
}

#[test]
fn legitimate_probes_garp_vrrp_and_dhcp_pass() {
    let mut lab = Lab::new();
    start(&mut lab);
    let iface = lab.ifname("h1");
    let vip = format!("{VIP}/32");
    let out = lab.exec("h1", &["ip", "addr", "add", &vip, "dev", &iface]);
    assert!(out.status.success(), "{out:?}");
    let cap = Capture::start(&mut lab);
    send_from_h1(
        &mut lab,
        &[
            // RFC 5227 ARP probe from 0.0.0.0.
            &format!(
                "Ether(src='{H1_MAC}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{H1_MAC}', \
                 psrc='0.0.0.0', pdst='10.13.31.77')"
            ),
            // DHCP DISCOVER from 0.0.0.0:68.
            &format!(
                "Ether(src='{H1_MAC}', dst='ff:ff:ff:ff:ff:ff')/IP(src='0.0.0.0', \
                 dst='255.255.255.255')/UDP(sport=68, dport=67)/BOOTP(chaddr=mac2str('{H1_MAC}'))\
                 /DHCP(options=[('message-type', 'discover'), 'end'])"
            ),
            // Gratuitous ARP for the declared extra address.
            &format!(
                "Ether(src='{H1_MAC}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, hwsrc='{H1_MAC}', \
                 psrc='{VIP}', hwdst='ff:ff:ff:ff:ff:ff', pdst='{VIP}')"
            ),
            // VRRP (protocol 112) from h1's own address.
            &format!(
                "Ether(src='{H1_MAC}', dst='01:00:5e:00:00:12')/IP(src='{H1_IP}', \
                 dst='224.0.0.18', ttl=255)/VRRP(vrid=7, priority=100, addrlist=['{VIP}'])"
            ),
            &control_frame(),
        ],
        2,
    );
    // The declared extra address answers pings after its gratuitous ARP.
    assert!(lab.ping("h2", VIP, 3), "ping h2 -> extra address {VIP}");
    // IPv6 DAD and link-local ping: h1's EUI-64 link-local, from h2.
    let ll = format!("fe80::5054:ff:fe31:b%{}", lab.ifname("h2"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ok6 = false;
    while !ok6 && Instant::now() < deadline {
        ok6 = lab
            .exec(
                "h2",
                &[
                    "ping", "-6", "-n", "-q", "-c", "2", "-i", "0.1", "-W", "1", &ll,
                ],
            )
            .status
            .success();
    }
    let seen = cap.finish();
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(ok6, "link-local ping6 h2 -> h1 failed\n{}", exit.stdout);
    for marker in [
        CONTROL,
        "tell 0.0.0.0",
        "0.0.0.0.68 > 255.255.255.255.67",
        &format!("{VIP} is-at"),
        "VRRP",
    ] {
        assert!(seen.contains(marker), "{marker} did not reach h2:\n{seen}");
    }
    let h1 = exit.counters("h1");
    assert_eq!(h1.drops, "-", "{}", exit.stdout);
}

#[test]
fn monitor_mode_lets_spoofed_frames_through() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(&mut lab, &[("h1", 11, false), ("h2", 12, false)], "");
    // h1's port is the first [[port]]: put it in monitor mode.
    cfg = cfg.replacen(
        "isolated = false\n",
        "isolated = false\nguard = \"monitor\"\n",
        1,
    );
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
    let cap = Capture::start(&mut lab);
    send_from_h1(
        &mut lab,
        &[
            &format!(
                "Ether(src='{H1_MAC}', dst='{H2_MAC}')/IP(src='10.13.31.99', \
                 dst='{H2_IP}')/UDP(sport=4000, dport=4001)/Raw(b'spoofed-ip')"
            ),
            &control_frame(),
        ],
        2,
    );
    let seen = cap.finish();
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        seen.contains("10.13.31.99"),
        "monitor mode dropped:\n{seen}"
    );
    assert_eq!(exit.counters("h1").drops, "-", "{}", exit.stdout);
    assert!(
        exit.stderr
            .contains("guard (monitor mode) would have dropped frames")
            && exit.stderr.contains("spoofed_ip="),
        "monitor mode logs what it would have dropped:\n{}",
        exit.stderr
    );
}
