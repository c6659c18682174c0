//! TOML → validated `Config`. (Types fixed here; loading and validation being written.)

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::wire::MacAddr;

/// A validated configuration: every cross-reference resolved to an index, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from ("<embedded default>" or a path), for messages.
    pub source: String,
    pub network: Network,
    pub switch: SwitchConfig,
    pub hosts: Vec<Host>,
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Used in socket and state file names: `[a-z0-9_-]{1,32}`.
    pub name: String,
    pub subnet: Ipv4Net,
    /// The appliance's address on the segment; inside `subnet`, not its network or broadcast.
    pub gateway: Ipv4Addr,
    pub domain: String,
    /// IP MTU of the segment (68..=65535; default 1500). Ports inherit it unless they set their own.
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwitchConfig {
    /// FDB ageing time (default 300 s). Zero: never learn (hub).
    pub ageing: Duration,
    /// Global FDB cap (default 65536).
    pub max_macs: usize,
    /// Per-port FDB cap (default 1024).
    pub max_macs_per_port: usize,
    /// Data-plane worker threads; 0 (default) = one per core.
    pub workers: usize,
    /// `[[switch.fdb]]` static entries: never age, never move.
    pub static_fdb: Vec<StaticFdb>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaticFdb {
    pub mac: MacAddr,
    /// Index into `Config::ports`.
    pub port: usize,
}

/// A `[[host]]` reservation: one machine on the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// A DNS label: `[a-z0-9-]{1,63}`, not starting or ending with '-'.
    pub name: String,
    pub mac: MacAddr,
    /// Inside the subnet, not the gateway, network or broadcast address.
    pub ipv4: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    pub name: String,
    pub kind: PortKind,
    /// Index into `Config::hosts`.
    pub host: Option<usize>,
    pub isolated: bool,
    /// Per-port MTU (default: `[network] mtu`).
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PortKind {
    Tap(TapConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TapConfig {
    /// 1..=15 bytes, no '/', no whitespace (IFNAMSIZ).
    pub ifname: String,
    /// Move the tap's netdev into this named network namespace (`/run/netns/NAME`).
    pub netns: Option<String>,
    /// What the daemon configures on the netdev inside `netns`.
    pub address: AddressMode,
}

/// `address = "static" | "none"` on a tap port with a `netns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// Assign the host reservation's IPv4 with the subnet's prefix length (default when the port
    /// has a netns and its host has an ipv4).
    Static,
    /// Leave addressing to the namespace (a DHCP client, or nothing).
    None,
}

/// A config error: says where (file:line), which key, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `{location}` is `file:line` (or `file` when no line is known).
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}
