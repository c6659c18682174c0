//! `stream` and `dgram` ports with a small in-test client speaking QEMU's framing: `-netdev
//! stream` (4-byte big-endian length, then the frame) and `-netdev dgram` (one frame per
//! datagram). Host h1 sits on a tap in its namespace; the client ARPs for it and must get h1's
//! kernel's answer back through the switch. The unix sockets live in the lab's temp dir.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{arp_request, lab_config, Lab};

const H1_IP: [u8; 4] = [10, 13, 31, 11];
const H1_MAC: [u8; 6] = [0x52, 0x54, 0, 0x31, 0, 0x0b];
const GATEWAY: [u8; 4] = [10, 13, 31, 1];

/// Whether `f` is an ARP reply saying that `ip` is at some MAC, and which.
fn arp_reply_from(f: &[u8], ip: [u8; 4]) -> Option<[u8; 6]> {
    let is_reply = f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2];
    (is_reply && f[28..32] == ip).then(|| f[22..28].try_into().unwrap())
}

/// QEMU's stream framing, client side.
struct StreamClient {
    s: UnixStream,
    mac: [u8; 6],
    ip: [u8; 4],
}

impl StreamClient {
    fn connect(path: &Path, last: u8) -> StreamClient {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        StreamClient {
            s,
            mac: [0x52, 0x54, 0, 0x31, 0, last],
            ip: [10, 13, 31, last],
        }
    }

