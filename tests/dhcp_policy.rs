//! Scenario tests of the DHCP server's address policy with a virtual clock: reservations (MAC,
//! client id, hostname), keying, returning clients, quarantine, per-port lease and rate limits,
//! pool exhaustion, parameter validation, and a restart from the journal. No sockets, no root.

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, MessageType};
use switchyard::service::dhcp::journal::replay;
use switchyard::service::dhcp::{
    ClientKey, DhcpServer, DropReason, KeyMode, LeaseChange, RateLimit, Reservation,
};

#[path = "common/dhcp.rs"]
mod dhcp;
use dhcp::*;

#[test]
fn declined_reserved_address_is_quarantined_for_600_s() {
    let mut s = server();
    assert_eq!(bind(&mut s, mac(1), 1, T0), ip(10));
    let decline = msg(
        MessageType::Decline,
        mac(1),
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ServerIdentifier(SID),
            DhcpOption::RequestedIpAddress(ip(10)),
        ],
    );
    let out = s.process(&decline, 1, T0 + 1).unwrap();
    assert_eq!(
        (out.reply, out.change),
        (None, Some(LeaseChange::Remove(ClientKey::Mac(mac(1)))))
    );
    // During the quarantine the reserved host falls back to the pool...
    let a = decode(&s.process(&discover(mac(1), vec![]), 1, T0 + 2).unwrap()).yiaddr();
    assert!((ip(100)..=ip(109)).contains(&a));
    // ... and a REQUEST for the declined address is NAKed.
    assert_eq!(
        ty(&decode(
            &s.process(&select(mac(1), ip(10), vec![]), 1, T0 + 2)
                .unwrap()
        )),
        MessageType::Nak
    );
    // After 600 s it gets its reservation back.
    assert_eq!(
        decode(&s.process(&discover(mac(1), vec![]), 1, T0 + 601).unwrap()).yiaddr(),
        ip(10)
    );
}

#[test]
fn declined_pool_address_is_not_offered_again_before_it_expires() {
    let mut s = server();
    let a = bind(&mut s, mac(7), 1, T0);
    let decline = msg(
        MessageType::Decline,
        mac(7),
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ServerIdentifier(SID),
            DhcpOption::RequestedIpAddress(a),
        ],
    );
    assert!(s.process(&decline, 1, T0).unwrap().change.is_some());
    for t in [T0 + 1, T0 + 300, T0 + 599] {
        let b = decode(
            &s.process(
                &discover(mac(7), vec![DhcpOption::RequestedIpAddress(a)]),
                1,
                t,
            )
            .unwrap(),
        )
        .yiaddr();
        assert_ne!(a, b, "at {t}");
    }
    // Nobody else gets it either.
    for n in 20..28 {
        let b = decode(
            &s.process(&discover(mac(n), vec![]), 2 + u16::from(n), T0 + 5)
                .unwrap(),
        )
        .yiaddr();
        assert_ne!(a, b);
    }
    // A DECLINE without our server id is not for us.
    let stray = msg(
        MessageType::Decline,
        mac(7),
        Ipv4Addr::UNSPECIFIED,
        vec![DhcpOption::RequestedIpAddress(a)],
    );
    assert_eq!(s.process(&stray, 1, T0), Err(DropReason::NotForUs));
}

#[test]
fn reservations_by_mac_client_id_and_hostname() {
    let mut p = params();
    p.pool = None;
    p.reservations.push(Reservation {
        name: "byid".into(),
        mac: None,
        client_id: Some(vec![0xff, 1, 2, 3]),
        ipv4: ip(11),
        match_hostname: false,
    });
    p.reservations.push(Reservation {
        name: "byname".into(),
        mac: None,
        client_id: None,
        ipv4: ip(12),
        match_hostname: true,
    });
    let mut s = DhcpServer::new(p).unwrap();
    assert_eq!(bind(&mut s, mac(1), 1, T0), ip(10));
    let cid = DhcpOption::ClientIdentifier(vec![0xff, 1, 2, 3]);
    let offer = decode(&s.process(&discover(mac(2), vec![cid]), 2, T0).unwrap());
    assert_eq!(offer.yiaddr(), ip(11));
    let name = DhcpOption::Hostname("ByName.lab.test".into());
    let offer = decode(
        &s.process(&discover(mac(3), vec![name.clone()]), 3, T0)
            .unwrap(),
    );
    assert_eq!(offer.yiaddr(), ip(12));
    let out = s
        .process(&select(mac(3), ip(12), vec![name]), 3, T0)
        .unwrap();
    assert!(
        matches!(out.change, Some(LeaseChange::Upsert(ref l)) if l.hostname.as_deref() == Some("byname"))
    );
    // Without a pool, a stranger gets nothing, and may not take a reserved address.
    assert_eq!(
        s.process(&discover(mac(4), vec![]), 4, T0),
        Err(DropReason::NoAddress)
    );
    let out = s.process(&select(mac(4), ip(11), vec![]), 4, T0).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Nak);
}

