//! The per-port guard, table-driven: one row per case of issue 5, each pushed through
//! `Switch::process` on a guarded port, asserting the verdict and the counter. Then monitor
//! mode, live changes, and that a refused frame is never learned.

mod guard_cases;

use std::net::Ipv4Addr;
use std::time::Duration;

use guard_cases::*;
use switchyard::switch::{
    check, DropReason, GuardMode, PortId, PortPolicy, PortSpec, Switch, SwitchParams, Verdict,
};

const NOW: Duration = Duration::from_secs(1);
const GUARDED: PortId = PortId(0);

fn switch(policy: PortPolicy) -> Switch {
    let spec = |name: &str, policy| PortSpec {
        name: name.into(),
        mtu: 9000,
        isolated: false,
        policy,
        vlan: Default::default(),
        limits: Default::default(),
    };
    Switch::new(
        &SwitchParams::default(),
        vec![spec("guarded", Some(policy)), spec("open", None)],
    )
}

#[test]
fn every_case_gives_its_verdict_and_counter() {
    for (name, frame, expected) in cases() {
        assert_eq!(check(&policy(), &frame), expected, "pure check: {name}");
        let sw = switch(policy());
        let verdict = sw.process(GUARDED, &frame, NOW);
        let c = sw.counters(GUARDED);
        match expected {
            Ok(()) => {
                assert!(!matches!(verdict, Verdict::Drop(_)), "{name}: {verdict:?}");
                assert_eq!(c.total_drops(), 0, "{name}: {}", c.drops_summary());
            }
            Err(reason) => {
                assert_eq!(verdict, Verdict::Drop(reason), "{name}");
                assert_eq!(c.drops(reason), 1, "{name}: {}", c.drops_summary());
                assert_eq!(c.total_drops(), 1, "{name}: {}", c.drops_summary());
            }
        }
        assert_eq!(c.total_monitored(), 0, "{name}");
    }
}

#[test]
fn monitor_mode_counts_and_drops_nothing() {
    for (name, frame, expected) in cases() {
        let mut p = policy();
        p.mode = GuardMode::Monitor;
        let sw = switch(p);
        let verdict = sw.process(GUARDED, &frame, NOW);
        let c = sw.counters(GUARDED);
        if expected == Err(DropReason::VlanNotAllowed) {
            // A tag on an access port is the VLAN membership's refusal, not the guard's:
            // dropped in monitor mode too.
            assert_eq!(verdict, Verdict::Drop(DropReason::VlanNotAllowed), "{name}");
            continue;
        }
        assert!(!matches!(verdict, Verdict::Drop(_)), "{name}: {verdict:?}");
        assert_eq!(c.total_drops(), 0, "{name}");
        match expected {
            Ok(()) => assert_eq!(c.total_monitored(), 0, "{name}"),
            Err(reason) => assert_eq!(c.monitored(reason), 1, "{name}"),
        }
    }
}

#[test]
fn unguarded_port_passes_everything_the_guard_would_drop() {
    let sw = switch(policy());
    for (name, frame, expected) in cases() {
        let v = sw.process(PortId(1), &frame, NOW);
        if expected == Err(DropReason::VlanNotAllowed) {
            // An access port (VLAN 1, the default) takes no tags, guarded or not.
            assert_eq!(v, Verdict::Drop(DropReason::VlanNotAllowed), "{name}");
            continue;
        }
        assert!(!matches!(v, Verdict::Drop(_)), "{name}: {v:?}");
    }
}

#[test]
fn any_link_local_allows_a_stable_privacy_address() {
    let frame = eth(
        HOST_MAC,
        IPV6,
        &ipv6(v6("fe80::1234:5678"), ICMPV6, &icmpv6(128, ll())),
    );
    let mut p = policy();
    assert_eq!(check(&p, &frame), Err(DropReason::SpoofedIp));
    p.allow_any_link_local = true;
    assert_eq!(check(&p, &frame), Ok(()));
}

