//! TCP and UDP through the switch with offloads on: the taps hand the switch GSO super-frames
//! (TSO, USO) with partial checksums, the switch passes them through, and the receiving host
//! gets every byte, intact: TCP over IPv4 and IPv6, UDP_SEGMENT datagrams whole.
//! Correctness only: nothing here looks at speed.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{lab_config, Lab};

const HOSTS: [(&str, u8, bool); 2] = [("h1", 11, false), ("h2", 12, false)];
/// Bytes each transfer moves.
const BYTES: usize = 10 * 1024 * 1024;

/// Receives one connection on `addr`:`port`, prints "<bytes> <sha256>" when the peer closes.
const SERVER: &str = r#"
import hashlib, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(socket.getaddrinfo(addr, port, fam)[0][4])
s.listen(1)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
n, h = 0, hashlib.sha256()
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    n += len(d)
    h.update(d)
print(n, h.hexdigest())
"#;

/// Connects to `addr`:`port`, sends `n` pseudo-random bytes, prints "<bytes> <sha256>".
const CLIENT: &str = r#"
import hashlib, random, socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(7).randbytes(n)
for attempt in range(50):
    try:
        s = socket.create_connection((addr, port), timeout=20)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect")
s.sendall(data)
s.close()
print(n, hashlib.sha256(data).hexdigest())
"#;

/// Receives UDP datagrams on `addr`:`port` for 3 s (or until 200 came); prints one line per
/// datagram: "<length> <ok>", ok when its bytes are the chunk of the sender's buffer it names.
const UDP_SERVER: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(3)
for _ in range(200):
    try:
        d = s.recv(65536)
    except socket.timeout:
        break
    i = int.from_bytes(d[:4], "big")
    print(len(d), d == i.to_bytes(4, "big") + bytes([i % 251]) * (len(d) - 4))
"#;

/// Sends 5 bursts, each one `sendto` of 20 x 1000 bytes with UDP_SEGMENT (USO): the socket
/// hands the stack one 20 KB super-datagram, which leaves h1's tap as a GSO_UDP_L4 frame.
const UDP_CLIENT: &str = r#"
import socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
SOL_UDP, UDP_SEGMENT = 17, 103
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(SOL_UDP, UDP_SEGMENT, 1000)
buf = b"".join(i.to_bytes(4, "big") + bytes([i % 251]) * 996 for i in range(20))
for _ in range(5):
    s.sendto(buf, (addr, port))
    time.sleep(0.05)
"#;

/// Moves `BYTES` from h1 to h2, which listens on `addr` and which h1 reaches at `to`; returns
/// (what h1 sent, what h2 got).
fn transfer(lab: &mut Lab, addr: &str, to: &str, port: &str) -> (String, String) {
    let server = Command::new("timeout")
        .args([
            "30",
            "ip",
            "netns",
            "exec",
            &lab.ns("h2"),
            "/usr/bin/python3",
            "-c",
        ])
        .args([SERVER, addr, port])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let n = BYTES.to_string();
    let sent = lab.exec(
        "h1",
        &[
            "timeout",
            "30",
            "/usr/bin/python3",
            "-c",
            CLIENT,
            to,
            port,
            &n,
        ],
    );
    let got = server.wait_with_output().expect("server output");
    assert!(sent.status.success(), "client to {to}: {sent:?}");
    assert!(got.status.success(), "server at {addr}: {got:?}");
    (
        String::from_utf8_lossy(&sent.stdout).trim().to_string(),
        String::from_utf8_lossy(&got.stdout).trim().to_string(),
    )
}

