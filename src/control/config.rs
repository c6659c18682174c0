//! TOML → validated `Config`.
//!
//! # Theory of operation
//!
//! One config file describes one network: its `[network]` (subnet, gateway, domain), the
//! `[switch]` tuning, the `[[host]]` reservations, the `[[port]]`s, the `[dhcp]` server
//! (`dhcp.rs`, with the hosts' `client_id`/`match` keys and [`dhcp_params`]) and the `[dns]`
//! server (`dns.rs`, with [`dns_params`]).
//! `config/default.toml` is the reference: it is embedded in the binary ([`DEFAULT_CONFIG`]) and
//! commented key by key.
//!
//! Loading is two steps. First serde + toml deserialize the text into private `Raw*` structs that
//! mirror the file exactly: `deny_unknown_fields` turns a misspelt key into an error naming it, and
//! every value that gets a semantic check is a `toml::Spanned` so the check can point at its line.
//! Second, [`parse`] validates the raw structs section by section (network, hosts, ports, static
//! FDB) and builds a [`Config`] in which every value is in range and every cross-reference
//! (a port's host, a static FDB entry's port) is resolved to an index.
//!
//! The file is user input: nothing here panics on any text. Every problem is a
//! [`ConfigError::Invalid`] located at `file:line`, naming the entry and the key, and saying what
//! to do. Validation stops at the first problem; a duplicate is reported at its second occurrence.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use toml::Spanned;

use crate::wire::MacAddr;

mod control;
mod dhcp;
mod dns;
mod guard;
mod host_port;
mod kinds;
mod live;
mod ports;
pub use control::{default_socket, ControlConfig, DEFAULT_SOCKET_DIR};
pub use dhcp::{dhcp_params, DhcpConfig, HostMatch};
pub use dns::{dns_params, DnsConfig};
pub use guard::Guard;
pub use host_port::Forward;
pub use kinds::MAX_PATH_LEN as MAX_SOCKET_PATH_LEN;
pub use live::{LiveError, NewHost};
pub use ports::NewPort;

/// The built-in configuration: a ready three-host lab network, and the commented reference.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// What [`Config::source`] says for [`DEFAULT_CONFIG`].
pub const DEFAULT_SOURCE: &str = "<embedded default>";

/// A validated configuration: every cross-reference resolved to an index, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from (`"<embedded default>"` or a path), for messages.
    pub source: String,
    pub network: Network,
    pub switch: SwitchConfig,
    pub hosts: Vec<Host>,
    pub ports: Vec<PortConfig>,
    /// `[dhcp]`, defaults filled in.
    pub dhcp: DhcpConfig,
    /// `[dns]`, defaults filled in.
    pub dns: DnsConfig,
    /// The control socket (`[switch] control_socket`, `control_group`) and `[metrics]`.
    pub control: ControlConfig,
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
    /// `forward = "none" | "nat"`: whether the host masquerades the subnet's traffic to the
    /// outside (needs a host port, which is then the VMs' router).
    pub forward: Forward,
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
    /// Ports the daemon can hold at once, configured and hotplugged (default 256).
    pub max_ports: usize,
    /// Storm control: broadcast/multicast frames a second accepted per port (default 10000);
    /// `None` (`"off"`): no limit.
    pub storm_limit: Option<u32>,
    /// Loop detection by probe (default on): a port that closes a loop is blocked for a while.
    pub loop_detection: bool,
    /// Busy polling: after its last frame a worker keeps polling its ports for this long before
    /// it sleeps (default zero: it sleeps at once).
    pub poll: Duration,
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
    /// Always set unless `match_by` is [`HostMatch::Hostname`].
    pub mac: Option<MacAddr>,
    /// Inside the subnet, not the gateway, network or broadcast address.
    pub ipv4: Option<Ipv4Addr>,
    /// DHCP client identifier (option 61), 2 to 255 bytes; set when `match_by` is `ClientId`.
    pub client_id: Option<Vec<u8>>,
    /// How DHCP recognises this host (default: by MAC, or by client id when one is given).
    pub match_by: HostMatch,
    /// Further source MACs the guard allows (a VRRP virtual MAC, a nested bridge).
    pub extra_macs: Vec<MacAddr>,
    /// Further IPv4 sources the guard allows: addresses (/32) and prefixes (a VIP, a pool).
    pub extra_ipv4: Vec<Ipv4Net>,
    /// Further IPv6 sources the guard allows, besides `::` (DAD) and the EUI-64 link-local.
    pub extra_ipv6: Vec<Ipv6Net>,
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
    /// The guard, resolved: `Off` without a host, with `guard = false` or `trusted = true`.
    pub guard: Guard,
    /// An uplink or a legitimate server's port: exempt from the guard.
    pub trusted: bool,
    /// The guard allows any fe80::/10 source, not just the host MAC's EUI-64 one.
    pub any_link_local: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PortKind {
    Tap(TapConfig),
    /// An `AF_PACKET` socket on an existing netdev.
    Packet(PacketConfig),
    /// QEMU `-netdev stream` on a unix socket the switch listens on.
    Stream(StreamConfig),
    /// QEMU `-netdev dgram` on a unix datagram socket the switch binds.
    Dgram(DgramConfig),
}

impl PortKind {
    /// The netdev name of a tap or packet port.
    pub fn ifname(&self) -> Option<&str> {
        match self {
            PortKind::Tap(t) => Some(&t.ifname),
            PortKind::Packet(p) => Some(&p.ifname),
            PortKind::Stream(_) | PortKind::Dgram(_) => None,
        }
    }

    /// The namespace the port's netdev lives in, and whether the daemon creates it if it is
    /// missing (a tap's; a packet port's netdev must already be there).
    pub fn netns(&self) -> Option<(&str, bool)> {
        match self {
            PortKind::Tap(t) => t.netns.as_deref().map(|n| (n, true)),
            PortKind::Packet(p) => p.netns.as_deref().map(|n| (n, false)),
            PortKind::Stream(_) | PortKind::Dgram(_) => None,
        }
    }

