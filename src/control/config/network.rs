//! `[network]`: the segment's name, subnet, gateway, domain and MTU, and the name and address
//! rules the other sections share (DNS labels, interface MTUs, host addresses).

use std::net::Ipv4Addr;

use super::{host_port, q, ConfigError, Cx, Network, RawNetwork, DEFAULT_MTU, MAX_MTU, MIN_MTU};
use ipnet::Ipv4Net;
use toml::Spanned;

pub(super) fn validate_network(cx: &Cx<'_>, raw: RawNetwork) -> Result<Network, ConfigError> {
    validate_network_as(cx, "[network]", raw)
}

/// `[network]`'s checks for the entry `e` (a `[[segment]]` shares them: name, subnet, gateway,
/// domain).
pub(super) fn validate_network_as(
    cx: &Cx<'_>,
    e: &str,
    raw: RawNetwork,
) -> Result<Network, ConfigError> {
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

    let subnet = subnet(cx, e, &raw.subnet)?;

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

/// `subnet`: an IPv4 network in CIDR form, no host bits, room for a gateway and hosts.
fn subnet(cx: &Cx<'_>, e: &str, raw_subnet: &Spanned<String>) -> Result<Ipv4Net, ConfigError> {
    let subnet_text = raw_subnet.get_ref();
    let subnet: Ipv4Net = subnet_text.parse().map_err(|_| {
        cx.error(
            raw_subnet.span(),
            format!(
                "{e}: subnet {} is not an IPv4 network in CIDR form (write it like \
                 \"10.13.31.0/24\")",
                q(subnet_text)
            ),
        )
    })?;
    if subnet.trunc() != subnet {
        return Err(cx.error(
            raw_subnet.span(),
            format!(
                "{e}: subnet {} has host bits set (did you mean \"{}\"?)",
                q(subnet_text),
                subnet.trunc()
            ),
        ));
    }
    if subnet.prefix_len() > 30 {
        return Err(cx.error(
            raw_subnet.span(),
            format!(
                "{e}: subnet {} leaves no room for a gateway and hosts (use a prefix of /30 or \
                 shorter)",
                q(subnet_text)
            ),
        ));
    }
    Ok(subnet)
}

/// Why `addr` cannot be a machine's address on `subnet`, if it cannot.
pub(super) fn host_address_problem(subnet: Ipv4Net, addr: Ipv4Addr) -> Option<&'static str> {
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

pub(super) fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// `1..=max` bytes, all passing `allowed`.
pub(super) fn is_name(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    (1..=max).contains(&s.len()) && s.chars().all(allowed)
}

/// Why `label` is not a lowercase DNS label (RFC 1123 host name rules), if it is not.
pub(super) fn dns_label_problem(label: &str) -> Option<String> {
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
pub(super) fn normalize_domain(domain: &str) -> Result<String, String> {
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

pub(super) fn mtu(
    cx: &Cx<'_>,
    raw: Option<&Spanned<i64>>,
    entry: &str,
) -> Result<Option<u32>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    use crate::control::config::*;

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
}
