//! Scenario tests of the pure forwarding decision: frames in, verdicts and counters out, with an
//! explicit clock. No root, no I/O.

use std::time::Duration;

use switchyard::switch::{DropReason, PortId, PortSpec, PortVlan, Switch, SwitchParams, Verdict};
use switchyard::wire::MacAddr;

const S: Duration = Duration::from_secs(1);
const P0: PortId = PortId(0);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// An Ethernet frame with an IPv4 ethertype and `payload` bytes of zeros.
fn frame(dst: MacAddr, src: MacAddr, payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(14 + payload, 0);
    f
}

fn port(name: &str, isolated: bool) -> PortSpec {
    PortSpec {
        name: name.to_string(),
        mtu: 1500,
        isolated,
        policy: None,
        vlan: Default::default(),
        limits: Default::default(),
    }
}

fn switch_with(n: usize, params: SwitchParams) -> Switch {
    Switch::new(
        &params,
        (0..n).map(|i| port(&format!("p{i}"), false)).collect(),
    )
}

fn switch(n: usize) -> Switch {
    switch_with(n, SwitchParams::default())
}

fn targets(sw: &Switch, ingress: PortId, f: &[u8]) -> Vec<PortId> {
    sw.flood_targets(ingress, f).collect()
}

#[test]
fn unknown_unicast_floods_then_reply_goes_unicast_both_ways() {
    let sw = switch(3);
    let (a, b) = (mac(1), mac(2));
    assert_eq!(sw.process(P0, &frame(b, a, 64), S), Verdict::Flood);
    assert_eq!(targets(&sw, P0, &frame(b, a, 64)), vec![P1, P2]);
    assert_eq!(sw.process(P1, &frame(a, b, 64), S), Verdict::Forward(P0));
    assert_eq!(sw.process(P0, &frame(b, a, 64), S), Verdict::Forward(P1));
    let c = sw.counters(P0);
    assert_eq!((c.rx_frames, c.total_drops()), (2, 0));
}

#[test]
fn broadcast_and_multicast_flood_to_every_other_up_port() {
    let sw = switch(4);
    sw.set_port_up(P2, false);
    for dst in [MacAddr::BROADCAST, "01:00:5e:00:00:fb".parse().unwrap()] {
        let f = frame(dst, mac(1), 64);
        assert_eq!(sw.process(P0, &f, S), Verdict::Flood);
        assert_eq!(
            targets(&sw, P0, &f),
            vec![P1, P3],
            "never the ingress, never a down port"
        );
    }
}

#[test]
fn roaming_mac_moves_to_the_new_port() {
    let sw = switch(3);
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(1), 64), S);
    assert_eq!(
        sw.process(P2, &frame(mac(1), mac(3), 64), S),
        Verdict::Forward(P0)
    );
    // The VM migrated behind P1.
    sw.process(P1, &frame(MacAddr::BROADCAST, mac(1), 64), 2 * S);
    assert_eq!(
        sw.process(P2, &frame(mac(1), mac(3), 64), 2 * S),
        Verdict::Forward(P1)
    );
}

#[test]
fn ageing_with_an_explicit_clock() {
    let sw = switch_with(
        3,
        SwitchParams {
            ageing: 10 * S,
            ..SwitchParams::default()
        },
    );
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(1), 64), S);
    assert_eq!(
        sw.process(P1, &frame(mac(1), mac(2), 64), 11 * S),
        Verdict::Forward(P0)
    );
    assert_eq!(
        sw.process(P1, &frame(mac(1), mac(2), 64), 12 * S),
        Verdict::Flood,
        "aged out"
    );
    assert_eq!(
        sw.expire(12 * S),
        1,
        "mac(1) reclaimed; mac(2) was refreshed at 12 s"
    );
    assert_eq!(sw.fdb().learned_len(), 1);
}

#[test]
fn ageing_zero_never_learns_like_a_hub() {
    let sw = switch_with(
        3,
        SwitchParams {
            ageing: Duration::ZERO,
            ..SwitchParams::default()
        },
    );
    sw.add_static(mac(9), P2);
    sw.process(P0, &frame(mac(2), mac(1), 64), S);
    assert_eq!(
        sw.process(P1, &frame(mac(1), mac(2), 64), S),
        Verdict::Flood
    );
    assert_eq!(sw.fdb().learned_len(), 0);
    assert_eq!(
        sw.process(P0, &frame(mac(9), mac(1), 64), S),
        Verdict::Forward(P2),
        "static still used"
    );
}