    /// `"tap"`, `"packet"`, `"stream"` or `"dgram"`, as in the config.
    pub fn name(&self) -> &'static str {
        match self {
            PortKind::Tap(_) => "tap",
            PortKind::Packet(_) => "packet",
            PortKind::Stream(_) => "stream",
            PortKind::Dgram(_) => "dgram",
        }
    }

    /// Where the port is attached: the netdev name, or the socket path.
    pub fn attachment(&self) -> String {
        match self {
            PortKind::Tap(t) => t.ifname.clone(),
            PortKind::Packet(p) => p.ifname.clone(),
            PortKind::Stream(s) => s.path.display().to_string(),
            PortKind::Dgram(d) => d.path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PacketConfig {
    /// The existing netdev to attach to (1..=15 bytes).
    pub ifname: String,
    /// The named network namespace the netdev lives in (default: the daemon's own).
    pub netns: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Where the switch listens (absolute, at most 107 bytes).
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DgramConfig {
    /// Where the switch binds (QEMU's `remote.path`).
    pub path: PathBuf,
    /// QEMU's `local.path`, where frames go; default: whoever sent the latest datagram.
    pub peer: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TapConfig {
    /// 1..=15 bytes, no '/', no whitespace (IFNAMSIZ).
    pub ifname: String,
    /// Move the tap's netdev into this named network namespace (`/run/netns/NAME`).
    pub netns: Option<String>,
    /// What the daemon configures on the netdev inside `netns`.
    pub address: AddressMode,
    /// A host port: the tap stays in the daemon's namespace with this address (the subnet's
    /// prefix length), the host's own leg on the network. Never with `netns`.
    pub host_address: Option<Ipv4Addr>,
    /// `persist = true`: the tap is made persistent (`TUNSETPERSIST`) and outlives the daemon,
    /// with its namespace and address; a restarted daemon attaches to it again.
    pub persist: bool,
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

/// Smallest IPv4 MTU (RFC 791: every host must accept 68-octet datagrams).
const MIN_MTU: i64 = 68;
/// Largest IPv4 MTU (the 16-bit total length).
const MAX_MTU: i64 = 65535;
const DEFAULT_MTU: u32 = 1500;
const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// A year: longer is "never" in practice, and keeps `now + ageing` far from overflow.
const MAX_AGEING_SECS: u64 = 365 * 24 * 3600;
const DEFAULT_MAX_MACS: usize = 65536;
/// Caps the FDB's memory: a typo (one zero too many) must not ask for gigabytes.
const MAX_MAX_MACS: i64 = 1 << 24;
const DEFAULT_MAX_MACS_PER_PORT: usize = 1024;
const MAX_WORKERS: i64 = 64;
/// A second: longer polling is a worker that never sleeps while anything moves.
const MAX_POLL_US: i64 = 1_000_000;
const DEFAULT_MAX_PORTS: usize = 256;
const MAX_MAX_PORTS: i64 = 4096;
/// Storm control default: broadcast/multicast frames a second per port. A host sending more is
/// a storm (an ARP sweep of a /16 at full speed stays below it; a broadcast loop does not).
const DEFAULT_STORM_LIMIT: u32 = 10_000;
const MAX_STORM_LIMIT: i64 = 100_000_000;
/// The port kinds this version knows (`kind = "..."`).
const KNOWN_KINDS: &[&str] = &["tap", "packet", "stream", "dgram"];
/// IFNAMSIZ - 1: the kernel's limit on a netdev name.
const MAX_IFNAME_LEN: usize = 15;
const MAX_NETNS_LEN: usize = 64;

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates the built-in [`DEFAULT_CONFIG`].
pub fn load_default() -> Result<Config, ConfigError> {
    parse(DEFAULT_CONFIG, DEFAULT_SOURCE)
}

/// Validates config `text`; `source` names it in errors (`source:line: ...`) and in
/// [`Config::source`].
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
    let cx = Cx { text, source };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let Some(network) = raw.network else {
        return Err(cx.error(
            0..0,
            "missing [network] section (add one with name, subnet, gateway and domain)".into(),
        ));
    };
    let forward_span = network.forward.as_ref().map(Spanned::span);
    let network = validate_network(&cx, network)?;
    let hosts = validate_hosts(&cx, &network, raw.host)?;
    let host_addresses: Vec<_> = raw
        .port
        .iter()
        .map(|p| p.get_ref().host_address.clone())
        .collect();
    let mut ports = validate_ports(&cx, &network, &hosts, raw.port)?;
    let control =
        control::validate_control(&cx, &network, raw.switch.as_ref(), raw.metrics.as_ref())?;
    let switch = validate_switch(&cx, raw.switch, &hosts, &ports)?;
    let dhcp = dhcp::validate_dhcp(&cx, &network, raw.dhcp)?;
    let dns = dns::validate_dns(&cx, &network, &hosts, raw.dns)?;
    host_port::validate_host_ports(
        &cx,
        &network,
        &hosts,
        &dhcp,
        &mut ports,
        &host_addresses,
        forward_span,
    )?;
    Ok(Config {
        source: source.to_string(),
        network,
        switch,
        hosts,
        ports,
        dhcp,
        dns,
        control,
    })
}

// ---- The file as written: private mirrors of the TOML, spans on every checked value. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a config document")]
struct RawConfig {
    network: Option<RawNetwork>,
    switch: Option<RawSwitch>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
    #[serde(default)]
    port: Vec<Spanned<RawPort>>,
    dhcp: Option<dhcp::RawDhcp>,
    dns: Option<dns::RawDns>,
    metrics: Option<control::RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [network] table")]
struct RawNetwork {
    name: Spanned<String>,
    subnet: Spanned<String>,
    gateway: Spanned<String>,
    domain: Spanned<String>,
    mtu: Option<Spanned<i64>>,
    forward: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [switch] table")]
struct RawSwitch {
    /// A string with a unit ("300s", "5m", "1h") or an integer number of seconds.
    ageing: Option<Spanned<toml::Value>>,
    max_macs: Option<Spanned<i64>>,
    max_macs_per_port: Option<Spanned<i64>>,
    workers: Option<Spanned<i64>>,
    max_ports: Option<Spanned<i64>>,
    /// Frames a second, or "off".
    storm_limit: Option<Spanned<toml::Value>>,
    loop_detection: Option<bool>,
    poll_us: Option<Spanned<i64>>,
    #[serde(default)]
    fdb: Vec<RawFdb>,
    control_socket: Option<Spanned<String>>,
    control_group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[switch.fdb]] table")]
struct RawFdb {
    mac: Spanned<String>,
    port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[host]] table")]
struct RawHost {
    name: Spanned<String>,
    /// Required unless `match = "hostname"` (checked in `dhcp::host_dhcp`).
    mac: Option<Spanned<String>>,
    ipv4: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    #[serde(rename = "match")]
    match_by: Option<Spanned<String>>,
    #[serde(default)]
    extra_macs: Vec<Spanned<String>>,
    #[serde(default)]
    extra_ipv4: Vec<Spanned<String>>,
    #[serde(default)]
    extra_ipv6: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[port]] table")]
struct RawPort {
    name: Spanned<String>,
    kind: Spanned<String>,
    ifname: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    netns: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    host_address: Option<Spanned<String>>,
    persist: Option<Spanned<bool>>,
    path: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    isolated: Option<bool>,
    mtu: Option<Spanned<i64>>,
    /// `true`, `false` or `"monitor"`.
    guard: Option<Spanned<toml::Value>>,
    trusted: Option<bool>,
    any_link_local: Option<bool>,
}

// ---- Locations and messages. ----

/// The text being parsed and its name: turns byte spans into `file:line` errors.
struct Cx<'a> {
    text: &'a str,
    source: &'a str,
}

impl Cx<'_> {
    /// 1-based line of byte offset `at` (clamped to the text).
    fn line(&self, at: usize) -> usize {
        let end = at.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: format!("{}:{}", self.source, self.line(span.start)),
            message,
        }
    }

    /// A syntax or shape error from toml/serde, with the enclosing section and key when the text
    /// shows them, and toml's own words in our vocabulary ("key", not "field").
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e
            .message()
            .trim()
            .lines()
            .collect::<Vec<_>>()
            .join("; ")
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key")
            .replace("expected i64", "expected an integer");
        if message.starts_with("unknown key") {
            message.push_str(" (check the spelling, or remove it)");
        } else if message.starts_with("missing key") {
            message.push_str(" (add it)");
        }
        let Some(span) = e.span() else {
            return ConfigError::Invalid {
                location: self.source.to_string(),
                message,
            };
        };
        let line = self.line(span.start);
        let line_text = self.text.lines().nth(line - 1).unwrap_or("");
        let line_start = self.text.len().min(span.start) - self.column(span.start);
        let mut context = Vec::new();
        if let Some(section) = self.section_of(line, &message) {
            context.push(section);
        }
        // A value error ("invalid type ...") points after `key =`: name the key.
        let in_line = span.start.saturating_sub(line_start);
        if let Some((key, _)) = line_text.split_once('=') {
            let key = key.trim();
            if in_line > key.len() && !key.is_empty() && !key.starts_with('[') {
                context.push(format!("key '{}'", key.escape_debug()));
            }
        }
        context.push(message);
        ConfigError::Invalid {
            location: format!("{}:{line}", self.source),
            message: context.join(": "),
        }
    }

    /// Bytes between the start of the line holding `at` and `at`.
    fn column(&self, at: usize) -> usize {
        let at = at.min(self.text.len());
        let before = &self.text.as_bytes()[..at];
        before.iter().rev().take_while(|&&b| b != b'\n').count()
    }

    /// The table header in force at `line` ("[network]", "[[port]] #2"), found by scanning the
    /// text; `None` when the error is about the header itself or there is none.
    fn section_of(&self, line: usize, message: &str) -> Option<String> {
        let mut current = None;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (i, text) in self.text.lines().take(line).enumerate() {
            let Some((name, is_array)) = table_header(text) else {
                continue;
            };
            if i + 1 == line && message.starts_with("unknown key") {
                return None;
            }
            current = Some(if is_array {
                let n = counts.entry(name.to_string()).or_default();
                *n += 1;
                format!("[[{name}]] #{n}")
            } else {
                format!("[{name}]")
            });
        }
        current
    }
}

/// `[name]` → `("name", false)`, `[[name]]` → `("name", true)`; anything else → `None`.
fn table_header(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    let (inner, is_array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.split_once("]]")?.0, true)
    } else {
        (line.strip_prefix('[')?.split_once(']')?.0, false)
    };
    let inner = inner.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-. ".contains(c);
    (!inner.is_empty() && inner.chars().all(plain)).then_some((inner, is_array))
}

/// `'value'` for messages, with control characters escaped so a message stays on one line.
fn q(value: &str) -> String {
    format!("'{}'", value.escape_debug())
}

/// Remembers where each value of one key was first seen; reports the second occurrence.
struct Unique<'a> {
    cx: &'a Cx<'a>,
    first_line: HashMap<String, usize>,
}

