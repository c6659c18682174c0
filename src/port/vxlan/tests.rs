//! The vxlan port: the pure table and decapsulation, then two ports talking over loopback
//! (127.0.0.1 and 127.0.0.2, no root needed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::*;
use crate::wire::vxlan::VXLAN_PORT;

const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0x08, 0x06]);
    f.resize(len.max(ETHERNET_HEADER_LEN), 0x5a);
    f
}

fn with_vnet(f: &[u8]) -> Vec<u8> {
    let mut b = vec![0; VNET_HDR_LEN];
    b.extend_from_slice(f);
    b
}

fn remotes() -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), VXLAN_PORT),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), VXLAN_PORT),
    ]
}

fn encap(vni: u32, f: &[u8]) -> Vec<u8> {
    let mut d = VxlanHeader { vni }.to_bytes().to_vec();
    d.extend_from_slice(f);
    d
}

#[test]
fn table_learns_moves_ages_and_stays_bounded() {
    let mut t = VtepTable::new(2, 100);
    assert_eq!(t.lookup(A, 0), None);
    assert!(t.needs_update(A, 0, 0));
    assert!(t.learn(A, 0, 0));
    assert!(!t.needs_update(A, 0, 5), "fresh: no write lock needed");
    assert!(t.needs_update(A, 0, 10), "a tenth of the ageing: refresh");
    assert!(t.needs_update(A, 1, 1), "moved to another VTEP");
    assert_eq!(t.lookup(A, 99), Some(0));
    assert_eq!(t.lookup(A, 100), None, "aged out");
    t.learn(A, 1, 100);
    assert_eq!(t.lookup(A, 150), Some(1), "moved");
    assert!(t.learn(B, 0, 150));
    let c = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
    assert!(!t.learn(c, 0, 160), "full of fresh entries: not learned");
    assert_eq!(t.len(), 2);
    assert!(t.learn(c, 0, 210), "A is stale by then and makes room");
    assert_eq!((t.lookup(A, 210), t.lookup(c, 210)), (None, Some(0)));
}

#[test]
fn decap_checks_the_sender_the_header_and_the_vni() {
    let r = remotes();
    let from3 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    let good = encap(42, &frame(B, A, 60));
    assert_eq!(
        decap(&good, from3, 42, &r),
        Ok(Decapped { vtep: 1, src: A })
    );
    // The sender's source port does not matter, a v4-mapped IPv6 sender is its IPv4 address.
    let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
    assert_eq!(decap(&good, mapped, 42, &r).map(|d| d.vtep), Ok(0));
    let stranger = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(decap(&good, stranger, 42, &r), Err(DecapError::UnknownVtep));
    assert_eq!(decap(&good, from3, 43, &r), Err(DecapError::WrongVni(42)));
    let mut no_i = good.clone();
    no_i[0] = 0;
    assert_eq!(decap(&no_i, from3, 42, &r), Err(DecapError::Malformed));
    assert_eq!(
        decap(&good[..VXLAN_HEADER_LEN + 13], from3, 42, &r),
        Err(DecapError::Malformed),
        "runt inner frame"
    );
    assert_eq!(decap(&good[..5], from3, 42, &r), Err(DecapError::Malformed));
}

/// Two ports on loopback: `a` at 127.0.0.1:P, `b` at 127.0.0.2:P, each the other's remote
/// (a VTEP is known by its address, so they need two).
fn pair(vni_b: u32) -> (VxlanPort, VxlanPort) {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = probe.local_addr().unwrap().port();
    drop(probe);
    let at = |last: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), p);
    let a = VxlanPort::open(at(1), &[at(2)], 42, 1500, 1000).unwrap();
    let b = VxlanPort::open(at(2), &[at(1)], vni_b, 1500, 1000).unwrap();
    (a, b)
}

