//! The host port and NAT: `host_address` on a `[[port]]` and `forward` in `[network]`.
//!
//! A host port is a tap that stays in the daemon's own network namespace with an address on the
//! subnet: the VM host's leg on the network, as libvirt's `virbr0` is. Its address is one of its
//! own, never the gateway: the appliance owns the gateway address on the segment (it answers
//! ARP for it with its own MAC), and a second owner of that address would fight it over ARP. So
//! the host leg takes a free address inside the subnet: not the gateway, not a reservation, not
//! in the DHCP pool, with the subnet's prefix length. A network has at most one host port (two
//! legs on one subnet in one namespace would leave the host's routing to chance).
//!
//! `forward` makes the host the subnet's way out, as libvirt's forward modes do: `"nat"`
//! masquerades traffic from the subnet that leaves the host through any other interface;
//! `"route"` routes it unchanged (the outside needs a route back to the subnet); `"open"`
//! routes it with no firewall rules of the daemon's at all. The appliance is not a router, so
//! with any of them the DHCP router (option 3) is the host port's address
//! ([`Config::router`]), and each needs a host port. Without `forward` the network is isolated,
//! like libvirt's isolated networks: DHCP sends no router at all, so a guest keeps its default
//! route (if any) elsewhere rather than one through a gateway that routes nothing.
//!
//! Both checks need the whole file (the pool, the reservations, every port), so they run after
//! the sections are validated, with the raw spans kept for `file:line` errors.

use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use toml::Spanned;

use super::{
    host_address_problem, q, Config, ConfigError, Cx, DhcpConfig, Host, Network, PortConfig,
    PortKind,
};

/// `[network] forward`: what the host does with the subnet's traffic to the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forward {
    /// Nothing: the network is closed (the default).
    #[default]
    None,
    /// Masquerade the subnet behind the host's own addresses (an nftables table of the
    /// daemon's), with the host port as the VMs' router.
    Nat,
    /// Route the subnet unchanged through the host port (forwarding rules, no masquerade).
    Route,
    /// Route it with no firewall rules of the daemon's (libvirt's `open`).
    Open,
}

impl Forward {
    /// The config file's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Forward::None => "none",
            Forward::Nat => "nat",
            Forward::Route => "route",
            Forward::Open => "open",
        }
    }
}

impl Config {
    /// The host port, if there is one: its index in `ports`, its ifname and its address.
    pub fn host_port(&self) -> Option<(usize, &str, Ipv4Addr)> {
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| match &p.kind {
                PortKind::Tap(t) => t.host_address.map(|a| (i, t.ifname.as_str(), a)),
                _ => None,
            })
    }

    /// The router DHCP hands out (option 3): the host port's address with a `forward` mode
    /// (the host routes the subnet out); none on an isolated network.
    pub fn router(&self) -> Option<Ipv4Addr> {
        match (self.network.forward, self.host_port()) {
            (Forward::None, _) => None,
            (_, Some((_, _, addr))) => Some(addr),
            // Validation requires a host port with a forward mode.
            (_, None) => None,
        }
    }
}

