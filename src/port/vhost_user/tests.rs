//! A vhost-user port driven by [`GuestNic`], the in-process guest driver, over a real socket.

use std::time::{Duration, Instant};

use super::features::*;
use super::guest::{GuestConfig, GuestNic};
use super::{Mode, VhostUserPort};
use crate::test_dir::TempDir;
use crate::wire::VNET_HDR_LEN;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A frame: 12-byte header (`flags`, `gso_type`) then an Ethernet frame of `len` bytes.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    f[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    f[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    f
}

fn recv_port(port: &VhostUserPort, buf: &mut [u8]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match port.recv(buf) {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no frame from the guest");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn recv_guest(g: &mut GuestNic) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.recv(&mut out).unwrap().is_none() {
        assert!(Instant::now() < deadline, "no frame for the guest");
        let _ = g.wait_rx(Duration::from_millis(10));
    }
    out
}

fn pair(tag: &str, cfg: GuestConfig) -> (TempDir, VhostUserPort, GuestNic) {
    let dir = TempDir::new(tag);
    let path = dir.0.join("vu.sock");
    let port = VhostUserPort::open("vu0", &path, Mode::Server).unwrap();
    let guest = GuestNic::connect(&path, cfg).unwrap();
    wait_for("link up", || port.link().is_up());
    (dir, port, guest)
}

#[test]
fn frames_cross_both_ways_with_their_header() {
    let (_d, port, mut g) = pair("vu-both-ways", GuestConfig::default());
    assert!(port.accepts_offloads());
    let mut buf = vec![0u8; 70_000];
    let mut sent = frame(60, 1);
    sent[0] = 1; // NEEDS_CSUM
    g.send(&sent).unwrap();
    let n = recv_port(&port, &mut buf);
    assert_eq!(&buf[..n], &sent[..]);

    let out = frame(1500, 2);
    port.send(&out).unwrap();
    let got = recv_guest(&mut g);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[VNET_HDR_LEN..], &out[VNET_HDR_LEN..]);
    assert_eq!(&got[..10], &out[..10]);
}

#[test]
fn a_large_frame_spans_mergeable_buffers() {
    let cfg = GuestConfig {
        buf_size: 512,
        ..GuestConfig::default()
    };
    let (_d, port, mut g) = pair("vu-merge", cfg);
    let out = frame(65_000, 3);
    port.send(&out).unwrap();
    let got = recv_guest(&mut g);
    let n = u16::from_le_bytes([got[10], got[11]]) as usize;
    assert_eq!(n, out.len().div_ceil(512));
    assert_eq!(&got[VNET_HDR_LEN..], &out[VNET_HDR_LEN..]);
}

#[test]
fn a_guest_without_offloads_gets_none_and_a_legacy_header_is_widened() {
    let cfg = GuestConfig {
        features: RING_EVENT_IDX,
        buf_size: 2048,
        ..GuestConfig::default()
    };
    let (_d, port, mut g) = pair("vu-legacy", cfg);
    assert!(!port.accepts_offloads());
    assert_eq!(g.features() & (VERSION_1 | MRG_RXBUF | GUEST_CSUM), 0);
    // The guest writes a 10-byte header; the switch sees 12.
    let f = frame(80, 4);
    let mut legacy = f[..10].to_vec();
    legacy.extend_from_slice(&f[VNET_HDR_LEN..]);
    g.send(&legacy).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = recv_port(&port, &mut buf);
    assert_eq!(&buf[..n], &f[..]);
    // And gets 10 back (GuestNic widens it again for the comparison).
    port.send(&f).unwrap();
    let got = recv_guest(&mut g);
    assert_eq!(&got[VNET_HDR_LEN..], &f[VNET_HDR_LEN..]);
}

#[test]
fn a_full_rx_ring_is_a_counted_drop_not_a_wait() {
    let cfg = GuestConfig {
        queue_size: 16,
        ..GuestConfig::default()
    };
    let (_d, port, mut g) = pair("vu-full", cfg);
    let f = frame(100, 5);
    for _ in 0..16 {
        port.send(&f).unwrap();
    }
    let e = port.send(&f).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(port.rx_full(), 1);
    // The guest reads one; there is room again.
    recv_guest(&mut g);
    port.send(&f).unwrap();
}

