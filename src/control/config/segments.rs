//! `[[segment]]`: a further network the appliance serves on a VLAN of its own, with its own
//! subnet, gateway, domain and DHCP pool (the `[network]` itself is VLAN 1's). Checked into
//! [`Segment`]: the same rules as `[network]` and `[dhcp] pool`, and no two segments (nor a
//! segment and `[network]`) share a name, a VLAN, a domain or any address.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::Spanned;

use super::network::validate_network_as;
use super::{dhcp, q, ConfigError, Cx, Network, RawNetwork};
use crate::switch::{DEFAULT_VLAN, MAX_VID};

/// The most `[[segment]]`s a file may hold: each has a DHCP server, a DNS zone and a DNS
/// reader thread in the daemon.
const MAX_SEGMENTS: usize = 64;

/// One `[[segment]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[segment]] table")]
pub(super) struct RawSegment {
    name: Spanned<String>,
    vlan: Spanned<i64>,
    subnet: Spanned<String>,
    gateway: Spanned<String>,
    domain: Spanned<String>,
    pool: Option<Spanned<Vec<Spanned<String>>>>,
    lease_time: Option<Spanned<toml::Value>>,
}

/// A validated `[[segment]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The VLAN it is served on (2..=4094; VLAN 1 is `[network]`'s).
    pub vlan: u16,
    /// Its name, subnet, gateway and domain; the MTU is `[network]`'s, no forward mode.
    pub network: Network,
    /// Its DHCP pool (`None`: no dynamic leases).
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `None`: infinite.
    pub lease_time: Option<Duration>,
}

impl Segment {
    /// The lease journal's file name in `[dhcp] state_dir`.
    pub fn journal_file(&self) -> String {
        format!("leases-{}.journal", self.network.name)
    }

    /// The dnsmasq-format lease file's name in `[dhcp] state_dir`.
    pub fn lease_file(&self) -> String {
        format!("leases-{}", self.network.name)
    }
}

impl super::Config {
    /// The prefix length of the subnet `ip` is in: `[network]`'s or a segment's (`[network]`'s
    /// if none holds it).
    pub fn prefix_of(&self, ip: Ipv4Addr) -> u8 {
        self.segments
            .iter()
            .map(|s| s.network.subnet)
            .find(|n| n.contains(&ip))
            .unwrap_or(self.network.subnet)
            .prefix_len()
    }

