//! IPv6 on the segment: `subnet6` and `gateway6` in `[network]`, the `[ra]` section, and
//! `ipv6` on a `[[host]]`.
//!
//! IPv6 is off unless `subnet6` is set. The subnet is one /64 (SLAAC forms addresses from a
//! 64-bit interface identifier, RFC 4862), the gateway is the appliance's global address in it.
//! `[ra]` picks what the router advertisements tell hosts, with dnsmasq's names for the modes
//! (`ra-only`, `slaac`, `ra-stateless`, `ra-stateful`); it defaults to `slaac` (prefix with the
//! autonomous flag) whenever `subnet6` is set. The appliance routes no IPv6: on an isolated
//! network the advertised router lifetime is 0 (hosts get the prefix on-link, the DNS server
//! (RDNSS) and the search list (DNSSL), and no default route); with a `forward` mode the
//! advertisements name the host leg (`fe80::1`) as the default router (see docs/nat.md).
//!
//! `[dhcp6]` is the DHCPv6 server: on unless the mode is `ra-only` (`ra-stateless` serves
//! INFORMATION-REQUEST only), reservations from `[[host]] ipv6` matched by `duid` or the MAC,
//! an optional `pool` inside `subnet6`, and a lease time.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use serde::Deserialize;
use toml::Spanned;

use super::{normalize_domain, parse_ageing, q, ConfigError, Cx, RawHost};

/// RFC 4861 §6.2.1: MaxRtrAdvInterval is 4 to 1800 seconds.
const MIN_RA_INTERVAL: Duration = Duration::from_secs(4);
const MAX_RA_INTERVAL: Duration = Duration::from_secs(1800);
/// dnsmasq's default interval between unsolicited advertisements.
const DEFAULT_RA_INTERVAL: Duration = Duration::from_secs(600);
/// Most DNSSL entries.
const MAX_DNSSL: usize = 8;

/// The validated IPv6 side of a network (present only with `subnet6`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ipv6Config {
    /// A /64, host bits clear.
    pub subnet: Ipv6Net,
    /// The appliance's global address: inside `subnet`, not its subnet-router anycast (`::`).
    pub gateway: Ipv6Addr,
    pub ra: RaConfig,
    pub dhcp6: Dhcp6Config,
}

/// `[dhcp6]`: the DHCPv6 server.
#[derive(Debug, Clone, PartialEq)]
pub struct Dhcp6Config {
    /// Default: true unless `[ra] mode = "ra-only"`.
    pub enabled: bool,
    /// Inclusive, inside `subnet6`, not containing `gateway6`; `None`: reservations only.
    pub pool: Option<(Ipv6Addr, Ipv6Addr)>,
    /// Valid and preferred lifetime (default 1 h; 2 min to a year).
    pub lease_time: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [dhcp6] table")]
pub(super) struct RawDhcp6 {
    enabled: Option<bool>,
    pool: Option<Spanned<Vec<Spanned<String>>>>,
    lease_time: Option<Spanned<toml::Value>>,
}

const DEFAULT_LEASE6: Duration = Duration::from_secs(3600);
const MIN_LEASE6: Duration = Duration::from_secs(120);

/// `[ra]`: the router advertisements the appliance sends.
#[derive(Debug, Clone, PartialEq)]
pub struct RaConfig {
    /// Default true. False: no advertisements (NDP and ping6 at the gateway still work).
    pub enabled: bool,
    pub mode: RaMode,
    /// Between two unsolicited advertisements (default 600 s, 4 s to 30 min).
    pub interval: Duration,
    /// RDNSS (RFC 8106): the gateway's address is advertised as the DNS server (default true;
    /// the appliance answers DNS on IPv6 only if `[dns]` is on, which the caller checks).
    pub rdnss: bool,
    /// DNSSL (RFC 8106): the search list (default: the network's domain; `[]` sends none).
    pub dnssl: Vec<String>,
    /// The MTU option: `[network] mtu` (default true).
    pub mtu: bool,
}

/// What the advertisement's flags say, in dnsmasq's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaMode {
    /// Prefix for SLAAC, no DHCPv6 (A).
    RaOnly,
    /// SLAAC and DHCPv6 addresses (A, M, O): the default.
    #[default]
    Slaac,
    /// SLAAC, DHCPv6 for other configuration only (A, O).
    Stateless,
    /// DHCPv6 addresses only, no SLAAC (M, O).
    Stateful,
}

