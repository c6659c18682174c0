//! The DNS service without I/O: the zone kept live from leases, collisions, NXDOMAIN vs
//! REFUSED, PTR, forwarding with the pending table and the cache, and malformed input.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use switchyard::service::dhcp::{ClientKey, Lease};
use switchyard::service::dns::{
    DnsHost, DnsParams, DnsServer, DropReason, ForwardRule, NameRefused, Outcome, RecordValue,
    StaticRecord, Transport,
};
use switchyard::wire::MacAddr;

const UDP: Transport = Transport::Udp { limit: 1472 };
const T0: Duration = Duration::from_secs(1000);

fn upstream() -> SocketAddr {
    "192.0.2.53:53".parse().unwrap()
}

fn corp_upstream() -> SocketAddr {
    "192.0.2.54:5353".parse().unwrap()
}

fn params() -> DnsParams {
    let mut p = DnsParams::new(
        "lab.test",
        "10.13.31.0/24".parse().unwrap(),
        Ipv4Addr::new(10, 13, 31, 1),
    );
    p.hosts = vec![
        DnsHost {
            name: "vm1".into(),
            ipv4: Some(Ipv4Addr::new(10, 13, 31, 11)),
            mac: Some(mac(0x11)),
            ipv6: None,
            match_hostname: false,
        },
        DnsHost {
            name: "vm2".into(),
            ipv4: Some(Ipv4Addr::new(10, 13, 31, 12)),
            mac: Some(mac(0x12)),
            ipv6: None,
            match_hostname: false,
        },
        DnsHost {
            name: "floater".into(),
            ipv4: None,
            mac: Some(mac(0x20)),
            ipv6: None,
            match_hostname: false,
        },
    ];
    p.records = vec![
        StaticRecord {
            name: "www".into(),
            value: RecordValue::Cname("vm1.lab.test".into()),
        },
        StaticRecord {
            name: "_http._tcp".into(),
            value: RecordValue::Srv {
                priority: 0,
                weight: 5,
                port: 80,
                target: "vm1.lab.test".into(),
            },
        },
        StaticRecord {
            name: "v6".into(),
            value: RecordValue::Aaaa("fd00::7".parse().unwrap()),
        },
        StaticRecord {
            name: "".into(),
            value: RecordValue::Txt(vec!["hello".into()]),
        },
    ];
    p.local_ttl = 5;
    p
}

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

