//! Scenario tests of the DHCP server's message handling with a virtual clock: every message
//! type (DISCOVER, REQUEST in each state, RELEASE, DECLINE, INFORM), the option rules, the
//! RFC 2131 §4.1 destinations and the authoritative NAK. No sockets, no root.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use switchyard::service::dhcp::{ClientKey, Destination, DhcpServer, DropReason, LeaseChange};

#[path = "common/dhcp.rs"]
mod dhcp;
use dhcp::*;

#[test]
fn dora_from_the_pool_with_the_default_options() {
    let mut s = server();
    let out = s.process(&discover(mac(7), vec![]), 3, T0).unwrap();
    assert_eq!(out.change, None, "an OFFER persists nothing");
    let offer = decode(&out);
    assert_eq!(offer.opcode(), Opcode::BootReply);
    assert_eq!(offer.xid(), 0xfeed_0001);
    assert!((ip(100)..=ip(109)).contains(&offer.yiaddr()));
    assert_eq!(out.reply.as_ref().unwrap().port, 3);
    // The default set, and nothing that was not asked for.
    for code in [1, 3, 6, 28, 51, 53, 54, 58, 59] {
        assert!(has(&offer, code), "option {code} missing");
    }
    for code in [12, 15, 26, 119, 121] {
        assert!(!has(&offer, code), "option {code} sent unasked");
    }
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into()))
    );
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SID))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![SID]))
    );

    let out = s
        .process(&select(mac(7), offer.yiaddr(), vec![]), 3, T0 + 1)
        .unwrap();
    let ack = decode(&out);
    assert_eq!(ty(&ack), MessageType::Ack);
    match out.change {
        Some(LeaseChange::Upsert(l)) => {
            assert_eq!(
                (l.ip, l.mac, l.port, l.expires),
                (offer.yiaddr(), mac(7), 3, Some(T0 + 3601))
            );
        }
        other => panic!("expected an upsert, got {other:?}"),
    }
    assert_eq!(s.leases().len(), 1);
}

#[test]
fn requested_options_only_when_asked_and_configured() {
    let mut s = server();
    let out = s
        .process(
            &discover(mac(1), vec![prl(&[1, 3, 12, 15, 26, 119, 121])]),
            1,
            T0,
        )
        .unwrap();
    let offer = decode(&out);
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("vm1".into()))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lab.test".into()))
    );
    assert_eq!(
        o.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1400))
    );
    assert!(has(&offer, 119));
    match o.get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(r)) => {
            assert_eq!(
                r.len(),
                2,
                "the configured route and the default route: {r:?}"
            );
            assert_eq!(r[1], ("0.0.0.0/0".parse().unwrap(), SID));
        }
        other => panic!("no option 121: {other:?}"),
    }
    // Configured empty: not sent even when asked.
    let mut p = params();
    p.domain = None;
    p.mtu = None;
    p.search.clear();
    p.routes.clear();
    p.dns.clear();
    p.router = None;
    let mut s = DhcpServer::new(p).unwrap();
    let offer = decode(
        &s.process(
            &discover(mac(1), vec![prl(&[3, 6, 15, 26, 119, 121])]),
            1,
            T0,
        )
        .unwrap(),
    );
    for code in [3, 6, 15, 26, 119, 121] {
        assert!(
            !has(&offer, code),
            "option {code} sent although configured empty"
        );
    }
    // A pool client asking for 12 gets no hostname (only reservations have one).
    let offer = decode(
        &s.process(&discover(mac(9), vec![prl(&[12])]), 1, T0)
            .unwrap(),
    );
    assert!(!has(&offer, 12));
}

#[test]
fn client_id_is_echoed() {
    let mut s = server();
    let cid = DhcpOption::ClientIdentifier(vec![1, 0x52, 0x54, 0, 0, 0, 7]);
    let offer = decode(
        &s.process(&discover(mac(7), vec![cid.clone()]), 1, T0)
            .unwrap(),
    );
    assert_eq!(offer.opts().get(OptionCode::ClientIdentifier), Some(&cid));
}

