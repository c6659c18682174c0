//! A port's `vlan`, `trunk` and `native` keys (802.1Q membership) and its `ingress` and
//! `egress` bandwidth limits (libvirt's `<bandwidth>`: average and peak in KiB/s, burst in
//! KiB), checked into `PortVlan` and `PortLimits`.

use serde::Deserialize;
use toml::Spanned;

use super::{q, ConfigError, Cx, RawPort};
use crate::switch::{PortLimits, PortVlan, RateLimit, VlanSet, MAX_VID};

/// The most KiB/s (or KiB) a limit may name: 1 TiB/s, far beyond any port.
const MAX_KIB: i64 = 1 << 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table { average, peak, burst }")]
pub(super) struct RawLimit {
    pub(super) average: Spanned<i64>,
    pub(super) peak: Option<Spanned<i64>>,
    pub(super) burst: Option<Spanned<i64>>,
}

fn vid(cx: &Cx<'_>, e: &str, key: &str, raw: &Spanned<i64>) -> Result<u16, ConfigError> {
    let v = *raw.get_ref();
    match u16::try_from(v) {
        Ok(v) if (1..=MAX_VID).contains(&v) => Ok(v),
        _ => Err(cx.error(
            raw.span(),
            format!("{e}: {key} {v} is not a VLAN id (use 1 to {MAX_VID})"),
        )),
    }
}

/// One entry of `trunk`: a VID, or a range `"30-39"`.
fn trunk_entry(
    cx: &Cx<'_>,
    e: &str,
    raw: &Spanned<toml::Value>,
    set: &mut VlanSet,
) -> Result<(), ConfigError> {
    let bad = |what: String| {
        cx.error(
            raw.span(),
            format!(
                "{e}: trunk entry {what} (use VLAN ids 1 to {MAX_VID} or ranges like \"30-39\")"
            ),
        )
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|v| (1..=MAX_VID).contains(v))
    };
    match raw.get_ref() {
        toml::Value::Integer(v) => match u16::try_from(*v) {
            Ok(v) if (1..=MAX_VID).contains(&v) => set.insert(v),
            _ => return Err(bad(format!("{v} is not a VLAN id"))),
        },
        toml::Value::String(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (parse(a), parse(b)),
                None => (parse(s), parse(s)),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => (lo..=hi).for_each(|v| set.insert(v)),
                _ => return Err(bad(format!("{} is not a VLAN id or range", q(s)))),
            }
        }
        other => return Err(bad(format!("{other} is neither a number nor a string"))),
    }
    Ok(())
}

/// The port's VLAN membership: `vlan = N` (access), `trunk = [...]` with an optional
/// `native = N`, or neither (access port of VLAN 1).
pub(super) fn port_vlan(cx: &Cx<'_>, e: &str, p: &RawPort) -> Result<PortVlan, ConfigError> {
    match (&p.vlan, &p.trunk, &p.native) {
        (Some(v), None, None) => Ok(PortVlan::Access(vid(cx, e, "vlan", v)?)),
        (Some(v), Some(_), _) | (Some(v), None, Some(_)) => Err(cx.error(
            v.span(),
            format!(
                "{e}: vlan makes an access port, trunk and native a trunk: give one or the other"
            ),
        )),
        (None, Some(t), native) => {
            let mut allowed = VlanSet::default();
            for entry in t.get_ref() {
                trunk_entry(cx, e, entry, &mut allowed)?;
            }
            let native = native
                .as_ref()
                .map(|n| vid(cx, e, "native", n))
                .transpose()?;
            if allowed.is_empty() && native.is_none() {
                return Err(cx.error(
                    t.span(),
                    format!("{e}: trunk carries no VLAN (list VLAN ids, or give native)"),
                ));
            }
            Ok(PortVlan::Trunk { allowed, native })
        }
        (None, None, Some(n)) => Err(cx.error(
            n.span(),
            format!("{e}: native needs trunk (an access port's VLAN is vlan = N)"),
        )),
        (None, None, None) => Ok(PortVlan::default()),
    }
}

