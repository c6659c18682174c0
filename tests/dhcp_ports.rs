//! DHCP bound to ports (issue 17): a message acts only for the host of the port it came in on.
//! Forged REQUEST, RELEASE, DECLINE, INFORM and hostname/client-id claims from the wrong port
//! are counted drops with their own reason, and the rightful hosts keep their addresses. The
//! sans-IO server with a virtual clock; the namespace tests (`netns_dhcp_ports`) send the same
//! attacks with scapy through the daemon.
//!
//! The lab: port 2 enforces for `vm1` (mac 1, reserved .10), port 3 enforces for `vm2` (mac 2,
//! reserved .11), port 4 and port 6 have no host, port 5 is bound to `web` (reserved .12 by
//! hostname, guard off), port 9 is trusted (a relay).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, MessageType};
use switchyard::service::dhcp::{
    DhcpParams, DhcpServer, DropReason, KeyMode, LeaseChange, PortBinding, Reservation,
};

#[path = "common/dhcp.rs"]
mod dhcp;
use dhcp::*;

fn guarded(host: &str, m: u8, addr: Ipv4Addr) -> PortBinding {
    PortBinding {
        host: Some(host.into()),
        guard_macs: Some(vec![mac(m)]),
        ipv4: vec![addr.into()],
    }
}

fn lab_params() -> DhcpParams {
    let mut p = params();
    p.reservations.push(Reservation {
        name: "vm2".into(),
        mac: Some(mac(2)),
        client_id: None,
        ipv4: ip(11),
        match_hostname: false,
    });
    p.reservations.push(Reservation {
        name: "web".into(),
        mac: None,
        client_id: None,
        ipv4: ip(12),
        match_hostname: true,
    });
    p.trusted_ports = vec![9];
    let mut ports = BTreeMap::new();
    ports.insert(2, guarded("vm1", 1, ip(10)));
    ports.insert(3, guarded("vm2", 2, ip(11)));
    ports.insert(4, PortBinding::default());
    ports.insert(
        5,
        PortBinding {
            host: Some("web".into()),
            ..PortBinding::default()
        },
    );
    ports.insert(6, PortBinding::default());
    ports.insert(9, PortBinding::default());
    p.ports = ports;
    p
}

fn lab() -> DhcpServer {
    DhcpServer::new(lab_params()).unwrap()
}

fn hostname(h: &str) -> DhcpOption {
    DhcpOption::Hostname(h.into())
}

fn init_reboot(m: u8, addr: Ipv4Addr) -> Vec<u8> {
    msg(
        MessageType::Request,
        mac(m),
        Ipv4Addr::UNSPECIFIED,
        vec![DhcpOption::RequestedIpAddress(addr)],
    )
}

fn renew(m: u8, addr: Ipv4Addr) -> Vec<u8> {
    msg(MessageType::Request, mac(m), addr, vec![])
}

fn release(m: u8, addr: Ipv4Addr) -> Vec<u8> {
    msg(
        MessageType::Release,
        mac(m),
        addr,
        vec![DhcpOption::ServerIdentifier(SID)],
    )
}

fn decline(m: u8, addr: Ipv4Addr) -> Vec<u8> {
    msg(
        MessageType::Decline,
        mac(m),
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ServerIdentifier(SID),
            DhcpOption::RequestedIpAddress(addr),
        ],
    )
}

fn inform(m: u8, addr: Ipv4Addr) -> Vec<u8> {
    msg(MessageType::Inform, mac(m), addr, vec![])
}

fn refused(s: &mut DhcpServer, payload: &[u8], port: u16, now: u64) -> DropReason {
    match s.process(payload, port, now) {
        Err(r) => r,
        Ok(out) => panic!("expected a drop, got {out:?}"),
    }
}

