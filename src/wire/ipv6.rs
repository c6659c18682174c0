//! IPv6/ICMPv6/UDP: the bounded parsing and complete-frame building the appliance's IPv6 side
//! needs (neighbour discovery, router advertisements, ping6, DHCPv6).
//!
//! Parsing takes untrusted bytes and returns `None` for anything it cannot vouch for: a
//! truncated header, a payload length that lies, a wrong checksum. Extension headers are not
//! walked: what the appliance answers (NS, RS, echo requests, DHCPv6) comes without them from
//! every stack it serves, and anything else is simply not answered. Building always fills the
//! ICMPv6/UDP checksum (it is mandatory in IPv6, RFC 8200 §8.1).

use std::net::Ipv6Addr;

use super::ipv4::{checksum, push_ethernet};
use super::{EtherType, EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};

pub const IPV6_HEADER_LEN: usize = 40;
pub const UDP_HEADER_LEN: usize = 8;
/// Next-header numbers the appliance reads.
pub const NEXT_UDP: u8 = 17;
pub const NEXT_ICMPV6: u8 = 58;

/// ICMPv6 types (RFC 4443, RFC 4861).
pub mod icmpv6 {
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICITATION: u8 = 133;
    pub const ROUTER_ADVERTISEMENT: u8 = 134;
    pub const NEIGHBOR_SOLICITATION: u8 = 135;
    pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;
}

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::1:2, all DHCPv6 relay agents and servers.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A) in `prefix`'s upper
/// 64 bits.
pub fn eui64(prefix: Ipv6Addr, mac: MacAddr) -> Ipv6Addr {
    let mut a = prefix.octets();
    let m = mac.octets();
    a[8..].copy_from_slice(&[m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(a)
}

/// fe80::/64 with `mac`'s EUI-64 interface identifier.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    eui64(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), mac)
}

/// The multicast MAC an IPv6 multicast `addr` maps to (RFC 2464 §7: 33:33 + its last 4 bytes).
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let a = addr.octets();
    MacAddr([0x33, 0x33, a[12], a[13], a[14], a[15]])
}

/// The solicited-node multicast address of `addr` (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let a = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15],
    ])
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1), for [`checksum`].
pub fn pseudo_header_sum(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> u32 {
    let mut sum = 0u32;
    for a in [src.octets(), dst.octets()] {
        for c in a.chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
    }
    sum + (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(next)
}

/// A parsed IPv6 packet inside an untagged Ethernet frame, without extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6View<'a> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    /// The upper-layer bytes, bounded by the payload length (Ethernet padding removed).
    pub payload: &'a [u8],
}

impl<'a> Ipv6View<'a> {
    /// Parses `frame`; `None` unless it is IPv6 whose payload length fits the frame.
    pub fn parse(frame: &'a [u8]) -> Option<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != EtherType::Ipv6 {
            return None;
        }
        let ip = &frame[ETHERNET_HEADER_LEN..];
        if ip.len() < IPV6_HEADER_LEN || ip[0] >> 4 != 6 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let payload = ip.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + len)?;
        Some(Ipv6View {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            src: addr_at(ip, 8),
            dst: addr_at(ip, 24),
            next_header: ip[6],
            hop_limit: ip[7],
            payload,
        })
    }

    /// The ICMPv6 message inside, if this is ICMPv6 of at least 4 bytes with a valid checksum.
    pub fn icmpv6(&self) -> Option<&'a [u8]> {
        let m = self.payload;
        if self.next_header != NEXT_ICMPV6 || m.len() < 4 {
            return None;
        }
        let sum = pseudo_header_sum(self.src, self.dst, NEXT_ICMPV6, m.len());
        (checksum(m, sum) == 0).then_some(m)
    }

    /// The UDP datagram inside, if this is UDP with a consistent length and a valid checksum
    /// (never optional in IPv6): `(src_port, dst_port, payload)`.
    pub fn udp(&self) -> Option<(u16, u16, &'a [u8])> {
        let u = self.payload;
        if self.next_header != NEXT_UDP || u.len() < UDP_HEADER_LEN {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if len < UDP_HEADER_LEN || len > u.len() {
            return None;
        }
        let sum = pseudo_header_sum(self.src, self.dst, NEXT_UDP, len);
        if u16::from_be_bytes([u[6], u[7]]) == 0 || checksum(&u[..len], sum) != 0 {
            return None;
        }
        Some((
            u16::from_be_bytes([u[0], u[1]]),
            u16::from_be_bytes([u[2], u[3]]),
            &u[UDP_HEADER_LEN..len],
        ))
    }
}

