//! The port table: the slots of the running switch's ports, and how a batch sees them.
//!
//! Theory of operation. The table has `[switch] max_ports` slots, plus the service port's fixed
//! slot after them; configured ports take the first slots in file order, hotplugged ones a free
//! slot (`hotplug.rs`). The slots sit behind a `RwLock` that a worker reads once per batch (one
//! port, up to `BATCH` frames) and that only `port add|del` and a reload write: a port unplugged
//! while a batch uses it waits for that batch's end. Every send out of a port goes through
//! [`Table::send_counted`], which mirrors it to a running capture and counts its outcome on the
//! switch; what a port's link reported is applied with [`Table::sync_link`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use super::capture;
use crate::port::netns::Netns;
use crate::port::{Epoll, PortError, PortIo, RxQueue, MAX_QUEUES};
use crate::switch::{DropLog, DropReason, PortId, Switch};
use crate::wire::VNET_HDR_LEN;

/// One port in its slot, and what it needs to live.
///
/// Field order is drop order: the port closes (a tap the daemon made vanishes, a socket file is
/// removed) before its namespace handle goes (and with the last handle, a namespace the daemon
/// created).
pub(super) struct Plugged {
    /// Shared so that the main thread's tick can run a port's slow link checks (a packet
    /// port's netlink lookup) without holding the table's lock; the slot holds the other
    /// reference, so an unplugged port closes once a tick running then is done with it.
    pub(super) port: Arc<dyn PortIo>,
    /// The worker whose epoll set watches `port` (its queue 0, and every fd past its queues).
    pub(super) worker: usize,
    /// `port.queues()`, read once.
    pub(super) queues: usize,
    /// How many workers there are (set with `worker`).
    workers: usize,
    pub(super) _netns: Option<Arc<Netns>>,
}

impl Plugged {
    /// `port` (living in `netns`) for a slot, given to worker 0 until [`Plugged::give_to`].
    pub(super) fn new(port: Arc<dyn PortIo>, netns: Option<Arc<Netns>>) -> Plugged {
        let queues = port.queues().clamp(1, MAX_QUEUES);
        Plugged {
            port,
            worker: 0,
            queues,
            workers: 1,
            _netns: netns,
        }
    }

    /// Gives the port to `worker` of `workers`: queue `i` of a multi-queue port goes to the
    /// `i`-th worker after it, so with as many queues as workers each worker reads one queue.
    pub(super) fn give_to(&mut self, worker: usize, workers: usize) {
        self.worker = worker;
        self.workers = workers.max(1);
    }

    /// The worker whose epoll set watches fd `i` of the port.
    fn worker_of_fd(&self, i: usize) -> usize {
        if i < self.queues {
            (self.worker + i) % self.workers
        } else {
            self.worker
        }
    }

    /// The queue worker `w` writes through (the one it reads, if it has one).
    pub(super) fn tx_queue(&self, w: usize) -> usize {
        (w + self.workers - self.worker % self.workers) % self.workers % self.queues
    }

    /// Whether the port has several queues (read by several workers).
    pub(super) fn is_multi_queue(&self) -> bool {
        self.queues > 1
    }