fn server(p: &DnsParams) -> DnsServer<u32> {
    DnsServer::new(p, 42)
}

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn reply(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask(s: &mut DnsServer<u32>, name: &str, qtype: RecordType) -> Message {
    reply(s.process_query(&query_bytes(7, name, qtype), 1, UDP, T0))
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}

fn lease(key: u8, hostname: Option<&str>, ip: [u8; 4]) -> Lease {
    Lease {
        key: ClientKey::Mac(mac(key)),
        mac: mac(key),
        ip: ip.into(),
        expires: Some(5000),
        hostname: hostname.map(str::to_string),
        client_id: None,
        port: 0,
    }
}

#[test]
fn reservations_answer_with_and_without_the_domain() {
    let mut s = server(&params());
    for name in ["vm1.lab.test.", "VM1.Lab.Test.", "vm1."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.metadata.authoritative);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 11)], "{name}");
        assert_eq!(m.answers[0].name.to_ascii(), name, "owner as asked");
        assert_eq!(m.answers[0].ttl, 5);
        assert_eq!(m.metadata.id, 7);
    }
    let m = ask(&mut s, "vm1.lab.test.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "NODATA");
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn unknown_local_names_are_nxdomain_and_never_forwarded() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    let mut s = server(&p);
    for name in ["nope.lab.test.", "nope.", "a.b.lab.test."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
    // Reverse names inside the subnet are local too: unnamed → NXDOMAIN, not forwarded.
    let m = ask(&mut s, "99.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(s.pending_len(), 0);
    assert_eq!(s.counters.forwarded, 0);
}

#[test]
fn other_names_are_refused_without_upstreams() {
    let mut s = server(&params());
    let m = ask(&mut s, "example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.recursion_available);
    // A reverse name outside the subnet is not ours either.
    let m = ask(&mut s, "7.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn ptr_for_named_addresses() {
    let mut s = server(&params());
    let m = ask(&mut s, "12.31.13.10.in-addr.arpa.", RecordType::PTR);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "vm2.lab.test."),
        other => panic!("{other:?}"),
    }
    let m = ask(&mut s, "1.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.answers.len(), 1, "the gateway is the apex");
    let m = ask(&mut s, "31.13.10.in-addr.arpa.", RecordType::SOA);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = ask(&mut s, "x.12.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn static_records_cname_srv_aaaa_txt_and_the_apex() {
    let mut s = server(&params());
    let m = ask(&mut s, "www.lab.test.", RecordType::A);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 11)], "chased");
    let m = ask(&mut s, "_http._tcp.lab.test.", RecordType::SRV);
    assert_eq!(m.answers[0].record_type(), RecordType::SRV);
    let m = ask(&mut s, "_tcp.lab.test.", RecordType::A);
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0),
        "an empty non-terminal exists"
    );
    let m = ask(&mut s, "v6.lab.test.", RecordType::AAAA);
    assert_eq!(m.answers[0].record_type(), RecordType::AAAA);
    let m = ask(&mut s, "lab.test.", RecordType::SOA);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = ask(&mut s, "lab.test.", RecordType::NS);
    assert_eq!(m.answers[0].record_type(), RecordType::NS);
    let m = ask(&mut s, "lab.test.", RecordType::TXT);
    assert_eq!(m.answers[0].record_type(), RecordType::TXT);
    let m = ask(&mut s, "lab.test.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 1)]);
}

