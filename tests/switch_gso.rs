//! The forwarding decision on frames that carry a virtio-net header: a GSO super-frame is
//! decided exactly as a plain frame with the same headers (learning, guard, lookup, flooding);
//! only the MTU check looks at the size of its segments. No root, no I/O.

use std::net::Ipv4Addr;
use std::time::Duration;

use switchyard::switch::{DropReason, PortId, PortPolicy, PortSpec, Switch, SwitchParams, Verdict};
use switchyard::wire::gso::{GSO_TCPV4, GSO_TCPV6};
use switchyard::wire::{MacAddr, VnetHeader, VNET_HDR_LEN};

const S: Duration = Duration::from_secs(1);
const P0: PortId = PortId(0);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// A TCPv4 super-frame (`payload` bytes behind a 20-byte IP and 20-byte TCP header) with its
/// virtio-net header, as a tap with TSO hands it over.
fn tcp_super_frame(dst: MacAddr, src: MacAddr, src_ip: Ipv4Addr, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (40 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[10, 0, 0, 12]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 1, 0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.resize(f.len() + payload, 0xab);
    VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1460,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
    .emit(&mut f);
    f
}

/// p0 guarded for host `mac(1)` at HOST_IP, p1 MTU 1500, p2 MTU 1400.
fn switch() -> Switch {
    let spec = |name: &str, mtu, policy| PortSpec {
        name: name.to_string(),
        mtu,
        isolated: false,
        policy,
        vlan: Default::default(),
        limits: Default::default(),
    };
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![
            spec(
                "p0",
                1500,
                Some(PortPolicy::for_host(mac(1), Some(HOST_IP))),
            ),
            spec("p1", 1500, None),
            spec("p2", 1400, None),
        ],
    );
    // a lives on p0, b on p1, c on p2.
    let plain_from = |dst: MacAddr, src: MacAddr, ip: Ipv4Addr| {
        let mut f = tcp_super_frame(dst, src, ip, 0);
        f[..VNET_HDR_LEN].fill(0);
        f
    };
    let plain = |dst, src| plain_from(dst, src, Ipv4Addr::new(10, 0, 0, 99));
    assert_eq!(
        sw.process_vnet(P0, &plain_from(mac(2), mac(1), HOST_IP), S),
        Verdict::Flood
    );
    assert_eq!(
        sw.process_vnet(P1, &plain(mac(1), mac(2)), S),
        Verdict::Forward(P0)
    );
    assert_eq!(
        sw.process_vnet(P2, &plain(mac(1), mac(3)), S),
        Verdict::Forward(P0)
    );
    sw
}

#[test]
fn super_frame_is_forwarded_by_its_segment_size() {
    let sw = switch();
    let before = sw.counters(P0);
    let f = tcp_super_frame(mac(2), mac(1), HOST_IP, 60_000);
    assert_eq!(sw.process_vnet(P0, &f, S), Verdict::Forward(P1));
    // Read as a plain frame, the same bytes would be 60 KB over the MTU.
    assert_eq!(
        sw.process(P0, &f[VNET_HDR_LEN..], S),
        Verdict::Drop(DropReason::Mtu)
    );
    let c = sw.counters(P0);
    assert_eq!(c.rx_frames - before.rx_frames, 2);
    assert_eq!(
        c.rx_bytes - before.rx_bytes,
        2 * (f.len() - VNET_HDR_LEN) as u64,
        "rx bytes count the frame, not the virtio-net header"
    );
}

#[test]
fn super_frame_whose_segments_exceed_the_egress_mtu_is_dropped() {
    let sw = switch();
    // Segments of 20 + 20 + 1460 = 1500 bytes do not fit p2's 1400.
    let f = tcp_super_frame(mac(3), mac(1), HOST_IP, 10_000);
    assert_eq!(sw.process_vnet(P0, &f, S), Verdict::Drop(DropReason::Mtu));
    // A short super-frame whose only segment fits is fine.
    let short = tcp_super_frame(mac(3), mac(1), HOST_IP, 1000);
    assert_eq!(sw.process_vnet(P0, &short, S), Verdict::Forward(P2));
}

