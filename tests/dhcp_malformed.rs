//! Bad input for the DHCP server: captured DISCOVERs from real clients, every truncation of
//! them, seeded random mutations, and the option lengths that make dhcproto assert. Any byte
//! string is an `Ok` or a counted drop, never a panic (these run in debug, so dhcproto's
//! `debug_assert!`s are live).

#[path = "common/dhcp_captures.rs"]
mod captures;

use std::net::Ipv4Addr;

use captures::{DHCLIENT_DISCOVER, UDHCPC_DISCOVER};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use switchyard::service::dhcp::validate::OPTIONS_OFFSET;
use switchyard::service::dhcp::{DhcpParams, DhcpServer, DropReason, Outcome};

const T0: u64 = 1_700_000_000;

fn server() -> DhcpServer {
    let mut p = DhcpParams::new(
        Ipv4Addr::new(10, 13, 31, 1),
        "10.13.31.0/24".parse().unwrap(),
    );
    p.pool = Some((
        Ipv4Addr::new(10, 13, 31, 100),
        Ipv4Addr::new(10, 13, 31, 199),
    ));
    p.rate_limit = None;
    p.max_leases_per_port = usize::MAX;
    p.domain = Some("lab.test".into());
    DhcpServer::new(p).unwrap()
}

fn offer_of(out: &Outcome) -> Message {
    Message::decode(&mut Decoder::new(&out.reply.as_ref().unwrap().payload)).unwrap()
}

#[test]
fn real_clients_get_offers() {
    for (who, bytes) in [
        ("udhcpc", &UDHCPC_DISCOVER[..]),
        ("dhclient", &DHCLIENT_DISCOVER[..]),
    ] {
        let mut s = server();
        let out = s
            .process(bytes, 1, T0)
            .unwrap_or_else(|e| panic!("{who}: {e:?}"));
        let offer = offer_of(&out);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer), "{who}");
        assert_eq!(offer.chaddr()[..6], bytes[28..34], "{who}");
        // Both ask for 15 (domain), so they get it; neither asked for 121.
        assert!(offer.opts().get(OptionCode::DomainName).is_some(), "{who}");
        assert!(
            offer.opts().get(OptionCode::ClasslessStaticRoute).is_none(),
            "{who}"
        );
    }
}

#[test]
fn captured_bytes_round_trip_through_dhcproto() {
    use dhcproto::Encodable;
    for bytes in [&UDHCPC_DISCOVER[..], &DHCLIENT_DISCOVER[..]] {
        let m = Message::decode(&mut Decoder::new(bytes)).unwrap();
        let again = Message::decode(&mut Decoder::new(&m.to_vec().unwrap())).unwrap();
        assert_eq!(m, again);
    }
}

#[test]
fn every_truncation_is_a_drop_or_an_answer_never_a_panic() {
    for bytes in [&UDHCPC_DISCOVER[..], &DHCLIENT_DISCOVER[..]] {
        let mut s = server();
        for cut in 0..bytes.len() {
            let r = s.process(&bytes[..cut], 1, T0);
            if cut < OPTIONS_OFFSET {
                assert_eq!(r, Err(DropReason::Malformed), "cut at {cut}");
            }
        }
    }
}

/// xorshift64: a deterministic stream for the mutation loop.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_mutations_never_panic() {
    let mut s = server();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut answered = 0;
    for i in 0..30_000 {
        let base = if i % 2 == 0 {
            &UDHCPC_DISCOVER[..]
        } else {
            &DHCLIENT_DISCOVER[..]
        };
        let mut b = base.to_vec();
        let flips = 1 + xorshift(&mut rng) % 8;
        for _ in 0..flips {
            let r = xorshift(&mut rng);
            // Mostly the option area, where the parsing is.
            let at = if r % 4 == 0 {
                r as usize % b.len()
            } else {
                240 + (r >> 8) as usize % (b.len() - 240)
            };
            b[at] = (r >> 32) as u8;
        }
        if xorshift(&mut rng) % 3 == 0 {
            let keep = xorshift(&mut rng) as usize % b.len();
            b.truncate(keep);
        }
        if s.process(&b, (i % 7) as u16, T0 + i / 100).is_ok() {
            answered += 1;
        }
    }
    assert!(
        answered > 1000,
        "the mutations should not all be drops ({answered})"
    );
}

