//! IPv4: the header view every parser of the crate reads ([`Ipv4Packet`]), and for the
//! appliance a parsed, unfragmented, checksummed packet in a frame ([`Ipv4View`]) with the
//! complete-frame building of UDP, ARP and ICMP echo replies.
//!
//! Parsing takes untrusted bytes and returns `None` for anything it cannot vouch for (truncated
//! headers, a total length that lies, fragments, options it would have to skip past the buffer).
//! Building always writes complete frames with every checksum filled in: a DHCP client with no
//! address yet cannot rely on anyone else to finish them.

use std::net::Ipv4Addr;

use super::icmp::{Icmpv4Message, Icmpv4Packet};
use super::udp::UdpPacket;
use super::{EtherType, EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};

pub const IPV4_HEADER_LEN: usize = 20;
pub use super::udp::UDP_HEADER_LEN;
pub const ARP_LEN: usize = 28;
/// IP protocol numbers the appliance answers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_UDP: u8 = 17;

pub use super::checksum::checksum;
pub(crate) use super::checksum::pseudo_header_sum;

/// Why bytes are not an IPv4 header [`Ipv4Packet::check_len`] can vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the fixed header, or than the total length the header claims.
    Truncated,
    /// The version nibble is not 4.
    Version,
    /// A header length under 20 bytes, or a total length shorter than the header.
    Length,
}

/// A zero-copy view of an IPv4 header and its packet (smoltcp's `Ipv4Packet` contract): the
/// fixed fields at their RFC 791 offsets, in this one place. [`Ipv4Packet::new_checked`] is
/// for untrusted bytes; [`Ipv4Packet::new_unchecked`] is for callers that checked the buffer
/// holds the 20-byte fixed header themselves (the accessors of the fixed fields then cannot go
/// out of bounds; [`Ipv4Packet::payload`] needs a checked packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The view, unchecked.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// The view if [`Self::check_len`] passes.
    pub fn new_checked(buffer: T) -> Option<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len().ok().map(|()| p)
    }

    /// Whether the header is IPv4, its lengths are consistent (header ≥ 20 bytes, total ≥
    /// header) and the buffer holds the whole packet. A buffer longer than the total length is
    /// fine: Ethernet pads to 60 bytes.
    pub fn check_len(&self) -> Result<(), Ipv4Error> {
        let b = self.buffer.as_ref();
        if b.len() < IPV4_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Ipv4Error::Version);
        }
        let (ihl, total) = (self.header_len(), self.total_len());
        if ihl < IPV4_HEADER_LEN || total < ihl {
            return Err(Ipv4Error::Length);
        }
        if total > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(())
    }

    fn be16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    /// The total length field: header and payload, in bytes.
    pub fn total_len(&self) -> usize {
        usize::from(self.be16(2))
    }

    pub fn ident(&self) -> u16 {
        self.be16(4)
    }

    /// The fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.be16(6) & 0x1fff
    }

    pub fn more_frags(&self) -> bool {
        self.be16(6) & 0x2000 != 0
    }

    /// A fragment of a larger datagram: more-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The first (or only) fragment: the one that carries the L4 header.
    pub fn is_first_fragment(&self) -> bool {
        self.frag_offset() == 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    /// The protocol number of the payload (1 ICMP, 6 TCP, 17 UDP, ...).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// Whether the header checksum is right (checked packets only: it sums the whole header).
    pub fn verify_checksum(&self) -> bool {
        checksum(&self.buffer.as_ref()[..self.header_len()], 0) == 0
    }

    /// The L4 bytes: after the header, up to the total length (checked packets only).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// [`Self::payload`] with the buffer's lifetime.
    pub fn payload_slice(&self) -> &'a [u8] {
        &self.buffer[self.header_len()..self.total_len()]
    }
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
        let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..])?;
        // A fragment: the appliance never reassembles.
        if ip.is_fragment() || !ip.verify_checksum() {
            return None;
        }
        Some(Ipv4View {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.protocol(),
            ttl: ip.ttl(),
            payload: ip.payload_slice(),
        })
    }

    /// The UDP datagram inside, if this is UDP with a consistent length and a valid (or absent)
    /// checksum: `(src_port, dst_port, payload)`.
    pub fn udp(&self) -> Option<(u16, u16, &'a [u8])> {
        if self.protocol != PROTO_UDP {
            return None;
        }
        let udp = UdpPacket::new_checked(self.payload)?;
        if !udp.verify_checksum(self.src, self.dst) {
            return None;
        }
        Some((udp.src_port(), udp.dst_port(), udp.payload_slice()))
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
    if ip.dst != our_ip || ip.protocol != PROTO_ICMP {
        return false;
    }
    let Some(req) = Icmpv4Packet::new_checked(ip.payload) else {
        return false;
    };
    if req.msg_type() != Icmpv4Message::EchoRequest || req.code() != 0 || !req.verify_checksum() {
        return false;
    }
    let icmp = ip.payload;
    out.clear();
    push_ethernet(out, ip.src_mac, our_mac, EtherType::Ipv4);
    push_ipv4_header(out, our_ip, ip.src, PROTO_ICMP, icmp.len());
    let start = out.len();
    out.extend_from_slice(icmp);
    let mut reply = Icmpv4Packet::new_unchecked(&mut out[start..]);
    reply.set_msg_type(Icmpv4Message::EchoReply);
    reply.fill_checksum();
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
