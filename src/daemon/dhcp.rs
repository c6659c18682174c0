//! The DHCP server's I/O inside the appliance thread: the journal (fsync before every ACK), the
//! dnsmasq-format lease file, and the guard's lease bindings.
//!
//! Life of a message: the appliance hands the UDP payload to the sans-IO `DhcpServer`; if the
//! outcome carries a lease change it is written to the journal, and the reply waits. After a
//! batch of messages (whatever was queued, at most 64) the appliance calls `commit`: one fsync
//! for the whole batch (group commit), and only then do the waiting replies leave, so a
//! `kill -9` at any moment loses no acknowledged lease. If the journal cannot be
//! written (disk full, read-only directory) the reply is withheld and the error logged: the
//! client retries, and the server never acknowledges what it could not persist. Every change
//! also updates the guard: a lease binds its address to the port the client is on, and unbinds
//! it when released, replaced, or expired.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::control::config::{dhcp_params, Config};
use crate::service::dhcp::{
    ClientKey, DhcpParams, DhcpServer, DropReason as DhcpDropReason, Journal, Lease, LeaseChange,
    Reply,
};
use crate::switch::{PortId, Switch};

/// Compact the journal after this many records.
const COMPACT_AFTER: usize = 10_000;

/// Seconds since the Unix epoch (lease expiries are absolute, for the lease file).
pub(super) fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_unpersisted(e: &io::Error) {
    tracing::error!(error = %e, "cannot persist a lease change: the reply is withheld \
        (free space or fix permissions in the state directory)");
}

/// What the DHCP server did with the messages it got, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DhcpStats {
    /// Client messages handed to the server.
    pub(super) received: u64,
    /// Replies by DHCP message type: offer, ack, nak, and anything else.
    pub(super) offers: u64,
    pub(super) acks: u64,
    pub(super) naks: u64,
    pub(super) other_replies: u64,
    /// Messages without a reply, by the server's reason (`DhcpDropReason::ALL` order).
    pub(super) drops: [u64; DhcpDropReason::ALL.len()],
    /// Replies withheld because the lease change could not be written to the journal.
    pub(super) unpersisted: u64,
}

/// The DHCP message type (option 53) of an encoded reply; `None` if it has none.
fn message_type(payload: &[u8]) -> Option<u8> {
    // Fixed BOOTP header (236 bytes), the magic cookie (4), then code/length/value options.
    let mut opts = payload.get(240..)?;
    while let [code, rest @ ..] = opts {
        match code {
            0 => opts = rest,
            255 => return None,
            _ => {
                let (&len, value) = rest.split_first()?;
                let value = value.get(..usize::from(len))?;
                if *code == 53 {
                    return value.first().copied();
                }
                opts = &rest[1 + usize::from(len)..];
            }
        }
    }
    None
}

/// The DHCP server with its persistence and its guard bindings.
pub(super) struct DhcpService {
    server: DhcpServer,
    journal: Journal,
    lease_file: PathBuf,
    switch: Arc<Switch>,
    /// Address bound in the guard for each client, and on which port.
    bound: HashMap<ClientKey, (PortId, Ipv4Addr)>,
    /// The lease file lags the journal by at most one tick.
    lease_file_dirty: bool,
    /// Lease changes not yet taken by the DNS zone ([`DhcpService::take_changes`]).
    changes: Vec<LeaseChange>,
    stats: DhcpStats,
}

impl DhcpService {
    /// Opens (replays and compacts) the journal and restores the guard bindings of live leases.
    pub(super) fn open(
        params: DhcpParams,
        journal_path: PathBuf,
        lease_file: PathBuf,
        switch: Arc<Switch>,
    ) -> Result<DhcpService, String> {
        let (journal, table, stats) = Journal::open(&journal_path)
            .map_err(|e| format!("lease journal {}: {e}", journal_path.display()))?;
        tracing::info!(journal = %journal_path.display(), ?stats, leases = table.len(), "leases restored");
        let server = DhcpServer::new(params)
            .map_err(|e| format!("DHCP settings: {e}"))?
            .with_leases(table);
        let mut svc = DhcpService {
            server,
            journal,
            lease_file,
            switch,
            bound: HashMap::new(),
            lease_file_dirty: false,
            changes: Vec::new(),
            stats: DhcpStats::default(),
        };
        svc.sync_bindings(epoch_now());
        svc.write_lease_file(epoch_now());
        Ok(svc)
    }

    /// Handles one DHCP payload from `ingress`. Returns the reply and whether it waits for
    /// [`DhcpService::commit`]: a reply that acknowledges a lease change must not leave before
    /// the change is on disk.
    pub(super) fn handle(&mut self, payload: &[u8], ingress: PortId) -> Option<(Reply, bool)> {
        let now = epoch_now();
        self.stats.received += 1;
        let outcome = match self.server.process(payload, ingress.0, now) {
            Ok(o) => o,
            Err(reason) => {
                if let Some(i) = DhcpDropReason::ALL.iter().position(|r| *r == reason) {
                    self.stats.drops[i] += 1;
                }
                tracing::debug!(
                    port = ingress.0,
                    reason = reason.as_str(),
                    "DHCP message dropped"
                );
                return None;
            }
        };
        if let Some(r) = &outcome.reply {
            match message_type(&r.payload) {
                Some(2) => self.stats.offers += 1,
                Some(5) => self.stats.acks += 1,
                Some(6) => self.stats.naks += 1,
                _ => self.stats.other_replies += 1,
            }
        }
        let Some(change) = &outcome.change else {
            return outcome.reply.map(|r| (r, false));
        };
        if let Err(e) = self.journal.write(change) {
            log_unpersisted(&e);
            self.stats.unpersisted += 1;
            return None;
        }
        self.apply_binding(change);
        self.changes.push(change.clone());
        self.lease_file_dirty = true;
        outcome.reply.map(|r| (r, true))
    }

