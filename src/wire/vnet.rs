//! The virtio-net header (`struct virtio_net_hdr_mrg_rxbuf`, 12 bytes) that precedes every frame
//! read from or written to a tap opened with `IFF_VNET_HDR` and `TUNSETVNETHDRSZ(12)`.
//!
//! The switch carries the header end to end: a frame read with one is written with the same one,
//! so checksum-offload and GSO metadata survive the trip. With offloads off (the default until
//! `TUNSETOFFLOAD` is used) the kernel sends an all-zero header: a plain, complete frame.

/// Size of the header the switch negotiates on every tap (`TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 12;

/// A parsed virtio-net header (little-endian on the wire for modern virtio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl VnetHeader {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at csum_start+csum_offset is still partial.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_NONE`
    pub const GSO_NONE: u8 = 0;

    /// Parses the first `VNET_HDR_LEN` bytes; `None` if there are fewer.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        })
    }

    /// Writes the header into the first `VNET_HDR_LEN` bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
    }

    /// A GSO super-frame (larger than one MTU, to be segmented by whoever can).
    pub fn is_gso(&self) -> bool {
        self.gso_type != Self::GSO_NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = VnetHeader {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(VnetHeader::parse(&b), Some(h));
        assert_eq!(VnetHeader::parse(&b[..11]), None);
    }
}