fn recv_within(p: &VxlanPort, buf: &mut [u8]) -> io::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match p.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[test]
fn two_ports_carry_frames_learn_and_count_foreign_packets() {
    let (a, b) = pair(42);
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    // A broadcast from a's side reaches b whole, with a zero virtio-net header; b learns A.
    let bcast = frame(MacAddr::BROADCAST, A, 60);
    assert_eq!(a.send(&with_vnet(&bcast)).unwrap(), VNET_HDR_LEN + 60);
    let n = recv_within(&b, &mut buf).unwrap();
    assert_eq!(&buf[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
    assert_eq!(&buf[VNET_HDR_LEN..n], &bcast[..]);
    assert_eq!(b.learned(), 1);
    // The reply to A goes to the VTEP A was learned from; a full-MTU frame crosses whole.
    let reply = frame(A, B, 1514);
    b.send(&with_vnet(&reply)).unwrap();
    let n = recv_within(&a, &mut buf).unwrap();
    assert_eq!(&buf[VNET_HDR_LEN..n], &reply[..]);
    // Too big for the MTU: refused, never sent cut.
    let big = frame(A, B, 1500 + ETHERNET_HEADER_LEN + VLAN_TAG_LEN + 1);
    assert_eq!(
        b.send(&with_vnet(&big)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    // A stranger (127.0.0.3) and a known VTEP with another VNI are counted drops.
    a.link().unwrap().take();
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    stranger
        .send_to(&encap(42, &bcast), a.local_addr())
        .unwrap();
    let known = UdpSocket::bind("127.0.0.2:0").unwrap();
    known.send_to(&encap(7, &bcast), a.local_addr()).unwrap();
    let mut no_i = encap(42, &bcast);
    no_i[0] = 0;
    known.send_to(&no_i, a.local_addr()).unwrap();
    for _ in 0..3 {
        assert_eq!(
            recv_within(&a, &mut buf).unwrap_err().kind(),
            io::ErrorKind::Interrupted
        );
    }
    let r = a.link().unwrap().take().unwrap();
    assert_eq!((r.unknown_vtep, r.wrong_vni, r.malformed), (1, 1, 1));
    assert_eq!(a.learned(), 1, "only B, from b's good packet");
}

/// A TCP/IPv4 super-frame as a tap hands it over: virtio-net header asking for TCP GSO at
/// `mss`, `payload` bytes behind one 20 + 32-byte header, the checksum field partial.
fn tcp_super_frame(payload: usize, mss: u16) -> Vec<u8> {
    let hdr = crate::wire::VnetHeader {
        flags: crate::wire::VnetHeader::F_NEEDS_CSUM,
        gso_type: crate::wire::gso::GSO_TCPV4,
        hdr_len: 66,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let mut b = vec![0u8; VNET_HDR_LEN];
    hdr.emit(&mut b);
    b.extend_from_slice(&frame(B, A, ETHERNET_HEADER_LEN));
    b[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 32 + payload) as u16;
    b.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    b.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    b.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18, 1, 0,
    ]);
    b.extend_from_slice(&[0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    b.extend((0..payload).map(|i| i as u8));
    b
}

#[test]
fn a_super_frame_leaves_as_mtu_sized_datagrams_with_complete_checksums() {
    let (a, b) = pair(42);
    let mut buf = vec![0u8; VNET_HDR_LEN + 70_000];
    let sf = tcp_super_frame(20 * 1448 + 100, 1448);
    assert_eq!(a.send(&sf).unwrap(), sf.len());
    assert!(a.udp_gso.load(Relaxed), "loopback takes UDP GSO");
    let mut payload = Vec::new();
    for i in 0..21 {
        let n = recv_within(&b, &mut buf).unwrap_or_else(|e| panic!("segment {i}: {e}"));
        let f = &buf[VNET_HDR_LEN..n];
        assert!(f.len() <= 1514, "segment {i} is {} bytes", f.len());
        assert_eq!(&buf[..VNET_HDR_LEN], &[0; VNET_HDR_LEN], "complete, plain");
        let ip = &f[14..];
        assert_eq!(
            crate::wire::ipv4::checksum(&ip[..20], 0),
            0,
            "IPv4 checksum"
        );
        let l4 = &ip[20..];
        let pseudo: u32 = ip[12..20]
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>()
            + 6
            + l4.len() as u32;
        assert_eq!(crate::wire::ipv4::checksum(l4, pseudo), 0, "TCP checksum");
        payload.extend_from_slice(&l4[32..]);
    }
    assert_eq!(payload.len(), 20 * 1448 + 100);
    assert!(
        payload.iter().enumerate().all(|(i, &x)| x == i as u8),
        "in order, intact"
    );
    assert_eq!(
        b.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nothing more"
    );
}

#[test]
fn wrong_vni_on_the_far_side_is_dropped_there() {
    let (a, b) = pair(43);
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    b.link().unwrap().take();
    a.send(&with_vnet(&frame(MacAddr::BROADCAST, A, 60)))
        .unwrap();
    assert_eq!(
        recv_within(&b, &mut buf).unwrap_err().kind(),
        io::ErrorKind::Interrupted
    );
    assert_eq!(b.link().unwrap().take().unwrap().wrong_vni, 1);
    assert_eq!(b.learned(), 0);
}

#[test]
fn flows_leave_from_many_source_ports_each_flow_from_one() {
    let (a, _b) = pair(42);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = [sink.local_addr().unwrap()];
    // A port whose only remote is the sink, to see the source ports.
    let p = VxlanPort::open("127.0.0.2:0".parse().unwrap(), &r, 42, 1500, 1000).unwrap();
    drop(a);
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ports = std::collections::HashMap::new();
    let mut d = [0u8; 2048];
    for flow in 0..32u8 {
        for _ in 0..2 {
            // IPv4/UDP frames that differ only in their source port.
            let mut f = frame(B, A, 60);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[20..22].fill(0); // not a fragment
            f[23] = 17;
            f[34..36].copy_from_slice(&[0x10, flow]);
            p.send(&with_vnet(&f)).unwrap();
            let (n, from) = sink.recv_from(&mut d).unwrap();
            assert_eq!(n, VXLAN_HEADER_LEN + 60);
            assert_eq!(VxlanHeader::parse(&d), Ok(VxlanHeader { vni: 42 }));
            let first = *ports.entry(flow).or_insert(from.port());
            assert_eq!(first, from.port(), "flow {flow} changed source port");
        }
    }
    let distinct: std::collections::HashSet<u16> = ports.values().copied().collect();
    assert!(distinct.len() >= 8, "32 flows over {distinct:?}");
    assert!(!distinct.contains(&p.local_addr().port()));
}

#[test]
fn ipv6_underlay_on_loopback() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    // Only one IPv6 loopback address: the far side is a plain socket on [::1].
    let far = UdpSocket::bind("[::1]:0").unwrap();
    let far_addr = far.local_addr().unwrap();
    let p = VxlanPort::open(
        SocketAddr::new("::1".parse().unwrap(), port),
        &[far_addr],
        42,
        1500,
        1000,
    )
    .unwrap();
    let f = frame(MacAddr::BROADCAST, A, 100);
    p.send(&with_vnet(&f)).unwrap();
    far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut d = [0u8; 256];
    let n = far.recv(&mut d).unwrap();
    assert_eq!(&d[VXLAN_HEADER_LEN..n], &f[..]);
    far.send_to(&encap(42, &frame(A, B, 60)), p.local_addr())
        .unwrap();
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    let n = recv_within(&p, &mut buf).unwrap();
    assert_eq!(&buf[VNET_HDR_LEN..n], &frame(A, B, 60)[..]);
    assert_eq!(p.learned(), 1);
}
