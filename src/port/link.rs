//! A port's link state and the events the daemon counts, shared between the thread that notices
//! them (the worker reading the port, or the main thread's tick) and the switch's counters.
//!
//! # Theory of operation
//!
//! Ports whose other end can come and go (a packet port's netdev, a stream port's peer, a dgram
//! port's learned peer) keep a [`LinkState`]: whether the link is up, and counts of what happened
//! since the daemon last looked (link losses, peers cut off for a bad length, frames too large
//! for the daemon's buffer). Noting an event is a few relaxed atomics and one flag; the daemon
//! checks the flag after every receive and once a tick ([`LinkState::take`], one relaxed load
//! when nothing happened), and applies what it finds to the switch: the port's up/down state
//! and its counters. The port layer never sees the switch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Up/down and pending event counts of one port.
#[derive(Debug)]
pub struct LinkState {
    up: AtomicBool,
    changed: AtomicBool,
    downs: AtomicU64,
    bad_lengths: AtomicU64,
    oversize: AtomicU64,
    malformed: AtomicU64,
    wrong_vni: AtomicU64,
    unknown_vtep: AtomicU64,
}

/// What happened to a port since the last [`LinkState::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkReport {
    /// The link's state now.
    pub up: bool,
    /// Times the link went down (a netdev vanished, a peer disconnected or was cut off).
    pub downs: u64,
    /// Stream peers disconnected for a length prefix out of range.
    pub bad_lengths: u64,
    /// Frames received whole but larger than the daemon's frame buffer, dropped.
    pub oversize: u64,
    /// Datagrams that carried no frame the port could take (a VXLAN header without its I flag,
    /// a runt), dropped.
    pub malformed: u64,
    /// VXLAN packets for another VNI, dropped.
    pub wrong_vni: u64,
    /// VXLAN packets from an address that is none of the port's remote VTEPs, dropped.
    pub unknown_vtep: u64,
}

impl LinkState {
    /// A link in state `up`, reported once to the first `take` so the switch starts in sync.
    pub fn new(up: bool) -> LinkState {
        LinkState {
            up: AtomicBool::new(up),
            changed: AtomicBool::new(true),
            downs: AtomicU64::new(0),
            bad_lengths: AtomicU64::new(0),
            oversize: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            wrong_vni: AtomicU64::new(0),
            unknown_vtep: AtomicU64::new(0),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Brings the link up or down; going down counts one loss.
    pub fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Relaxed);
        if was && !up {
            self.downs.fetch_add(1, Relaxed);
        }
        if was != up {
            self.changed.store(true, Relaxed);
        }
    }

    /// A stream peer sent a length prefix out of range (and is being disconnected).
    pub fn note_bad_length(&self) {
        self.bad_lengths.fetch_add(1, Relaxed);
        self.changed.store(true, Relaxed);
    }

    /// A frame larger than the caller's buffer was received and dropped.
    pub fn note_oversize(&self) {
        self.oversize.fetch_add(1, Relaxed);
        self.changed.store(true, Relaxed);
    }

    /// A datagram without a frame the port could take was dropped.
    pub fn note_malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
        self.changed.store(true, Relaxed);
    }

    /// A VXLAN packet for another VNI was dropped.
    pub fn note_wrong_vni(&self) {
        self.wrong_vni.fetch_add(1, Relaxed);
        self.changed.store(true, Relaxed);
    }

    /// A VXLAN packet from an unknown VTEP was dropped.
    pub fn note_unknown_vtep(&self) {
        self.unknown_vtep.fetch_add(1, Relaxed);
        self.changed.store(true, Relaxed);
    }

    /// What happened since the last call, or `None` (one relaxed load) if nothing did.
    pub fn take(&self) -> Option<LinkReport> {
        if !self.changed.load(Relaxed) || !self.changed.swap(false, Relaxed) {
            return None;
        }
        Some(LinkReport {
            up: self.up.load(Relaxed),
            downs: self.downs.swap(0, Relaxed),
            bad_lengths: self.bad_lengths.swap(0, Relaxed),
            oversize: self.oversize.swap(0, Relaxed),
            malformed: self.malformed.swap(0, Relaxed),
            wrong_vni: self.wrong_vni.swap(0, Relaxed),
            unknown_vtep: self.unknown_vtep.swap(0, Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_take_reports_the_initial_state_then_nothing() {
        let l = LinkState::new(false);
        assert_eq!(l.take(), Some(LinkReport::default()));
        assert_eq!(l.take(), None);
    }

    #[test]
    fn events_are_reported_once() {
        let l = LinkState::new(true);
        l.take();
        l.set_up(true);
        assert_eq!(l.take(), None, "no change, no report");
        l.set_up(false);
        l.note_bad_length();
        l.note_oversize();
        l.note_oversize();
        l.note_wrong_vni();
        l.note_unknown_vtep();
        l.note_unknown_vtep();
        l.note_malformed();
        let r = l.take().unwrap();
        assert_eq!((r.up, r.downs, r.bad_lengths, r.oversize), (false, 1, 1, 2));
        assert_eq!((r.malformed, r.wrong_vni, r.unknown_vtep), (1, 1, 2));
        assert_eq!(l.take(), None);
        l.set_up(false);
        assert_eq!(l.take(), None, "down again is not a second loss");
        l.set_up(true);
        assert_eq!(l.take().map(|r| (r.up, r.downs)), Some((true, 0)));
    }
}
