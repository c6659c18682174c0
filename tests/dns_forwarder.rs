//! The forwarder's answer check (RFC 5452), sans-IO: an upstream answer is accepted only with
//! the pending id, from the upstream asked (address and port), on the socket the query left
//! from, for the question asked; every refusal is counted in `answers_refused`, and the real
//! answer still gets through afterwards. The namespace test `netns_dns_forwarder` does the same
//! through the daemon's sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchyard::service::dns::{DnsParams, DnsServer, IdSource, Outcome, Transport};

const UDP: Transport = Transport::Udp { limit: 1472 };
const T0: Duration = Duration::from_secs(1000);

fn upstream() -> SocketAddr {
    "192.0.2.53:53".parse().unwrap()
}

fn server() -> DnsServer<u32> {
    let mut p = DnsParams::new(
        "lab.test",
        "10.13.31.0/24".parse().unwrap(),
        Ipv4Addr::new(10, 13, 31, 1),
    );
    p.upstreams = vec![upstream()];
    DnsServer::new(&p, 7)
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn answer_to(query: &[u8], name: &str) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    let owner = Name::from_ascii(name).unwrap();
    m.add_query(Query::query(owner.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(
        owner,
        60,
        RData::A(A::new(192, 0, 2, 7)),
    ));
    m.to_vec().unwrap()
}

fn forward(s: &mut DnsServer<u32>, name: &str) -> Vec<u8> {
    match s.process_query(&query(name), 1, UDP, T0) {
        Outcome::Forward { query, .. } => query,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn an_answer_is_accepted_only_on_its_socket_from_its_upstream_for_its_question() {
    let mut s = server();
    let q = forward(&mut s, "www.example.org.");
    s.sent_via(&q, 5);
    assert_eq!(s.sockets_in_use().into_iter().collect::<Vec<_>>(), vec![5]);
    let good = answer_to(&q, "www.example.org.");
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0x80;
    let wrong_port: SocketAddr = "192.0.2.53:5353".parse().unwrap();
    let wrong_addr: SocketAddr = "192.0.2.99:53".parse().unwrap();
    let refusals = [
        (good.clone(), upstream(), Some(6)), // another socket (another source port)
        (good.clone(), upstream(), None),    // a caller that lost track of the socket
        (good.clone(), wrong_port, Some(5)), // the upstream's address, another port
        (good.clone(), wrong_addr, Some(5)), // another address
        (wrong_id, upstream(), Some(5)),     // a guessed id
        (answer_to(&q, "evil.example."), upstream(), Some(5)), // another question
        (vec![0x42], upstream(), Some(5)),   // short
    ];
    for (i, (bytes, from, via)) in refusals.iter().enumerate() {
        assert!(
            s.process_upstream_via(bytes, *from, *via, T0).is_none(),
            "forgery {i} accepted"
        );
        assert_eq!(s.counters.answers_refused, i as u64 + 1);
    }
    assert_eq!(
        s.pending_len(),
        1,
        "the query still waits for its real answer"
    );
    let r = s
        .process_upstream_via(&good, upstream(), Some(5), T0)
        .unwrap();
    assert_eq!(Message::from_vec(&r.bytes).unwrap().metadata.id, 0x4242);
    assert!(
        s.sockets_in_use().is_empty(),
        "answered: its socket may close"
    );
    // A second copy of the same answer is refused too (nothing pending any more).
    assert!(s
        .process_upstream_via(&good, upstream(), Some(5), T0)
        .is_none());
    assert_eq!(s.counters.answers_refused, 8);
}

/// Ids come from the source the caller gives, and never repeat an id still pending.
#[test]
fn ids_come_from_the_given_source_and_skip_pending_ones() {
    #[derive(Debug)]
    struct Script(Vec<u16>);
    impl IdSource for Script {
        fn next_id(&mut self) -> u16 {
            self.0.remove(0)
        }
    }
    let mut s = server().with_ids(Box::new(Script(vec![7, 7, 7, 9])));
    let a = forward(&mut s, "a.example.");
    let b = forward(&mut s, "b.example.");
    assert_eq!(u16::from_be_bytes([a[0], a[1]]), 7);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 9);
}
