//! TCP segments: a bounded parse of one segment inside an [`Ipv4View`], and building a complete
//! Ethernet/IPv4/TCP frame with both checksums. Just what the appliance's DNS-over-TCP
//! responder needs: no options are emitted except MSS on a SYN-ACK.

use super::checksum::{checksum, pseudo_header_sum};
use super::ipv4::{push_ethernet, push_ipv4_header, Ipv4View, UdpEndpoints};
use super::EtherType;

pub const PROTO_TCP: u8 = 6;
pub const TCP_HEADER_LEN: usize = 20;

/// TCP flags (RFC 9293 §3.1).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Option kinds read or written.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// One parsed TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// The MSS option, if the segment carries one.
    pub mss: Option<u16>,
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// The TCP segment in `ip`, if it is TCP with a sane header and a valid checksum.
    pub fn parse(ip: &Ipv4View<'a>) -> Option<TcpSegment<'a>> {
        let t = ip.payload;
        if ip.protocol != PROTO_TCP || t.len() < TCP_HEADER_LEN {
            return None;
        }
        let off = usize::from(t[12] >> 4) * 4;
        if off < TCP_HEADER_LEN || off > t.len() {
            return None;
        }
        if checksum(t, pseudo_header_sum(ip.src, ip.dst, PROTO_TCP, t.len())) != 0 {
            return None;
        }
        Some(TcpSegment {
            src_port: u16::from_be_bytes([t[0], t[1]]),
            dst_port: u16::from_be_bytes([t[2], t[3]]),
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            flags: t[13],
            window: u16::from_be_bytes([t[14], t[15]]),
            mss: parse_mss(&t[TCP_HEADER_LEN..off]),
            payload: &t[off..],
        })
    }
}

/// The MSS option among `opts`; every length is bounded by the option space.
fn parse_mss(mut opts: &[u8]) -> Option<u16> {
    while let Some(&kind) = opts.first() {
        match kind {
            OPT_END => return None,
            OPT_NOP => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1)?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if kind == OPT_MSS && len == 4 {
                    return Some(u16::from_be_bytes([opts[2], opts[3]]));
                }
                opts = &opts[len..];
            }
        }
    }
    None
}

/// What to put in a segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Sent as an option (on SYN-ACKs).
    pub mss: Option<u16>,
}

/// Builds a complete Ethernet/IPv4/TCP frame into `out` (cleared first), every checksum filled.
/// `ep`'s ports are the TCP ports.
pub fn build_tcp(out: &mut Vec<u8>, ep: &UdpEndpoints, h: &TcpHeader, payload: &[u8]) {
    let opt_len = if h.mss.is_some() { 4 } else { 0 };
    let tcp_len = TCP_HEADER_LEN + opt_len + payload.len();
    out.clear();
    push_ethernet(out, ep.dst_mac, ep.src_mac, EtherType::Ipv4);
    push_ipv4_header(out, ep.src, ep.dst, PROTO_TCP, tcp_len);
    let start = out.len();
    out.extend_from_slice(&ep.src_port.to_be_bytes());
    out.extend_from_slice(&ep.dst_port.to_be_bytes());
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.ack.to_be_bytes());
    out.push((((TCP_HEADER_LEN + opt_len) / 4) as u8) << 4);
    out.push(h.flags);
    out.extend_from_slice(&h.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    if let Some(mss) = h.mss {
        out.extend_from_slice(&[OPT_MSS, 4]);
        out.extend_from_slice(&mss.to_be_bytes());
    }
    out.extend_from_slice(payload);
    let sum = checksum(
        &out[start..],
        pseudo_header_sum(ep.src, ep.dst, PROTO_TCP, tcp_len),
    );
    out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    fn ep() -> UdpEndpoints {
        UdpEndpoints {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([0x52, 0x54, 0, 0, 0, 0x11]),
            src: Ipv4Addr::new(10, 13, 31, 1),
            dst: Ipv4Addr::new(10, 13, 31, 11),
            src_port: 53,
            dst_port: 40000,
        }
    }

    #[test]
    fn built_segments_parse_back() {
        let mut f = Vec::new();
        let h = TcpHeader {
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 65535,
            mss: Some(1460),
        };
        build_tcp(&mut f, &ep(), &h, b"");
        let ip = Ipv4View::parse(&f).unwrap();
        let s = TcpSegment::parse(&ip).unwrap();
        assert_eq!(
            (s.seq, s.ack, s.flags, s.mss),
            (7, 9, SYN | ACK, Some(1460))
        );
        assert_eq!((s.src_port, s.dst_port), (53, 40000));
        let h = TcpHeader { mss: None, ..h };
        build_tcp(&mut f, &ep(), &h, b"\x00\x03abc");
        let ip = Ipv4View::parse(&f).unwrap();
        assert_eq!(TcpSegment::parse(&ip).unwrap().payload, b"\x00\x03abc");
        // A flipped payload bit breaks the checksum; every truncation is refused.
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(TcpSegment::parse(&Ipv4View::parse(&bad).unwrap()).is_none());
        for cut in 0..f.len() {
            let ok = Ipv4View::parse(&f[..cut]).and_then(|ip| TcpSegment::parse(&ip));
            assert!(ok.is_none(), "cut {cut}");
        }
    }

    #[test]
    fn options_are_bounded() {
        assert_eq!(parse_mss(&[1, 1, 2, 4, 5, 180]), Some(1460));
        assert_eq!(parse_mss(&[3, 0, 2, 4, 5, 180]), None, "zero length");
        assert_eq!(parse_mss(&[8, 40, 2, 4]), None, "past the end");
        assert_eq!(parse_mss(&[0, 2, 4, 5, 180]), None, "after END");
        assert_eq!(parse_mss(&[2]), None);
    }
}
