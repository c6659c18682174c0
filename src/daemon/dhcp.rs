//! The DHCP server's I/O inside the appliance thread: the journal (fsync before every ACK), the
//! dnsmasq-format lease file, and the guard's lease bindings.
//!
//! Life of a message: the appliance hands the UDP payload to the sans-IO `DhcpServer`; if the
//! outcome carries a lease change, the change joins the current batch and the reply waits.
//! After a batch of messages (whatever was queued, at most 64) the appliance calls `commit`,
//! which hands the batch (its changes and its waiting replies) to the committer thread and
//! returns at once: the appliance goes on answering (OFFERs, ARP, DNS, the next REQUESTs) while
//! the disk works. The committer takes every batch queued since its last fsync, appends their
//! records with one write, `fdatasync`s once (group commit, with one commit in flight while
//! the next group collects), and only then sends that group's replies, so a `kill -9` at any
//! moment loses no acknowledged lease. If the journal cannot be written (disk full, read-only
//! directory) the group's replies are withheld and the error logged: the clients retry, and
//! the server never acknowledges what it could not persist. After a failure the journal is
//! rewritten whole from the lease table (a failed append may have left a torn line that a
//! later record would be glued onto) before anything is acknowledged again. Every change also
//! updates the guard: a lease binds its address to the port the client is on, and unbinds it
//! when released, replaced, or expired.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

mod commit;

use super::privileges::take_service_nice;
use super::ratelog::RateLog;
use crate::control::config::{dhcp_params, Config};
use crate::service::dhcp::leases::write_atomically;
use crate::service::dhcp::{
    ClientKey, DhcpParams, DhcpServer, DropReason as DhcpDropReason, Journal, Lease, LeaseChange,
    Reply,
};
use crate::switch::{PortId, Switch};
pub(super) use commit::ReplySink;
use commit::{Batch, Committer};

/// Compact the journal after this many records, or four times the leases if that is more: a
/// compaction rewrites the whole table (a new file, its fsync and a rename, whose metadata
/// commit holds the group's fsync up for milliseconds), so its cost per record stays constant
/// as the table grows, and replay at start reads at most about five times the table.
const COMPACT_AFTER: usize = 10_000;
/// Replies waiting for the next fsync before `commit` waits for the committer (backpressure:
/// the appliance never runs more than this far ahead of the disk).
const MAX_WAITING: usize = 16_384;

