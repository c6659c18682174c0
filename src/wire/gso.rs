//! Software segmentation (GSO) and checksum completion for frames that carry a virtio-net header.
//!
//! # Theory of operation
//!
//! A tap with `TUNSETOFFLOAD` hands the switch two kinds of frames a plain NIC would never see:
//!
//! - **partial checksums** (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the L4 checksum field at
//!   `csum_start + csum_offset` holds only the pseudo-header sum; whoever transmits the frame must
//!   sum the bytes from `csum_start` to the end and store the complement there;
//! - **GSO super-frames** (`gso_type` TCPv4, TCPv6, UDP_L4): one set of headers followed by up to
//!   64 KiB of payload, to be cut into `gso_size`-byte segments on the way out.
//!
//! A port that takes offloads (another tap with the same offloads) gets such frames as they are:
//! that is the whole point of passthrough. A port that cannot (the appliance, a socket port with no
//! virtio header, a tap without offloads) needs plain frames: [`for_each_segment`] turns one frame
//! into the plain frames a NIC would have put on the wire, each written into a caller-owned
//! scratch buffer behind an all-zero virtio-net header (so it can be written to any port in the
//! same format as it came) and handed to a callback. Nothing is allocated.
//!
//! What a segment looks like (the kernel's `tcp_gso_segment` / `__udp_gso_segment` rules):
//!
//! - TCP: the payload is cut into chunks of `min(gso_size, mtu - L3/L4 headers)` bytes; segment
//!   *i* gets sequence number `seq + offset`, IPv4 id `id + i`, its own lengths, a fresh IPv4
//!   header checksum and a complete TCP checksum; FIN and PSH stay only on the last segment, CWR
//!   only on the first. Cutting TCP smaller than `gso_size` is always valid.
//! - UDP (USO, `GSO_UDP_L4`): every chunk is a datagram of its own of exactly `gso_size` bytes
//!   (the last may be shorter) with its own UDP length and checksum. Datagram boundaries are the
//!   application's, so a segment that would exceed `mtu` is an error, never re-cut.
//! - UFO (`GSO_UDP`, IP fragmentation of one big datagram) is not negotiated by the switch and is
//!   refused as [`GsoError::Unsupported`], as is anything but IPv4/IPv6 directly under Ethernet
//!   (optionally behind 802.1Q/802.1ad tags) and IPv6 with extension headers before TCP/UDP.
//!
//! Everything is read from untrusted bytes: every length and offset is checked before use, and a
//! header that lies is a [`GsoError`], never a panic nor a read past the frame. The header fields
//! of the vnet header are advisory: the L3/L4 offsets are taken from the packet itself
//! (`hdr_len` from the kernel is only a hint and is not trusted).
//!
//! The internet checksum is `wire::checksum`'s, which sums 4 bytes at a time into a 64-bit
//! accumulator (the one's complement sum is associative, RFC 1071 §2): segmenting 64 KiB stays
//! cheap. IPv4 headers are read through `wire::ipv4::Ipv4Packet`.

use super::checksum::{fold, sum};
use super::ipv4::{Ipv4Error, Ipv4Packet};
use super::{EtherType, VnetHeader, ETHERNET_HEADER_LEN, VLAN_TAG_LEN, VNET_HDR_LEN};

/// `VIRTIO_NET_HDR_GSO_TCPV4`
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO: IP fragmentation of one datagram; not supported here).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO: one datagram per segment).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the sender set ECN CWR; it goes on the first segment only.
pub const GSO_ECN: u8 = 0x80;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame could not be segmented or completed. Each is a malformed or unsupported frame:
/// the caller drops it and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    #[error("frame shorter than its virtio-net, Ethernet, IP or L4 header")]
    Truncated,
    #[error("header field out of range: {0}")]
    Malformed(&'static str),
    #[error("GSO type or encapsulation not supported: {0}")]
    Unsupported(&'static str),
    #[error("a UDP segment of gso_size does not fit the MTU")]
    SegmentTooBig,
    #[error("scratch buffer too small for one segment")]
    ScratchTooSmall,
}

/// Where the headers of a GSO super-frame are, all offsets from the start of the Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoLayout {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// Offset of the payload (end of the TCP/UDP header).
    pub payload: usize,
    /// End of the IP packet (trailing bytes after it are ignored).
    pub end: usize,
    pub is_ipv6: bool,
    pub is_tcp: bool,
    /// Payload bytes per segment the sender asked for.
    pub gso_size: usize,
}

