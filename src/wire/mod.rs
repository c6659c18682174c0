//! What the switch needs from the wire that it parses itself: the MAC address newtype, the
//! Ethernet header view the forwarding decision reads, the virtio-net header that every tap
//! frame carries in front of it, one view per L3/L4 header (`ipv4`, `udp`, `icmp`, `tcp`) and
//! the internet checksum once (`checksum`), and `gso`: software segmentation and checksum
//! completion for frames whose virtio-net header leaves that work to the switch. Every other
//! module (the guard, GSO, the appliance, the DNS fast path, the drop log, the capture summary)
//! reads IPv4 and UDP headers through these views, never at offsets of its own.
//!
//! Views follow smoltcp's contract: `new_checked` for untrusted bytes, accessors that cannot go
//! out of bounds once checked.

pub mod checksum;
mod ethernet;
pub mod gso;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
mod mac;
pub mod tcp;
pub mod udp;
pub mod vlan;
mod vnet;
pub mod vxlan;

pub use ethernet::{EtherType, EthernetFrame, ETHERNET_HEADER_LEN, VLAN_TAG_LEN};
pub use mac::{MacAddr, ParseMacError};
pub use vnet::{VnetHeader, VNET_HDR_LEN};
