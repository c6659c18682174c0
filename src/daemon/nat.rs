//! `forward = "nat" | "route" | "open"`: the host forwards the subnet's traffic to the outside.
//!
//! # Theory of operation
//!
//! [`Nat::install`] loads one nftables table of the daemon's own, `inet switchyard_<network>`
//! (both families in one table), by
//! running `nft -f -` with the ruleset on stdin. With `nat` and `route` it holds libvirt's
//! forwarding rules: a `forward` filter chain that accepts what the subnet sends out through
//! the host port, accepts what comes back to the subnet (with `nat` only replies: conntrack
//! established or related; with `route` anything), and rejects every other packet forwarded
//! into or out of the host port. With `nat`, a `postrouting` NAT chain also masquerades what
//! comes from the subnet and leaves through any interface other than the host port (traffic
//! between the host leg and the VMs, multicast and broadcast are left alone). With `open` the
//! table has no chain: it only marks the namespace as one where a switchyard network forwards.
//! The ruleset first declares and deletes the table, so a table left behind by a daemon killed
//! with `kill -9` is replaced in the same transaction: nft applies a file atomically (and so is
//! the `ip` family table of the same name that versions before IPv6 forwarding loaded).
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
//! IPv6. With `subnet6` the same chains carry `ip6` twins of the IPv4 rules (accept out and
//! back, masquerade with `nat`; ip6tables' FORWARD chain gets its accept rules as iptables'
//! does), the host port gets the router address [`HOST_LEG6`] (`fe80::1`, which the
//! appliance's router advertisements name as the default router: see `service::ndp`) and the
//! subnet's route, and `net.ipv6.conf.all.forwarding` is turned on like `ip_forward` (recorded
//! as `ip6_forward_was=`). The appliance keeps `gateway6`, as it keeps the IPv4 gateway.
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
//! Limits: turning IPv6 forwarding on makes every interface of the namespace a router, which
//! stops them taking router advertisements (the kernel's `accept_ra = 1`): a VM host that
//! gets its own IPv6 default route by SLAAC needs `accept_ra = 2` on its uplink.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use ipnet::{Ipv4Net, Ipv6Net};

use super::DaemonError;
use crate::control::config::{Config, Forward};

/// Where the kernel's IPv4 forwarding switch lives (for the reading process's namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// The IPv6 one (`all` sets every interface's; per namespace too).
const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
/// Every table of the daemon's starts so.
const TABLE_PREFIX: &str = "switchyard_";
/// How the table's comment records the `ip_forward` found before any switchyard network.
const WAS_KEY: &str = "ip_forward_was=";
/// And the IPv6 forwarding switch's.
const WAS6_KEY: &str = "ip6_forward_was=";
/// The host leg's IPv6 router address, on the host port with a `forward` mode and `subnet6`:
/// the router advertisements name it (the appliance keeps `gateway6`, as it keeps the IPv4
/// gateway; a link-local router address is what hosts route through anyway).
pub(super) const HOST_LEG6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// One forwarding switch of the namespace and what the table records of it.
#[derive(Debug, Clone, Copy)]
struct Sysctl {
    name: &'static str,
    path: &'static str,
    key: &'static str,
}
const V4: Sysctl = Sysctl {
    name: "ip_forward",
    path: IP_FORWARD,
    key: WAS_KEY,
};
const V6: Sysctl = Sysctl {
    name: "IPv6 forwarding",
    path: IP6_FORWARD,
    key: WAS6_KEY,
};

