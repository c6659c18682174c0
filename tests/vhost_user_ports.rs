//! vhost-user ports in the running daemon, driven by the crate's in-process guest driver
//! (`switchyard::port::vhost_user::guest::GuestNic`: its own memfd memory and virtqueues, the
//! frontend side of the protocol). One port is configured, two are hotplugged with
//! `port add --kind vhost-user` (one of them in `--mode client`, the guest listening); frames
//! cross between guests with their virtio-net header, a 30 KB TCP super-frame reaches a guest
//! that negotiated TSO whole and one that negotiated no offloads as MSS-sized segments, and
//! `port del` removes a port and its socket; a reload that adds one to the file opens it. A
//! guarded vhost-user port drops and counts a guest's spoofed frames.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{lab_config, Lab};
use switchyard::port::vhost_user::features::{RING_EVENT_IDX, VERSION_1};
use switchyard::port::vhost_user::guest::{GuestConfig, GuestNic};

const HDR: usize = 12;
const MAC_1: [u8; 6] = [0x52, 0x54, 0, 0x31, 0, 0x51];
const MAC_2: [u8; 6] = [0x52, 0x54, 0, 0x31, 0, 0x52];
const MAC_3: [u8; 6] = [0x52, 0x54, 0, 0x31, 0, 0x53];
const MAC_4: [u8; 6] = [0x52, 0x54, 0, 0x31, 0, 0x54];

