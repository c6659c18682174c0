//! `forward = "nat" | "route" | "open"`: the host forwards the subnet's traffic to the outside.
//!
//! # Theory of operation
//!
//! [`Nat::install`] loads one nftables table of the daemon's own, `ip switchyard_<network>`, by
//! running `nft -f -` with the ruleset on stdin. With `nat` and `route` it holds libvirt's
//! forwarding rules: a `forward` filter chain that accepts what the subnet sends out through
//! the host port, accepts what comes back to the subnet (with `nat` only replies: conntrack
//! established or related; with `route` anything), and rejects every other packet forwarded
//! into or out of the host port. With `nat`, a `postrouting` NAT chain also masquerades what
//! comes from the subnet and leaves through any interface other than the host port (traffic
//! between the host leg and the VMs, multicast and broadcast are left alone). With `open` the
//! table has no chain: it only marks the namespace as one where a switchyard network forwards.
//! The ruleset first declares and deletes the table, so a table left behind by a daemon killed
//! with `kill -9` is replaced in the same transaction: nft applies a file atomically.
//!
//! A DROP forward policy elsewhere. nftables runs every table's `forward` chain: an accept in
//! ours does not overrule a drop in another. The usual drop comes from iptables (ufw, Docker,
//! firewalld's iptables backend; on Debian `iptables` is iptables-nft, the table `ip filter`):
//! when that table's `FORWARD` chain exists, the daemon also inserts its two accept rules at
//! its top with `iptables` (so iptables' own tools still read the chain), tagged with the
//! table's name as a comment, and deletes them when it stops (and any left by a killed daemon
//! when it starts). Any other table with a forward chain whose policy is drop is named in a
//! warning: it must let the subnet through itself (firewalld's nftables backend: put the host
//! port in a zone that forwards). `open` adds no rules anywhere, as libvirt's open mode.
//!
//! `ip_forward`. Then it turns `net.ipv4.ip_forward` on in the daemon's network namespace
//! (`/proc/sys/net` is per namespace). The value it found is written into the table's comment
//! (`ip_forward_was=0`); a second network started in the same namespace while the first runs
//! finds forwarding on and takes the original value from the first one's table. Dropping the
//! [`Nat`] deletes the table and the iptables rules, and puts the original value back only if
//! no other `switchyard_*` table is left in the namespace: the last network that forwards
//! restores it, never one whose neighbours still need it. The daemon holds the [`Nat`] for its
//! whole run, so that happens on SIGINT/SIGTERM and when a later startup step fails alike.
//!
//! Limits: IPv4 only.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::DaemonError;
use crate::control::config::{Config, Forward};

/// Where the kernel's IPv4 forwarding switch lives (for the reading process's namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Every table of the daemon's starts so.
const TABLE_PREFIX: &str = "switchyard_";
/// How the table's comment records the `ip_forward` found before any switchyard network.
const WAS_KEY: &str = "ip_forward_was=";

/// The installed table; removed (and `ip_forward` restored) on drop.
#[derive(Debug)]
pub(super) struct Nat {
    table: String,
    /// `ip_forward` as found before the first switchyard network in this namespace changed it.
    ip_forward_was: Option<String>,
    /// The rules inserted into iptables' FORWARD chain (each as `-I`/`-D` arguments after the
    /// chain), deleted on drop.
    iptables: Vec<Vec<String>>,
}

/// The daemon's table for `network`: nft identifiers take letters, digits and '_', so a '-' in
/// the network's name becomes '_'.
pub(super) fn table_name(network: &str) -> String {
    format!("{TABLE_PREFIX}{}", network.replace('-', "_"))
}

