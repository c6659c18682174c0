//! `[[host]]`: the lab's hosts (name, MAC, IPv4, DHCP match), each unique by name, MAC and
//! address.

use std::net::Ipv4Addr;

use toml::Spanned;

use super::{
    dhcp, dns_label_problem, first_host, guard, host_address_problem, q, ConfigError, Cx, Host,
    Network, RawHost, Unique,
};
use crate::wire::MacAddr;

pub(super) fn validate_hosts(
    cx: &Cx<'_>,
    network: &Network,
    net6: Option<&super::Ipv6Config>,
    raw: Vec<Spanned<RawHost>>,
) -> Result<Vec<Host>, ConfigError> {
    let mut seen = Seen {
        names: Unique::new(cx),
        macs: Unique::new(cx),
        ips: Unique::new(cx),
        client_ids: Unique::new(cx),
        ipv6s: Unique::new(cx),
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, spanned)| validate_host(cx, network, net6, i, spanned, &mut seen))
        .collect()
}

/// What must be unique across the `[[host]]` tables.
struct Seen<'a> {
    names: Unique<'a>,
    macs: Unique<'a>,
    ips: Unique<'a>,
    client_ids: Unique<'a>,
    ipv6s: Unique<'a>,
}

/// The `i`th `[[host]]` (from 0).
fn validate_host<'a>(
    cx: &Cx<'a>,
    network: &Network,
    net6: Option<&super::Ipv6Config>,
    i: usize,
    spanned: Spanned<RawHost>,
    seen: &mut Seen<'a>,
) -> Result<Host, ConfigError> {
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
    seen.names.check(
        name.clone(),
        &h.name.span(),
        &e,
        "name",
        "host names must be unique",
    )?;

    let hd = dhcp::host_dhcp(cx, &e, &h, table)?;
    if let (Some(mac), Some(raw_mac)) = (hd.mac, &h.mac) {
        seen.macs.check(
            mac.to_string(),
            &raw_mac.span(),
            &e,
            "mac",
            "each host needs its own MAC",
        )?;
    }
    if let (Some(id), Some(raw_id)) = (&hd.client_id, &h.client_id) {
        seen.client_ids.check(
            crate::service::dhcp::leases::hex_colon(id),
            &raw_id.span(),
            &e,
            "client_id",
            "each host needs its own client id",
        )?;
    }

    let (ipv4, ipv6) = host_addresses(cx, network, net6, &e, &h, seen)?;
    let duid = super::ipv6::host_duid(cx, net6, &e, &h)?;
    let extras = guard::host_extras(cx, network, &e, &h)?;
    Ok(Host {
        name: name.clone(),
        mac: hd.mac,
        ipv4,
        ipv6,
        duid,
        client_id: hd.client_id,
        match_by: hd.match_by,
        extra_macs: extras.macs,
        extra_ipv4: extras.ipv4,
        extra_ipv6: extras.ipv6,
    })
}

/// A `[[host]]`'s `ipv4` and `ipv6`, each unique across the hosts.
fn host_addresses<'a>(
    cx: &Cx<'a>,
    network: &Network,
    net6: Option<&super::Ipv6Config>,
    e: &str,
    h: &RawHost,
    seen: &mut Seen<'a>,
) -> Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>), ConfigError> {
    let ipv4 = match &h.ipv4 {
        None => None,
        Some(raw_ip) => {
            let ip = host_ipv4(cx, network, e, raw_ip)?;
            seen.ips.check(
                ip.to_string(),
                &raw_ip.span(),
                e,
                "ipv4",
                "each host needs its own address",
            )?;
            Some(ip)
        }
    };
    let ipv6 = super::ipv6::host_ipv6(cx, net6, e, h)?;
    if let (Some(ip), Some(raw_ip)) = (ipv6, &h.ipv6) {
        seen.ipv6s.check(
            ip.to_string(),
            &raw_ip.span(),
            e,
            "ipv6",
            "each host needs its own address",
        )?;
    }
    Ok((ipv4, ipv6))
}

/// A `[[host]]`'s `ipv4`: an address inside the subnet, not the gateway's.
fn host_ipv4(
    cx: &Cx<'_>,
    network: &Network,
    e: &str,
    raw_ip: &Spanned<String>,
) -> Result<Ipv4Addr, ConfigError> {
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
    Ok(ip)
}

/// A MAC that may be a frame's source: not multicast/broadcast, not all zeros.
pub(super) fn unicast_mac(
    cx: &Cx<'_>,
    raw: &Spanned<String>,
    entry: &str,
) -> Result<MacAddr, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

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
}