/// The installed table; removed (and `ip_forward` restored) on drop.
#[derive(Debug)]
pub(super) struct Nat {
    table: String,
    /// Each forwarding switch turned on (IPv4 always, IPv6 with `subnet6`) and its value as
    /// found before the first switchyard network in this namespace changed it.
    forward_was: Vec<(Sysctl, Option<String>)>,
    /// The rules inserted into iptables' (or ip6tables') FORWARD chain (each the command and
    /// its `-I`/`-D` arguments after the chain), deleted on drop.
    iptables: Vec<(&'static str, Vec<String>)>,
}

/// What the ruleset covers: the subnets and the host port.
#[derive(Debug, Clone, Copy)]
pub(super) struct Leg<'a> {
    pub subnet: Ipv4Net,
    pub subnet6: Option<Ipv6Net>,
    pub ifname: &'a str,
}

/// The daemon's table for `network`: nft identifiers take letters, digits and '_', so a '-' in
/// the network's name becomes '_'.
pub(super) fn table_name(network: &str) -> String {
    format!("{TABLE_PREFIX}{}", network.replace('-', "_"))
}

/// The whole ruleset `nft -f -` loads for `mode`: replace the table (if any) with its chains.
/// `was` is the comment's record of the forwarding switches (`ip_forward_was=0 ...`).
pub(super) fn ruleset(table: &str, mode: Forward, leg: Leg<'_>, was: &str) -> String {
    let Leg {
        subnet,
        subnet6,
        ifname: host_ifname,
    } = leg;
    let mut r = format!(
        "# switchyard: forward = \"{m}\" (removed when the daemon stops)\n\
         table inet {table} {{}}\n\
         delete table inet {table}\n\
         table ip {table} {{}}\n\
         delete table ip {table}\n\
         table inet {table} {{\n\
         \tcomment \"switchyard forward={m} {was}\"\n",
        m = mode.name(),
    );
    if matches!(mode, Forward::Nat | Forward::Route) {
        let back = if mode == Forward::Nat {
            " ct state established,related"
        } else {
            ""
        };
        let mut accepts = format!(
            "\t\toifname \"{host_ifname}\" ip daddr {subnet}{back} accept\n\
             \t\tiifname \"{host_ifname}\" ip saddr {subnet} accept\n"
        );
        if let Some(s6) = subnet6 {
            accepts.push_str(&format!(
                "\t\toifname \"{host_ifname}\" ip6 daddr {s6}{back} accept\n\
                 \t\tiifname \"{host_ifname}\" ip6 saddr {s6} accept\n"
            ));
        }
        r.push_str(&format!(
            "\tchain forward {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             {accepts}\
             \t\toifname \"{host_ifname}\" reject\n\
             \t\tiifname \"{host_ifname}\" reject\n\
             \t}}\n"
        ));
    }
    if mode == Forward::Nat {
        let mut v6 = String::new();
        if let Some(s6) = subnet6 {
            // Not to the subnet itself, nor multicast (link-local never leaves a link).
            v6 = format!(
                "\t\tip6 saddr {s6} oifname != \"{host_ifname}\" \
                 ip6 daddr != {{ {s6}, ff00::/8 }} masquerade\n"
            );
        }
        r.push_str(&format!(
            "\tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr {subnet} oifname != \"{host_ifname}\" \
             ip daddr != {{ {subnet}, 224.0.0.0/4, 255.255.255.255 }} masquerade\n\
             {v6}\
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
    subnet: impl std::fmt::Display,
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

/// What `nft list table` says the table's comment recorded as the original value of the
/// switch `key` names (`ip_forward_was=`, `ip6_forward_was=`).
pub(super) fn recorded_was(listing: &str, key: &str) -> Option<String> {
    let at = listing
        .match_indices(key)
        // `ip_forward_was=` is not the tail of `ip6_forward_was=`, but be exact anyway.
        .find(|(i, _)| *i == 0 || !listing.as_bytes()[i - 1].is_ascii_alphanumeric())?
        .0;
    let after = &listing[at + key.len()..];
    let value: String = after.chars().take_while(char::is_ascii_digit).collect();
    (!value.is_empty()).then_some(value)
}

/// The other `switchyard_*` tables of family inet in this namespace (from `nft list tables`).
pub(super) fn other_tables(listing: &str, ours: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .filter(|t| t.starts_with(TABLE_PREFIX) && *t != ours)
        .map(str::to_string)
        .collect()
}

/// Tables (other than ours and iptables' `ip filter` and `ip6 filter`, where the daemon adds
/// its accept rules) with a forward chain whose policy is drop, from `nft list chains`: a drop
/// there is not ours to overrule.
pub(super) fn dropping_tables(listing: &str, ours: &str) -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ") {
            table = rest.trim_end_matches('{').trim().to_string();
        } else if line.contains("hook forward")
            && line.contains("policy drop")
            && table != format!("inet {ours}")
            && table != "ip filter"
            && table != "ip6 filter"
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
        let leg = Leg {
            subnet: config.network.subnet,
            subnet6: config.ipv6.as_ref().map(|v6| v6.subnet),
            ifname,
        };
        let mut switches = vec![V4];
        if leg.subnet6.is_some() {
            switches.push(V6);
        }
        let mut found = Vec::new();
        for sw in &switches {
            found.push((*sw, read_switch(*sw)?));
        }
        let others = other_tables(&nft_output(&["list", "tables"]).unwrap_or_default(), &table);
        let forward_was: Vec<(Sysctl, Option<String>)> = found
            .iter()
            .map(|(sw, now)| (*sw, original(*sw, now, &others)))
            .collect();
        let record = forward_was
            .iter()
            .map(|(sw, was)| format!("{}{}", sw.key, was.as_deref().unwrap_or("-")))
            .collect::<Vec<_>>()
            .join(" ");
        nft(&ruleset(&table, mode, leg, &record))?;
        // From here on, dropping `nat` deletes the table.
        let mut nat = Nat {
            table,
            forward_was,
            iptables: Vec::new(),
        };
        if mode != Forward::Open {
            nat.insert_iptables(mode, leg)?;
            nat.warn_dropping_tables(leg.subnet);
        }
        if let Some(s6) = leg.subnet6 {
            host_leg6(ifname, s6)?;
        }
        for (sw, now) in &found {
            if now != "1" {
                std::fs::write(sw.path, "1")
                    .map_err(|e| err(format!("cannot turn on {}: {e}", sw.path)))?;
            }
        }
        log_installed(&nat.table, mode, leg, addr);
        Ok(Some(nat))
    }

    /// Names every other table whose forward chain drops by default.
    fn warn_dropping_tables(&self, subnet: Ipv4Net) {
        let chains = nft_output(&["list", "chains"]).unwrap_or_default();
        for t in dropping_tables(&chains, &self.table) {
            tracing::warn!(table = %t, %subnet,
                "nat: table {t} drops forwarded packets by default: the subnet's traffic \
                 passes only if it accepts it too (switchyard cannot overrule another \
                 table's drop)");
        }
    }

    /// Where iptables' (ip6tables') filter table has a FORWARD chain, puts the accept rules at
    /// its top (after removing any a killed daemon left).
    fn insert_iptables(&mut self, mode: Forward, leg: Leg<'_>) -> Result<(), DaemonError> {
        let mut sets = vec![(
            "iptables",
            "ip",
            iptables_rules(&self.table, mode, leg.subnet, leg.ifname),
        )];
        if let Some(s6) = leg.subnet6 {
            sets.push((
                "ip6tables",
                "ip6",
                iptables_rules(&self.table, mode, s6, leg.ifname),
            ));
        }
        for (cmd, family, rules) in sets {
            if nft_output(&["list", "chain", family, "filter", "FORWARD"]).is_none() {
                continue;
            }
            for rule in &rules {
                // Bounded: a chain holds few copies of a rule a killed daemon left.
                for _ in 0..16 {
                    if iptables(cmd, "-D", rule).is_err() {
                        break;
                    }
                }
            }
            for rule in rules.iter().rev() {
                iptables(cmd, "-I", rule).map_err(|e| {
                    err(format!(
                        "{cmd}' FORWARD chain exists (ufw, Docker or firewalld may drop \
                         forwarded packets there) but the accept rules cannot be added: {e}"
                    ))
                })?;
                self.iptables.push((cmd, rule.clone()));
            }
            tracing::info!(table = %self.table, "nat: accept rules added to {cmd}' FORWARD chain");
        }
        Ok(())
    }
}

/// A forwarding switch's value now.
fn read_switch(sw: Sysctl) -> Result<String, DaemonError> {
    Ok(std::fs::read_to_string(sw.path)
        .map_err(|e| err(format!("cannot read {}: {e}", sw.path)))?
        .trim()
        .to_string())
}

/// The value to restore: what is there now, unless forwarding is on, when another switchyard
/// network (one of `others`) may have turned it on: its table knows what it was.
fn original(sw: Sysctl, now: &str, others: &[String]) -> Option<String> {
    if now != "1" {
        return Some(now.to_string());
    }
    others
        .iter()
        .filter_map(|t| nft_output(&["list", "table", "inet", t]))
        .find_map(|l| recorded_was(&l, sw.key))
        .filter(|w| w != "1")
}

/// The host leg's side of IPv6: the router address `fe80::1` the advertisements name (no DAD:
/// the address is ours by configuration) and the subnet's route through the host port (the
/// host has no address of its own in it: `gateway6` is the appliance's).
fn host_leg6(ifname: &str, subnet6: Ipv6Net) -> Result<(), DaemonError> {
    let router = format!("{HOST_LEG6}/64");
    let subnet = subnet6.to_string();
    for args in [
        ["-6", "addr", "replace", &router, "dev", ifname, "nodad"].as_slice(),
        ["-6", "route", "replace", &subnet, "dev", ifname].as_slice(),
    ] {
        let out = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("cannot run ip (iproute2): {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

fn log_installed(table: &str, mode: Forward, leg: Leg<'_>, router: Ipv4Addr) {
    tracing::info!(
        table = %format!("inet {table}"),
        forward = mode.name(),
        subnet = %leg.subnet,
        subnet6 = %leg.subnet6.map_or_else(|| "-".into(), |s| s.to_string()),
        host_port = %leg.ifname,
        %router,
        router6 = %if leg.subnet6.is_some() { HOST_LEG6.to_string() } else { "-".into() },
        "nat: forwarding the subnet through the host; forwarding on"
    );
}

impl Drop for Nat {
    fn drop(&mut self) {
        for (cmd, rule) in &self.iptables {
            if let Err(e) = iptables(cmd, "-D", rule) {
                tracing::error!(error = %e, "nat: cannot remove a {cmd} FORWARD rule");
            }
        }
        match nft(&format!("delete table inet {}\n", self.table)) {
            Ok(()) => tracing::info!(table = %format!("inet {}", self.table), "nat: table removed"),
            Err(e) => tracing::error!(error = %e, "nat: cannot remove the table"),
        }
        let others = other_tables(
            &nft_output(&["list", "tables"]).unwrap_or_default(),
            &self.table,
        );
        for (sw, was) in &self.forward_was {
            match (was, others.first()) {
                (Some(_), Some(other)) => tracing::info!(still = %other, switch = sw.path,
                    "nat: {} stays on: another switchyard network here still forwards", sw.name),
                (Some(was), None) => {
                    if let Err(e) = std::fs::write(sw.path, was) {
                        tracing::error!(error = %e, was = %was, switch = sw.path,
                            "nat: cannot restore {}", sw.name);
                    }
                }
                (None, _) => {}
            }
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

/// `CMD -w OP FORWARD RULE...` (iptables or ip6tables); its stderr becomes the error.
fn iptables(cmd: &str, op: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(["-w", op, "FORWARD"])
        .args(rule)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
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

    fn leg(ifname: &str) -> Leg<'_> {
        Leg {
            subnet: net(),
            subnet6: None,
            ifname,
        }
    }

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("lab"), "switchyard_lab");
        assert_eq!(table_name("vm-net_2"), "switchyard_vm_net_2");
    }

    #[test]
    fn nat_ruleset_replaces_the_table_masquerades_and_lets_only_replies_in() {
        let r = ruleset(
            "switchyard_lab",
            Forward::Nat,
            leg("sy-host"),
            "ip_forward_was=0",
        );
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert_eq!(lines[1], "table inet switchyard_lab {}");
        assert_eq!(lines[2], "delete table inet switchyard_lab");
        // The IPv4-only table of a daemon before IPv6 forwarding, left by kill -9, goes too.
        assert_eq!(lines[4], "delete table ip switchyard_lab");
        assert!(!r.contains("ip6"), "no IPv6 rules without subnet6: {r}");
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
        let r = ruleset("t", Forward::Route, leg("h"), "ip_forward_was=-");
        assert!(!r.contains("masquerade") && !r.contains("ct state"), "{r}");
        assert!(
            r.contains("oifname \"h\" ip daddr 10.13.31.0/24 accept"),
            "{r}"
        );
        assert!(r.contains("ip_forward_was=-"), "{r}");
        let o = ruleset("t", Forward::Open, leg("h"), "ip_forward_was=1");
        assert!(!o.contains("chain"), "{o}");
    }

    #[test]
    fn with_subnet6_the_same_table_masquerades_and_forwards_ipv6() {
        let l = Leg {
            subnet6: Some("fd00:13:31::/64".parse().unwrap()),
            ..leg("sy-host")
        };
        let r = ruleset("t", Forward::Nat, l, "ip_forward_was=0 ip6_forward_was=0");
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert!(lines.contains(
            &"ip6 saddr fd00:13:31::/64 oifname != \"sy-host\" ip6 daddr != { fd00:13:31::/64, \
              ff00::/8 } masquerade"
        ));
        assert!(lines.contains(
            &"oifname \"sy-host\" ip6 daddr fd00:13:31::/64 ct state established,related accept"
        ));
        assert!(lines.contains(&"iifname \"sy-host\" ip6 saddr fd00:13:31::/64 accept"));
        assert!(lines
            .contains(&"comment \"switchyard forward=nat ip_forward_was=0 ip6_forward_was=0\""));
        // Routed: the accepts without conntrack, no masquerade.
        let r = ruleset("t", Forward::Route, l, "");
        assert!(
            r.contains("oifname \"sy-host\" ip6 daddr fd00:13:31::/64 accept"),
            "{r}"
        );
        assert!(!r.contains("masquerade"), "{r}");
        let r = iptables_rules("t", Forward::Nat, l.subnet6.unwrap(), "h");
        assert!(
            r[1].join(" ").starts_with("-i h -s fd00:13:31::/64"),
            "{r:?}"
        );
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
        let tables = "table inet filter\ntable inet switchyard_a\ntable inet switchyard_b\n";
        assert_eq!(other_tables(tables, "switchyard_a"), ["switchyard_b"]);
        let listing = "table inet switchyard_b {\n\tcomment \"switchyard forward=nat \
                       ip_forward_was=0 ip6_forward_was=1\"\n}\n";
        assert_eq!(recorded_was(listing, WAS_KEY).as_deref(), Some("0"));
        assert_eq!(recorded_was(listing, WAS6_KEY).as_deref(), Some("1"));
        assert_eq!(
            recorded_was("table inet x {\n\tcomment \"ip_forward_was=-\"\n}", WAS_KEY),
            None
        );
        assert_eq!(recorded_was("ip6_forward_was=0", WAS_KEY), None);
        let chains = "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward \
                      priority filter; policy drop;\n\t}\n}\ntable ip filter {\n\tchain FORWARD \
                      {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n";
        assert_eq!(dropping_tables(chains, "switchyard_a"), ["inet filter"]);
    }
}
