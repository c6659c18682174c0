//! The appliance's services: sans-IO state machines behind the switch's service port.
//!
//! # Theory of operation
//!
//! Each service takes the payload of one request, the ingress port id and `now` (seconds since
//! the Unix epoch), and returns what to send and what to persist. It opens no socket and reads no
//! clock: the daemon owns fds, files (except the lease journal, which is plain `std::fs`), frame
//! building and time. So every service is tested with a virtual clock and benchmarked without I/O.
//!
//! - [`dhcp`]: the DHCPv4 server, its lease table and its crash-safe journal.
//! - [`dhcp6`]: the DHCPv6 server and its own journal (`leases6.journal`).
//! - [`dns`]: the authoritative zone of the network's names, the forwarder and its cache, and the
//!   minimal TCP responder for DNS over TCP.
//! - [`ndp`]: the appliance's IPv6 presence: neighbour discovery, ping6, router advertisements.

pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod ndp;
