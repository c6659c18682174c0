//! Per-query cost of the DNS service, with no I/O: a local name (zone lookup), a cached
//! forwarded name (cache hit, TTLs aged), and an NXDOMAIN in the domain; decode, answer and
//! encode included. Each twice: through the fast path (`local_a`, `local_nxdomain`,
//! `local_a_mixed_case`, `cached_a`: the answer kept ready and patched) and the full path
//! (`*_full`: parse, lookup, encode). `cargo bench --bench dns`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use switchyard::service::dns::{DnsHost, DnsParams, DnsServer, Outcome, Transport};

const UDP: Transport = Transport::Udp { limit: 1472 };
const NOW: Duration = Duration::from_secs(100);

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn bench_dns(c: &mut Criterion) {
    let mut p = DnsParams::new(
        "lab.test",
        "10.13.0.0/16".parse().unwrap(),
        Ipv4Addr::new(10, 13, 0, 1),
    );
    p.hosts = (0..1000u32)
        .map(|i| DnsHost {
            name: format!("vm{i}"),
            ipv4: Some(Ipv4Addr::from(0x0a0d_0100 + i)),
            mac: None,
            ipv6: None,
            match_hostname: true,
        })
        .collect();
    p.upstreams = vec!["192.0.2.53:53".parse().unwrap()];
    let mut s: DnsServer<()> = DnsServer::new(&p, 1);
    let mut full: DnsServer<()> = DnsServer::new(&p, 1);
    full.set_fast_path(false);
    // Warm the cache with one forwarded name.
    let fwd = query("www.example.org.");
    let Outcome::Forward { upstream, query: q } = s.process_query(&fwd, (), UDP, NOW) else {
        panic!("not forwarded")
    };
    let mut answer = Message::from_vec(&q).unwrap();
    answer.metadata.message_type = MessageType::Response;
    answer.add_answer(Record::from_rdata(
        Name::from_ascii("www.example.org.").unwrap(),
        3600,
        RData::A(A::new(192, 0, 2, 7)),
    ));
    s.process_upstream(&answer.to_vec().unwrap(), upstream, NOW)
        .unwrap();
    let Outcome::Forward { upstream, query: q } = full.process_query(&fwd, (), UDP, NOW) else {
        panic!("not forwarded")
    };
    answer.metadata.id = Message::from_vec(&q).unwrap().metadata.id;
    full.process_upstream(&answer.to_vec().unwrap(), upstream, NOW)
        .unwrap();

    let local = query("vm500.lab.test.");
    let nx = query("nope.lab.test.");
    let mixed = query("Vm500.LaB.tEsT.");
    // Each question once through the full path fills the memo, so even a single iteration
    // (`cargo bench -- --test`) measures, and checks, the fast path.
    for q in [&local, &fwd, &nx] {
        black_box(s.process_query(q, (), UDP, NOW));
    }
    let mut g = c.benchmark_group("dns");
    g.bench_function("local_a", |b| {
        b.iter(|| black_box(s.process_query(black_box(&local), (), UDP, NOW)))
    });
    g.bench_function("cached_a", |b| {
        b.iter(|| black_box(s.process_query(black_box(&fwd), (), UDP, NOW)))
    });
    g.bench_function("local_nxdomain", |b| {
        b.iter(|| black_box(s.process_query(black_box(&nx), (), UDP, NOW)))
    });
    g.bench_function("local_a_mixed_case", |b| {
        b.iter(|| black_box(s.process_query(black_box(&mixed), (), UDP, NOW)))
    });
    g.bench_function("local_a_full", |b| {
        b.iter(|| black_box(full.process_query(black_box(&local), (), UDP, NOW)))
    });
    g.bench_function("local_nxdomain_full", |b| {
        b.iter(|| black_box(full.process_query(black_box(&nx), (), UDP, NOW)))
    });
    g.bench_function("cached_a_full", |b| {
        b.iter(|| black_box(full.process_query(black_box(&fwd), (), UDP, NOW)))
    });
    g.finish();
    assert!(s.counters.local_fast > 0 && full.counters.local_fast == 0);
    assert!(s.counters.cache_fast > 0 && full.counters.cache_fast == 0);
}

criterion_group!(benches, bench_dns);
criterion_main!(benches);
