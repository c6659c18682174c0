//! 802.1Q tags pushed and popped on frames that carry their virtio-net header in front.
//!
//! A tag sits between the source MAC and the EtherType, so pushing one moves everything behind
//! the MACs 4 bytes on, and the header's offsets into the frame with it: `csum_start` when a
//! checksum is partial, `hdr_len` when the frame is a GSO super-frame. With those moved the
//! frame stays a valid super-frame (`wire::gso` reads through tags), so a tagged frame keeps
//! its offloads end to end. Pure byte shuffling: no allocation, the caller owns `out`.

use super::{VnetHeader, ETHERNET_HEADER_LEN, VLAN_TAG_LEN, VNET_HDR_LEN};

/// The 802.1Q TPID.
pub const TPID_8021Q: u16 = 0x8100;

/// The 802.1Q tag of `frame` (an Ethernet frame, no virtio-net header): `Some(vid)` when its
/// EtherType is 0x8100 and the tag is all there.
pub fn tag_vid(frame: &[u8]) -> Option<u16> {
    let tpid = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let tci = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
    (tpid == TPID_8021Q).then_some(tci & 0x0fff)
}

/// Moves the header's offsets into the frame by `delta` bytes (a tag pushed or popped).
fn shift_header(bytes: &[u8], out: &mut [u8], delta: i32) {
    let Some(mut hdr) = VnetHeader::parse(bytes) else {
        return;
    };
    let shift = |v: u16| (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16;
    if hdr.flags & VnetHeader::F_NEEDS_CSUM != 0 {
        hdr.csum_start = shift(hdr.csum_start);
    }
    if hdr.is_gso() && hdr.hdr_len != 0 {
        hdr.hdr_len = shift(hdr.hdr_len);
    }
    hdr.emit(out);
}

/// Writes `bytes` (virtio-net header + untagged frame) into `out` with a tag for `vid`
/// (priority 0) behind its MACs; returns the length written, or `None` if `bytes` holds no
/// full Ethernet header or `out` is too small.
pub fn push_tag(bytes: &[u8], vid: u16, out: &mut [u8]) -> Option<usize> {
    let macs = VNET_HDR_LEN + 12;
    if bytes.len() < VNET_HDR_LEN + ETHERNET_HEADER_LEN || out.len() < bytes.len() + VLAN_TAG_LEN {
        return None;
    }
    out[..macs].copy_from_slice(&bytes[..macs]);
    shift_header(bytes, out, VLAN_TAG_LEN as i32);
    out[macs..macs + 2].copy_from_slice(&TPID_8021Q.to_be_bytes());
    out[macs + 2..macs + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    let rest = &bytes[macs..];
    out[macs + VLAN_TAG_LEN..macs + VLAN_TAG_LEN + rest.len()].copy_from_slice(rest);
    Some(bytes.len() + VLAN_TAG_LEN)
}

/// Writes `bytes` (virtio-net header + 802.1Q-tagged frame) into `out` without its outer tag;
/// returns the length written, or `None` if the frame carries no full 802.1Q tag or `out` is
/// too small.
pub fn pop_tag(bytes: &[u8], out: &mut [u8]) -> Option<usize> {
    let macs = VNET_HDR_LEN + 12;
    tag_vid(bytes.get(VNET_HDR_LEN..)?)?;
    if bytes.len() < macs + VLAN_TAG_LEN + 2 || out.len() < bytes.len() - VLAN_TAG_LEN {
        return None;
    }
    out[..macs].copy_from_slice(&bytes[..macs]);
    shift_header(bytes, out, -(VLAN_TAG_LEN as i32));
    let rest = &bytes[macs + VLAN_TAG_LEN..];
    out[macs..macs + rest.len()].copy_from_slice(rest);
    Some(bytes.len() - VLAN_TAG_LEN)
}

/// Puts a tag (`tpid`, `tci`) back behind the MACs of the frame in `buf[..len]` (virtio-net
/// header + frame), in place, moving the header's offsets; returns the new length, or `None`
/// if the frame holds no full Ethernet header or `buf` has no 4 bytes of room after it. For a
/// packet socket, whose kernel hands the tag over apart from the frame (`PACKET_AUXDATA`).
pub fn insert_tag(buf: &mut [u8], len: usize, tpid: u16, tci: u16) -> Option<usize> {
    let macs = VNET_HDR_LEN + 12;
    if len < VNET_HDR_LEN + ETHERNET_HEADER_LEN || buf.len() < len + VLAN_TAG_LEN {
        return None;
    }
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr.copy_from_slice(&buf[..VNET_HDR_LEN]);
    shift_header(&hdr, &mut buf[..VNET_HDR_LEN], VLAN_TAG_LEN as i32);
    buf.copy_within(macs..len, macs + VLAN_TAG_LEN);
    buf[macs..macs + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[macs + 2..macs + 4].copy_from_slice(&tci.to_be_bytes());
    Some(len + VLAN_TAG_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(hdr: VnetHeader, ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; VNET_HDR_LEN];
        hdr.emit(&mut b);
        b.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        b.extend_from_slice(&ethertype);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn push_then_pop_is_the_identity_and_moves_the_offsets() {
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let plain = bytes(hdr, [0x08, 0x00], &[7; 100]);
        let mut tagged = vec![0u8; plain.len() + 4];
        assert_eq!(push_tag(&plain, 42, &mut tagged), Some(plain.len() + 4));
        let h = VnetHeader::parse(&tagged).unwrap();
        assert_eq!((h.csum_start, h.hdr_len, h.gso_size), (38, 58, 1448));
        assert_eq!(tag_vid(&tagged[VNET_HDR_LEN..]), Some(42));
        assert_eq!(&tagged[VNET_HDR_LEN + 16..VNET_HDR_LEN + 18], &[0x08, 0x00]);
        let mut back = vec![0u8; plain.len()];
        assert_eq!(pop_tag(&tagged, &mut back), Some(plain.len()));
        assert_eq!(back, plain);
    }

    #[test]
    fn a_plain_header_is_left_alone_and_untagged_frames_do_not_pop() {
        let plain = bytes(VnetHeader::default(), [0x08, 0x06], &[1; 28]);
        let mut tagged = vec![0u8; plain.len() + 4];
        push_tag(&plain, 10, &mut tagged).unwrap();
        assert_eq!(VnetHeader::parse(&tagged), Some(VnetHeader::default()));
        let mut out = vec![0u8; plain.len()];
        assert_eq!(pop_tag(&plain, &mut out), None);
        assert_eq!(push_tag(&plain[..20], 10, &mut tagged), None);
    }

    #[test]
    fn insert_in_place_is_push() {
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHeader::default()
        };
        let plain = bytes(hdr, [0x08, 0x00], &[3; 50]);
        let mut pushed = vec![0u8; plain.len() + 4];
        push_tag(&plain, 0x123, &mut pushed).unwrap();
        let mut buf = plain.clone();
        buf.resize(plain.len() + 4, 0);
        assert_eq!(
            insert_tag(&mut buf, plain.len(), 0x8100, 0x123),
            Some(plain.len() + 4)
        );
        assert_eq!(buf, pushed);
        assert_eq!(
            insert_tag(&mut buf, plain.len() + 4, 0x8100, 1),
            None,
            "no room"
        );
    }
}
