//! The `[dns]` section, its `[[dns.forward]]` and `[[dns.record]]` tables, and [`dns_params`],
//! which maps a validated [`Config`] onto the DNS service's [`DnsParams`].
//!
//! The section is optional: without it the appliance answers the network's names at the
//! gateway (port 53, UDP and TCP), refuses every other name (no upstreams), and gives local
//! answers a TTL of 0 (dnsmasq's `local-ttl` default).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{count, normalize_domain, q, Config, ConfigError, Cx, Host, Network};
use crate::service::dns::params::{DEFAULT_CACHE_SIZE, DEFAULT_TIMEOUT, MAX_PENDING};
use crate::service::dns::{DnsHost, DnsParams, ForwardRule, RecordValue, StaticRecord};

const DNS_PORT: u16 = 53;
/// A week: longer local TTLs only make stale answers last.
const MAX_LOCAL_TTL: i64 = 7 * 24 * 3600;
const MAX_CACHE_SIZE: i64 = 1_000_000;
const MIN_TIMEOUT_MS: i64 = 50;
const MAX_TIMEOUT_MS: i64 = 60_000;
/// Most upstreams in one list, and most listen addresses.
const MAX_LIST: usize = 16;

/// The validated `[dns]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Default true. False: the appliance answers no DNS.
    pub enabled: bool,
    /// Where other names go; empty: they get REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// No `upstreams` key: the daemon takes the host's resolvers (`control::resolv`), as
    /// dnsmasq and libvirt do. `upstreams = []` says "none" and keeps this false.
    pub upstreams_from_host: bool,
    /// TTL of local answers (default 0).
    pub local_ttl: u32,
    /// Cached upstream answers (default 10,000; 0: no cache).
    pub cache_size: usize,
    /// A forwarded query gets SERVFAIL after this (default 2 s).
    pub timeout: Duration,
    /// Extra UDP addresses the daemon answers on, in its own namespace (for the host itself).
    pub listen: Vec<SocketAddr>,
    pub forwards: Vec<ForwardRule>,
    pub records: Vec<StaticRecord>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            upstreams: Vec::new(),
            upstreams_from_host: true,
            local_ttl: 0,
            cache_size: DEFAULT_CACHE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            listen: Vec::new(),
            forwards: Vec::new(),
            records: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [dns] table")]
pub(super) struct RawDns {
    enabled: Option<bool>,
    upstreams: Option<Vec<Spanned<String>>>,
    local_ttl: Option<Spanned<i64>>,
    cache_size: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    listen: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    forward: Vec<Spanned<RawForward>>,
    #[serde(default)]
    record: Vec<Spanned<RawRecord>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[dns.forward]] table")]
struct RawForward {
    domain: Spanned<String>,
    upstreams: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[dns.record]] table")]
struct RawRecord {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    value: Spanned<toml::Value>,
}

/// Validates the `[dns]` section (absent: every default).
pub(super) fn validate_dns(
    cx: &Cx<'_>,
    network: &Network,
    hosts: &[Host],
    raw: Option<RawDns>,
) -> Result<DnsConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DnsConfig::default());
    };
    let e = "[dns]";
    let upstreams_from_host = raw.upstreams.is_none();
    let upstreams = match &raw.upstreams {
        None => Vec::new(),
        Some(list) => addresses(cx, network, e, "upstreams", list, true)?,
    };
    let local_ttl = count(cx, raw.local_ttl.as_ref(), e, "local_ttl", 0, MAX_LOCAL_TTL)?
        .map_or(0, |n| n as u32);
    let cache_size = count(
        cx,
        raw.cache_size.as_ref(),
        e,
        "cache_size",
        0,
        MAX_CACHE_SIZE,
    )?
    .unwrap_or(DEFAULT_CACHE_SIZE);
    let timeout = count(
        cx,
        raw.timeout_ms.as_ref(),
        e,
        "timeout_ms",
        MIN_TIMEOUT_MS,
        MAX_TIMEOUT_MS,
    )?
    .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms as u64));
    let listen = match &raw.listen {
        None => Vec::new(),
        Some(list) => addresses(cx, network, e, "listen", list, false)?,
    };

    let forwards = forwards(cx, network, &raw.forward)?;
    let records = records(cx, network, hosts, &raw.record)?;
    Ok(DnsConfig {
        enabled: raw.enabled.unwrap_or(true),
        upstreams,
        upstreams_from_host,
        local_ttl,
        cache_size,
        timeout,
        listen,
        forwards,
        records,
    })
}