impl RaMode {
    /// The prefix information's autonomous flag: hosts form SLAAC addresses.
    pub fn autonomous(self) -> bool {
        self != RaMode::Stateful
    }

    /// The managed flag: addresses from DHCPv6.
    pub fn managed(self) -> bool {
        matches!(self, RaMode::Slaac | RaMode::Stateful)
    }

    /// The other-configuration flag: DHCPv6 for DNS and the like.
    pub fn other(self) -> bool {
        self != RaMode::RaOnly
    }
}

impl Ipv6Config {
    /// The prefix in which the guard binds each port's SLAAC address (EUI-64 of its MACs), when
    /// the advertisements tell hosts to form one.
    pub fn slaac_prefix(&self) -> Option<Ipv6Net> {
        (self.ra.enabled && self.ra.mode.autonomous()).then_some(self.subnet)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [ra] table")]
pub(super) struct RawRa {
    enabled: Option<bool>,
    mode: Option<Spanned<String>>,
    /// Like `[switch] ageing`.
    interval: Option<Spanned<toml::Value>>,
    rdnss: Option<bool>,
    dnssl: Option<Spanned<Vec<Spanned<String>>>>,
    mtu: Option<bool>,
}

/// Validates `subnet6`/`gateway6` of `[network]` (`domain`: the network's, for DNSSL) and
/// `[ra]`. `table`: the `[network]` table's span, for a missing key.
pub(super) fn validate_ipv6(
    cx: &Cx<'_>,
    subnet6: Option<Spanned<String>>,
    gateway6: Option<Spanned<String>>,
    domain: &str,
    raw_ra: Option<Spanned<RawRa>>,
    raw_dhcp6: Option<Spanned<RawDhcp6>>,
) -> Result<Option<Ipv6Config>, ConfigError> {
    let e = "[network]";
    let (subnet6, gateway6) = match (subnet6, gateway6) {
        (None, None) => return no_subnet6(cx, raw_ra, raw_dhcp6),
        (Some(s), None) => {
            return Err(cx.error(
                s.span(),
                format!(
                    "{e}: subnet6 needs gateway6, the appliance's IPv6 address (add gateway6 = \
                     \"...::1\")"
                ),
            ))
        }
        (None, Some(g)) => {
            return Err(cx.error(
                g.span(),
                format!("{e}: gateway6 needs subnet6 (add subnet6 = \"fd00::/64\")"),
            ))
        }
        (Some(s), Some(g)) => (s, g),
    };
    let subnet = subnet6_net(cx, e, &subnet6)?;
    let net = subnet.network();
    let gateway: Ipv6Addr = gateway6.get_ref().parse().map_err(|_| {
        cx.error(
            gateway6.span(),
            format!(
                "{e}: gateway6 {} is not an IPv6 address (write it like \"{}1\")",
                q(gateway6.get_ref()),
                net
            ),
        )
    })?;
    if let Some(problem) = address_problem(subnet, gateway) {
        return Err(cx.error(
            gateway6.span(),
            format!(
                "{e}: gateway6 {gateway} {problem} (pick an address inside {subnet}, like {}1)",
                net
            ),
        ));
    }
    let ra = validate_ra(cx, domain, raw_ra)?;
    let dhcp6 = validate_dhcp6(cx, subnet, gateway, &ra, raw_dhcp6)?;
    Ok(Some(Ipv6Config {
        subnet,
        gateway,
        ra,
        dhcp6,
    }))
}

/// `subnet6`: a unicast /64 in CIDR form without host bits.
fn subnet6_net(cx: &Cx<'_>, e: &str, subnet6: &Spanned<String>) -> Result<Ipv6Net, ConfigError> {
    let text = subnet6.get_ref();
    let subnet: Ipv6Net = text.parse().map_err(|_| {
        cx.error(
            subnet6.span(),
            format!(
                "{e}: subnet6 {} is not an IPv6 network in CIDR form (write it like \
                 \"fd00:13:31::/64\")",
                q(text)
            ),
        )
    })?;
    if subnet.prefix_len() != 64 {
        return Err(cx.error(
            subnet6.span(),
            format!(
                "{e}: subnet6 {} is a /{}; SLAAC and this appliance need a /64",
                q(text),
                subnet.prefix_len()
            ),
        ));
    }
    if subnet.trunc() != subnet {
        return Err(cx.error(
            subnet6.span(),
            format!(
                "{e}: subnet6 {} has host bits set (did you mean \"{}\"?)",
                q(text),
                subnet.trunc()
            ),
        ));
    }
    let net = subnet.network();
    if net.is_multicast() || net.is_unicast_link_local() || net.is_loopback() {
        return Err(cx.error(
            subnet6.span(),
            format!(
                "{e}: subnet6 {} is not a unicast prefix a segment can use (use a ULA like \
                 fd00:13:31::/64 or a global prefix)",
                q(text)
            ),
        ));
    }
    Ok(subnet)
}

/// `[ra]` or `[dhcp6]` without an IPv6 subnet is an error; neither is no IPv6 at all.
fn no_subnet6(
    cx: &Cx<'_>,
    raw_ra: Option<Spanned<RawRa>>,
    raw_dhcp6: Option<Spanned<RawDhcp6>>,
) -> Result<Option<Ipv6Config>, ConfigError> {
    if let Some(d) = raw_dhcp6 {
        return Err(cx.error(
            d.span(),
            "[dhcp6]: DHCPv6 needs an IPv6 subnet (add subnet6 and gateway6 to [network], or \
             remove [dhcp6])"
                .into(),
        ));
    }
    match raw_ra {
        None => Ok(None),
        Some(ra) => Err(cx.error(
            ra.span(),
            "[ra]: advertisements need an IPv6 subnet (add subnet6 = \"fd00::/64\" and \
             gateway6 to [network], or remove [ra])"
                .into(),
        )),
    }
}

fn validate_dhcp6(
    cx: &Cx<'_>,
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    ra: &RaConfig,
    raw: Option<Spanned<RawDhcp6>>,
) -> Result<Dhcp6Config, ConfigError> {
    let e = "[dhcp6]";
    let default_on = ra.mode != RaMode::RaOnly;
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Ok(Dhcp6Config {
            enabled: default_on,
            pool: None,
            lease_time: DEFAULT_LEASE6,
        });
    };
    let pool = match &raw.pool {
        None => None,
        Some(p) => {
            let [start, end] = p.get_ref().as_slice() else {
                return Err(cx.error(
                    p.span(),
                    format!("{e}: pool must be [\"START\", \"END\"], two addresses of subnet6"),
                ));
            };
            let mut ends = [Ipv6Addr::UNSPECIFIED; 2];
            for (i, s) in [start, end].into_iter().enumerate() {
                let ip: Ipv6Addr = s.get_ref().parse().map_err(|_| {
                    cx.error(
                        s.span(),
                        format!(
                            "{e}: pool address {} is not an IPv6 address",
                            q(s.get_ref())
                        ),
                    )
                })?;
                if let Some(problem) = address_problem(subnet, ip) {
                    return Err(cx.error(s.span(), format!("{e}: pool address {ip} {problem}")));
                }
                ends[i] = ip;
            }
            if ends[0] > ends[1] {
                return Err(cx.error(
                    p.span(),
                    format!("{e}: pool starts after it ends (write the lower address first)"),
                ));
            }
            if (ends[0]..=ends[1]).contains(&gateway) {
                return Err(cx.error(
                    p.span(),
                    format!("{e}: pool contains gateway6 {gateway} (start the pool after it)"),
                ));
            }
            Some((ends[0], ends[1]))
        }
    };
    let lease_time = match &raw.lease_time {
        None => DEFAULT_LEASE6,
        Some(v) => parse_ageing(v.get_ref())
            .ok()
            .filter(|d| *d >= MIN_LEASE6)
            .ok_or_else(|| {
                cx.error(
                    v.span(),
                    format!(
                        "{e}: lease_time must be a duration from 2 minutes to a year, like                          \"1h\" or \"600s\""
                    ),
                )
            })?,
    };
    Ok(Dhcp6Config {
        enabled: raw.enabled.unwrap_or(default_on),
        pool,
        lease_time,
    })
}

/// Validates `duid` of host entry `e`: colon-separated hex, 3 to 130 bytes (a DUID is a 2-byte
/// type and up to 128 bytes, RFC 8415 §11.1).
pub(super) fn host_duid(
    cx: &Cx<'_>,
    net6: Option<&Ipv6Config>,
    e: &str,
    raw: &RawHost,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(s) = &raw.duid else { return Ok(None) };
    if net6.is_none() || raw.ipv6.is_none() {
        return Err(cx.error(
            s.span(),
            format!("{e}: duid names the client of an ipv6 reservation (add ipv6, or remove duid)"),
        ));
    }
    let bytes: Option<Vec<u8>> = s
        .get_ref()
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    match bytes {
        Some(b) if (3..=130).contains(&b.len()) => Ok(Some(b)),
        _ => Err(cx.error(
            s.span(),
            format!(
                "{e}: duid {} is not 3 to 130 colon-separated hex bytes (write it like                  \"00:03:00:01:52:54:00:00:00:11\", as the client's lease file shows)",
                q(s.get_ref())
            ),
        )),
    }
}

/// Why `addr` cannot be a machine's address in `subnet`, if it cannot.
fn address_problem(subnet: Ipv6Net, addr: Ipv6Addr) -> Option<&'static str> {
    if !subnet.contains(&addr) {
        Some("is outside subnet6")
    } else if addr == subnet.network() {
        Some("is the subnet-router anycast address (all-zero interface identifier)")
    } else {
        None
    }
}

