//! The DHCPv6 server against messages built as a client sends them.

use super::*;
use dhcproto::v6::{OptionCode, ORO};

const NOW: u64 = 1_000_000;
const PORT: u16 = 1;
const OTHER_PORT: u16 = 2;
const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 9]);
const VICTIM_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x12]);

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn params() -> Dhcp6Params {
    Dhcp6Params {
        server_duid: Dhcp6Params::duid_ll(MacAddr([2, 0, 0, 0, 0, 1])),
        subnet: "fd00:13:31::/64".parse().unwrap(),
        gateway: a("fd00:13:31::1"),
        pool: Some((a("fd00:13:31::100"), a("fd00:13:31::1ff"))),
        lease_time: 3600,
        reservations: vec![Reservation6 {
            name: "victim".into(),
            duid: Some(vec![0, 4, 9, 9, 9, 9]),
            mac: Some(VICTIM_MAC),
            ipv6: a("fd00:13:31::12"),
        }],
        ports: BTreeMap::from([
            (
                PORT,
                PortOwner {
                    host: Some("guest".into()),
                    guard_macs: Some(vec![MAC]),
                },
            ),
            (
                OTHER_PORT,
                PortOwner {
                    host: Some("victim".into()),
                    guard_macs: Some(vec![VICTIM_MAC]),
                },
            ),
        ]),
        trusted_ports: vec![],
        dns: vec![a("fd00:13:31::1")],
        search: vec!["lab.test".into()],
        stateless: false,
    }
}

fn duid() -> Vec<u8> {
    Dhcp6Params::duid_ll(MAC)
}

fn message(
    kind: MessageType,
    duid: &[u8],
    server: Option<&[u8]>,
    extra: Vec<DhcpOption>,
) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [1, 2, 3]);
    let o = m.opts_mut();
    o.insert(DhcpOption::ClientId(duid.to_vec()));
    if let Some(s) = server {
        o.insert(DhcpOption::ServerId(s.to_vec()));
    }
    o.insert(DhcpOption::ElapsedTime(0));
    o.insert(DhcpOption::ORO(ORO {
        opts: vec![OptionCode::DomainNameServers, OptionCode::DomainSearchList],
    }));
    for x in extra {
        o.insert(x);
    }
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).unwrap();
    out
}

fn ia_na(iaid: u32) -> DhcpOption {
    DhcpOption::IANA(IANA {
        id: iaid,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    })
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

/// The address in the reply's IA_NA `iaid`.
fn address(m: &Message, iaid: u32) -> Option<Ipv6Addr> {
    m.opts().iter().find_map(|o| match o {
        DhcpOption::IANA(ia) if ia.id == iaid => ia.opts.iter().find_map(|x| match x {
            DhcpOption::IAAddr(a) => Some(a.addr),
            _ => None,
        }),
        _ => None,
    })
}

#[test]
fn solicit_advertise_request_reply_renew_release() {
    let mut s = Dhcp6Server::new(params(), []);
    let sol = message(MessageType::Solicit, &duid(), None, vec![ia_na(7)]);
    let adv = s.handle(&sol, PORT, MAC, NOW).unwrap();
    assert!(adv.changes.is_empty(), "an ADVERTISE commits nothing");
    let m = decode(&adv.reply);
    assert_eq!(m.msg_type(), MessageType::Advertise);
    assert_eq!(m.xid(), [1, 2, 3]);
    let ip = address(&m, 7).expect("an address");
    assert!(
        params()
            .pool
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&ip)),
        "{ip}"
    );
    assert!(matches!(
        m.opts().get(OptionCode::Preference),
        Some(DhcpOption::Preference(255))
    ));
    assert!(matches!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(DhcpOption::DomainNameServers(d)) if d == &[a("fd00:13:31::1")]
    ));
    let sid = params().server_duid;
    let req = message(MessageType::Request, &duid(), Some(&sid), vec![ia_na(7)]);
    let rep = s.handle(&req, PORT, MAC, NOW).unwrap();
    let m = decode(&rep.reply);
    assert_eq!(
        (m.msg_type(), address(&m, 7)),
        (MessageType::Reply, Some(ip))
    );
    assert_eq!(rep.changes.len(), 1);
    assert_eq!(s.leases(NOW).count(), 1);
    // RENEW later: the same address, a later expiry.
    let ren = message(MessageType::Renew, &duid(), Some(&sid), vec![ia_na(7)]);
    let rep = s.handle(&ren, PORT, MAC, NOW + 1800).unwrap();
    assert_eq!(address(&decode(&rep.reply), 7), Some(ip));
    assert!(matches!(&rep.changes[..], [Change6::Upsert(l)] if l.expires == NOW + 1800 + 3600));
    // A REQUEST for another server is not ours; one without a server id is invalid.
    let other = message(
        MessageType::Request,
        &duid(),
        Some(&[0, 3, 0, 1, 9, 9, 9, 9, 9, 9]),
        vec![ia_na(7)],
    );
    assert_eq!(s.handle(&other, PORT, MAC, NOW), Err(Drop::NotForUs));
    let none = message(MessageType::Request, &duid(), None, vec![ia_na(7)]);
    assert_eq!(s.handle(&none, PORT, MAC, NOW), Err(Drop::Invalid));
    // RELEASE ends the binding.
    let rel = message(MessageType::Release, &duid(), Some(&sid), vec![ia_na(7)]);
    let rep = s.handle(&rel, PORT, MAC, NOW).unwrap();
    assert!(matches!(
        &rep.changes[..],
        [Change6::Remove { iaid: 7, .. }]
    ));
    assert_eq!(s.leases(NOW).count(), 0);
}

