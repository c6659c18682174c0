//! Per-frame cost of the forwarding decision, with no I/O: a unicast hit, a flood, and FDB
//! lookups at 10, 10k and 1M entries. `cargo bench --bench forward`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard::switch::{Fdb, PortId, PortSpec, Switch, SwitchParams};
use switchyard::wire::MacAddr;

fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(1514, 0);
    f
}

fn switch(ports: usize) -> Switch {
    let specs = (0..ports)
        .map(|i| PortSpec {
            name: format!("p{i}"),
            mtu: 1500,
            isolated: false,
        })
        .collect();
    Switch::new(&SwitchParams::default(), specs)
}

fn process(c: &mut Criterion) {
    let now = Duration::from_secs(1);
    let sw = switch(4);
    let (a, b) = (mac(1), mac(2));
    sw.process(PortId(1), &frame(a, b), now);
    let unicast = frame(b, a);
    c.bench_function("process/unicast_hit", |bench| {
        bench.iter(|| sw.process(black_box(PortId(0)), black_box(&unicast), now))
    });
    let bcast = frame(MacAddr::BROADCAST, a);
    c.bench_function("process/flood_4_ports", |bench| {
        bench.iter(|| {
            let v = sw.process(black_box(PortId(0)), black_box(&bcast), now);
            (v, sw.flood_targets(PortId(0), &bcast).count())
        })
    });
}

fn fdb(c: &mut Criterion) {
    let now = Duration::from_secs(1);
    for n in [10u32, 10_000, 1_000_000] {
        let fdb = Fdb::new(2, Duration::from_secs(300), 2_000_000, 2_000_000);
        for i in 0..n {
            fdb.learn(mac(i), PortId(0), now);
        }
        let mut i = 0u32;
        c.bench_function(&format!("fdb/lookup_{n}"), |bench| {
            bench.iter(|| {
                i = (i + 7919) % n;
                fdb.lookup(black_box(mac(i)), now)
            })
        });
        c.bench_function(&format!("fdb/refresh_{n}"), |bench| {
            bench.iter(|| {
                i = (i + 7919) % n;
                fdb.learn(black_box(mac(i)), PortId(0), now)
            })
        });
    }
}

criterion_group!(benches, process, fdb);
criterion_main!(benches);
