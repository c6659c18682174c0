//! Segmentation checked against an independent checksum (`ipv4::checksum`, 16 bits at a time)
//! and an independent reading of every header field.

use super::*;
use crate::wire::ipv4::checksum;

const SRC4: [u8; 4] = [10, 13, 31, 11];
const DST4: [u8; 4] = [10, 13, 31, 12];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];
const SEQ: u32 = 0xffff_f000; // wraps during the 64 KiB frame

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sum of 16-bit words for the pseudo header, written independently of the code under test.
fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold32(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

struct Spec {
    ipv6: bool,
    tcp: bool,
    vlan: bool,
    gso_size: u16,
    tcp_flags: u8,
    payload: usize,
}

/// A super-frame with its virtio-net header: the L4 checksum holds the pseudo-header sum
/// (CHECKSUM_PARTIAL, as the kernel hands it over) and NEEDS_CSUM is set.
fn super_frame(s: &Spec) -> Vec<u8> {
    let data = payload(s.payload);
    let mut l4 = Vec::new();
    if s.tcp {
        l4.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]); // ports 40000 → 5201
        l4.extend_from_slice(&SEQ.to_be_bytes());
        l4.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // ack
        l4.extend_from_slice(&[0x80, s.tcp_flags, 0x01, 0xf5, 0, 0, 0, 0]); // doff 8: 12 B options
        l4.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
    } else {
        l4.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0]);
        let len = (8 + s.payload) as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let l4_len = l4.len() + data.len();
    let proto = if s.tcp { 6u8 } else { 17 };
    let mut ip = Vec::new();
    let pseudo = if s.ipv6 {
        ip.extend_from_slice(&[0x60, 0, 0, 0]);
        ip.extend_from_slice(&(l4_len as u16).to_be_bytes());
        ip.extend_from_slice(&[proto, 64]);
        ip.extend_from_slice(&SRC6);
        ip.extend_from_slice(&DST6);
        words(&SRC6) + words(&DST6)
    } else {
        let total = (20 + l4_len) as u16;
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0xab, 0xfe, 0x40, 0, 64, proto, 0, 0]); // id 0xabfe: wraps
        ip.extend_from_slice(&SRC4);
        ip.extend_from_slice(&DST4);
        let c = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        words(&SRC4) + words(&DST4)
    } + u32::from(proto)
        + l4_len as u32;
    let csum_offset = if s.tcp { 16 } else { 6 };
    l4[csum_offset..csum_offset + 2].copy_from_slice(&fold32(pseudo).to_be_bytes());

    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1]);
    if s.vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    f.extend_from_slice(if s.ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3 = f.len() - VNET_HDR_LEN;
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f.extend_from_slice(&data);
    let gso_type = match (s.tcp, s.ipv6) {
        (true, false) => GSO_TCPV4,
        (true, true) => GSO_TCPV6,
        (false, _) => GSO_UDP_L4,
    };
    let hdr = VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type,
        hdr_len: (l3 + ip.len() + l4.len()) as u16,
        gso_size: s.gso_size,
        csum_start: (l3 + ip.len()) as u16,
        csum_offset: csum_offset as u16,
        num_buffers: 0,
    };
    hdr.emit(&mut f);
    f
}

fn collect(frame: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, GsoError> {
    let mut scratch = vec![0u8; 70_000];
    let mut segs = Vec::new();
    let n = for_each_segment(frame, mtu, &mut scratch, |s| segs.push(s.to_vec()))?;
    assert_eq!(n, segs.len());
    Ok(segs)
}

/// Checks one plain segment independently; returns (tcp seq or 0, flags, ip id, payload).
fn verify(seg: &[u8], s: &Spec, mtu: usize) -> (u32, u8, u16, Vec<u8>) {
    assert_eq!(&seg[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN], "header zeroed");
    let f = &seg[VNET_HDR_LEN..];
    let l3 = if s.vlan { 18 } else { 14 };
    let (l4, pseudo, id) = if s.ipv6 {
        let plen = usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]));
        assert_eq!(l3 + 40 + plen, f.len(), "IPv6 payload length");
        assert!(40 + plen <= mtu, "segment fits the MTU");
        (l3 + 40, words(&f[l3 + 8..l3 + 40]) + plen as u32, 0)
    } else {
        let ip = &f[l3..l3 + 20];
        assert_eq!(checksum(ip, 0), 0, "IPv4 header checksum");
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(l3 + total, f.len(), "IPv4 total length");
        assert!(total <= mtu, "segment fits the MTU");
        (
            l3 + 20,
            words(&ip[12..20]) + (total - 20) as u32,
            u16::from_be_bytes([ip[4], ip[5]]),
        )
    };
    let proto = if s.tcp { 6 } else { 17 };
    assert_eq!(
        checksum(&f[l4..], pseudo + proto),
        0,
        "L4 checksum verifies"
    );
    if s.tcp {
        let seq = u32::from_be_bytes(f[l4 + 4..l4 + 8].try_into().unwrap());
        (seq, f[l4 + 13], id, f[l4 + 32..].to_vec())
    } else {
        let ulen = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
        assert_eq!(l4 + ulen, f.len(), "UDP length");
        assert_ne!(
            &f[l4 + 6..l4 + 8],
            &[0, 0],
            "UDP checksum is never sent as 0"
        );
        (0, 0, id, f[l4 + 8..].to_vec())
    }
}