impl GsoLayout {
    /// Parses the headers of the GSO super-frame `frame` (Ethernet, no virtio-net header)
    /// described by `hdr`.
    pub fn parse(hdr: &VnetHeader, frame: &[u8]) -> Result<GsoLayout, GsoError> {
        let (is_ipv6, is_tcp) = match hdr.gso_type & !GSO_ECN {
            GSO_TCPV4 => (false, true),
            GSO_TCPV6 => (true, true),
            GSO_UDP_L4 => (false, false), // family read from the ethertype below
            GSO_UDP => return Err(GsoError::Unsupported("UFO (GSO_UDP)")),
            _ => return Err(GsoError::Unsupported("unknown gso_type")),
        };
        if hdr.gso_size == 0 {
            return Err(GsoError::Malformed("gso_size 0"));
        }
        let (l3, ethertype) = l3_offset(frame)?;
        let is_ipv6 = match (ethertype, hdr.gso_type & !GSO_ECN) {
            (EtherType::Ipv4, GSO_UDP_L4) => false,
            (EtherType::Ipv6, GSO_UDP_L4) => true,
            (EtherType::Ipv4, _) if !is_ipv6 => false,
            (EtherType::Ipv6, _) if is_ipv6 => true,
            _ => return Err(GsoError::Malformed("ethertype does not match gso_type")),
        };
        let (l4, end, proto) = if is_ipv6 {
            ipv6_bounds(frame, l3)?
        } else {
            ipv4_bounds(frame, l3)?
        };
        let want = if is_tcp { PROTO_TCP } else { PROTO_UDP };
        if proto != want {
            return Err(GsoError::Unsupported("IP protocol does not match gso_type"));
        }
        let l4_len = if is_tcp {
            let b = frame.get(l4 + 12).ok_or(GsoError::Truncated)?;
            let len = usize::from(b >> 4) * 4;
            if len < TCP_MIN_HEADER_LEN {
                return Err(GsoError::Malformed("TCP data offset"));
            }
            len
        } else {
            UDP_HEADER_LEN
        };
        let payload = l4 + l4_len;
        if payload > end {
            return Err(GsoError::Truncated);
        }
        Ok(GsoLayout {
            l3,
            l4,
            payload,
            end,
            is_ipv6,
            is_tcp,
            gso_size: usize::from(hdr.gso_size),
        })
    }

    /// Whether the offsets are in order and inside a frame of `frame_len` bytes, with room for
    /// the headers `segment` writes: always so for a layout [`GsoLayout::parse`] made of that
    /// frame; checked because the fields are public and a layout may travel with its frame.
    fn fits(&self, frame_len: usize) -> bool {
        let ip = if self.is_ipv6 {
            IPV6_HEADER_LEN
        } else {
            IPV4_MIN_HEADER_LEN
        };
        let l4 = if self.is_tcp {
            TCP_MIN_HEADER_LEN
        } else {
            UDP_HEADER_LEN
        };
        self.gso_size > 0
            && self.l3.checked_add(ip).is_some_and(|e| e <= self.l4)
            && self.l4.checked_add(l4).is_some_and(|e| e <= self.payload)
            && self.payload <= self.end
            && self.end <= frame_len
    }

    /// The L2 payload length (IP header to end of segment) of the largest segment as the sender
    /// cut it: what an egress MTU is compared against (the kernel's
    /// `skb_gso_validate_network_len`).
    pub fn segment_l3_len(&self) -> usize {
        (self.payload - self.l3) + self.gso_size.min(self.end - self.payload)
    }
}

/// What a frame's virtio-net header asks of whoever sends it on to a port that takes no
/// offloads, read once: the forwarding decision parses it (`Switch::decide_vnet`) and carries it
/// in its verdict, so egress ([`for_each_segment_as`]) does not walk the same headers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offload {
    /// A plain, complete frame: it goes anywhere as it is.
    #[default]
    None,
    /// A partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, no GSO): the sum of the bytes from
    /// `start` to the end goes at `start + offset` (offsets from the start of the Ethernet frame).
    Csum { start: u16, offset: u16 },
    /// A GSO super-frame whose headers parse, and where they are.
    Gso(GsoLayout),
}

