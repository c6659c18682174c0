//! Whole frames through `Switch::process` on a fixed 4-port switch with one isolated pair, a
//! small FDB and a guard on port 2: never panics, a verdict never sends a frame back out of its
//! ingress port, and a frame the guard refuses is dropped on the guarded port.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use switchyard::switch::{
    check, LoopKey, PortId, PortPolicy, PortSpec, Switch, SwitchParams, Verdict,
};
use switchyard::wire::MacAddr;

fn policy() -> PortPolicy {
    let mut p = PortPolicy::for_host(
        MacAddr([0x52, 0x54, 0, 0, 0, 2]),
        Some([10, 0, 0, 2].into()),
    );
    p.ipv4.insert("10.0.0.64/28".parse().unwrap());
    p.ipv6.insert("fd00::/64".parse().unwrap());
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, frame)) = data.split_first() else {
        return;
    };
    let ports = (0..4)
        .map(|i| PortSpec {
            name: format!("p{i}"),
            mtu: if i == 3 { 576 } else { 1500 },
            isolated: i < 2,
            policy: (i == 2).then(policy),
            vlan: Default::default(),
            limits: Default::default(),
        })
        .collect();
    let sw = Switch::new(
        &SwitchParams {
            ageing: Duration::from_secs(10),
            max_macs: 8,
            max_macs_per_port: 4,
            storm_limit: Some(100),
            loop_key: Some(LoopKey([1, 2])),
        },
        ports,
    );
    let ingress = PortId(u16::from(head % 4));
    // Feed the frame twice from two ports so learning and lookup both run.
    for (i, now) in [(PortId(u16::from((head / 4) % 4)), 1u64), (ingress, 2)] {
        match sw.process(i, frame, Duration::from_secs(now)) {
            Verdict::Forward(e) => assert_ne!(e, i),
            Verdict::Flood => assert!(sw.flood_targets(i, frame).all(|e| e != i)),
            Verdict::Drop(_) => {}
        }
        // The guard is the last word on port 2: what it refuses never passes.
        if i == PortId(2) && frame.len() >= 14 {
            if let Err(reason) = check(&policy(), frame) {
                let v = sw.process(i, frame, Duration::from_secs(now));
                assert!(matches!(v, Verdict::Drop(_)), "{reason:?} passed as {v:?}");
            }
        }
    }
});