fn check_segments(s: &Spec, mtu: usize, expect_chunk: usize) {
    let frame = super_frame(s);
    let segs = collect(&frame, mtu).unwrap();
    assert_eq!(segs.len(), s.payload.div_ceil(expect_chunk));
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let (seq, flags, id, data) = verify(seg, s, mtu);
        let last = i + 1 == segs.len();
        assert_eq!(
            data.len(),
            if last {
                s.payload - i * expect_chunk
            } else {
                expect_chunk
            }
        );
        if !s.ipv6 {
            assert_eq!(id, 0xabfeu16.wrapping_add(i as u16), "IPv4 id advances");
        }
        if s.tcp {
            assert_eq!(
                seq,
                SEQ.wrapping_add((i * expect_chunk) as u32),
                "seq advances"
            );
            let want_fin_psh = if last {
                s.tcp_flags & (TCP_FIN | TCP_PSH)
            } else {
                0
            };
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH),
                want_fin_psh,
                "FIN/PSH on last only"
            );
            let want_cwr = if i == 0 { s.tcp_flags & TCP_CWR } else { 0 };
            assert_eq!(flags & TCP_CWR, want_cwr, "CWR on first only");
            assert_eq!(flags & 0x10, 0x10, "ACK everywhere");
        }
        joined.extend_from_slice(&data);
    }
    assert_eq!(joined, payload(s.payload), "payload reassembles");
}

const ALL_FLAGS: u8 = TCP_FIN | TCP_PSH | TCP_CWR | 0x10;

#[test]
fn tcpv4_64k_frame_at_gso_size() {
    let s = Spec {
        ipv6: false,
        tcp: true,
        vlan: false,
        gso_size: 1448,
        tcp_flags: ALL_FLAGS,
        payload: 65_483, // 20 + 32 + 65_483 = 65_535: the largest IPv4 packet
    };
    check_segments(&s, 1500, 1448);
}

#[test]
fn tcpv4_recut_to_a_smaller_mtu() {
    let s = Spec {
        ipv6: false,
        tcp: true,
        vlan: true,
        gso_size: 8948,
        tcp_flags: TCP_PSH | 0x10,
        payload: 40_000,
    };
    check_segments(&s, 1500, 1448);
}

#[test]
fn tcpv6_64k_frame() {
    let s = Spec {
        ipv6: true,
        tcp: true,
        vlan: false,
        gso_size: 1428,
        tcp_flags: ALL_FLAGS,
        payload: 65_000,
    };
    check_segments(&s, 1500, 1428);
}

#[test]
fn udp_l4_ipv4_and_ipv6() {
    for ipv6 in [false, true] {
        let s = Spec {
            ipv6,
            tcp: false,
            vlan: false,
            gso_size: 1200,
            tcp_flags: 0,
            payload: 10 * 1200 + 17,
        };
        check_segments(&s, 1500, 1200);
    }
}

#[test]
fn udp_segment_larger_than_mtu_is_refused_not_recut() {
    let s = Spec {
        ipv6: false,
        tcp: false,
        vlan: false,
        gso_size: 1473, // 20 + 8 + 1473 = 1501
        tcp_flags: 0,
        payload: 5000,
    };
    assert_eq!(
        collect(&super_frame(&s), 1500),
        Err(GsoError::SegmentTooBig)
    );
}

#[test]
fn segment_l3_len_is_what_the_mtu_check_sees() {
    let s = Spec {
        ipv6: false,
        tcp: true,
        vlan: false,
        gso_size: 1448,
        tcp_flags: 0x10,
        payload: 30_000,
    };
    assert_eq!(segment_l3_len(&super_frame(&s)), Some(1500));
    let small = Spec { payload: 100, ..s };
    assert_eq!(segment_l3_len(&super_frame(&small)), Some(152));
    assert_eq!(segment_l3_len(&[0u8; 60]), None, "plain frame");
    assert!(needs_software(&super_frame(&small)));
    assert!(!needs_software(&[0u8; 60]));
}