/// The counter (0 if absent) from `nstat -asz` in `host`.
fn nstat(lab: &mut Lab, host: &str, name: &str) -> u64 {
    let out = lab.exec(host, &["nstat", "-asz", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or(0)
}

/// (rx_frames, rx_bytes) of `port` from the counters table the daemon prints at exit.
fn rx_of(stdout: &str, port: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(port))
        .unwrap_or_else(|| panic!("no row for {port}:\n{stdout}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1])
}

/// `host`'s EUI-64 link-local address (no scope), once duplicate address detection is over.
fn link_local(lab: &mut Lab, host: &str) -> String {
    let ifname = lab.ifname(host);
    let ns = lab.ns(host);
    let mut addr = String::new();
    lab.wait_for(
        &format!("a usable link-local address on {host}"),
        Duration::from_secs(10),
        || {
            let out = common::sh(&[
                "ip", "-n", &ns, "-6", "-o", "addr", "show", "dev", &ifname, "scope", "link",
            ]);
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().next() {
                Some(l) if !l.contains("tentative") => {
                    addr = l
                        .split_whitespace()
                        .nth(3)
                        .and_then(|a| a.split('/').next())
                        .unwrap_or_default()
                        .to_string();
                    !addr.is_empty()
                }
                _ => false,
            }
        },
    );
    addr
}

#[test]
fn tcp_and_uso_move_every_byte_through_gso_passthrough() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &HOSTS, "");
    let (if1, if2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &if1), ("h2", &if2)]);

    // The taps' netdevs took the offloads the switch asked for.
    let k = lab.exec("h1", &["ethtool", "-k", &if1]);
    let k = String::from_utf8_lossy(&k.stdout);
    for feature in ["tcp-segmentation-offload: on", "tx-checksumming: on"] {
        assert!(k.contains(feature), "{if1}: no '{feature}' in\n{k}");
    }

    let (sent, got) = transfer(&mut lab, "10.13.31.12", "10.13.31.12", "5301");
    assert_eq!(got, sent, "IPv4: h2 got other bytes than h1 sent");
    let ll = link_local(&mut lab, "h2");
    let (at, to) = (format!("{ll}%{if2}"), format!("{ll}%{if1}"));
    let (sent6, got6) = transfer(&mut lab, &at, &to, "5302");
    assert_eq!(got6, sent6, "IPv6: h2 got other bytes than h1 sent");
    assert!(sent.starts_with(&BYTES.to_string()), "{sent}");

    // UDP segmentation offload: every datagram arrives whole, 1000 bytes, with the right bytes.
    let server = Command::new("timeout")
        .args([
            "10",
            "ip",
            "netns",
            "exec",
            &lab.ns("h2"),
            "/usr/bin/python3",
            "-c",
        ])
        .args([UDP_SERVER, "10.13.31.12", "5303"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the UDP server");
    std::thread::sleep(Duration::from_millis(300));
    let sent = lab.exec(
        "h1",
        &[
            "timeout",
            "10",
            "/usr/bin/python3",
            "-c",
            UDP_CLIENT,
            "10.13.31.12",
            "5303",
        ],
    );
    assert!(sent.status.success(), "UDP client: {sent:?}");
    let got = server.wait_with_output().expect("UDP server output");
    let got = String::from_utf8_lossy(&got.stdout);
    let datagrams: Vec<&str> = got.lines().collect();
    assert!(
        datagrams.len() >= 20,
        "fewer than one burst of USO datagrams arrived:\n{got}"
    );
    assert!(
        datagrams.iter().all(|l| *l == "1000 True"),
        "a datagram arrived cut, merged or altered:\n{got}"
    );

    for counter in ["TcpInCsumErrors", "UdpInCsumErrors", "IpExtInCsumErrors"] {
        assert_eq!(nstat(&mut lab, "h2", counter), 0, "{counter} on h2");
        assert_eq!(nstat(&mut lab, "h1", counter), 0, "{counter} on h1");
    }
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let (frames, bytes) = rx_of(&exit.stdout, "h1");
    assert!(
        bytes > frames * 1514,
        "h1's frames averaged {} bytes: no GSO super-frame crossed the switch\n{}",
        bytes / frames.max(1),
        exit.stdout
    );
    for port in ["h1", "h2"] {
        let row = exit.counters(port);
        assert!(
            !row.drops.contains("malformed") && !row.drops.contains("tx_error"),
            "{port}: {}",
            row.drops
        );
    }
}
