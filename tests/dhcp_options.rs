//! Option 51 (requested lease time), `[[dhcp.option]]` extras, and relayed messages (giaddr).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable};
use switchyard::service::dhcp::{Destination, DhcpServer, DropReason, ExtraOption, ParamsError};

#[path = "common/dhcp.rs"]
mod dhcp;
use dhcp::*;

fn lease_time(m: &Message) -> Option<u32> {
    match m.opts().get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
        _ => None,
    }
}

fn raw(m: &Message, code: u8) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut e = dhcproto::Encoder::new(&mut bytes);
    m.opts()
        .get(OptionCode::from(code))?
        .encode(&mut e)
        .unwrap();
    Some(bytes[2..].to_vec())
}

#[test]
fn requested_lease_time_shortens_but_never_lengthens_the_lease() {
    let mut s = server(); // 1 h configured
    let ask = |t| vec![DhcpOption::AddressLeaseTime(t)];
    let offer = decode(&s.process(&discover(mac(7), ask(600)), 1, T0).unwrap());
    assert_eq!(lease_time(&offer), Some(600));
    let ack = s
        .process(&select(mac(7), offer.yiaddr(), ask(600)), 1, T0)
        .unwrap();
    assert_eq!(lease_time(&decode(&ack)), Some(600));
    assert!(has(&decode(&ack), 58) && has(&decode(&ack), 59));
    let lease = s.leases().get_by_ip(offer.yiaddr()).unwrap();
    assert_eq!(
        lease.expires,
        Some(T0 + 600),
        "the lease table keeps the granted term"
    );

    // Longer than configured: the configured hour.
    let ack = decode(
        &s.process(&select(mac(7), offer.yiaddr(), ask(86_400)), 1, T0)
            .unwrap(),
    );
    assert_eq!(lease_time(&ack), Some(3600));
    // Below the 2-minute minimum: the minimum.
    let ack = decode(
        &s.process(&select(mac(7), offer.yiaddr(), ask(5)), 1, T0)
            .unwrap(),
    );
    assert_eq!(lease_time(&ack), Some(120));
    // Infinite asked of a finite server: the configured hour.
    let ack = decode(
        &s.process(&select(mac(7), offer.yiaddr(), ask(u32::MAX)), 1, T0)
            .unwrap(),
    );
    assert_eq!(lease_time(&ack), Some(3600));

    // An infinite server grants a finite request as asked.
    let mut p = params();
    p.lease_time = None;
    let mut s = DhcpServer::new(p).unwrap();
    let offer = decode(&s.process(&discover(mac(8), ask(900)), 1, T0).unwrap());
    assert_eq!(lease_time(&offer), Some(900));
    let offer = decode(&s.process(&discover(mac(8), vec![]), 1, T0).unwrap());
    assert_eq!(lease_time(&offer), Some(u32::MAX));
}

fn with_extras(extras: Vec<ExtraOption>) -> DhcpServer {
    let mut p = params();
    p.extra_options = extras;
    DhcpServer::new(p).unwrap()
}

fn extra(code: u8, data: &[u8], always: bool) -> ExtraOption {
    ExtraOption {
        code,
        data: data.to_vec(),
        always,
    }
}

#[test]
fn extra_options_are_sent_when_asked_or_forced() {
    let mut s = with_extras(vec![
        extra(42, &[10, 13, 31, 5], false), // NTP, only when asked
        extra(252, b"http://10.13.31.1/wpad.dat", true), // forced
    ]);
    let offer = decode(&s.process(&discover(mac(7), vec![]), 1, T0).unwrap());
    assert!(!has(&offer, 42), "not asked for: not sent");
    assert_eq!(raw(&offer, 252).unwrap(), b"http://10.13.31.1/wpad.dat");
    let offer = decode(
        &s.process(&discover(mac(7), vec![prl(&[42])]), 1, T0)
            .unwrap(),
    );
    assert_eq!(raw(&offer, 42).unwrap(), [10, 13, 31, 5]);
    // A NAK carries none of them.
    let nak = decode(
        &s.process(
            &select(mac(7), Ipv4Addr::new(10, 13, 31, 250), vec![prl(&[42])]),
            1,
            T0,
        )
        .unwrap(),
    );
    assert_eq!(ty(&nak), MessageType::Nak);
    assert!(!has(&nak, 42) && !has(&nak, 252));
}

