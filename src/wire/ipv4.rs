//! IPv4/UDP/ICMP/ARP: the bounded parsing and the complete-frame building the appliance needs.
//!
//! Parsing takes untrusted bytes and returns `None` for anything it cannot vouch for (truncated
//! headers, a total length that lies, fragments, options it would have to skip past the buffer).
//! Building always writes complete frames with every checksum filled in: a DHCP client with no
//! address yet cannot rely on anyone else to finish them.

use std::net::Ipv4Addr;

use super::{EtherType, EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};

pub const IPV4_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
pub const ARP_LEN: usize = 28;
/// IP protocol numbers the appliance answers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_UDP: u8 = 17;

/// The internet checksum (RFC 1071) of `data`, starting from a partial `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub(crate) fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + len as u32
}

/// A parsed, unfragmented IPv4 packet inside an Ethernet frame (no VLAN tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4View<'a> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// The L4 bytes, bounded by the IP total length (trailing Ethernet padding removed).
    pub payload: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// Parses `frame`; `None` unless it is a well-formed, unfragmented IPv4 packet whose header
    /// checksum is right and whose total length fits the frame.
    pub fn parse(frame: &'a [u8]) -> Option<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != EtherType::Ipv4 {
            return None;
        }
        let ip = &frame[ETHERNET_HEADER_LEN..];
        if ip.len() < IPV4_HEADER_LEN || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ihl < IPV4_HEADER_LEN || total < ihl || total > ip.len() {
            return None;
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        // More-fragments set or a non-zero offset: the appliance never reassembles.
        if frag & 0x3fff != 0 || checksum(&ip[..ihl], 0) != 0 {
            return None;
        }
        Some(Ipv4View {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            protocol: ip[9],
            ttl: ip[8],
            payload: &ip[ihl..total],
        })
    }

    /// The UDP datagram inside, if this is UDP with a consistent length and a valid (or absent)
    /// checksum: `(src_port, dst_port, payload)`.
    pub fn udp(&self) -> Option<(u16, u16, &'a [u8])> {
        let u = self.payload;
        if self.protocol != PROTO_UDP || u.len() < UDP_HEADER_LEN {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if len < UDP_HEADER_LEN || len > u.len() {
            return None;
        }
        let sum = u16::from_be_bytes([u[6], u[7]]);
        if sum != 0
            && checksum(
                &u[..len],
                pseudo_header_sum(self.src, self.dst, PROTO_UDP, len),
            ) != 0
        {
            return None;
        }
        Some((
            u16::from_be_bytes([u[0], u[1]]),
            u16::from_be_bytes([u[2], u[3]]),
            &u[UDP_HEADER_LEN..len],
        ))
    }
}

pub(crate) fn push_ethernet(out: &mut Vec<u8>, dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&u16::from(ethertype).to_be_bytes());
}

/// Appends an IPv4 header (no options, DF set, TTL 64) for `payload_len` bytes of `protocol`.
pub(crate) fn push_ipv4_header(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
) {
    let start = out.len();
    let total = (IPV4_HEADER_LEN + payload_len) as u16;
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0]);
    out[start + 2..start + 4].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let sum = checksum(&out[start..start + IPV4_HEADER_LEN], 0);
    out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