#[test]
fn an_enforcing_port_takes_only_its_hosts_chaddr() {
    let mut s = lab();
    // vm2's port forges vm1's MAC: every message type is refused, with its own reason.
    for payload in [
        discover(mac(1), vec![]),
        select(mac(1), ip(10), vec![]),
        init_reboot(1, ip(10)),
        renew(1, ip(10)),
        release(1, ip(10)),
        decline(1, ip(10)),
        inform(1, ip(10)),
        // A MAC nobody has: a guarded port cannot fill the pool with made-up clients either.
        discover(mac(77), vec![]),
    ] {
        assert_eq!(refused(&mut s, &payload, 3, T0), DropReason::Impersonation);
    }
    assert!(s.leases().is_empty());
    // The rightful hosts get their reservations, on their own ports.
    assert_eq!(bind(&mut s, mac(1), 2, T0), ip(10));
    assert_eq!(bind(&mut s, mac(2), 3, T0), ip(11));
}

#[test]
fn a_guarded_hosts_mac_is_refused_from_unguarded_ports_but_not_from_trusted_ones() {
    let mut s = lab();
    assert_eq!(bind(&mut s, mac(1), 2, T0), ip(10));
    for payload in [
        discover(mac(1), vec![]),
        init_reboot(1, ip(10)),
        renew(1, ip(10)),
        release(1, ip(10)),
        decline(1, ip(10)),
    ] {
        assert_eq!(
            refused(&mut s, &payload, 4, T0 + 1),
            DropReason::Impersonation
        );
    }
    let l = s.leases().iter().next().unwrap();
    assert_eq!(
        (l.ip, l.port),
        (ip(10), 2),
        "vm1 keeps its lease on its port"
    );
    // A trusted port (a relay, an uplink) may carry any client: a new one gets a pool address.
    let a = bind(&mut s, mac(40), 9, T0 + 2);
    assert!((ip(100)..=ip(109)).contains(&a));
}

#[test]
fn a_hostname_reservation_is_claimed_only_from_its_hosts_port() {
    let mut s = lab();
    for port in [4, 6] {
        let d = discover(mac(20), vec![hostname("web")]);
        assert_eq!(refused(&mut s, &d, port, T0), DropReason::Impersonation);
        let r = select(mac(20), ip(12), vec![hostname("WEB")]);
        assert_eq!(refused(&mut s, &r, port, T0), DropReason::Impersonation);
    }
    // The same name from web's port gets web's address.
    let offer = decode(
        &s.process(&discover(mac(21), vec![hostname("web")]), 5, T0)
            .unwrap(),
    );
    assert_eq!(offer.yiaddr(), ip(12));
    let out = s
        .process(&select(mac(21), ip(12), vec![hostname("web")]), 5, T0)
        .unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    // A client without the name on another port never gets .12, even if it asks for it.
    let offer = decode(
        &s.process(
            &discover(mac(22), vec![DhcpOption::RequestedIpAddress(ip(12))]),
            6,
            T0,
        )
        .unwrap(),
    );
    assert_ne!(offer.yiaddr(), ip(12));
}

#[test]
fn a_pool_lease_is_renewed_released_and_moved_only_from_its_port() {
    let mut s = lab();
    let victim = bind(&mut s, mac(7), 4, T0);
    // Port 6 sends as mac 7 (no guard there to stop the chaddr): it cannot take, renew,
    // rebind, release or decline the lease that lives on port 4.
    for payload in [
        discover(mac(7), vec![]),
        select(mac(7), victim, vec![]),
        init_reboot(7, victim),
        renew(7, victim),
        release(7, victim),
        decline(7, victim),
    ] {
        assert_eq!(refused(&mut s, &payload, 6, T0 + 5), DropReason::NotOwner);
    }
    let l = s.leases().iter().next().unwrap();
    assert_eq!((l.ip, l.port), (victim, 4));
    // The rightful client renews and releases from its own port.
    let out = s.process(&renew(7, victim), 4, T0 + 10).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    let out = s.process(&release(7, victim), 4, T0 + 11).unwrap();
    assert!(matches!(out.change, Some(LeaseChange::Remove(_))));
}