#[test]
fn leases_enter_and_leave_the_zone_live() {
    let mut s = server(&params());
    let l = lease(0x30, Some("Foo"), [10, 13, 31, 150]);
    let serial = s.zone().serial();
    s.zone_mut().upsert_lease(&l).unwrap();
    assert!(
        s.zone().serial() > serial,
        "the SOA serial follows the lease names"
    );
    let m = ask(&mut s, "foo.lab.test.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 150)]);
    let m = ask(&mut s, "150.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.answers.len(), 1);
    // Renewed at a new address: the old PTR goes.
    s.zone_mut()
        .upsert_lease(&lease(0x30, Some("foo"), [10, 13, 31, 151]))
        .unwrap();
    let m = ask(&mut s, "150.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Expired or released.
    s.zone_mut().remove_lease(&l.key);
    let m = ask(&mut s, "foo.lab.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(&mut s, "151.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(s.zone().lease_count(), 0);
}

#[test]
fn a_lease_cannot_steal_a_reserved_name_and_bad_names_are_refused() {
    let mut s = server(&params());
    let thief = lease(0x40, Some("vm1"), [10, 13, 31, 160]);
    assert_eq!(
        s.zone_mut().upsert_lease(&thief),
        Err(NameRefused::Reserved {
            name: "vm1".into(),
            ip: Ipv4Addr::new(10, 13, 31, 160)
        })
    );
    let m = ask(&mut s, "vm1.lab.test.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 11)]);
    // The reservation's own lease is no collision.
    assert!(s
        .zone_mut()
        .upsert_lease(&lease(0x11, Some("vm1"), [10, 13, 31, 11]))
        .is_ok());
    // A reserved host without an address is answered from its own lease only.
    assert!(s
        .zone_mut()
        .upsert_lease(&lease(0x41, Some("floater"), [10, 13, 31, 170]))
        .is_err());
    s.zone_mut()
        .upsert_lease(&lease(0x20, Some("floater"), [10, 13, 31, 171]))
        .unwrap();
    let m = ask(&mut s, "floater.lab.test.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 171)]);
    for bad in ["-x", "a_b", "x-"] {
        assert!(matches!(
            s.zone_mut()
                .upsert_lease(&lease(0x42, Some(bad), [10, 13, 31, 172])),
            Err(NameRefused::Invalid(_))
        ));
    }
    // Two leases, one name: the newer wins.
    s.zone_mut()
        .upsert_lease(&lease(0x43, Some("dup"), [10, 13, 31, 173]))
        .unwrap();
    s.zone_mut()
        .upsert_lease(&lease(0x44, Some("dup"), [10, 13, 31, 174]))
        .unwrap();
    let m = ask(&mut s, "dup.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 174)]);
}

fn upstream_answer(query: &[u8], ttl: u32) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.authoritative = true;
    m.queries = q.queries.clone();
    m.add_answer(Record::from_rdata(
        q.queries[0].name().clone(),
        ttl,
        RData::A(A::new(192, 0, 2, 7)),
    ));
    m.to_vec().unwrap()
}

#[test]
fn forwards_caches_and_times_out() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    p.forwards = vec![ForwardRule {
        domain: "corp.example".into(),
        upstreams: vec![corp_upstream()],
    }];
    let mut s = server(&p);
    let q = query_bytes(0x1234, "Example.org.", RecordType::A);
    let Outcome::Forward {
        upstream: to,
        query,
    } = s.process_query(&q, 9, UDP, T0)
    else {
        panic!("not forwarded")
    };
    assert_eq!(to, upstream());
    let fwd_id = u16::from_be_bytes([query[0], query[1]]);
    let answer = upstream_answer(&query, 60);
    // From the wrong address, or a wrong id: ignored.
    assert!(s.process_upstream(&answer, corp_upstream(), T0).is_none());
    let mut wrong = answer.clone();
    wrong[..2].copy_from_slice(&fwd_id.wrapping_add(1).to_be_bytes());
    assert!(s.process_upstream(&wrong, upstream(), T0).is_none());
    let r = s.process_upstream(&answer, upstream(), T0).unwrap();
    assert_eq!(r.client, 9);
    let m = Message::from_vec(&r.bytes).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    // Cached: answered with the TTL aged, case-insensitively.
    let later = T0 + Duration::from_secs(10);
    let m = reply(s.process_query(
        &query_bytes(5, "example.ORG.", RecordType::A),
        1,
        UDP,
        later,
    ));
    assert_eq!(m.answers[0].ttl, 50);
    assert_eq!(m.metadata.id, 5);
    assert!(
        !m.metadata.authoritative,
        "a cached copy is not authoritative"
    );
    assert_eq!(s.counters.cache_hits, 1);
    // Per-domain forwarder.
    let q = query_bytes(1, "host.corp.example.", RecordType::A);
    assert!(matches!(
        s.process_query(&q, 2, UDP, T0),
        Outcome::Forward { upstream, .. } if upstream == corp_upstream()
    ));
    // No reply in time: SERVFAIL to the right client once the deadline passes.
    assert!(s.poll_timeouts(T0 + Duration::from_millis(1999)).is_empty());
    let failed = s.poll_timeouts(T0 + p.timeout);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].client, 2);
    let m = Message::from_vec(&failed[0].bytes).unwrap();
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (1, ResponseCode::ServFail)
    );
    assert_eq!(s.pending_len(), 0);
}

#[test]
fn negative_upstream_answers_are_cached() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    let mut s = server(&p);
    let q = query_bytes(3, "gone.example.org.", RecordType::A);
    let Outcome::Forward { query, .. } = s.process_query(&q, 1, UDP, T0) else {
        panic!()
    };
    let fq = Message::from_vec(&query).unwrap();
    let mut m = Message::response(fq.metadata.id, OpCode::Query);
    m.queries = fq.queries.clone();
    m.metadata.response_code = ResponseCode::NXDomain;
    let soa = SOA::new(
        Name::from_ascii("example.org.").unwrap(),
        Name::from_ascii("h.example.org.").unwrap(),
        1,
        1,
        1,
        1,
        30,
    );
    m.add_authority(Record::from_rdata(
        Name::from_ascii("example.org.").unwrap(),
        300,
        RData::SOA(soa),
    ));
    s.process_upstream(&m.to_vec().unwrap(), upstream(), T0)
        .unwrap();
    let again = s.process_query(&q, 1, UDP, T0 + Duration::from_secs(29));
    assert_eq!(reply(again).metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(
        s.process_query(&q, 1, UDP, T0 + Duration::from_secs(30)),
        Outcome::Forward { .. }
    ));
}

#[test]
fn the_pending_table_is_bounded() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    p.max_pending = 4;
    let mut s = server(&p);
    for i in 0..4 {
        let q = query_bytes(i, &format!("n{i}.example.org."), RecordType::A);
        assert!(matches!(
            s.process_query(&q, 1, UDP, T0),
            Outcome::Forward { .. }
        ));
    }
    let q = query_bytes(9, "n9.example.org.", RecordType::A);
    let m = reply(s.process_query(&q, 1, UDP, T0));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(s.pending_len(), 4);
}