impl<'a> Unique<'a> {
    fn new(cx: &'a Cx<'a>) -> Self {
        Unique {
            cx,
            first_line: HashMap::new(),
        }
    }

    /// `entry: key 'value' is already used on line N (why; what to do)`.
    fn check(
        &mut self,
        value: String,
        span: &Range<usize>,
        entry: &str,
        key: &str,
        rule: &str,
    ) -> Result<(), ConfigError> {
        let line = self.cx.line(span.start);
        if let Some(first) = self.first_line.insert(value.clone(), line) {
            return Err(self.cx.error(
                span.clone(),
                format!(
                    "{entry}: {key} {} is already used on line {first} ({rule}; change one)",
                    q(&value)
                ),
            ));
        }
        Ok(())
    }
}

// ---- [network] ----

fn validate_network(cx: &Cx<'_>, raw: RawNetwork) -> Result<Network, ConfigError> {
    let e = "[network]";
    let name = raw.name.get_ref();
    if !is_name(name, 32, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
    }) {
        return Err(cx.error(
            raw.name.span(),
            format!(
                "{e}: name {} must be 1 to 32 characters of a-z, 0-9, '_' and '-' \
                 (it names the socket and lease files)",
                q(name)
            ),
        ));
    }

    let subnet_text = raw.subnet.get_ref();
    let subnet: Ipv4Net = subnet_text.parse().map_err(|_| {
        cx.error(
            raw.subnet.span(),
            format!(
                "{e}: subnet {} is not an IPv4 network in CIDR form (write it like \
                 \"10.13.31.0/24\")",
                q(subnet_text)
            ),
        )
    })?;
    if subnet.trunc() != subnet {
        return Err(cx.error(
            raw.subnet.span(),
            format!(
                "{e}: subnet {} has host bits set (did you mean \"{}\"?)",
                q(subnet_text),
                subnet.trunc()
            ),
        ));
    }
    if subnet.prefix_len() > 30 {
        return Err(cx.error(
            raw.subnet.span(),
            format!(
                "{e}: subnet {} leaves no room for a gateway and hosts (use a prefix of /30 or \
                 shorter)",
                q(subnet_text)
            ),
        ));
    }

    let gateway_text = raw.gateway.get_ref();
    let gateway: Ipv4Addr = gateway_text.parse().map_err(|_| {
        cx.error(
            raw.gateway.span(),
            format!(
                "{e}: gateway {} is not an IPv4 address (write it like \"10.13.31.1\")",
                q(gateway_text)
            ),
        )
    })?;
    if let Some(problem) = host_address_problem(subnet, gateway) {
        return Err(cx.error(
            raw.gateway.span(),
            format!(
                "{e}: gateway {gateway} {problem} (pick a host address inside {subnet}, \
                 like {})",
                first_host(subnet)
            ),
        ));
    }

    let domain = normalize_domain(raw.domain.get_ref()).map_err(|problem| {
        cx.error(
            raw.domain.span(),
            format!("{e}: domain {} {problem}", q(raw.domain.get_ref())),
        )
    })?;
    let mtu = mtu(cx, raw.mtu.as_ref(), e)?.unwrap_or(DEFAULT_MTU);
    let forward = host_port::parse_forward(cx, raw.forward.as_ref())?;

    Ok(Network {
        name: name.clone(),
        subnet,
        gateway,
        domain,
        mtu,
        forward,
    })
}

/// Why `addr` cannot be a machine's address on `subnet`, if it cannot.
fn host_address_problem(subnet: Ipv4Net, addr: Ipv4Addr) -> Option<&'static str> {
    if !subnet.contains(&addr) {
        Some("is outside the subnet")
    } else if addr == subnet.network() {
        Some("is the subnet's network address")
    } else if addr == subnet.broadcast() {
        Some("is the subnet's broadcast address")
    } else {
        None
    }
}

fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// `1..=max` bytes, all passing `allowed`.
fn is_name(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    (1..=max).contains(&s.len()) && s.chars().all(allowed)
}

/// Why `label` is not a lowercase DNS label (RFC 1123 host name rules), if it is not.
fn dns_label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        Some("has an empty label".into())
    } else if label.len() > 63 {
        Some(format!("has a label of {} bytes (at most 63)", label.len()))
    } else if let Some(c) = label
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        Some(format!(
            "contains '{}' (use lowercase a-z, 0-9 and '-')",
            c.escape_debug()
        ))
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("has a label starting or ending with '-'".into())
    } else {
        None
    }
}

/// A DNS name, lowercased and without a trailing dot.
fn normalize_domain(domain: &str) -> Result<String, String> {
    let lower = domain.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("is empty (write a DNS name like \"lab.test\")".into());
    }
    if name.len() > 253 {
        return Err(format!("is {} bytes long (at most 253)", name.len()));
    }
    if let Some(problem) = name.split('.').find_map(dns_label_problem) {
        return Err(format!("{problem} (write a DNS name like \"lab.test\")"));
    }
    Ok(name.to_string())
}

fn mtu(cx: &Cx<'_>, raw: Option<&Spanned<i64>>, entry: &str) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let v = *raw.get_ref();
    match u32::try_from(v) {
        Ok(mtu) if (MIN_MTU..=MAX_MTU).contains(&v) => Ok(Some(mtu)),
        _ => Err(cx.error(
            raw.span(),
            format!("{entry}: mtu {v} is out of range (use {MIN_MTU} to {MAX_MTU}; usually 1500)"),
        )),
    }
}

