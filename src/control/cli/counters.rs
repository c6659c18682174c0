//! The counter commands' client side: `switchyard stats` (non-zero counters, the DHCP and DNS
//! servers' sections) and `switchyard why` (a port's last drops), as tables.

use std::path::Path;

use super::{render, table, unexpected, Client, ClientError};
use crate::control::protocol::{Body, Command, DropRow, PortStats, ServiceStats};

/// `switchyard stats`: the counters of `port` (or of every port, then the DHCP and DNS
/// servers'), non-zero ones only unless `all`; only the servers' with `services`. JSON carries
/// every counter, zeros included (a script's keys do not come and go): the port array, or with
/// `services` the servers' object.
pub fn stats(
    socket: &Path,
    port: Option<String>,
    json: bool,
    all: bool,
    services: bool,
) -> Result<String, ClientError> {
    let mut client = Client::connect(socket)?;
    if services {
        return match client.call(Command::Services)? {
            Body::Services(s) if json => Ok(serde_json::to_string(&s).unwrap_or_default() + "\n"),
            Body::Services(s) => Ok(services_table(&s, all)),
            other => Err(unexpected(&other)),
        };
    }
    let whole = port.is_none();
    let ports = match client.call(Command::Stats { port })? {
        Body::Stats(v) => v,
        other => return Err(unexpected(&other)),
    };
    if json {
        return Ok(render(&Body::Stats(ports), true));
    }
    let mut out = stats_table(&ports, all);
    if whole {
        match client.call(Command::Services)? {
            Body::Services(s) => out.push_str(&services_table(&s, all)),
            other => return Err(unexpected(&other)),
        }
    }
    Ok(out)
}

