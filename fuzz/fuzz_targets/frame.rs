//! Whole frames through `Switch::process` on a fixed 4-port switch with one isolated pair and a
//! small FDB: never panics, and a verdict never sends a frame back out of its ingress port.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use switchyard::switch::{PortId, PortSpec, Switch, SwitchParams, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&head, frame)) = data.split_first() else {
        return;
    };
    let ports = (0..4)
        .map(|i| PortSpec {
            name: format!("p{i}"),
            mtu: if i == 3 { 576 } else { 1500 },
            isolated: i < 2,
        })
        .collect();
    let sw = Switch::new(
        &SwitchParams {
            ageing: Duration::from_secs(10),
            max_macs: 8,
            max_macs_per_port: 4,
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
    }
});