/// Seconds since the Unix epoch (lease expiries are absolute, for the lease file).
pub(super) fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the replay of the journal found; a corrupt line (a bad CRC) is said loudly, since it
/// is a lease the server may have acknowledged and no longer knows.
fn log_replay(path: &std::path::Path, stats: &crate::service::dhcp::ReplayStats, leases: usize) {
    if stats.corrupt > 0 {
        tracing::error!(
            journal = %path.display(),
            corrupt = stats.corrupt,
            "lease journal lines with a bad CRC were skipped: the leases they held are \
             forgotten (their clients get a NAK or a new address at their next REQUEST); \
             check the disk"
        );
    }
    if stats.truncated_tail {
        tracing::warn!(journal = %path.display(), "the lease journal ended in a torn line (a crash mid-write): dropped");
    }
    tracing::info!(journal = %path.display(), ?stats, leases, "leases restored");
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
    /// Why the lease journal is not open (DHCP then acknowledges nothing); `None`: it is.
    pub(super) journal_error: Option<String>,
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

/// How often a journal that could not be opened is tried again (seconds).
const JOURNAL_RETRY_SECS: u64 = 10;

/// A lease journal that could not be opened at start, tried again now and then.
struct Missing {
    path: PathBuf,
    sink: ReplySink,
    nice: Option<i32>,
    error: String,
    next_try: u64,
}

/// The DHCP server with its persistence and its guard bindings.
pub(super) struct DhcpService {
    server: DhcpServer,
    /// Owns the journal, on its own thread; `None` while the journal could not be opened
    /// (`missing` says why): the server then acknowledges nothing.
    committer: Option<Committer>,
    missing: Option<Missing>,
    /// The changes and waiting replies since the last `commit`.
    batch: Batch,
    /// Records handed to the committer since the last snapshot (compaction).
    since_snapshot: usize,
    /// Writes the dnsmasq-format lease file, on its own thread.
    lease_file: LeaseFileWriter,
    switch: Arc<Switch>,
    /// Address bound in the guard for each client, and on which port.
    bound: HashMap<ClientKey, (PortId, Ipv4Addr)>,
    /// The lease file is behind the leases (written at the next tick its writer is free).
    lease_file_dirty: bool,
    /// Lease changes not yet taken by the DNS zone ([`DhcpService::take_changes`]).
    changes: Vec<LeaseChange>,
    /// The lease file's IPv6 section, after the DHCPv4 lines (empty without DHCPv6).
    v6_section: String,
    stats: DhcpStats,
    /// Refusals logged at info, rate-limited per port and reason.
    refusals: RateLog,
}

/// The dnsmasq-format lease file, written off the appliance thread. Each write is a new file,
/// its fsync, a rename and the directory's fsync: on this project's disk that took up to tens
/// of milliseconds, once a second under load, and the appliance thread answered nothing (no
/// OFFER, no ARP, no DNS) meanwhile. The appliance formats the text (CPU, O(leases)) and hands
/// it over; while a write is still going on it keeps the file dirty and hands over the next
/// tick's text instead, so the file lags the leases by a tick or two (the journal, not this
/// file, is what makes an ACK durable).
struct LeaseFileWriter {
    tx: Option<SyncSender<String>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseFileWriter {
    /// `nice`: the nice value to take back if the thread inherits the workers'.
    fn start(path: PathBuf, nice: Option<i32>) -> io::Result<LeaseFileWriter> {
        LeaseFileWriter::with(nice, move |text| {
            if let Err(e) = write_atomically(&path, text.as_bytes()) {
                tracing::warn!(file = %path.display(), error = %e, "cannot write the lease file");
            }
        })
    }

    /// A writer that runs `write` on each text handed over.
    fn with(
        nice: Option<i32>,
        mut write: impl FnMut(String) + Send + 'static,
    ) -> io::Result<LeaseFileWriter> {
        // Capacity 0: a text is taken only by a writer that is free to write it.
        let (tx, rx) = sync_channel::<String>(0);
        let thread = std::thread::Builder::new()
            .name("sy-lease-file".into())
            .spawn(move || {
                take_service_nice(nice, "the lease file's thread");
                for text in rx {
                    write(text);
                }
            })?;
        Ok(LeaseFileWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands `text` to the writer if it is free; false if it is still writing.
    fn offer(&self, text: String) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.try_send(text).is_ok())
    }

    /// Hands `text` to the writer, waiting for it to be free.
    fn hand_over(&self, text: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(text);
        }
    }
}

impl Drop for LeaseFileWriter {
    /// Lets the write in progress finish, then stops the thread.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl DhcpService {
    /// Opens (replays and compacts) the journal and restores the guard bindings of live leases.
    /// Starts the committer thread, which sends the replies it releases through `sink` (at
    /// `nice`, if given: see `privileges::Dropped::service_nice`).
    pub(super) fn open(
        params: DhcpParams,
        journal_path: PathBuf,
        lease_file: PathBuf,
        switch: Arc<Switch>,
        sink: ReplySink,
        nice: Option<i32>,
    ) -> Result<DhcpService, String> {
        let mut server = DhcpServer::new(params).map_err(|e| format!("DHCP settings: {e}"))?;
        let (committer, missing) = match Journal::open(&journal_path) {
            Ok((journal, table, stats)) => {
                log_replay(&journal_path, &stats, table.len());
                server = server.with_leases(table);
                let c = Committer::start(journal, sink, nice)
                    .map_err(|e| format!("starting the lease journal's thread: {e}"))?;
                (Some(c), None)
            }
            Err(e) => {
                // Degrade, don't die: the switch and the rest of the appliance run; DHCP
                // offers but acknowledges nothing it could not keep, until the journal opens.
                let error = format!("lease journal {}: {e}", journal_path.display());
                tracing::error!(
                    error = %error,
                    "DHCP acknowledges no lease until the lease journal can be opened \
                     (tried again every {JOURNAL_RETRY_SECS} s; check the state directory's \
                     space and permissions)"
                );
                // What can still be read keeps the guard bindings of the leases it holds.
                if let Ok((table, _)) = crate::service::dhcp::journal::read(&journal_path) {
                    server = server.with_leases(table);
                }
                server.set_can_persist(false);
                let missing = Missing {
                    path: journal_path,
                    sink,
                    nice,
                    error,
                    next_try: epoch_now() + JOURNAL_RETRY_SECS,
                };
                (None, Some(missing))
            }
        };
        // The first file is written here, before anyone reads it; later ones off this thread.
        if let Err(e) = server.leases().write_dnsmasq(&lease_file, epoch_now()) {
            tracing::warn!(file = %lease_file.display(), error = %e, "cannot write the lease file");
        }
        let lease_file = LeaseFileWriter::start(lease_file, nice)
            .map_err(|e| format!("starting the lease file's thread: {e}"))?;
        let mut svc = DhcpService {
            server,
            committer,
            missing,
            batch: Batch::default(),
            since_snapshot: 0,
            lease_file,
            switch,
            bound: HashMap::new(),
            lease_file_dirty: false,
            changes: Vec::new(),
            v6_section: String::new(),
            stats: DhcpStats::default(),
            refusals: RateLog::default(),
        };
        svc.sync_bindings(epoch_now());
        Ok(svc)
    }

    /// Handles one DHCP payload from `ingress`. Returns the reply and whether it waits for
    /// [`DhcpService::commit`] (then the caller hands the finished frame to [`DhcpService::wait`]):
    /// a reply that acknowledges a lease change must not leave before the change is on disk.
    pub(super) fn handle(&mut self, payload: &[u8], ingress: PortId) -> Option<(Reply, bool)> {
        let now = epoch_now();
        self.stats.received += 1;
        let outcome = match self.server.process(payload, ingress.0, now) {
            Ok(o) => o,
            Err(reason) => {
                if let Some(i) = DhcpDropReason::ALL.iter().position(|r| *r == reason) {
                    self.stats.drops[i] += 1;
                }
                self.log_refusal(ingress, reason, now);
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
        let Some(change) = outcome.change else {
            return outcome.reply.map(|r| (r, false));
        };
        self.apply_binding(&change);
        self.changes.push(change.clone());
        self.batch.changes.push(change);
        self.lease_file_dirty = true;
        outcome.reply.map(|r| (r, true))
    }

    /// Refusals an operator must see (the client gets nothing) at info, rate-limited per port
    /// and reason, with the port's name; the rest (malformed, not for us) at debug.
    fn log_refusal(&mut self, ingress: PortId, reason: DhcpDropReason, now: u64) {
        let port = self.switch.port_spec(ingress).name.clone();
        let loud = matches!(
            reason,
            DhcpDropReason::NoAddress
                | DhcpDropReason::PortLeaseLimit
                | DhcpDropReason::OffersFull
                | DhcpDropReason::RateLimited
                | DhcpDropReason::Impersonation
                | DhcpDropReason::NotOwner
                | DhcpDropReason::Relayed
        );
        if !loud {
            tracing::debug!(port = %port, reason = reason.as_str(), "DHCP message dropped");
            return;
        }
        if let Some(n) = self.refusals.note(ingress.0, reason.as_str(), now) {
            tracing::info!(
                port = %port,
                reason = reason.as_str(),
                count = n,
                "DHCP message refused (no reply sent)"
            );
        }
    }

    /// Holds the frame of a reply that `handle` said must wait, until its batch is durable.
    pub(super) fn wait(&mut self, port: PortId, frame: Vec<u8>) {
        self.batch.replies.push((port, frame));
    }

    pub(super) fn stats(&self) -> DhcpStats {
        DhcpStats {
            unpersisted: self
                .committer
                .as_ref()
                .map_or(0, |c| c.shared.unpersisted.load(Ordering::Relaxed)),
            journal_error: self.missing.as_ref().map(|m| m.error.clone()),
            ..self.stats.clone()
        }
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
        let params = dhcp_params(config);
        self.server
            .set_reservations(params.reservations)
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
        // The same for every port's host and guard: `dhcp_params` keys them by config index.
        let ports = params
            .ports
            .into_iter()
            .filter_map(|(i, binding)| {
                let port = config.ports.get(usize::from(i))?;
                Some((self.switch.port_by_name(&port.name)?.0, binding))
            })
            .collect();
        self.server.set_ports(ports);
        self.bound.clear();
        self.sync_bindings(now);
        Ok(())
    }

    /// Hands the changes handled since the last commit, and the replies waiting for them, to
    /// the committer (group commit: it fsyncs them, with whatever else is queued, before the
    /// replies leave), and returns without waiting for the disk. Now and then, and after a
    /// failed commit, the batch carries the whole table, from which the journal is rewritten.
    pub(super) fn commit(&mut self) {
        if self.batch.changes.is_empty() && self.batch.replies.is_empty() {
            return;
        }
        let Some(committer) = self.committer.as_ref() else {
            // No journal: the server made no change, so nothing waits; drop what is there.
            self.batch = Batch::default();
            return;
        };
        let mut batch = std::mem::take(&mut self.batch);
        self.since_snapshot += batch.changes.len();
        if self.since_snapshot >= COMPACT_AFTER.max(4 * self.server.leases().len())
            || committer.shared.broken.load(Ordering::Relaxed)
        {
            // The table already holds this batch's changes: they need no record of their own.
            self.since_snapshot = 0;
            batch.snapshot = Some(self.server.leases().clone());
            batch.changes.clear();
        }
        committer.submit(batch);
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
        self.retry_journal(now);
        self.sync_bindings(now);
        if self.lease_file_dirty {
            // Busy with the last one: this tick's text waits for the next tick.
            self.lease_file_dirty = !self.lease_file.offer(self.lease_file_text(now));
        }
    }

    /// Tries again to open a journal that could not be opened; once it opens, its replay is
    /// the lease table (nothing was granted meanwhile) and DHCP acknowledges leases again.
    fn retry_journal(&mut self, now: u64) {
        let Some(m) = self.missing.as_mut().filter(|m| now >= m.next_try) else {
            return;
        };
        m.next_try = now + JOURNAL_RETRY_SECS;
        let (journal, table, stats) = match Journal::open(&m.path) {
            Ok(opened) => opened,
            Err(e) => {
                let error = format!("lease journal {}: {e}", m.path.display());
                if error != m.error {
                    tracing::error!(error = %error, "the lease journal still cannot be opened");
                    m.error = error;
                }
                return;
            }
        };
        let Some(m) = self.missing.take() else { return };
        log_replay(&m.path, &stats, table.len());
        match Committer::start(journal, m.sink, m.nice) {
            Ok(c) => self.committer = Some(c),
            Err(e) => {
                tracing::error!(error = %e, "starting the lease journal's thread failed");
                return;
            }
        }
        self.server.replace_leases(table);
        self.server.set_can_persist(true);
        self.bound.clear();
        tracing::info!(journal = %m.path.display(), "lease journal open: DHCP acknowledges leases again");
    }

    /// The last `tick`, when the daemon stops: the lease file gets the final state even if
    /// the writer is busy (this waits for it).
    pub(super) fn finish(&mut self, now: u64) {
        self.sync_bindings(now);
        if self.lease_file_dirty {
            self.lease_file_dirty = false;
            self.lease_file.hand_over(self.lease_file_text(now));
        }
    }

    /// The lease file: the DHCPv4 lines, then the IPv6 section.
    fn lease_file_text(&self, now: u64) -> String {
        let mut text = self.server.leases().format_dnsmasq(now);
        text.push_str(&self.v6_section);
        text
    }

    /// The DHCPv6 bindings changed: the lease file's IPv6 section, written at the next tick.
    pub(super) fn set_v6_section(&mut self, section: String) {
        self.v6_section = section;
        self.lease_file_dirty = true;
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
    use super::commit::{persist, Batch};
    use super::{message_type, LeaseFileWriter};
    use crate::service::dhcp::journal;
    use crate::service::dhcp::{ClientKey, Journal, Lease, LeaseChange, LeaseTable};
    use crate::test_dir::TempDir;
    use crate::wire::MacAddr;

    fn lease(n: u8) -> Lease {
        let mac = MacAddr([2, 0, 0, 0, 1, n]);
        Lease {
            key: ClientKey::Mac(mac),
            mac,
            ip: std::net::Ipv4Addr::new(10, 0, 1, n),
            expires: Some(1_000_000 + u64::from(n)),
            hostname: None,
            client_id: None,
            port: 1,
        }
    }

    fn batch(leases: &[u8]) -> Batch {
        Batch {
            changes: leases
                .iter()
                .map(|&n| LeaseChange::Upsert(lease(n)))
                .collect(),
            ..Batch::default()
        }
    }

    fn ips(table: &LeaseTable) -> Vec<std::net::Ipv4Addr> {
        let mut v: Vec<_> = table.iter().map(|l| l.ip).collect();
        v.sort();
        v
    }

    /// A group is appended whole; a snapshot absorbed into it replaces the file and the changes
    /// before it, and the changes after it are appended; after a failure nothing is appended
    /// until a snapshot rewrote the file (a torn line there would swallow the next record).
    #[test]
    fn persist_appends_rewrites_from_snapshots_and_refuses_to_append_after_a_failure() {
        let dir = TempDir::new("sy-commit");
        let path = dir.0.join("leases.journal");
        let (mut j, _, _) = Journal::open(&path).unwrap();

        let mut group = batch(&[1, 2]);
        group.absorb(batch(&[3]));
        persist(&mut j, &group, false).unwrap();
        let (t, _) = journal::read(&path).unwrap();
        assert_eq!(t.len(), 3);

        // After a failure, a group without a snapshot is refused and nothing is written.
        let before = std::fs::read(&path).unwrap();
        assert!(persist(&mut j, &batch(&[4]), true).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);

        // A torn tail, as a failed append could leave; the snapshot's rewrite removes it.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"U 1000 02:00:00").unwrap();
        drop(f);
        let mut snap = LeaseTable::new();
        for n in [1, 2, 3, 4, 5] {
            snap.upsert(lease(n));
        }
        let mut group = batch(&[9]);
        group.absorb(Batch {
            snapshot: Some(snap),
            ..Batch::default()
        });
        group.absorb(batch(&[6]));
        assert_eq!(group.changes.len(), 1);
        persist(&mut j, &group, true).unwrap();
        let (t, stats) = journal::read(&path).unwrap();
        assert_eq!((stats.corrupt, stats.truncated_tail), (0, false));
        // 9 came before the snapshot, which does not hold it: the snapshot is the whole table
        // after its batch, so what it lacks had been removed by then.
        let want: Vec<_> = [1, 2, 3, 4, 5, 6]
            .iter()
            .map(|&n| std::net::Ipv4Addr::new(10, 0, 1, n))
            .collect();
        assert_eq!(ips(&t), want);
    }

    /// What is handed over is written; a writer busy with a text refuses the next offer
    /// instead of making the appliance wait; dropping it finishes the write in progress.
    #[test]
    fn the_lease_file_writer_writes_off_thread_and_finishes_on_drop() {
        use std::sync::mpsc::sync_channel;
        let (started, on_start) = sync_channel::<String>(8);
        let (release, go) = sync_channel::<()>(8);
        let w = LeaseFileWriter::with(None, move |text| {
            started.send(text).unwrap();
            go.recv().unwrap();
        })
        .unwrap();
        w.hand_over("first".into());
        assert_eq!(on_start.recv().unwrap(), "first");
        // Busy: refused at once, not queued.
        assert!(!w.offer("refused".into()));
        release.send(()).unwrap();
        w.hand_over("second".into());
        assert_eq!(on_start.recv().unwrap(), "second");
        release.send(()).unwrap();
        drop(w);
        assert!(on_start.try_recv().is_err(), "nothing else was written");

        let dir = TempDir::new("sy-lease-file");
        let path = dir.0.join("leases");
        let w = LeaseFileWriter::start(path.clone(), None).unwrap();
        w.hand_over("one\n".into());
        w.hand_over("two\n".into());
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

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