/// Every port's counters, a section each; zeros left out unless `all`.
pub fn stats_table(stats: &[PortStats], all: bool) -> String {
    let mut out = String::new();
    for s in stats {
        let mut rows = vec![
            ("rx_frames", s.rx_frames),
            ("rx_bytes", s.rx_bytes),
            ("tx_frames", s.tx_frames),
            ("tx_bytes", s.tx_bytes),
            ("fdb_full", s.fdb_full),
            ("fdb_entries", s.fdb_entries),
            ("capture_dropped", s.capture_dropped),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<Vec<_>>();
        rows.extend(s.drops.iter().map(|(r, n)| (format!("drop.{r}"), *n)));
        rows.extend(
            s.monitored
                .iter()
                .map(|(r, n)| (format!("monitored.{r}"), *n)),
        );
        out.push_str(&section(&format!("port {}", s.port), &rows, all));
        for p in &s.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
    }
    out
}

/// The DHCP and DNS servers' counters, a section each (or a line saying it is off).
pub fn services_table(s: &ServiceStats, all: bool) -> String {
    let mut out = String::new();
    for (name, counters) in [("dhcp", &s.dhcp), ("dns", &s.dns)] {
        match counters {
            Some(rows) => out.push_str(&section(name, rows, all)),
            None => out.push_str(&format!("{name}: off\n")),
        }
    }
    // Only where it runs: most networks have no IPv6.
    if let Some(rows) = &s.dhcp6 {
        out.push_str(&section("dhcp6", rows, all));
    }
    out
}

/// `title`, then one indented `name  value` line per row; without `all`, only the non-zero
/// ones, and a line saying how many zeros were left out.
fn section(title: &str, rows: &[(String, u64)], all: bool) -> String {
    let shown: Vec<&(String, u64)> = rows.iter().filter(|(_, v)| all || *v != 0).collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{title}\n");
    for (k, v) in &shown {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    let zeros = rows.len() - shown.len();
    if zeros > 0 {
        out.push_str(&format!("  ({zeros} counters at zero; --all shows them)\n"));
    }
    out
}

/// `switchyard why`: one line per dropped frame, newest first.
pub fn why_table(rows: &[DropRow]) -> String {
    if rows.is_empty() {
        return "no drops remembered on this port\n".into();
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let what = match (&r.src_ip, &r.dst_ip, r.ethertype.as_str()) {
                (Some(s), Some(d), "0x0806") => format!("ARP {s} > {d}"),
                (Some(s), Some(d), _) => format!(
                    "IPv4 {s} > {d} {}",
                    r.protocol.as_deref().unwrap_or_default()
                ),
                (_, _, "0x86dd") => "IPv6".into(),
                (_, _, "0x0000") => "-".into(),
                (_, _, t) => format!("ethertype {t}"),
            };
            vec![
                format!("{:.1}s", r.ago_ms as f64 / 1000.0),
                r.reason.clone(),
                r.len.to_string(),
                r.src_mac.clone(),
                r.dst_mac.clone(),
                what.trim_end().to_string(),
            ]
        })
        .collect();
    table(
        &["AGO", "REASON", "LEN", "SRC MAC", "DST MAC", "FRAME"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_leave_zeros_out_unless_all() {
        let port = PortStats {
            port: "vm1".into(),
            rx_frames: 3,
            rx_bytes: 180,
            tx_frames: 0,
            tx_bytes: 0,
            fdb_full: 0,
            drops: vec![("runt".into(), 0), ("spoofed_ip".into(), 2)],
            monitored: vec![],
            fdb_entries: 1,
            capture_dropped: 0,
            problems: Vec::new(),
        };
        let short = stats_table(std::slice::from_ref(&port), false);
        assert_eq!(
            short,
            "port vm1\n  rx_frames        3\n  rx_bytes         180\n  fdb_entries      1\n  \
             drop.spoofed_ip  2\n  (5 counters at zero; --all shows them)\n"
        );
        let all = stats_table(&[port], true);
        assert!(all.contains("  drop.runt        0\n") && !all.contains("at zero"));
        let services = ServiceStats {
            dhcp: Some(vec![("leases".into(), 0), ("acks".into(), 4)]),
            dns: None,
            dhcp6: None,
        };
        assert_eq!(
            services_table(&services, false),
            "dhcp\n  acks  4\n  (1 counters at zero; --all shows them)\ndns: off\n"
        );
        let with6 = ServiceStats {
            dhcp6: Some(vec![("leases".into(), 2), ("dropped".into(), 0)]),
            ..services
        };
        assert!(
            services_table(&with6, true).ends_with("dhcp6\n  leases   2\n  dropped  0\n"),
            "{}",
            services_table(&with6, true)
        );
    }

    #[test]
    fn why_lines_say_what_the_frame_was() {
        let row = |ethertype: &str, ips: Option<(&str, &str)>, protocol: Option<&str>| DropRow {
            ago_ms: 1500,
            reason: "spoofed_ip".into(),
            len: 98,
            src_mac: "52:54:00:00:00:02".into(),
            dst_mac: "52:54:00:00:00:01".into(),
            ethertype: ethertype.into(),
            src_ip: ips.map(|i| i.0.into()),
            dst_ip: ips.map(|i| i.1.into()),
            protocol: protocol.map(str::to_string),
        };
        let t = why_table(&[
            row("0x0800", Some(("10.0.0.9", "10.0.0.1")), Some("icmp")),
            row("0x0806", Some(("10.0.0.9", "10.0.0.1")), None),
            row("0x0000", None, None),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("AGO   REASON"), "{t}");
        assert!(lines[1].starts_with("1.5s  spoofed_ip  98"), "{t}");
        assert!(lines[1].ends_with("IPv4 10.0.0.9 > 10.0.0.1 icmp"), "{t}");
        assert!(lines[2].ends_with("ARP 10.0.0.9 > 10.0.0.1"), "{t}");
        assert!(lines[3].ends_with(" -"), "{t}");
        assert_eq!(why_table(&[]), "no drops remembered on this port\n");
    }
}
