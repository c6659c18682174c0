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
//! Overhead on the underlay: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 = 50 bytes per frame
//! ([`OVERHEAD_IPV4`]), 70 over IPv6 ([`OVERHEAD_IPV6`]). An inner IP MTU of 1500 needs an
//! underlay IP MTU of 1550 (IPv4); the Linux `vxlan` device's default MTU is 1450 for that reason.

use super::{EtherType, ETHERNET_HEADER_LEN, VLAN_TAG_LEN};

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