// ---- [[host]] ----

fn validate_hosts(
    cx: &Cx<'_>,
    network: &Network,
    raw: Vec<Spanned<RawHost>>,
) -> Result<Vec<Host>, ConfigError> {
    let (mut names, mut macs, mut ips) = (Unique::new(cx), Unique::new(cx), Unique::new(cx));
    let mut client_ids = Unique::new(cx);
    let mut hosts = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.into_iter().enumerate() {
        let table = spanned.span();
        let h = spanned.into_inner();
        let name = h.name.get_ref();
        if let Some(problem) = dns_label_problem(name) {
            return Err(cx.error(
                h.name.span(),
                format!(
                    "[[host]] #{}: name {} {problem} (a host name is one DNS label, \
                     1 to 63 characters)",
                    i + 1,
                    q(name)
                ),
            ));
        }
        let e = format!("host {}", q(name));
        names.check(
            name.clone(),
            &h.name.span(),
            &e,
            "name",
            "host names must be unique",
        )?;

        let hd = dhcp::host_dhcp(cx, &e, &h, table)?;
        if let (Some(mac), Some(raw_mac)) = (hd.mac, &h.mac) {
            macs.check(
                mac.to_string(),
                &raw_mac.span(),
                &e,
                "mac",
                "each host needs its own MAC",
            )?;
        }
        if let (Some(id), Some(raw_id)) = (&hd.client_id, &h.client_id) {
            client_ids.check(
                crate::service::dhcp::leases::hex_colon(id),
                &raw_id.span(),
                &e,
                "client_id",
                "each host needs its own client id",
            )?;
        }

        let ipv4 = match &h.ipv4 {
            None => None,
            Some(raw_ip) => {
                let ip: Ipv4Addr = raw_ip.get_ref().parse().map_err(|_| {
                    cx.error(
                        raw_ip.span(),
                        format!(
                            "{e}: ipv4 {} is not an IPv4 address (write it like \"{}\", or \
                             remove the key)",
                            q(raw_ip.get_ref()),
                            first_host(network.subnet)
                        ),
                    )
                })?;
                let problem = if ip == network.gateway {
                    Some("is the gateway's address")
                } else {
                    host_address_problem(network.subnet, ip)
                };
                if let Some(problem) = problem {
                    return Err(cx.error(
                        raw_ip.span(),
                        format!(
                            "{e}: ipv4 {ip} {problem} (pick a free address inside {}, \
                             or remove the key)",
                            network.subnet
                        ),
                    ));
                }
                ips.check(
                    ip.to_string(),
                    &raw_ip.span(),
                    &e,
                    "ipv4",
                    "each host needs its own address",
                )?;
                Some(ip)
            }
        };
        let extras = guard::host_extras(cx, network, &e, &h)?;
        hosts.push(Host {
            name: name.clone(),
            mac: hd.mac,
            ipv4,
            client_id: hd.client_id,
            match_by: hd.match_by,
            extra_macs: extras.macs,
            extra_ipv4: extras.ipv4,
            extra_ipv6: extras.ipv6,
        });
    }
    Ok(hosts)
}

/// A MAC that may be a frame's source: not multicast/broadcast, not all zeros.
fn unicast_mac(cx: &Cx<'_>, raw: &Spanned<String>, entry: &str) -> Result<MacAddr, ConfigError> {
    let text = raw.get_ref();
    let mac: MacAddr = text.parse().map_err(|_| {
        cx.error(
            raw.span(),
            format!(
                "{entry}: mac {} is not a MAC address (write six hex bytes like \
                 \"52:54:00:00:00:11\")",
                q(text)
            ),
        )
    })?;
    let problem = if mac.is_zero() {
        Some("is all zeros")
    } else if mac.is_multicast() {
        Some("is a multicast address (the low bit of the first byte is set)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(cx.error(
            raw.span(),
            format!("{entry}: mac {mac} {problem}; use a unicast MAC like \"52:54:00:00:00:11\""),
        )),
        None => Ok(mac),
    }
}

// ---- [[port]] ----

