//! TOML → validated `Config`.
//!
//! # Theory of operation
//!
//! One config file describes one network: its `[network]` (subnet, gateway, domain), the
//! `[switch]` tuning, the `[[host]]` reservations, the `[[port]]`s, the `[dhcp]` server
//! (`dhcp.rs`, its `[[dhcp.option]]`s in `dhcp_option.rs`, with the hosts' `client_id`/`match` keys and [`dhcp_params`]) and the `[dns]`
//! server (`dns.rs`, with [`dns_params`]), and the `[[segment]]`s, further networks the
//! appliance serves on VLANs of their own (`segments.rs`).
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

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use toml::Spanned;

use crate::wire::MacAddr;

mod control;
mod dhcp;
mod dhcp_option;
mod diag;
mod dns;
mod guard;
mod host_port;
mod hosts;
mod ipv6;
mod kinds;
mod live;
mod network;
mod port_entries;
mod ports;
mod raw;
mod segment;
mod segments;
mod switch;
#[cfg(test)]
mod test_util;
pub use control::{default_socket, ControlConfig, DEFAULT_SOCKET_DIR};
pub use dhcp::{dhcp_params, DhcpConfig, HostMatch};
pub use dns::{dns_params, DnsConfig};
pub use guard::Guard;
pub use host_port::Forward;
pub use ipv6::{Dhcp6Config, Ipv6Config, RaConfig, RaMode};
pub use kinds::MAX_PATH_LEN as MAX_SOCKET_PATH_LEN;
pub use live::{LiveError, NewHost};
pub use ports::NewPort;
pub use segments::Segment;

use diag::{q, Cx, Unique};
use hosts::{unicast_mac, validate_hosts};
use network::{
    dns_label_problem, first_host, host_address_problem, is_name, mtu, normalize_domain,
    validate_network,
};
use port_entries::{netdev_keys, validate_ports, validate_tap};
use raw::{RawConfig, RawHost, RawNetwork, RawPort, RawSwitch};
use switch::{count, parse_ageing, validate_switch};

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
    /// `subnet6`/`gateway6` and `[ra]`: `None` without `subnet6` (no IPv6 service).
    pub ipv6: Option<Ipv6Config>,
    /// `[[segment]]`s: further networks the appliance serves, each on its own VLAN.
    pub segments: Vec<Segment>,
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

/// The `[switch] poll_us` setting: how a worker polls after moving frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollMode {
    /// It sleeps at once (`poll_us = 0`).
    Off,
    /// It polls for this long after every wait that moved frames (`poll_us = N`).
    Fixed(Duration),
    /// It polls for a window that tunes itself, within a budget (`poll_us = "adaptive"`).
    Adaptive,
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
    /// `poll_us`: whether a worker polls its ports for a while after it moved frames before it
    /// sleeps (default `Off`: it sleeps at once).
    pub poll: PollMode,
    /// `multi_queue` (default off): taps the daemon creates get one queue per worker, and
    /// packet ports one `PACKET_FANOUT` socket per worker, so one port's flows spread over the
    /// workers.
    pub multi_queue: bool,
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
    /// Inside `subnet6`, not `gateway6`.
    pub ipv6: Option<Ipv6Addr>,
    /// The DHCPv6 client's DUID its `ipv6` is reserved for (else it is matched by MAC).
    pub duid: Option<Vec<u8>>,
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
    /// 802.1Q membership (`vlan`, `trunk`, `native`; default: access port of VLAN 1).
    pub vlan: crate::switch::PortVlan,
    /// `ingress` and `egress` bandwidth limits (default: none).
    pub limits: crate::switch::PortLimits,
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
    /// QEMU `-netdev vhost-user`: the switch is the VM's virtio-net device.
    VhostUser(VhostUserConfig),
    /// A VXLAN tunnel endpoint (RFC 7348): a UDP socket, one VNI, static remote VTEPs.
    Vxlan(VxlanConfig),
}

impl PortKind {
    /// The netdev name of a tap or packet port.
    pub fn ifname(&self) -> Option<&str> {
        match self {
            PortKind::Tap(t) => Some(&t.ifname),
            PortKind::Packet(p) => Some(&p.ifname),
            PortKind::Stream(_)
            | PortKind::Dgram(_)
            | PortKind::VhostUser(_)
            | PortKind::Vxlan(_) => None,
        }
    }

