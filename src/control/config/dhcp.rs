//! The DHCP keys: the `[dhcp]` section, `client_id` and `match` on a `[[host]]`; and
//! [`dhcp_params`], which maps a validated [`Config`] onto the server's [`DhcpParams`].
//!
//! The section is optional: without it the server runs with the defaults of issue 3 (enabled,
//! reservations only, lease 1 h, MAC keying, 4 leases per port, state in
//! `/var/lib/switchyard/<network name>`, DNS the gateway, router the host port with a forward
//! mode (none on an isolated network), search list the domain).
//! Every address is checked against `[network]` here, so [`DhcpParams::validate`] cannot fail on
//! a config that loaded.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    count, dhcp_option, host_address_problem, normalize_domain, parse_ageing, q, Config,
    ConfigError, Cx, Host, Network, RawHost,
};
use crate::service::dhcp::params::MIN_LEASE;
use crate::service::dhcp::{DhcpParams, ExtraOption, KeyMode, PortBinding, RateLimit, Reservation};
use crate::switch::GuardMode;
use crate::wire::MacAddr;

/// Where state lives without `[dhcp] state_dir`: this, then the network's name.
pub(super) const DEFAULT_STATE_ROOT: &str = "/var/lib/switchyard";
/// The journal's file name inside `state_dir`.
pub(super) const JOURNAL_FILE: &str = "leases.journal";
/// The dnsmasq-format lease file's name inside `state_dir` (without `lease_file`).
pub(super) const LEASE_FILE: &str = "leases";
const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_LEASES_PER_PORT: usize = 4;
const MAX_MAX_LEASES_PER_PORT: i64 = 65535;
/// Requests a second per port without `rate_limit` (and twice that as the burst).
const DEFAULT_RATE_LIMIT: u32 = 10;
/// Most `rate_limit`: a million requests a second (the burst, twice it, still fits a `u32`).
const MAX_RATE_LIMIT: i64 = 1_000_000;
/// Most entries in `dns` and `search` (option 6 holds 63 addresses; resolvers use 6 domains).
const MAX_LIST: usize = 16;

/// The validated `[dhcp]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpConfig {
    /// Default true. False: the appliance answers no DHCP (ARP and ping still work).
    pub enabled: bool,
    /// Inclusive range inside the subnet, not containing the gateway; `None`: reservations only.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `None`: infinite. At least 2 minutes.
    pub lease_time: Option<Duration>,
    pub key: KeyMode,
    pub max_leases_per_port: usize,
    /// DHCP requests a second accepted per port (burst: twice that); `None`: no limit
    /// (`rate_limit = "off"`). Default 10.
    pub rate_limit: Option<u32>,
    /// Holds the journal ([`DhcpConfig::journal_path`]); absolute.
    pub state_dir: PathBuf,
    /// The dnsmasq-format lease file; absolute. Default `<state_dir>/leases`.
    pub lease_file: PathBuf,
    /// Option 6; empty: not sent. Default: the gateway.
    pub dns: Vec<Ipv4Addr>,
    /// Option 119, normalized (lowercase, no trailing dot); empty: not sent. Default: the domain.
    pub search: Vec<String>,
    /// `[[dhcp.option]]`: extra options, or built-in ones replaced or (empty) removed.
    pub options: Vec<ExtraOption>,
}

impl DhcpConfig {
    /// `<state_dir>/leases.journal`: the lease store.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir.join(JOURNAL_FILE)
    }
}

/// `match = "mac" | "client-id" | "hostname"` on a `[[host]]`: how DHCP recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostMatch {
    /// By the client's MAC (chaddr). The default without `client_id`.
    #[default]
    Mac,
    /// By the client identifier (option 61) in `client_id`. The default with `client_id`.
    ClientId,
    /// By the hostname the client sends (option 12), case-insensitively; `mac` is optional.
    Hostname,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [dhcp] table")]