    pub(super) fn stats(&self) -> DhcpStats {
        self.stats.clone()
    }

    /// The leases that have not expired at `now`, by address.
    pub(super) fn live_leases_sorted(&self, now: u64) -> Vec<Lease> {
        let mut live: Vec<Lease> = self
            .server
            .leases()
            .iter()
            .filter(|l| !l.has_expired(now))
            .cloned()
            .collect();
        live.sort_by_key(|l| l.ip);
        live
    }

    /// Replaces the reservations with `config`'s hosts, then re-binds every live lease in the
    /// guard (a port's policy may just have been rebuilt from the same config).
    pub(super) fn set_hosts(&mut self, config: &Config, now: u64) -> Result<(), String> {
        self.server
            .set_reservations(dhcp_params(config).reservations)
            .map_err(|e| e.to_string())?;
        // Trusted ports by the slot each has now (ports come and go: `port add|del`, reload).
        let trusted = config
            .ports
            .iter()
            .filter(|p| p.trusted)
            .filter_map(|p| self.switch.port_by_name(&p.name))
            .map(|id| id.0)
            .collect();
        self.server.set_trusted_ports(trusted);
        self.bound.clear();
        self.sync_bindings(now);
        Ok(())
    }

    /// Makes every change handled since the last commit durable (one fsync for a whole batch:
    /// group commit), compacting the journal now and then. On error the caller withholds every
    /// reply that waited for this commit.
    pub(super) fn commit(&mut self) -> io::Result<()> {
        let result = self.journal.sync().and_then(|()| {
            if self.journal.records_since_compaction() >= COMPACT_AFTER {
                self.journal.compact(self.server.leases())
            } else {
                Ok(())
            }
        });
        if let Err(e) = &result {
            log_unpersisted(e);
        }
        result
    }

    /// Updates the guard for one lease change: O(1), so the cost per message does not grow with
    /// the number of leases.
    fn apply_binding(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Upsert(lease) => {
                let new = (PortId(lease.port), lease.ip);
                if usize::from(lease.port) >= self.switch.port_count() {
                    return;
                }
                if let Some(old) = self.bound.insert(lease.key.clone(), new) {
                    if old != new {
                        self.switch.unbind_lease(old.0, old.1);
                    }
                }
                self.switch.bind_lease(new.0, new.1);
            }
            LeaseChange::Remove(key) => {
                if let Some((port, ip)) = self.bound.remove(key) {
                    self.switch.unbind_lease(port, ip);
                }
            }
        }
    }

    /// Once a second: drop the guard bindings of expired leases and rewrite the dnsmasq-format
    /// lease file if anything changed. Debounced so a burst of ACKs costs one O(leases) rewrite,
    /// not one per ACK (the journal, not this file, is what makes a lease durable).
    pub(super) fn tick(&mut self, now: u64) {
        self.sync_bindings(now);
        if self.lease_file_dirty {
            self.lease_file_dirty = false;
            self.write_lease_file(now);
        }
    }

    /// The lease changes handled since the last call (for the DNS zone, in the same thread).
    pub(super) fn take_changes(&mut self) -> Vec<LeaseChange> {
        std::mem::take(&mut self.changes)
    }

    /// The leases that are live at `now`.
    pub(super) fn live_leases(&self, now: u64) -> impl Iterator<Item = &Lease> {
        self.server
            .leases()
            .iter()
            .filter(move |l| !l.has_expired(now))
    }

    fn write_lease_file(&self, now: u64) {
        if let Err(e) = self.server.leases().write_dnsmasq(&self.lease_file, now) {
            tracing::warn!(file = %self.lease_file.display(), error = %e, "cannot write the lease file");
        }
    }

    /// Makes the guard's lease bindings match the live leases: O(leases), called at start and
    /// about once a second for expiries.
    fn sync_bindings(&mut self, now: u64) {
        let ports = self.switch.port_count();
        let mut live: HashMap<ClientKey, (PortId, Ipv4Addr)> = HashMap::new();
        for l in self.server.leases().iter() {
            if !l.has_expired(now) && usize::from(l.port) < ports {
                live.insert(l.key.clone(), (PortId(l.port), l.ip));
            }
        }
        for (key, (port, ip)) in &self.bound {
            if live.get(key) != Some(&(*port, *ip)) {
                self.switch.unbind_lease(*port, *ip);
            }
        }
        for (key, (port, ip)) in &live {
            if self.bound.get(key) != Some(&(*port, *ip)) {
                self.switch.bind_lease(*port, *ip);
            }
        }
        self.bound = live;
    }
}

#[cfg(test)]
mod tests {
    use super::message_type;

    #[test]
    fn finds_the_message_type_option() {
        let mut p = vec![0u8; 240];
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        p.extend_from_slice(&[0, 54, 4, 10, 0, 0, 1, 53, 1, 5, 255]);
        assert_eq!(message_type(&p), Some(5));
        let truncated = &p[..p.len() - 4];
        assert_eq!(message_type(truncated), None);
        assert_eq!(message_type(&p[..100]), None);
    }
}
