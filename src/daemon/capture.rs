//! Port mirroring for `switchyard capture`: a userspace switch has no kernel interface to run
//! tcpdump on, so the daemon copies one port's frames to the control connection that asked.
//!
//! Theory of operation. Every frame read from a port (`rx`: from its host into the switch) and
//! every frame written to one (`tx`: out of the switch to its host) passes [`Capture::mirror`].
//! With no capture running that is one relaxed atomic load and a predictable branch: the data
//! plane pays nothing else. While a capture runs, frames of the captured port are copied (up to
//! [`SNAPLEN`] bytes) into a bounded channel with `try_send`; when the reader falls behind,
//! frames are dropped and counted (`dropped`, and per port for `switchyard stats`), never
//! waited for. One capture runs at a time; a second one is refused as busy.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::switch::PortId;

/// Bytes kept of each mirrored frame (a whole 64 KiB GSO frame fits).
pub(super) const SNAPLEN: usize = crate::control::protocol::SNAPLEN as usize;
/// Frames queued between the data plane and the control connection.
const QUEUE: usize = 1024;

/// Which way a mirrored frame went, seen from the port's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// From the host into the switch.
    Rx,
    /// From the switch out to the host.
    Tx,
}

impl Dir {
    pub(super) fn name(self) -> &'static str {
        match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
        }
    }
}

/// One mirrored frame.
pub(super) struct Mirrored {
    pub(super) ts_us: u64,
    pub(super) dir: Dir,
    /// The frame's full length.
    pub(super) len: u32,
    /// At most `SNAPLEN` bytes of it.
    pub(super) data: Vec<u8>,
}

/// The mirror: off unless a capture is running.
#[derive(Debug)]
pub(super) struct Capture {
    active: AtomicBool,
    port: AtomicU16,
    tx: Mutex<Option<SyncSender<Mirrored>>>,
    /// Frames the current capture could not keep.
    dropped: AtomicU64,
    /// Frames every capture of each port could not keep, for `stats`.
    dropped_per_port: Box<[AtomicU64]>,
}

/// `start` refused: another capture is running.
#[derive(Debug)]
pub(super) struct Busy;

impl Capture {
    pub(super) fn new(ports: usize) -> Capture {
        Capture {
            active: AtomicBool::new(false),
            port: AtomicU16::new(0),
            tx: Mutex::new(None),
            dropped: AtomicU64::new(0),
            dropped_per_port: (0..ports).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Offers `frame` (Ethernet, no virtio-net header) seen on `port` to a running capture.
    #[inline]
    pub(super) fn mirror(&self, port: PortId, dir: Dir, frame: &[u8]) {
        if self.active.load(Relaxed) {
            self.mirror_active(port, dir, frame);
        }
    }

    #[cold]
    fn mirror_active(&self, port: PortId, dir: Dir, frame: &[u8]) {
        if self.port.load(Relaxed) != port.0 {
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else { return };
        let ts_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let m = Mirrored {
            ts_us,
            dir,
            len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data: frame[..frame.len().min(SNAPLEN)].to_vec(),
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(m) {
            self.dropped.fetch_add(1, Relaxed);
            if let Some(c) = self.dropped_per_port.get(port.index()) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    /// Starts mirroring `port`; the frames arrive on the returned receiver.
    pub(super) fn start(&self, port: PortId) -> Result<Receiver<Mirrored>, Busy> {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.is_some() {
            return Err(Busy);
        }
        let (sender, receiver) = sync_channel(QUEUE);
        *tx = Some(sender);
        self.dropped.store(0, Relaxed);
        self.port.store(port.0, Relaxed);
        self.active.store(true, Relaxed);
        Ok(receiver)
    }

    /// Stops the running capture; returns how many frames it dropped.
    pub(super) fn stop(&self) -> u64 {
        self.active.store(false, Relaxed);
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.dropped.load(Relaxed)
    }

    /// Frames captures of `port` dropped since the daemon started.
    pub(super) fn dropped_on(&self, port: PortId) -> u64 {
        self.dropped_per_port
            .get(port.index())
            .map_or(0, |c| c.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_only_the_captured_port_and_counts_overflow() {
        let c = Capture::new(3);
        c.mirror(PortId(1), Dir::Rx, b"before");
        let rx = c.start(PortId(1)).unwrap();
        assert!(c.start(PortId(2)).is_err(), "one capture at a time");
        c.mirror(PortId(2), Dir::Rx, b"other port");
        c.mirror(PortId(1), Dir::Tx, b"hello");
        let m = rx.try_recv().unwrap();
        assert_eq!(
            (m.dir, m.len, m.data.as_slice()),
            (Dir::Tx, 5, &b"hello"[..])
        );
        assert!(
            rx.try_recv().is_err(),
            "nothing from other ports or from before"
        );
        for _ in 0..QUEUE + 5 {
            c.mirror(PortId(1), Dir::Rx, b"x");
        }
        assert_eq!(c.stop(), 5);
        assert_eq!(c.dropped_on(PortId(1)), 5);
        c.mirror(PortId(1), Dir::Rx, b"after");
        assert_eq!(rx.try_iter().count(), QUEUE);
        assert!(c.start(PortId(2)).is_ok(), "a new capture after stop");
    }
}