pub(super) struct RawDhcp {
    enabled: Option<bool>,
    pool: Option<Spanned<Vec<Spanned<String>>>>,
    /// Like `[switch] ageing`, or "infinite".
    lease_time: Option<Spanned<toml::Value>>,
    key: Option<Spanned<String>>,
    max_leases_per_port: Option<Spanned<i64>>,
    /// Requests a second per port, or "off".
    rate_limit: Option<Spanned<toml::Value>>,
    state_dir: Option<Spanned<String>>,
    lease_file: Option<Spanned<String>>,
    dns: Option<Vec<Spanned<String>>>,
    search: Option<Vec<Spanned<String>>>,
    option: Option<Vec<Spanned<dhcp_option::RawOption>>>,
}

/// What a host's DHCP keys resolve to.
pub(super) struct HostDhcp {
    pub(super) mac: Option<MacAddr>,
    pub(super) client_id: Option<Vec<u8>>,
    pub(super) match_by: HostMatch,
}

/// Validates `mac`, `client_id` and `match` of host entry `e` (`table`: the entry's span).
/// `mac` is required unless `match = "hostname"`.
pub(super) fn host_dhcp(
    cx: &Cx<'_>,
    e: &str,
    raw: &RawHost,
    table: std::ops::Range<usize>,
) -> Result<HostDhcp, ConfigError> {
    let client_id = match &raw.client_id {
        None => None,
        Some(s) => Some(parse_client_id(s.get_ref()).map_err(|problem| {
            cx.error(
                s.span(),
                format!(
                    "{e}: client_id {} {problem} (write colon-separated hex bytes like \
                     \"01:52:54:00:00:00:11\")",
                    q(s.get_ref())
                ),
            )
        })?),
    };
    let match_by = match &raw.match_by {
        None if client_id.is_some() => HostMatch::ClientId,
        None => HostMatch::Mac,
        Some(m) => match m.get_ref().as_str() {
            "mac" => HostMatch::Mac,
            "client-id" => HostMatch::ClientId,
            "hostname" => HostMatch::Hostname,
            other => {
                return Err(cx.error(
                    m.span(),
                    format!(
                        "{e}: match {} is not known (use \"mac\", \"client-id\" or \"hostname\")",
                        q(other)
                    ),
                ))
            }
        },
    };
    if let (Some(m), Some(s)) = (&raw.match_by, &raw.client_id) {
        if match_by != HostMatch::ClientId {
            return Err(cx.error(
                s.span(),
                format!(
                    "{e}: client_id is only used with match = \"client-id\", not match = {} \
                     (remove client_id, or the match key)",
                    q(m.get_ref())
                ),
            ));
        }
    }
    if match_by == HostMatch::ClientId && client_id.is_none() {
        let span = raw.match_by.as_ref().map_or(table.clone(), |m| m.span());
        return Err(cx.error(
            span,
            format!(
                "{e}: match = \"client-id\" needs a client_id (add client_id = \"01:...\", or \
                 use match = \"mac\")"
            ),
        ));
    }
    let mac = match &raw.mac {
        Some(m) => Some(super::unicast_mac(cx, m, e)?),
        None if match_by == HostMatch::Hostname => None,
        None => {
            return Err(cx.error(
                table,
                format!(
                    "{e}: missing key 'mac' (add mac = \"52:54:00:...\"; only a host with \
                     match = \"hostname\" may leave it out)"
                ),
            ))
        }
    };
    Ok(HostDhcp {
        mac,
        client_id,
        match_by,
    })
}

/// `01:52:54:00:00:00:11`: 2 to 255 bytes (RFC 2132 §9.14), two hex digits each.
fn parse_client_id(text: &str) -> Result<Vec<u8>, String> {
    let bytes = dhcp_option::parse_hex(text).ok_or_else(|| "is not hex bytes".to_string())?;
    if !(2..=255).contains(&bytes.len()) {
        return Err(format!("has {} bytes (use 2 to 255)", bytes.len()));
    }
    Ok(bytes)
}