#[test]
fn destinations_follow_rfc2131_section_4_1() {
    let mut s = server();
    // No broadcast flag: unicast to yiaddr at chaddr.
    let out = s.process(&discover(mac(7), vec![]), 1, T0).unwrap();
    let yiaddr = decode(&out).yiaddr();
    assert_eq!(
        out.reply.unwrap().dest,
        Destination::Unicast {
            ip: yiaddr,
            mac: mac(7)
        }
    );
    // Broadcast flag: broadcast.
    let mut m = Message::decode(&mut Decoder::new(&discover(mac(8), vec![]))).unwrap();
    m.set_flags(Flags::default().set_broadcast());
    let out = s.process(&m.to_vec().unwrap(), 1, T0).unwrap();
    assert_eq!(out.reply.as_ref().unwrap().dest, Destination::Broadcast);
    assert!(decode(&out).flags().broadcast());
    // Renewing: unicast to ciaddr, which the ACK echoes.
    let a = bind(&mut s, mac(9), 1, T0);
    let out = s
        .process(&msg(MessageType::Request, mac(9), a, vec![]), 1, T0 + 1800)
        .unwrap();
    let ack = decode(&out);
    assert_eq!(
        (ty(&ack), ack.ciaddr(), ack.yiaddr()),
        (MessageType::Ack, a, a)
    );
    assert_eq!(
        out.reply.unwrap().dest,
        Destination::Unicast { ip: a, mac: mac(9) }
    );
    // A NAK is always broadcast, even to a renewing client.
    let out = s
        .process(&msg(MessageType::Request, mac(9), ip(200), vec![]), 1, T0)
        .unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Nak);
    assert_eq!(out.reply.unwrap().dest, Destination::Broadcast);
}

#[test]
fn renew_and_rebind_extend_the_lease() {
    let mut s = server();
    let a = bind(&mut s, mac(7), 1, T0);
    let out = s
        .process(&msg(MessageType::Request, mac(7), a, vec![]), 1, T0 + 1800)
        .unwrap();
    match out.change {
        Some(LeaseChange::Upsert(l)) => assert_eq!(l.expires, Some(T0 + 1800 + 3600)),
        other => panic!("{other:?}"),
    }
    // Rebinding after expiry, address still free: authoritative ACK.
    let out = s
        .process(&msg(MessageType::Request, mac(7), a, vec![]), 1, T0 + 9000)
        .unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
}

#[test]
fn selecting_another_server_withdraws_our_offer() {
    let mut p = params();
    p.pool = Some((ip(100), ip(100)));
    let mut s = DhcpServer::new(p).unwrap();
    let offered = decode(&s.process(&discover(mac(7), vec![]), 1, T0).unwrap()).yiaddr();
    // While offered to mac 7, nobody else gets the one pool address.
    assert_eq!(
        s.process(&discover(mac(8), vec![]), 1, T0),
        Err(DropReason::NoAddress)
    );
    let other = msg(
        MessageType::Request,
        mac(7),
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ServerIdentifier(ip(254)),
            DhcpOption::RequestedIpAddress(offered),
        ],
    );
    assert_eq!(s.process(&other, 1, T0), Err(DropReason::NotForUs));
    assert_eq!(
        decode(&s.process(&discover(mac(8), vec![]), 1, T0).unwrap()).yiaddr(),
        offered
    );
    // And an offer lapses by itself after a minute.
    assert_eq!(
        s.process(&discover(mac(9), vec![]), 1, T0),
        Err(DropReason::NoAddress)
    );
    let later = s.process(&discover(mac(9), vec![]), 1, T0 + 61).unwrap();
    assert_eq!(decode(&later).yiaddr(), offered);
}