/// Puts `opt` (code, len, value) in front of the captured DISCOVER's options.
fn with_raw_option(opt: &[u8]) -> Vec<u8> {
    let mut b = UDHCPC_DISCOVER[..OPTIONS_OFFSET].to_vec();
    b.extend_from_slice(opt);
    b.extend_from_slice(&UDHCPC_DISCOVER[OPTIONS_OFFSET..]);
    b
}

#[test]
fn the_option_lengths_dhcproto_asserts_on_are_drops() {
    let mut s = server();
    let bad: &[&[u8]] = &[
        &[80, 1, 0], // rapid commit carries nothing
        &[81, 0],    // client FQDN needs flags + 2 rcodes
        &[81, 2, 0, 0],
        &[91, 2, 0, 0],    // u32
        &[92, 3, 1, 2, 3], // list of addresses
        &[93, 1, 0],       // u16
        &[94, 2, 1, 2],    // 3 bytes
        &[151, 0],         // status code + message
        &[152, 5, 0, 0, 0, 0, 0],
    ];
    for opt in bad {
        assert_eq!(
            s.process(&with_raw_option(opt), 1, T0),
            Err(DropReason::Malformed),
            "{opt:?}"
        );
    }
    // The same options with sane lengths are accepted.
    let good: &[&[u8]] = &[
        &[80, 0],
        &[91, 4, 0, 0, 0, 1],
        &[94, 3, 1, 2, 0],
        &[93, 2, 0, 7],
    ];
    for opt in good {
        assert!(s.process(&with_raw_option(opt), 1, T0).is_ok(), "{opt:?}");
    }
}

#[test]
fn hostile_values_are_tolerated() {
    let mut s = server();
    let mut m = Message::decode(&mut Decoder::new(&UDHCPC_DISCOVER[..])).unwrap();
    // A hostname with spaces and newlines must not reach the lease file as is.
    m.opts_mut()
        .insert(DhcpOption::Hostname("evil name\n1 2 3".into()));
    m.opts_mut().insert(DhcpOption::ClientIdentifier(vec![]));
    use dhcproto::Encodable;
    let out = s.process(&m.to_vec().unwrap(), 1, T0).unwrap();
    let yiaddr = offer_of(&out).yiaddr();
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 13, 31, 1)));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(yiaddr));
    let out = s.process(&m.to_vec().unwrap(), 1, T0).unwrap();
    let line = s.leases().format_dnsmasq(T0);
    assert!(out.change.is_some());
    assert_eq!(line.lines().count(), 1);
    assert_eq!(line.split(' ').nth(3), Some("*"), "{line}");
}

#[test]
fn a_captured_frame_goes_through_the_service_end_to_end() {
    use captures::UDHCPC_DISCOVER_FRAME;
    use switchyard::service::dhcp::frame::{dhcp_payload, emit_reply_frame};
    use switchyard::wire::ipv4::{checksum, Ipv4View};
    use switchyard::wire::MacAddr;

    let server_ip = Ipv4Addr::new(10, 13, 31, 1);
    let payload = dhcp_payload(&UDHCPC_DISCOVER_FRAME, server_ip).expect("a DHCP request");
    assert_eq!(payload, &UDHCPC_DISCOVER[..]);
    let mut s = server();
    let reply = s.process(payload, 4, T0).unwrap().reply.unwrap();
    let frame = emit_reply_frame(
        &reply,
        MacAddr([2, 0, 0, 0, 0, 1]),
        server_ip,
        MacAddr([0x52, 0x54, 0, 0, 0, 9]),
    );
    assert_eq!(checksum(&frame[14..34], 0), 0, "IPv4 header checksum");
    assert!(
        Ipv4View::parse(&frame).unwrap().udp().is_some(),
        "UDP checksum"
    );
    assert_eq!(
        &frame[0..6],
        &UDHCPC_DISCOVER_FRAME[6..12],
        "unicast to the client's MAC"
    );
    assert_eq!(&frame[42..], &reply.payload[..]);
}