/// The whole ruleset `nft -f -` loads for `mode`: replace the table (if any) with its chains.
/// `was` is the `ip_forward` to record in the comment.
pub(super) fn ruleset(
    table: &str,
    mode: Forward,
    subnet: Ipv4Net,
    host_ifname: &str,
    was: Option<&str>,
) -> String {
    let mut r = format!(
        "# switchyard: forward = \"{m}\" (removed when the daemon stops)\n\
         table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tcomment \"switchyard forward={m} {WAS_KEY}{was}\"\n",
        m = mode.name(),
        was = was.unwrap_or("-"),
    );
    if matches!(mode, Forward::Nat | Forward::Route) {
        let back = if mode == Forward::Nat {
            " ct state established,related"
        } else {
            ""
        };
        r.push_str(&format!(
            "\tchain forward {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\toifname \"{host_ifname}\" ip daddr {subnet}{back} accept\n\
             \t\tiifname \"{host_ifname}\" ip saddr {subnet} accept\n\
             \t\toifname \"{host_ifname}\" reject\n\
             \t\tiifname \"{host_ifname}\" reject\n\
             \t}}\n"
        ));
    }
    if mode == Forward::Nat {
        r.push_str(&format!(
            "\tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr {subnet} oifname != \"{host_ifname}\" \
             ip daddr != {{ {subnet}, 224.0.0.0/4, 255.255.255.255 }} masquerade\n\
             \t}}\n"
        ));
    }
    r.push_str("}\n");
    r
}

/// The accept rules for iptables' FORWARD chain (arguments after `-I FORWARD`), tagged `table`.
pub(super) fn iptables_rules(
    table: &str,
    mode: Forward,
    subnet: Ipv4Net,
    host_ifname: &str,
) -> Vec<Vec<String>> {
    let tag = ["-m", "comment", "--comment", table];
    let mut back = vec!["-o", host_ifname, "-d"];
    let subnet = subnet.to_string();
    back.push(&subnet);
    if mode == Forward::Nat {
        back.extend(["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]);
    }
    let out = vec!["-i", host_ifname, "-s", &subnet];
    [back, out]
        .into_iter()
        .map(|mut r| {
            r.extend(tag);
            r.extend(["-j", "ACCEPT"]);
            r.into_iter().map(str::to_string).collect()
        })
        .collect()
}

/// What `nft list table` says the table's comment recorded as the original `ip_forward`.
pub(super) fn recorded_was(listing: &str) -> Option<String> {
    let after = &listing[listing.find(WAS_KEY)? + WAS_KEY.len()..];
    let value: String = after.chars().take_while(char::is_ascii_digit).collect();
    (!value.is_empty()).then_some(value)
}

/// The other `switchyard_*` tables of family ip in this namespace (from `nft list tables`).
pub(super) fn other_tables(listing: &str, ours: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .filter(|t| t.starts_with(TABLE_PREFIX) && *t != ours)
        .map(str::to_string)
        .collect()
}

/// Tables (other than ours and iptables' `ip filter`) with a forward chain whose policy is
/// drop, from `nft list chains`: a drop there is not ours to overrule.
pub(super) fn dropping_tables(listing: &str, ours: &str) -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ") {
            table = rest.trim_end_matches('{').trim().to_string();
        } else if line.contains("hook forward")
            && line.contains("policy drop")
            && table != format!("ip {ours}")
            && table != "ip filter"
            && !out.contains(&table)
        {
            out.push(table.clone());
        }
    }
    out
}

