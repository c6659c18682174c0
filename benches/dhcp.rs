//! Per-message cost of the DHCP state machine, with no I/O: DISCOVER → OFFER and
//! REQUEST → ACK for 1,000 clients cycling through a pool of 10,000 (decode, validate, address
//! choice, reply encode). The journal's fsync, which dominates a real ACK, is not included.
//! `cargo bench --bench dhcp`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use switchyard::service::dhcp::{DhcpParams, DhcpServer};

const CLIENTS: u32 = 1000;
const T0: u64 = 1_700_000_000;

fn server() -> DhcpServer {
    let mut p = DhcpParams::new(Ipv4Addr::new(10, 13, 0, 1), "10.13.0.0/16".parse().unwrap());
    p.pool = Some((Ipv4Addr::new(10, 13, 1, 0), Ipv4Addr::new(10, 13, 40, 15)));
    p.rate_limit = None;
    p.max_leases_per_port = usize::MAX;
    p.domain = Some("lab.test".into());
    DhcpServer::new(p).unwrap()
}

fn message(n: u32, ty: MessageType, opts: Vec<DhcpOption>) -> Vec<u8> {
    let b = n.to_be_bytes();
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(n, u, u, u, u, &[0x52, 0x54, b[0], b[1], b[2], b[3]]);
    m.opts_mut().insert(DhcpOption::MessageType(ty));
    let prl = [1u8, 3, 6, 12, 15, 28, 42].map(OptionCode::from).to_vec();
    m.opts_mut().insert(DhcpOption::ParameterRequestList(prl));
    m.opts_mut()
        .insert(DhcpOption::Hostname(format!("client{n}")));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn bench_dhcp(c: &mut Criterion) {
    let mut s = server();
    let discovers: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|n| message(n, MessageType::Discover, vec![]))
        .collect();
    let requests: Vec<Vec<u8>> = discovers
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let out = s.process(d, 1, T0).unwrap();
            let reply = out.reply.unwrap().payload;
            let yiaddr = Message::decode(&mut Decoder::new(&reply)).unwrap().yiaddr();
            let opts = vec![
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 13, 0, 1)),
                DhcpOption::RequestedIpAddress(yiaddr),
            ];
            message(n as u32, MessageType::Request, opts)
        })
        .collect();

    let mut g = c.benchmark_group("dhcp");
    g.measurement_time(Duration::from_secs(3));
    let mut i = 0;
    g.bench_function("discover_offer", |b| {
        b.iter(|| {
            i = (i + 1) % discovers.len();
            black_box(s.process(black_box(&discovers[i]), 1, T0).unwrap());
        })
    });
    g.bench_function("request_ack", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(s.process(black_box(&requests[i]), 1, T0).unwrap());
        })
    });
    g.finish();
}

/// DORA for 10,000 new clients into an empty pool of 10,238 addresses, per iteration.
fn bench_fill(c: &mut Criterion) {
    let mk = || {
        let mut p = DhcpParams::new(Ipv4Addr::new(10, 13, 0, 1), "10.13.0.0/18".parse().unwrap());
        p.pool = Some((Ipv4Addr::new(10, 13, 0, 10), Ipv4Addr::new(10, 13, 40, 7)));
        p.rate_limit = None;
        p.max_leases_per_port = usize::MAX;
        DhcpServer::new(p).unwrap()
    };
    let discovers: Vec<Vec<u8>> = (0..10_000)
        .map(|n| message(n, MessageType::Discover, vec![]))
        .collect();
    let mut g = c.benchmark_group("dhcp");
    g.sample_size(10);
    g.bench_function("fill_pool_10000_of_10238", |b| {
        b.iter_batched(
            mk,
            |mut s| {
                for (n, d) in discovers.iter().enumerate() {
                    let offer = s.process(d, 1, T0).unwrap().reply.unwrap().payload;
                    let yiaddr = Message::decode(&mut Decoder::new(&offer)).unwrap().yiaddr();
                    let opts = vec![
                        DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 13, 0, 1)),
                        DhcpOption::RequestedIpAddress(yiaddr),
                    ];
                    let req = message(n as u32, MessageType::Request, opts);
                    black_box(s.process(&req, 1, T0).unwrap());
                }
                s
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_dhcp, bench_fill);
criterion_main!(benches);