/// Every `[[dns.forward]]`: a domain outside the network's, each once, with upstreams.
fn forwards(
    cx: &Cx<'_>,
    network: &Network,
    raw_forwards: &[Spanned<RawForward>],
) -> Result<Vec<ForwardRule>, ConfigError> {
    let mut forwards = Vec::with_capacity(raw_forwards.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, f) in raw_forwards.iter().enumerate() {
        let fe = format!("[[dns.forward]] #{}", i + 1);
        let f = f.get_ref();
        let domain = normalize_domain(f.domain.get_ref()).map_err(|problem| {
            cx.error(
                f.domain.span(),
                format!("{fe}: domain {} {problem}", q(f.domain.get_ref())),
            )
        })?;
        if domain == network.domain || domain.ends_with(&format!(".{}", network.domain)) {
            return Err(cx.error(
                f.domain.span(),
                format!(
                    "{fe}: domain {} is inside the network's domain {}, which the appliance \
                     answers itself (forward another domain, or remove the entry)",
                    q(&domain),
                    q(&network.domain)
                ),
            ));
        }
        if let Some(first) = seen.insert(domain.clone(), cx.line(f.domain.span().start)) {
            return Err(cx.error(
                f.domain.span(),
                format!(
                    "{fe}: domain {} is already forwarded on line {first} (merge the two \
                     upstream lists)",
                    q(&domain)
                ),
            ));
        }
        let ups = addresses(cx, network, &fe, "upstreams", &f.upstreams, true)?;
        if ups.is_empty() {
            return Err(cx.error(
                f.domain.span(),
                format!("{fe}: upstreams is empty (add at least one address)"),
            ));
        }
        forwards.push(ForwardRule {
            domain,
            upstreams: ups,
        });
    }
    Ok(forwards)
}

/// `"ip"` or `"ip:port"` (`"[v6]:port"`), port 53 by default. Upstreams must not be the
/// gateway (the appliance would forward to itself).
fn addresses(
    cx: &Cx<'_>,
    network: &Network,
    e: &str,
    key: &str,
    list: &[Spanned<String>],
    upstream: bool,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if let Some(s) = list.get(MAX_LIST) {
        return Err(cx.error(
            s.span(),
            format!("{e}: {key} has more than {MAX_LIST} entries (remove some)"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let text = s.get_ref();
        let addr = text
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                text.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, DNS_PORT))
            })
            .filter(|a| a.port() != 0 && !a.ip().is_multicast())
            .filter(|a| !upstream || !a.ip().is_unspecified());
        let Some(addr) = addr else {
            return Err(cx.error(
                s.span(),
                format!(
                    "{e}: {key} {} is not an address (write \"192.0.2.53\" or \
                     \"192.0.2.53:5353\"; port 53 by default, not 0)",
                    q(text)
                ),
            ));
        };
        if upstream && addr.ip() == IpAddr::V4(network.gateway) {
            return Err(cx.error(
                s.span(),
                format!(
                    "{e}: {key} {} is the gateway, the appliance itself (name a resolver \
                     outside the switch)",
                    q(text)
                ),
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A record's owner name relative to the domain: "@" or the domain is the apex (""); a name
/// ending in the domain is made relative; anything else is taken as relative already.
fn relative_name(name: &str, domain: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    if lower == "@" || lower == domain {
        return Ok(String::new());
    }
    let rel = lower
        .strip_suffix(&format!(".{domain}"))
        .unwrap_or(lower)
        .to_string();
    if rel.len() + domain.len() + 1 > 253 {
        return Err("is longer than 253 bytes with the domain".into());
    }
    for label in rel.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "has the label {} (use 1 to 63 of a-z, 0-9, '-' and '_')",
                q(label)
            ));
        }
    }
    Ok(rel)
}

/// A CNAME or SRV target: one label is relative to the domain, a dotted name is absolute.
fn target_name(text: &str, domain: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let full = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.{domain}")
    };
    normalize_domain(&full)
}