/// A plain (non-GSO) UDP or TCP frame with a partial checksum, as a tap with TUN_F_CSUM hands it.
fn partial_frame(tcp: bool, ipv6: bool, len: usize) -> Vec<u8> {
    let s = Spec {
        ipv6,
        tcp,
        vlan: false,
        gso_size: 1448,
        tcp_flags: 0x18,
        payload: len,
    };
    let mut f = super_frame(&s);
    f[1] = 0; // gso_type NONE, NEEDS_CSUM stays
    f
}

#[test]
fn partial_checksums_are_completed() {
    for (tcp, ipv6) in [(true, false), (false, false), (true, true), (false, true)] {
        for len in [0, 1, 2, 3, 1000, 1001] {
            let f = partial_frame(tcp, ipv6, len);
            let segs = collect(&f, 1500).unwrap();
            assert_eq!(segs.len(), 1);
            let s = Spec {
                ipv6,
                tcp,
                vlan: false,
                gso_size: 0,
                tcp_flags: 0x18,
                payload: len,
            };
            let (_, _, _, data) = verify(&segs[0], &s, 1500);
            assert_eq!(data, payload(len));
            assert_eq!(
                &segs[0][VNET_HDR_LEN..],
                &{
                    let mut g = f[VNET_HDR_LEN..].to_vec();
                    let at = usize::from(u16::from_le_bytes([f[6], f[7]]))
                        + usize::from(u16::from_le_bytes([f[8], f[9]]));
                    g[at..at + 2]
                        .copy_from_slice(&segs[0][VNET_HDR_LEN + at..VNET_HDR_LEN + at + 2]);
                    g
                }[..],
                "only the checksum field changes"
            );
        }
    }
}

#[test]
fn plain_frame_passes_unchanged_without_copy() {
    let f = {
        let mut f = partial_frame(true, false, 100);
        f[0] = 2; // DATA_VALID, no NEEDS_CSUM
        f
    };
    let mut scratch = [0u8; 0];
    let mut seen = None;
    let n = for_each_segment(&f, 1500, &mut scratch, |s| seen = Some(s.as_ptr())).unwrap();
    assert_eq!((n, seen), (1, Some(f.as_ptr())));
}

#[test]
fn malformed_headers_are_errors() {
    let good = super_frame(&Spec {
        ipv6: false,
        tcp: true,
        vlan: false,
        gso_size: 1448,
        tcp_flags: 0x10,
        payload: 3000,
    });
    let edit = |at: usize, v: u8| {
        let mut f = good.clone();
        f[at] = v;
        f
    };
    let ip = VNET_HDR_LEN + 14;
    assert_eq!(
        collect(
            &{
                let mut f = edit(4, 0);
                f[5] = 0;
                f
            },
            1500
        ),
        Err(GsoError::Malformed("gso_size 0"))
    );
    assert!(matches!(
        collect(&edit(1, GSO_UDP), 1500),
        Err(GsoError::Unsupported(_))
    ));
    assert!(matches!(
        collect(&edit(1, 9), 1500),
        Err(GsoError::Unsupported(_))
    ));
    assert!(matches!(
        collect(&edit(1, GSO_TCPV6), 1500),
        Err(GsoError::Malformed(_))
    ));
    assert!(
        matches!(collect(&edit(ip, 0x44), 1500), Err(GsoError::Malformed(_))),
        "ihl 16"
    );
    assert!(
        matches!(collect(&edit(ip, 0x65), 1500), Err(GsoError::Malformed(_))),
        "version"
    );
    assert_eq!(
        collect(&edit(ip + 2, 0xff), 1500),
        Err(GsoError::Truncated),
        "total > frame"
    );
    assert!(
        matches!(
            collect(&edit(ip + 6, 0x20), 1500),
            Err(GsoError::Malformed(_))
        ),
        "MF"
    );
    assert!(matches!(
        collect(&edit(ip + 9, 17), 1500),
        Err(GsoError::Unsupported(_))
    ));
    assert!(
        matches!(
            collect(&edit(ip + 32, 0x10), 1500),
            Err(GsoError::Malformed(_))
        ),
        "doff 4"
    );
    assert_eq!(
        collect(&good, 40),
        Err(GsoError::SegmentTooBig),
        "MTU below the headers"
    );
    let mut tiny = [0u8; 100];
    assert_eq!(
        for_each_segment(&good, 1500, &mut tiny, |_| {}),
        Err(GsoError::ScratchTooSmall)
    );
    // A partial checksum whose field lies past the end.
    let mut p = partial_frame(false, false, 10);
    p[6..8].copy_from_slice(&60u16.to_le_bytes());
    assert!(matches!(collect(&p, 1500), Err(GsoError::Malformed(_))));
    p[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
    p[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(collect(&p, 1500), Err(GsoError::Malformed(_))));
}

#[test]
fn every_truncation_and_random_bytes_never_panic() {
    let frames = [
        super_frame(&Spec {
            ipv6: false,
            tcp: true,
            vlan: true,
            gso_size: 100,
            tcp_flags: 0x19,
            payload: 500,
        }),
        super_frame(&Spec {
            ipv6: true,
            tcp: false,
            vlan: false,
            gso_size: 100,
            tcp_flags: 0,
            payload: 500,
        }),
        partial_frame(true, true, 50),
    ];
    let mut scratch = vec![0u8; 2000];
    for f in &frames {
        for len in 0..f.len() {
            let _ = for_each_segment(&f[..len], 1500, &mut scratch, |_| {});
            let _ = segment_l3_len(&f[..len]);
        }
    }
    // Random single-byte corruptions of the headers (a cheap, deterministic fuzz).
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let f = &frames[(x % 3) as usize];
        let mut g = f.clone();
        for k in 0..3 {
            let at = ((x >> (k * 8)) as usize) % 100.min(g.len());
            g[at] = (x >> (k * 5)) as u8;
        }
        let mtu = 60 + (x as usize % 1500);
        let _ = for_each_segment(&g, mtu, &mut scratch, |_| {});
    }
}

