//! The VXLAN header (RFC 7348 §5) and the inner-flow hash a VTEP picks its UDP source port with.
//!
//! # Theory of operation
//!
//! A VXLAN packet is an Ethernet frame behind 8 bytes, carried in UDP (IANA port 4789):
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! On receipt the I flag must be set ("MUST be set to 1 for a valid VNI"); the reserved bits
//! "MUST be ignored", so [`VxlanHeader::parse`] looks at the I flag and the VNI only. On
//! transmit every reserved bit is zero ([`VxlanHeader::emit`]).
//!
//! The outer UDP source port should carry entropy from the inner frame, so that routers on the
//! underlay spread different flows over their ECMP paths while one flow stays in order (§5:
//! "a hash of fields from the inner packet"). [`flow_hash`] hashes the inner frame's L3/L4
//! 5-tuple when it has one (IPv4 or IPv6, TCP or UDP, through one 802.1Q tag, not a later
//! fragment) and its MACs and EtherType otherwise; equal flows always hash equal.
//!
//! A frame can arrive with its TCP or UDP checksum not yet computed: when the far VTEP's kernel
//! sends over a veth (or any device that takes checksum offload), the inner segment leaves
//! `CHECKSUM_PARTIAL` and the UDP socket hands it over as it is, with only the pseudo-header
//! sum in the checksum field. [`partial_checksum`] recognises exactly that (the field equals
//! the pseudo-header sum and the checksum does not verify) and says where the checksum goes,
//! so the port can mark the frame `F_NEEDS_CSUM` in its virtio-net header, as a tap would: the
//! egress tap's kernel or `wire::gso` completes it. A frame with a correct checksum costs one
//! pseudo-header sum; only one whose field looks partial is summed whole.
//!
//! Overhead on the underlay: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 = 50 bytes per frame
//! ([`OVERHEAD_IPV4`]), 70 over IPv6 ([`OVERHEAD_IPV6`]). An inner IP MTU of 1500 needs an
//! underlay IP MTU of 1550 (IPv4); the Linux `vxlan` device's default MTU is 1450 for that reason.

use super::gso::{GSO_TCPV4, GSO_TCPV6};
use super::{EtherType, VnetHeader, ETHERNET_HEADER_LEN, VLAN_TAG_LEN};

/// Bytes of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;
/// The IANA-assigned UDP destination port.
pub const VXLAN_PORT: u16 = 4789;
/// Largest VNI: 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Outer Ethernet + IPv4 + UDP + VXLAN header.
pub const OVERHEAD_IPV4: usize = ETHERNET_HEADER_LEN + 20 + 8 + VXLAN_HEADER_LEN;
/// Outer Ethernet + IPv6 + UDP + VXLAN header.
pub const OVERHEAD_IPV6: usize = ETHERNET_HEADER_LEN + 40 + 8 + VXLAN_HEADER_LEN;

/// The I flag: the VNI is valid.
const FLAG_I: u8 = 0x08;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// What an 8-byte VXLAN header says, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    pub vni: u32,
}

/// Why a datagram is not a VXLAN packet this switch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VxlanError {
    /// Shorter than the header.
    Truncated,
    /// The I flag is clear: no valid VNI.
    NoVni,
}

impl VxlanHeader {
    /// Reads the header at the front of `b` (a UDP payload).
    pub fn parse(b: &[u8]) -> Result<VxlanHeader, VxlanError> {
        let h = b.get(..VXLAN_HEADER_LEN).ok_or(VxlanError::Truncated)?;
        if h[0] & FLAG_I == 0 {
            return Err(VxlanError::NoVni);
        }
        Ok(VxlanHeader {
            vni: u32::from_be_bytes([0, h[4], h[5], h[6]]),
        })
    }

