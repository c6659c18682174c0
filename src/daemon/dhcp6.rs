//! The DHCPv6 server's I/O on the appliance thread: frames in, the server's outcome, the
//! journal's fsync, the guard's bindings, the reply frame out.
//!
//! A REPLY that commits a binding leaves only after `leases6.journal` has the change on disk
//! (one `fdatasync` per message, on this thread; see `service::dhcp6::journal`); if the write
//! fails, nothing leaves and the client retries. Each live binding allows its address on its
//! port (`Switch::bind_lease6`) until it is released or expires (checked once a second from the
//! appliance's loop). Refusals (impersonation, another port's binding) are logged at info.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;

use super::dhcp::epoch_now;
use crate::control::config::{dhcp_params, Config};
use crate::service::dhcp6::journal::Journal6;
use crate::service::dhcp6::lease_file::format_dnsmasq6;
use crate::service::dhcp6::{
    Change6, Dhcp6Counters, Dhcp6Params, Dhcp6Server, Drop, Lease6, PortOwner, Reservation6,
};
use crate::switch::{PortId, Switch};
use crate::wire::ipv6::{self, Ends, Ipv6View};
use crate::wire::MacAddr;

const SERVER_PORT: u16 = 547;
const CLIENT_PORT: u16 = 546;
/// Compact the journal after this many records past the table's size.
const COMPACT_EVERY: usize = 1024;

/// The server with its journal.
pub(super) struct Dhcp6Service {
    server: Dhcp6Server,
    journal: Journal6,
    switch: Arc<Switch>,
    mac: MacAddr,
    /// What the guard has bound, by binding: so a release or an expiry unbinds exactly it.
    bound: HashMap<(Vec<u8>, u32), (PortId, Ipv6Addr)>,
    /// Changes not yet taken by the DNS zone ([`Dhcp6Service::take_changes`]).
    changes: Vec<Change6>,
    /// The lease file's IPv6 section is behind the bindings.
    file_dirty: bool,
    /// The dnsmasq-format lease file (written here only when DHCPv4 is off; else the DHCPv4
    /// service writes it, this section after its lines).
    lease_file: PathBuf,
}

/// The server's parameters for `config` (`None` without `subnet6` or with `[dhcp6]` off).
pub(super) fn params(config: &Config, mac: MacAddr) -> Option<Dhcp6Params> {
    let v6 = config.ipv6.as_ref()?;
    if !v6.dhcp6.enabled {
        return None;
    }
    let v4 = dhcp_params(config);
    let ports: BTreeMap<u16, PortOwner> = v4
        .ports
        .iter()
        .map(|(p, b)| {
            let owner = PortOwner {
                host: b.host.clone(),
                guard_macs: b.guard_macs.clone(),
            };
            (*p, owner)
        })
        .collect();
    Some(Dhcp6Params {
        server_duid: Dhcp6Params::duid_ll(mac),
        subnet: v6.subnet,
        gateway: v6.gateway,
        pool: v6.dhcp6.pool,
        lease_time: u32::try_from(v6.dhcp6.lease_time.as_secs()).unwrap_or(u32::MAX),
        reservations: config
            .hosts
            .iter()
            .filter_map(|h| {
                Some(Reservation6 {
                    name: h.name.clone(),
                    duid: h.duid.clone(),
                    mac: h.mac,
                    ipv6: h.ipv6?,
                })
            })
            .collect(),
        ports,
        trusted_ports: v4.trusted_ports.to_vec(),
        dns: if config.dns.enabled {
            vec![v6.gateway]
        } else {
            Vec::new()
        },
        search: vec![config.network.domain.clone()],
        stateless: v6.ra.mode == crate::control::config::RaMode::Stateless,
    })
}

impl Dhcp6Service {
    /// Opens `<state_dir>/leases6.journal`, restores the bindings and binds their addresses.
    pub(super) fn open(
        config: &Config,
        mac: MacAddr,
        switch: Arc<Switch>,
    ) -> Result<Option<Dhcp6Service>, String> {
        let Some(params) = params(config, mac) else {
            return Ok(None);
        };
        let path = config.dhcp.state_dir.join("leases6.journal");
        let (journal, leases, stats) = Journal6::open(&path)
            .map_err(|e| format!("{}: cannot open the DHCPv6 journal: {e}", path.display()))?;
        if stats.corrupt > 0 {
            tracing::error!(journal = %path.display(), corrupt = stats.corrupt,
                "DHCPv6 journal lines with a bad CRC or syntax were skipped");
        }
        let now = epoch_now();
        let n = leases.len();
        let mut svc = Dhcp6Service {
            server: Dhcp6Server::new(params, []),
            journal,
            switch,
            mac,
            bound: HashMap::new(),
            changes: Vec::new(),
            file_dirty: true,
            lease_file: config.dhcp.lease_file.clone(),
        };
        let live: Vec<Lease6> = leases.into_iter().filter(|l| !l.has_expired(now)).collect();
        for l in &live {
            svc.apply(&Change6::Upsert(l.clone()));
        }
        svc.server = Dhcp6Server::new(svc.server.params().clone(), live);
        tracing::info!(journal = %path.display(), leases = n, "DHCPv6 leases restored");
        Ok(Some(svc))
    }

