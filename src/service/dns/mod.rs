//! DNS for the network's names: an authoritative zone kept live from the DHCP leases, a
//! forwarder with a bounded cache, and a minimal TCP responder. Sans-IO: bytes and `now` in,
//! bytes out.
//!
//! # Theory of operation
//!
//! - [`zone`]: the [`Zone`], authoritative for `[network] domain` and the subnet's reverse
//!   names: reservations, static records, and lease hostnames that collide with nothing.
//! - [`cache`]: the [`Cache`] of upstream answers (positive and negative, TTLs honoured).
//! - [`server`]: [`DnsServer`], the query path: parse (hickory-proto), answer locally, from the
//!   cache, or forward, with a bounded table of pending queries and SERVFAIL on timeout.
//! - [`fast`]: the fast path for local answers: each one's bytes kept ready and patched with the
//!   query's id, RD flag and spelling, without a parse or an encode per query.
//! - [`tcp`]: [`tcp::TcpResponder`], just enough TCP to take one length-prefixed query per
//!   segment stream and return its answer (RFC 7766), bounded in connections and time.
//! - [`params`]: [`DnsParams`], the plain settings the daemon maps its TOML onto.
//!
//! Why hickory-proto and not hickory-server: the queries reach the appliance as Ethernet frames
//! on the switch's service port, not on a socket, and the appliance thread is synchronous and
//! owns the zone without locks. hickory-server's handlers are async (tokio), take their
//! requests from its own UDP/TCP listeners, and its in-memory zones sit behind async locks;
//! driving it from the frame path would mean a runtime and a copy of every query through it.
//! hickory-proto gives the part that matters for safety, the message codec, with no I/O.

pub mod cache;
pub mod fast;
pub mod lease6;
pub mod params;
mod reverse6;
pub mod server;
pub mod tcp;
pub mod zone;

pub use cache::Cache;
pub use fast::SharedMemo;
pub use lease6::Refused6;
pub use params::{DnsHost, DnsParams, ForwardRule, RecordValue, StaticRecord};
pub use server::{
    ClientReply, DnsCounters, DnsServer, DropReason, IdSource, Outcome, Transport, Xorshift,
    ZoneMut,
};
pub use zone::{Lookup, NameRefused, Zone};