#[test]
fn a_refused_frame_is_not_learned() {
    let sw = switch(policy());
    let spoof = eth(OTHER_MAC, IPV4, &ipv4(HOST_IP, OTHER_IP, UDP, &udp(1, 2)));
    sw.process(GUARDED, &spoof, NOW);
    assert_eq!(sw.fdb().lookup(OTHER_MAC, NOW), None);
    sw.process(
        GUARDED,
        &eth(HOST_MAC, IPV4, &ipv4(HOST_IP, OTHER_IP, UDP, &udp(1, 2))),
        NOW,
    );
    assert_eq!(sw.fdb().lookup(HOST_MAC, NOW), Some(GUARDED));
}

#[test]
fn live_changes_take_effect_on_the_next_frame() {
    let sw = switch(policy());
    let from = |ip| eth(HOST_MAC, IPV4, &ipv4(ip, OTHER_IP, UDP, &udp(1, 2)));
    let dropped = |f: &[u8]| matches!(sw.process(GUARDED, f, NOW), Verdict::Drop(_));
    let new_ip = Ipv4Addr::new(10, 0, 0, 99);
    assert!(dropped(&from(new_ip)));
    assert!(sw.allow(GUARDED, "10.0.0.96/30".parse().unwrap()));
    assert!(
        !sw.allow(GUARDED, "10.0.0.96/30".parse().unwrap()),
        "already allowed"
    );
    assert!(!dropped(&from(new_ip)));
    assert!(sw.disallow(GUARDED, "10.0.0.96/30".parse().unwrap()));
    assert!(dropped(&from(new_ip)));

    // Leases: bound while they live; unbinding never removes a declared address.
    assert!(sw.bind_lease(GUARDED, new_ip));
    assert!(!dropped(&from(new_ip)));
    assert!(sw.bind_lease(GUARDED, VIP));
    assert!(sw.unbind_lease(GUARDED, VIP));
    assert!(!dropped(&from(VIP)), "declared VIP survives its lease");
    assert!(sw.unbind_lease(GUARDED, new_ip));
    assert!(dropped(&from(new_ip)));

    // MACs.
    let other = eth(OTHER_MAC, IPV4, &ipv4(HOST_IP, OTHER_IP, UDP, &udp(1, 2)));
    assert!(dropped(&other));
    assert!(sw.allow_mac(GUARDED, OTHER_MAC));
    assert!(!dropped(&other));
    assert!(sw.disallow_mac(GUARDED, OTHER_MAC));
    assert!(dropped(&other));

    // Whole policy: off, then back with monitor mode.
    sw.set_policy(GUARDED, None);
    assert!(!dropped(&other));
    assert!(
        !sw.allow(GUARDED, "10.0.0.9/32".parse().unwrap()),
        "unguarded: nothing to edit"
    );
    let mut p = policy();
    p.mode = GuardMode::Monitor;
    sw.set_policy(GUARDED, Some(p));
    assert!(!dropped(&other));
    assert_eq!(sw.counters(GUARDED).monitored(DropReason::SpoofedMac), 1);
    assert_eq!(sw.policy(GUARDED).map(|p| p.mode), Some(GuardMode::Monitor));
    // The other port was never touched.
    assert_eq!(sw.policy(PortId(1)), None);
}

#[test]
fn truncating_a_refused_frame_never_makes_it_pass() {
    // A parser that gives up must not be a way around the guard: every prefix of a refused
    // frame is refused too (usually as Malformed), and no prefix of any frame panics.
    for (name, frame, expected) in cases() {
        for len in 0..frame.len() {
            let verdict = check(&policy(), &frame[..len]);
            if expected.is_err() {
                assert!(verdict.is_err(), "{name} cut to {len} bytes passed");
            }
        }
    }
}

#[test]
fn corrupting_any_byte_never_panics() {
    for (_, frame, _) in cases() {
        for i in 0..frame.len().min(128) {
            for flip in [0xff, 0x80, 0x01] {
                let mut f = frame.clone();
                f[i] ^= flip;
                let _ = check(&policy(), &f);
            }
        }
    }
}