#[test]
fn static_entries_never_move_and_never_age() {
    let sw = switch(3);
    sw.add_static(mac(9), P2);
    // A frame claiming mac(9) from P0 does not move it.
    assert_eq!(
        sw.process(P0, &frame(MacAddr::BROADCAST, mac(9), 64), S),
        Verdict::Flood
    );
    assert_eq!(
        sw.process(P1, &frame(mac(9), mac(2), 64), 100_000 * S),
        Verdict::Forward(P2)
    );
}

#[test]
fn no_hairpin_a_frame_never_goes_back_out_of_its_ingress() {
    let sw = switch(3);
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(1), 64), S);
    sw.process(P0, &frame(MacAddr::BROADCAST, mac(2), 64), S);
    assert_eq!(
        sw.process(P0, &frame(mac(2), mac(1), 64), S),
        Verdict::Drop(DropReason::Hairpin)
    );
    assert_eq!(sw.counters(P0).drops(DropReason::Hairpin), 1);
}

#[test]
fn isolated_ports_reach_others_but_not_each_other() {
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![port("i0", true), port("i1", true), port("open", false)],
    );
    let (a, b, c) = (mac(1), mac(2), mac(3));
    // Flood from an isolated port reaches only the non-isolated one.
    assert_eq!(
        targets(&sw, P0, &frame(MacAddr::BROADCAST, a, 64)),
        vec![P2]
    );
    assert_eq!(
        targets(&sw, P2, &frame(MacAddr::BROADCAST, c, 64)),
        vec![P0, P1]
    );
    sw.process(P0, &frame(MacAddr::BROADCAST, a, 64), S);
    sw.process(P1, &frame(MacAddr::BROADCAST, b, 64), S);
    sw.process(P2, &frame(MacAddr::BROADCAST, c, 64), S);
    assert_eq!(
        sw.process(P0, &frame(b, a, 64), S),
        Verdict::Drop(DropReason::Isolated)
    );
    assert_eq!(sw.process(P0, &frame(c, a, 64), S), Verdict::Forward(P2));
    assert_eq!(sw.process(P2, &frame(b, c, 64), S), Verdict::Forward(P1));
    assert_eq!(sw.counters(P0).drops(DropReason::Isolated), 1);
}

#[test]
fn link_local_group_addresses_are_not_forwarded_or_learned() {
    let sw = switch(3);
    for last in [0x00u8, 0x01, 0x02, 0x0e] {
        let stp = MacAddr([0x01, 0x80, 0xc2, 0, 0, last]);
        assert_eq!(
            sw.process(P0, &frame(stp, mac(1), 64), S),
            Verdict::Drop(DropReason::LinkLocal)
        );
    }
    assert_eq!(sw.fdb().learned_len(), 0);
    assert_eq!(sw.counters(P0).drops(DropReason::LinkLocal), 4);
}

#[test]
fn oversize_frames_are_dropped_not_truncated() {
    let sw = Switch::new(
        &SwitchParams::default(),
        vec![
            port("big", false),
            PortSpec {
                name: "small".into(),
                mtu: 1400,
                isolated: false,
                policy: None,
                vlan: Default::default(),
                limits: Default::default(),
            },
            port("other", false),
        ],
    );
    sw.process(P1, &frame(MacAddr::BROADCAST, mac(2), 64), S);
    assert_eq!(
        sw.process(P0, &frame(mac(2), mac(1), 1401), S),
        Verdict::Drop(DropReason::Mtu)
    );
    assert_eq!(
        sw.process(P0, &frame(mac(2), mac(1), 1400), S),
        Verdict::Forward(P1)
    );
    // Flooded: the small port is skipped and the skip is counted.
    let big = frame(MacAddr::BROADCAST, mac(1), 1500);
    assert_eq!(sw.process(P0, &big, S), Verdict::Flood);
    assert_eq!(targets(&sw, P0, &big), vec![P2]);
    assert_eq!(sw.counters(P0).drops(DropReason::Mtu), 2);
}