#[test]
fn malformed_queries_get_formerr_or_a_counted_drop() {
    let mut s = server(&params());
    assert_eq!(
        s.process_query(&[1, 2, 3], 1, UDP, T0),
        Outcome::Drop(DropReason::Short)
    );
    // A response sent to the server: never answered.
    let mut resp = query_bytes(1, "vm1.lab.test.", RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(
        s.process_query(&resp, 1, UDP, T0),
        Outcome::Drop(DropReason::NotAQuery)
    );
    // A compression loop: the question's name points at itself.
    let mut looped = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    // Two pointers at each other.
    let mut pingpong = vec![0xab, 0xce, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    pingpong.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1]);
    // Truncated question, a huge label count, and a lying count.
    let full = query_bytes(0xabcf, "vm1.lab.test.", RecordType::A);
    let truncated = full[..full.len() - 3].to_vec();
    let mut labels = vec![0xab, 0xd0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..200 {
        labels.extend_from_slice(&[1, b'x']);
    }
    labels.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut lying = full.clone();
    lying[5] = 40;
    for bad in [looped, pingpong, truncated, labels, lying] {
        let m = reply(s.process_query(&bad, 1, UDP, T0));
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::FormErr,
            "{bad:02x?}"
        );
        assert_eq!(m.metadata.id, u16::from_be_bytes([bad[0], bad[1]]));
    }
    // Two questions, a non-IN class, a zone transfer, an unknown opcode.
    let mut two = Message::new(2, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
    two.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
    let m = reply(s.process_query(&two.to_vec().unwrap(), 1, UDP, T0));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let mut chaos = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    chaos.set_query_class(DNSClass::CH);
    let mut m = Message::new(3, MessageType::Query, OpCode::Query);
    m.add_query(chaos);
    let m = reply(s.process_query(&m.to_vec().unwrap(), 1, UDP, T0));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = ask(&mut s, "lab.test.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let mut status = query_bytes(4, "lab.test.", RecordType::A);
    status[2] = (status[2] & 0x87) | (2 << 3);
    let m = reply(s.process_query(&status, 1, UDP, T0));
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // And it still answers afterwards.
    assert_eq!(a_records(&ask(&mut s, "vm2.", RecordType::A)).len(), 1);
}

#[test]
fn large_udp_answers_are_truncated_and_edns_is_echoed() {
    let mut p = params();
    for i in 0..20 {
        p.records.push(StaticRecord {
            name: "big".into(),
            value: RecordValue::Txt(vec![format!("{i:02}{}", "x".repeat(40))]),
        });
    }
    let mut s = server(&p);
    let q = query_bytes(1, "big.lab.test.", RecordType::TXT);
    let m = reply(s.process_query(&q, 1, UDP, T0));
    assert!(m.metadata.truncation && m.answers.is_empty());
    let m = reply(s.process_query(&q, 1, Transport::Tcp, T0));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 20);
    let mut big = Message::from_vec(&q).unwrap();
    let mut e = Edns::new();
    e.set_max_payload(4096);
    big.set_edns(e);
    let m = reply(s.process_query(&big.to_vec().unwrap(), 1, UDP, T0));
    assert!(!m.metadata.truncation, "fits 1472 bytes with EDNS");
    assert!(m.edns.is_some());
    assert!(reply(s.process_query(&q, 1, UDP, T0)).edns.is_none());
}

#[test]
fn expired_leases_leave_the_zone() {
    let mut s = server(&params());
    let a = lease(0x50, Some("alpha"), [10, 13, 31, 180]);
    let b = lease(0x51, Some("beta"), [10, 13, 31, 181]);
    s.zone_mut().upsert_lease(&a).unwrap();
    s.zone_mut().upsert_lease(&b).unwrap();
    // Once a second the daemon keeps only the live leases' names: alpha expired.
    s.zone_mut().retain_leases(|k| *k == b.key);
    let m = ask(&mut s, "alpha.lab.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(&mut s, "beta.lab.test.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 181)]);
    assert_eq!(s.zone().lease_count(), 1);
    // Another client takes over alpha's old address: the stale PTR never points at it.
    let c = lease(0x52, None, [10, 13, 31, 181]);
    s.zone_mut().upsert_lease(&c).unwrap();
    let m = ask(&mut s, "181.31.13.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        s.zone().lease_address("beta"),
        None,
        "beta lost its address"
    );
}