    /// Writes one frame with its length prefix; `bytewise`: one byte per write, with pauses,
    /// so the switch sees every possible split.
    fn send(&mut self, frame: &[u8], bytewise: bool) {
        let mut wire = (frame.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(frame);
        if bytewise {
            for b in wire {
                self.s.write_all(&[b]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            self.s.write_all(&wire).unwrap();
        }
    }

    /// Reads frames until `want` accepts one, or `None` when `limit` passes.
    fn expect<T>(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                assert!(
                    (1..=69_632).contains(&len),
                    "bad length {len} from the switch"
                );
                if buf.len() < 4 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
                if let Some(t) = want(&frame) {
                    return Some(t);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("the switch closed the stream"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// ARPs for `target` until an answer comes (the port may take a tick to come up).
    #[track_caller]
    fn resolve(&mut self, target: [u8; 4], bytewise: bool) -> [u8; 6] {
        let req = arp_request(self.mac, self.ip, target);
        for _ in 0..10 {
            self.send(&req, bytewise);
            if let Some(mac) = self.expect(Duration::from_secs(1), |f| arp_reply_from(f, target)) {
                return mac;
            }
        }
        panic!("no ARP answer for {target:?}");
    }

    /// Waits (bounded) for the switch to close its end.
    fn wait_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut chunk = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "the switch kept the stream open");
            match self.s.read(&mut chunk) {
                Ok(0) => return,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                _ => {}
            }
        }
    }
}

/// h1 on a tap; `s1` and `s2` stream ports, `d1` a dgram port, sockets in the lab dir.
fn start(lab: &mut Lab) -> (PathBuf, PathBuf, PathBuf) {
    let (s1, s2, d1) = (
        lab.dir.join("s1.sock"),
        lab.dir.join("s2.sock"),
        lab.dir.join("d1.sock"),
    );
    let mut cfg = lab_config(lab, &[("h1", 11, false)], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"52:54:00:31:00:21\"\nipv4 = \"10.13.31.33\"\n\
         \n[[port]]\nname = \"s1\"\nkind = \"stream\"\npath = \"{}\"\nhost = \"vm\"\n\
         \n[[port]]\nname = \"s2\"\nkind = \"stream\"\npath = \"{}\"\n\
         \n[[port]]\nname = \"d1\"\nkind = \"dgram\"\npath = \"{}\"\n",
        s1.display(),
        s2.display(),
        d1.display()
    ));
    let i1 = lab.ifname("h1");
    lab.start(&cfg, &[("h1", &i1)]);
    lab.exec("h1", &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    for p in [&s1, &s2, &d1] {
        let p = p.clone();
        lab.wait_for(&format!("{p:?}"), Duration::from_secs(10), || p.exists());
    }
    (s1, s2, d1)
}

#[test]
fn stream_peer_bytewise_reconnect_and_bad_length() {
    let mut lab = Lab::new();
    let (s1, s2, _) = start(&mut lab);

    // Byte-by-byte writes: the switch reassembles the frame, h1 answers through it.
    let mut vm = StreamClient::connect(&s1, 0x21);
    assert_eq!(vm.resolve(H1_IP, true), H1_MAC);
    assert_eq!(
        vm.resolve(GATEWAY, false).len(),
        6,
        "the appliance answers too"
    );

    // A second peer on the same port is refused (closed); the first one keeps working.
    let mut intruder = StreamClient::connect(&s1, 0x22);
    intruder.wait_closed();
    assert_eq!(vm.resolve(H1_IP, false), H1_MAC);

    // Disconnect and come back: the port is free again.
    drop(vm);
    std::thread::sleep(Duration::from_millis(300));
    let mut vm = StreamClient::connect(&s1, 0x21);
    assert_eq!(vm.resolve(H1_IP, true), H1_MAC);

    // A peer on s2 sends a length no frame can have: it is cut off and counted; s1 and h1 are
    // unaffected.
    let mut bad = StreamClient::connect(&s2, 0x23);
    assert_eq!(bad.resolve(H1_IP, false), H1_MAC);
    bad.s.write_all(&0xffff_fff0u32.to_be_bytes()).unwrap();
    bad.wait_closed();
    assert_eq!(vm.resolve(H1_IP, false), H1_MAC);
    assert!(lab.ping("h1", "10.13.31.1", 2));

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let (p1, p2) = (exit.counters("s1"), exit.counters("s2"));
    assert_eq!(p1.downs, 1, "one disconnect on s1\n{}", exit.stdout);
    assert!(p1.rx_frames >= 4 && p1.tx_frames >= 4, "{p1:?}");
    // A frame flooded in the instant between the close and the switch noticing it counts as
    // `port_down`; nothing else may be dropped.
    assert_eq!(p2.downs, 1, "{}", exit.stdout);
    let drops: Vec<&str> = p2.drops.split(' ').collect();
    assert!(drops.contains(&"bad_length=1"), "{}", exit.stdout);
    assert!(
        drops
            .iter()
            .all(|d| d.starts_with("bad_length=") || d.starts_with("port_down=")),
        "{}",
        exit.stdout
    );
    assert!(!s1.exists() && !s2.exists(), "socket files removed at exit");
}

#[test]
fn dgram_peer_gets_answers_and_can_come_back() {
    let mut lab = Lab::new();
    let (_, _, d1) = start(&mut lab);
    let mine = lab.dir.join("qemu-d1.sock");
    let resolve = |client: &UnixDatagram| -> [u8; 6] {
        let req = arp_request([0x52, 0x54, 0, 0x31, 0, 0x24], [10, 13, 31, 24], H1_IP);
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            client.send_to(&req, &d1).unwrap();
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                match client.recv(&mut buf) {
                    Ok(n) => {
                        if let Some(mac) = arp_reply_from(&buf[..n], H1_IP) {
                            return mac;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        panic!("no ARP answer over the dgram port");
    };
    let client = UnixDatagram::bind(&mine).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(resolve(&client), H1_MAC);
    // QEMU restarts: its socket goes away (the switch forgets it on the next send), then a new
    // one is bound at the same path and is answered again.
    drop(client);
    std::fs::remove_file(&mine).unwrap();
    assert!(lab.ping("h1", "10.13.31.24", 1).eq(&false), "nobody there");
    let client = UnixDatagram::bind(&mine).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(resolve(&client), H1_MAC);
    let exit = lab.stop_with("TERM");
    let d = exit.counters("d1");
    assert!(d.rx_frames >= 2 && d.tx_frames >= 2, "{d:?}");
    assert_eq!(
        d.downs, 1,
        "the vanished peer took the port down once\n{}",
        exit.stdout
    );
}
