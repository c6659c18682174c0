//! `[switch]` and `[[switch.fdb]]`: workers, FDB caps and ageing, storm limit, slots, polling,
//! loop detection and static FDB entries.

use std::time::Duration;

use super::raw::RawFdb;
use super::{
    q, unicast_mac, ConfigError, Cx, Host, PollMode, PortConfig, RawSwitch, StaticFdb,
    SwitchConfig, Unique, DEFAULT_AGEING, DEFAULT_MAX_MACS, DEFAULT_MAX_MACS_PER_PORT,
    DEFAULT_MAX_PORTS, DEFAULT_POLL, DEFAULT_STORM_LIMIT, MAX_AGEING_SECS, MAX_MAX_MACS,
    MAX_MAX_PORTS, MAX_POLL_US, MAX_STORM_LIMIT, MAX_WORKERS,
};
use toml::Spanned;

pub(super) fn validate_switch(
    cx: &Cx<'_>,
    raw: Option<RawSwitch>,
    hosts: &[Host],
    ports: &[PortConfig],
) -> Result<SwitchConfig, ConfigError> {
    let e = "[switch]";
    let max_ports = match &raw {
        Some(raw) => count(cx, raw.max_ports.as_ref(), e, "max_ports", 1, MAX_MAX_PORTS)?,
        None => None,
    }
    .unwrap_or(DEFAULT_MAX_PORTS);
    if ports.len() > max_ports {
        let span = raw
            .as_ref()
            .and_then(|r| r.max_ports.as_ref())
            .map_or(0..0, |v| v.span());
        return Err(cx.error(
            span,
            format!(
                "{e}: {} ports are more than max_ports {max_ports} (raise max_ports)",
                ports.len()
            ),
        ));
    }
    let Some(raw) = raw else {
        return Ok(SwitchConfig {
            ageing: DEFAULT_AGEING,
            max_macs: DEFAULT_MAX_MACS,
            max_macs_per_port: DEFAULT_MAX_MACS_PER_PORT,
            workers: 0,
            max_ports,
            storm_limit: Some(DEFAULT_STORM_LIMIT),
            loop_detection: true,
            poll: DEFAULT_POLL,
            multi_queue: false,
            static_fdb: Vec::new(),
        });
    };
    let ageing = ageing(cx, e, raw.ageing.as_ref())?;
    let max_macs = count(cx, raw.max_macs.as_ref(), e, "max_macs", 1, MAX_MAX_MACS)?
        .unwrap_or(DEFAULT_MAX_MACS);
    let max_macs_per_port = count(
        cx,
        raw.max_macs_per_port.as_ref(),
        e,
        "max_macs_per_port",
        1,
        MAX_MAX_MACS,
    )?
    .unwrap_or(DEFAULT_MAX_MACS_PER_PORT.min(max_macs));
    if max_macs_per_port > max_macs {
        let span = raw.max_macs_per_port.as_ref().map_or(0..0, |v| v.span());
        return Err(cx.error(
            span,
            format!(
                "{e}: max_macs_per_port {max_macs_per_port} is larger than max_macs {max_macs} \
                 (lower it, or raise max_macs)"
            ),
        ));
    }
    let workers = count(cx, raw.workers.as_ref(), e, "workers", 0, MAX_WORKERS)?.unwrap_or(0);
    let poll = poll(cx, e, raw.poll_us.as_ref())?;
    let storm_limit = storm_limit(cx, e, raw.storm_limit.as_ref())?;
    let static_fdb = validate_static_fdb(cx, &raw.fdb, hosts, ports)?;

    Ok(SwitchConfig {
        ageing,
        max_macs,
        max_macs_per_port,
        workers,
        max_ports,
        storm_limit,
        loop_detection: raw.loop_detection.unwrap_or(true),
        poll,
        multi_queue: raw.multi_queue.unwrap_or(false),
        static_fdb,
    })
}

/// `ageing`: a duration, or `"0"` (never learn); the default without one.
fn ageing(
    cx: &Cx<'_>,
    e: &str,
    raw: Option<&Spanned<toml::Value>>,
) -> Result<Duration, ConfigError> {
    Ok(match raw {
        None => DEFAULT_AGEING,
        Some(v) => parse_ageing(v.get_ref()).map_err(|problem| {
            cx.error(
                v.span(),
                format!(
                    "{e}: ageing {problem} (write a duration like \"300s\", \"5m\" or \"1h\", \
                     or \"0\" to never learn)"
                ),
            )
        })?,
    })
}

