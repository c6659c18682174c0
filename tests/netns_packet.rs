//! Namespace tests of `packet` ports: host h1 sits on a tap port as usual; host h2 is a
//! namespace with one end of a veth pair, whose other end lives in a third namespace ("up") and
//! is attached to the switch as a packet port (`netns = "<up>"`). Ping, TCP data both ways, the
//! guard, the netdev disappearing and coming back, and partial checksums completed on the way to
//! a stream port. Each test builds its own lab and removes
//! it even when it fails.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_config, sh, Lab};

const H1_IP: &str = "10.13.31.11";
const H2_IP: &str = "10.13.31.12";
const H2_MAC: &str = "52:54:00:31:00:0c";

/// The names of h2's veth pair: `host` end in h2, `sw` end in the "up" namespace.
struct Veth {
    host: String,
    sw: String,
    up_ns: String,
    h2_ns: String,
}

/// Creates h2's namespace and the uplink namespace (registered with the lab for removal).
fn make_namespaces(lab: &mut Lab) -> Veth {
    let h2_ns = lab.ns("h2");
    let up_ns = lab.ns("up");
    for ns in [&h2_ns, &up_ns] {
        let out = sh(&["ip", "netns", "add", ns]);
        assert!(out.status.success(), "ip netns add {ns}: {out:?}");
    }
    lab.exec("h2", &["ip", "link", "set", "lo", "up"]);
    lab.exec("h2", &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    Veth {
        host: lab.ifname("h2"),
        sw: lab.ifname("p2"),
        up_ns,
        h2_ns,
    }
}

/// Creates the veth pair and configures h2's end (MAC, address, up). The switch's end is left
/// down and bare: attaching brings it up.
fn make_veth(lab: &mut Lab, v: &Veth) {
    let out = sh(&[
        "ip", "link", "add", &v.host, "netns", &v.h2_ns, "address", H2_MAC, "type", "veth", "peer",
        "name", &v.sw, "netns", &v.up_ns,
    ]);
    assert!(out.status.success(), "ip link add veth: {out:?}");
    let addr = format!("{H2_IP}/24");
    for args in [
        vec!["ip", "addr", "add", &addr, "dev", &v.host],
        vec!["ip", "link", "set", &v.host, "up"],
    ] {
        let out = lab.exec("h2", &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

/// h1 on a tap, h2 behind a packet port; returns once both ports are up.
fn start(lab: &mut Lab, extra_h2: &str) -> Veth {
    let v = make_namespaces(lab);
    make_veth(lab, &v);
    let mut cfg = lab_config(lab, &[("h1", 11, false)], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"h2\"\nmac = \"{H2_MAC}\"\nipv4 = \"{H2_IP}\"\n{extra_h2}\n\
         [[port]]\nname = \"h2\"\nkind = \"packet\"\nifname = \"{sw}\"\nnetns = \"{up}\"\n\
         host = \"h2\"\n",
        sw = v.sw,
        up = v.up_ns
    ));
    let i1 = lab.ifname("h1");
    lab.start(&cfg, &[("h1", &i1)]);
    lab.exec("h1", &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    wait_attached(lab, &v);
    v
}

/// Waits until the daemon has attached: the switch's end is up and promiscuous (a packet
/// membership: `ip -d` shows it as `promiscuity 1`, not as the PROMISC flag).
fn wait_attached(lab: &mut Lab, v: &Veth) {
    let (ns, dev) = (v.up_ns.clone(), v.sw.clone());
    lab.wait_for(
        &format!("{dev} up and promiscuous in {ns}"),
        Duration::from_secs(15),
        || {
            let out = sh(&["ip", "-d", "-n", &ns, "link", "show", "dev", &dev]);
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success() && text.contains("promiscuity 1") && text.contains(",UP")
        },
    );
}

/// Moves `bytes` over TCP from `from` to `to_host` (listening on `to_ip`); returns what the
/// receiver counted.
fn tcp_transfer(lab: &mut Lab, from: &str, to_host: &str, to_ip: &str, bytes: usize) -> usize {
    let server = "import socket\n\
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        s.bind(('0.0.0.0', 5201)); s.listen(1); s.settimeout(30)\n\
        print('listening', flush=True)\n\
        c, _ = s.accept(); c.settimeout(30); n = 0\n\
        while True:\n    b = c.recv(65536)\n    if not b: break\n    n += len(b)\n\
        print(n, flush=True)\n";
    let ns = lab.ns(to_host);
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "timeout",
            "40",
            "/usr/bin/python3",
            "-c",
            server,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the TCP server");
    let client = format!(
        "import socket, time\n\
         for i in range(100):\n    try:\n        s = socket.create_connection(('{to_ip}', 5201), \
         timeout=5); break\n    except OSError:\n        time.sleep(0.1)\n\
         s.settimeout(30); buf = bytes(range(256)) * 256; sent = 0\n\
         while sent < {bytes}:\n    s.sendall(buf); sent += len(buf)\n\
         s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n"
    );
    let out = lab.exec(from, &["timeout", "40", "/usr/bin/python3", "-c", &client]);
    let deadline = Instant::now() + Duration::from_secs(45);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let server_out = child.wait_with_output().expect("server output");
    let text = String::from_utf8_lossy(&server_out.stdout).to_string();
    assert!(
        out.status.success(),
        "TCP client {from} -> {to_ip} failed: {out:?}\nserver: {text} {}",
        String::from_utf8_lossy(&server_out.stderr)
    );
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("server printed no byte count: {text:?} {server_out:?}"))
}

#[test]
fn packet_port_pings_and_carries_tcp_both_ways() {
    let mut lab = Lab::new();
    start(&mut lab, "");
    assert!(lab.ping("h1", H2_IP, 3), "tap host -> packet host");
    assert!(lab.ping("h2", H1_IP, 3), "packet host -> tap host");
    assert!(lab.ping("h2", "10.13.31.1", 3), "packet host -> gateway");
    const BYTES: usize = 4 << 20;
    let got = tcp_transfer(&mut lab, "h2", "h1", H1_IP, BYTES);
    assert_eq!(got, BYTES, "packet host -> tap host over TCP");
    let got = tcp_transfer(&mut lab, "h1", "h2", H2_IP, BYTES);
    assert_eq!(got, BYTES, "tap host -> packet host over TCP");
    // The switch's end of the veth has no IPv6 address: the host does not talk on it.
    let v6 = sh(&[
        "ip",
        "-n",
        &lab.ns("up"),
        "-6",
        "addr",
        "show",
        "dev",
        &lab.ifname("p2"),
    ]);
    assert!(
        !String::from_utf8_lossy(&v6.stdout).contains("inet6"),
        "{v6:?}"
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let h2 = exit.counters("h2");
    // 4 MiB each way: with GSO through the packet socket (h2's veth keeps TSO on) that is a
    // few hundred super-frames rather than ~2,900 MTU-sized ones.
    assert!(h2.rx_frames > 100 && h2.tx_frames > 100, "{h2:?}");
    assert_eq!(h2.downs, 0, "{}", exit.stdout);
    assert_eq!(h2.drops, "-", "{}", exit.stdout);
}

/// The internet checksum (RFC 1071) of `b`.
fn rfc1071(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads QEMU-framed frames from `s` until one is an IPv4/UDP datagram to `port`; returns it.
fn next_udp_frame(s: &mut UnixStream, port: u16, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 65536]);
    while Instant::now() < deadline {
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let f: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            let is_udp = f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17;
            if is_udp && f[36..38] == port.to_be_bytes() {
                return Some(f);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    None
}

#[test]
fn partial_checksums_are_completed_for_a_stream_port() {
    let mut lab = Lab::new();
    let sock = lab.dir.join("s.sock");
    let v = start(
        &mut lab,
        &format!(
            "\n[[port]]\nname = \"s\"\nkind = \"stream\"\npath = \"{}\"\n",
            sock.display()
        ),
    );
    let mut client = UnixStream::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // h2's UDP leaves its veth with CHECKSUM_PARTIAL (checksum offload is on): the packet port
    // reads it with NEEDS_CSUM, and the stream port, which carries no virtio-net header, must
    // put a complete checksum on the wire.
    let sender = "import socket, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n\
        for i in range(20):\n    s.sendto(b'csum-check' * 40, ('10.13.31.255', 9999)); time.sleep(0.1)\n";
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &v.h2_ns,
            "timeout",
            "10",
            "/usr/bin/python3",
            "-c",
            sender,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the UDP sender");
    let got = next_udp_frame(&mut client, 9999, Duration::from_secs(8));
    let _ = child.kill();
    let _ = child.wait();
    let f = got.expect("no UDP frame from h2 reached the stream client");
    assert_eq!(&f[26..30], &[10, 13, 31, 12], "from h2");
    let udp = &f[34..34 + usize::from(u16::from_be_bytes([f[38], f[39]]))];
    assert_ne!(&udp[6..8], &[0, 0], "a checksum was sent");
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    assert_eq!(
        rfc1071(&pseudo),
        0,
        "the UDP checksum is complete and right"
    );
    drop(client);
    let exit = lab.stop_with("TERM");
    let s = exit.counters("s");
    assert!(!s.drops.contains("needs_offload"), "{}", exit.stdout);
}

#[test]
fn guard_drops_spoofed_frames_from_a_packet_port() {
    let mut lab = Lab::new();
    let v = start(&mut lab, "");
    assert!(lab.ping("h2", H1_IP, 2), "positive control before spoofing");
    let script = format!(
        "import logging\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\nconf.verb = 0\n\
         sendp(Ether(src='{H2_MAC}', dst='ff:ff:ff:ff:ff:ff')/IP(src='10.13.31.99', \
         dst='{H1_IP}')/UDP(sport=1234, dport=9)/b'spoof-ip', iface='{dev}', count=5)\n\
         sendp(Ether(src='52:54:00:31:00:99', dst='ff:ff:ff:ff:ff:ff')/IP(src='{H2_IP}', \
         dst='{H1_IP}')/UDP(sport=1234, dport=9)/b'spoof-mac', iface='{dev}', count=4)\n",
        dev = v.host
    );
    let out = lab.exec("h2", &["timeout", "20", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "scapy: {out:?}");
    assert!(lab.ping("h2", H1_IP, 2), "legitimate traffic still passes");
    let exit = lab.stop_with("TERM");
    let h2 = exit.counters("h2");
    assert!(
        h2.drops.contains("spoofed_ip=5") && h2.drops.contains("spoofed_mac=4"),
        "{}",
        exit.stdout
    );
}

#[test]
fn packet_port_goes_down_with_its_netdev_and_comes_back() {
    let mut lab = Lab::new();
    let v = start(&mut lab, "");
    assert!(lab.ping("h2", H1_IP, 2), "before");
    // Deleting one end deletes the pair: h2's NIC and the switch's netdev are gone.
    let out = sh(&["ip", "-n", &v.up_ns, "link", "del", &v.sw]);
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !lab.ping("h1", H2_IP, 1),
        "h2 unreachable while its netdev is gone"
    );
    make_veth(&mut lab, &v);
    wait_attached(&mut lab, &v);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.ping("h2", H1_IP, 1) {
        assert!(Instant::now() < deadline, "the port never came back");
    }
    assert!(lab.ping("h1", H2_IP, 3), "after re-attaching");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "the daemon survived: {exit:?}");
    let h2 = exit.counters("h2");
    assert_eq!(h2.downs, 1, "{}", exit.stdout);
}
