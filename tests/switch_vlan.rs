//! Scenario tests of 802.1Q VLANs and bandwidth limits in the pure forwarding decision: frames
//! in, verdicts, VLANs and counters out, with an explicit clock. No root, no I/O.

use std::net::Ipv4Addr;
use std::time::Duration;

use switchyard::switch::{
    DropReason, PortId, PortLimits, PortPolicy, PortSpec, PortVlan, RateLimit, Switch,
    SwitchParams, Verdict,
};
use switchyard::wire::gso::{self, GSO_TCPV4};
use switchyard::wire::vlan::{pop_tag, push_tag, tag_vid};
use switchyard::wire::{MacAddr, VnetHeader, VNET_HDR_LEN};

const S: Duration = Duration::from_secs(1);
const P0: PortId = PortId(0);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);
const P4: PortId = PortId(4);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// An IPv4 frame from 10.0.0.`src_ip` with `payload` bytes, tagged with `tag` if given.
fn frame(dst: MacAddr, src: MacAddr, tag: Option<u16>, src_ip: u8, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(vid) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, src_ip, 10, 0, 0, 99]);
    f.resize(f.len() + payload, 0);
    f
}

fn spec(name: &str, vlan: PortVlan) -> PortSpec {
    PortSpec {
        name: name.to_string(),
        mtu: 1500,
        isolated: false,
        policy: None,
        vlan,
        limits: PortLimits::default(),
    }
}

fn trunk(vids: &[u16], native: Option<u16>) -> PortVlan {
    PortVlan::Trunk {
        allowed: vids.iter().copied().collect(),
        native,
    }
}

/// p0, p1: access VLAN 10; p2, p3: access VLAN 20; p4: trunk of 10 and 20.
fn switch() -> Switch {
    Switch::new(
        &SwitchParams::default(),
        vec![
            spec("a10", PortVlan::Access(10)),
            spec("b10", PortVlan::Access(10)),
            spec("a20", PortVlan::Access(20)),
            spec("b20", PortVlan::Access(20)),
            spec("up", trunk(&[10, 20], None)),
        ],
    )
}

fn targets(sw: &Switch, ingress: PortId, f: &[u8]) -> Vec<PortId> {
    sw.flood_targets(ingress, f).collect()
}

#[test]
fn floods_stay_inside_their_vlan_and_a_trunk_carries_both() {
    let sw = switch();
    let bc = MacAddr::BROADCAST;
    let d = sw.decide_frame(P0, &frame(bc, mac(1), None, 1, 64), S);
    assert_eq!((d.verdict, d.vlan, d.tagged), (Verdict::Flood, 10, false));
    assert_eq!(targets(&sw, P0, &frame(bc, mac(1), None, 1, 64)), [P1, P4]);
    assert_eq!(targets(&sw, P3, &frame(bc, mac(4), None, 4, 64)), [P2, P4]);
    // From the trunk, each tag floods into its own VLAN only.
    assert_eq!(
        targets(&sw, P4, &frame(bc, mac(9), Some(10), 9, 64)),
        [P0, P1]
    );
    assert_eq!(
        targets(&sw, P4, &frame(bc, mac(9), Some(20), 9, 64)),
        [P2, P3]
    );
    // How each port takes a frame of each VLAN.
    assert_eq!(sw.egress_tagged(P0, 10), Some(false));
    assert_eq!(sw.egress_tagged(P0, 20), None);
    assert_eq!(sw.egress_tagged(P4, 20), Some(true));
}