#[test]
fn init_reboot_is_authoritative() {
    let mut s = server();
    let a = bind(&mut s, mac(7), 1, T0);
    let reboot = |m, addr| {
        msg(
            MessageType::Request,
            m,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::RequestedIpAddress(addr)],
        )
    };
    // Its own lease: ACK.
    assert_eq!(
        ty(&decode(&s.process(&reboot(mac(7), a), 1, T0 + 10).unwrap())),
        MessageType::Ack
    );
    // Another client's live lease: NAK.
    assert_eq!(
        ty(&decode(&s.process(&reboot(mac(8), a), 1, T0 + 10).unwrap())),
        MessageType::Nak
    );
    // Another network: NAK, never silence.
    let foreign = Ipv4Addr::new(192, 168, 1, 50);
    assert_eq!(
        ty(&decode(
            &s.process(&reboot(mac(8), foreign), 1, T0).unwrap()
        )),
        MessageType::Nak
    );
    // Outside the pool, not reserved: NAK.
    assert_eq!(
        ty(&decode(&s.process(&reboot(mac(8), ip(50)), 1, T0).unwrap())),
        MessageType::Nak
    );
    // The lease database was lost: a free pool address is ACKed as is.
    let mut fresh = server();
    let out = fresh.process(&reboot(mac(7), a), 1, T0).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    assert!(matches!(out.change, Some(LeaseChange::Upsert(ref l)) if l.ip == a));
    // The server's own address and the reserved address of another host: NAK.
    assert_eq!(
        ty(&decode(
            &fresh.process(&reboot(mac(8), SID), 1, T0).unwrap()
        )),
        MessageType::Nak
    );
    assert_eq!(
        ty(&decode(
            &fresh.process(&reboot(mac(8), ip(10)), 1, T0).unwrap()
        )),
        MessageType::Nak
    );
    // A REQUEST with neither address is ignored.
    assert_eq!(
        fresh.process(
            &msg(MessageType::Request, mac(8), Ipv4Addr::UNSPECIFIED, vec![]),
            1,
            T0
        ),
        Err(DropReason::Ignored)
    );
}

#[test]
fn release_needs_our_server_id_and_the_right_address() {
    let mut s = server();
    let a = bind(&mut s, mac(7), 1, T0);
    let rel = |sid: Option<Ipv4Addr>, ci| {
        msg(
            MessageType::Release,
            mac(7),
            ci,
            sid.map(DhcpOption::ServerIdentifier).into_iter().collect(),
        )
    };
    assert_eq!(s.process(&rel(None, a), 1, T0), Err(DropReason::NotForUs));
    assert_eq!(
        s.process(&rel(Some(ip(254)), a), 1, T0),
        Err(DropReason::NotForUs)
    );
    assert_eq!(
        s.process(&rel(Some(SID), ip(101)), 1, T0),
        Err(DropReason::Ignored)
    );
    assert_eq!(s.leases().len(), 1);
    let out = s.process(&rel(Some(SID), a), 1, T0).unwrap();
    assert_eq!(out.reply, None);
    assert_eq!(
        out.change,
        Some(LeaseChange::Remove(ClientKey::Mac(mac(7))))
    );
    assert!(s.leases().is_empty());
    // The key hash is stable: the same client gets the same address back.
    assert_eq!(bind(&mut s, mac(7), 1, T0 + 5), a);
}

#[test]
fn inform_gets_configuration_without_lease_time() {
    let mut s = server();
    let out = s
        .process(
            &msg(MessageType::Inform, mac(7), ip(50), vec![prl(&[15])]),
            1,
            T0,
        )
        .unwrap();
    assert_eq!(out.change, None);
    let ack = decode(&out);
    assert_eq!(ty(&ack), MessageType::Ack);
    assert_eq!(
        (ack.yiaddr(), ack.ciaddr()),
        (Ipv4Addr::UNSPECIFIED, ip(50))
    );
    for code in [51, 58, 59] {
        assert!(!has(&ack, code));
    }
    assert!(has(&ack, 1) && has(&ack, 15));
    assert_eq!(
        out.reply.unwrap().dest,
        Destination::Unicast {
            ip: ip(50),
            mac: mac(7)
        }
    );
    assert_eq!(
        s.process(
            &msg(MessageType::Inform, mac(7), Ipv4Addr::UNSPECIFIED, vec![]),
            1,
            T0
        ),
        Err(DropReason::Ignored)
    );
}

