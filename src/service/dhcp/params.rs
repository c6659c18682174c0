//! The DHCP server's configuration, as plain values the daemon maps its TOML onto.
//!
//! # Theory of operation
//!
//! [`DhcpParams`] is what the server needs and nothing more; [`DhcpParams::new`] fills the
//! defaults of issue 3 (lease 1 h, 4 leases per port, MAC keying). [`DhcpParams::validate`]
//! checks what the state machine relies on (addresses inside the subnet, the lease minimum, a
//! sane pool) so the server never has to handle an impossible configuration at run time.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::Name;
use ipnet::Ipv4Net;

use crate::wire::MacAddr;

/// RFC 2131 leaves the minimum to the server; dnsmasq's is 2 minutes.
pub const MIN_LEASE: Duration = Duration::from_secs(120);

/// How clients are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// By MAC (chaddr), whatever client id the client sends: a guest that changes its client id
    /// across reboots keeps its address (the Multipass pain point).
    #[default]
    Mac,
    /// By client identifier (option 61) when present, else by MAC.
    ClientId,
}

/// A `[[host]]` reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// A DNS label; sent as option 12 and written to the lease file.
    pub name: String,
    /// Matched against chaddr unless `client_id` is set or `match_hostname` is true.
    pub mac: Option<MacAddr>,
    /// When set, matched against option 61 instead of the MAC.
    pub client_id: Option<Vec<u8>>,
    /// Inside the subnet; may be outside the pool.
    pub ipv4: Ipv4Addr,
    /// Match the client's option 12 (case-insensitively) against `name` instead.
    pub match_hostname: bool,
}

/// An option from `[[dhcp.option]]`: sent as raw bytes, replacing a built-in value of the same
/// code. Empty `data` suppresses the option (a default one too, such as 3 or 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraOption {
    pub code: u8,
    pub data: Vec<u8>,
    /// Sent even when the client did not ask for it (dnsmasq's `dhcp-option-force`).
    pub always: bool,
}

/// Codes the server manages itself: `[[dhcp.option]]` may not set them.
pub const MANAGED_OPTIONS: &[u8] = &[0, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82, 255];

/// What the server knows of one switch port: which host it is bound to and, on a port whose
/// guard enforces, the MACs and addresses that host may use. The daemon declares every port
/// ([`DhcpParams::ports`]); a lease recorded on a declared port belongs to that port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortBinding {
    /// The `[[host]]` bound to the port (its reservation's name), if any.
    pub host: Option<String>,
    /// `Some` on a port whose guard enforces: `chaddr` must be one of these MACs.
    pub guard_macs: Option<Vec<MacAddr>>,
    /// On an enforcing port, the declared addresses (reservation, `extra_ipv4`) an INFORM's
    /// `ciaddr` may name besides the port's own leases.
    pub ipv4: Vec<Ipv4Net>,
}

/// A per-port token bucket: `burst` messages at once, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub burst: u32,
}

