//! The guard's keys: `extra_macs`, `extra_ipv4`, `extra_ipv6` on a `[[host]]`, and `guard`,
//! `trusted`, `any_link_local` on a `[[port]]`; and the [`PortPolicy`] they build.
//!
//! A port with a host is guarded by default: forgetting a key must not leave a port open. The
//! extras are the one way to let a host use more than its reservation (a VRRP virtual MAC, a
//! keepalived VIP, a MetalLB pool), so they are validated hard: no gateway, no multicast, no
//! unspecified address, no prefix with host bits set, at most `MAX_EXTRAS` of each.

use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use toml::Spanned;

use super::{q, unicast_mac, Config, ConfigError, Cx, Network, PortConfig, RawHost, RawPort};
use crate::switch::{GuardMode, PortPolicy};
use crate::wire::MacAddr;

/// Most entries in each of `extra_macs`, `extra_ipv4`, `extra_ipv6` (the guard scans them).
const MAX_EXTRAS: usize = 64;

/// `guard = true | false | "monitor"` on a `[[port]]`, resolved with `host` and `trusted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No guard: no host, `guard = false`, or `trusted = true`.
    Off,
    /// Drop what the host may not send (the default for a port with a host).
    Enforce,
    /// Count what would be dropped; drop nothing.
    Monitor,
}

/// A host's declared extra addresses.
pub(super) struct Extras {
    pub(super) macs: Vec<MacAddr>,
    pub(super) ipv4: Vec<Ipv4Net>,
    pub(super) ipv6: Vec<Ipv6Net>,
}

fn too_many(cx: &Cx<'_>, e: &str, key: &str, list: &[Spanned<String>]) -> Option<ConfigError> {
    let extra = list.get(MAX_EXTRAS)?;
    Some(cx.error(
        extra.span(),
        format!("{e}: {key} has more than {MAX_EXTRAS} entries (use a prefix instead)"),
    ))
}

/// Validates `extra_macs`, `extra_ipv4` and `extra_ipv6` of host entry `e`.
pub(super) fn host_extras(
    cx: &Cx<'_>,
    network: &Network,
    e: &str,
    raw: &RawHost,
) -> Result<Extras, ConfigError> {
    for (key, list) in [
        ("extra_macs", &raw.extra_macs),
        ("extra_ipv4", &raw.extra_ipv4),
        ("extra_ipv6", &raw.extra_ipv6),
    ] {
        if let Some(err) = too_many(cx, e, key, list) {
            return Err(err);
        }
    }
    let macs = raw
        .extra_macs
        .iter()
        .map(|m| unicast_mac(cx, m, e))
        .collect::<Result<_, _>>()?;
    let mut ipv4 = Vec::with_capacity(raw.extra_ipv4.len());
    for s in &raw.extra_ipv4 {
        let bad = |problem: String| cx.error(s.span(), format!("{e}: extra_ipv4 {problem}"));
        let net = parse_net::<Ipv4Net, std::net::Ipv4Addr>(s.get_ref()).map_err(bad)?;
        let addr = net.network();
        let problem = if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
            Some("is not a unicast address".to_string())
        } else if net.contains(&network.gateway) {
            // Threat: a host declared to own the gateway's address could answer ARP for it.
            Some(format!("covers the gateway {}", network.gateway))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(bad(format!(
                "{} {problem} (list the host's own extra addresses, e.g. a VIP \
                 \"10.13.31.50\" or a pool \"10.13.31.64/28\")",
                q(s.get_ref())
            )));
        }
        ipv4.push(net);
    }
    let mut ipv6 = Vec::with_capacity(raw.extra_ipv6.len());
    for s in &raw.extra_ipv6 {
        let bad = |problem: String| cx.error(s.span(), format!("{e}: extra_ipv6 {problem}"));
        let net = parse_net::<Ipv6Net, Ipv6Addr>(s.get_ref()).map_err(bad)?;
        if net.network().is_unspecified() || net.network().is_multicast() {
            return Err(bad(format!(
                "{} is not a unicast address (write an address like \"fd00::50\" or a \
                 prefix like \"fd00:1::/64\")",
                q(s.get_ref())
            )));
        }
        ipv6.push(net);
    }
    Ok(Extras { macs, ipv4, ipv6 })
}