fn kib(cx: &Cx<'_>, e: &str, key: &str, raw: &Spanned<i64>) -> Result<u64, ConfigError> {
    let v = *raw.get_ref();
    match u64::try_from(v) {
        Ok(n) if (1..=MAX_KIB).contains(&v) => Ok(n),
        _ => Err(cx.error(
            raw.span(),
            format!("{e}: {key} {v} is out of range (1 to {MAX_KIB}; KiB/s for average and peak, KiB for burst)"),
        )),
    }
}

fn limit(
    cx: &Cx<'_>,
    e: &str,
    dir: &str,
    raw: &Option<Spanned<RawLimit>>,
) -> Result<Option<RateLimit>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let l = raw.get_ref();
    let e = format!("{e}: {dir}");
    let average = kib(cx, &e, "average", &l.average)?;
    let peak = l
        .peak
        .as_ref()
        .map(|p| kib(cx, &e, "peak", p))
        .transpose()?;
    let burst = l
        .burst
        .as_ref()
        .map(|b| kib(cx, &e, "burst", b))
        .transpose()?;
    if let (Some(p), Some(raw_peak)) = (peak, &l.peak) {
        if p < average {
            return Err(cx.error(
                raw_peak.span(),
                format!("{e}: peak {p} is below average {average} (peak is the faster rate)"),
            ));
        }
    }
    Ok(Some(RateLimit {
        average,
        peak,
        burst,
    }))
}

/// The port's `ingress` and `egress` limits.
pub(super) fn port_limits(cx: &Cx<'_>, e: &str, p: &RawPort) -> Result<PortLimits, ConfigError> {
    Ok(PortLimits {
        ingress: limit(cx, e, "ingress", &p.ingress)?,
        egress: limit(cx, e, "egress", &p.egress)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::control::config::*;
    use crate::switch::{PortVlan, RateLimit};

    fn port(keys: &str) -> Result<PortConfig, ConfigError> {
        super::super::test_util::with(&format!(
            "[[port]]\nname = \"p\"\nkind = \"packet\"\nifname = \"veth-x\"\n{keys}\n"
        ))
        .map(|c| c.ports[0].clone())
    }

    fn refused(keys: &str, needle: &str) {
        match port(keys) {
            Ok(p) => panic!("accepted {keys}: {p:?}"),
            Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle:?}"),
        }
    }

    #[test]
    fn access_trunk_and_native() {
        assert_eq!(port("").unwrap().vlan, PortVlan::Access(1));
        assert_eq!(port("vlan = 42").unwrap().vlan, PortVlan::Access(42));
        let PortVlan::Trunk { allowed, native } = port("trunk = [10, 20, \"30-32\"]\nnative = 5")
            .unwrap()
            .vlan
        else {
            panic!("not a trunk");
        };
        assert_eq!(allowed.iter().collect::<Vec<_>>(), [10, 20, 30, 31, 32]);
        assert_eq!(native, Some(5));
        refused("vlan = 0", "not a VLAN id");
        refused("vlan = 4095", "not a VLAN id");
        refused("vlan = 3\ntrunk = [4]", "one or the other");
        refused("native = 3", "native needs trunk");
        refused("trunk = [\"20-10\"]", "not a VLAN id or range");
        refused("trunk = [true]", "neither a number");
        refused("trunk = []", "carries no VLAN");
    }

    #[test]
    fn limits_in_libvirt_units() {
        let p = port(
            "ingress = { average = 2500, peak = 5000, burst = 1024 }\negress = { average = 100 }",
        )
        .unwrap();
        assert_eq!(
            p.limits.ingress,
            Some(RateLimit {
                average: 2500,
                peak: Some(5000),
                burst: Some(1024)
            })
        );
        assert_eq!(
            p.limits.egress.map(|l| (l.average, l.peak)),
            Some((100, None))
        );
        refused("ingress = { average = 0 }", "out of range");
        refused("egress = { average = 10, peak = 5 }", "below average");
        refused("egress = { rate = 10 }", "rate");
    }
}