#[test]
fn runts_and_bad_source_macs_are_counted_drops_and_not_learned() {
    let sw = switch(2);
    for len in 0..14 {
        assert_eq!(
            sw.process(P0, &vec![0xaa; len], S),
            Verdict::Drop(DropReason::Runt)
        );
    }
    for src in [
        MacAddr::ZERO,
        MacAddr::BROADCAST,
        "01:00:5e:00:00:01".parse().unwrap(),
    ] {
        assert_eq!(
            sw.process(P0, &frame(mac(2), src, 64), S),
            Verdict::Drop(DropReason::BadSrcMac)
        );
    }
    let c = sw.counters(P0);
    assert_eq!(
        (c.drops(DropReason::Runt), c.drops(DropReason::BadSrcMac)),
        (14, 3)
    );
    assert_eq!(c.rx_frames, 17);
    assert_eq!(sw.fdb().learned_len(), 0);
}

#[test]
fn a_down_port_forgets_its_macs_and_drops_its_input() {
    let sw = switch(3);
    sw.process(P1, &frame(MacAddr::BROADCAST, mac(2), 64), S);
    sw.set_port_up(P1, false);
    assert_eq!(
        sw.process(P0, &frame(mac(2), mac(1), 64), S),
        Verdict::Flood
    );
    assert_eq!(
        sw.process(P1, &frame(mac(1), mac(2), 64), S),
        Verdict::Drop(DropReason::PortDown)
    );
}

/// Cheap deterministic pseudo-random MACs (xorshift), unicast and locally administered.
fn random_macs(n: usize) -> impl Iterator<Item = MacAddr> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_be_bytes();
        MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    })
}

#[test]
fn a_port_flooding_100k_random_source_macs_cannot_evict_others() {
    let sw = switch_with(
        3,
        SwitchParams {
            max_macs: 4096,
            max_macs_per_port: 1024,
            ..SwitchParams::default()
        },
    );
    let (a, b) = (mac(1), mac(2));
    sw.process(P1, &frame(MacAddr::BROADCAST, a, 64), S);
    sw.process(P2, &frame(MacAddr::BROADCAST, b, 64), S);
    for (i, src) in random_macs(100_000).enumerate() {
        sw.process(P0, &frame(MacAddr::BROADCAST, src, 64), S);
        if i % 10_000 == 0 {
            // The two other hosts keep talking unicast throughout.
            assert_eq!(sw.process(P1, &frame(b, a, 64), S), Verdict::Forward(P2));
            assert_eq!(sw.process(P2, &frame(a, b, 64), S), Verdict::Forward(P1));
        }
    }
    assert_eq!(
        sw.fdb().port_len(P0),
        1024,
        "the flooder fills only its own share"
    );
    assert!(sw.fdb().learned_len() <= 4096);
    assert_eq!(sw.process(P1, &frame(b, a, 64), S), Verdict::Forward(P2));
    assert_eq!(sw.counters(P0).fdb_full, 100_000 - 1024);
    assert_eq!(sw.counters(P1).fdb_full, 0);
}

#[test]
fn vlan_tagged_payload_is_measured_after_the_tag() {
    let trunk = |name| PortSpec {
        vlan: PortVlan::Trunk {
            allowed: [10].into_iter().collect(),
            native: Some(1),
        },
        ..port(name, false)
    };
    let sw = Switch::new(&SwitchParams::default(), vec![trunk("a"), trunk("b")]);
    let tagged = |mut f: Vec<u8>| {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        f
    };
    sw.process(P1, &tagged(frame(MacAddr::BROADCAST, mac(2), 64)), S);
    let mut f = frame(mac(2), mac(1), 0);
    f.truncate(12);
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
    f.resize(18 + 1500, 0);
    assert_eq!(
        sw.process(P0, &f, S),
        Verdict::Forward(P1),
        "1500 payload + tag fits MTU 1500"
    );
}