/// Validates the `[dhcp]` section (absent: every default).
pub(super) fn validate_dhcp(
    cx: &Cx<'_>,
    network: &Network,
    raw: Option<RawDhcp>,
) -> Result<DhcpConfig, ConfigError> {
    let e = "[dhcp]";
    let raw = raw.unwrap_or(RawDhcp {
        enabled: None,
        pool: None,
        lease_time: None,
        key: None,
        max_leases_per_port: None,
        rate_limit: None,
        state_dir: None,
        lease_file: None,
        dns: None,
        search: None,
        option: None,
    });

    let pool = match &raw.pool {
        None => None,
        Some(p) => Some(pool(cx, network, e, p)?),
    };

    let lease_time = lease_time(cx, e, &raw.lease_time)?;
    let key = key_mode(cx, e, &raw.key)?;
    let max_leases_per_port = count(
        cx,
        raw.max_leases_per_port.as_ref(),
        e,
        "max_leases_per_port",
        1,
        MAX_MAX_LEASES_PER_PORT,
    )?
    .unwrap_or(DEFAULT_MAX_LEASES_PER_PORT);

    let rate_limit = rate_limit(cx, e, &raw.rate_limit)?;
    let state_dir = match &raw.state_dir {
        None => Path::new(DEFAULT_STATE_ROOT).join(&network.name),
        Some(s) => absolute(cx, e, "state_dir", s)?,
    };
    let lease_file = lease_file(cx, e, &raw.lease_file, &state_dir)?;
    let dns = dns_servers(cx, e, network, &raw.dns)?;
    let search = search_list(cx, e, network, &raw.search)?;
    let options = dhcp_option::extra_options(cx, &raw.option)?;

    Ok(DhcpConfig {
        enabled: raw.enabled.unwrap_or(true),
        pool,
        lease_time,
        key,
        max_leases_per_port,
        rate_limit,
        state_dir,
        lease_file,
        dns,
        search,
        options,
    })
}

/// `lease_time`: a duration of at least [`MIN_LEASE`], or "infinite" (`None`).
pub(super) fn lease_time(
    cx: &Cx<'_>,
    e: &str,
    lease_time: &Option<Spanned<toml::Value>>,
) -> Result<Option<Duration>, ConfigError> {
    Ok(match lease_time {
        None => Some(DEFAULT_LEASE),
        Some(v) => parse_lease(v.get_ref()).map_err(|problem| {
            cx.error(
                v.span(),
                format!(
                    "{e}: lease_time {problem} (write a duration of at least 2 minutes like \
                     \"1h\", \"30m\" or \"600s\", or \"infinite\")"
                ),
            )
        })?,
    })
}

/// `key`: what a lease is keyed by.
fn key_mode(cx: &Cx<'_>, e: &str, key: &Option<Spanned<String>>) -> Result<KeyMode, ConfigError> {
    Ok(match key {
        None => KeyMode::Mac,
        Some(k) => match k.get_ref().as_str() {
            "mac" => KeyMode::Mac,
            "client-id" => KeyMode::ClientId,
            other => {
                return Err(cx.error(
                    k.span(),
                    format!(
                        "{e}: key {} is not known (use \"mac\" or \"client-id\")",
                        q(other)
                    ),
                ))
            }
        },
    })
}

/// `rate_limit`: requests a second per port, or "off" (`None`).
fn rate_limit(
    cx: &Cx<'_>,
    e: &str,
    rate_limit: &Option<Spanned<toml::Value>>,
) -> Result<Option<u32>, ConfigError> {
    Ok(match rate_limit {
        None => Some(DEFAULT_RATE_LIMIT),
        Some(v) => parse_rate_limit(v.get_ref()).map_err(|problem| {
            cx.error(
                v.span(),
                format!(
                    "{e}: rate_limit {problem} (write requests a second per port, 1 to \
                     {MAX_RATE_LIMIT}, like 100, or \"off\" for no limit)"
                ),
            )
        })?,
    })
}

/// `lease_file`: an absolute path, not the journal's.
fn lease_file(
    cx: &Cx<'_>,
    e: &str,
    lease_file: &Option<Spanned<String>>,
    state_dir: &Path,
) -> Result<PathBuf, ConfigError> {
    Ok(match lease_file {
        None => state_dir.join(LEASE_FILE),
        Some(s) => {
            let path = absolute(cx, e, "lease_file", s)?;
            if path == state_dir.join(JOURNAL_FILE) {
                return Err(cx.error(
                    s.span(),
                    format!(
                        "{e}: lease_file {} is the journal's path (pick another file name)",
                        q(s.get_ref())
                    ),
                ));
            }
            path
        }
    })
}

