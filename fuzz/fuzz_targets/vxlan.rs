//! Datagrams as a vxlan port receives them, through `port::vxlan::decap` and
//! `wire::vxlan::rx_offload` at an MTU from the first byte: never panics; the header round-trips;
//! and whatever virtio-net header `rx_offload` gives the inner frame is one the switch's own
//! `wire::gso` accepts: a GSO header cuts into segments that fit the MTU with correct TCP
//! checksums, a checksum-only header completes to a checksum that verifies (checked with
//! `wire::ipv4::checksum`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::port::vxlan::decap;
use switchyard::wire::gso::{self, GsoLayout};
use switchyard::wire::ipv4::checksum;
use switchyard::wire::vxlan::{flow_hash, rx_offload, VxlanHeader, VXLAN_HEADER_LEN};
use switchyard::wire::{VnetHeader, VNET_HDR_LEN};

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, datagram)) = data.split_first() else {
        return;
    };
    let mtu = 576 + u32::from(m) * 32;
    let from = "192.0.2.2".parse().unwrap();
    let remotes = ["192.0.2.2:4789".parse().unwrap()];
    let Ok(vni) = VxlanHeader::parse(datagram).map(|h| h.vni) else {
        return;
    };
    assert_eq!(
        VxlanHeader::parse(&VxlanHeader { vni }.to_bytes()),
        Ok(VxlanHeader { vni })
    );
    if decap(datagram, from, vni, &remotes).is_err() {
        return;
    }
    let inner = &datagram[VXLAN_HEADER_LEN..];
    let _ = flow_hash(inner);
    let hdr = rx_offload(inner, mtu);
    if hdr == VnetHeader::default() {
        return;
    }
    let mut bytes = vec![0u8; VNET_HDR_LEN];
    hdr.emit(&mut bytes);
    bytes.extend_from_slice(inner);
    let mut scratch = vec![0u8; bytes.len() + 70_000];
    let layout = hdr
        .is_gso()
        .then(|| GsoLayout::parse(&hdr, inner).expect("rx_offload made a GSO header gso rejects"));
    let start = usize::from(hdr.csum_start);
    gso::for_each_segment(&bytes, mtu as usize, &mut scratch, |s| {
        let f = &s[VNET_HDR_LEN..];
        let (l3, l4, is_ipv6) = match layout {
            Some(l) => {
                assert!(
                    f.len() - l.l3 <= mtu as usize,
                    "segment larger than the MTU"
                );
                (l.l3, l.l4, l.is_ipv6)
            }
            None => {
                let l3 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
                (l3, start, f[l3] >> 4 == 6)
            }
        };
        let end = if is_ipv6 {
            l3 + 40 + usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]))
        } else {
            l3 + usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]))
        };
        let pseudo = if is_ipv6 {
            words(&f[l3 + 8..l3 + 40]) + u32::from(f[l3 + 6])
        } else {
            words(&f[l3 + 12..l3 + 20]) + u32::from(f[l3 + 9])
        };
        assert_eq!(
            checksum(&f[l4..end], pseudo + (end - l4) as u32),
            0,
            "L4 checksum after completion"
        );
    })
    .expect("rx_offload made a header gso cannot complete");
});