#[test]
fn the_fdb_is_keyed_by_vlan_and_mac() {
    let sw = switch();
    let (a, b) = (mac(1), mac(2));
    // The same MAC on two VLANs (a VM's NIC in each, or a router's one MAC): two entries.
    sw.process(P0, &frame(MacAddr::BROADCAST, a, None, 1, 64), S);
    sw.process(P2, &frame(MacAddr::BROADCAST, a, None, 1, 64), S);
    assert_eq!(sw.lookup(10, a, S), Some(P0));
    assert_eq!(sw.lookup(20, a, S), Some(P2));
    assert_eq!(sw.counters(P0).drops(DropReason::VlanNotAllowed), 0);
    // b on VLAN 10 answers a: unicast to p0, never to a's VLAN-20 port.
    assert_eq!(
        sw.process(P1, &frame(a, b, None, 2, 64), S),
        Verdict::Forward(P0)
    );
    // A host of VLAN 20 sending to b (known only in VLAN 10) floods in VLAN 20: no leak.
    assert_eq!(
        sw.process(P3, &frame(b, mac(4), None, 4, 64), S),
        Verdict::Flood
    );
    assert_eq!(targets(&sw, P3, &frame(b, mac(4), None, 4, 64)), [P2, P4]);
    // Through the trunk, tagged 20, to a: the VLAN-20 a.
    assert_eq!(
        sw.process(P4, &frame(a, mac(9), Some(20), 9, 64), S),
        Verdict::Forward(P2)
    );
    let vlans: Vec<(u16, String)> = sw
        .fdb_entries(S)
        .iter()
        .filter(|e| e.mac == a)
        .map(|e| (e.vlan, sw.port_spec(e.port).name.clone()))
        .collect();
    assert_eq!(vlans, [(10, "a10".to_string()), (20, "a20".to_string())]);
}

#[test]
fn frames_a_port_does_not_carry_are_vlan_not_allowed() {
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![
            spec("access", PortVlan::Access(10)),
            spec("trunk", trunk(&[10, 20], None)),
            spec("native", trunk(&[10], Some(30))),
            spec("other30", PortVlan::Access(30)),
        ],
    );
    let bc = MacAddr::BROADCAST;
    let drop = Verdict::Drop(DropReason::VlanNotAllowed);
    assert_eq!(sw.process(P0, &frame(bc, mac(1), Some(10), 1, 64), S), drop);
    assert_eq!(sw.process(P1, &frame(bc, mac(2), Some(30), 2, 64), S), drop);
    assert_eq!(sw.process(P1, &frame(bc, mac(2), None, 2, 64), S), drop);
    assert_eq!(sw.process(P1, &frame(bc, mac(2), Some(0), 2, 64), S), drop);
    let mut qinq = frame(bc, mac(2), Some(10), 2, 64);
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    assert_eq!(sw.process(P1, &qinq, S), drop);
    assert_eq!(sw.counters(P1).drops(DropReason::VlanNotAllowed), 4);
    // The native VLAN: untagged in, untagged out.
    let d = sw.decide_frame(P2, &frame(bc, mac(3), None, 3, 64), S);
    assert_eq!((d.verdict, d.vlan, d.tagged), (Verdict::Flood, 30, false));
    assert_eq!(targets(&sw, P2, &frame(bc, mac(3), None, 3, 64)), [P3]);
    assert_eq!(sw.egress_tagged(P2, 30), Some(false));
    assert_eq!(sw.egress_tagged(P2, 10), Some(true));
}

#[test]
fn the_guard_reads_through_the_tag_on_a_trunk() {
    let guarded = PortSpec {
        policy: Some(PortPolicy::for_host(
            mac(1),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
        )),
        ..spec("vm", trunk(&[10], None))
    };
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![guarded, spec("b", PortVlan::Access(10))],
    );
    let bc = MacAddr::BROADCAST;
    assert_eq!(
        sw.process(P0, &frame(bc, mac(1), Some(10), 1, 64), S),
        Verdict::Flood
    );
    assert_eq!(
        sw.process(P0, &frame(bc, mac(1), Some(10), 66, 64), S),
        Verdict::Drop(DropReason::SpoofedIp),
        "a forged source behind the tag"
    );
    assert_eq!(
        sw.process(P0, &frame(bc, mac(7), Some(10), 1, 64), S),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    // A second tag inside the first hides the L3 header: refused.
    let mut double = frame(bc, mac(1), Some(10), 1, 64);
    double.splice(16..16, [0x81, 0x00, 0x00, 0x14]);
    assert_eq!(
        sw.process(P0, &double, S),
        Verdict::Drop(DropReason::VlanNotAllowed)
    );
}

/// A TCPv4 super-frame with its virtio-net header (as a tap with TSO hands it over).
fn tcp_super_frame(dst: MacAddr, src: MacAddr, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (40 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 1, 0, 0, 0, 0, 0,
    ]);
    f.resize(f.len() + payload, 0xab);
    VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
    .emit(&mut f);
    f
}

