//! The lease journal's committer thread: group commit of the appliance's batches (one write,
//! one `fdatasync`), and only then their replies, through the [`ReplySink`]. See the parent
//! module for the life of a message.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::MAX_WAITING;
use crate::daemon::appliance::YIELD_EVERY;
use crate::daemon::capture::Dir;
use crate::daemon::privileges::take_service_nice;
use crate::daemon::table::Ports;
use crate::service::dhcp::{Journal, LeaseChange, LeaseTable};
use crate::switch::{PortId, Switch};
use crate::wire::VNET_HDR_LEN;

fn log_unpersisted(e: &io::Error) {
    tracing::error!(error = %e, "cannot persist a lease change: the reply is withheld \
        (free space or fix permissions in the state directory)");
}

/// Where the committer sends the replies a commit released: out of their ports, mirrored as
/// the appliance's output, as the appliance's own `send` does.
pub(in crate::daemon) struct ReplySink {
    ports: Arc<Ports>,
    switch: Arc<Switch>,
    service_port: PortId,
}

impl ReplySink {
    pub(in crate::daemon) fn new(
        ports: Arc<Ports>,
        switch: Arc<Switch>,
        service_port: PortId,
    ) -> ReplySink {
        ReplySink {
            ports,
            switch,
            service_port,
        }
    }

    /// Writes each frame (no virtio-net header) out of its port, under one look at the port
    /// table, yielding the CPU every [`YIELD_EVERY`] frames (a group released by one fsync can
    /// hold hundreds of ACKs).
    fn send_all(&self, replies: impl Iterator<Item = (PortId, Vec<u8>)>) {
        let table = self.ports.table();
        let mut out = Vec::with_capacity(1600);
        for (i, (port, frame)) in replies.enumerate() {
            if i > 0 && i % YIELD_EVERY == 0 {
                std::thread::yield_now();
            }
            out.clear();
            out.resize(VNET_HDR_LEN, 0);
            out.extend_from_slice(&frame);
            self.ports
                .capture
                .mirror(self.service_port, Dir::Rx, &frame);
            table.send_counted(&self.switch, port, &out);
        }
    }
}

/// Lease changes and the replies that acknowledge them: one batch of the appliance, or the
/// group the committer makes durable at once (every batch handed over since its last fsync).
#[derive(Default)]
pub(super) struct Batch {
    /// The whole table as it was before `changes`: the journal is rewritten from it
    /// (compaction, or the recovery after a failed write) before `changes` are appended.
    pub(super) snapshot: Option<LeaseTable>,
    pub(super) changes: Vec<LeaseChange>,
    pub(super) replies: Vec<(PortId, Vec<u8>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.changes.is_empty() && self.replies.is_empty()
    }

    /// Adds the next batch to this group. A snapshot in it is the table after every change
    /// so far (its own batch's included), so it replaces them.
    pub(super) fn absorb(&mut self, next: Batch) {
        if next.snapshot.is_some() {
            self.snapshot = next.snapshot;
            self.changes.clear();
        }
        self.changes.extend(next.changes);
        self.replies.extend(next.replies);
    }
}

/// The group that collects while the committer fsyncs the previous one.
#[derive(Default)]
struct NextGroup {
    group: Batch,
    /// The service is closing: commit what is there, then stop.
    closing: bool,
}

/// What the committer thread shares with the appliance.
#[derive(Default)]
pub(super) struct CommitShared {
    next: Mutex<NextGroup>,
    /// Signalled when a batch joins the next group, and when the committer takes a group.
    changed: Condvar,
    /// Replies withheld because their group could not be made durable.
    pub(super) unpersisted: AtomicU64,
    /// The last commit failed: the next batch carries a snapshot to rewrite the journal from.
    pub(super) broken: AtomicBool,
    /// Groups made durable (one fsync, or a compaction, each).
    groups: AtomicU64,
}