impl Offload {
    /// What `hdr` asks of `frame` (Ethernet, no virtio-net header); `Err` for a super-frame whose
    /// headers do not match its virtio-net header.
    pub fn of(hdr: &VnetHeader, frame: &[u8]) -> Result<Offload, GsoError> {
        if hdr.is_gso() {
            return GsoLayout::parse(hdr, frame).map(Offload::Gso);
        }
        if hdr.flags & VnetHeader::F_NEEDS_CSUM != 0 {
            return Ok(Offload::Csum {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
            });
        }
        Ok(Offload::None)
    }

    /// [`Offload::of`] for a frame with its virtio-net header in front; bytes too short to
    /// hold the header are a plain frame (`None`), as the decision reads them.
    pub fn parse(frame_with_vnet_hdr: &[u8]) -> Result<Offload, GsoError> {
        match VnetHeader::parse(frame_with_vnet_hdr) {
            Some(hdr) => Offload::of(&hdr, &frame_with_vnet_hdr[VNET_HDR_LEN..]),
            None => Ok(Offload::None),
        }
    }

    /// Whether the frame needs [`for_each_segment_as`] before it may leave through a port that
    /// takes no offloads ([`needs_software`], without reading the header again).
    pub fn is_needed(&self) -> bool {
        !matches!(self, Offload::None)
    }

    /// The L2 payload length of a super-frame's largest segment ([`GsoLayout::segment_l3_len`]);
    /// `None` for a frame that is not one.
    pub fn segment_l3_len(&self) -> Option<usize> {
        match self {
            Offload::Gso(l) => Some(l.segment_l3_len()),
            _ => None,
        }
    }

    /// The same frame with `delta` bytes inserted (positive) or removed (negative) behind its
    /// MACs: an 802.1Q tag pushed or popped (`wire::vlan`, which moves the virtio-net header's
    /// `csum_start` the same way). What parsing the retagged frame would give.
    pub fn moved(self, delta: isize) -> Offload {
        let by = |v: usize| v.saturating_add_signed(delta);
        match self {
            Offload::None => Offload::None,
            Offload::Csum { start, offset } => Offload::Csum {
                start: (start as isize + delta).clamp(0, u16::MAX as isize) as u16,
                offset,
            },
            Offload::Gso(l) => Offload::Gso(GsoLayout {
                l3: by(l.l3),
                l4: by(l.l4),
                payload: by(l.payload),
                end: by(l.end),
                ..l
            }),
        }
    }
}

/// For a frame with its virtio-net header in front: the L2 payload length of its largest segment
/// if it is a GSO super-frame that parses, `None` for a plain frame or one whose GSO headers do
/// not parse (the caller then treats it by its full length).
pub fn segment_l3_len(frame_with_vnet_hdr: &[u8]) -> Option<usize> {
    let hdr = VnetHeader::parse(frame_with_vnet_hdr)?;
    if !hdr.is_gso() {
        return None;
    }
    GsoLayout::parse(&hdr, &frame_with_vnet_hdr[VNET_HDR_LEN..])
        .ok()
        .map(|l| l.segment_l3_len())
}

/// Whether a frame (virtio-net header in front) needs [`for_each_segment`] before it may leave
/// through a port that takes no offloads: it is a GSO super-frame or has a partial checksum.
pub fn needs_software(frame_with_vnet_hdr: &[u8]) -> bool {
    VnetHeader::parse(frame_with_vnet_hdr)
        .is_some_and(|h| h.is_gso() || h.flags & VnetHeader::F_NEEDS_CSUM != 0)
}