/// `dns`: unicast IPv4 addresses (the gateway without the key; `[]` sends none).
fn dns_servers(
    cx: &Cx<'_>,
    e: &str,
    network: &Network,
    dns: &Option<Vec<Spanned<String>>>,
) -> Result<Vec<Ipv4Addr>, ConfigError> {
    Ok(match dns {
        None => vec![network.gateway],
        Some(list) => {
            too_long(cx, e, "dns", list)?;
            let mut dns = Vec::with_capacity(list.len());
            for s in list {
                let ip = s
                    .get_ref()
                    .parse::<Ipv4Addr>()
                    .ok()
                    .filter(|ip| !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast())
                    .ok_or_else(|| {
                        cx.error(
                            s.span(),
                            format!(
                                "{e}: dns {} is not a unicast IPv4 address (write it like \
                                 \"{}\", or use [] to send no DNS server)",
                                q(s.get_ref()),
                                network.gateway
                            ),
                        )
                    })?;
                dns.push(ip);
            }
            dns
        }
    })
}

/// `search`: domain names (the network's domain without the key).
fn search_list(
    cx: &Cx<'_>,
    e: &str,
    network: &Network,
    search: &Option<Vec<Spanned<String>>>,
) -> Result<Vec<String>, ConfigError> {
    Ok(match search {
        None => vec![network.domain.clone()],
        Some(list) => {
            too_long(cx, e, "search", list)?;
            let mut search = Vec::with_capacity(list.len());
            for s in list {
                let name = normalize_domain(s.get_ref()).map_err(|problem| {
                    cx.error(
                        s.span(),
                        format!("{e}: search {} {problem}", q(s.get_ref())),
                    )
                })?;
                search.push(name);
            }
            search
        }
    })
}

/// `pool = ["START", "END"]`: both host addresses of the subnet, start <= end, gateway outside.
pub(super) fn pool(
    cx: &Cx<'_>,
    network: &Network,
    e: &str,
    raw: &Spanned<Vec<Spanned<String>>>,
) -> Result<(Ipv4Addr, Ipv4Addr), ConfigError> {
    let [start, end] = raw.get_ref().as_slice() else {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e}: pool has {} entries; write the first and last address, like \
                 [\"10.13.31.100\", \"10.13.31.199\"]",
                raw.get_ref().len()
            ),
        ));
    };
    let mut ends = [Ipv4Addr::UNSPECIFIED; 2];
    for (slot, (which, s)) in ends.iter_mut().zip([("start", start), ("end", end)]) {
        let ip: Ipv4Addr = s.get_ref().parse().map_err(|_| {
            cx.error(
                s.span(),
                format!(
                    "{e}: pool {which} {} is not an IPv4 address (write it like \"{}\")",
                    q(s.get_ref()),
                    super::first_host(network.subnet)
                ),
            )
        })?;
        if let Some(problem) = host_address_problem(network.subnet, ip) {
            return Err(cx.error(
                s.span(),
                format!(
                    "{e}: pool {which} {ip} {problem} (the pool must be inside {})",
                    network.subnet
                ),
            ));
        }
        *slot = ip;
    }
    let [lo, hi] = ends;
    if lo > hi {
        return Err(cx.error(
            raw.span(),
            format!("{e}: pool starts at {lo} after it ends at {hi} (swap them)"),
        ));
    }
    if (lo..=hi).contains(&network.gateway) {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e}: pool {lo}-{hi} contains the gateway {} (start it after the gateway, or \
                 end it before)",
                network.gateway
            ),
        ));
    }
    Ok((lo, hi))
}

/// `"infinite"` → `None`; otherwise an ageing-style duration of at least [`MIN_LEASE`].
fn parse_lease(value: &toml::Value) -> Result<Option<Duration>, String> {
    if value.as_str() == Some("infinite") {
        return Ok(None);
    }
    let d = parse_ageing(value)?;
    if d < MIN_LEASE {
        return Err(format!("of {}s is below the minimum of 120s", d.as_secs()));
    }
    Ok(Some(d))
}