    /// Writes the header into the first [`VXLAN_HEADER_LEN`] bytes of `b` (reserved bits zero).
    /// The VNI is taken modulo 2^24; the config never gives a larger one.
    pub fn emit(&self, b: &mut [u8; VXLAN_HEADER_LEN]) {
        let v = self.vni.to_be_bytes();
        *b = [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
    }

    pub fn to_bytes(self) -> [u8; VXLAN_HEADER_LEN] {
        let mut b = [0; VXLAN_HEADER_LEN];
        self.emit(&mut b);
        b
    }
}

/// FNV-1a over `parts`, then a final avalanche (the low bits pick a source port).
fn fnv(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h
}

/// A hash of the inner frame's flow: its 5-tuple for TCP and UDP over IPv4 or IPv6 (through one
/// VLAN tag), its addresses and protocol for other IP, its MACs and EtherType for the rest.
/// Pure and stable: the same flow always gets the same hash (and so the same source port).
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Some(l2) = frame.get(..ETHERNET_HEADER_LEN) else {
        return fnv(&[frame]);
    };
    let (mut ethertype, mut l3) = (u16::from_be_bytes([l2[12], l2[13]]), ETHERNET_HEADER_LEN);
    if EtherType::from(ethertype) == EtherType::Vlan {
        if let Some(t) = frame.get(ETHERNET_HEADER_LEN + 2..ETHERNET_HEADER_LEN + 4) {
            ethertype = u16::from_be_bytes([t[0], t[1]]);
            l3 += VLAN_TAG_LEN;
        }
    }
    let ip = frame.get(l3..).unwrap_or_default();
    let tuple = match EtherType::from(ethertype) {
        EtherType::Ipv4 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
            let more_fragments = ip[6] & 0x20 != 0;
            let ports = (!later_fragment && !more_fragments)
                .then(|| l4_ports(ip[9], ip.get(ihl..)))
                .flatten();
            Some((&ip[12..20], ip[9], ports))
        }
        EtherType::Ipv6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            Some((&ip[8..40], ip[6], l4_ports(ip[6], ip.get(40..))))
        }
        _ => None,
    };
    match tuple {
        Some((addrs, proto, ports)) => {
            fnv(&[addrs, &[proto], ports.as_ref().map_or(&[][..], |p| &p[..])])
        }
        None => fnv(&[&l2[..12], &ethertype.to_be_bytes()]),
    }
}

/// The virtio-net header a received inner frame gets: all zero for a complete frame;
/// `F_NEEDS_CSUM` where the far kernel left the checksum partial ([`partial_checksum`]); and,
/// for a partial TCP segment longer than `mtu` (the far kernel's GSO super-frame: over a veth
/// the kernel hands a UDP socket the tunnel's unsegmented skb as one datagram), a TCP GSO
/// header cutting it into segments of at most `mtu` IP bytes, which a tap takes as it is and
/// `wire::gso` segments for every other port. A complete frame longer than `mtu` stays plain:
/// the switch drops it (`mtu`).
pub fn rx_offload(frame: &[u8], mtu: u32) -> VnetHeader {
    let Some((csum_start, csum_offset)) = partial_checksum(frame) else {
        return VnetHeader::default();
    };
    let mut hdr = VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        csum_start,
        csum_offset,
        ..VnetHeader::default()
    };
    let l4 = usize::from(csum_start);
    let l3 = if frame.get(12..14) == Some(&[0x81, 0x00]) {
        ETHERNET_HEADER_LEN + VLAN_TAG_LEN
    } else {
        ETHERNET_HEADER_LEN
    };
    let is_tcp = csum_offset == 16;
    let Some(&data_offset) = frame.get(l4 + 12) else {
        return hdr;
    };
    let tcp_len = usize::from(data_offset >> 4) * 4;
    let payload = l4 + tcp_len;
    let mtu = mtu as usize;
    if !is_tcp || tcp_len < 20 || payload > frame.len() {
        return hdr;
    }
    if frame.len() - l3 <= mtu || payload - l3 >= mtu {
        return hdr;
    }
    let is_ipv6 = l4 - l3 == 40 && frame[l3] >> 4 == 6;
    hdr.gso_type = if is_ipv6 { GSO_TCPV6 } else { GSO_TCPV4 };
    hdr.hdr_len = payload as u16;
    hdr.gso_size = (mtu - (payload - l3)) as u16;
    hdr
}