#[test]
fn rapid_commit_confirm_information_request_and_expiry() {
    let mut s = Dhcp6Server::new(params(), []);
    let sol = message(
        MessageType::Solicit,
        &duid(),
        None,
        vec![ia_na(1), DhcpOption::RapidCommit],
    );
    let rep = s.handle(&sol, PORT, MAC, NOW).unwrap();
    let m = decode(&rep.reply);
    assert_eq!(m.msg_type(), MessageType::Reply);
    assert!(m.opts().get(OptionCode::RapidCommit).is_some());
    assert_eq!(rep.changes.len(), 1);
    let info = message(MessageType::InformationRequest, &duid(), None, vec![]);
    let m = decode(&s.handle(&info, PORT, MAC, NOW).unwrap().reply);
    assert!(m.opts().get(OptionCode::DomainSearchList).is_some());
    assert!(m.opts().get(OptionCode::IANA).is_none());
    let on = |addr: &str| {
        let mut ia = IANA {
            id: 1,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        };
        ia.opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: a(addr),
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
        message(
            MessageType::Confirm,
            &duid(),
            None,
            vec![DhcpOption::IANA(ia)],
        )
    };
    let status = |bytes: &[u8]| match decode(bytes).opts().get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(c)) => c.status,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status(
            &s.handle(&on("fd00:13:31::5"), PORT, MAC, NOW)
                .unwrap()
                .reply
        ),
        Status::Success
    );
    assert_eq!(
        status(&s.handle(&on("fd00:99::5"), PORT, MAC, NOW).unwrap().reply),
        Status::NotOnLink
    );
    let gone = s.expire(NOW + 3600);
    assert_eq!(gone.len(), 1);
    assert_eq!(s.leases(NOW).count(), 0);
}

#[test]
fn reservations_by_duid_or_mac_and_port_ownership() {
    let mut s = Dhcp6Server::new(params(), []);
    let sid = params().server_duid;
    // The victim from its own port, by DUID: its reservation.
    let victim = vec![0, 4, 9, 9, 9, 9];
    let req = message(MessageType::Request, &victim, Some(&sid), vec![ia_na(1)]);
    let rep = s.handle(&req, OTHER_PORT, VICTIM_MAC, NOW).unwrap();
    assert_eq!(address(&decode(&rep.reply), 1), Some(a("fd00:13:31::12")));
    // By MAC (a DUID the reservation does not name... the reservation has one: use a MAC-only
    // reservation).
    let mut p = params();
    p.reservations[0].duid = None;
    let mut s2 = Dhcp6Server::new(p, []);
    let req2 = message(
        MessageType::Request,
        &[0, 4, 1, 1],
        Some(&sid),
        vec![ia_na(1)],
    );
    let rep = s2.handle(&req2, OTHER_PORT, VICTIM_MAC, NOW).unwrap();
    assert_eq!(address(&decode(&rep.reply), 1), Some(a("fd00:13:31::12")));
    // A guest writing the victim's DUID, from its own port: impersonation.
    let fake = message(MessageType::Solicit, &victim, None, vec![ia_na(1)]);
    assert_eq!(s.handle(&fake, PORT, MAC, NOW), Err(Drop::Impersonation));
    // The victim's MAC as source on the guest's enforcing port: impersonation.
    let own = message(MessageType::Solicit, &duid(), None, vec![ia_na(1)]);
    assert_eq!(
        s.handle(&own, PORT, VICTIM_MAC, NOW),
        Err(Drop::Impersonation)
    );
    // The victim's binding, renewed from the guest's port (with the victim's DUID): refused.
    let ren = message(MessageType::Renew, &victim, Some(&sid), vec![ia_na(1)]);
    assert!(s.handle(&ren, PORT, MAC, NOW).is_err());
    // Release from the wrong port does not end the victim's binding.
    let rel = message(MessageType::Release, &victim, Some(&sid), vec![ia_na(1)]);
    assert_eq!(s.handle(&rel, PORT, MAC, NOW), Err(Drop::NotOwner));
    assert_eq!(s.leases(NOW).count(), 1);
    // The pool never hands out a reserved address or the gateway.
    let mut p = params();
    p.pool = Some((a("fd00:13:31::1"), a("fd00:13:31::2")));
    p.reservations[0].ipv6 = a("fd00:13:31::2");
    let mut s3 = Dhcp6Server::new(p, []);
    let sol = message(MessageType::Solicit, &duid(), None, vec![ia_na(1)]);
    let m = decode(&s3.handle(&sol, PORT, MAC, NOW).unwrap().reply);
    assert_eq!(address(&m, 1), None, "pool exhausted: NoAddrsAvail");
}

