//! `forward = "nat"`: the host masquerades the subnet's traffic to the outside.
//!
//! # Theory of operation
//!
//! [`Nat::install`] loads one nftables table of the daemon's own, `ip switchyard_<network>`, by
//! running `nft -f -` with the ruleset on stdin: a `postrouting` NAT chain that masquerades what
//! comes from the subnet and leaves through any interface other than the host port (traffic
//! between the host leg and the VMs, multicast and broadcast are left alone). The ruleset first
//! declares and deletes the table, so a table left behind by a daemon killed with `kill -9` is
//! replaced in the same transaction: nft applies a file atomically, all or nothing.
//!
//! Then it turns `net.ipv4.ip_forward` on in the daemon's network namespace (`/proc/sys/net`
//! is per namespace), remembering the old value. Dropping the [`Nat`] deletes the table and
//! puts the old value back; the daemon holds it for its whole run, so that happens on
//! SIGINT/SIGTERM and when a later startup step fails alike. After `kill -9` the table stays
//! until the next start replaces it (or `nft delete table ip switchyard_<network>`).
//!
//! Limits: IPv4 only. Forwarded traffic still passes every other table's `forward` hook: a
//! host firewall that drops forwarded packets (a `policy drop` elsewhere) must let the subnet
//! through; one table cannot override another's drop.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::DaemonError;
use crate::control::config::{Config, Forward};

/// Where the kernel's IPv4 forwarding switch lives (for the reading process's namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The installed table; removed (and `ip_forward` restored) on drop.
#[derive(Debug)]
pub(super) struct Nat {
    table: String,
    /// `ip_forward` as found, when the daemon changed it.
    ip_forward_was: Option<String>,
}

/// The daemon's table for `network`: nft identifiers take letters, digits and '_', so a '-' in
/// the network's name becomes '_'.
pub(super) fn table_name(network: &str) -> String {
    format!("switchyard_{}", network.replace('-', "_"))
}

/// The whole ruleset `nft -f -` loads: replace the table (if any) with the masquerade chain.
pub(super) fn ruleset(table: &str, subnet: Ipv4Net, host_ifname: &str) -> String {
    format!(
        "# switchyard: forward = \"nat\" (removed when the daemon stops)\n\
         table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{host_ifname}\" \
         ip daddr != {{ {subnet}, 224.0.0.0/4, 255.255.255.255 }} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

impl Nat {
    /// With `forward = "nat"`: loads the table and turns forwarding on; `None` otherwise.
    pub(super) fn install(config: &Config) -> Result<Option<Nat>, DaemonError> {
        if config.network.forward != Forward::Nat {
            return Ok(None);
        }
        let Some((_, ifname, addr)) = config.host_port() else {
            // The config's validation requires a host port with NAT.
            return Err(err("no host port (a tap port with host_address)".into()));
        };
        let table = table_name(&config.network.name);
        nft(&ruleset(&table, config.network.subnet, ifname))?;
        // From here on, dropping `nat` deletes the table.
        let mut nat = Nat {
            table,
            ip_forward_was: None,
        };
        let was = std::fs::read_to_string(IP_FORWARD)
            .map_err(|e| err(format!("cannot read {IP_FORWARD}: {e}")))?;
        if was.trim() != "1" {
            std::fs::write(IP_FORWARD, "1")
                .map_err(|e| err(format!("cannot turn on {IP_FORWARD}: {e}")))?;
            nat.ip_forward_was = Some(was.trim().to_string());
        }
        log_installed(&nat.table, config.network.subnet, ifname, addr);
        Ok(Some(nat))
    }
}

fn log_installed(table: &str, subnet: Ipv4Net, ifname: &str, router: Ipv4Addr) {
    tracing::info!(
        table = %format!("ip {table}"),
        %subnet,
        host_port = %ifname,
        %router,
        "nat: masquerading the subnet behind the host; ip_forward on"
    );
}

impl Drop for Nat {
    fn drop(&mut self) {
        match nft(&format!("delete table ip {}\n", self.table)) {
            Ok(()) => tracing::info!(table = %format!("ip {}", self.table), "nat: table removed"),
            Err(e) => tracing::error!(error = %e, "nat: cannot remove the table"),
        }
        if let Some(was) = &self.ip_forward_was {
            if let Err(e) = std::fs::write(IP_FORWARD, was) {
                tracing::error!(error = %e, was = %was, "nat: cannot restore ip_forward");
            }
        }
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

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("lab"), "switchyard_lab");
        assert_eq!(table_name("vm-net_2"), "switchyard_vm_net_2");
    }

    #[test]
    fn ruleset_replaces_the_table_and_masquerades_only_what_leaves() {
        let r = ruleset(
            "switchyard_lab",
            "10.13.31.0/24".parse().unwrap(),
            "sy-host",
        );
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert_eq!(lines[1], "table ip switchyard_lab {}");
        assert_eq!(lines[2], "delete table ip switchyard_lab");
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"));
        assert!(lines.contains(
            &"ip saddr 10.13.31.0/24 oifname != \"sy-host\" ip daddr != { 10.13.31.0/24, \
              224.0.0.0/4, 255.255.255.255 } masquerade"
        ));
    }
}
