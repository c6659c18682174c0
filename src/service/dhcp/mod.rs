//! DHCPv4 for reservations and a pool, with leases that survive crashes.
//!
//! # Theory of operation
//!
//! - [`server`]: [`DhcpServer::process`] takes the UDP payload of a client message (port 67),
//!   the ingress port id and `now`, and returns an [`Outcome`]: the reply (dhcproto-encoded
//!   bytes and where to send them) and the lease change to persist. dnsmasq's behaviour is the
//!   reference: authoritative, reservations by MAC, client id or hostname, an optional pool.
//! - [`validate`]: a pre-scan of the raw options, so that dhcproto never sees the option lengths
//!   that make it `debug_assert!`/underflow (80, 81, 91-94, 151-155).
//! - [`params`]: [`DhcpParams`], the plain configuration the daemon maps its TOML onto.
//! - [`leases`]: the in-memory [`LeaseTable`] (O(1) by client key and by address) and the
//!   dnsmasq-format lease file.
//! - [`frame`]: [`frame::dhcp_payload`] recognises a request frame for the service port, and
//!   [`frame::emit_reply_frame`] wraps a reply in Ethernet/IPv4/UDP with both checksums.
//! - [`journal`]: the append-only, CRC-checked, fsynced journal; replay and compaction.
//!
//! # The caller's contract (fsync before ACK)
//!
//! For each [`Outcome`], the daemon first makes `outcome.change` durable in the [`Journal`]
//! ([`Journal::append`] fsyncs; the daemon writes a group of changes and fsyncs once), and only
//! then sends `outcome.reply`. If that fails the reply must not leave: a client then retries,
//! and no acknowledged lease is ever lost.

pub mod frame;
pub mod journal;
pub mod leases;
pub mod params;
mod reply;
pub mod server;
pub mod validate;

pub use journal::{Journal, ReplayStats};
pub use leases::{ClientKey, Lease, LeaseChange, LeaseTable};
pub use params::{
    DhcpParams, ExtraOption, KeyMode, ParamsError, PortBinding, RateLimit, Reservation,
};
pub use server::{Destination, DhcpServer, DropReason, LeaseTerm, Outcome, Reply};
