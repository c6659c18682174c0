//! The switch's slots: absent slots are never a target and drop what they send; a port
//! attached to a slot starts afresh; a detached one is forgotten. Pure core: no root, no I/O.

use std::time::Duration;

use switchyard::switch::{DropReason, PortId, PortSpec, Switch, SwitchParams, Verdict};
use switchyard::wire::MacAddr;

const NOW: Duration = Duration::from_secs(1);
const BROADCAST: MacAddr = MacAddr([0xff; 6]);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, 0);
    f
}

fn spec(name: &str, mtu: u32, isolated: bool) -> PortSpec {
    PortSpec {
        name: name.to_string(),
        mtu,
        isolated,
        policy: None,
        vlan: Default::default(),
        limits: Default::default(),
    }
}

/// Slots 0 and 1 taken, 2 and 3 free.
fn four_slots() -> Switch {
    Switch::with_slots(
        &SwitchParams::default(),
        vec![
            Some(spec("a", 1500, false)),
            Some(spec("b", 1500, false)),
            None,
            None,
        ],
    )
}

fn flood(sw: &Switch, ingress: PortId) -> Vec<PortId> {
    let f = frame(BROADCAST, mac(0xee));
    sw.flood_targets(ingress, &f).collect()
}

#[test]
fn absent_slots_are_never_targets_and_drop_what_they_send() {
    let sw = four_slots();
    assert_eq!(flood(&sw, PortId(0)), vec![PortId(1)]);
    assert!(!sw.is_present(PortId(2)) && !sw.is_port_up(PortId(2)));
    // A link report for an empty slot cannot bring it up.
    sw.set_port_up(PortId(2), true);
    assert!(!sw.is_port_up(PortId(2)));
    let v = sw.process(PortId(2), &frame(mac(1), mac(2)), NOW);
    assert_eq!(v, Verdict::Drop(DropReason::PortDown));
    assert_eq!(sw.port_by_name(""), None);
    assert_eq!(
        sw.present_ports().collect::<Vec<_>>(),
        [PortId(0), PortId(1)]
    );
    assert_eq!(sw.free_slot(0, 4), Some(PortId(2)));
    assert_eq!(sw.free_slot(3, 4), Some(PortId(3)));
    assert_eq!(sw.free_slot(0, 2), None);
}

#[test]
fn an_attached_port_forwards_with_its_own_mtu_and_isolation() {
    let sw = four_slots();
    sw.attach(PortId(2), spec("c", 1000, false));
    assert_eq!(sw.port_by_name("c"), Some(PortId(2)));
    assert_eq!(flood(&sw, PortId(0)), vec![PortId(1), PortId(2)]);
    // c learns its MAC; a frame to it is forwarded, one too big for its MTU is not.
    assert_eq!(
        sw.process(PortId(2), &frame(BROADCAST, mac(3)), NOW),
        Verdict::Flood
    );
    assert_eq!(
        sw.process(PortId(0), &frame(mac(3), mac(1)), NOW),
        Verdict::Forward(PortId(2))
    );
    let mut big = frame(mac(3), mac(1));
    big.resize(14 + 1200, 0);
    assert_eq!(
        sw.process(PortId(0), &big, NOW),
        Verdict::Drop(DropReason::Mtu)
    );
    sw.attach(PortId(3), spec("d", 1500, true));
    sw.detach(PortId(0));
    sw.detach(PortId(1));
    sw.attach(PortId(0), spec("e", 1500, true));
    // Isolated d and e do not reach each other; both reach c.
    assert_eq!(flood(&sw, PortId(3)), vec![PortId(2)]);
}

#[test]
fn detach_forgets_the_port_and_a_reused_slot_starts_afresh() {
    let sw = four_slots();
    sw.process(PortId(1), &frame(BROADCAST, mac(2)), NOW);
    assert_eq!(sw.fdb().port_len(PortId(1)), 1);
    assert_eq!(sw.counters(PortId(1)).rx_frames, 1);
    sw.detach(PortId(1));
    assert_eq!(sw.fdb().port_len(PortId(1)), 0);
    assert_eq!(flood(&sw, PortId(0)), Vec::<PortId>::new());
    // A frame for the old port's MAC is flooded (to nobody), not sent into the empty slot.
    assert_eq!(
        sw.process(PortId(0), &frame(mac(2), mac(1)), NOW),
        Verdict::Flood
    );
    assert_eq!(sw.port_by_name("b"), None);
    sw.attach(PortId(1), spec("b2", 1500, false));
    assert_eq!(sw.counters(PortId(1)).rx_frames, 0);
    assert_eq!(sw.port_spec(PortId(1)).name, "b2");
    assert!(sw.is_port_up(PortId(1)));
}
