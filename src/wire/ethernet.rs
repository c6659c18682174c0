//! A zero-copy view of an Ethernet II header, with the 802.1Q tag the switch must see through.

use super::MacAddr;

/// Destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// An 802.1Q / 802.1ad tag: TPID + TCI.
pub const VLAN_TAG_LEN: usize = 4;

/// The EtherTypes the switch names; everything else is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    Ipv6,
    /// 802.1Q customer tag.
    Vlan,
    /// 802.1ad service tag (QinQ).
    QinQ,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(v) => v,
        }
    }
}

/// A checked view of an Ethernet frame (no FCS: taps and sockets never carry it).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` if it holds at least a full header; `None` for a runt.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= ETHERNET_HEADER_LEN).then_some(EthernetFrame { buffer })
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[0..6])
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[6..12])
    }

    pub fn ethertype(&self) -> EtherType {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]]).into()
    }

    /// Length of the L2 header including any stacked VLAN tags (bounded by the frame), which is
    /// what an MTU applies after. Tags are skipped only while the frame still holds them.
    pub fn header_len(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut off = 12;
        while off + 2 + VLAN_TAG_LEN <= b.len()
            && matches!(
                EtherType::from(u16::from_be_bytes([b[off], b[off + 1]])),
                EtherType::Vlan | EtherType::QinQ
            )
        {
            off += VLAN_TAG_LEN;
        }
        off + 2
    }

    /// Bytes after the L2 header (the "MTU-sized" part of the frame).
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len().saturating_sub(self.header_len())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runt_is_rejected() {
        assert!(EthernetFrame::new_checked(&[0u8; 13][..]).is_none());
        assert!(EthernetFrame::new_checked(&[0u8; 14][..]).is_some());
    }

    #[test]
    fn fields_and_vlan_header_len() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        f.extend_from_slice(&[0u8; 20]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst_addr().is_broadcast());
        assert_eq!(e.src_addr().to_string(), "52:54:00:00:00:01");
        assert_eq!(e.ethertype(), EtherType::Vlan);
        assert_eq!(e.header_len(), 18);
        assert_eq!(e.payload_len(), 20);
    }
}