/// Where the inner frame's L4 checksum must be completed, as a virtio-net header's
/// `(csum_start, csum_offset)`, if the frame is a TCP or UDP segment (IPv4 not fragmented, or
/// IPv6 without extension headers, through one VLAN tag) whose checksum field holds only the
/// pseudo-header sum and does not verify. `None` for everything else, including a checksum
/// that is simply wrong (the receiver drops that one, as it should).
pub fn partial_checksum(frame: &[u8]) -> Option<(u16, u16)> {
    let mut l3 = ETHERNET_HEADER_LEN;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if EtherType::from(ethertype) == EtherType::Vlan {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 += VLAN_TAG_LEN;
    }
    let ip = frame.get(l3..)?;
    let (l4_at, proto, pseudo) = match EtherType::from(ethertype) {
        EtherType::Ipv4 => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None; // a fragment: the checksum covers the whole datagram
            }
            let len = (total - ihl) as u32;
            let sum = word_sum(&ip[12..20]) + u32::from(ip[9]) + len;
            (ihl, ip[9], (sum, total))
        }
        EtherType::Ipv6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + len > ip.len() {
                return None;
            }
            let sum = word_sum(&ip[8..40]) + u32::from(ip[6]) + len as u32;
            (40, ip[6], (sum, 40 + len))
        }
        _ => return None,
    };
    let (pseudo, end) = pseudo;
    let offset = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return None,
    };
    if end != ip.len() {
        // Bytes after the IP packet: a completion from csum_start to the frame's end (a tap's
        // kernel, `wire::gso`) would sum them too. Not what a far kernel's UDP socket delivers.
        return None;
    }
    let l4 = ip.get(l4_at..end)?;
    let field = u16::from_be_bytes([*l4.get(offset)?, *l4.get(offset + 1)?]);
    if proto == IPPROTO_UDP && field == 0 {
        return None; // IPv4 UDP without a checksum
    }
    if field != fold(pseudo) || super::ipv4::checksum(l4, pseudo) == 0 {
        return None;
    }
    Some(((l3 + l4_at) as u16, offset as u16))
}