/// Everything the server needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpParams {
    /// Option 54, and the gateway address of the appliance.
    pub server_id: Ipv4Addr,
    pub subnet: Ipv4Net,
    /// Option 3; `None`: not sent.
    pub router: Option<Ipv4Addr>,
    /// Option 6; empty: not sent.
    pub dns: Vec<Ipv4Addr>,
    /// Option 15; `None`: not sent.
    pub domain: Option<String>,
    /// Option 119; empty: not sent.
    pub search: Vec<String>,
    /// Option 121; empty: not sent. A default route via `router` is added when missing.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Option 26; `None`: not sent.
    pub mtu: Option<u16>,
    /// `None`: infinite.
    pub lease_time: Option<Duration>,
    /// Inclusive range; `None`: reservations only.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub key_mode: KeyMode,
    pub max_leases_per_port: usize,
    /// `None`: no rate limit.
    pub rate_limit: Option<RateLimit>,
    pub reservations: Vec<Reservation>,
    /// `[[dhcp.option]]`, in config order, codes unique and not in [`MANAGED_OPTIONS`].
    pub extra_options: Vec<ExtraOption>,
    /// Ports whose messages may be relayed (giaddr set) and that have no per-port lease cap:
    /// the `trusted` ports (uplinks, relay agents).
    pub trusted_ports: Vec<u16>,
    /// Every port of the switch by id, with its host and guard (see [`PortBinding`]). Empty:
    /// nothing is known of ports, and no message is checked against its port (a sans-IO user
    /// that does not care; the daemon always fills it).
    pub ports: BTreeMap<u16, PortBinding>,
}

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("{what} {addr} is not a host address of the subnet {subnet}: pick one inside it")]
    OutsideSubnet {
        what: &'static str,
        addr: Ipv4Addr,
        subnet: Ipv4Net,
    },
    #[error("the pool starts at {0} after it ends at {1}: swap them")]
    PoolReversed(Ipv4Addr, Ipv4Addr),
    #[error("lease time {0:?} is below the minimum of 2 minutes: use at least 120 s or infinite")]
    LeaseTooShort(Duration),
    #[error("search domain {0:?} is not a valid DNS name")]
    BadSearchDomain(String),
    #[error("option {0} is managed by the server and cannot be configured")]
    ManagedOption(u8),
    #[error("option {0} is configured twice")]
    DuplicateOption(u8),
    #[error("option {0} is {1} bytes long; an option holds at most 255")]
    OptionTooLong(u8, usize),
    #[error("reservation {0:?} has neither a MAC, a client id nor hostname matching")]
    UnmatchableReservation(String),
}

impl DhcpParams {
    /// The defaults: router and DNS are the server itself, lease 1 h, no pool, MAC keying, 4
    /// leases per port, 10 messages/s with a burst of 20 per port.
    pub fn new(server_id: Ipv4Addr, subnet: Ipv4Net) -> DhcpParams {
        DhcpParams {
            server_id,
            subnet,
            router: Some(server_id),
            dns: vec![server_id],
            domain: None,
            search: Vec::new(),
            routes: Vec::new(),
            mtu: None,
            lease_time: Some(Duration::from_secs(3600)),
            pool: None,
            key_mode: KeyMode::Mac,
            max_leases_per_port: 4,
            rate_limit: Some(RateLimit {
                per_sec: 10,
                burst: 20,
            }),
            reservations: Vec::new(),
            extra_options: Vec::new(),
            trusted_ports: Vec::new(),
            ports: BTreeMap::new(),
        }
    }

    /// Is `ip` a host address of the subnet (not its network or broadcast address)?
    pub fn is_host_addr(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip)
            && (self.subnet.prefix_len() >= 31
                || (ip != self.subnet.network() && ip != self.subnet.broadcast()))
    }

    /// Checks the invariants the server relies on; returns the parsed search list.
    pub fn validate(&self) -> Result<Vec<Name>, ParamsError> {
        let inside = |what, addr| {
            if self.is_host_addr(addr) {
                Ok(())
            } else {
                Err(ParamsError::OutsideSubnet {
                    what,
                    addr,
                    subnet: self.subnet,
                })
            }
        };
        inside("server id", self.server_id)?;
        if let Some((lo, hi)) = self.pool {
            inside("pool start", lo)?;
            inside("pool end", hi)?;
            if lo > hi {
                return Err(ParamsError::PoolReversed(lo, hi));
            }
        }
        if let Some(t) = self.lease_time.filter(|t| *t < MIN_LEASE) {
            return Err(ParamsError::LeaseTooShort(t));
        }
        for r in &self.reservations {
            inside("reservation", r.ipv4)?;
            if r.mac.is_none() && r.client_id.is_none() && !r.match_hostname {
                return Err(ParamsError::UnmatchableReservation(r.name.clone()));
            }
        }
        let mut seen = HashSet::new();
        for o in &self.extra_options {
            if MANAGED_OPTIONS.contains(&o.code) {
                return Err(ParamsError::ManagedOption(o.code));
            }
            if !seen.insert(o.code) {
                return Err(ParamsError::DuplicateOption(o.code));
            }
            if o.data.len() > 255 {
                return Err(ParamsError::OptionTooLong(o.code, o.data.len()));
            }
        }
        self.search
            .iter()
            .map(|s| Name::from_ascii(s).map_err(|_| ParamsError::BadSearchDomain(s.clone())))
            .collect()
    }
}