/// Turns one frame (virtio-net header in front) into the plain frames a NIC would send, and
/// hands each to `out`, with an all-zero virtio-net header in front. Returns how many.
///
/// - GSO super-frame: segmented (see the module doc); TCP segments carry at most `mtu` bytes of
///   L2 payload (`mtu` is an IP MTU, like `PortSpec::mtu`), UDP segments exactly `gso_size`.
/// - Partial checksum, no GSO: the checksum is completed; one frame.
/// - Anything else: handed to `out` unchanged (no copy); its header may carry
///   `VIRTIO_NET_HDR_F_DATA_VALID`, which every receiver may ignore.
///
/// `scratch` must hold `VNET_HDR_LEN` plus the longest output frame (for a checksum completion:
/// the whole input). On error, segments already handed to `out` stay handed.
pub fn for_each_segment(
    frame_with_vnet_hdr: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    out: impl FnMut(&[u8]),
) -> Result<usize, GsoError> {
    let hdr = VnetHeader::parse(frame_with_vnet_hdr).ok_or(GsoError::Truncated)?;
    let offload = Offload::of(&hdr, &frame_with_vnet_hdr[VNET_HDR_LEN..])?;
    for_each_segment_as(frame_with_vnet_hdr, &offload, mtu, scratch, out)
}

/// [`for_each_segment`] for a frame whose virtio-net header was read before (`offload`, from
/// [`Offload::parse`] of these bytes, [`Offload::moved`] if a tag was pushed or popped since):
/// the headers are not walked again. A layout that does not fit the frame is `Malformed`.
pub fn for_each_segment_as(
    frame_with_vnet_hdr: &[u8],
    offload: &Offload,
    mtu: usize,
    scratch: &mut [u8],
    mut out: impl FnMut(&[u8]),
) -> Result<usize, GsoError> {
    let frame = frame_with_vnet_hdr
        .get(VNET_HDR_LEN..)
        .ok_or(GsoError::Truncated)?;
    let (start, offset) = match *offload {
        Offload::Gso(layout) if layout.fits(frame.len()) => {
            return segment(frame, &layout, mtu, scratch, out);
        }
        Offload::Gso(_) => return Err(GsoError::Malformed("layout does not fit the frame")),
        Offload::None => {
            out(frame_with_vnet_hdr);
            return Ok(1);
        }
        Offload::Csum { start, offset } => (start, offset),
    };
    let len = VNET_HDR_LEN + frame.len();
    let buf = scratch.get_mut(..len).ok_or(GsoError::ScratchTooSmall)?;
    buf[..VNET_HDR_LEN].fill(0);
    buf[VNET_HDR_LEN..].copy_from_slice(frame);
    complete_checksum(
        &mut buf[VNET_HDR_LEN..],
        usize::from(start),
        usize::from(offset),
    )?;
    out(buf);
    Ok(1)
}

