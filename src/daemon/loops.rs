//! Sends the loop probes (`switch::loops`) and logs the loops they find.
//!
//! Once a second the main thread writes one probe out of every configured port that is up and
//! not blocked (never to the appliance: it is not a wire). When `Switch::process` sees one come
//! back it blocks a port on its own; this side only notices and says which ports closed the loop.

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use super::table::Ports;
use crate::switch::{probe_frame, LoopKey, PortId, Switch};
use crate::wire::{MacAddr, VNET_HDR_LEN};

const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A fresh key for this run's probes, from the kernel's random pool (the time and pid if that
/// cannot be read: the key only has to be unknown to guests, and they cannot read either).
pub(super) fn random_key() -> LoopKey {
    let mut b = [0u8; 16];
    let ok = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    LoopKey([
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
    ])
}

pub(super) struct LoopProber {
    key: Option<LoopKey>,
    src: MacAddr,
    ports: usize,
    last: Option<Duration>,
    seen: u64,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

impl LoopProber {
    /// Probes for the first `ports` ports of `switch` (the configured ones), from `src`.
    pub(super) fn new(switch: &Switch, src: MacAddr, ports: usize) -> LoopProber {
        LoopProber {
            key: switch.loop_key(),
            src,
            ports,
            last: None,
            seen: switch.loops_seen(),
            buf: Vec::with_capacity(VNET_HDR_LEN + 60),
            frame: Vec::with_capacity(60),
        }
    }

    pub(super) fn tick(&mut self, switch: &Switch, ports: &Ports, now: Duration) {
        let Some(key) = self.key else {
            return;
        };
        let seen = switch.loops_seen();
        if seen != self.seen {
            self.seen = seen;
            for (port, with) in switch.blocked_ports(now) {
                tracing::warn!(
                    port = %switch.port_spec(port).name,
                    with = %switch.port_spec(with).name,
                    "loop: the switch's probe came back; port blocked for 30 s (loop_detected)"
                );
            }
        }
        if self.last.is_some_and(|t| now < t + PROBE_EVERY) {
            return;
        }
        self.last = Some(now);
        for i in 0..self.ports {
            let id = PortId(i as u16);
            if !switch.is_port_up(id) || switch.is_blocked(id, now) {
                continue;
            }
            probe_frame(key, self.src, id, &mut self.frame);
            self.buf.clear();
            self.buf.resize(VNET_HDR_LEN, 0);
            self.buf.extend_from_slice(&self.frame);
            ports.send_counted(switch, id, &self.buf);
        }
    }
}