#[test]
fn event_idx_spares_kicks_while_the_switch_is_busy() {
    let (_d, port, mut g) = pair("vu-kicks", GuestConfig::default());
    let f = frame(60, 6);
    // The port has not read yet: after the first kick, the guest should not kick again.
    for _ in 0..32 {
        g.send(&f).unwrap();
    }
    assert_eq!(g.tx_kicks(), 1, "one kick for 32 frames while nobody read");
    let mut buf = vec![0u8; 4096];
    for _ in 0..32 {
        recv_port(&port, &mut buf);
    }
    // Empty now: the port asked for a kick again.
    assert!(port.recv(&mut buf).is_err());
    g.send(&f).unwrap();
    assert_eq!(g.tx_kicks(), 2);
}

/// (descriptor, address, length, flags, next)
type Desc = (u16, u64, u32, u16, u16);

fn bad_chain_stops_the_port(tag: &str, chain: impl Fn(&GuestNic) -> Vec<Desc>) {
    let (_d, port, mut g) = pair(tag, GuestConfig::default());
    let descs = chain(&g);
    g.send_raw_chain(descs[0].0, &descs).unwrap();
    let mut buf = vec![0u8; 70_000];
    assert!(port.recv(&mut buf).is_err(), "a bad chain yields no frame");
    assert_eq!(port.bad_chains(), 1);
    assert!(!port.link().is_up(), "a bad chain stops the port");
    assert_eq!(
        port.send(&frame(60, 0)).unwrap_err().kind(),
        std::io::ErrorKind::NotConnected
    );
    // The guest resets its rings: the port comes back and works.
    g.reset_rings().unwrap();
    wait_for("link up after the ring reset", || port.link().is_up());
    let f = frame(60, 9);
    g.send(&f).unwrap();
    let n = recv_port(&port, &mut buf);
    assert_eq!(&buf[..n], &f[..]);
}

#[test]
fn a_descriptor_outside_guest_memory_stops_the_port() {
    bad_chain_stops_the_port("vu-bad-addr", |_| vec![(0, 1 << 40, 100, 0, 0)]);
}

#[test]
fn a_descriptor_loop_stops_the_port() {
    bad_chain_stops_the_port("vu-bad-loop", |g| {
        let a = g.tx_buf_addr(0);
        vec![
            (0, a, 64, GuestNic::F_NEXT, 1),
            (1, a, 64, GuestNic::F_NEXT, 0),
        ]
    });
}

#[test]
fn a_next_index_past_the_ring_stops_the_port() {
    bad_chain_stops_the_port("vu-bad-next", |g| {
        vec![(0, g.tx_buf_addr(0), 64, GuestNic::F_NEXT, 999)]
    });
}

#[test]
fn a_chain_shorter_than_a_header_stops_the_port() {
    bad_chain_stops_the_port("vu-bad-short", |g| vec![(0, g.tx_buf_addr(0), 4, 0, 0)]);
}

#[test]
fn a_writable_descriptor_on_tx_stops_the_port() {
    bad_chain_stops_the_port("vu-bad-dir", |g| {
        vec![(0, g.tx_buf_addr(0), 64, GuestNic::F_WRITE, 0)]
    });
}

#[test]
fn a_disconnect_takes_the_port_down_and_a_new_guest_brings_it_up() {
    let (d, port, g) = pair("vu-reconnect", GuestConfig::default());
    drop(g);
    wait_for("link down", || !port.link().is_up());
    let mut g = GuestNic::connect(&d.0.join("vu.sock"), GuestConfig::default()).unwrap();
    wait_for("link up again", || port.link().is_up());
    let f = frame(200, 7);
    g.send(&f).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = recv_port(&port, &mut buf);
    assert_eq!(&buf[..n], &f[..]);
}

#[test]
fn client_mode_connects_to_a_listening_frontend_and_retries() {
    let dir = TempDir::new("vu-client");
    let path = dir.0.join("qemu.sock");
    // The port starts before the frontend listens: it keeps trying.
    let port = VhostUserPort::open("vu0", &path, Mode::Client).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut g = GuestNic::from_stream(stream, GuestConfig::default()).unwrap();
    wait_for("link up", || port.link().is_up());
    let f = frame(300, 8);
    port.send(&f).unwrap();
    assert_eq!(&recv_guest(&mut g)[VNET_HDR_LEN..], &f[VNET_HDR_LEN..]);
}

#[test]
fn dropping_the_port_removes_its_socket() {
    let dir = TempDir::new("vu-drop");
    let path = dir.0.join("vu.sock");
    let port = VhostUserPort::open("vu0", &path, Mode::Server).unwrap();
    let _g = GuestNic::connect(&path, GuestConfig::default()).unwrap();
    assert!(path.exists());
    drop(port);
    assert!(!path.exists());
}