#[test]
fn a_silent_upstream_is_backed_up_by_the_next_after_half_the_timeout() {
    let mut p = params();
    let second: SocketAddr = "192.0.2.55:53".parse().unwrap();
    p.upstreams = vec![upstream(), second];
    let mut s = server(&p);
    let q = query_bytes(11, "slow.example.org.", RecordType::A);
    let Outcome::Forward {
        upstream: first,
        query,
    } = s.process_query(&q, 4, UDP, T0)
    else {
        panic!("not forwarded")
    };
    assert!(s
        .poll_retries(T0 + p.timeout / 2 - Duration::from_millis(1))
        .is_empty());
    let retries = s.poll_retries(T0 + p.timeout / 2);
    assert_eq!(retries.len(), 1);
    let (other, again) = &retries[0];
    assert_ne!(*other, first);
    assert_eq!(again, &query, "the same query, the same id");
    assert!(s.poll_retries(T0 + p.timeout).is_empty(), "once");
    // The second upstream's answer is taken; a stranger's is not.
    let answer = upstream_answer(&query, 60);
    assert!(s
        .process_upstream(&answer, "192.0.2.99:53".parse().unwrap(), T0)
        .is_none());
    let r = s.process_upstream(&answer, *other, T0).unwrap();
    assert_eq!(r.client, 4);
    assert_eq!(s.counters.retried, 1);
    // With one upstream there is nobody to retry with.
    let mut p1 = params();
    p1.upstreams = vec![upstream()];
    let mut s1 = server(&p1);
    s1.process_query(&q, 4, UDP, T0);
    assert!(s1.poll_retries(T0 + p1.timeout).is_empty());
}

/// A query on the wire: `flags` (header bytes 2 and 3), `name` spelled as given, `qtype`, and
/// the OPT record `opt` (whole, from its root name on) if any.
fn raw_query(
    id: u16,
    flags: [u8; 2],
    name: &str,
    qtype: RecordType,
    opt: Option<&[u8]>,
) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&flags);
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&u16::from(qtype).to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q.extend_from_slice(opt.unwrap_or_default());
    q
}

