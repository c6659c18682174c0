//! Helpers for the DHCP scenario tests: a server on 10.13.31.0/24 (pool .100-.109, one MAC
//! reservation `vm1` → .10), client messages built with dhcproto, and a virtual clock `T0`.
#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use switchyard::service::dhcp::{DhcpParams, DhcpServer, Outcome, Reservation};
use switchyard::wire::MacAddr;

pub const SID: Ipv4Addr = Ipv4Addr::new(10, 13, 31, 1);
pub const T0: u64 = 1_700_000_000;

pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 13, 31, last)
}

pub fn mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, n])
}

pub fn params() -> DhcpParams {
    let mut p = DhcpParams::new(SID, "10.13.31.0/24".parse().unwrap());
    p.pool = Some((ip(100), ip(109)));
    p.rate_limit = None;
    p.domain = Some("lab.test".into());
    p.search = vec!["lab.test".into(), "example.test".into()];
    p.mtu = Some(1400);
    p.routes = vec![("192.168.7.0/24".parse().unwrap(), ip(2))];
    p.reservations = vec![Reservation {
        name: "vm1".into(),
        mac: Some(mac(1)),
        client_id: None,
        ipv4: ip(10),
        match_hostname: false,
    }];
    p
}

pub fn server() -> DhcpServer {
    DhcpServer::new(params()).unwrap()
}

/// A client message from `mac`, with `opts`.
pub fn msg(ty: MessageType, mac: MacAddr, ciaddr: Ipv4Addr, opts: Vec<DhcpOption>) -> Vec<u8> {
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0xfeed_0001, ciaddr, u, u, u, &mac.0);
    m.opts_mut().insert(DhcpOption::MessageType(ty));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

pub fn discover(mac: MacAddr, opts: Vec<DhcpOption>) -> Vec<u8> {
    msg(MessageType::Discover, mac, Ipv4Addr::UNSPECIFIED, opts)
}

pub fn select(mac: MacAddr, addr: Ipv4Addr, opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut o = vec![
        DhcpOption::ServerIdentifier(SID),
        DhcpOption::RequestedIpAddress(addr),
    ];
    o.extend(opts);
    msg(MessageType::Request, mac, Ipv4Addr::UNSPECIFIED, o)
}

pub fn prl(codes: &[u8]) -> DhcpOption {
    DhcpOption::ParameterRequestList(codes.iter().map(|c| OptionCode::from(*c)).collect())
}

pub fn decode(out: &Outcome) -> Message {
    let r = out.reply.as_ref().expect("a reply");
    Message::decode(&mut Decoder::new(&r.payload)).unwrap()
}

pub fn ty(m: &Message) -> MessageType {
    m.opts().msg_type().unwrap()
}

pub fn has(m: &Message, code: u8) -> bool {
    m.opts().get(OptionCode::from(code)).is_some()
}

/// DISCOVER then REQUEST; returns the ACKed address.
pub fn bind(s: &mut DhcpServer, mac: MacAddr, port: u16, now: u64) -> Ipv4Addr {
    let offer = decode(&s.process(&discover(mac, vec![]), port, now).unwrap());
    assert_eq!(ty(&offer), MessageType::Offer);
    let out = s
        .process(&select(mac, offer.yiaddr(), vec![]), port, now)
        .unwrap();
    let ack = decode(&out);
    assert_eq!(ty(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), offer.yiaddr());
    ack.yiaddr()
}