/// The endpoints of a UDP datagram to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEndpoints {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Builds a complete Ethernet/IPv4/UDP frame into `out` (cleared first), every checksum filled.
///
/// # Panics
/// If `payload` does not fit one IPv4 packet (65,507 bytes); callers build DHCP and DNS replies.
pub fn build_udp(out: &mut Vec<u8>, ep: &UdpEndpoints, payload: &[u8]) {
    let udp_len = UDP_HEADER_LEN + payload.len();
    assert!(udp_len + IPV4_HEADER_LEN <= 65_535, "UDP payload too large");
    out.clear();
    push_ethernet(out, ep.dst_mac, ep.src_mac, EtherType::Ipv4);
    push_ipv4_header(out, ep.src, ep.dst, PROTO_UDP, udp_len);
    let start = out.len();
    out.extend_from_slice(&ep.src_port.to_be_bytes());
    out.extend_from_slice(&ep.dst_port.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let mut sum = checksum(
        &out[start..],
        pseudo_header_sum(ep.src, ep.dst, PROTO_UDP, udp_len),
    );
    if sum == 0 {
        sum = 0xffff; // RFC 768: a computed zero is sent as all ones.
    }
    out[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
}

/// If `frame` is an ARP request for `our_ip`, builds the reply from `our_mac` into `out`.
pub fn arp_reply(frame: &[u8], our_mac: MacAddr, our_ip: Ipv4Addr, out: &mut Vec<u8>) -> bool {
    let Some(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let a = &frame[ETHERNET_HEADER_LEN..];
    // Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4), operation 1 (request).
    if eth.ethertype() != EtherType::Arp
        || a.len() < ARP_LEN
        || a[..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1]
        || a[24..28] != our_ip.octets()
    {
        return false;
    }
    let (sender_mac, sender_ip) = (&a[8..14], &a[14..18]);
    out.clear();
    push_ethernet(
        out,
        MacAddr::from_bytes(sender_mac),
        our_mac,
        EtherType::Arp,
    );
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    out.extend_from_slice(&our_mac.0);
    out.extend_from_slice(&our_ip.octets());
    out.extend_from_slice(sender_mac);
    out.extend_from_slice(sender_ip);
    true
}

/// If `frame` is an ICMP echo request to `our_ip`, builds the echo reply into `out`.
pub fn icmp_echo_reply(
    frame: &[u8],
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    out: &mut Vec<u8>,
) -> bool {
    let Some(ip) = Ipv4View::parse(frame) else {
        return false;
    };
    let icmp = ip.payload;
    if ip.dst != our_ip
        || ip.protocol != PROTO_ICMP
        || icmp.len() < 8
        || icmp[0] != 8
        || icmp[1] != 0
    {
        return false;
    }
    if checksum(icmp, 0) != 0 {
        return false;
    }
    out.clear();
    push_ethernet(out, ip.src_mac, our_mac, EtherType::Ipv4);
    push_ipv4_header(out, our_ip, ip.src, PROTO_ICMP, icmp.len());
    let start = out.len();
    out.extend_from_slice(icmp);
    out[start] = 0; // echo reply
    out[start + 2..start + 4].copy_from_slice(&[0, 0]);
    let sum = checksum(&out[start..], 0);
    out[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const THEM: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x11]);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 13, 31, 1);
    const VM: Ipv4Addr = Ipv4Addr::new(10, 13, 31, 11);

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        let ep = UdpEndpoints {
            src_mac: THEM,
            dst_mac: US,
            src: VM,
            dst: GW,
            src_port: 68,
            dst_port: 67,
        };
        build_udp(&mut f, &ep, payload);
        f
    }

    #[test]
    fn built_udp_parses_back_with_valid_checksums() {
        let f = udp_frame(b"hello dhcp");
        let ip = Ipv4View::parse(&f).unwrap();
        assert_eq!((ip.src, ip.dst, ip.src_mac, ip.dst_mac), (VM, GW, THEM, US));
        assert_eq!(ip.udp(), Some((68, 67, &b"hello dhcp"[..])));
    }

    #[test]
    fn corrupted_or_truncated_packets_are_refused() {
        let f = udp_frame(b"hello dhcp");
        for len in 0..f.len() {
            let v = Ipv4View::parse(&f[..len]);
            assert!(v.is_none_or(|v| v.udp().is_none()), "truncated to {len}");
        }
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            Ipv4View::parse(&bad).unwrap().udp(),
            None,
            "bad UDP checksum"
        );
        let mut frag = f.clone();
        frag[ETHERNET_HEADER_LEN + 6] |= 0x20; // more fragments
        assert_eq!(Ipv4View::parse(&frag), None);
    }

    #[test]
    fn answers_arp_for_our_ip_only() {
        let mut req = Vec::new();
        push_ethernet(&mut req, MacAddr::BROADCAST, THEM, EtherType::Arp);
        req.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        req.extend_from_slice(&THEM.0);
        req.extend_from_slice(&VM.octets());
        req.extend_from_slice(&[0; 6]);
        req.extend_from_slice(&GW.octets());
        let mut out = Vec::new();
        assert!(arp_reply(&req, US, GW, &mut out));
        assert_eq!(&out[..6], &THEM.0);
        assert_eq!(&out[20..22], &[0, 2]);
        assert_eq!(&out[22..28], &US.0);
        assert_eq!(&out[38..42], &VM.octets());
        assert!(!arp_reply(&req, US, Ipv4Addr::new(10, 13, 31, 2), &mut out));
        assert!(!arp_reply(&req[..40], US, GW, &mut out));
    }

    #[test]
    fn answers_ping_with_a_valid_reply() {
        let mut req = Vec::new();
        push_ethernet(&mut req, US, THEM, EtherType::Ipv4);
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];
        let s = checksum(&icmp, 0);
        icmp[2..4].copy_from_slice(&s.to_be_bytes());
        push_ipv4_header(&mut req, VM, GW, PROTO_ICMP, icmp.len());
        req.extend_from_slice(&icmp);
        let mut out = Vec::new();
        assert!(icmp_echo_reply(&req, US, GW, &mut out));
        let ip = Ipv4View::parse(&out).unwrap();
        assert_eq!((ip.src, ip.dst, ip.dst_mac), (GW, VM, THEM));
        assert_eq!(ip.payload[0], 0);
        assert_eq!(checksum(ip.payload, 0), 0);
        assert_eq!(&ip.payload[4..], &icmp[4..]);
    }
}