fn validate_ports(
    cx: &Cx<'_>,
    network: &Network,
    hosts: &[Host],
    raw: Vec<Spanned<RawPort>>,
) -> Result<Vec<PortConfig>, ConfigError> {
    let (mut names, mut ifnames, mut netnses) = (Unique::new(cx), Unique::new(cx), Unique::new(cx));
    let mut paths = Unique::new(cx);
    // Host index → (port name, line) of the port it is plugged into.
    let mut plugged: HashMap<usize, (String, usize)> = HashMap::new();
    let mut ports = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.into_iter().enumerate() {
        let table = spanned.span();
        let p = spanned.into_inner();
        let name = p.name.get_ref();
        if !is_name(name, 32, |c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(cx.error(
                p.name.span(),
                format!(
                    "[[port]] #{}: name {} must be 1 to 32 characters of A-Z, a-z, 0-9, '_', \
                     '.' and '-'",
                    i + 1,
                    q(name)
                ),
            ));
        }
        let e = format!("port {}", q(name));
        names.check(
            name.clone(),
            &p.name.span(),
            &e,
            "name",
            "port names must be unique",
        )?;

        if !KNOWN_KINDS.contains(&p.kind.get_ref().as_str()) {
            return Err(cx.error(
                p.kind.span(),
                format!(
                    "{e}: kind {} is not known (known kinds: {})",
                    q(p.kind.get_ref()),
                    KNOWN_KINDS
                        .iter()
                        .map(|k| format!("\"{k}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }

        let host = match &p.host {
            None => None,
            Some(raw_host) => {
                let wanted = raw_host.get_ref();
                let Some(idx) = hosts.iter().position(|h| &h.name == wanted) else {
                    return Err(cx.error(
                        raw_host.span(),
                        format!(
                            "{e}: host {} is not defined in [[host]] (define it or remove the key)",
                            q(wanted)
                        ),
                    ));
                };
                let line = cx.line(raw_host.span().start);
                if let Some((other, first)) = plugged.insert(idx, (name.clone(), line)) {
                    return Err(cx.error(
                        raw_host.span(),
                        format!(
                            "{e}: host {} is already plugged into port {} on line {first} \
                             (a host has at most one port; remove one of the host keys)",
                            q(wanted),
                            q(&other)
                        ),
                    ));
                }
                Some(idx)
            }
        };

        let kind = kinds::validate_kind(cx, &e, &p, table, host.map(|i| &hosts[i]), &mut paths)?;
        if let (Some(ifname), Some(raw)) = (kind.ifname(), &p.ifname) {
            ifnames.check(
                ifname.to_string(),
                &raw.span(),
                &e,
                "ifname",
                "each port needs its own netdev",
            )?;
        }
        // A tap's namespace is a lab host: one port each. Packet ports may share theirs.
        if let (
            PortKind::Tap(TapConfig {
                netns: Some(netns), ..
            }),
            Some(raw_netns),
        ) = (&kind, &p.netns)
        {
            netnses.check(
                netns.clone(),
                &raw_netns.span(),
                &e,
                "netns",
                "one port per namespace",
            )?;
        }

        let (guard, trusted, any_link_local) = guard::port_guard(cx, &e, &p, host.is_some())?;
        if let (Some(h), Some(raw_host), false) = (host, &p.host, guard == Guard::Off) {
            if hosts[h].mac.is_none() {
                return Err(cx.error(
                    raw_host.span(),
                    format!(
                        "{e}: host {} has no mac, and a guarded port needs one (give the host \
                         its mac, or set guard = false on the port)",
                        q(&hosts[h].name)
                    ),
                ));
            }
        }
        ports.push(PortConfig {
            name: name.clone(),
            kind,
            host,
            isolated: p.isolated.unwrap_or(false),
            mtu: mtu(cx, p.mtu.as_ref(), &e)?.unwrap_or(network.mtu),
            guard,
            trusted,
            any_link_local,
        });
    }
    Ok(ports)
}

/// `ifname` (required: `missing` says what it names) and `netns` of a tap or packet port, each
/// checked as the kernel and iproute2 would take it.
fn netdev_keys(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    missing: impl FnOnce() -> String,
) -> Result<(String, Option<String>), ConfigError> {
    let Some(raw_ifname) = &p.ifname else {
        return Err(cx.error(table, format!("{e}: missing key 'ifname' ({})", missing())));
    };
    let ifname = raw_ifname.get_ref();
    if let Some(problem) = ifname_problem(ifname) {
        return Err(cx.error(
            raw_ifname.span(),
            format!("{e}: ifname {} {problem}", q(ifname)),
        ));
    }
    let netns = match &p.netns {
        None => None,
        Some(raw_netns) => {
            let netns = raw_netns.get_ref();
            if let Some(problem) = netns_problem(netns) {
                return Err(cx.error(
                    raw_netns.span(),
                    format!("{e}: netns {} {problem}", q(netns)),
                ));
            }
            Some(netns.clone())
        }
    };
    Ok((ifname.clone(), netns))
}

/// The tap-specific keys: `ifname` (required), `netns`, `address`, `persist`.
fn validate_tap(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    table: Range<usize>,
    host: Option<&Host>,
) -> Result<TapConfig, ConfigError> {
    let (ifname, netns) = netdev_keys(cx, e, p, table, || {
        format!(
            "a tap port needs the netdev name to create, e.g. ifname = \"sy-{}\"",
            p.name.get_ref().escape_debug()
        )
    })?;

    let host_has_ipv4 = host.is_some_and(|h| h.ipv4.is_some());
    let address = match &p.address {
        None if netns.is_some() && host_has_ipv4 => AddressMode::Static,
        None => AddressMode::None,
        Some(raw) => match raw.get_ref().as_str() {
            "none" => AddressMode::None,
            "static" if netns.is_none() => {
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: address \"static\" needs a netns to configure (set netns, or \
                         use address = \"none\")"
                    ),
                ));
            }
            "static" if !host_has_ipv4 => {
                let fix = match host {
                    Some(h) => format!("give host {} an ipv4", q(&h.name)),
                    None => "set host to a [[host]] with an ipv4".to_string(),
                };
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: address \"static\" needs the port's host to have an ipv4 ({fix}, \
                         or use address = \"none\")"
                    ),
                ));
            }
            "static" => AddressMode::Static,
            other => {
                return Err(cx.error(
                    raw.span(),
                    format!(
                        "{e}: address {} is not known (use \"static\" or \"none\")",
                        q(other)
                    ),
                ));
            }
        },
    };

    Ok(TapConfig {
        ifname: ifname.clone(),
        netns,
        address,
        // Checked and set by `host_port::validate_host_ports`, which sees the whole file.
        host_address: None,
        persist: p.persist.as_ref().is_some_and(|v| *v.get_ref()),
    })
}

/// Why the kernel would refuse `name` as a netdev name (`dev_valid_name`), if it would.
fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        Some(format!(
            "is {} bytes long; Linux allows 1 to {MAX_IFNAME_LEN} (shorten it)",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is not a valid netdev name (pick another)".into())
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        Some("contains '/', ':', a NUL or whitespace, which Linux refuses (remove them)".into())
    } else {
        None
    }
}

/// Why `name` cannot name a file in /run/netns, if it cannot.
fn netns_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NETNS_LEN {
        Some(format!(
            "is {} bytes long (use 1 to {MAX_NETNS_LEN})",
            name.len()
        ))
    } else if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some("must be a plain name under /run/netns (no '/', not '.' or '..')".into())
    } else {
        None
    }
}

// ---- [switch] and [[switch.fdb]] ----

fn validate_switch(
    cx: &Cx<'_>,
    raw: Option<RawSwitch>,
    hosts: &[Host],
    ports: &[PortConfig],
) -> Result<SwitchConfig, ConfigError> {
    let e = "[switch]";
    let max_ports = match &raw {
        Some(raw) => count(cx, raw.max_ports.as_ref(), e, "max_ports", 1, MAX_MAX_PORTS)?,
        None => None,
    }
    .unwrap_or(DEFAULT_MAX_PORTS);
    if ports.len() > max_ports {
        let span = raw
            .as_ref()
            .and_then(|r| r.max_ports.as_ref())
            .map_or(0..0, |v| v.span());
        return Err(cx.error(
            span,
            format!(
                "{e}: {} ports are more than max_ports {max_ports} (raise max_ports)",
                ports.len()
            ),
        ));
    }
    let Some(raw) = raw else {
        return Ok(SwitchConfig {
            ageing: DEFAULT_AGEING,
            max_macs: DEFAULT_MAX_MACS,
            max_macs_per_port: DEFAULT_MAX_MACS_PER_PORT,
            workers: 0,
            max_ports,
            storm_limit: Some(DEFAULT_STORM_LIMIT),
            loop_detection: true,
            poll: Duration::ZERO,
            static_fdb: Vec::new(),
        });
    };
    let ageing = match &raw.ageing {
        None => DEFAULT_AGEING,
        Some(v) => parse_ageing(v.get_ref()).map_err(|problem| {
            cx.error(
                v.span(),
                format!(
                    "{e}: ageing {problem} (write a duration like \"300s\", \"5m\" or \"1h\", \
                     or \"0\" to never learn)"
                ),
            )
        })?,
    };
    let max_macs = count(cx, raw.max_macs.as_ref(), e, "max_macs", 1, MAX_MAX_MACS)?
        .unwrap_or(DEFAULT_MAX_MACS);
    let max_macs_per_port = count(
        cx,
        raw.max_macs_per_port.as_ref(),
        e,
        "max_macs_per_port",
        1,
        MAX_MAX_MACS,
    )?
    .unwrap_or(DEFAULT_MAX_MACS_PER_PORT.min(max_macs));
    if max_macs_per_port > max_macs {
        let span = raw.max_macs_per_port.as_ref().map_or(0..0, |v| v.span());
        return Err(cx.error(
            span,
            format!(
                "{e}: max_macs_per_port {max_macs_per_port} is larger than max_macs {max_macs} \
                 (lower it, or raise max_macs)"
            ),
        ));
    }
    let workers = count(cx, raw.workers.as_ref(), e, "workers", 0, MAX_WORKERS)?.unwrap_or(0);
    let poll_us = count(cx, raw.poll_us.as_ref(), e, "poll_us", 0, MAX_POLL_US)?.unwrap_or(0);
    let storm_limit = match &raw.storm_limit {
        None => Some(DEFAULT_STORM_LIMIT),
        Some(v) => match v.get_ref() {
            toml::Value::String(s) if s == "off" => None,
            toml::Value::Integer(n) if (10..=MAX_STORM_LIMIT).contains(n) => Some(*n as u32),
            other => {
                return Err(cx.error(
                    v.span(),
                    format!(
                        "{e}: storm_limit {other} is not a rate (write broadcast and multicast \
                         frames a second per port, 10 to {MAX_STORM_LIMIT}, or \"off\")"
                    ),
                ))
            }
        },
    };

    let mut macs = Unique::new(cx);
    let mut static_fdb = Vec::with_capacity(raw.fdb.len());
    for (i, f) in raw.fdb.iter().enumerate() {
        let fe = format!("[[switch.fdb]] #{}", i + 1);
        let mac = unicast_mac(cx, &f.mac, &fe)?;
        macs.check(
            mac.to_string(),
            &f.mac.span(),
            &fe,
            "mac",
            "a MAC has one static port",
        )?;
        let wanted = f.port.get_ref();
        let Some(port) = ports.iter().position(|p| &p.name == wanted) else {
            return Err(cx.error(
                f.port.span(),
                format!(
                    "{fe}: port {} is not defined in [[port]] (define it or fix the name)",
                    q(wanted)
                ),
            ));
        };
        // A host's MAC lives behind the port the host is plugged into; pinning it elsewhere
        // would blackhole the host and fight the anti-spoofing policy.
        let owner = hosts.iter().position(|h| h.mac == Some(mac)).and_then(|h| {
            let p = ports.iter().position(|p| p.host == Some(h))?;
            Some((h, p))
        });
        if let Some((h, p)) = owner.filter(|&(_, p)| p != port) {
            return Err(cx.error(
                f.port.span(),
                format!(
                    "{fe}: mac {mac} belongs to host {} on port {}, not port {} (point the \
                     entry at {} or remove it)",
                    q(&hosts[h].name),
                    q(&ports[p].name),
                    q(wanted),
                    q(&ports[p].name)
                ),
            ));
        }
        static_fdb.push(StaticFdb { mac, port });
    }

    Ok(SwitchConfig {
        ageing,
        max_macs,
        max_macs_per_port,
        workers,
        max_ports,
        storm_limit,
        loop_detection: raw.loop_detection.unwrap_or(true),
        poll: Duration::from_micros(poll_us as u64),
        static_fdb,
    })
}