/// `name` with every other letter uppercased (`phase` picks which).
fn mixed_case(name: &str, phase: usize) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (i + phase) % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The fast path's answers equal the full path's, byte for byte: every kind of local name
/// (reservations, a lease name, a name without an address, CNAME, SRV, AAAA, TXT at the apex,
/// an empty non-terminal, NXDOMAIN, single-label, PTR, the reverse apex and NXDOMAIN reverse
/// names), many qtypes, with and without EDNS (DO set, a payload under 512, Z flags, a cookie
/// option), RD, AD and CD, any spelling of the name (0x20), over UDP (with truncation) and TCP;
/// and after a lease moves.
#[test]
fn the_fast_path_answers_exactly_as_the_full_path() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    for i in 0..20 {
        p.records.push(StaticRecord {
            name: "big".into(),
            value: RecordValue::Txt(vec![format!("{i:02}{}", "x".repeat(40))]),
        });
    }
    let mut full = server(&p);
    full.set_fast_path(false);
    let mut fast = server(&p);
    let alpha = lease(0x50, Some("alpha"), [10, 13, 31, 180]);
    for s in [&mut full, &mut fast] {
        s.zone_mut().upsert_lease(&alpha).unwrap();
    }
    let names = [
        "vm1.lab.test",
        "vm2.lab.test",
        "floater.lab.test",
        "alpha.lab.test",
        "www.lab.test",
        "_http._tcp.lab.test",
        "_tcp.lab.test",
        "v6.lab.test",
        "big.lab.test",
        "lab.test",
        "nx.lab.test",
        "a.b.nx.lab.test",
        "vm1",
        "nothere",
        "11.31.13.10.in-addr.arpa",
        "180.31.13.10.in-addr.arpa",
        "1.31.13.10.in-addr.arpa",
        "99.31.13.10.in-addr.arpa",
        "31.13.10.in-addr.arpa",
        "x.11.31.13.10.in-addr.arpa",
        "foo.31.13.10.in-addr.arpa",
    ];
    let qtypes = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::PTR,
        RecordType::CNAME,
        RecordType::TXT,
        RecordType::SRV,
        RecordType::SOA,
        RecordType::NS,
        RecordType::MX,
        RecordType::ANY,
        RecordType::HTTPS,
        RecordType::CAA,
    ];
    let cookie: Vec<u8> = [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8]
        .into_iter()
        .chain(1..=8)
        .collect();
    let opts: [Option<&[u8]>; 6] = [
        None,
        Some(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]), // 1232
        Some(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]), // 4096, DO
        Some(&[0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]),     // 100: taken as 512
        Some(&[0, 0, 41, 0x10, 0, 0, 0, 0x7f, 0xff, 0, 0]), // Z flags
        Some(&cookie),
    ];
    let flags = [[0x01, 0x00], [0x00, 0x00], [0x01, 0x30]];
    let transports = [UDP, Transport::Udp { limit: 400 }, Transport::Tcp];
    let mut id = 0u16;
    let compare = |full: &mut DnsServer<u32>, fast: &mut DnsServer<u32>, q: &[u8], t| {
        let a = full.process_query(q, 1, t, T0);
        let b = fast.process_query(q, 1, t, T0);
        assert_eq!(a, b, "query {q:02x?} over {t:?}");
        assert!(matches!(a, Outcome::Reply(_)), "{a:?}");
    };
    for name in names {
        for qtype in qtypes {
            for opt in opts {
                for f in flags {
                    // The first, lowercase, fills the memo; the others are answered from it.
                    let spellings = [
                        name.to_string(),
                        name.to_ascii_uppercase(),
                        mixed_case(name, 0),
                        mixed_case(name, 1),
                    ];
                    for spelling in &spellings {
                        for t in transports {
                            id = id.wrapping_add(0x0101);
                            let q = raw_query(id, f, spelling, qtype, opt);
                            compare(&mut full, &mut fast, &q, t);
                        }
                    }
                }
            }
        }
    }
    let c = fast.counters;
    assert_eq!(full.counters.local_fast, 0);
    assert_eq!(c.local, full.counters.local);
    assert!(c.local_fast > 0 && fast.memo_len() > 0, "{c}");
    // Which queries the fast path takes (each asked once before, so the memo has them).
    let opt_1232: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
    for (spelling, qtype, opt, taken) in [
        ("vM1.LaB.tEsT", RecordType::A, None, true),
        ("VM1.LAB.TEST", RecordType::A, Some(opt_1232), true),
        ("11.31.13.10.IN-ADDR.ARPA", RecordType::PTR, None, true),
        ("nx.lab.test", RecordType::A, None, true),
        // NXDOMAIN: the SOA owner is compressed against the question only in lowercase.
        ("NX.lab.test", RecordType::A, None, false),
        ("vm1.lab.test", RecordType::A, Some(&cookie[..]), false),
        // 20 TXT records do not fit 512 bytes: the full path truncates.
        ("big.lab.test", RecordType::TXT, None, false),
    ] {
        let before = fast.counters.local_fast;
        let q = raw_query(3, [1, 0], spelling, qtype, opt);
        compare(&mut full, &mut fast, &q, UDP);
        let was = fast.counters.local_fast > before;
        assert_eq!(was, taken, "{spelling} {qtype} {opt:?}");
    }
    // A lease moves: the fast path answers the new address at once.
    let moved = lease(0x50, Some("alpha"), [10, 13, 31, 181]);
    for s in [&mut full, &mut fast] {
        s.zone_mut().upsert_lease(&moved).unwrap();
    }
    for (name, qtype) in [
        ("alpha.lab.test", RecordType::A),
        ("180.31.13.10.in-addr.arpa", RecordType::PTR),
        ("181.31.13.10.in-addr.arpa", RecordType::PTR),
        ("lab.test", RecordType::SOA),
    ] {
        for _ in 0..2 {
            let q = raw_query(9, [1, 0], name, qtype, None);
            compare(&mut full, &mut fast, &q, UDP);
        }
    }
    let m = reply(fast.process_query(
        &raw_query(9, [1, 0], "alpha.lab.test", RecordType::A, None),
        1,
        UDP,
        T0,
    ));
    assert_eq!(a_records(&m), [Ipv4Addr::new(10, 13, 31, 181)]);
}