/// `addr` or `addr/len` with the host bits zero; the error says what to write.
fn parse_net<N, A>(text: &str) -> Result<N, String>
where
    N: std::str::FromStr + From<A> + Copy + std::fmt::Display + NetOps,
    A: std::str::FromStr,
{
    let net = match text.parse::<A>() {
        Ok(a) => N::from(a),
        Err(_) => text.parse::<N>().map_err(|_| {
            format!(
                "{} is neither an address nor a prefix (write \"ADDR\" or \"ADDR/LEN\")",
                q(text)
            )
        })?,
    };
    if !net.is_trunc() {
        return Err(format!(
            "{} has host bits set (did you mean \"{}\"?)",
            q(text),
            net.truncated()
        ));
    }
    Ok(net)
}

/// What `parse_net` needs from both prefix types.
trait NetOps: Sized {
    fn truncated(&self) -> Self;
    fn is_trunc(&self) -> bool;
}

impl NetOps for Ipv4Net {
    fn truncated(&self) -> Self {
        self.trunc()
    }
    fn is_trunc(&self) -> bool {
        self.trunc() == *self
    }
}

impl NetOps for Ipv6Net {
    fn truncated(&self) -> Self {
        self.trunc()
    }
    fn is_trunc(&self) -> bool {
        self.trunc() == *self
    }
}

/// The guard keys of port entry `e`: (guard, trusted, any_link_local).
pub(super) fn port_guard(
    cx: &Cx<'_>,
    e: &str,
    p: &RawPort,
    has_host: bool,
) -> Result<(Guard, bool, bool), ConfigError> {
    let trusted = p.trusted.unwrap_or(false);
    let any_link_local = p.any_link_local.unwrap_or(false);
    let Some(raw) = &p.guard else {
        let guard = if has_host && !trusted {
            Guard::Enforce
        } else {
            Guard::Off
        };
        return Ok((guard, trusted, any_link_local));
    };
    let guard = match raw.get_ref() {
        toml::Value::Boolean(false) => Guard::Off,
        toml::Value::Boolean(true) => Guard::Enforce,
        toml::Value::String(s) if s == "monitor" => Guard::Monitor,
        other => {
            return Err(cx.error(
                raw.span(),
                format!("{e}: guard = {other} is not valid (write true, false or \"monitor\")"),
            ))
        }
    };
    if guard != Guard::Off && !has_host {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e}: guard needs a host (the policy is the host's addresses; set host = \"...\" \
                 or remove the guard key)"
            ),
        ));
    }
    if guard != Guard::Off && trusted {
        return Err(cx.error(
            raw.span(),
            format!(
                "{e}: a trusted port is never guarded (remove trusted = true, or the guard key)"
            ),
        ));
    }
    Ok((guard, trusted, any_link_local))
}

impl PortConfig {
    /// The guard policy of this port of `config`; `None` when the port is unguarded.
    pub fn policy(&self, config: &Config) -> Option<PortPolicy> {
        let mode = match self.guard {
            Guard::Off => return None,
            Guard::Enforce => GuardMode::Enforce,
            Guard::Monitor => GuardMode::Monitor,
        };
        let host = &config.hosts[self.host?];
        // A host without a MAC is refused on a guarded port at load; fail closed regardless.
        let mut policy = PortPolicy::for_host(host.mac.unwrap_or(MacAddr::ZERO), host.ipv4);
        policy.macs.retain(|m| !m.is_zero());
        policy.macs.extend(host.extra_macs.iter().copied());
        policy.ipv4.extend(host.extra_ipv4.iter().copied());
        policy.ipv6.extend(host.extra_ipv6.iter().copied());
        policy.ipv6.extend(host.ipv6.map(Ipv6Net::from));
        policy.slaac = config.ipv6.as_ref().and_then(|v6| v6.slaac_prefix());
        policy.mode = mode;
        policy.allow_any_link_local = self.any_link_local;
        Some(policy)
    }
}