/// `storm_limit`: broadcast and multicast frames a second per port, or `"off"` (`None`).
fn storm_limit(
    cx: &Cx<'_>,
    e: &str,
    raw: Option<&Spanned<toml::Value>>,
) -> Result<Option<u32>, ConfigError> {
    Ok(match raw {
        None => Some(DEFAULT_STORM_LIMIT),
        Some(v) => match v.get_ref() {
            toml::Value::String(s) if s == "off" => None,
            toml::Value::Integer(n) if (10..=MAX_STORM_LIMIT).contains(n) => Some(*n as u32),
            other => {
                return Err(cx.error(
                    v.span(),
                    format!(
                        "{e}: storm_limit {other} is not a rate (write broadcast and multicast \
                         frames a second per port, 10 to {MAX_STORM_LIMIT}, or \"off\")"
                    ),
                ))
            }
        },
    })
}

/// `poll_us`: microseconds (0 = off), or `"adaptive"`; the default without one.
fn poll(cx: &Cx<'_>, e: &str, raw: Option<&Spanned<toml::Value>>) -> Result<PollMode, ConfigError> {
    let Some(v) = raw else {
        return Ok(DEFAULT_POLL);
    };
    match v.get_ref() {
        toml::Value::String(s) if s == "adaptive" => Ok(PollMode::Adaptive),
        toml::Value::Integer(0) => Ok(PollMode::Off),
        toml::Value::Integer(n) if (1..=MAX_POLL_US).contains(n) => {
            Ok(PollMode::Fixed(Duration::from_micros(*n as u64)))
        }
        other => Err(cx.error(
            v.span(),
            format!(
                "{e}: poll_us {other} is not a polling time (write microseconds, 0 to \
                 {MAX_POLL_US}, with 0 for none, or \"adaptive\")"
            ),
        )),
    }
}

/// `[[switch.fdb]]`: each MAC once, on a defined port, and never a host's MAC away from the
/// port the host is plugged into.
fn validate_static_fdb(
    cx: &Cx<'_>,
    raw: &[RawFdb],
    hosts: &[Host],
    ports: &[PortConfig],
) -> Result<Vec<StaticFdb>, ConfigError> {
    let mut macs = Unique::new(cx);
    let mut static_fdb = Vec::with_capacity(raw.len());
    for (i, f) in raw.iter().enumerate() {
        let fe = format!("[[switch.fdb]] #{}", i + 1);
        let mac = unicast_mac(cx, &f.mac, &fe)?;
        macs.check(
            mac.to_string(),
            &f.mac.span(),
            &fe,
            "mac",
            "a MAC has one static port",
        )?;
        let wanted = f.port.get_ref();
        let Some(port) = ports.iter().position(|p| &p.name == wanted) else {
            return Err(cx.error(
                f.port.span(),
                format!(
                    "{fe}: port {} is not defined in [[port]] (define it or fix the name)",
                    q(wanted)
                ),
            ));
        };
        // A host's MAC lives behind the port the host is plugged into; pinning it elsewhere
        // would blackhole the host and fight the anti-spoofing policy.
        let owner = hosts.iter().position(|h| h.mac == Some(mac)).and_then(|h| {
            let p = ports.iter().position(|p| p.host == Some(h))?;
            Some((h, p))
        });
        if let Some((h, p)) = owner.filter(|&(_, p)| p != port) {
            return Err(cx.error(
                f.port.span(),
                format!(
                    "{fe}: mac {mac} belongs to host {} on port {}, not port {} (point the \
                     entry at {} or remove it)",
                    q(&hosts[h].name),
                    q(&ports[p].name),
                    q(wanted),
                    q(&ports[p].name)
                ),
            ));
        }
        static_fdb.push(StaticFdb { mac, port });
    }
    Ok(static_fdb)
}

/// An integer key in `min..=max`.
pub(super) fn count(
    cx: &Cx<'_>,
    raw: Option<&Spanned<i64>>,
    entry: &str,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<usize>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let v = *raw.get_ref();
    match usize::try_from(v) {
        Ok(n) if (min..=max).contains(&v) => Ok(Some(n)),
        _ => Err(cx.error(
            raw.span(),
            format!("{entry}: {key} {v} is out of range (use {min} to {max})"),
        )),
    }
}

