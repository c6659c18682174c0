//! Any bytes through the DNS query path: as a UDP query, as a TCP query, as an upstream reply to
//! a forwarded query, and as a TCP byte stream cut into segments. Never panics; every reply
//! decodes (or is a bare 12-byte FORMERR header), is a response, and carries the query's id.
//! The fast path for local answers gives the same bytes as the full path (asked twice: the
//! first answer fills its memo, the second comes from it), and so does the memo as the
//! data-plane workers read it (`SharedMemo::answer_udp`).
//! Seeds: `fuzz/seeds/dns/` (queries dig sends): `cargo fuzz run dns fuzz/corpus/dns
//! fuzz/seeds/dns`.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use switchyard::service::dns::tcp::{TcpOutput, TcpResponder};
use switchyard::service::dns::{
    DnsHost, DnsParams, DnsServer, Outcome, RecordValue, StaticRecord, Transport,
};
use switchyard::wire::tcp::{TcpSegment, ACK, SYN};

fn check_reply(query: &[u8], reply: &[u8]) {
    let m = Message::from_vec(reply).expect("every reply decodes");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.id, u16::from_be_bytes([query[0], query[1]]));
}

fuzz_target!(|data: &[u8]| {
    let mut p = DnsParams::new(
        "lab.test",
        "10.13.31.0/24".parse().unwrap(),
        Ipv4Addr::new(10, 13, 31, 1),
    );
    p.hosts.push(DnsHost {
        name: "vm1".into(),
        ipv4: Some(Ipv4Addr::new(10, 13, 31, 11)),
        ipv6: None,
        mac: None,
        match_hostname: true,
    });
    p.records.push(StaticRecord {
        name: "www".into(),
        value: RecordValue::Cname("vm1.lab.test".into()),
    });
    let upstream: SocketAddr = "192.0.2.53:53".parse().unwrap();
    p.upstreams.push(upstream);
    let mut s: DnsServer<u8> = DnsServer::new(&p, 1);
    let now = Duration::from_secs(10);
    for transport in [Transport::Udp { limit: 1472 }, Transport::Tcp] {
        match s.process_query(data, 0, transport, now) {
            Outcome::Reply(r) => check_reply(data, &r),
            Outcome::Forward { query, .. } => {
                // The same bytes as the upstream's answer to the forwarded query.
                let mut answer = data.to_vec();
                answer[..2].copy_from_slice(&query[..2]);
                if let Some(r) = s.process_upstream(&answer, upstream, now) {
                    check_reply(data, &r.bytes);
                }
            }
            Outcome::Drop(_) => {}
        }
    }
    for r in s.poll_timeouts(now + Duration::from_secs(60)) {
        check_reply(data, &r.bytes);
    }
    let mut full: DnsServer<u8> = DnsServer::new(&p, 1);
    full.set_fast_path(false);
    let mut fast: DnsServer<u8> = DnsServer::new(&p, 1);
    for transport in [Transport::Udp { limit: 1472 }, Transport::Tcp] {
        let want = full.process_query(data, 0, transport, now);
        for _ in 0..2 {
            let got = fast.process_query(data, 0, transport, now);
            match (&want, &got) {
                (Outcome::Reply(a), Outcome::Reply(b)) => assert_eq!(a, b, "fast path differs"),
                (Outcome::Forward { .. }, Outcome::Forward { .. }) => {}
                (a, b) => assert_eq!(a, b, "fast path differs"),
            }
        }
        // What the workers answer from the shared memo is the full path's answer too.
        if let (Transport::Udp { limit }, Some(shared)) =
            (transport, fast.shared_memo().answer_udp(data, 1472, now))
        {
            assert_eq!(limit, 1472);
            assert_eq!(want, Outcome::Reply(shared), "shared memo differs");
        }
    }
    // The bytes as a TCP stream, in segments of a size the first byte picks.
    let mut tcp: TcpResponder<()> = TcpResponder::new(4, Duration::from_secs(10), 1460, 3);
    let client = Ipv4Addr::new(10, 13, 31, 11);
    let seg = |seq, flags, payload| TcpSegment {
        src_port: 40000,
        dst_port: 53,
        seq,
        ack: 0,
        flags,
        window: 65535,
        mss: None,
        payload,
    };
    let out = tcp.process_segment(client, &seg(0, SYN, &[]), (), now);
    let Some(TcpOutput::Segment { header, .. }) = out.first() else {
        panic!("no SYN-ACK")
    };
    let iss = header.seq;
    let mut ack = seg(1, ACK, &[]);
    ack.ack = iss.wrapping_add(1);
    tcp.process_segment(client, &ack, (), now);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut seq = 1u32;
    for chunk in data.chunks(step) {
        let mut d = seg(seq, ACK, chunk);
        d.ack = iss.wrapping_add(1);
        for o in tcp.process_segment(client, &d, (), now) {
            if let TcpOutput::Query { key, message } = o {
                if let Outcome::Reply(r) = s.process_query(&message, 0, Transport::Tcp, now) {
                    tcp.answer(key, Some(&r), now);
                }
            }
        }
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    tcp.poll(now + Duration::from_secs(60));
});