/// An integer key in `min..=max`.
fn count(
    cx: &Cx<'_>,
    raw: Option<&Spanned<i64>>,
    entry: &str,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<usize>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let v = *raw.get_ref();
    match usize::try_from(v) {
        Ok(n) if (min..=max).contains(&v) => Ok(Some(n)),
        _ => Err(cx.error(
            raw.span(),
            format!("{entry}: {key} {v} is out of range (use {min} to {max})"),
        )),
    }
}

/// `"300s"`, `"5m"`, `"1h"`, `"0"`, or an integer number of seconds.
fn parse_ageing(value: &toml::Value) -> Result<Duration, String> {
    let secs = match value {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative"))?,
        toml::Value::String(s) => {
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let multiplier = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "" if digits.chars().all(|c| c == '0') && !digits.is_empty() => 1,
                "" => return Err(format!("{} has no unit", q(s))),
                _ => return Err(format!("{} is not a duration", q(s))),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(multiplier))
                .ok_or_else(|| format!("{} is not a duration", q(s)))?
        }
        other => return Err(format!("is a {}, not a duration", other.type_str())),
    };
    if secs > MAX_AGEING_SECS {
        return Err(format!("of {secs}s is longer than a year"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[network]
name = "t"
subnet = "10.0.0.0/24"
gateway = "10.0.0.1"
domain = "t.test"
"#;

    /// `MINIMAL` plus `extra`; the error's line numbers count from `MINIMAL`'s first (empty) line.
    fn with(extra: &str) -> Result<Config, ConfigError> {
        parse(&format!("{MINIMAL}{extra}"), "t.toml")
    }

    /// The (location, message) of an error that must be `Invalid`.
    fn invalid(r: Result<Config, ConfigError>) -> (String, String) {
        match r {
            Err(ConfigError::Invalid { location, message }) => (location, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    /// Asserts the error is at `t.toml:line` and its message contains every one of `needles`.
    #[track_caller]
    fn assert_err(r: Result<Config, ConfigError>, line: usize, needles: &[&str]) {
        let (location, message) = invalid(r);
        assert_eq!(location, format!("t.toml:{line}"), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    const HOST_AND_PORT: &str = r#"
[[host]]
name = "vm1"
mac = "52:54:00:00:00:11"
ipv4 = "10.0.0.11"

[[port]]
name = "p1"
kind = "tap"
ifname = "sy-p1"
host = "vm1"
"#;

    #[test]
    fn default_config_parses() {
        let cfg = load_default().unwrap();
        assert_eq!(cfg.source, "<embedded default>");
        assert_eq!(cfg.network.name, "lab");
        assert_eq!(
            cfg.network.subnet,
            "10.13.31.0/24".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(cfg.network.gateway, Ipv4Addr::new(10, 13, 31, 1));
        assert_eq!(cfg.network.domain, "lab.test");
        assert_eq!(cfg.hosts.len(), 3);
        assert_eq!(cfg.ports.len(), 3);
        for (i, (h, p)) in cfg.hosts.iter().zip(&cfg.ports).enumerate() {
            let n = i + 1;
            assert_eq!(h.name, format!("vm{n}"));
            assert_eq!(h.mac, Some(format!("52:54:00:00:00:1{n}").parse().unwrap()));
            assert_eq!(h.ipv4, Some(Ipv4Addr::new(10, 13, 31, 10 + n as u8)));
            assert_eq!(p.host, Some(i));
            assert!(!p.isolated);
            let PortKind::Tap(tap) = &p.kind else {
                panic!("not a tap")
            };
            assert_eq!(tap.ifname, format!("sy-vm{n}"));
            assert_eq!(tap.netns.as_deref(), Some(format!("sy-lab-vm{n}").as_str()));
            assert_eq!(tap.address, AddressMode::Static);
        }
    }

    #[test]
    fn examples_parse() {
        let iso = include_str!("../../config/examples/isolated.toml");
        let cfg = parse(iso, "isolated.toml").unwrap();
        let isolated: Vec<bool> = cfg.ports.iter().map(|p| p.isolated).collect();
        assert_eq!(isolated, [false, true, true]);
    }

    #[test]
    fn storm_limit_forms() {
        let limit = |v: &str| with(&format!("[switch]\nstorm_limit = {v}\n"));
        assert_eq!(limit("500").unwrap().switch.storm_limit, Some(500));
        assert_eq!(limit("\"off\"").unwrap().switch.storm_limit, None);
        assert_err(limit("5"), 8, &["storm_limit 5", "10 to", "\"off\""]);
        assert_err(
            limit("\"fast\""),
            8,
            &["storm_limit \"fast\"", "not a rate"],
        );
    }

    #[test]
    fn defaults_are_applied() {
        let cfg = with("[[port]]\nname = \"p\"\nkind = \"tap\"\nifname = \"sy-p\"\n").unwrap();
        assert_eq!(cfg.network.mtu, 1500);
        assert_eq!(
            cfg.switch,
            SwitchConfig {
                ageing: Duration::from_secs(300),
                max_macs: 65536,
                max_macs_per_port: 1024,
                workers: 0,
                max_ports: 256,
                storm_limit: Some(10_000),
                loop_detection: true,
                poll: Duration::ZERO,
                static_fdb: vec![],
            }
        );
        let p = &cfg.ports[0];
        assert_eq!((p.host, p.isolated, p.mtu), (None, false, 1500));
        let PortKind::Tap(tap) = &p.kind else {
            panic!("not a tap")
        };
        assert_eq!(
            (tap.netns.as_deref(), tap.address),
            (None, AddressMode::None)
        );
    }

    #[test]
    fn zero_ports_is_valid() {
        let cfg = with("").unwrap();
        assert!(cfg.ports.is_empty() && cfg.hosts.is_empty());
    }

    #[test]
    fn port_mtu_inherits_network_mtu_and_address_defaults_to_static_in_a_netns() {
        let text = MINIMAL.replace("t.test\"", "t.test\"\nmtu = 9000")
            + HOST_AND_PORT
            + "netns = \"ns1\"\n";
        let cfg = parse(&text, "t.toml").unwrap();
        assert_eq!(cfg.ports[0].mtu, 9000);
        let PortKind::Tap(tap) = &cfg.ports[0].kind else {
            panic!("not a tap")
        };
        assert_eq!(tap.address, AddressMode::Static);
    }

    #[test]
    fn ageing_forms() {
        for (text, secs) in [
            ("\"0\"", 0),
            ("\"0s\"", 0),
            ("0", 0),
            ("\"300s\"", 300),
            ("\"5m\"", 300),
            ("\"1h\"", 3600),
            ("45", 45),
        ] {
            let cfg = with(&format!("[switch]\nageing = {text}\n")).unwrap();
            assert_eq!(cfg.switch.ageing, Duration::from_secs(secs), "{text}");
        }
        assert_eq!(
            with("[switch]\nageing = \"0\"\n").unwrap().switch.ageing,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_ageing() {
        for bad in [
            "\"5x\"",
            "\"300\"",
            "\"s\"",
            "\"-5s\"",
            "-1",
            "1.5",
            "\"9999999h\"",
            "true",
        ] {
            assert_err(
                with(&format!("[switch]\nageing = {bad}\n")),
                8,
                &["[switch]", "ageing", "\"300s\""],
            );
        }
    }

    #[test]
    fn unknown_key_names_the_key_and_section() {
        let text = MINIMAL.replace("domain", "domian");
        let (location, message) = invalid(parse(&text, "t.toml"));
        assert_eq!(location, "t.toml:6");
        assert!(message.contains("[network]"), "{message}");
        assert!(message.contains("unknown key `domian`"), "{message}");
        assert!(message.contains("`domain`"), "{message}");

        assert_err(
            with(&format!("{HOST_AND_PORT}isolatd = true\n")),
            18,
            &["[[port]] #1", "unknown key `isolatd`", "spelling"],
        );
        assert_err(with("[bogus]\n"), 7, &["unknown key `bogus`"]);
    }

    #[test]
    fn wrong_type_names_the_key() {
        assert_err(
            with(&format!("{HOST_AND_PORT}isolated = \"yes\"\n")),
            18,
            &["[[port]] #1", "key 'isolated'", "boolean"],
        );
    }

    #[test]
    fn missing_required_key() {
        assert_err(
            with("[[host]]\nname = \"a\"\n"),
            7,
            &["host 'a'", "missing key 'mac'"],
        );
        assert_err(
            with("[[port]]\nname = \"p\"\nkind = \"tap\"\n"),
            7,
            &["port 'p'", "missing key 'ifname'"],
        );
        assert_err(parse("", "t.toml"), 1, &["missing [network]"]);
    }

    #[test]
    fn toml_syntax_error_has_its_line() {
        assert_err(with("[[host]]\nname = \"a\nmac = 1\n"), 8, &[]);
        assert_err(with("\n\nmtu = = 3\n"), 9, &[]);
    }

    #[test]
    fn network_checks() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "name = \"t\"",
                "name = \"Lab!\"",
                &["[network]", "name 'Lab!'"],
            ),
            (
                "subnet = \"10.0.0.0/24\"",
                "subnet = \"10.0.0.0\"",
                &["subnet", "CIDR"],
            ),
            (
                "subnet = \"10.0.0.0/24\"",
                "subnet = \"10.0.0.5/24\"",
                &["host bits", "10.0.0.0/24"],
            ),
            (
                "subnet = \"10.0.0.0/24\"",
                "subnet = \"10.0.0.0/31\"",
                &["subnet", "/30"],
            ),
            (
                "gateway = \"10.0.0.1\"",
                "gateway = \"10.0.1.1\"",
                &["gateway", "outside the subnet"],
            ),
            (
                "gateway = \"10.0.0.1\"",
                "gateway = \"10.0.0.255\"",
                &["gateway", "broadcast"],
            ),
            (
                "gateway = \"10.0.0.1\"",
                "gateway = \"10.0.0.0\"",
                &["gateway", "network address"],
            ),
            (
                "domain = \"t.test\"",
                "domain = \"a..b\"",
                &["domain", "empty label"],
            ),
            (
                "domain = \"t.test\"",
                "domain = \"a_b.test\"",
                &["domain", "'_'"],
            ),
        ];
        for (from, to, needles) in cases {
            let line = MINIMAL.lines().position(|l| l == *from).unwrap() + 1;
            assert_err(parse(&MINIMAL.replace(from, to), "t.toml"), line, needles);
        }
        let text = MINIMAL.replace("t.test\"", "t.test\"\nmtu = 67");
        assert_err(parse(&text, "t.toml"), 7, &["[network]", "mtu 67", "68"]);
        let text = MINIMAL.replace("t.test", "Lab.Test.");
        assert_eq!(parse(&text, "t.toml").unwrap().network.domain, "lab.test");
    }

    #[test]
    fn host_checks() {
        let host = |mac: &str, ip: &str| {
            with(&format!(
                "[[host]]\nname = \"h\"\nmac = \"{mac}\"\nipv4 = \"{ip}\"\n"
            ))
        };
        assert_err(
            host("52:54:00:00:00:1", "10.0.0.9"),
            9,
            &["host 'h'", "mac '52:54:00:00:00:1'"],
        );
        assert_err(
            host("01:00:5e:00:00:01", "10.0.0.9"),
            9,
            &["host 'h'", "mac", "multicast"],
        );
        assert_err(host("00:00:00:00:00:00", "10.0.0.9"), 9, &["mac", "zeros"]);
        assert_err(
            host("52:54:00:00:00:01", "10.0.1.9"),
            10,
            &["host 'h'", "ipv4 10.0.1.9", "outside"],
        );
        assert_err(
            host("52:54:00:00:00:01", "10.0.0.1"),
            10,
            &["ipv4", "gateway"],
        );
        assert_err(
            host("52:54:00:00:00:01", "10.0.0.x"),
            10,
            &["ipv4 '10.0.0.x'"],
        );
        assert_err(
            with("[[host]]\nname = \"VM1\"\nmac = \"52:54:00:00:00:01\"\n"),
            8,
            &["[[host]] #1", "name 'VM1'"],
        );
    }

    #[test]
    fn duplicates_point_at_the_second_occurrence() {
        let two_hosts = |second: &str| {
            with(&format!(
                "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nipv4 = \"10.0.0.5\"\n\
                 [[host]]\n{second}"
            ))
        };
        assert_err(
            two_hosts("name = \"a\"\nmac = \"52:54:00:00:00:02\"\n"),
            12,
            &["host 'a'", "name 'a'", "line 8"],
        );
        assert_err(
            two_hosts("name = \"b\"\nmac = \"52:54:00:00:00:01\"\n"),
            13,
            &["host 'b'", "mac", "line 9"],
        );
        assert_err(
            two_hosts("name = \"b\"\nmac = \"52:54:00:00:00:02\"\nipv4 = \"10.0.0.5\"\n"),
            14,
            &["host 'b'", "ipv4 '10.0.0.5'", "line 10"],
        );

        let port = |name: &str, ifname: &str, netns: &str| {
            format!("[[port]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{netns}\"\n")
        };
        let first = port("p", "if1", "ns1");
        assert_err(
            with(&(first.clone() + &port("p", "if2", "ns2"))),
            13,
            &["port 'p'", "name 'p'", "line 8"],
        );
        assert_err(
            with(&(first.clone() + &port("q", "if1", "ns2"))),
            15,
            &["port 'q'", "ifname 'if1'", "line 10"],
        );
        assert_err(
            with(&(first + &port("q", "if2", "ns1"))),
            16,
            &["port 'q'", "netns 'ns1'", "line 11"],
        );
    }

    #[test]
    fn port_checks() {
        assert_err(
            with("[[port]]\nname = \"vm3\"\nkind = \"tap\"\nifname = \"x\"\nhost = \"vm9\"\n"),
            11,
            &["port 'vm3': host 'vm9' is not defined in [[host]] (define it or remove the key)"],
        );
        assert_err(
            with("[[port]]\nname = \"p\"\nkind = \"veth\"\nifname = \"x\"\n"),
            9,
            &["port 'p'", "kind 'veth'", "\"tap\""],
        );
        assert_err(
            with("[[port]]\nname = \"p\"\nkind = \"tap\"\nifname = \"sy-much-too-long\"\n"),
            10,
            &["port 'p'", "ifname 'sy-much-too-long'", "16 bytes", "15"],
        );
        for bad in ["a/b", "a b", ".", ""] {
            assert_err(
                with(&format!(
                    "[[port]]\nname = \"p\"\nkind = \"tap\"\nifname = \"{bad}\"\n"
                )),
                10,
                &["port 'p'", "ifname"],
            );
        }
        assert_err(
            with("[[port]]\nname = \"p p\"\nkind = \"tap\"\nifname = \"x\"\n"),
            8,
            &["[[port]] #1", "name 'p p'"],
        );
        assert_err(
            with(&format!("{HOST_AND_PORT}mtu = 70000\n")),
            18,
            &["port 'p1'", "mtu 70000"],
        );
        assert_err(
            with(&format!("{HOST_AND_PORT}netns = \"a/b\"\n")),
            18,
            &["port 'p1'", "netns 'a/b'"],
        );
        let second =
            "[[port]]\nname = \"p2\"\nkind = \"tap\"\nifname = \"sy-p2\"\nhost = \"vm1\"\n";
        assert_err(
            with(&format!("{HOST_AND_PORT}{second}")),
            22,
            &["port 'p2'", "host 'vm1'", "port 'p1' on line 17"],
        );
    }

    #[test]
    fn address_checks() {
        assert_err(
            with(&format!("{HOST_AND_PORT}address = \"static\"\n")),
            18,
            &["port 'p1'", "address \"static\"", "netns"],
        );
        let no_ip = HOST_AND_PORT.replace("ipv4 = \"10.0.0.11\"\n", "");
        assert_err(
            with(&format!("{no_ip}netns = \"n\"\naddress = \"static\"\n")),
            18,
            &["port 'p1'", "address \"static\"", "ipv4"],
        );
        assert_err(
            with(&format!("{HOST_AND_PORT}address = \"dhcp\"\n")),
            18,
            &["address 'dhcp'", "\"none\""],
        );
        let cfg = with(&format!("{no_ip}netns = \"n\"\n")).unwrap();
        let PortKind::Tap(tap) = &cfg.ports[0].kind else {
            panic!("not a tap")
        };
        assert_eq!(tap.address, AddressMode::None);
        let cfg = with(&format!(
            "{HOST_AND_PORT}netns = \"n\"\naddress = \"none\"\n"
        ))
        .unwrap();
        let PortKind::Tap(tap) = &cfg.ports[0].kind else {
            panic!("not a tap")
        };
        assert_eq!(tap.address, AddressMode::None);
    }

    #[test]
    fn switch_checks() {
        let sw = |body: &str| with(&format!("{HOST_AND_PORT}[switch]\n{body}"));
        assert_err(sw("max_macs = 0\n"), 19, &["[switch]", "max_macs 0"]);
        assert_err(
            sw("max_macs = 10\nmax_macs_per_port = 20\n"),
            20,
            &["max_macs_per_port 20", "max_macs 10"],
        );
        assert_err(sw("workers = 65\n"), 19, &["workers 65", "64"]);
        assert_err(sw("poll_us = -1\n"), 19, &["poll_us -1", "0 to 1000000"]);
        assert_eq!(
            sw("poll_us = 5000\n").unwrap().switch.poll,
            Duration::from_micros(5000)
        );
        let cfg = sw("max_macs = 10\nworkers = 2\n").unwrap();
        assert_eq!(
            (cfg.switch.max_macs, cfg.switch.max_macs_per_port),
            (10, 10)
        );
        assert_eq!(cfg.switch.workers, 2);

        let fdb = |mac: &str, port: &str| {
            sw(&format!(
                "[[switch.fdb]]\nmac = \"{mac}\"\nport = \"{port}\"\n"
            ))
        };
        let cfg = fdb("52:54:00:00:00:99", "p1").unwrap();
        assert_eq!(
            cfg.switch.static_fdb,
            [StaticFdb {
                mac: "52:54:00:00:00:99".parse().unwrap(),
                port: 0
            }]
        );
        assert_err(
            fdb("ff:ff:ff:ff:ff:ff", "p1"),
            20,
            &["[[switch.fdb]] #1", "mac", "multicast"],
        );
        assert_err(
            fdb("52:54:00:00:00:99", "p9"),
            21,
            &["[[switch.fdb]] #1", "port 'p9'", "[[port]]"],
        );
    }

    #[test]
    fn static_fdb_must_not_move_a_hosts_mac() {
        let text = format!(
            "{HOST_AND_PORT}[[port]]\nname = \"p2\"\nkind = \"tap\"\nifname = \"sy-p2\"\n\
             [[switch.fdb]]\nmac = \"52:54:00:00:00:11\"\nport = \"p2\"\n"
        );
        assert_err(
            with(&text),
            24,
            &["mac 52:54:00:00:00:11", "host 'vm1'", "port 'p1'"],
        );
    }

    #[test]
    fn no_panic_on_truncated_or_mangled_input() {
        // The configs without their comment lines: every key and header, a quarter of the size.
        let compact = |text: &str| -> String {
            let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
            lines.map(|l| format!("{l}\n")).collect()
        };
        let iso = include_str!("../../config/examples/isolated.toml");
        for text in [compact(DEFAULT_CONFIG), compact(iso)] {
            for (end, _) in text.char_indices() {
                let _ = parse(&text[..end], "t.toml");
            }
        }
        // Damage: positions replaced by characters that upset a TOML or a semantic check.
        let text = compact(DEFAULT_CONFIG);
        for (at, c) in text.char_indices().step_by(3) {
            for bad in ["\"", "[", "=", "\n", "\u{e9}", "\0", "9"] {
                let mangled = format!("{}{bad}{}", &text[..at], &text[at + c.len_utf8()..]);
                let _ = parse(&mangled, "t.toml");
            }
        }
    }

    #[test]
    fn load_reports_unreadable_files() {
        let err = load(Path::new("/nonexistent/switchyard.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("/nonexistent/switchyard.toml: cannot read"));
    }
}