#[test]
fn storm_control_caps_broadcast_and_multicast_per_port_and_window() {
    let sw = switch_with(
        3,
        SwitchParams {
            storm_limit: Some(1000), // 100 per 100 ms window
            ..SwitchParams::default()
        },
    );
    let mcast = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
    let t = 5 * S;
    let mut flooded = 0;
    for i in 0..300u32 {
        let dst = if i % 2 == 0 {
            MacAddr::BROADCAST
        } else {
            mcast
        };
        if sw.process(P0, &frame(dst, mac(1), 64), t) == Verdict::Flood {
            flooded += 1;
        }
    }
    assert_eq!(flooded, 100, "one window's allowance");
    let c = sw.counters(P0);
    assert_eq!(c.drops[DropReason::StormControl as usize], 200);
    // Unicast is not metered, and another port has its own meter.
    sw.process(P1, &frame(MacAddr::BROADCAST, mac(2), 64), t);
    assert_eq!(
        sw.process(P0, &frame(mac(2), mac(1), 64), t),
        Verdict::Forward(P1)
    );
    // The next window admits again.
    assert_eq!(
        sw.process(
            P0,
            &frame(MacAddr::BROADCAST, mac(1), 64),
            t + Duration::from_millis(100)
        ),
        Verdict::Flood
    );
    // Without a limit nothing is metered.
    let open = switch(2);
    for _ in 0..5000 {
        assert_eq!(
            open.process(P0, &frame(MacAddr::BROADCAST, mac(1), 64), t),
            Verdict::Flood
        );
    }
}

/// Four ports, loop detection on under `key`.
fn looping_switch(key: switchyard::switch::LoopKey) -> Switch {
    switch_with(
        4,
        SwitchParams {
            loop_key: Some(key),
            ..SwitchParams::default()
        },
    )
}

#[test]
fn a_returning_probe_blocks_the_higher_port_of_the_loop_for_a_while() {
    use switchyard::switch::{probe_frame, LoopKey, LOOP_BLOCK};
    let key = LoopKey([11, 22]);
    let sw = looping_switch(key);
    let t = 10 * S;
    sw.process(P3, &frame(MacAddr::BROADCAST, mac(3), 64), t);
    let mut probe = Vec::new();
    probe_frame(key, mac(9), P1, &mut probe);
    // Sent out of P1, back in on P3 (a guarded port would see it before its guard): P3 blocks.
    assert_eq!(
        sw.process(P3, &probe, t),
        Verdict::Drop(DropReason::LoopDetected)
    );
    assert!(sw.is_blocked(P3, t) && !sw.is_blocked(P1, t));
    assert_eq!(sw.blocked_ports(t), vec![(P3, P1)]);
    assert_eq!(sw.loops_seen(), 1);
    // A blocked port receives nothing and is never a flood target; what it learned is gone.
    assert_eq!(
        sw.process(P3, &frame(MacAddr::BROADCAST, mac(3), 64), t),
        Verdict::Drop(DropReason::LoopBlocked)
    );
    let f = frame(MacAddr::BROADCAST, mac(1), 64);
    assert_eq!(sw.process(P0, &f, t), Verdict::Flood);
    assert_eq!(targets(&sw, P0, &f), vec![P1, P2]);
    assert_eq!(
        sw.process(P0, &frame(mac(3), mac(1), 64), t),
        Verdict::Flood,
        "mac(3) was forgotten"
    );
    // The probe from P3 coming back on P1 keeps the same victim (the higher port).
    probe_frame(key, mac(9), P3, &mut probe);
    assert_eq!(
        sw.process(P1, &probe, t),
        Verdict::Drop(DropReason::LoopDetected)
    );
    assert!(!sw.is_blocked(P1, t) && sw.is_blocked(P3, t));
    assert_eq!(sw.loops_seen(), 1, "already blocked: not a new loop");
    // The block lapses.
    let later = t + LOOP_BLOCK;
    assert!(!sw.is_blocked(P3, later));
    assert_eq!(
        sw.process(P3, &frame(MacAddr::BROADCAST, mac(3), 64), later),
        Verdict::Flood
    );
    // Another switch's probe (another key) is just a frame.
    probe_frame(LoopKey([1, 2]), mac(9), P1, &mut probe);
    assert_eq!(sw.process(P2, &probe, later), Verdict::Flood);
}

#[test]
fn a_probe_under_our_key_naming_a_port_we_do_not_have_blocks_nothing() {
    use switchyard::switch::{probe_frame, LoopKey};
    let key = LoopKey([11, 22]);
    let sw = looping_switch(key);
    let t = 10 * S;
    let mut probe = Vec::new();
    // Found by the `frame` fuzz target: this indexed past the port table and panicked.
    for from in [PortId(4), PortId(99), PortId(u16::MAX)] {
        probe_frame(key, mac(9), from, &mut probe);
        assert_eq!(
            sw.process(P2, &probe, t),
            Verdict::Drop(DropReason::LoopDetected)
        );
    }
    assert!((0..4).all(|i| !sw.is_blocked(PortId(i), t)));
    assert_eq!(sw.loops_seen(), 0);
}