impl Nat {
    /// With a `forward` mode: loads the table (and iptables' rules), turns forwarding on;
    /// `None` on an isolated network.
    pub(super) fn install(config: &Config) -> Result<Option<Nat>, DaemonError> {
        let mode = config.network.forward;
        if mode == Forward::None {
            return Ok(None);
        }
        let Some((_, ifname, addr)) = config.host_port() else {
            // The config's validation requires a host port with a forward mode.
            return Err(err("no host port (a tap port with host_address)".into()));
        };
        let table = table_name(&config.network.name);
        let subnet = config.network.subnet;
        let now = std::fs::read_to_string(IP_FORWARD)
            .map_err(|e| err(format!("cannot read {IP_FORWARD}: {e}")))?
            .trim()
            .to_string();
        let was = if now == "1" {
            // Another switchyard network may have turned it on: its table knows what it was.
            other_tables(&nft_output(&["list", "tables"]).unwrap_or_default(), &table)
                .iter()
                .filter_map(|t| nft_output(&["list", "table", "ip", t]))
                .find_map(|l| recorded_was(&l))
                .filter(|w| w != "1")
        } else {
            Some(now.clone())
        };
        nft(&ruleset(&table, mode, subnet, ifname, was.as_deref()))?;
        // From here on, dropping `nat` deletes the table.
        let mut nat = Nat {
            table,
            ip_forward_was: was,
            iptables: Vec::new(),
        };
        if mode != Forward::Open {
            nat.insert_iptables(mode, subnet, ifname)?;
            let chains = nft_output(&["list", "chains"]).unwrap_or_default();
            for t in dropping_tables(&chains, &nat.table) {
                tracing::warn!(table = %t, %subnet,
                    "nat: table {t} drops forwarded packets by default: the subnet's traffic \
                     passes only if it accepts it too (switchyard cannot overrule another \
                     table's drop)");
            }
        }
        if now != "1" {
            std::fs::write(IP_FORWARD, "1")
                .map_err(|e| err(format!("cannot turn on {IP_FORWARD}: {e}")))?;
        }
        log_installed(&nat.table, mode, subnet, ifname, addr);
        Ok(Some(nat))
    }

    /// Where iptables' filter table has a FORWARD chain, puts the accept rules at its top
    /// (after removing any a killed daemon left).
    fn insert_iptables(
        &mut self,
        mode: Forward,
        subnet: Ipv4Net,
        ifname: &str,
    ) -> Result<(), DaemonError> {
        if nft_output(&["list", "chain", "ip", "filter", "FORWARD"]).is_none() {
            return Ok(());
        }
        let rules = iptables_rules(&self.table, mode, subnet, ifname);
        for rule in &rules {
            // Bounded: a chain holds few copies of a rule a killed daemon left.
            for _ in 0..16 {
                if iptables("-D", rule).is_err() {
                    break;
                }
            }
        }
        for rule in rules.iter().rev() {
            iptables("-I", rule).map_err(|e| {
                err(format!(
                    "iptables' FORWARD chain exists (ufw, Docker or firewalld may drop \
                     forwarded packets there) but the accept rules cannot be added: {e}"
                ))
            })?;
            self.iptables.push(rule.clone());
        }
        tracing::info!(table = %self.table, "nat: accept rules added to iptables' FORWARD chain");
        Ok(())
    }
}

fn log_installed(table: &str, mode: Forward, subnet: Ipv4Net, ifname: &str, router: Ipv4Addr) {
    tracing::info!(
        table = %format!("ip {table}"),
        forward = mode.name(),
        %subnet,
        host_port = %ifname,
        %router,
        "nat: forwarding the subnet through the host; ip_forward on"
    );
}

impl Drop for Nat {
    fn drop(&mut self) {
        for rule in &self.iptables {
            if let Err(e) = iptables("-D", rule) {
                tracing::error!(error = %e, "nat: cannot remove an iptables FORWARD rule");
            }
        }
        match nft(&format!("delete table ip {}\n", self.table)) {
            Ok(()) => tracing::info!(table = %format!("ip {}", self.table), "nat: table removed"),
            Err(e) => tracing::error!(error = %e, "nat: cannot remove the table"),
        }
        let others = other_tables(
            &nft_output(&["list", "tables"]).unwrap_or_default(),
            &self.table,
        );
        match (&self.ip_forward_was, others.first()) {
            (Some(_), Some(other)) => tracing::info!(still = %other,
                "nat: ip_forward stays on: another switchyard network here still forwards"),
            (Some(was), None) => {
                if let Err(e) = std::fs::write(IP_FORWARD, was) {
                    tracing::error!(error = %e, was = %was, "nat: cannot restore ip_forward");
                }
            }
            (None, _) => {}
        }
    }
}