    /// The namespace the port's netdev lives in, and whether the daemon creates it if it is
    /// missing (a tap's; a packet port's netdev must already be there).
    pub fn netns(&self) -> Option<(&str, bool)> {
        match self {
            PortKind::Tap(t) => t.netns.as_deref().map(|n| (n, true)),
            PortKind::Packet(p) => p.netns.as_deref().map(|n| (n, false)),
            PortKind::Stream(_)
            | PortKind::Dgram(_)
            | PortKind::VhostUser(_)
            | PortKind::Vxlan(_) => None,
        }
    }

    /// `"tap"`, `"packet"`, `"stream"`, `"dgram"`, `"vhost-user"` or `"vxlan"`, as in the config.
    pub fn name(&self) -> &'static str {
        match self {
            PortKind::Tap(_) => "tap",
            PortKind::Packet(_) => "packet",
            PortKind::Stream(_) => "stream",
            PortKind::Dgram(_) => "dgram",
            PortKind::VhostUser(_) => "vhost-user",
            PortKind::Vxlan(_) => "vxlan",
        }
    }

    /// Where the port is attached: the netdev name, or the socket path.
    pub fn attachment(&self) -> String {
        match self {
            PortKind::Tap(t) => t.ifname.clone(),
            PortKind::Packet(p) => p.ifname.clone(),
            PortKind::Stream(s) => s.path.display().to_string(),
            PortKind::Dgram(d) => d.path.display().to_string(),
            PortKind::VhostUser(v) => v.path.display().to_string(),
            PortKind::Vxlan(v) => format!("udp {} vni {}", v.local, v.vni),
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
pub struct VhostUserConfig {
    /// The vhost-user socket (absolute, at most 107 bytes).
    pub path: PathBuf,
    /// Who connects to whom.
    pub mode: VhostUserMode,
}

/// `mode` of a vhost-user port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhostUserMode {
    /// `"server"` (default): the switch listens on `path` and QEMU connects (QEMU's
    /// `-chardev socket,path=...,reconnect=1`, libvirt's `mode='client'`).
    Server,
    /// `"client"`: QEMU listens (`server=on`, libvirt's `mode='server'`) and the switch
    /// connects, retrying until it is there.
    Client,
}

/// A `vxlan` port: see `docs/vxlan.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct VxlanConfig {
    /// The VXLAN Network Identifier, 0..=2^24-1.
    pub vni: u32,
    /// The UDP address the port receives on, in the daemon's namespace (port default 4789).
    pub local: std::net::SocketAddr,
    /// The static remote VTEPs (same address family as `local`): unknown-unicast, broadcast
    /// and multicast frames go to each of them (head-end replication).
    pub remotes: Vec<std::net::SocketAddr>,
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
/// `poll_us` without one.
const DEFAULT_POLL: PollMode = PollMode::Off;
const DEFAULT_MAX_PORTS: usize = 256;
const MAX_MAX_PORTS: i64 = 4096;
/// Storm control default: broadcast/multicast frames a second per port. A host sending more is
/// a storm (an ARP sweep of a /16 at full speed stays below it; a broadcast loop does not).
const DEFAULT_STORM_LIMIT: u32 = 10_000;
const MAX_STORM_LIMIT: i64 = 100_000_000;
/// The port kinds this version knows (`kind = "..."`).
const KNOWN_KINDS: &[&str] = &["tap", "packet", "stream", "dgram", "vhost-user", "vxlan"];
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
    let (subnet6, gateway6) = (network.subnet6.clone(), network.gateway6.clone());
    let network = validate_network(&cx, network)?;
    let ipv6 = ipv6::validate_ipv6(&cx, subnet6, gateway6, &network.domain, raw.ra, raw.dhcp6)?;
    let hosts = validate_hosts(&cx, &network, ipv6.as_ref(), raw.host)?;
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
    let segments = segments::validate_segments(&cx, &network, raw.segment)?;
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
        ipv6,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

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
                poll: PollMode::Off,
                multi_queue: false,
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