fn word_sum(b: &[u8]) -> u32 {
    b.chunks_exact(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum()
}

/// The ones'-complement sum folded to 16 bits (not complemented).
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The source and destination ports of a TCP or UDP header at the front of `l4`.
fn l4_ports(proto: u8, l4: Option<&[u8]>) -> Option<[u8; 4]> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let p = l4?.get(..4)?;
    Some([p[0], p[1], p[2], p[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VXLAN header as the Linux `vxlan` device sends it for VNI 42 (from a capture:
    /// `08 00 00 00 00 00 2a 00`).
    const KERNEL_VNI_42: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 0x2a, 0];

    #[test]
    fn parses_and_emits_the_kernel_header() {
        assert_eq!(
            VxlanHeader::parse(&KERNEL_VNI_42),
            Ok(VxlanHeader { vni: 42 })
        );
        assert_eq!(VxlanHeader { vni: 42 }.to_bytes(), KERNEL_VNI_42);
        let big = VxlanHeader { vni: MAX_VNI };
        assert_eq!(VxlanHeader::parse(&big.to_bytes()), Ok(big));
        assert_eq!(big.to_bytes(), [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
    }

    #[test]
    fn reserved_bits_are_ignored_the_i_flag_is_not() {
        let mut h = KERNEL_VNI_42;
        h[0] |= 0xf7;
        h[1] = 0xaa;
        h[7] = 0x55;
        assert_eq!(VxlanHeader::parse(&h), Ok(VxlanHeader { vni: 42 }));
        h[0] &= !FLAG_I;
        assert_eq!(VxlanHeader::parse(&h), Err(VxlanError::NoVni));
        assert_eq!(
            VxlanHeader::parse(&KERNEL_VNI_42[..7]),
            Err(VxlanError::Truncated)
        );
    }

    #[test]
    fn overheads_are_50_and_70() {
        assert_eq!((OVERHEAD_IPV4, OVERHEAD_IPV6), (50, 70));
    }

    fn tcp4(sport: u16, dport: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.resize(f.len() + 16, 0);
        f
    }

    /// The SYN-ACK a kernel `vxlan` device sent over a veth, as the far VTEP's UDP socket
    /// received it (captured in the interop test): 10.13.31.127:7000 -> 10.13.31.10:33666, its
    /// checksum field 0x52d1 the pseudo-header sum only (tcpdump: "incorrect -> 0xac55").
    fn syn_ack(check: u16) -> Vec<u8> {
        let mut f = vec![
            0x52, 0x54, 0, 0x31, 0, 0x0a, 0x52, 0x54, 0, 0x31, 0, 0x20, 0x08, 0x00,
        ];
        f.extend_from_slice(&[
            0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 13, 31, 127, 10, 13, 31, 10,
        ]);
        let cs = super::super::ipv4::checksum(&f[14..34], 0);
        f[24..26].copy_from_slice(&cs.to_be_bytes());
        f.extend_from_slice(&[0x1b, 0x58, 0x83, 0x82]); // ports 7000 -> 33666
        f.extend_from_slice(&1_114_972_716u32.to_be_bytes());
        f.extend_from_slice(&1_043_334_260u32.to_be_bytes());
        f.extend_from_slice(&[0xa0, 0x12, 0xfe, 0x88]);
        f.extend_from_slice(&check.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&[2, 4, 0x05, 0xb4, 4, 2, 8, 10]);
        f.extend_from_slice(&596_511_217u32.to_be_bytes());
        f.extend_from_slice(&1_726_377_958u32.to_be_bytes());
        f.extend_from_slice(&[1, 3, 3, 10]);
        f
    }

    #[test]
    fn a_partial_checksum_is_found_a_complete_or_wrong_one_is_not() {
        let partial = syn_ack(0x52d1);
        assert_eq!(partial_checksum(&partial), Some((34, 16)));
        // Completed as a NIC would (the sum from csum_start on, the pseudo-header sum being
        // in the field already), the same frame verifies and is left alone.
        let full = super::super::ipv4::checksum(&partial[34..], 0);
        let complete = syn_ack(full);
        assert_eq!(full, 0xac55, "tcpdump's 'correct' value");
        assert_eq!(partial_checksum(&complete), None);
        // A wrong checksum that is not the pseudo-header sum is the receiver's to drop.
        assert_eq!(partial_checksum(&syn_ack(0x1234)), None);
        // Behind a VLAN tag the offsets move by 4.
        let mut tagged = partial[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        tagged.extend_from_slice(&partial[12..]);
        assert_eq!(partial_checksum(&tagged), Some((38, 16)));
        // Truncated or non-IP frames never panic; trailing bytes make it not ours to mark.
        for n in 0..partial.len() {
            assert_eq!(partial_checksum(&partial[..n]), None, "{n}");
        }
        let mut padded = partial.clone();
        padded.push(0x5a);
        assert_eq!(partial_checksum(&padded), None);
    }

    /// A TCP super-frame as the far kernel's GSO leaves it: 10 segments' worth of payload
    /// behind one header, the checksum field the pseudo-header sum over the whole length.
    fn super_frame(payload: usize) -> Vec<u8> {
        let total = 20 + 32 + payload;
        let mut f = vec![
            0x52, 0x54, 0, 0x31, 0, 0x0a, 0x52, 0x54, 0, 0x31, 0, 0x20, 0x08, 0x00,
        ];
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&[10, 13, 31, 127, 10, 13, 31, 10]);
        let cs = super::super::ipv4::checksum(&f[14..34], 0);
        f[24..26].copy_from_slice(&cs.to_be_bytes());
        let mut tcp = vec![
            0x14, 0x51, 0x83, 0x82, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x10, 1, 0,
        ];
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(&tcp);
        f.extend((0..payload).map(|i| i as u8));
        let pseudo = word_sum(&f[26..34]) + 6 + (total - 20) as u32;
        let p = fold(pseudo);
        f[50..52].copy_from_slice(&p.to_be_bytes());
        f
    }

    #[test]
    fn a_partial_super_frame_becomes_tcp_gso_at_the_mtu() {
        let f = super_frame(14_480);
        let h = rx_offload(&f, 1500);
        assert_eq!(
            (
                h.flags,
                h.gso_type,
                h.hdr_len,
                h.gso_size,
                h.csum_start,
                h.csum_offset
            ),
            (VnetHeader::F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
        );
        // The switch's own GSO code takes it and cuts ten MTU-sized segments.
        let mut b = vec![0u8; crate::wire::VNET_HDR_LEN];
        h.emit(&mut b);
        b.extend_from_slice(&f);
        let mut scratch = vec![0u8; b.len()];
        let mut sizes = Vec::new();
        let n = super::super::gso::for_each_segment(&b, 1500, &mut scratch, |seg| {
            sizes.push(seg.len() - crate::wire::VNET_HDR_LEN)
        })
        .unwrap();
        assert_eq!((n, sizes[0]), (10, 1514));
        // One MTU-sized partial segment only needs its checksum; a complete frame nothing.
        let small = rx_offload(&super_frame(1448), 1500);
        assert_eq!((small.flags, small.gso_type), (VnetHeader::F_NEEDS_CSUM, 0));
        assert_eq!(rx_offload(&syn_ack(0xac55), 1500), VnetHeader::default());
        // A TCP data offset below 5 words: the checksum is still completed, never cut.
        let mut bad = super_frame(14_480);
        bad[14 + 20 + 12] = 0x40;
        let h = rx_offload(&bad, 1500);
        assert_eq!((h.flags, h.gso_type), (VnetHeader::F_NEEDS_CSUM, 0));
    }

    /// The fuzz target's oracle (`fuzz/fuzz_targets/vxlan.rs`) over seeded random mutations
    /// of real frames: whatever header `rx_offload` makes, `wire::gso` completes it into
    /// segments that fit the MTU with checksums that verify.
    #[test]
    fn rx_offload_headers_always_complete_to_verifying_segments() {
        let seeds = [
            super_frame(14_480),
            super_frame(1448),
            syn_ack(0x52d1),
            super_frame(3000),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut marked = 0;
        for i in 0..8_000 {
            let mut f = seeds[i % seeds.len()].clone();
            for _ in 0..rnd() % 4 {
                let at = (rnd() as usize) % 60;
                f[at] = rnd() as u8;
            }
            if rnd() % 4 == 0 {
                f.truncate((rnd() as usize) % f.len());
            }
            // Keep the seeds' partial checksum right for the mutated headers, most of the time.
            if f.len() > 54 && rnd() % 2 == 0 && f[12..14] == [8, 0] {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                if (20..=40).contains(&ihl) && 14 + ihl + 18 <= f.len() {
                    let tot = f.len() - 14;
                    f[16..18].copy_from_slice(&(tot as u16).to_be_bytes());
                    let p = fold(word_sum(&f[26..34]) + u32::from(f[23]) + (tot - ihl) as u32);
                    let at = 14 + ihl + if f[23] == 17 { 6 } else { 16 };
                    if at + 2 <= f.len() {
                        f[at..at + 2].copy_from_slice(&p.to_be_bytes());
                    }
                }
            }
            let mtu = 576 + (rnd() % 64) as u32 * 32;
            let hdr = rx_offload(&f, mtu);
            if hdr == VnetHeader::default() {
                continue;
            }
            marked += 1;
            let mut b = vec![0u8; crate::wire::VNET_HDR_LEN];
            hdr.emit(&mut b);
            b.extend_from_slice(&f);
            let mut scratch = vec![0u8; b.len() + 70_000];
            let l3 = if f[12..14] == [0x81, 0] { 18 } else { 14 };
            super::super::gso::for_each_segment(&b, mtu as usize, &mut scratch, |seg| {
                let g = &seg[crate::wire::VNET_HDR_LEN..];
                assert!(
                    g.len() - l3 <= mtu as usize || !hdr.is_gso(),
                    "{i}: too big"
                );
                let l4 = usize::from(hdr.csum_start);
                let pseudo = if g[l3] >> 4 == 6 {
                    word_sum(&g[l3 + 8..l3 + 40]) + u32::from(g[l3 + 6])
                } else {
                    word_sum(&g[l3 + 12..l3 + 20]) + u32::from(g[l3 + 9])
                };
                let len = (g.len() - l4) as u32;
                assert_eq!(
                    super::super::ipv4::checksum(&g[l4..], pseudo + len),
                    0,
                    "{i}"
                );
            })
            .unwrap_or_else(|e| panic!("{i}: {e:?} for {hdr:?}"));
        }
        assert!(
            marked > 1000,
            "the mutations kept too few frames partial: {marked}"
        );
    }

    #[test]
    fn flows_hash_by_their_five_tuple() {
        let a = flow_hash(&tcp4(40000, 5201, false));
        assert_eq!(a, flow_hash(&tcp4(40000, 5201, false)), "stable");
        assert_eq!(a, flow_hash(&tcp4(40000, 5201, true)), "through a tag");
        // Different ports spread: 64 flows land on many of 16 buckets.
        let buckets: std::collections::HashSet<u32> = (0..64)
            .map(|p| flow_hash(&tcp4(40000 + p, 5201, false)) % 16)
            .collect();
        assert!(buckets.len() >= 10, "{buckets:?}");
        // MACs do not matter for IP flows; they do for non-IP.
        let mut other_macs = tcp4(40000, 5201, false);
        other_macs[5] = 9;
        assert_eq!(a, flow_hash(&other_macs));
        let mut arp = tcp4(1, 2, false);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut arp2 = arp.clone();
        arp2[5] = 9;
        assert_ne!(flow_hash(&arp), flow_hash(&arp2));
        // A later fragment has no ports: it hashes like every fragment of its datagram.
        let mut frag = tcp4(1, 2, false);
        frag[14 + 6] = 0x20; // MF
        let mut frag2 = tcp4(3, 4, false);
        frag2[14 + 7] = 0x10; // offset
        assert_eq!(flow_hash(&frag), flow_hash(&frag2));
        // Runts and garbage hash without panicking.
        for n in 0..40 {
            flow_hash(&tcp4(1, 2, false)[..n]);
        }
    }
}
