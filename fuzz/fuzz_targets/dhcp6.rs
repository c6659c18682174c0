//! Any UDP payload through `Dhcp6Server::handle` (each half, then the whole, so a REQUEST can
//! follow an ADVERTISE), and the same bytes as a frame through the NDP responder: never
//! panics (the validator keeps `dhcproto`'s unchecked lengths away from it), every DHCPv6
//! reply decodes as an ADVERTISE or REPLY carrying our server id, and every NDP answer parses
//! back with a valid ICMPv6 checksum. Seeds: `fuzz/seeds/dhcp6/` (a dhclient -6 SOLICIT and a
//! REQUEST, built with scapy like dhclient sends them):
//! `cargo fuzz run dhcp6 fuzz/corpus/dhcp6 fuzz/seeds/dhcp6`.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use switchyard::service::dhcp6::{Dhcp6Params, Dhcp6Server, Reservation6};
use switchyard::service::ndp::{Ndp, NdpParams, RaParams};
use switchyard::wire::ipv6::Ipv6View;
use switchyard::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let me = MacAddr([2, 0, 0, 0, 0, 1]);
    let params = Dhcp6Params {
        server_duid: Dhcp6Params::duid_ll(me),
        subnet: "fd00:13:31::/64".parse().unwrap(),
        gateway: "fd00:13:31::1".parse().unwrap(),
        pool: Some((
            "fd00:13:31::100".parse().unwrap(),
            "fd00:13:31::103".parse().unwrap(),
        )),
        lease_time: 600,
        reservations: vec![Reservation6 {
            name: "vm1".into(),
            duid: Some(vec![0, 3, 0, 1, 0x52, 0x54, 0, 0, 0, 0x11]),
            mac: None,
            ipv6: "fd00:13:31::11".parse().unwrap(),
        }],
        ports: BTreeMap::new(),
        trusted_ports: Vec::new(),
        dns: vec!["fd00:13:31::1".parse().unwrap()],
        search: vec!["lab.test".into()],
        stateless: false,
    };
    let sid = params.server_duid.clone();
    let mut s = Dhcp6Server::new(params, []);
    let half = data.len() / 2;
    for (i, msg) in [&data[..half], &data[half..], data].into_iter().enumerate() {
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, i as u8]);
        if let Ok(out) = s.handle(msg, i as u16, mac, 1_700_000_000 + i as u64) {
            let m = Message::decode(&mut Decoder::new(&out.reply)).expect("reply decodes");
            assert!(matches!(
                m.msg_type(),
                MessageType::Advertise | MessageType::Reply
            ));
            assert!(matches!(
                m.opts().get(OptionCode::ServerId),
                Some(DhcpOption::ServerId(id)) if *id == sid
            ));
        }
    }
    let mut ndp = Ndp::new(
        NdpParams {
            mac: me,
            gateway: "fd00:13:31::1".parse().unwrap(),
            ra: Some(RaParams {
                prefix: "fd00:13:31::/64".parse().unwrap(),
                managed: true,
                other: true,
                autonomous: true,
                interval: Duration::from_secs(600),
                rdnss: vec!["fd00:13:31::1".parse().unwrap()],
                dnssl: vec!["lab.test".into()],
                mtu: Some(1500),
                router: None,
            }),
            dhcp6: true,
            dns: true,
        },
        Duration::ZERO,
    );
    let _ = ndp.is_served(data);
    if let Some(reply) = ndp.handle(data) {
        let v = Ipv6View::parse(&reply).expect("answer parses");
        assert!(v.icmpv6().is_some(), "answer checksum");
    }
});