/// Finishes a partial checksum in place: sums `frame[csum_start..]` (whose checksum field at
/// `csum_start + csum_offset` holds the pseudo-header sum) and stores the complement there.
/// A UDP checksum (`csum_offset` 6) that comes out 0 is sent as 0xffff (RFC 768).
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), GsoError> {
    let field = csum_start
        .checked_add(csum_offset)
        .filter(|f| f.checked_add(2).is_some_and(|e| e <= frame.len()))
        .ok_or(GsoError::Malformed("csum_start/csum_offset past the frame"))?;
    let mut csum = !fold(sum(&frame[csum_start..]));
    if csum == 0 && csum_offset == 6 {
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// The IP header's offset and the EtherType that announces it, behind any VLAN tags.
fn l3_offset(frame: &[u8]) -> Result<(usize, EtherType), GsoError> {
    let mut off = ETHERNET_HEADER_LEN - 2;
    loop {
        let t = be16(frame, off).ok_or(GsoError::Truncated)?;
        match EtherType::from(t) {
            EtherType::Vlan | EtherType::QinQ => off += VLAN_TAG_LEN,
            t @ (EtherType::Ipv4 | EtherType::Ipv6) => return Ok((off + 2, t)),
            _ => return Err(GsoError::Unsupported("not IPv4 or IPv6")),
        }
    }
}

/// (L4 offset, end of packet, protocol) of the IPv4 packet at `l3`.
fn ipv4_bounds(frame: &[u8], l3: usize) -> Result<(usize, usize, u8), GsoError> {
    let ip = Ipv4Packet::new_unchecked(frame.get(l3..).ok_or(GsoError::Truncated)?);
    match ip.check_len() {
        Ok(()) => {}
        Err(Ipv4Error::Truncated) => return Err(GsoError::Truncated),
        Err(Ipv4Error::Version) => return Err(GsoError::Malformed("IPv4 version")),
        Err(Ipv4Error::Length) => return Err(GsoError::Malformed("IPv4 header or total length")),
    }
    if ip.is_fragment() {
        return Err(GsoError::Malformed("IPv4 fragment"));
    }
    Ok((l3 + ip.header_len(), l3 + ip.total_len(), ip.protocol()))
}

/// (L4 offset, end of packet, protocol) of the IPv6 packet at `l3`; no extension headers.
fn ipv6_bounds(frame: &[u8], l3: usize) -> Result<(usize, usize, u8), GsoError> {
    let ip = frame
        .get(l3..l3 + IPV6_HEADER_LEN)
        .ok_or(GsoError::Truncated)?;
    if ip[0] >> 4 != 6 {
        return Err(GsoError::Malformed("IPv6 version"));
    }
    let end = l3 + IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if end > frame.len() {
        return Err(GsoError::Truncated);
    }
    match ip[6] {
        p @ (PROTO_TCP | PROTO_UDP) => Ok((l3 + IPV6_HEADER_LEN, end, p)),
        _ => Err(GsoError::Unsupported("IPv6 extension headers")),
    }
}

/// Cuts the super-frame into segments (see the module doc for the rules).
fn segment(
    frame: &[u8],
    l: &GsoLayout,
    mtu: usize,
    scratch: &mut [u8],
    mut out: impl FnMut(&[u8]),
) -> Result<usize, GsoError> {
    let headers = l.payload; // Ethernet + IP + L4
    let l3l4 = l.payload - l.l3;
    let room = mtu
        .checked_sub(l3l4)
        .filter(|r| *r > 0)
        .ok_or(GsoError::SegmentTooBig)?;
    let chunk = if l.is_tcp {
        l.gso_size.min(room)
    } else if l.gso_size > room {
        return Err(GsoError::SegmentTooBig);
    } else {
        l.gso_size
    };
    let payload = &frame[l.payload..l.end];
    let count = payload.len().div_ceil(chunk).max(1);
    if scratch.len() < VNET_HDR_LEN + headers + chunk.min(payload.len()) {
        return Err(GsoError::ScratchTooSmall);
    }
    let seq = be32(frame, l.l4 + 4).unwrap_or(0);
    let tcp_flags = frame.get(l.l4 + 13).copied().unwrap_or(0);
    let ip_id = be16(frame, l.l3 + 4).unwrap_or(0);
    for i in 0..count {
        let data = payload
            .get(i * chunk..payload.len().min((i + 1) * chunk))
            .unwrap_or(&[]);
        let len = VNET_HDR_LEN + headers + data.len();
        let buf = &mut scratch[..len];
        buf[..VNET_HDR_LEN].fill(0);
        let seg = &mut buf[VNET_HDR_LEN..];
        seg[..headers].copy_from_slice(&frame[..headers]);
        seg[headers..].copy_from_slice(data);
        let l4_len = l.payload - l.l4 + data.len();
        let last = i + 1 == count;
        if l.is_tcp {
            let mut flags = tcp_flags;
            if !last {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i != 0 {
                flags &= !TCP_CWR;
            }
            seg[l.l4 + 13] = flags;
            let s = seq.wrapping_add((i * chunk) as u32);
            seg[l.l4 + 4..l.l4 + 8].copy_from_slice(&s.to_be_bytes());
        } else {
            seg[l.l4 + 4..l.l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let pseudo = if l.is_ipv6 {
            seg[l.l3 + 4..l.l3 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            sum(&seg[l.l3 + 8..l.l3 + 40])
        } else {
            let ip = &mut seg[l.l3..l.l4];
            ip[2..4].copy_from_slice(&((l.l4 - l.l3 + l4_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
            ip[10..12].fill(0);
            let c = !fold(sum(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            sum(&ip[12..20])
        };
        let proto = if l.is_tcp { PROTO_TCP } else { PROTO_UDP };
        let csum_at = l.l4 + if l.is_tcp { 16 } else { 6 };
        seg[csum_at..csum_at + 2].fill(0);
        let total = pseudo + u64::from(proto) + l4_len as u64 + sum(&seg[l.l4..]);
        let mut c = !fold(total);
        if c == 0 && !l.is_tcp {
            c = 0xffff;
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        out(buf);
    }
    Ok(count)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