/// An upstream's answer to `query`: a CNAME to `cname.example.net.` and its A record, or (no
/// `ttl`) NXDOMAIN with a SOA whose minimum is 30 s.
fn upstream_reply(query: &[u8], ttl: Option<u32>) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_available = true;
    m.queries = q.queries.clone();
    let owner = q.queries[0].name().clone();
    let target = Name::from_ascii("cname.example.net.").unwrap();
    match ttl {
        Some(ttl) => {
            m.add_answer(Record::from_rdata(
                owner,
                ttl,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
            ));
            m.add_answer(Record::from_rdata(
                target,
                ttl,
                RData::A(A::new(192, 0, 2, 8)),
            ));
        }
        None => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let zone = Name::from_ascii("example.org.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, 30);
            m.add_authority(Record::from_rdata(zone, 60, RData::SOA(soa)));
        }
    }
    m.to_vec().unwrap()
}

/// Cached answers too: the fast path gives the full path's bytes (TTLs aged by the same
/// seconds) at every moment of an entry's life, for every spelling, EDNS variant and transport,
/// and stops at its expiry.
#[test]
fn the_fast_path_answers_cached_names_exactly_as_the_full_path() {
    let mut p = params();
    p.upstreams = vec![upstream()];
    let mut full = server(&p);
    full.set_fast_path(false);
    let mut fast = server(&p);
    let names = [
        ("short.example.org", Some(3)),
        ("long.example.org", Some(3600)),
        ("gone.example.org", None),
    ];
    for s in [&mut full, &mut fast] {
        for (name, ttl) in names {
            let q = raw_query(1, [1, 0], name, RecordType::A, None);
            let Outcome::Forward { upstream: u, query } = s.process_query(&q, 1, UDP, T0) else {
                panic!("{name} not forwarded")
            };
            s.process_upstream(&upstream_reply(&query, ttl), u, T0)
                .expect("answer relayed");
        }
    }
    let opts: [Option<&[u8]>; 3] = [
        None,
        Some(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]),
        Some(&[0, 0, 41, 0, 100, 0, 0, 0x80, 0, 0, 0]),
    ];
    let ms = Duration::from_millis;
    let mut id = 0u16;
    for at in [0, 250, 999, 1000, 1500, 2999, 3000, 29_999, 30_000, 50_000] {
        let now = T0 + ms(at);
        for (name, _) in names {
            for opt in opts {
                for f in [[1, 0], [0, 0x30]] {
                    for spelling in [name.to_string(), mixed_case(name, 1), name.to_uppercase()] {
                        for t in [UDP, Transport::Tcp] {
                            id = id.wrapping_add(0x0101);
                            let q = raw_query(id, f, &spelling, RecordType::A, opt);
                            let a = full.process_query(&q, 1, t, now);
                            let b = fast.process_query(&q, 1, t, now);
                            match (&a, &b) {
                                (Outcome::Forward { .. }, Outcome::Forward { .. }) => {}
                                _ => assert_eq!(a, b, "{spelling} at {at} ms over {t:?}"),
                            }
                            if at >= 3000 && name == "short.example.org" {
                                assert!(matches!(b, Outcome::Forward { .. }), "expired at 3 s");
                            }
                        }
                    }
                }
            }
        }
    }
    let c = fast.counters;
    assert_eq!(full.counters.cache_fast, 0);
    assert_eq!(c.cache_hits, full.counters.cache_hits);
    assert!(c.cache_fast > 0, "{c}");
    // The TTLs a fast answer carries are aged: 3600 - 50 s. (Lowercase: the upstream's owner
    // names are compressed against the question only in the spelling they were asked in.)
    let q = raw_query(5, [1, 0], "long.example.org", RecordType::A, None);
    let before = fast.counters.cache_fast;
    let m = reply(fast.process_query(&q, 1, UDP, T0 + ms(50_500)));
    assert_eq!(fast.counters.cache_fast, before + 1);
    assert!(m.answers.iter().all(|r| r.ttl == 3550), "{m:?}");
}