/// `"300s"`, `"5m"`, `"1h"`, `"0"`, or an integer number of seconds.
pub(super) fn parse_ageing(value: &toml::Value) -> Result<Duration, String> {
    let secs = match value {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative"))?,
        toml::Value::String(s) => {
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let multiplier = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "" if digits.chars().all(|c| c == '0') && !digits.is_empty() => 1,
                "" => return Err(format!("{} has no unit", q(s))),
                _ => return Err(format!("{} is not a duration", q(s))),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(multiplier))
                .ok_or_else(|| format!("{} is not a duration", q(s)))?
        }
        other => return Err(format!("is a {}, not a duration", other.type_str())),
    };
    if secs > MAX_AGEING_SECS {
        return Err(format!("of {secs}s is longer than a year"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::control::config::*;

    #[test]
    fn storm_limit_forms() {
        let limit = |v: &str| with(&format!("[switch]\nstorm_limit = {v}\n"));
        assert_eq!(limit("500").unwrap().switch.storm_limit, Some(500));
        assert_eq!(limit("\"off\"").unwrap().switch.storm_limit, None);
        assert_err(limit("5"), 8, &["storm_limit 5", "10 to", "\"off\""]);
        assert_err(
            limit("\"fast\""),
            8,
            &["storm_limit \"fast\"", "not a rate"],
        );
    }

    #[test]
    fn ageing_forms() {
        for (text, secs) in [
            ("\"0\"", 0),
            ("\"0s\"", 0),
            ("0", 0),
            ("\"300s\"", 300),
            ("\"5m\"", 300),
            ("\"1h\"", 3600),
            ("45", 45),
        ] {
            let cfg = with(&format!("[switch]\nageing = {text}\n")).unwrap();
            assert_eq!(cfg.switch.ageing, Duration::from_secs(secs), "{text}");
        }
        assert_eq!(
            with("[switch]\nageing = \"0\"\n").unwrap().switch.ageing,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_ageing() {
        for bad in [
            "\"5x\"",
            "\"300\"",
            "\"s\"",
            "\"-5s\"",
            "-1",
            "1.5",
            "\"9999999h\"",
            "true",
        ] {
            assert_err(
                with(&format!("[switch]\nageing = {bad}\n")),
                8,
                &["[switch]", "ageing", "\"300s\""],
            );
        }
    }

    #[test]
    fn switch_checks() {
        let sw = |body: &str| with(&format!("{HOST_AND_PORT}[switch]\n{body}"));
        assert_err(sw("max_macs = 0\n"), 19, &["[switch]", "max_macs 0"]);
        assert_err(
            sw("max_macs = 10\nmax_macs_per_port = 20\n"),
            20,
            &["max_macs_per_port 20", "max_macs 10"],
        );
        assert_err(sw("workers = 65\n"), 19, &["workers 65", "64"]);
        assert_err(sw("poll_us = -1\n"), 19, &["poll_us -1", "0 to 1000000"]);
        assert_err(
            sw("poll_us = \"fast\"\n"),
            19,
            &["poll_us \"fast\"", "\"adaptive\""],
        );
        assert_err(sw("poll_us = 1000001\n"), 19, &["poll_us 1000001"]);
        let poll = |v: &str| sw(&format!("poll_us = {v}\n")).unwrap().switch.poll;
        assert_eq!(poll("5000"), PollMode::Fixed(Duration::from_micros(5000)));
        assert_eq!(poll("0"), PollMode::Off);
        assert_eq!(poll("\"adaptive\""), PollMode::Adaptive);
        assert_eq!(sw("").unwrap().switch.poll, DEFAULT_POLL);
        let cfg = sw("max_macs = 10\nworkers = 2\n").unwrap();
        assert_eq!(
            (cfg.switch.max_macs, cfg.switch.max_macs_per_port),
            (10, 10)
        );
        assert_eq!(cfg.switch.workers, 2);

        let fdb = |mac: &str, port: &str| {
            sw(&format!(
                "[[switch.fdb]]\nmac = \"{mac}\"\nport = \"{port}\"\n"
            ))
        };
        let cfg = fdb("52:54:00:00:00:99", "p1").unwrap();
        assert_eq!(
            cfg.switch.static_fdb,
            [StaticFdb {
                mac: "52:54:00:00:00:99".parse().unwrap(),
                port: 0
            }]
        );
        assert_err(
            fdb("ff:ff:ff:ff:ff:ff", "p1"),
            20,
            &["[[switch.fdb]] #1", "mac", "multicast"],
        );
        assert_err(
            fdb("52:54:00:00:00:99", "p9"),
            21,
            &["[[switch.fdb]] #1", "port 'p9'", "[[port]]"],
        );
    }

    #[test]
    fn static_fdb_must_not_move_a_hosts_mac() {
        let text = format!(
            "{HOST_AND_PORT}[[port]]\nname = \"p2\"\nkind = \"tap\"\nifname = \"sy-p2\"\n\
             [[switch.fdb]]\nmac = \"52:54:00:00:00:11\"\nport = \"p2\"\n"
        );
        assert_err(
            with(&text),
            24,
            &["mac 52:54:00:00:00:11", "host 'vm1'", "port 'p1'"],
        );
    }
}