fn records(
    cx: &Cx<'_>,
    network: &Network,
    hosts: &[Host],
    raw: &[Spanned<RawRecord>],
) -> Result<Vec<StaticRecord>, ConfigError> {
    let host_names: HashSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let mut out: Vec<StaticRecord> = Vec::with_capacity(raw.len());
    let mut cname_at: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let re = format!("[[dns.record]] #{}", i + 1);
        let r = r.get_ref();
        let name = relative_name(r.name.get_ref(), &network.domain).map_err(|problem| {
            cx.error(
                r.name.span(),
                format!(
                    "{re}: name {} {problem} (write \"www\", \"_http._tcp\" or \"@\" for the \
                     domain itself)",
                    q(r.name.get_ref())
                ),
            )
        })?;
        let value = record_value(r, &network.domain)
            .map_err(|problem| {
                cx.error(
                    r.value.span(),
                    format!("{re}: {} value {problem}", r.kind.get_ref().to_uppercase()),
                )
            })?
            .ok_or_else(|| {
                cx.error(
                    r.kind.span(),
                    format!(
                        "{re}: type {} is not supported (use \"A\", \"AAAA\", \"CNAME\", \"TXT\" \
                     or \"SRV\")",
                        q(r.kind.get_ref())
                    ),
                )
            })?;
        // RFC 1034 §3.6.2: a CNAME is the only data at its name.
        let is_cname = matches!(value, RecordValue::Cname(_));
        let clash = if is_cname {
            name.is_empty()
                || host_names.contains(name.as_str())
                || out.iter().any(|o| o.name == name)
        } else {
            cname_at.contains_key(&name)
        };
        if clash {
            return Err(cx.error(
                r.name.span(),
                format!(
                    "{re}: name {} has a CNAME and other data (a CNAME must be alone at its \
                     name, not at the domain itself nor at a host's name; rename one)",
                    q(r.name.get_ref())
                ),
            ));
        }
        if is_cname {
            cname_at.insert(name.clone(), i);
        }
        out.push(StaticRecord { name, value });
    }
    Ok(out)
}

/// The record's data; `Ok(None)` for an unknown type.
fn record_value(r: &RawRecord, domain: &str) -> Result<Option<RecordValue>, String> {
    let value = r.value.get_ref();
    let text = || {
        value
            .as_str()
            .ok_or_else(|| format!("is a {}, not a string", value.type_str()))
    };
    let v = match r.kind.get_ref().to_ascii_uppercase().as_str() {
        "A" => RecordValue::A(
            text()?
                .parse::<Ipv4Addr>()
                .map_err(|_| "is not an IPv4 address (write \"10.13.31.50\")".to_string())?,
        ),
        "AAAA" => RecordValue::Aaaa(
            text()?
                .parse::<Ipv6Addr>()
                .map_err(|_| "is not an IPv6 address (write \"fd00::50\")".to_string())?,
        ),
        "CNAME" => RecordValue::Cname(
            target_name(text()?, domain).map_err(|p| format!("{p} (write a host name)"))?,
        ),
        "TXT" => {
            let parts: Vec<String> = match value {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("must be a string or an array of strings")?,
                _ => return Err("must be a string or an array of strings".into()),
            };
            if parts.is_empty() || parts.iter().any(|p| p.len() > 255) {
                return Err("needs 1 or more strings of at most 255 bytes".into());
            }
            RecordValue::Txt(parts)
        }
        "SRV" => {
            let usage = "is not \"priority weight port target\" (write \"0 5 80 web\")";
            let f: Vec<&str> = text()?.split_whitespace().collect();
            let [p, w, port, target] = f.as_slice() else {
                return Err(usage.into());
            };
            let n = |s: &str| s.parse::<u16>().map_err(|_| usage.to_string());
            RecordValue::Srv {
                priority: n(p)?,
                weight: n(w)?,
                port: n(port)?,
                target: target_name(target, domain).map_err(|p| format!("target {p}"))?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// The DNS service's parameters for `config`.
pub fn dns_params(config: &Config) -> DnsParams {
    let d = &config.dns;
    let mut p = DnsParams::new(
        &config.network.domain,
        config.network.subnet,
        config.network.gateway,
    );
    p.hosts = config
        .hosts
        .iter()
        .map(|h| DnsHost {
            name: h.name.clone(),
            ipv4: h.ipv4,
            mac: h.mac,
            ipv6: h.ipv6,
            match_hostname: h.match_by == super::HostMatch::Hostname,
        })
        .collect();
    p.ipv6 = config.ipv6.as_ref().map(|v6| (v6.gateway, v6.subnet));
    p.records = d.records.clone();
    p.local_ttl = d.local_ttl;
    p.upstreams = d.upstreams.clone();
    p.forwards = d.forwards.clone();
    p.cache_size = d.cache_size;
    p.timeout = d.timeout;
    p.max_pending = MAX_PENDING;
    p
}
