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
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use super::capture;
use crate::port::netns::Netns;
use crate::port::{Epoll, PortError, PortIo, RxQueue};
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
    /// The worker whose epoll set watches `port`.
    pub(super) worker: usize,
    pub(super) _netns: Option<Arc<Netns>>,
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
    pub(super) readers: Box<[AtomicBool]>,
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
            readers: (0..=max_ports).map(|_| AtomicBool::new(false)).collect(),
            namespaces: Mutex::new(Vec::new()),
            retries: Mutex::default(),
        }
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
        for (id, worker) in due {
            let (Some(p), Some(epoll)) = (table.port(id), epolls.get(worker)) else {
                continue;
            };
            match crate::port::watch(epoll, &**p, id.0) {
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
        self.slots
            .get(port.index())
            .and_then(Option::as_ref)
            .map(|p| &p.port)
    }

    /// Writes `bytes` (virtio-net header + frame) out of `port`, never blocking, and counts the
    /// outcome on that port: tx on success, `tx_full` if its queue is full, `needs_offload` for a
    /// GSO/partial-checksum frame a socket port cannot take, `port_down` if its peer is gone (or
    /// the port was unplugged a moment ago), `tx_error` otherwise.
    pub(super) fn send_counted(&self, switch: &Switch, port: PortId, bytes: &[u8]) {
        let Some(p) = self.port(port) else {
            return switch.count_drop(port, DropReason::PortDown);
        };
        match p.send(bytes) {
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