    /// Adds every fd of the port (in slot `slot`) to its worker's epoll set of `epolls`; on
    /// failure, none stays added.
    pub(super) fn watch(&self, epolls: &[Arc<Epoll>], slot: u16) -> io::Result<()> {
        let fds = self.port.fds();
        for (i, fd) in fds.iter().enumerate() {
            let epoll = &epolls[self.worker_of_fd(i) % epolls.len()];
            if let Err(e) = epoll.add(*fd, RxQueue(i as u16).token(slot)) {
                self.unwatch(epolls);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every fd of the port from every epoll set (an fd not there is fine).
    pub(super) fn unwatch(&self, epolls: &[Arc<Epoll>]) {
        for epoll in epolls {
            crate::port::unwatch(epoll, &*self.port);
        }
    }
}

/// Which reader lock of `Ports::readers` a read of queue `rxq` of a port with `queues` queues
/// takes, in slot `slot`: one per queue; `RxQueue::ANY` and a port's other fds take queue 0's.
pub(super) fn reader_index(slot: usize, queues: usize, rxq: RxQueue) -> usize {
    let q = usize::from(rxq.0);
    slot * MAX_QUEUES + if q < queues { q } else { 0 }
}

/// The slots of the running switch's ports, in `PortId` order (`None`: a free slot, and the
/// service port's), and the namespaces they live in.
pub(super) struct Ports {
    pub(super) slots: RwLock<Vec<Option<Plugged>>>,
    /// `switchyard capture`'s mirror: one atomic load per frame while no capture runs.
    pub(super) capture: Arc<capture::Capture>,
    /// `switchyard why`'s rings: the last drops of each port, filled only when one drops.
    pub(super) drops: DropLog,
    /// One reader at a time per port, by slot: its owner woken by epoll, or another worker
    /// collecting the reply to a frame it has just written there (see `Worker::collect_replies`).
    /// Whoever holds it reads and forwards a batch, so a port's frames keep their order.
    /// One lock per queue of a multi-queue port (`reader_index`): each worker reads its own.
    pub(super) readers: Box<[AtomicBool]>,
    /// Frames each worker read from each slot (`worker * slots + slot`), for the table at exit
    /// and the metrics: which workers a port's traffic went through. Sized by `set_workers`.
    worker_rx: std::sync::OnceLock<Box<[AtomicU64]>>,
    /// Frames read from each queue of each slot, indexed like `readers`.
    queue_rx: Box<[AtomicU64]>,
    /// Every namespace a port lives in, shared by the ports there.
    namespaces: Mutex<Vec<Weak<Netns>>>,
    /// Ports whose read failed, to be watched again after a backoff (`retry.rs`).
    pub(super) retries: Mutex<super::retry::Retries>,
}

/// The port table as one batch of a worker (or one appliance send) sees it.
pub(super) struct Table<'a> {
    pub(super) slots: RwLockReadGuard<'a, Vec<Option<Plugged>>>,
    pub(super) capture: &'a capture::Capture,
    pub(super) drops: &'a DropLog,
}

impl Ports {
    /// An empty table of `max_ports` slots and the service port's; `fill` plugs the ports.
    pub(super) fn new(max_ports: usize) -> Ports {
        Ports {
            slots: RwLock::new(Vec::new()),
            capture: Arc::new(capture::Capture::new(max_ports + 1)),
            drops: DropLog::new(max_ports + 1),
            readers: (0..(max_ports + 1) * MAX_QUEUES)
                .map(|_| AtomicBool::new(false))
                .collect(),
            worker_rx: std::sync::OnceLock::new(),
            queue_rx: (0..(max_ports + 1) * MAX_QUEUES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            namespaces: Mutex::new(Vec::new()),
            retries: Mutex::default(),
        }
    }

    /// Makes room for the per-worker counters of `workers` workers (once, at start).
    pub(super) fn set_workers(&self, workers: usize) {
        let slots = self.readers.len() / MAX_QUEUES;
        let _ = self
            .worker_rx
            .set((0..workers * slots).map(|_| AtomicU64::new(0)).collect());
    }

    /// Counts `frames` read by worker `w` from slot `slot`, through reader lock `lock`
    /// (`reader_index`: the queue).
    pub(super) fn count_worker_rx(&self, w: usize, slot: PortId, lock: usize, frames: u64) {
        let slots = self.readers.len() / MAX_QUEUES;
        if let Some(c) = self
            .worker_rx
            .get()
            .and_then(|c| c.get(w * slots + slot.index()))
        {
            c.fetch_add(frames, Ordering::Relaxed);
        }
        if let Some(c) = self.queue_rx.get(lock) {
            c.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// Frames read from queue `q` of slot `slot` (since start, like `worker_rx`).
    pub(super) fn queue_rx(&self, slot: PortId, q: usize) -> u64 {
        self.queue_rx
            .get(slot.index() * MAX_QUEUES + q)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Frames worker `w` has read from slot `slot` (since start: a slot's new port carries on
    /// from the one before).
    pub(super) fn worker_rx(&self, w: usize, slot: PortId) -> u64 {
        let slots = self.readers.len() / MAX_QUEUES;
        self.worker_rx
            .get()
            .and_then(|c| c.get(w * slots + slot.index()))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// How many workers `set_workers` made room for.
    pub(super) fn workers(&self) -> usize {
        let slots = self.readers.len() / MAX_QUEUES;
        self.worker_rx.get().map_or(0, |c| c.len() / slots)
    }

    /// Sets the whole table (the ports built at start, in their slots).
    pub(super) fn fill(&self, slots: Vec<Option<Plugged>>) {
        *self.slots.write().unwrap_or_else(PoisonError::into_inner) = slots;
    }

    /// The table for one batch: a read lock, held until the returned value is dropped.
    pub(super) fn table(&self) -> Table<'_> {
        Table {
            slots: self.slots.read().unwrap_or_else(PoisonError::into_inner),
            capture: &self.capture,
            drops: &self.drops,
        }
    }

    /// `Table::send_counted` for a single frame (the appliance's replies, loop probes).
    pub(super) fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        self.table().send_counted(switch, port, bytes);
    }

    /// Once a tick: packet ports look for their netdev (netlink, outside the table's lock:
    /// a slow answer never holds up a `port add` or, behind it, the workers' next batch);
    /// then every link's news reaches the switch.
    pub(super) fn tick(&self, switch: &Switch) {
        let ports: Vec<(PortId, Arc<dyn PortIo>)> = {
            let table = self.table();
            table
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((PortId(i as u16), Arc::clone(&p.as_ref()?.port))))
                .collect()
        };
        for (_, port) in &ports {
            port.tick();
        }
        drop(ports);
        let table = self.table();
        for i in 0..table.slots.len() {
            table.sync_link(switch, PortId(i as u16));
        }
    }

    /// Watches again, in its worker's epoll set, every port whose read failed and whose
    /// backoff has passed (`retry.rs`); the next read tells whether it recovered.
    pub(super) fn retry_failed(&self, switch: &Switch, epolls: &[Arc<Epoll>], now: Duration) {
        let due = self
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due(now);
        if due.is_empty() {
            return;
        }
        let table = self.table();
        for (id, _worker) in due {
            let Some(p) = table.plugged(id) else {
                continue;
            };
            match p.watch(epolls, id.0) {
                Ok(()) => {
                    switch.set_port_up(id, true);
                    tracing::info!(port = %switch.port_spec(id).name,
                        "port watched again after a read error");
                }
                Err(e) => tracing::warn!(port = %switch.port_spec(id).name, error = %e,
                    "cannot watch the port again"),
            }
        }
    }
}

impl Table<'_> {
    pub(super) fn port(&self, port: PortId) -> Option<&Arc<dyn PortIo>> {
        self.plugged(port).map(|p| &p.port)
    }

    pub(super) fn plugged(&self, port: PortId) -> Option<&Plugged> {
        self.slots.get(port.index()).and_then(Option::as_ref)
    }

    /// Writes `bytes` (virtio-net header + frame) out of `port`, never blocking, and counts the
    /// outcome on that port: tx on success, `tx_full` if its queue is full, `needs_offload` for a
    /// GSO/partial-checksum frame a socket port cannot take, `port_down` if its peer is gone (or
    /// the port was unplugged a moment ago), `tx_error` otherwise.
    pub(super) fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        self.send_counted_from(switch, port, None, bytes)
    }

    /// `send_counted` by worker `worker` (`None`: another thread), which writes through its own
    /// queue of a multi-queue port.
    pub(super) fn send_counted_from(
        &self,
        switch: &Switch,
        port: PortId,
        worker: Option<usize>,
        bytes: &[u8],
    ) {
        let Some(p) = self.plugged(port) else {
            return switch.count_drop(port, DropReason::PortDown);
        };
        let sent = match worker {
            Some(w) if p.is_multi_queue() => p.port.send_on(p.tx_queue(w), bytes),
            _ => p.port.send(bytes),
        };
        match sent {
            Ok(_) => {
                let frame = &bytes[bytes.len().min(VNET_HDR_LEN)..];
                self.capture.mirror(port, capture::Dir::Tx, frame);
                switch.count_tx(port, frame.len());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                switch.count_drop(port, DropReason::TxFull)
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                switch.count_drop(port, DropReason::NeedsOffload)
            }
            // A socket port whose peer left a moment ago (the switch learns it at its next read).
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                switch.count_drop(port, DropReason::PortDown)
            }
            Err(_) => switch.count_drop(port, DropReason::TxError),
        }
    }

    /// Reads one header + frame from queue `rxq` of `port`. What its link reported meanwhile (peer or netdev
    /// come or gone, counted events) is for the caller to apply (`sync_link`) before the frame
    /// is processed. An empty slot (a port unplugged after epoll reported it) has nothing to read.
    pub(super) fn recv(&self, port: PortId, rxq: RxQueue, buf: &mut [u8]) -> io::Result<usize> {
        let Some(p) = self.port(port) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        p.recv(rxq, buf)
    }

    /// The worker whose epoll set watches `port`, if a port is plugged there.
    pub(super) fn owner(&self, port: PortId) -> Option<usize> {
        self.slots.get(port.index())?.as_ref().map(|p| p.worker)
    }

    /// Whether `port` has several queues, read by several workers.
    pub(super) fn is_multi_queue(&self, port: PortId) -> bool {
        self.plugged(port).is_some_and(Plugged::is_multi_queue)
    }

    pub(super) fn sync_link(&self, switch: &Switch, port: PortId) {
        let Some(report) = self
            .port(port)
            .and_then(|p| p.link())
            .and_then(|l| l.take())
        else {
            return;
        };
        switch.set_port_up(port, report.up);
        switch.count_link_downs(port, report.downs);
        for _ in 0..report.bad_lengths {
            switch.count_drop(port, DropReason::BadLength);
        }
        for _ in 0..report.oversize {
            switch.count_drop(port, DropReason::Mtu);
        }
        for _ in 0..report.malformed {
            switch.count_drop(port, DropReason::Malformed);
        }
        for _ in 0..report.wrong_vni {
            switch.count_drop(port, DropReason::WrongVni);
        }
        for _ in 0..report.unknown_vtep {
            switch.count_drop(port, DropReason::UnknownVtep);
        }
    }

    /// Whether `port` takes GSO super-frames and partial checksums as they are; a port that does
    /// not gets plain frames from `wire::gso`. Each port kind says what it can take.
    pub(super) fn accepts_offloads(&self, port: PortId) -> bool {
        self.port(port).is_some_and(|p| p.offloads())
    }
}

impl Ports {
    /// The namespace `name`, shared with the ports already there, or opened (with `create`,
    /// created) if no port lives there yet.
    pub(super) fn netns(&self, name: &str, create: bool) -> Result<Arc<Netns>, PortError> {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        namespaces.retain(|n| n.strong_count() > 0);
        if let Some(ns) = namespaces
            .iter()
            .filter_map(Weak::upgrade)
            .find(|n| n.name() == name)
        {
            return Ok(ns);
        }
        let ns = Arc::new(if create {
            Netns::ensure(name)?
        } else {
            Netns::open(name)?
        });
        namespaces.push(Arc::downgrade(&ns));
        Ok(ns)
    }
}