fn validate_ra(
    cx: &Cx<'_>,
    domain: &str,
    raw: Option<Spanned<RawRa>>,
) -> Result<RaConfig, ConfigError> {
    let e = "[ra]";
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Ok(RaConfig {
            enabled: true,
            mode: RaMode::default(),
            interval: DEFAULT_RA_INTERVAL,
            rdnss: true,
            dnssl: vec![domain.to_string()],
            mtu: true,
        });
    };
    let mode = match &raw.mode {
        None => RaMode::default(),
        Some(m) => match m.get_ref().as_str() {
            "ra-only" => RaMode::RaOnly,
            "slaac" => RaMode::Slaac,
            "ra-stateless" => RaMode::Stateless,
            "ra-stateful" => RaMode::Stateful,
            other => {
                return Err(cx.error(
                    m.span(),
                    format!(
                        "{e}: mode {} is not known (use \"ra-only\", \"slaac\", \
                         \"ra-stateless\" or \"ra-stateful\")",
                        q(other)
                    ),
                ))
            }
        },
    };
    let interval = match &raw.interval {
        None => DEFAULT_RA_INTERVAL,
        Some(v) => parse_ageing(v.get_ref())
            .ok()
            .filter(|d| (MIN_RA_INTERVAL..=MAX_RA_INTERVAL).contains(d))
            .ok_or_else(|| {
                cx.error(
                    v.span(),
                    format!(
                        "{e}: interval must be a duration from 4s to 30m (RFC 4861's \
                         MaxRtrAdvInterval), like \"600s\" or \"10m\""
                    ),
                )
            })?,
    };
    let dnssl = match &raw.dnssl {
        None => vec![domain.to_string()],
        Some(list) => {
            if list.get_ref().len() > MAX_DNSSL {
                return Err(cx.error(
                    list.span(),
                    format!("{e}: dnssl has more than {MAX_DNSSL} domains"),
                ));
            }
            let mut out = Vec::new();
            for d in list.get_ref() {
                let name = normalize_domain(d.get_ref()).map_err(|problem| {
                    cx.error(d.span(), format!("{e}: dnssl {} {problem}", q(d.get_ref())))
                })?;
                out.push(name);
            }
            out
        }
    };
    Ok(RaConfig {
        enabled: raw.enabled.unwrap_or(true),
        mode,
        interval,
        rdnss: raw.rdnss.unwrap_or(true),
        dnssl,
        mtu: raw.mtu.unwrap_or(true),
    })
}

