//! What the switch needs from the wire that it parses itself: the MAC address newtype, the
//! Ethernet header view the forwarding decision reads, the virtio-net header that every tap
//! frame carries in front of it, and `gso`: software segmentation and checksum completion for
//! frames whose virtio-net header leaves that work to the switch.
//!
//! Views follow smoltcp's contract: `new_checked` for untrusted bytes, accessors that cannot go
//! out of bounds once checked.

mod ethernet;
pub mod gso;
pub mod ipv4;
pub mod ipv6;
mod mac;
pub mod tcp;
mod vnet;

pub use ethernet::{EtherType, EthernetFrame, ETHERNET_HEADER_LEN, VLAN_TAG_LEN};
pub use mac::{MacAddr, ParseMacError};
pub use vnet::{VnetHeader, VNET_HDR_LEN};
