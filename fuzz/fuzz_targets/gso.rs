//! Frames with a virtio-net header through `wire::gso::for_each_segment`, at an MTU from the
//! first byte: never panics; a frame that needs no software work comes out unchanged; every
//! frame made in software has a zeroed virtio-net header; every segment of a super-frame fits
//! the MTU and carries a correct IPv4 header checksum and a correct TCP/UDP checksum (checked
//! with `checksum` below, an independent 16-bit implementation, not the crate's own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::wire::gso::{self, GsoLayout};
use switchyard::wire::{VnetHeader, VNET_HDR_LEN};

/// The internet checksum (RFC 1071) summed 16 bits at a time, from a partial `sum`.
fn checksum(b: &[u8], sum: u32) -> u16 {
    let mut s = sum + words(b);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, bytes)) = data.split_first() else {
        return;
    };
    let mtu = 68 + usize::from(m) * 8;
    let mut scratch = vec![0u8; 70_000];
    let needs = gso::needs_software(bytes);
    let layout = VnetHeader::parse(bytes)
        .filter(VnetHeader::is_gso)
        .and_then(|h| GsoLayout::parse(&h, &bytes[VNET_HDR_LEN..]).ok());
    let mut seen = 0;
    let result = gso::for_each_segment(bytes, mtu, &mut scratch, |s| {
        seen += 1;
        if !needs {
            assert_eq!(s, bytes, "a plain frame must pass unchanged");
            return;
        }
        assert!(
            s[..VNET_HDR_LEN].iter().all(|b| *b == 0),
            "header not zeroed"
        );
        let Some(l) = layout else { return };
        let f = &s[VNET_HDR_LEN..];
        assert!(f.len() - l.l3 <= mtu, "segment larger than the MTU");
        let l4_len = f.len() - l.l4;
        let pseudo = if l.is_ipv6 {
            words(&f[l.l3 + 8..l.l3 + 40])
        } else {
            assert_eq!(checksum(&f[l.l3..l.l4], 0), 0, "IPv4 header checksum");
            words(&f[l.l3 + 12..l.l3 + 20])
        };
        let proto = if l.is_tcp { 6 } else { 17 };
        assert_eq!(
            checksum(&f[l.l4..], pseudo + proto + l4_len as u32),
            0,
            "L4 checksum"
        );
    });
    if let Ok(n) = result {
        assert_eq!(n, seen, "the count returned is the count handed out");
    }
});
