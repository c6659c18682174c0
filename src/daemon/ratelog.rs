//! Rate-limited logging of refusals: per port and reason, the first one at once, then at most
//! one line every [`EVERY`] with the count of those not logged in between. A hostile guest that
//! sends a thousand forged messages a second costs the log one line per ten seconds, and an
//! operator still sees at once that a port started being refused. Used for DHCP refusals and
//! for the guard's enforced drops ([`GuardDropLog`]).

use std::collections::HashMap;

use crate::switch::{DropReason, PortId, Switch};

/// The drop reasons that are the guard's (or the appliance share's) refusals of a guest.
const GUARD_REASONS: [DropReason; 10] = [
    DropReason::SpoofedMac,
    DropReason::SpoofedIp,
    DropReason::SpoofedArp,
    DropReason::SpoofedNd,
    DropReason::RogueDhcp,
    DropReason::RogueRa,
    DropReason::VlanNotAllowed,
    DropReason::Malformed,
    DropReason::NotServed,
    DropReason::ServiceLimit,
];

/// Logs, at info, what an enforcing guard dropped, from the counters once a tick: per port and
/// reason at most one line every [`EVERY`] seconds, with the count since the last line (the
/// monitor-mode log's twin, for ports that enforce).
#[derive(Debug, Default)]
pub(super) struct GuardDropLog {
    /// (port, reason) → the counter's value when last looked at, and the drops not yet logged.
    seen: HashMap<(u16, &'static str), (u64, u64)>,
    log: RateLog,
}

impl GuardDropLog {
    /// One look at every port's counters at `now` (seconds).
    pub(super) fn tick(&mut self, switch: &Switch, now: u64) {
        for id in switch.present_ports() {
            let c = switch.counters(id);
            for reason in GUARD_REASONS {
                let total = c.drops(reason);
                let (last, pending) = self.seen.entry((id.0, reason.name())).or_insert((0, 0));
                // A new port in a reused slot: its counters started again.
                let new = total.checked_sub(*last).unwrap_or(total);
                *last = total;
                if new == 0 {
                    continue;
                }
                *pending += new;
                if self.log.note(id.0, reason.name(), now).is_some() {
                    tracing::info!(
                        port = %switch.port_spec(PortId(id.0)).name,
                        reason = reason.name(),
                        frames = *pending,
                        "guard dropped frames"
                    );
                    *pending = 0;
                }
            }
        }
    }
}

/// At most one line per port and reason this often (seconds).
pub(super) const EVERY: u64 = 10;

/// Bounded: the keys are (port slot, reason), both from small fixed sets.
#[derive(Debug, Default)]
pub(super) struct RateLog {
    /// (port, reason) → (second of the last line, refusals since it).
    seen: HashMap<(u16, &'static str), (u64, u64)>,
}

impl RateLog {
    /// Records one refusal at `now` (seconds); returns `Some(n)` when a line is due, `n` the
    /// refusals it stands for (this one included), `None` when it is to be counted only.
    pub(super) fn note(&mut self, port: u16, reason: &'static str, now: u64) -> Option<u64> {
        match self.seen.get_mut(&(port, reason)) {
            Some((last, n)) if now < last.saturating_add(EVERY) => {
                *n += 1;
                None
            }
            Some((last, n)) => {
                let total = *n + 1;
                (*last, *n) = (now, 0);
                Some(total)
            }
            None => {
                self.seen.insert((port, reason), (now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_line_per_period_with_the_count() {
        let mut r = RateLog::default();
        assert_eq!(r.note(1, "a", 100), Some(1));
        for _ in 0..50 {
            assert_eq!(r.note(1, "a", 105), None);
        }
        // Another port or reason has its own budget.
        assert_eq!(r.note(2, "a", 105), Some(1));
        assert_eq!(r.note(1, "b", 105), Some(1));
        assert_eq!(r.note(1, "a", 110), Some(51));
        assert_eq!(r.note(1, "a", 111), None);
    }
}