#[test]
fn malformed_messages_are_counted_drops() {
    let mut s = Dhcp6Server::new(params(), []);
    for bad in [
        &[][..],
        &[1, 2, 3],
        &[1, 2, 3, 4, 0, 13, 0, 1, 0],
        &[7, 1, 2, 3],
    ] {
        assert!(
            matches!(s.handle(bad, PORT, MAC, NOW), Err(Drop::Malformed(_))),
            "{bad:?}"
        );
    }
    assert_eq!(s.counters().dropped, 4);
}

#[test]
fn the_fuzz_seeds_and_every_mangling_of_them_never_panic() {
    // The seeds of `fuzz/fuzz_targets/dhcp6.rs`: a SOLICIT and a REQUEST as dhclient -6 sends
    // them. Truncated at every length and with every byte replaced by values that upset length
    // fields, through a debug build (where dhcproto's unchecked subtractions would panic).
    let seeds: [&[u8]; 2] = [
        include_bytes!("../../../fuzz/seeds/dhcp6/dhclient-solicit"),
        include_bytes!("../../../fuzz/seeds/dhcp6/dhclient-request"),
    ];
    let mut s = Dhcp6Server::new(params(), []);
    let solicit = s.handle(seeds[0], PORT, MAC, NOW);
    assert!(solicit.is_ok(), "the seed is a valid SOLICIT: {solicit:?}");
    for seed in seeds {
        for end in 0..seed.len() {
            let _ = s.handle(&seed[..end], PORT, MAC, NOW);
        }
        for at in 0..seed.len() {
            for v in [0u8, 1, 2, 3, 4, 11, 0x7f, 0xff] {
                let mut m = seed.to_vec();
                m[at] = v;
                let _ = s.handle(&m, PORT, MAC, NOW);
            }
        }
    }
}

#[test]
fn a_binding_records_the_mac_and_the_client_fqdn_label() {
    use dhcproto::v6::UnknownOption;
    let mut s = Dhcp6Server::new(params(), []);
    // Flags 0x01 (S: the server updates AAAA), then "Web1.lab.test." in wire format.
    let mut fqdn = vec![0x01, 4];
    fqdn.extend_from_slice(b"Web1");
    fqdn.extend_from_slice(b"\x03lab\x04test\x00");
    let opt = DhcpOption::Unknown(UnknownOption::new(OptionCode::Unknown(39), fqdn));
    let msg = message(
        MessageType::Solicit,
        &duid(),
        None,
        vec![ia_na(1), DhcpOption::RapidCommit, opt],
    );
    let o = s.handle(&msg, PORT, MAC, NOW).unwrap();
    let [Change6::Upsert(l)] = o.changes.as_slice() else {
        panic!("{:?}", o.changes)
    };
    assert_eq!((l.mac, l.hostname.as_deref()), (Some(MAC), Some("web1")));
    // A label that is no host label is not recorded.
    let mut bad = vec![0x01, 3];
    bad.extend_from_slice(b"a_b");
    let opt = DhcpOption::Unknown(UnknownOption::new(OptionCode::Unknown(39), bad));
    let msg = message(
        MessageType::Solicit,
        &duid(),
        None,
        vec![ia_na(2), DhcpOption::RapidCommit, opt],
    );
    let o = s.handle(&msg, PORT, MAC, NOW).unwrap();
    let [Change6::Upsert(l)] = o.changes.as_slice() else {
        panic!("{:?}", o.changes)
    };
    assert_eq!(l.hostname, None);
}