#[test]
fn the_shared_memo_gives_the_servers_bytes_and_forgets_them_when_the_zone_changes() {
    let mut s = server(&params());
    s.zone_mut()
        .upsert_lease(&lease(0x30, Some("foo"), [10, 13, 31, 150]))
        .unwrap();
    let shared = s.shared_memo();
    let q = raw_query(0x1234, [1, 0], "foo.lab.test", RecordType::A, None);
    assert_eq!(shared.answer_udp(&q, 1472, T0), None, "not asked yet");
    // The server's first answer fills the memo; the shared view then gives the same bytes.
    let Outcome::Reply(first) = s.process_query(&q, 1, UDP, T0) else {
        panic!("no reply")
    };
    let q2 = raw_query(0x4321, [1, 0], "FOO.lab.test", RecordType::A, None);
    let Outcome::Reply(by_server) = s.process_query(&q2, 1, UDP, T0) else {
        panic!("no reply")
    };
    assert_eq!(shared.answer_udp(&q, 1472, T0), Some(first));
    assert_eq!(shared.answer_udp(&q2, 1472, T0), Some(by_server));
    assert_eq!(shared.counts(), (2, 0));
    // Not the fast path's shape (a cookie): left to the server.
    let cookie = [
        0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let q3 = raw_query(1, [1, 0], "foo.lab.test", RecordType::A, Some(&cookie[..]));
    assert_eq!(shared.answer_udp(&q3, 1472, T0), None);
    // Any change of the zone empties it before the change is visible to anyone.
    s.zone_mut()
        .upsert_lease(&lease(0x30, Some("foo"), [10, 13, 31, 151]))
        .unwrap();
    assert!(shared.is_empty());
    assert_eq!(shared.answer_udp(&q, 1472, T0), None);
    let m = reply(s.process_query(&q, 1, UDP, T0));
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 13, 31, 151)]);
    assert_eq!(
        shared
            .answer_udp(&q, 1472, T0)
            .map(|b| Message::from_vec(&b).unwrap().answers),
        Some(m.answers)
    );
}