#[test]
fn a_decline_quarantines_only_what_was_offered_to_or_held_by_the_client() {
    let mut s = lab();
    // An address never offered to mac 8: vm1's reservation, a free pool address.
    for addr in [ip(10), ip(105)] {
        assert_eq!(
            refused(&mut s, &decline(8, addr), 6, T0),
            DropReason::NotOwner
        );
    }
    assert_eq!(bind(&mut s, mac(1), 2, T0 + 1), ip(10), "not quarantined");
    // Offered on another port: not this port's to decline.
    let offer = decode(&s.process(&discover(mac(8), vec![]), 4, T0 + 2).unwrap());
    assert_eq!(
        refused(&mut s, &decline(8, offer.yiaddr()), 6, T0 + 2),
        DropReason::NotOwner
    );
    // Its own offer, on its own port: quarantined, and the next client gets another address.
    let out = s.process(&decline(8, offer.yiaddr()), 4, T0 + 3).unwrap();
    assert_eq!(out.reply, None);
    let next = decode(&s.process(&discover(mac(9), vec![]), 6, T0 + 4).unwrap());
    assert_ne!(next.yiaddr(), offer.yiaddr());
}

#[test]
fn an_inform_names_only_an_address_of_its_own() {
    let mut s = lab();
    let victim = bind(&mut s, mac(7), 4, T0);
    // Another client's lease, another port's reservation: refused from an unguarded port.
    for addr in [victim, ip(10), ip(12)] {
        assert_eq!(
            refused(&mut s, &inform(8, addr), 6, T0 + 1),
            DropReason::NotOwner
        );
    }
    // A static address nobody holds: configuration only, as before.
    let out = s.process(&inform(8, ip(50)), 6, T0 + 1).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    // An enforcing port: its host's own addresses only.
    assert_eq!(
        refused(&mut s, &inform(2, ip(50)), 3, T0 + 1),
        DropReason::NotOwner
    );
    let out = s.process(&inform(2, ip(11)), 3, T0 + 1).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    // The owner informs about its lease.
    let out = s.process(&inform(7, victim), 4, T0 + 1).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
}

#[test]
fn a_client_id_reservation_is_claimed_only_from_its_hosts_port() {
    let mut p = lab_params();
    p.key_mode = KeyMode::ClientId;
    p.reservations.push(Reservation {
        name: "vm3".into(),
        mac: None,
        client_id: Some(b"\x00vm3".to_vec()),
        ipv4: ip(13),
        match_hostname: false,
    });
    p.ports.insert(
        7,
        PortBinding {
            host: Some("vm3".into()),
            ..PortBinding::default()
        },
    );
    let mut s = DhcpServer::new(p).unwrap();
    let id = DhcpOption::ClientIdentifier(b"\x00vm3".to_vec());
    let d = discover(mac(30), vec![id.clone()]);
    assert_eq!(refused(&mut s, &d, 4, T0), DropReason::Impersonation);
    let offer = decode(&s.process(&d, 7, T0).unwrap());
    assert_eq!(offer.yiaddr(), ip(13));
    let out = s
        .process(&select(mac(30), ip(13), vec![id.clone()]), 7, T0)
        .unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    // Keyed by client id: another port with its own MAC and vm3's id cannot renew it.
    let r = msg(MessageType::Request, mac(31), ip(13), vec![id]);
    assert_eq!(refused(&mut s, &r, 4, T0 + 1), DropReason::Impersonation);
}

#[test]
fn a_lease_on_a_port_that_is_gone_moves_with_its_client() {
    let mut s = lab();
    let a = bind(&mut s, mac(7), 4, T0);
    assert_eq!(
        refused(&mut s, &init_reboot(7, a), 6, T0 + 1),
        DropReason::NotOwner
    );
    // Port 4 is unplugged; the VM comes back on port 6 and keeps its address.
    let mut ports = lab_params().ports;
    ports.remove(&4);
    s.set_ports(ports);
    let out = s.process(&init_reboot(7, a), 6, T0 + 2).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    match out.change {
        Some(LeaseChange::Upsert(l)) => assert_eq!((l.ip, l.port), (a, 6)),
        other => panic!("expected an upsert, got {other:?}"),
    }
}