/// Header + Ethernet/IPv4 frame: UDP of `len` bytes, or (`gso`) a TCP super-frame of `len`
/// bytes whose header asks for segmentation at MSS 1448 and the TCP checksum.
fn frame(src: [u8; 6], dst: [u8; 6], len: usize, gso: bool) -> Vec<u8> {
    let mut f = vec![0u8; HDR + len];
    let e = &mut f[HDR..];
    e[0..6].copy_from_slice(&dst);
    e[6..12].copy_from_slice(&src);
    e[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    e[14] = 0x45;
    e[16..18].copy_from_slice(&ip_len.to_be_bytes());
    e[22] = 64;
    e[23] = if gso { 6 } else { 17 };
    e[26..30].copy_from_slice(&[10, 13, 31, 81]);
    e[30..34].copy_from_slice(&[10, 13, 31, 82]);
    let sum = checksum(&e[14..34]);
    e[24..26].copy_from_slice(&sum.to_be_bytes());
    if gso {
        e[46] = 5 << 4;
        e[47] = 0x10;
        f[0] = 1; // NEEDS_CSUM
        f[1] = 1; // TCPV4
        f[2..4].copy_from_slice(&54u16.to_le_bytes());
        f[4..6].copy_from_slice(&1448u16.to_le_bytes());
        f[6..8].copy_from_slice(&34u16.to_le_bytes());
        f[8..10].copy_from_slice(&16u16.to_le_bytes());
    } else {
        f[HDR + 38..HDR + 40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    }
    f
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Connects a guest to `path`, retrying while the daemon's socket is not there yet.
fn connect(path: &Path, cfg: GuestConfig) -> GuestNic {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match GuestNic::connect(path, cfg) {
            Ok(g) => return g,
            Err(e) => {
                assert!(Instant::now() < deadline, "connect {path:?}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The frames `g` receives within `limit` whose destination is `mac`.
fn frames_for(g: &mut GuestNic, mac: [u8; 6], want: usize, limit: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match g.recv(&mut buf).unwrap() {
            Some(_) if buf[HDR..HDR + 6] == mac => got.push(buf.clone()),
            Some(_) => {}
            None => {
                let _ = g.wait_rx(Duration::from_millis(20));
            }
        }
    }
    got
}

/// Sends `f` from `from` until `to` sees a frame for `mac` (the port may take a tick to come
/// up in the switch); that frame.
fn deliver(from: &mut GuestNic, to: &mut GuestNic, f: &[u8], mac: [u8; 6]) -> Vec<u8> {
    for _ in 0..50 {
        from.send(f).unwrap();
        if let Some(got) = frames_for(to, mac, 1, Duration::from_millis(200)).pop() {
            return got;
        }
    }
    panic!("no frame for {mac:02x?} arrived");
}

#[test]
fn vhost_user_ports_forward_hotplug_and_unplug() {
    let mut lab = Lab::new();
    let (v1, v2, v3) = (
        lab.dir.join("v1.vhost"),
        lab.dir.join("v2.vhost"),
        lab.dir.join("v3.vhost"),
    );
    let mut cfg = lab_config(&mut lab, &[], "");
    cfg.push_str(&format!(
        "\n[[port]]\nname = \"v1\"\nkind = \"vhost-user\"\npath = \"{}\"\n",
        v1.display()
    ));
    lab.spawn(&cfg);
    let p = v1.clone();
    lab.wait_for("v1's socket", Duration::from_secs(10), || p.exists());
    // g1 sends super-frames: buffers that hold one.
    let big_bufs = GuestConfig {
        buf_size: 32_768,
        ..GuestConfig::default()
    };
    let mut g1 = connect(&v1, big_bufs);

    // Hotplugged, server mode: the switch listens.
    let v2s = v2.display().to_string();
    let added = lab.cli_ok(&["port", "add", "v2", "--kind", "vhost-user", "--path", &v2s]);
    assert!(added.contains("v2"), "{added}");
    let mut g2 = connect(&v2, GuestConfig::default());

    // Hotplugged, client mode: the guest listens, no offloads negotiated, and the switch
    // connects to it.
    let listener = std::os::unix::net::UnixListener::bind(&v3).unwrap();
    let v3s = v3.display().to_string();
    lab.cli_ok(&[
        "port",
        "add",
        "v3",
        "--kind",
        "vhost-user",
        "--path",
        &v3s,
        "--mode",
        "client",
    ]);
    let (stream, _) = listener.accept().unwrap();
    let plain = GuestConfig {
        features: VERSION_1 | RING_EVENT_IDX,
        ..GuestConfig::default()
    };
    let mut g3 = GuestNic::from_stream(stream, plain).unwrap();

    // Broadcasts teach the switch where each guest is; then unicast crosses with its header.
    let hello2 = frame(MAC_2, [0xff; 6], 60, false);
    deliver(&mut g2, &mut g1, &hello2, [0xff; 6]);
    let hello3 = frame(MAC_3, [0xff; 6], 60, false);
    deliver(&mut g3, &mut g1, &hello3, [0xff; 6]);
    let mut u = frame(MAC_1, MAC_2, 1000, false);
    u[0] = 2; // DATA_VALID: carried over as it is
    let got = deliver(&mut g1, &mut g2, &u, MAC_2);
    assert_eq!(
        &got[..10],
        &u[..10],
        "the virtio-net header is carried over"
    );
    assert_eq!(&got[HDR..], &u[HDR..]);

    // A TCP super-frame: whole to a guest with TSO, cut to MSS-sized frames for one without.
    let big = frame(MAC_1, MAC_2, 30_054, true);
    let got = deliver(&mut g1, &mut g2, &big, MAC_2);
    assert_eq!(got.len(), big.len(), "the super-frame arrives whole");
    assert_eq!(got[1], 1, "with its GSO type");
    let big3 = frame(MAC_1, MAC_3, 30_054, true);
    g1.send(&big3).unwrap();
    let segs = frames_for(&mut g3, MAC_3, 21, Duration::from_secs(5));
    assert_eq!(
        segs.len(),
        21,
        "30,000 bytes of payload in 1448-byte segments"
    );
    assert!(
        segs.iter().all(|s| s[1] == 0 && s.len() <= HDR + 1514),
        "plain frames only"
    );

    // Unplugged: the socket goes; the others go on.
    let removed = lab.cli_ok(&["port", "del", "v2"]);
    assert!(removed.contains("v2"), "{removed}");
    assert!(!v2.exists(), "v2's socket removed");
    let u3 = frame(MAC_1, MAC_3, 200, false);
    assert_eq!(&deliver(&mut g1, &mut g3, &u3, MAC_3)[HDR..], &u3[HDR..]);

    // A reload that adds a vhost-user port to the file opens it like any other kind.
    let v4 = lab.dir.join("v4.vhost");
    cfg.push_str(&format!(
        "\n[[port]]\nname = \"v4\"\nkind = \"vhost-user\"\npath = \"{}\"\n",
        v4.display()
    ));
    lab.write_config(&cfg);
    common::sh(&["kill", "-HUP", &lab.daemon_pid().to_string()]);
    let p4 = v4.clone();
    lab.wait_for(
        "v4's socket after the reload",
        Duration::from_secs(10),
        || p4.exists(),
    );
    let mut g4 = connect(&v4, GuestConfig::default());
    let hello4 = frame(MAC_4, [0xff; 6], 60, false);
    deliver(&mut g4, &mut g1, &hello4, [0xff; 6]);
    let u4 = frame(MAC_1, MAC_4, 300, false);
    assert_eq!(&deliver(&mut g1, &mut g4, &u4, MAC_4)[HDR..], &u4[HDR..]);

    drop((g1, g2, g3, g4));
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let c1 = exit.counters("v1");
    assert!(c1.rx_frames >= 4 && c1.tx_frames >= 2, "{}", exit.stdout);
    assert!(!v1.exists(), "v1's socket removed at exit");
}

/// `frame` with another source IPv4 address (its header checksum redone).
fn with_src_ip(mut f: Vec<u8>, ip: [u8; 4]) -> Vec<u8> {
    let e = &mut f[HDR..];
    e[26..30].copy_from_slice(&ip);
    e[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&e[14..34]);
    e[24..26].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The guard applies to a vhost-user port as to every kind: a guest bound to its host's MAC
/// and address that sends with another source MAC or another source IPv4 address has those
/// frames dropped and counted (`spoofed_mac`, `spoofed_ip`), and nothing of them reaches the
/// other guest; its honest frames still cross.
#[test]
fn a_guarded_vhost_user_port_drops_and_counts_spoofed_frames() {
    let mut lab = Lab::new();
    let (v1, v2) = (lab.dir.join("v1.vhost"), lab.dir.join("v2.vhost"));
    let mut cfg = lab_config(&mut lab, &[], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"g1\"\nmac = \"52:54:00:31:00:51\"\nipv4 = \"10.13.31.81\"\n\
         \n[[port]]\nname = \"v1\"\nkind = \"vhost-user\"\npath = \"{}\"\nhost = \"g1\"\n\
         \n[[port]]\nname = \"v2\"\nkind = \"vhost-user\"\npath = \"{}\"\n",
        v1.display(),
        v2.display()
    ));
    lab.spawn(&cfg);
    let (p1, p2) = (v1.clone(), v2.clone());
    lab.wait_for("the sockets", Duration::from_secs(10), || {
        p1.exists() && p2.exists()
    });
    let mut g1 = connect(&v1, GuestConfig::default());
    let mut g2 = connect(&v2, GuestConfig::default());
    // Both ports up, and the switch has learnt g2: an honest frame crosses.
    deliver(
        &mut g2,
        &mut g1,
        &frame(MAC_2, [0xff; 6], 60, false),
        [0xff; 6],
    );
    let honest = frame(MAC_1, MAC_2, 400, false);
    assert_eq!(
        &deliver(&mut g1, &mut g2, &honest, MAC_2)[HDR..],
        &honest[HDR..]
    );

    // Three frames with another guest's source MAC, two with another source address.
    for len in [100, 101, 102] {
        g1.send(&frame(MAC_3, MAC_2, len, false)).unwrap();
    }
    for len in [110, 111] {
        g1.send(&with_src_ip(
            frame(MAC_1, MAC_2, len, false),
            [10, 13, 31, 99],
        ))
        .unwrap();
    }
    // Then an honest marker: everything g2 gets up to it must be honest.
    let marker = frame(MAC_1, MAC_2, 500, false);
    g1.send(&marker).unwrap();
    let got = frames_for(&mut g2, MAC_2, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the marker arrives, and only it");
    assert_eq!(&got[0][HDR..], &marker[HDR..]);
    assert!(
        frames_for(&mut g2, MAC_2, 1, Duration::from_millis(300)).is_empty(),
        "no spoofed frame arrives later"
    );

    drop((g1, g2));
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let c1 = exit.counters("v1");
    let drops: Vec<&str> = c1.drops.split(' ').collect();
    assert!(
        drops.contains(&"spoofed_mac=3") && drops.contains(&"spoofed_ip=2"),
        "{}",
        exit.stdout
    );
    assert!(c1.rx_frames >= 7, "{}", exit.stdout);
}
