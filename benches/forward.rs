//! Per-frame cost of the forwarding decision, with no I/O: a unicast hit (unguarded and through
//! the per-port guard), a 64 KiB GSO super-frame through the guard, a flood, and FDB lookups at
//! 10, 10k and 1M entries (one at a time, and in prefetched batches of 32); plus the software
//! segmentation of a super-frame (`wire::gso`); a VLAN's cost (a tagged hit on a trunk, a hit
//! from an access port, the tag push). `cargo bench --bench forward`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use std::net::Ipv4Addr;

use switchyard::switch::{Fdb, PortId, PortPolicy, PortSpec, PortVlan, Switch, SwitchParams};
use switchyard::wire::gso::{for_each_segment, GSO_TCPV4};
use switchyard::wire::vlan::push_tag;
use switchyard::wire::{MacAddr, VnetHeader, VNET_HDR_LEN};

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

/// A 1514-byte IPv4/UDP frame from `src_ip` (a realistic header for the guard to read).
fn udp_frame(dst: MacAddr, src: MacAddr, src_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = frame(dst, src);
    let ip = &mut f[14..];
    ip[..20].copy_from_slice(&[
        0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ]);
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[20..24].copy_from_slice(&[0x13, 0x88, 0x13, 0x89]);
    f
}

/// A 64 KiB TCPv4 GSO super-frame with its virtio-net header, from `src_ip`, as a tap with TSO
/// hands it over (partial checksum, gso_size 1448).
fn tcp_super_frame(dst: MacAddr, src: MacAddr, src_ip: Ipv4Addr) -> Vec<u8> {
    let payload = 65_000;
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((52 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[10, 0, 0, 2]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18, 1, 0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.resize(f.len() + payload, 0xab);
    VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
    .emit(&mut f);
    f
}

fn switch(ports: usize) -> Switch {
    guarded_switch(ports, None)
}

/// `ports` ports; port 0 guarded by `policy`.
fn guarded_switch(ports: usize, policy: Option<PortPolicy>) -> Switch {
    let specs = (0..ports)
        .map(|i| PortSpec {
            name: format!("p{i}"),
            mtu: 1500,
            isolated: false,
            policy: if i == 0 { policy.clone() } else { None },
            vlan: Default::default(),
            limits: Default::default(),
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
    // The same hit from a guarded port: a real IPv4/UDP header, a policy with the host's MAC,
    // its address and a few declared extras (the common shape).
    let ip = Ipv4Addr::new(10, 0, 0, 11);
    let mut policy = PortPolicy::for_host(a, Some(ip));
    for extra in ["10.0.0.50/32", "10.0.0.64/28", "10.0.1.0/24"] {
        policy.ipv4.insert(extra.parse().unwrap());
    }
    let guarded = guarded_switch(4, Some(policy));
    guarded.process(PortId(1), &frame(a, b), now);
    let unicast_udp = udp_frame(b, a, ip);
    assert_eq!(
        guarded.process(PortId(0), &unicast_udp, now),
        switchyard::switch::Verdict::Forward(PortId(1)),
        "the guarded frame must pass the guard, or the bench measures a drop"
    );
    c.bench_function("process/unicast_hit_unguarded_udp", |bench| {
        bench.iter(|| sw.process(black_box(PortId(0)), black_box(&unicast_udp), now))
    });
    c.bench_function("process/unicast_hit_guarded", |bench| {
        bench.iter(|| guarded.process(black_box(PortId(0)), black_box(&unicast_udp), now))
    });
    // The same hit for a 64 KiB super-frame: the decision reads the same headers (plus the
    // virtio-net header, for the MTU check), so it should cost what a plain frame costs.
    let super_frame = tcp_super_frame(b, a, ip);
    assert_eq!(
        guarded.process_vnet(PortId(0), &super_frame, now),
        switchyard::switch::Verdict::Forward(PortId(1)),
    );
    c.bench_function("process/gso_64k_guarded", |bench| {
        bench.iter(|| guarded.process_vnet(black_box(PortId(0)), black_box(&super_frame), now))
    });
    // What a port without offloads costs instead: cutting it into 45 frames with checksums.
    let mut scratch = vec![0u8; 70_000];
    c.bench_function("gso/segment_64k_tcpv4", |bench| {
        bench.iter(|| {
            let mut n = 0usize;
            for_each_segment(black_box(&super_frame), 1500, &mut scratch, |s| {
                n += s.len()
            })
            .unwrap();
            n
        })
    });
    let bcast = frame(MacAddr::BROADCAST, a);
    c.bench_function("process/flood_4_ports", |bench| {
        bench.iter(|| {
            let v = sw.process(black_box(PortId(0)), black_box(&bcast), now);
            (v, sw.flood_targets(PortId(0), &bcast).count())
        })
    });
}

/// The cost of a VLAN: a unicast hit of a tagged frame between two trunk ports (VLAN 10, the
/// FDB's VLAN-10 table), a hit from an access port of VLAN 10 (untagged in, to go out tagged),
/// and the tag push the worker does for that egress (`wire::vlan::push_tag`, 1514 bytes).
fn vlan(c: &mut Criterion) {
    let now = Duration::from_secs(1);
    let trunk = || PortVlan::Trunk {
        allowed: [10].into_iter().collect(),
        native: None,
    };
    let specs = (0..4)
        .map(|i| PortSpec {
            name: format!("p{i}"),
            mtu: 1500,
            isolated: false,
            policy: None,
            vlan: if i == 3 {
                PortVlan::Access(10)
            } else {
                trunk()
            },
            limits: Default::default(),
        })
        .collect();
    let sw = Switch::new(&SwitchParams::default(), specs);
    let (a, b) = (mac(1), mac(2));
    let tag = |mut f: Vec<u8>| {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        f.truncate(1514);
        f
    };
    sw.process(PortId(1), &tag(frame(a, b)), now);
    let tagged = tag(frame(b, a));
    assert_eq!(
        sw.process(PortId(0), &tagged, now),
        switchyard::switch::Verdict::Forward(PortId(1))
    );
    c.bench_function("process/unicast_hit_tagged_trunk", |bench| {
        bench.iter(|| sw.process(black_box(PortId(0)), black_box(&tagged), now))
    });
    let untagged = frame(b, a);
    assert_eq!(
        sw.process(PortId(3), &untagged, now),
        switchyard::switch::Verdict::Forward(PortId(1))
    );
    c.bench_function("process/unicast_hit_access_vlan", |bench| {
        bench.iter(|| sw.process(black_box(PortId(3)), black_box(&untagged), now))
    });
    let mut with_hdr = vec![0u8; VNET_HDR_LEN];
    with_hdr.extend_from_slice(&untagged);
    let mut out = vec![0u8; with_hdr.len() + 4];
    c.bench_function("vlan/push_tag_1514", |bench| {
        bench.iter(|| push_tag(black_box(&with_hdr), 10, &mut out))
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
        // What the daemon's worker does: the buckets of a batch prefetched, then the lookups.
        // One iteration is a batch of 32; the time reported is the batch's divided by 32, i.e.
        // per lookup, comparable with `lookup_{n}`.
        c.bench_function(&format!("fdb/lookup_prefetched_{n}"), |bench| {
            bench.iter_custom(|iters| {
                let mut batch = [mac(0); 32];
                let start = Instant::now();
                for _ in 0..iters {
                    for m in &mut batch {
                        i = (i + 7919) % n;
                        *m = mac(i);
                        fdb.prefetch(*m);
                    }
                    for m in &batch {
                        black_box(fdb.lookup(black_box(*m), now));
                    }
                }
                start.elapsed() / 32
            })
        });
    }
}

/// The floor under `fdb/lookup_1000000`: one dependent random read in a 32 MiB array (about
/// what a million-entry table occupies), i.e. a DRAM access plus a TLB miss, with no hashing and
/// no lock. A lookup in a table that does not fit the caches costs a small multiple of this.
fn memory_floor(c: &mut Criterion) {
    const LEN: usize = 4 << 20; // 4 Mi u64 = 32 MiB
                                // Sattolo's algorithm: one cycle through every slot, so each read depends on the last.
    let mut next: Vec<u64> = (0..LEN as u64).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..LEN).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        next.swap(i, (x % i as u64) as usize);
    }
    let mut at = 0usize;
    c.bench_function("mem/dependent_random_read_32MiB", |bench| {
        bench.iter(|| {
            at = next[at] as usize;
            at
        })
    });
}

criterion_group!(benches, process, vlan, fdb, memory_floor);
criterion_main!(benches);