#[test]
fn infinite_lease() {
    let mut p = params();
    p.lease_time = None;
    let mut s = DhcpServer::new(p).unwrap();
    let offer = decode(&s.process(&discover(mac(7), vec![]), 1, T0).unwrap());
    assert_eq!(
        offer.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(u32::MAX))
    );
    assert!(!has(&offer, 58) && !has(&offer, 59));
    let out = s
        .process(&select(mac(7), offer.yiaddr(), vec![]), 1, T0)
        .unwrap();
    assert!(matches!(out.change, Some(LeaseChange::Upsert(ref l)) if l.expires.is_none()));
    assert!(s
        .leases()
        .format_dnsmasq(u64::MAX - 1)
        .starts_with("0 52:54:00:00:00:07 "));
}

#[test]
fn messages_not_for_a_server_are_dropped() {
    let mut s = server();
    let mut m = Message::decode(&mut Decoder::new(&discover(mac(7), vec![]))).unwrap();
    m.set_opcode(Opcode::BootReply);
    assert_eq!(
        s.process(&m.to_vec().unwrap(), 1, T0),
        Err(DropReason::NotClientMessage)
    );
    let mut m = Message::decode(&mut Decoder::new(&discover(mac(7), vec![]))).unwrap();
    m.set_giaddr(ip(254));
    assert_eq!(
        s.process(&m.to_vec().unwrap(), 1, T0),
        Err(DropReason::Relayed)
    );
    let offer = msg(MessageType::Offer, mac(7), Ipv4Addr::UNSPECIFIED, vec![]);
    assert_eq!(s.process(&offer, 1, T0), Err(DropReason::UnexpectedType));
    let mut m = Message::decode(&mut Decoder::new(&discover(mac(7), vec![]))).unwrap();
    m.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(
        s.process(&m.to_vec().unwrap(), 1, T0),
        Err(DropReason::NotClientMessage)
    );
}

#[test]
fn reservations_change_live_and_leases_stay() {
    use switchyard::service::dhcp::Reservation;
    let mut s = server();
    // A client in the pool, then reserved elsewhere live: its next DISCOVER gets the reservation.
    let pooled = bind(&mut s, mac(7), 3, T0);
    assert!((ip(100)..=ip(109)).contains(&pooled));
    let mut res = params().reservations;
    res.push(Reservation {
        name: "vm7".into(),
        mac: Some(mac(7)),
        client_id: None,
        ipv4: ip(77),
        match_hostname: false,
    });
    s.set_reservations(res.clone()).unwrap();
    assert_eq!(s.leases().len(), 1, "the pool lease is not lost");
    let offer = decode(&s.process(&discover(mac(7), vec![]), 3, T0 + 1).unwrap());
    assert_eq!(offer.yiaddr(), ip(77));
    // An invalid set is refused and changes nothing.
    let mut bad = res.clone();
    bad[1].ipv4 = Ipv4Addr::new(192, 168, 0, 1);
    assert!(s.set_reservations(bad).is_err());
    let offer = decode(&s.process(&discover(mac(7), vec![]), 3, T0 + 2).unwrap());
    assert_eq!(offer.yiaddr(), ip(77));
    // Removed again: back to the pool, and the reserved address is free for others.
    s.set_reservations(params().reservations).unwrap();
    let offer = decode(&s.process(&discover(mac(7), vec![]), 3, T0 + 3).unwrap());
    assert_ne!(offer.yiaddr(), ip(77));
}