#[test]
fn a_reserved_client_is_moved_off_a_pool_address() {
    let mut s = server();
    let reboot = msg(
        MessageType::Request,
        mac(1),
        Ipv4Addr::UNSPECIFIED,
        vec![DhcpOption::RequestedIpAddress(ip(105))],
    );
    assert_eq!(
        ty(&decode(&s.process(&reboot, 1, T0).unwrap())),
        MessageType::Nak
    );
}

#[test]
fn returning_client_gets_its_previous_address() {
    let mut s = server();
    let a = bind(&mut s, mac(7), 1, T0);
    // Its lease expires; other clients come and go, taking never-used addresses first.
    for n in 20..26 {
        bind(&mut s, mac(n), u16::from(n), T0 + 4000);
    }
    assert_eq!(bind(&mut s, mac(7), 1, T0 + 5000), a);
}

#[test]
fn expired_leases_are_reclaimed_when_the_pool_is_full() {
    let mut p = params();
    p.pool = Some((ip(100), ip(102)));
    let mut s = DhcpServer::new(p).unwrap();
    for n in 20..23 {
        bind(&mut s, mac(n), u16::from(n), T0);
    }
    assert_eq!(
        s.process(&discover(mac(30), vec![]), 30, T0 + 10),
        Err(DropReason::NoAddress)
    );
    let a = bind(&mut s, mac(30), 30, T0 + 3601);
    assert!((ip(100)..=ip(102)).contains(&a));
    assert_eq!(s.leases().len(), 3, "the reclaimed lease was evicted");
}

#[test]
fn mac_keying_survives_a_client_id_change() {
    let mut s = server();
    let with_cid = |c: u8| vec![DhcpOption::ClientIdentifier(vec![0xff, 0, 0, c])];
    let offer = decode(&s.process(&discover(mac(7), with_cid(1)), 1, T0).unwrap());
    s.process(&select(mac(7), offer.yiaddr(), with_cid(1)), 1, T0)
        .unwrap();
    // Reboot with a new client id (the Multipass case): same address.
    let again = decode(
        &s.process(&discover(mac(7), with_cid(2)), 1, T0 + 60)
            .unwrap(),
    );
    assert_eq!(again.yiaddr(), offer.yiaddr());
    assert_eq!(s.leases().len(), 1);

    // In client-id mode, the new id is a new client.
    let mut p = params();
    p.key_mode = KeyMode::ClientId;
    let mut s = DhcpServer::new(p).unwrap();
    let offer = decode(&s.process(&discover(mac(7), with_cid(1)), 1, T0).unwrap());
    let out = s
        .process(&select(mac(7), offer.yiaddr(), with_cid(1)), 1, T0)
        .unwrap();
    assert!(
        matches!(out.change, Some(LeaseChange::Upsert(ref l)) if matches!(l.key, ClientKey::ClientId(_)))
    );
    let again = decode(
        &s.process(&discover(mac(7), with_cid(2)), 1, T0 + 60)
            .unwrap(),
    );
    assert_ne!(again.yiaddr(), offer.yiaddr());
}

#[test]
fn per_port_lease_limit() {
    let mut s = server();
    for n in 20..24 {
        bind(&mut s, mac(n), 5, T0);
    }
    assert_eq!(
        s.process(&discover(mac(24), vec![]), 5, T0),
        Err(DropReason::PortLeaseLimit)
    );
    let out = s.process(&select(mac(24), ip(109), vec![]), 5, T0).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Nak);
    // The clients already there still renew, and other ports are not affected.
    let a = s.leases().get(&ClientKey::Mac(mac(20))).unwrap().ip;
    assert_eq!(
        ty(&decode(
            &s.process(&msg(MessageType::Request, mac(20), a, vec![]), 5, T0 + 1)
                .unwrap()
        )),
        MessageType::Ack
    );
    bind(&mut s, mac(24), 6, T0);
    // Once the leases expire, the port has room again.
    bind(&mut s, mac(25), 5, T0 + 3602);
}