    /// The guard follows one change.
    fn apply(&mut self, change: &Change6) {
        match change {
            Change6::Upsert(l) => {
                let new = (PortId(l.port), l.ip);
                if let Some(old) = self.bound.insert((l.duid.clone(), l.iaid), new) {
                    if old != new {
                        self.switch.unbind_lease6(old.0, old.1);
                    }
                }
                self.switch.bind_lease6(new.0, new.1);
            }
            Change6::Remove { duid, iaid } => {
                if let Some((port, ip)) = self.bound.remove(&(duid.clone(), *iaid)) {
                    self.switch.unbind_lease6(port, ip);
                }
            }
        }
    }

    /// The reply frame to `frame` if it is a DHCPv6 client message to us and gets one.
    pub(super) fn handle(&mut self, ingress: PortId, frame: &[u8]) -> Option<Vec<u8>> {
        let ip = Ipv6View::parse(frame)?;
        let (src_port, SERVER_PORT, payload) = ip.udp()? else {
            return None;
        };
        let now = epoch_now();
        let outcome = match self.server.handle(payload, ingress.0, ip.src_mac, now) {
            Ok(o) => o,
            Err(reason) => {
                self.log_refusal(ingress, reason);
                return None;
            }
        };
        if let Err(e) = self.journal.append(&outcome.changes) {
            tracing::error!(error = %e, "DHCPv6 journal write failed: no REPLY sent");
            return None;
        }
        for c in &outcome.changes {
            self.apply(c);
        }
        self.file_dirty |= !outcome.changes.is_empty();
        self.changes.extend(outcome.changes);
        self.compact_if_due(now);
        let ends = Ends {
            src_mac: self.mac,
            dst_mac: ip.src_mac,
            src: ipv6::link_local(self.mac),
            dst: ip.src,
        };
        let mut out = Vec::with_capacity(outcome.reply.len() + 62);
        let dst_port = if src_port == 0 { CLIENT_PORT } else { src_port };
        ipv6::build_udp(&mut out, &ends, (SERVER_PORT, dst_port), 64, &outcome.reply);
        Some(out)
    }

    /// Ends the bindings expired by `now`: journaled, and unbound from the guard.
    pub(super) fn tick(&mut self, now: u64) {
        let gone = self.server.expire(now);
        if gone.is_empty() {
            return;
        }
        let changes: Vec<Change6> = gone
            .iter()
            .map(|l| Change6::Remove {
                duid: l.duid.clone(),
                iaid: l.iaid,
            })
            .collect();
        if let Err(e) = self.journal.append(&changes) {
            tracing::warn!(error = %e, "DHCPv6 journal: expiry not recorded");
        }
        for c in &changes {
            self.apply(c);
        }
        self.file_dirty = true;
        self.changes.extend(changes);
    }

    /// The binding changes since the last call (for the DNS zone, in the same thread).
    pub(super) fn take_changes(&mut self) -> Vec<Change6> {
        std::mem::take(&mut self.changes)
    }

    /// The live bindings at `now`, sorted by address.
    pub(super) fn live_leases(&self, now: u64) -> Vec<Lease6> {
        let mut v: Vec<Lease6> = self.server.leases(now).cloned().collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    /// The server's message counts.
    pub(super) fn counters(&self) -> Dhcp6Counters {
        self.server.counters()
    }

    /// The lease file's IPv6 section if it is behind the bindings (then it is not any more);
    /// `name` gives each binding's hostname.
    pub(super) fn take_file_section(
        &mut self,
        now: u64,
        name: impl Fn(&Lease6) -> Option<String>,
    ) -> Option<String> {
        if !std::mem::take(&mut self.file_dirty) {
            return None;
        }
        let p = self.server.params();
        Some(format_dnsmasq6(
            &p.server_duid,
            self.server.leases(now),
            now,
            name,
        ))
    }

    /// The names may have changed (a DHCPv4 name a binding borrows): rewrite the section.
    pub(super) fn mark_file_dirty(&mut self) {
        self.file_dirty |= !self.bound.is_empty();
    }

    /// The lease file, when DHCPv4 (which otherwise writes it) is off.
    pub(super) fn lease_file(&self) -> &std::path::Path {
        &self.lease_file
    }

    /// The hosts changed: new reservations and port owners; bindings stay.
    pub(super) fn set_hosts(&mut self, config: &Config) {
        if let Some(p) = params(config, self.mac) {
            self.server.set_params(p);
        }
    }

    fn compact_if_due(&mut self, now: u64) {
        if self.journal.records_since_compaction() < COMPACT_EVERY {
            return;
        }
        let live: Vec<Lease6> = self.server.leases(now).cloned().collect();
        if let Err(e) = self.journal.compact(live.iter()) {
            tracing::warn!(error = %e, "DHCPv6 journal compaction failed");
        }
    }

    fn log_refusal(&self, ingress: PortId, reason: Drop) {
        let port = self.switch.port_spec(ingress).name.clone();
        match reason {
            Drop::Impersonation | Drop::NotOwner => {
                tracing::info!(port = %port, reason = ?reason, "DHCPv6 message refused")
            }
            _ => tracing::debug!(port = %port, reason = ?reason, "DHCPv6 message dropped"),
        }
    }
}
