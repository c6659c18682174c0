//! UDP: a zero-copy view of a datagram (RFC 768), the one place its header offsets live.

use std::net::Ipv4Addr;

use super::checksum::{checksum, pseudo_header_sum};

pub const UDP_HEADER_LEN: usize = 8;
const PROTO_UDP: u8 = 17;

/// A UDP datagram view (smoltcp's `UdpPacket` contract). [`UdpPacket::new_checked`] is for
/// untrusted bytes; [`UdpPacket::new_unchecked`] leaves the caller to know the 8-byte header
/// is there (the ports and the length field then cannot go out of bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// The view if the header is whole and the length field covers it and fits the buffer
    /// (bytes past it, such as Ethernet padding, are not the datagram's).
    pub fn new_checked(buffer: T) -> Option<Self> {
        let p = Self::new_unchecked(buffer);
        let have = p.buffer.as_ref().len();
        if have < UDP_HEADER_LEN {
            return None;
        }
        let len = usize::from(p.len_field());
        (UDP_HEADER_LEN..=have).contains(&len).then_some(p)
    }

    fn be16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn src_port(&self) -> u16 {
        self.be16(0)
    }

    pub fn dst_port(&self) -> u16 {
        self.be16(2)
    }

    /// The length field: header and payload, in bytes.
    pub fn len_field(&self) -> u16 {
        self.be16(4)
    }

    /// The checksum field; 0 means the sender computed none (allowed over IPv4).
    pub fn checksum(&self) -> u16 {
        self.be16(6)
    }

    /// Whether the checksum is right or absent (checked datagrams only).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let len = usize::from(self.len_field());
        self.checksum() == 0
            || checksum(
                &self.buffer.as_ref()[..len],
                pseudo_header_sum(src, dst, PROTO_UDP, len),
            ) == 0
    }
}

impl<'a> UdpPacket<&'a [u8]> {
    /// The payload, bounded by the length field (checked datagrams only).
    pub fn payload_slice(&self) -> &'a [u8] {
        &self.buffer[UDP_HEADER_LEN..usize::from(self.len_field())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram 40000 → 53 with "abc" and a correct checksum between 10.0.0.2 and 10.0.0.1,
    /// then one byte of padding.
    fn datagram() -> Vec<u8> {
        let mut d = vec![0x9c, 0x40, 0, 53, 0, 11, 0, 0, b'a', b'b', b'c'];
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let c = checksum(&d, pseudo_header_sum(src, dst, PROTO_UDP, d.len()));
        d[6..8].copy_from_slice(&c.to_be_bytes());
        d.push(0);
        d
    }

    #[test]
    fn reads_ports_payload_and_checksum() {
        let d = datagram();
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len_field()), (40000, 53, 11));
        assert_eq!(u.payload_slice(), b"abc");
        assert!(u.verify_checksum(src, dst));
        assert!(!u.verify_checksum(dst, Ipv4Addr::new(10, 0, 0, 3)));
        let mut none = d.clone();
        none[6..8].fill(0);
        assert!(UdpPacket::new_checked(&none[..])
            .unwrap()
            .verify_checksum(dst, dst));
    }

    #[test]
    fn refuses_short_buffers_and_lying_lengths() {
        let d = datagram();
        for len in 0..11 {
            assert_eq!(UdpPacket::new_checked(&d[..len]), None, "len {len}");
        }
        let mut short = d.clone();
        short[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&short[..]), None);
    }
}