/// The 16-byte address at `at` of `b` (the caller checked the length).
pub fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The link and network ends of a packet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// Builds Ethernet/IPv6 around `l4` (whose checksum field at `sum_at` is filled here) into
/// `out` (cleared first).
///
/// # Panics
/// If `l4` does not fit one IPv6 packet without a jumbogram (65,535 bytes) or `sum_at` is past
/// its end; callers build ICMPv6 and DHCPv6 messages of a few hundred bytes.
pub fn build(out: &mut Vec<u8>, ends: &Ends, next: u8, hop_limit: u8, l4: &[u8], sum_at: usize) {
    assert!(
        l4.len() <= 65_535 && sum_at + 2 <= l4.len(),
        "bad IPv6 payload"
    );
    out.clear();
    push_ethernet(out, ends.dst_mac, ends.src_mac, EtherType::Ipv6);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    out.extend_from_slice(&[next, hop_limit]);
    out.extend_from_slice(&ends.src.octets());
    out.extend_from_slice(&ends.dst.octets());
    let start = out.len();
    out.extend_from_slice(l4);
    out[start + sum_at..start + sum_at + 2].copy_from_slice(&[0, 0]);
    let mut sum = checksum(
        &out[start..],
        pseudo_header_sum(ends.src, ends.dst, next, l4.len()),
    );
    if next == NEXT_UDP && sum == 0 {
        sum = 0xffff; // RFC 8200 §8.1: a computed zero is sent as all ones.
    }
    out[start + sum_at..start + sum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Builds a complete Ethernet/IPv6/UDP frame (hop limit 64 for unicast, 1 for link scope is
/// the caller's business: it passes `hop_limit`) into `out`.
pub fn build_udp(out: &mut Vec<u8>, ends: &Ends, ports: (u16, u16), hop_limit: u8, payload: &[u8]) {
    let mut l4 = Vec::with_capacity(UDP_HEADER_LEN + payload.len());
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&((UDP_HEADER_LEN + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    build(out, ends, NEXT_UDP, hop_limit, &l4, 6);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_a_mac() {
        let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(
            link_local(mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        let p: Ipv6Addr = "fd00:13:31::".parse().unwrap();
        assert_eq!(
            eui64(p, mac),
            "fd00:13:31::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        let sn = solicited_node("fd00::1:2:3:4".parse().unwrap());
        assert_eq!(sn, "ff02::1:ff03:4".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac(sn), MacAddr([0x33, 0x33, 0xff, 0x03, 0, 4]));
    }

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let ends = Ends {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([0x52, 0x54, 0, 0, 0, 9]),
            src: "fe80::1".parse().unwrap(),
            dst: "fe80::9".parse().unwrap(),
        };
        let mut out = Vec::new();
        build(
            &mut out,
            &ends,
            NEXT_ICMPV6,
            255,
            &[129, 0, 0, 0, 1, 2, 3],
            2,
        );
        let v = Ipv6View::parse(&out).unwrap();
        assert_eq!((v.src, v.dst, v.hop_limit), (ends.src, ends.dst, 255));
        assert_eq!(v.icmpv6(), Some(&[129, 0, out[56], out[57], 1, 2, 3][..]));
        // One flipped bit anywhere in the message is a bad checksum.
        out[60] ^= 1;
        assert_eq!(Ipv6View::parse(&out).unwrap().icmpv6(), None);
        build_udp(&mut out, &ends, (547, 546), 64, b"hello");
        let v = Ipv6View::parse(&out).unwrap();
        assert_eq!(v.udp(), Some((547, 546, &b"hello"[..])));
        // A payload length past the frame is refused.
        let mut lie = out.clone();
        lie[18] = 0xff;
        assert_eq!(Ipv6View::parse(&lie), None);
        assert_eq!(Ipv6View::parse(&out[..50]), None);
    }
}