/// `forward = "none" | "nat" | "route" | "open"` (default "none").
pub(super) fn parse_forward(
    cx: &Cx<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<Forward, ConfigError> {
    match raw.map(|r| (r.get_ref().as_str(), r.span())) {
        None | Some(("none", _)) => Ok(Forward::None),
        Some(("nat", _)) => Ok(Forward::Nat),
        Some(("route", _)) => Ok(Forward::Route),
        Some(("open", _)) => Ok(Forward::Open),
        Some((other, span)) => Err(cx.error(
            span,
            format!(
                "[network]: forward {} is not known (use \"nat\" to masquerade the subnet \
                 behind the host, \"route\" to route it, \"open\" to route it with no \
                 firewall rules, or \"none\")",
                q(other)
            ),
        )),
    }
}

/// Checks every `host_address` (index-aligned with `ports`) against the whole file and sets it
/// on its tap; then checks that `forward = "nat"` has a host port.
pub(super) fn validate_host_ports(
    cx: &Cx<'_>,
    network: &Network,
    hosts: &[Host],
    dhcp: &DhcpConfig,
    ports: &mut [PortConfig],
    raw: &[Option<Spanned<String>>],
    forward_span: Option<Range<usize>>,
) -> Result<(), ConfigError> {
    // (port name, line) of the host port seen first.
    let mut first: Option<(String, usize)> = None;
    for (port, raw) in ports.iter_mut().zip(raw) {
        let Some(raw) = raw else { continue };
        let e = format!("port {}", q(&port.name));
        let addr = host_address(cx, &e, network, hosts, dhcp, port, raw)?;
        if let Some((other, line)) = &first {
            return Err(cx.error(
                raw.span(),
                format!(
                    "{e}: port {} on line {line} is already the host port (a network has one \
                     host leg; remove one host_address)",
                    q(other)
                ),
            ));
        }
        first = Some((port.name.clone(), cx.line(raw.span().start)));
        if let PortKind::Tap(t) = &mut port.kind {
            t.host_address = Some(addr);
        }
    }
    if network.forward != Forward::None && first.is_none() {
        return Err(cx.error(
            forward_span.unwrap_or(0..0),
            format!(
                "[network]: forward = \"{}\" needs a host port, the VMs' router (add a tap port \
                 with host_address = \"<a free address>/<prefix>\"), or use forward = \"none\"",
                network.forward.name()
            ),
        ));
    }
    Ok(())
}

/// One port's `host_address`: a tap in the daemon's namespace, not a guest's port, an address
/// of its own on the subnet with the subnet's prefix.
fn host_address(
    cx: &Cx<'_>,
    e: &str,
    network: &Network,
    hosts: &[Host],
    dhcp: &DhcpConfig,
    port: &PortConfig,
    raw: &Spanned<String>,
) -> Result<Ipv4Addr, ConfigError> {
    let err = |message: String| Err(cx.error(raw.span(), format!("{e}: {message}")));
    let text = raw.get_ref();
    let subnet = network.subnet;
    let PortKind::Tap(tap) = &port.kind else {
        // `kinds::validate_kind` refuses the key on other kinds.
        return err(format!("host_address {} needs a tap port", q(text)));
    };
    if tap.netns.is_some() {
        return err(format!(
            "host_address {} makes the tap the host's own leg in the daemon's namespace, which \
             a tap moved into a netns cannot be (remove netns, or host_address)",
            q(text)
        ));
    }
    if port.host.is_some() {
        return err(format!(
            "host_address {} makes this the host's own port, not a guest's (remove host, or \
             host_address)",
            q(text)
        ));
    }
    let Ok(net) = text.parse::<Ipv4Net>() else {
        return err(format!(
            "host_address {} is not an IPv4 address with a prefix (write it like \"{}/{}\")",
            q(text),
            Ipv4Addr::from(u32::from(subnet.network()).saturating_add(2)),
            subnet.prefix_len()
        ));
    };
    let addr = net.addr();
    if net.prefix_len() != subnet.prefix_len() {
        return err(format!(
            "host_address {} has another prefix than the subnet {subnet} (write \"{addr}/{}\")",
            q(text),
            subnet.prefix_len()
        ));
    }
    if addr == network.gateway {
        return err(format!(
            "host_address {addr} is the gateway's address, which the appliance owns on the \
             segment (two owners would fight over ARP; give the host leg a free address of its \
             own inside {subnet})"
        ));
    }
    if let Some(problem) = host_address_problem(subnet, addr) {
        return err(format!(
            "host_address {addr} {problem} (pick a free address inside {subnet})"
        ));
    }
    if let Some(h) = hosts.iter().find(|h| h.ipv4 == Some(addr)) {
        return err(format!(
            "host_address {addr} is reserved for host {} (give the host leg an address of \
             its own)",
            q(&h.name)
        ));
    }
    if let Some((lo, hi)) = dhcp.pool.filter(|(lo, hi)| (*lo..=*hi).contains(&addr)) {
        return err(format!(
            "host_address {addr} is inside the [dhcp] pool {lo}-{hi}, so DHCP could hand it to \
             a guest (pick an address outside the pool)"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    const NET: &str = "[network]\nname = \"n\"\nsubnet = \"10.13.31.0/24\"\n\
                       gateway = \"10.13.31.1\"\ndomain = \"lab.test\"\n";

    fn host_port(addr: &str) -> String {
        format!(
            "\n[[port]]\nname = \"host\"\nkind = \"tap\"\nifname = \"sy-host\"\n\
             host_address = \"{addr}\"\n"
        )
    }

    /// `(line, message)` of the error, which must mention every needle.
    fn error_at(text: &str, line: usize, needles: &[&str]) {
        match parse(text, "t.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(ConfigError::Invalid { location, message }) => {
                assert_eq!(location, format!("t.toml:{line}"), "{message}");
                for n in needles {
                    assert!(message.contains(n), "{message:?} lacks {n:?}");
                }
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn host_port_and_nat_router() {
        let text = format!("{NET}forward = \"nat\"\n{}", host_port("10.13.31.2/24"));
        let cfg = parse(&text, "t.toml").unwrap();
        assert_eq!(cfg.network.forward, Forward::Nat);
        assert_eq!(
            cfg.host_port(),
            Some((0, "sy-host", Ipv4Addr::new(10, 13, 31, 2)))
        );
        assert_eq!(cfg.router(), Some(Ipv4Addr::new(10, 13, 31, 2)));
        assert_eq!(
            super::super::dhcp_params(&cfg).router,
            Some(Ipv4Addr::new(10, 13, 31, 2))
        );
        // route and open: the host leg is the router too.
        for (word, mode) in [("route", Forward::Route), ("open", Forward::Open)] {
            let text = format!("{NET}forward = \"{word}\"\n{}", host_port("10.13.31.2/24"));
            let cfg = parse(&text, "t.toml").unwrap();
            assert_eq!(cfg.network.forward, mode);
            assert_eq!(cfg.router(), Some(Ipv4Addr::new(10, 13, 31, 2)));
            let e = parse(&format!("{NET}forward = \"{word}\"\n"), "t.toml").unwrap_err();
            assert!(e
                .to_string()
                .contains(&format!("forward = \"{word}\" needs a host port")));
        }
        // Isolated (no forward): no router at all, host port or not, as libvirt's isolated
        // networks send none.
        let cfg = parse(&format!("{NET}{}", host_port("10.13.31.2/24")), "t").unwrap();
        assert_eq!(cfg.network.forward, Forward::None);
        assert_eq!(cfg.router(), None);
        assert_eq!(super::super::dhcp_params(&cfg).router, None);
        let cfg = parse(NET, "t").unwrap();
        assert_eq!(
            (cfg.host_port(), cfg.network.forward),
            (None, Forward::None)
        );
    }

    #[test]
    fn host_address_checks() {
        // Line 11 is host_address in every case below.
        let bad = |addr: &str, needles: &[&str]| {
            error_at(&format!("{NET}{}", host_port(addr)), 11, needles)
        };
        bad("10.13.31.1/24", &["port 'host'", "gateway", "ARP"]);
        bad(
            "10.13.31.2",
            &["not an IPv4 address with a prefix", "10.13.31.2/24"],
        );
        bad("10.13.31.2/16", &["prefix", "\"10.13.31.2/24\""]);
        bad("10.13.32.2/24", &["outside the subnet"]);
        bad("10.13.31.255/24", &["broadcast"]);
        bad("10.13.31.0/24", &["network address"]);
        let with_pool = format!(
            "{NET}\n[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.199\"]\n{}",
            host_port("10.13.31.150/24")
        );
        error_at(&with_pool, 14, &["pool 10.13.31.100-10.13.31.199"]);
        let with_host = format!(
            "{NET}\n[[host]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:11\"\nipv4 = \"10.13.31.2\"\n{}",
            host_port("10.13.31.2/24")
        );
        error_at(&with_host, 16, &["reserved for host 'vm1'"]);
        let in_netns = format!("{NET}{}netns = \"ns1\"\n", host_port("10.13.31.2/24"));
        error_at(&in_netns, 11, &["remove netns"]);
        let guest = format!(
            "{NET}\n[[host]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:11\"\n{}host = \"vm1\"\n",
            host_port("10.13.31.2/24")
        );
        error_at(&guest, 15, &["remove host"]);
        let two = format!(
            "{NET}{}{}",
            host_port("10.13.31.2/24"),
            host_port("10.13.31.3/24")
                .replace("\"host\"", "\"host2\"")
                .replace("sy-host", "sy-host2")
        );
        error_at(&two, 17, &["port 'host2'", "line 11", "one host leg"]);
        let packet = format!("{NET}{}", host_port("10.13.31.2/24")).replace("tap", "packet");
        error_at(
            &packet,
            11,
            &["'host_address' does not apply to a packet port"],
        );
    }

    #[test]
    fn forward_checks() {
        error_at(
            &format!("{NET}forward = \"nat\"\n"),
            6,
            &["forward = \"nat\" needs a host port", "host_address"],
        );
        error_at(
            &format!("{NET}forward = \"bridge\"\n"),
            6,
            &[
                "forward 'bridge' is not known",
                "\"nat\"",
                "\"route\"",
                "\"open\"",
            ],
        );
        let cfg = parse(&format!("{NET}forward = \"none\"\n"), "t").unwrap();
        assert_eq!(cfg.network.forward, Forward::None);
    }
}