#[test]
fn the_guard_reads_a_super_frame_like_a_plain_one() {
    let sw = switch();
    let spoofed = tcp_super_frame(mac(2), mac(1), Ipv4Addr::new(10, 0, 0, 66), 60_000);
    assert_eq!(
        sw.process_vnet(P0, &spoofed, S),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    let wrong_mac = tcp_super_frame(mac(2), mac(9), HOST_IP, 60_000);
    assert_eq!(
        sw.process_vnet(P0, &wrong_mac, S),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    // Neither was learned: mac(9) is still unknown, so a frame to it floods.
    let to9 = tcp_super_frame(mac(9), mac(2), Ipv4Addr::new(10, 0, 0, 99), 100);
    assert_eq!(sw.process_vnet(P1, &to9, S), Verdict::Flood);
}

#[test]
fn flooded_super_frame_skips_ports_its_segments_do_not_fit() {
    let sw = switch();
    let f = tcp_super_frame(mac(7), mac(1), HOST_IP, 60_000);
    assert_eq!(sw.process_vnet(P0, &f, S), Verdict::Flood);
    let targets: Vec<PortId> = sw.flood_targets_vnet(P0, &f).collect();
    assert_eq!(targets, vec![P1]);
    assert_eq!(sw.counters(P0).drops(DropReason::Mtu), 1);
}

#[test]
fn super_frame_that_lies_about_its_headers_is_malformed() {
    let sw = switch();
    let mut f = tcp_super_frame(mac(2), mac(1), HOST_IP, 60_000);
    f[1] = GSO_TCPV6; // an IPv4 packet announced as TCPv6
    assert_eq!(
        sw.process_vnet(P0, &f, S),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut g = tcp_super_frame(mac(2), mac(1), HOST_IP, 60_000);
    g.truncate(g.len() - 1); // the IPv4 total length now lies
    assert_eq!(
        sw.process_vnet(P0, &g, S),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(sw.counters(P0).drops(DropReason::Malformed), 2);
    // Shorter than a virtio-net header: a runt, like any frame too short to parse.
    assert_eq!(
        sw.process_vnet(P0, &f[..5], S),
        Verdict::Drop(DropReason::Runt)
    );
}

#[test]
fn the_decision_carries_what_it_read_of_the_frame_to_egress() {
    use switchyard::wire::gso::Offload;
    let sw = switch();
    let f = tcp_super_frame(mac(7), mac(1), HOST_IP, 60_000);
    let d = sw.decide_vnet(P0, &f, S);
    assert_eq!(d.verdict, Verdict::Flood);
    // Its segments' size (1460 + 40), and the layout egress cuts it by.
    assert_eq!(d.frame.mtu_len, 1500);
    assert_eq!(d.frame.offload, Offload::parse(&f).unwrap());
    assert!(matches!(d.frame.offload, Offload::Gso(l) if l.l3 == 14 && l.gso_size == 1460));
    // The flood chosen from the decision is the flood chosen from the bytes, counts included.
    let from_decision: Vec<PortId> = sw.flood_targets_of(P0, &d).collect();
    assert_eq!(from_decision, vec![P1]);
    assert_eq!(sw.counters(P0).drops(DropReason::Mtu), 1);
    let from_bytes: Vec<PortId> = sw.flood_targets_vnet(P0, &f).collect();
    assert_eq!(from_bytes, from_decision);
    assert_eq!(sw.counters(P0).drops(DropReason::Mtu), 2);
    // A plain frame without a virtio-net header: nothing to do at egress, its own payload.
    let mut plain = f[VNET_HDR_LEN..VNET_HDR_LEN + 14 + 100].to_vec();
    plain[16..18].copy_from_slice(&100u16.to_be_bytes());
    let d = sw.decide_frame(P0, &plain, S);
    assert_eq!((d.frame.offload, d.frame.mtu_len), (Offload::None, 100));
}