#[test]
fn a_tagged_super_frame_keeps_gso_and_is_cut_into_tagged_segments() {
    let sw = switch();
    let plain = tcp_super_frame(mac(2), mac(1), 20_000);
    let mut tagged = vec![0u8; plain.len() + 4];
    let n = push_tag(&plain, 10, &mut tagged).unwrap();
    tagged.truncate(n);
    // From the trunk, tagged: decided by its segments' size (1448 + 40 fits MTU 1500).
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(2), None, 2, 64), S);
    let d = sw.decide_vnet(P4, &tagged, S);
    assert_eq!(
        (d.verdict, d.vlan, d.tagged),
        (Verdict::Forward(P0), 10, true)
    );
    // Cut in software (for a port without offloads): every segment carries the tag and a
    // complete checksum; the tag popped again gives the untagged super-frame back.
    let mut scratch = vec![0u8; 70_000];
    let mut segs = Vec::new();
    let count = gso::for_each_segment(&tagged, 1500, &mut scratch, |seg| {
        segs.push(seg.to_vec());
    })
    .unwrap();
    assert_eq!(count, 20_000usize.div_ceil(1448));
    for seg in &segs {
        let f = &seg[VNET_HDR_LEN..];
        assert_eq!(tag_vid(f), Some(10));
        assert!(f.len() - 18 <= 1500, "{}", f.len());
    }
    let mut back = vec![0u8; tagged.len()];
    let n = pop_tag(&tagged, &mut back).unwrap();
    assert_eq!(&back[..n], &plain[..]);
}

#[test]
fn a_live_vlan_change_moves_the_port_and_forgets_what_it_learned() {
    let sw = switch();
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(1), None, 1, 64), S);
    assert_eq!(sw.lookup(10, mac(1), S), Some(P0));
    sw.set_vlan(P0, PortVlan::Access(20));
    assert_eq!(sw.lookup(10, mac(1), S), None);
    assert_eq!(sw.port_spec(P0).vlan, PortVlan::Access(20));
    assert_eq!(
        targets(&sw, P0, &frame(MacAddr::BROADCAST, mac(1), None, 1, 64)),
        [P2, P3, P4]
    );
}

#[test]
fn an_ingress_limit_polices_to_its_average_and_an_egress_limit_is_per_port() {
    let limited = PortSpec {
        limits: PortLimits {
            ingress: Some(RateLimit {
                average: 100, // KiB/s
                peak: None,
                burst: Some(64),
            }),
            egress: None,
        },
        ..spec("limited", PortVlan::Access(10))
    };
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![limited, spec("free", PortVlan::Access(10))],
    );
    // 1000-byte frames every ms (1 MB/s) for 10 s into a 100 KiB/s limit.
    let f = frame(MacAddr::BROADCAST, mac(1), None, 1, 1000 - 34);
    let g = frame(MacAddr::BROADCAST, mac(2), None, 2, 1000 - 34);
    let (mut passed, mut free) = (0usize, 0usize);
    for ms in 0..10_000u64 {
        let now = Duration::from_millis(ms);
        if sw.process(P0, &f, now) == Verdict::Flood {
            passed += f.len();
        }
        if sw.process(P1, &g, now) == Verdict::Flood {
            free += g.len();
        }
    }
    let want = (100 * 1024 * 10 + 65_664) as f64;
    let err = (passed as f64 - want).abs() / want;
    assert!(err < 0.02, "passed {passed} want {want}");
    assert_eq!(free, 10_000 * 1000, "the unlimited port is not limited");
    let c = sw.counters(P0);
    assert_eq!(
        c.drops(DropReason::RateLimited) as usize,
        10_000 - passed / 1000
    );
    // Set live: off on ingress, on egress (a bucket the worker asks before each write).
    let later = Duration::from_secs(20);
    sw.set_limits(
        P0,
        PortLimits {
            ingress: None,
            egress: Some(RateLimit {
                average: 1,
                peak: None,
                burst: None,
            }),
        },
        later,
    );
    assert_eq!(sw.process(P0, &f, later), Verdict::Flood);
    let mut sent = 0;
    while sw.admit_egress(P0, 1000, later) {
        sent += 1000;
    }
    assert_eq!(
        sent, 65_000,
        "a full bucket of MIN_BUCKET, then nothing at the same instant"
    );
    assert!(sw.admit_egress(P1, 1 << 16, later));
}