#[test]
fn an_empty_extra_option_removes_a_default_and_a_value_replaces_it() {
    let mut s = with_extras(vec![
        extra(3, &[], false),                             // no router
        extra(6, &[10, 13, 31, 2, 10, 13, 31, 3], false), // other DNS servers, when asked
    ]);
    let offer = decode(
        &s.process(&discover(mac(7), vec![prl(&[3, 6])]), 1, T0)
            .unwrap(),
    );
    assert!(!has(&offer, 3), "option 3 configured empty is not sent");
    assert_eq!(raw(&offer, 6).unwrap(), [10, 13, 31, 2, 10, 13, 31, 3]);
    assert!(has(&offer, 1) && has(&offer, 28), "other defaults stay");
}

#[test]
fn managed_duplicate_and_oversized_options_are_refused() {
    let bad = |x: Vec<ExtraOption>| {
        let mut p = params();
        p.extra_options = x;
        DhcpServer::new(p).unwrap_err()
    };
    assert_eq!(
        bad(vec![extra(51, &[0, 0, 0, 1], false)]),
        ParamsError::ManagedOption(51)
    );
    assert_eq!(
        bad(vec![extra(42, &[1, 2, 3, 4], false), extra(42, &[], false)]),
        ParamsError::DuplicateOption(42)
    );
    assert_eq!(
        bad(vec![extra(43, &[0; 256], false)]),
        ParamsError::OptionTooLong(43, 256)
    );
}

const RELAY: u16 = 3;

fn relayed(payload: &[u8], giaddr: Ipv4Addr, opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::decode(&mut Decoder::new(payload)).unwrap();
    m.set_giaddr(giaddr);
    m.set_hops(1);
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn relay_server() -> DhcpServer {
    let mut p = params();
    p.trusted_ports = vec![RELAY];
    p.max_leases_per_port = 1;
    DhcpServer::new(p).unwrap()
}

#[test]
fn relayed_dora_from_a_trusted_port_goes_back_to_the_relay() {
    let mut s = relay_server();
    let agent = ip(254);
    let d = relayed(&discover(mac(7), vec![]), agent, vec![]);
    let out = s.process(&d, RELAY, T0).unwrap();
    assert_eq!(
        out.reply.as_ref().unwrap().dest,
        Destination::Relay { ip: agent }
    );
    let offer = decode(&out);
    assert_eq!(offer.giaddr(), agent);
    let r = relayed(&select(mac(7), offer.yiaddr(), vec![]), agent, vec![]);
    let out = s.process(&r, RELAY, T0).unwrap();
    assert_eq!(ty(&decode(&out)), MessageType::Ack);
    assert_eq!(out.reply.unwrap().dest, Destination::Relay { ip: agent });

    // Many clients behind one relay: no per-port lease cap on a trusted port.
    for n in 20..25 {
        let d = relayed(&discover(mac(n), vec![]), agent, vec![]);
        let offer = decode(&s.process(&d, RELAY, T0).unwrap());
        let r = relayed(&select(mac(n), offer.yiaddr(), vec![]), agent, vec![]);
        assert_eq!(
            ty(&decode(&s.process(&r, RELAY, T0).unwrap())),
            MessageType::Ack
        );
    }

    // A NAK goes to the relay too, and option 82 is echoed whatever it holds.
    let bad = relayed(
        &select(mac(8), ip(250), vec![]),
        agent,
        vec![DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(82),
            vec![1, 3, b'p', b'1', b'2'],
        ))],
    );
    let out = s.process(&bad, RELAY, T0).unwrap();
    let nak = decode(&out);
    assert_eq!(ty(&nak), MessageType::Nak);
    assert_eq!(out.reply.unwrap().dest, Destination::Relay { ip: agent });
    assert_eq!(
        raw(&nak, 82).unwrap(),
        [1, 3, b'p', b'1', b'2'],
        "option 82 echoed (RFC 3046)"
    );
}

#[test]
fn relaying_is_refused_from_untrusted_ports_and_for_other_subnets() {
    let mut s = relay_server();
    let d = relayed(&discover(mac(7), vec![]), ip(254), vec![]);
    assert_eq!(s.process(&d, 1, T0), Err(DropReason::Relayed));
    let d = relayed(
        &discover(mac(7), vec![]),
        Ipv4Addr::new(192, 0, 2, 1),
        vec![],
    );
    assert_eq!(s.process(&d, RELAY, T0), Err(DropReason::Relayed));
    // The untrusted port still has its cap.
    let _ = bind(&mut s, mac(9), 1, T0);
    let out = s.process(&discover(mac(10), vec![]), 1, T0);
    assert_eq!(out, Err(DropReason::PortLeaseLimit));
}