/// `nft ARGS`' stdout, or `None` if it fails (no such table or chain, no nft).
fn nft_output(args: &[&str]) -> Option<String> {
    let out = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables -w OP FORWARD RULE...`; its stderr becomes the error.
fn iptables(op: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", op, "FORWARD"])
        .args(rule)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn err(message: String) -> DaemonError {
    DaemonError::Nat { message }
}

/// Runs `nft -f -` with `script` on stdin; its stderr becomes the error.
fn nft(script: &str) -> Result<(), DaemonError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(
                "the nft command is not installed (install the nftables package: \
                 apt-get install nftables), or use forward = \"none\""
                    .into(),
            ),
            _ => err(format!("cannot run nft: {e}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(format!("cannot write the ruleset to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "nft refused the ruleset ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "10.13.31.0/24".parse().unwrap()
    }

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("lab"), "switchyard_lab");
        assert_eq!(table_name("vm-net_2"), "switchyard_vm_net_2");
    }

    #[test]
    fn nat_ruleset_replaces_the_table_masquerades_and_lets_only_replies_in() {
        let r = ruleset("switchyard_lab", Forward::Nat, net(), "sy-host", Some("0"));
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert_eq!(lines[1], "table ip switchyard_lab {}");
        assert_eq!(lines[2], "delete table ip switchyard_lab");
        assert!(lines.contains(&"comment \"switchyard forward=nat ip_forward_was=0\""));
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"));
        assert!(lines.contains(
            &"ip saddr 10.13.31.0/24 oifname != \"sy-host\" ip daddr != { 10.13.31.0/24, \
              224.0.0.0/4, 255.255.255.255 } masquerade"
        ));
        assert!(lines.contains(&"type filter hook forward priority filter; policy accept;"));
        assert!(lines.contains(
            &"oifname \"sy-host\" ip daddr 10.13.31.0/24 ct state established,related accept"
        ));
        assert!(lines.contains(&"iifname \"sy-host\" ip saddr 10.13.31.0/24 accept"));
        assert!(lines.contains(&"oifname \"sy-host\" reject"));
    }

    #[test]
    fn route_has_no_masquerade_and_open_no_chain() {
        let r = ruleset("t", Forward::Route, net(), "h", None);
        assert!(!r.contains("masquerade") && !r.contains("ct state"), "{r}");
        assert!(
            r.contains("oifname \"h\" ip daddr 10.13.31.0/24 accept"),
            "{r}"
        );
        assert!(r.contains("ip_forward_was=-"), "{r}");
        let o = ruleset("t", Forward::Open, net(), "h", Some("1"));
        assert!(!o.contains("chain"), "{o}");
    }

    #[test]
    fn iptables_rules_mirror_the_forward_chain() {
        let r = iptables_rules("switchyard_lab", Forward::Nat, net(), "sy-host");
        assert_eq!(
            r[0].join(" "),
            "-o sy-host -d 10.13.31.0/24 -m conntrack --ctstate RELATED,ESTABLISHED \
             -m comment --comment switchyard_lab -j ACCEPT"
        );
        assert_eq!(
            r[1].join(" "),
            "-i sy-host -s 10.13.31.0/24 -m comment --comment switchyard_lab -j ACCEPT"
        );
        let r = iptables_rules("t", Forward::Route, net(), "h");
        assert!(!r[0].join(" ").contains("conntrack"));
    }

    #[test]
    fn listings_are_read_for_neighbours_their_record_and_drops() {
        let tables = "table inet filter\ntable ip switchyard_a\ntable ip switchyard_b\n";
        assert_eq!(other_tables(tables, "switchyard_a"), ["switchyard_b"]);
        let listing = "table ip switchyard_b {\n\tcomment \"switchyard forward=nat \
                       ip_forward_was=0\"\n}\n";
        assert_eq!(recorded_was(listing).as_deref(), Some("0"));
        assert_eq!(
            recorded_was("table ip x {\n\tcomment \"ip_forward_was=-\"\n}"),
            None
        );
        let chains = "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward \
                      priority filter; policy drop;\n\t}\n}\ntable ip filter {\n\tchain FORWARD \
                      {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n";
        assert_eq!(dropping_tables(chains, "switchyard_a"), ["inet filter"]);
    }
}