#[test]
fn an_offload_read_once_and_moved_with_a_tag_is_what_reading_the_retagged_frame_gives() {
    use crate::wire::vlan::{pop_tag, push_tag};
    let mut frames = Vec::new();
    for (tcp, ipv6) in [(true, false), (false, false), (true, true), (false, true)] {
        let s = Spec {
            ipv6,
            tcp,
            vlan: false,
            gso_size: 1400,
            tcp_flags: 0x18,
            payload: 5000,
        };
        frames.push(super_frame(&s));
        frames.push(partial_frame(tcp, ipv6, 300));
    }
    frames.push(vec![0u8; VNET_HDR_LEN + 60]);
    for f in &frames {
        let offload = Offload::parse(f).unwrap();
        assert_eq!(offload.is_needed(), needs_software(f));
        assert_eq!(offload.segment_l3_len(), segment_l3_len(f));
        let mut tagged = vec![0u8; f.len() + VLAN_TAG_LEN];
        let n = push_tag(f, 7, &mut tagged).unwrap();
        let moved = offload.moved(VLAN_TAG_LEN as isize);
        assert_eq!(moved, Offload::parse(&tagged[..n]).unwrap());
        // Cut from the summary or from the bytes: the same segments.
        let mut scratch = vec![0u8; 70_000];
        let mut from_summary = Vec::new();
        for_each_segment_as(&tagged[..n], &moved, 1500, &mut scratch, |s| {
            from_summary.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(from_summary, collect(&tagged[..n], 1500).unwrap());
        let mut back = vec![0u8; n];
        let m = pop_tag(&tagged[..n], &mut back).unwrap();
        assert_eq!(moved.moved(-(VLAN_TAG_LEN as isize)), offload);
        assert_eq!(Offload::parse(&back[..m]).unwrap(), offload);
    }
}

#[test]
fn a_layout_that_does_not_fit_its_frame_is_an_error_not_a_panic() {
    let f = super_frame(&Spec {
        ipv6: false,
        tcp: true,
        vlan: false,
        gso_size: 1448,
        tcp_flags: 0x10,
        payload: 3000,
    });
    let Offload::Gso(good) = Offload::parse(&f).unwrap() else {
        panic!("a TCPv4 super-frame")
    };
    let mut scratch = vec![0u8; 70_000];
    let bad = [
        GsoLayout {
            end: f.len(),
            ..good
        },
        GsoLayout {
            gso_size: 0,
            ..good
        },
        GsoLayout {
            l4: good.l3 + 4,
            ..good
        },
        GsoLayout {
            payload: good.l4 + 4,
            ..good
        },
        GsoLayout {
            l3: usize::MAX - 8,
            ..good
        },
        GsoLayout {
            payload: good.end + 1,
            ..good
        },
    ];
    for layout in bad {
        let r = for_each_segment_as(&f, &Offload::Gso(layout), 1500, &mut scratch, |_| {});
        assert!(
            matches!(r, Err(GsoError::Malformed(_))),
            "{layout:?}: {r:?}"
        );
    }
    // The frame cut short under its layout (a summary carried to the wrong bytes).
    let r = for_each_segment_as(&f[..200], &Offload::Gso(good), 1500, &mut scratch, |_| {});
    assert!(r.is_err());
    assert_eq!(
        for_each_segment_as(&f[..4], &Offload::None, 1500, &mut scratch, |_| {}),
        Err(GsoError::Truncated)
    );
}