impl CommitShared {
    fn lock(&self) -> MutexGuard<'_, NextGroup> {
        self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread that owns the journal: appends, fsyncs, then releases replies.
pub(super) struct Committer {
    thread: Option<JoinHandle<()>>,
    pub(super) shared: Arc<CommitShared>,
}

impl Committer {
    /// `nice`: the nice value to take back if the thread inherits the workers'.
    pub(super) fn start(
        journal: Journal,
        sink: ReplySink,
        nice: Option<i32>,
    ) -> io::Result<Committer> {
        let shared = Arc::new(CommitShared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sy-dhcp-commit".into())
                .spawn(move || commit_loop(journal, &sink, &shared, nice, fault_delay()))?
        };
        Ok(Committer {
            thread: Some(thread),
            shared,
        })
    }

    /// Adds a batch to the group that the committer makes durable next. Never waits for the
    /// disk; waits only while that group already holds [`MAX_WAITING`] replies (the disk is
    /// far behind: backpressure instead of unbounded memory).
    pub(super) fn submit(&self, batch: Batch) {
        let mut next = self.shared.lock();
        while next.group.replies.len() >= MAX_WAITING && !next.closing {
            next = self
                .shared
                .changed
                .wait(next)
                .unwrap_or_else(PoisonError::into_inner);
        }
        next.group.absorb(batch);
        drop(next);
        self.shared.changed.notify_all();
    }
}

impl Drop for Committer {
    /// Commits what is waiting, then stops the thread.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::debug!(
            groups = self.shared.groups.load(Ordering::Relaxed),
            "lease journal closed"
        );
    }
}

/// Fault injection for the crash tests (`SWITCHYARD_FAULT_JOURNAL_DELAY_MS`): the committer
/// waits this long before each write and fsync, as a slow disk would. It widens the window in
/// which a server that acknowledged before its fsync would lose an acknowledged lease to a
/// `kill -9`, so that a test can see such a bug; it never changes what is acknowledged.
fn fault_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("SWITCHYARD_FAULT_JOURNAL_DELAY_MS")
        .ok()?
        .parse()
        .ok()?;
    tracing::warn!(ms, "fault injection: every lease journal commit is delayed");
    Some(std::time::Duration::from_millis(ms.min(10_000)))
}

/// The committer thread: takes everything handed over since its last fsync as one group,
/// writes it with one `write`, makes it durable with one `fdatasync`, and only then sends the
/// group's replies. While it waits for the disk, the next group collects.
fn commit_loop(
    mut journal: Journal,
    sink: &ReplySink,
    shared: &CommitShared,
    nice: Option<i32>,
    delay: Option<std::time::Duration>,
) {
    // The daemon's own priority, as the appliance's (see `Appliance::run`).
    take_service_nice(nice, "the lease journal's thread");
    loop {
        let group = {
            let mut next = shared.lock();
            while next.group.is_empty() && !next.closing {
                next = shared
                    .changed
                    .wait(next)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if next.group.is_empty() {
                return;
            }
            std::mem::take(&mut next.group)
        };
        // The appliance may be waiting for room (`Committer::submit`).
        shared.changed.notify_all();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        match persist(&mut journal, &group, shared.broken.load(Ordering::Relaxed)) {
            Ok(()) => {
                shared.broken.store(false, Ordering::Relaxed);
                shared.groups.fetch_add(1, Ordering::Relaxed);
                sink.send_all(group.replies.into_iter());
            }
            Err(e) => {
                shared.broken.store(true, Ordering::Relaxed);
                let withheld = group.replies.len() as u64;
                shared.unpersisted.fetch_add(withheld, Ordering::Relaxed);
                log_unpersisted(&e);
            }
        }
    }
}

/// Makes a group durable: rewrites the journal from its snapshot if it has one, appends its
/// changes, and fsyncs. After a failed commit (`broken`) the file may end in a torn line, so
/// nothing is appended until a snapshot has rewritten it.
pub(super) fn persist(journal: &mut Journal, group: &Batch, broken: bool) -> io::Result<()> {
    match &group.snapshot {
        Some(table) => journal.compact(table)?,
        None if broken => {
            return Err(io::Error::other(
                "an earlier write failed; the journal is rewritten whole at the next change",
            ))
        }
        None => {}
    }
    if !group.changes.is_empty() {
        journal.write_many(&group.changes)?;
        journal.sync()?;
    }
    Ok(())
}