    /// Every lease journal: `[network]`'s, then each segment's, in `[dhcp] state_dir`.
    pub fn journal_paths(&self) -> Vec<std::path::PathBuf> {
        let segments = self.segments.iter();
        std::iter::once(self.dhcp.journal_path())
            .chain(segments.map(|s| self.dhcp.state_dir.join(s.journal_file())))
            .collect()
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The segment's VLAN: 2 to 4094, not yet taken.
fn segment_vlan(
    cx: &Cx<'_>,
    e: &str,
    raw: &Spanned<i64>,
    taken: &[Segment],
) -> Result<u16, ConfigError> {
    let v = *raw.get_ref();
    let problem = match u16::try_from(v) {
        Ok(DEFAULT_VLAN) => {
            format!("is the VLAN of [network] (the default VLAN); use 2 to {MAX_VID}")
        }
        Ok(vid) if (2..=MAX_VID).contains(&vid) => match taken.iter().find(|s| s.vlan == vid) {
            Some(s) => format!(
                "is taken by segment {} (one segment per VLAN)",
                q(&s.network.name)
            ),
            None => return Ok(vid),
        },
        _ => format!("is not a VLAN id (use 2 to {MAX_VID})"),
    };
    Err(cx.error(raw.span(), format!("{e}: vlan {v} {problem}")))
}

/// Name, domain and subnet clashes with `[network]` and the segments before.
fn clashes(main: &Network, taken: &[Segment], n: &Network) -> Option<(&'static str, String)> {
    let others = std::iter::once(("[network]".to_string(), main)).chain(
        taken
            .iter()
            .map(|s| (format!("segment {}", q(&s.network.name)), &s.network)),
    );
    for (who, o) in others {
        if o.name == n.name {
            return Some((
                "name",
                format!("is also the name of {who} (names must differ)"),
            ));
        }
        if o.domain == n.domain {
            return Some((
                "domain",
                format!("is also the domain of {who} (give each its own)"),
            ));
        }
        if overlaps(o.subnet, n.subnet) {
            return Some((
                "subnet",
                format!("overlaps {} of {who} (subnets must not overlap)", o.subnet),
            ));
        }
    }
    None
}

fn validate_segment(
    cx: &Cx<'_>,
    main: &Network,
    taken: &[Segment],
    raw: RawSegment,
) -> Result<Segment, ConfigError> {
    let e = format!("[[segment]] {}", q(raw.name.get_ref()));
    let vlan = segment_vlan(cx, &e, &raw.vlan, taken)?;
    let spans = (raw.name.span(), raw.domain.span(), raw.subnet.span());
    let net = RawNetwork {
        name: raw.name,
        subnet: raw.subnet,
        gateway: raw.gateway,
        domain: raw.domain,
        mtu: None,
        forward: None,
        subnet6: None,
        gateway6: None,
    };
    let mut network = validate_network_as(cx, &e, net)?;
    network.mtu = main.mtu;
    if let Some((key, problem)) = clashes(main, taken, &network) {
        let span = match key {
            "name" => spans.0,
            "domain" => spans.1,
            _ => spans.2,
        };
        let value = match key {
            "name" => q(&network.name),
            "domain" => q(&network.domain),
            _ => network.subnet.to_string(),
        };
        return Err(cx.error(span, format!("{e}: {key} {value} {problem}")));
    }
    let pool = match &raw.pool {
        Some(p) => Some(dhcp::pool(cx, &network, &e, p)?),
        None => None,
    };
    let lease_time = dhcp::lease_time(cx, &e, &raw.lease_time)?;
    Ok(Segment {
        vlan,
        network,
        pool,
        lease_time,
    })
}

/// Every `[[segment]]`, in file order.
pub(super) fn validate_segments(
    cx: &Cx<'_>,
    main: &Network,
    raw: Vec<RawSegment>,
) -> Result<Vec<Segment>, ConfigError> {
    let mut segments = Vec::with_capacity(raw.len().min(MAX_SEGMENTS));
    for r in raw {
        if segments.len() == MAX_SEGMENTS {
            let e = format!("[[segment]] {}", q(r.name.get_ref()));
            return Err(cx.error(
                r.name.span(),
                format!("{e}: more than {MAX_SEGMENTS} segments (run another daemon for more)"),
            ));
        }
        let s = validate_segment(cx, main, &segments, r)?;
        segments.push(s);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    const TEN: &str = r#"
[[segment]]
name = "ten"
vlan = 10
subnet = "10.10.0.0/24"
gateway = "10.10.0.1"
domain = "ten.test"
pool = ["10.10.0.100", "10.10.0.199"]
lease_time = "10m"
"#;

    fn seg(name: &str, vlan: &str, subnet: &str, gateway: &str, domain: &str) -> String {
        format!(
            "\n[[segment]]\nname = \"{name}\"\nvlan = {vlan}\nsubnet = \"{subnet}\"\n\
             gateway = \"{gateway}\"\ndomain = \"{domain}\"\n"
        )
    }

    #[test]
    fn a_segment_parses() {
        let cfg = with(TEN).unwrap();
        let s = &cfg.segments[0];
        assert_eq!(s.vlan, 10);
        assert_eq!(s.network.name, "ten");
        assert_eq!(s.network.gateway.to_string(), "10.10.0.1");
        assert_eq!(s.network.domain, "ten.test");
        assert_eq!(s.network.mtu, cfg.network.mtu);
        assert_eq!(
            s.pool.map(|(a, b)| (a.to_string(), b.to_string())),
            Some(("10.10.0.100".into(), "10.10.0.199".into()))
        );
        assert_eq!(s.lease_time, Some(std::time::Duration::from_secs(600)));
        assert_eq!(s.journal_file(), "leases-ten.journal");
        assert!(with("").unwrap().segments.is_empty());
        // Segments are read at start: a reload that changes them is refused.
        let err = cfg.live_difference(&with("").unwrap()).unwrap_err();
        assert!(err.to_string().contains("[[segment]]"), "{err}");
        assert!(cfg.live_difference(&with(TEN).unwrap()).is_ok());
    }

    #[test]
    fn segment_errors_point_at_their_line() {
        // MINIMAL is 6 lines, TEN's [[segment]] starts on line 8 and `seg`'s on line 17.
        let base = TEN.to_string();
        let cases: Vec<(String, usize, Vec<&str>)> = vec![
            (
                seg("one", "1", "10.20.0.0/24", "10.20.0.1", "one.test"),
                19,
                vec!["vlan 1", "[network]"],
            ),
            (
                seg("dup", "10", "10.20.0.0/24", "10.20.0.1", "dup.test"),
                19,
                vec!["vlan 10", "segment 'ten'"],
            ),
            (
                seg("big", "4095", "10.20.0.0/24", "10.20.0.1", "big.test"),
                19,
                vec!["not a VLAN id"],
            ),
            (
                seg("ovl", "20", "10.10.0.128/25", "10.10.0.129", "o.test"),
                20,
                vec!["overlaps", "10.10.0.0/24"],
            ),
            (
                seg("main", "20", "10.0.0.0/16", "10.0.1.1", "o.test"),
                20,
                vec!["overlaps", "[network]"],
            ),
            (
                seg("out", "20", "10.20.0.0/24", "10.30.0.1", "o.test"),
                21,
                vec!["gateway 10.30.0.1", "inside 10.20.0.0/24"],
            ),
            (
                seg("ten", "20", "10.20.0.0/24", "10.20.0.1", "o.test"),
                18,
                vec!["name 'ten'"],
            ),
            (
                seg("dom", "20", "10.20.0.0/24", "10.20.0.1", "ten.test"),
                22,
                vec!["domain 'ten.test'"],
            ),
            (
                format!(
                    "{}pool = [\"10.20.0.1\", \"10.20.0.9\"]\n",
                    seg("pl", "20", "10.20.0.0/24", "10.20.0.1", "p.test")
                ),
                23,
                vec!["contains the gateway"],
            ),
        ];
        for (extra, line, needles) in cases {
            assert_err(with(&format!("{base}{extra}")), line, &needles);
        }
        assert_err(
            with("\n[[segment]]\nname = \"x\"\nvlan = 2\n"),
            8,
            &["subnet"],
        );
        // Each `seg` is 7 lines from a blank one; the 65th's name is on its third line.
        let many: String = (0..=super::MAX_SEGMENTS)
            .map(|i| {
                let (name, vlan) = (format!("s{i}"), (i + 2).to_string());
                let (net, gw) = (format!("10.1.{i}.0/24"), format!("10.1.{i}.1"));
                seg(&name, &vlan, &net, &gw, &format!("s{i}.test"))
            })
            .collect();
        let line = 7 + super::MAX_SEGMENTS * 7 + 2;
        assert_err(with(&many), line, &["more than 64 segments"]);
    }
}