/// `"off"` → `None`; an integer of requests a second, 1 to [`MAX_RATE_LIMIT`].
fn parse_rate_limit(value: &toml::Value) -> Result<Option<u32>, String> {
    match value {
        toml::Value::String(s) if s == "off" => Ok(None),
        toml::Value::String(s) => Err(format!("{} is not a number or \"off\"", q(s))),
        toml::Value::Integer(n) if (1..=MAX_RATE_LIMIT).contains(n) => Ok(Some(
            u32::try_from(*n).map_err(|_| format!("{n} is out of range"))?,
        )),
        toml::Value::Integer(n) => Err(format!("{n} is out of range")),
        other => Err(format!("is a {}, not a number", other.type_str())),
    }
}

fn absolute(
    cx: &Cx<'_>,
    e: &str,
    key: &str,
    raw: &Spanned<String>,
) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(raw.get_ref());
    if !path.is_absolute() || raw.get_ref().contains('\0') {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e}: {key} {} must be an absolute path (like \"/var/lib/switchyard/lab\")",
                q(raw.get_ref())
            ),
        ));
    }
    Ok(path)
}

fn too_long(cx: &Cx<'_>, e: &str, key: &str, list: &[Spanned<String>]) -> Result<(), ConfigError> {
    match list.get(MAX_LIST) {
        Some(s) => Err(cx.error(
            s.span(),
            format!("{e}: {key} has more than {MAX_LIST} entries (remove some)"),
        )),
        None => Ok(()),
    }
}

/// The DHCP server's parameters for `config`: server id and default DNS the gateway, router
/// [`Config::router`] (the host port with a `forward` mode, none without),
/// option 15 the domain, option 26 the network MTU, and a reservation for every `[[host]]` with
/// an `ipv4`. The per-port rate limit is `rate_limit` a second with a burst of twice that
/// (the default, 10, is [`DhcpParams::new`]'s 10/s, burst 20).
pub fn dhcp_params(config: &Config) -> DhcpParams {
    let net = &config.network;
    let d = &config.dhcp;
    let mut p = DhcpParams::new(net.gateway, net.subnet);
    // With a forward mode the host port routes the subnet out; the appliance is no router,
    // and an isolated network has none.
    p.router = config.router();
    p.dns = d.dns.clone();
    p.domain = Some(net.domain.clone());
    p.search = d.search.clone();
    p.mtu = Some(u16::try_from(net.mtu).unwrap_or(u16::MAX));
    p.lease_time = d.lease_time;
    p.pool = d.pool;
    p.key_mode = d.key;
    p.max_leases_per_port = d.max_leases_per_port;
    p.rate_limit = d.rate_limit.map(|per_sec| RateLimit {
        per_sec,
        burst: per_sec.saturating_mul(2),
    });
    p.reservations = config.hosts.iter().filter_map(reservation).collect();
    p.extra_options = d.options.clone();
    p.trusted_ports = config
        .ports
        .iter()
        .enumerate()
        .filter(|(_, port)| port.trusted)
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    p.ports = dhcp_port_bindings(config, |i, _| u16::try_from(i).ok());
    p
}

/// What the DHCP server must know of every port of `config` to bind messages to ports (issue
/// 17): the host bound to it and, when its guard enforces, the host's MACs and addresses.
/// `id_of` gives a port's id (at start its index; later the switch's slot for its name).
fn dhcp_port_bindings(
    config: &Config,
    id_of: impl Fn(usize, &super::PortConfig) -> Option<u16>,
) -> std::collections::BTreeMap<u16, PortBinding> {
    let mut ports = std::collections::BTreeMap::new();
    for (i, port) in config.ports.iter().enumerate() {
        let Some(id) = id_of(i, port) else { continue };
        let mut b = PortBinding {
            host: port.host.map(|h| config.hosts[h].name.clone()),
            ..PortBinding::default()
        };
        if let Some(policy) = port.policy(config).filter(|p| p.mode == GuardMode::Enforce) {
            b.ipv4 = policy.ipv4.iter().copied().collect();
            b.guard_macs = Some(policy.macs);
        }
        ports.insert(id, b);
    }
    ports
}

fn reservation(h: &Host) -> Option<Reservation> {
    Some(Reservation {
        name: h.name.clone(),
        mac: h.mac,
        client_id: match h.match_by {
            HostMatch::ClientId => h.client_id.clone(),
            _ => None,
        },
        ipv4: h.ipv4?,
        match_hostname: h.match_by == HostMatch::Hostname,
    })
}