#[test]
fn per_port_rate_limit() {
    let mut p = params();
    p.rate_limit = Some(RateLimit {
        per_sec: 10,
        burst: 20,
    });
    let mut s = DhcpServer::new(p).unwrap();
    let d = discover(mac(7), vec![]);
    for _ in 0..20 {
        assert!(s.process(&d, 1, T0).is_ok());
    }
    assert_eq!(s.process(&d, 1, T0), Err(DropReason::RateLimited));
    assert!(
        s.process(&d, 2, T0).is_ok(),
        "another port has its own bucket"
    );
    for _ in 0..10 {
        assert!(s.process(&d, 1, T0 + 1).is_ok());
    }
    assert_eq!(s.process(&d, 1, T0 + 1), Err(DropReason::RateLimited));
    // Malformed messages spend tokens too.
    assert_eq!(
        s.process(&[0u8; 10], 1, T0 + 1),
        Err(DropReason::RateLimited)
    );
}

#[test]
fn params_are_validated() {
    let mut p = params();
    p.lease_time = Some(Duration::from_secs(119));
    assert!(DhcpServer::new(p).is_err());
    let mut p = params();
    p.pool = Some((ip(100), Ipv4Addr::new(10, 13, 32, 5)));
    assert!(DhcpServer::new(p).is_err());
    let mut p = params();
    p.reservations[0].ipv4 = Ipv4Addr::new(10, 13, 31, 255);
    assert!(DhcpServer::new(p).is_err());
}

#[test]
fn journal_replay_gives_a_restarted_server_the_same_answers() {
    let mut s = server();
    let mut journal = Vec::new();
    let mut addrs = Vec::new();
    for n in 20..24 {
        let offer = decode(
            &s.process(&discover(mac(n), vec![]), u16::from(n), T0)
                .unwrap(),
        );
        let out = s
            .process(&select(mac(n), offer.yiaddr(), vec![]), u16::from(n), T0)
            .unwrap();
        journal.extend(switchyard::service::dhcp::journal::encode_record(
            out.change.as_ref().unwrap(),
        ));
        addrs.push(offer.yiaddr());
    }
    let (table, stats) = replay(&journal);
    assert_eq!(stats.applied, 4);
    let mut restarted = server().with_leases(table);
    for (n, a) in (20..24).zip(addrs) {
        let renew = msg(MessageType::Request, mac(n), a, vec![]);
        let ack = decode(&restarted.process(&renew, u16::from(n), T0 + 100).unwrap());
        assert_eq!((ty(&ack), ack.yiaddr()), (MessageType::Ack, a));
        // And another client cannot take it.
        let out = restarted
            .process(&select(mac(99), a, vec![]), 99, T0 + 100)
            .unwrap();
        assert_eq!(ty(&decode(&out)), MessageType::Nak);
    }
}

#[test]
fn outstanding_offers_are_bounded() {
    use switchyard::service::dhcp::server::MAX_OFFERS;
    let mut p = params();
    p.subnet = "10.13.0.0/16".parse().unwrap();
    p.server_id = Ipv4Addr::new(10, 13, 0, 1);
    p.router = Some(p.server_id);
    p.reservations.clear();
    p.pool = Some((Ipv4Addr::new(10, 13, 1, 0), Ipv4Addr::new(10, 13, 40, 0)));
    p.max_leases_per_port = 65535;
    let mut s = DhcpServer::new(p).unwrap();
    let client = |n: usize| {
        let b = (n as u32).to_be_bytes();
        switchyard::wire::MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]])
    };
    for n in 0..MAX_OFFERS {
        assert!(
            s.process(&discover(client(n), vec![]), 1, T0).is_ok(),
            "offer {n}"
        );
    }
    let late = discover(client(MAX_OFFERS), vec![]);
    assert_eq!(s.process(&late, 1, T0 + 1), Err(DropReason::OffersFull));
    // A client that already holds an offer is still answered.
    assert!(s.process(&discover(client(0), vec![]), 1, T0 + 1).is_ok());
    // Once the offers lapse, they are purged and room is made.
    assert!(s.process(&late, 1, T0 + 62).is_ok());
}

#[test]
fn discovers_from_one_port_cannot_hold_the_pool_in_offers() {
    // A starvation attempt: DISCOVERs with ever new chaddrs, never a REQUEST. The port's
    // outstanding offers count against its lease cap, so the 10-address pool stays available.
    let mut s = server();
    let mut offered = 0;
    for n in 100..200 {
        if s.process(&discover(mac(n), vec![]), 5, T0).is_ok() {
            offered += 1;
        }
    }
    assert_eq!(offered, 4, "max_leases_per_port offers at once");
    // Other ports still get addresses.
    for n in 20..24 {
        bind(&mut s, mac(n), 6 + u16::from(n), T0);
    }
    // A client with a pending offer can repeat its DISCOVER, and the offers expire.
    assert!(s.process(&discover(mac(100), vec![]), 5, T0 + 1).is_ok());
    assert!(s.process(&discover(mac(150), vec![]), 5, T0 + 61).is_ok());
}
