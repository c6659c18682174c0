//! `[[port]]` entries: name, kind (the kind's own keys are `kinds.rs`), MTU, host, guard, and
//! the netdev names and namespaces of taps and packet ports.

use std::collections::HashMap;
use std::ops::Range;

use super::{
    guard, is_name, kinds, mtu, q, segment, AddressMode, ConfigError, Cx, Guard, Host, Network,
    PortConfig, PortKind, RawPort, TapConfig, Unique, KNOWN_KINDS, MAX_IFNAME_LEN, MAX_NETNS_LEN,
};
use toml::Spanned;

pub(super) fn validate_ports(
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
        check_port_name(cx, i, &p.name)?;
        let e = format!("port {}", q(name));
        names.check(
            name.clone(),
            &p.name.span(),
            &e,
            "name",
            "port names must be unique",
        )?;

        check_known_kind(cx, &e, &p.kind)?;

        let host = match &p.host {
            None => None,
            Some(raw_host) => Some(plug_host(cx, &e, name, hosts, raw_host, &mut plugged)?),
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
        if guard != Guard::Off {
            check_guarded_host_mac(cx, &e, hosts, host, &p.host)?;
        }
        let vlan = segment::port_vlan(cx, &e, &p)?;
        let limits = segment::port_limits(cx, &e, &p)?;
        ports.push(PortConfig {
            name: name.clone(),
            kind,
            host,
            isolated: p.isolated.unwrap_or(false),
            mtu: mtu(cx, p.mtu.as_ref(), &e)?.unwrap_or(network.mtu),
            guard,
            trusted,
            any_link_local,
            vlan,
            limits,
        });
    }
    Ok(ports)
}

/// A port's `name`: 1 to 32 characters of A-Z, a-z, 0-9, '_', '.' and '-'.
fn check_port_name(cx: &Cx<'_>, i: usize, raw_name: &Spanned<String>) -> Result<(), ConfigError> {
    let name = raw_name.get_ref();
    if !is_name(name, 32, |c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(cx.error(
            raw_name.span(),
            format!(
                "[[port]] #{}: name {} must be 1 to 32 characters of A-Z, a-z, 0-9, '_', \
                 '.' and '-'",
                i + 1,
                q(name)
            ),
        ));
    }
    Ok(())
}

/// A port's `kind`: one of [`KNOWN_KINDS`].
fn check_known_kind(cx: &Cx<'_>, e: &str, kind: &Spanned<String>) -> Result<(), ConfigError> {
    if !KNOWN_KINDS.contains(&kind.get_ref().as_str()) {
        return Err(cx.error(
            kind.span(),
            format!(
                "{e}: kind {} is not known (known kinds: {})",
                q(kind.get_ref()),
                KNOWN_KINDS
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

/// The index of the `[[host]]` a port's `host` names, which no other port may have taken
/// (`plugged`: host index → the port and line that took it).
fn plug_host(
    cx: &Cx<'_>,
    e: &str,
    name: &str,
    hosts: &[Host],
    raw_host: &Spanned<String>,
    plugged: &mut HashMap<usize, (String, usize)>,
) -> Result<usize, ConfigError> {
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
    if let Some((other, first)) = plugged.insert(idx, (name.to_string(), line)) {
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
    Ok(idx)
}

/// A guarded port's host must have a MAC (the guard allows that MAC and no other).
fn check_guarded_host_mac(
    cx: &Cx<'_>,
    e: &str,
    hosts: &[Host],
    host: Option<usize>,
    raw_host: &Option<Spanned<String>>,
) -> Result<(), ConfigError> {
    if let (Some(h), Some(raw_host)) = (host, raw_host) {
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
    Ok(())
}

/// `ifname` (required: `missing` says what it names) and `netns` of a tap or packet port, each
/// checked as the kernel and iproute2 would take it.
pub(super) fn netdev_keys(
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
pub(super) fn validate_tap(
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
pub(super) fn ifname_problem(name: &str) -> Option<String> {
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
pub(super) fn netns_problem(name: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    use crate::control::config::*;

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
}