/// Validates `ipv6` of host entry `e`: an address of `subnet6`, not the gateway's.
pub(super) fn host_ipv6(
    cx: &Cx<'_>,
    net6: Option<&Ipv6Config>,
    e: &str,
    raw: &RawHost,
) -> Result<Option<Ipv6Addr>, ConfigError> {
    let Some(s) = &raw.ipv6 else { return Ok(None) };
    let Some(net6) = net6 else {
        return Err(cx.error(
            s.span(),
            format!(
                "{e}: ipv6 needs an IPv6 subnet (add subnet6 and gateway6 to [network], or \
                 remove the key)"
            ),
        ));
    };
    let addr: Ipv6Addr = s.get_ref().parse().map_err(|_| {
        cx.error(
            s.span(),
            format!(
                "{e}: ipv6 {} is not an IPv6 address (write it like \"{}11\")",
                q(s.get_ref()),
                net6.subnet.network()
            ),
        )
    })?;
    let problem = if addr == net6.gateway {
        Some("is the gateway6 address")
    } else {
        address_problem(net6.subnet, addr)
    };
    if let Some(problem) = problem {
        return Err(cx.error(
            s.span(),
            format!(
                "{e}: ipv6 {addr} {problem} (pick a free address inside {}, or remove the key)",
                net6.subnet
            ),
        ));
    }
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const NET6: &str = "subnet6 = \"fd00:13:31::/64\"\ngateway6 = \"fd00:13:31::1\"\n";

    fn with6(extra: &str) -> Result<super::super::Config, ConfigError> {
        let base = MINIMAL.replace(
            "domain = \"t.test\"\n",
            &format!("domain = \"t.test\"\n{NET6}"),
        );
        super::super::parse(&format!("{base}{extra}"), "t.toml")
    }

    #[test]
    fn ipv6_defaults_and_modes() {
        assert_eq!(with("").unwrap().ipv6, None);
        let cfg = with6("").unwrap();
        let v6 = cfg.ipv6.unwrap();
        assert_eq!(v6.subnet, "fd00:13:31::/64".parse::<Ipv6Net>().unwrap());
        assert_eq!(v6.gateway, "fd00:13:31::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.ra.mode, RaMode::Slaac);
        assert_eq!(v6.ra.dnssl, ["t.test"]);
        assert_eq!(v6.ra.interval, DEFAULT_RA_INTERVAL);
        assert_eq!(v6.slaac_prefix(), Some(v6.subnet));
        let cfg = with6("[ra]\nmode = \"ra-stateful\"\ninterval = \"10s\"\ndnssl = []\n").unwrap();
        let ra = &cfg.ipv6.as_ref().unwrap().ra;
        assert_eq!(
            (ra.mode, ra.interval),
            (RaMode::Stateful, Duration::from_secs(10))
        );
        assert!(ra.dnssl.is_empty());
        assert_eq!(cfg.ipv6.unwrap().slaac_prefix(), None);
        let flags = |m: RaMode| (m.managed(), m.other(), m.autonomous());
        assert_eq!(flags(RaMode::RaOnly), (false, false, true));
        assert_eq!(flags(RaMode::Slaac), (true, true, true));
        assert_eq!(flags(RaMode::Stateless), (false, true, true));
        assert_eq!(flags(RaMode::Stateful), (true, true, false));
        let d = with6("").unwrap().ipv6.unwrap().dhcp6;
        assert_eq!(
            (d.enabled, d.pool, d.lease_time),
            (true, None, DEFAULT_LEASE6)
        );
        let cfg = with6("[ra]\nmode = \"ra-only\"\n").unwrap();
        assert!(!cfg.ipv6.unwrap().dhcp6.enabled);
        let cfg = with6(
            "[dhcp6]\npool = [\"fd00:13:31::100\", \"fd00:13:31::1ff\"]\nlease_time = \"10m\"\n",
        )
        .unwrap();
        let d = cfg.ipv6.unwrap().dhcp6;
        assert_eq!(
            d.pool,
            Some((
                "fd00:13:31::100".parse().unwrap(),
                "fd00:13:31::1ff".parse().unwrap()
            ))
        );
        assert_eq!(d.lease_time, Duration::from_secs(600));
    }

    #[test]
    fn dhcp6_checks() {
        assert_err(
            with("[dhcp6]\nenabled = true\n"),
            7,
            &["[dhcp6]", "subnet6"],
        );
        assert_err(
            with6("[dhcp6]\npool = [\"fd00:13:31::1\", \"fd00:13:31::9\"]\n"),
            10,
            &["gateway6"],
        );
        assert_err(
            with6("[dhcp6]\npool = [\"fd00:13:31::9\", \"fd00:13:31::2\"]\n"),
            10,
            &["starts after"],
        );
        assert_err(
            with6("[dhcp6]\npool = [\"fd00:13:32::9\", \"fd00:13:31::2\"]\n"),
            10,
            &["outside subnet6"],
        );
        assert_err(
            with6("[dhcp6]\nlease_time = \"10s\"\n"),
            10,
            &["lease_time"],
        );
        let host = "[[host]]\nname = \"h\"\nmac = \"52:54:00:00:00:11\"\n";
        assert_err(
            with6(&format!("{host}duid = \"00:03\"\n")),
            12,
            &["add ipv6"],
        );
        assert_err(
            with6(&format!(
                "{host}ipv6 = \"fd00:13:31::11\"\nduid = \"00:zz:01\"\n"
            )),
            13,
            &["duid"],
        );
        let cfg = with6(&format!(
            "{host}ipv6 = \"fd00:13:31::11\"\nduid = \"00:04:aa:bb\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.hosts[0].duid, Some(vec![0, 4, 0xaa, 0xbb]));
    }

    #[test]
    fn ipv6_checks() {
        let sub = |from: &str, to: &str, extra: &str| {
            let base = MINIMAL.replace(
                "domain = \"t.test\"\n",
                &format!("domain = \"t.test\"\n{}", NET6.replace(from, to)),
            );
            super::super::parse(&format!("{base}{extra}"), "t.toml")
        };
        assert_err(sub("::/64", "::/48", ""), 7, &["subnet6", "/64"]);
        assert_err(sub("::/64", "::5/64", ""), 7, &["host bits"]);
        assert_err(
            sub("fd00:13:31::/64", "fe80::/64", ""),
            7,
            &["unicast prefix"],
        );
        assert_err(sub("::1\"", "::zz\"", ""), 8, &["gateway6", "not an IPv6"]);
        assert_err(sub("31::1\"", "32::1\"", ""), 8, &["outside subnet6"]);
        assert_err(sub("31::1\"", "31::\"", ""), 8, &["anycast"]);
        assert_err(with("[ra]\nenabled = true\n"), 7, &["[ra]", "subnet6"]);
        assert_err(with6("[ra]\nmode = \"dhcp\"\n"), 10, &["mode 'dhcp'"]);
        assert_err(with6("[ra]\ninterval = \"1s\"\n"), 10, &["interval", "4s"]);
        assert_err(with6("[ra]\ndnssl = [\"Bad_\"]\n"), 10, &["dnssl"]);
        let host = "[[host]]\nname = \"h\"\nmac = \"52:54:00:00:00:11\"\nipv6 = ";
        assert_err(with(&format!("{host}\"fd00::11\"\n")), 10, &["ipv6 needs"]);
        assert_err(
            with6(&format!("{host}\"fd00:13:31::1\"\n")),
            12,
            &["gateway6 address"],
        );
        assert_err(
            with6(&format!("{host}\"fd00:13:32::11\"\n")),
            12,
            &["outside subnet6"],
        );
        let cfg = with6(&format!("{host}\"fd00:13:31::11\"\n")).unwrap();
        assert_eq!(cfg.hosts[0].ipv6, Some("fd00:13:31::11".parse().unwrap()));
        let two = format!(
            "{host}\"fd00:13:31::11\"\n[[host]]\nname = \"g\"\nmac = \"52:54:00:00:00:12\"\n\
             ipv6 = \"fd00:13:31::11\"\n"
        );
        assert_err(with6(&two), 16, &["ipv6", "own address"]);
    }
}
