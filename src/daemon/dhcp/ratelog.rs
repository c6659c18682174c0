//! Rate-limited logging of refusals: per port and reason, the first one at once, then at most
//! one line every [`EVERY`] with the count of those not logged in between. A hostile guest that
//! sends a thousand forged messages a second costs the log one line per ten seconds, and an
//! operator still sees at once that a port started being refused.

use std::collections::HashMap;

/// At most one line per port and reason this often (seconds).
pub(in crate::daemon) const EVERY: u64 = 10;

/// Bounded: the keys are (port slot, reason), both from small fixed sets.
#[derive(Debug, Default)]
pub(in crate::daemon) struct RateLog {
    /// (port, reason) → (second of the last line, refusals since it).
    seen: HashMap<(u16, &'static str), (u64, u64)>,
}

impl RateLog {
    /// Records one refusal at `now` (seconds); returns `Some(n)` when a line is due, `n` the
    /// refusals it stands for (this one included), `None` when it is to be counted only.
    pub(in crate::daemon) fn note(
        &mut self,
        port: u16,
        reason: &'static str,
        now: u64,
    ) -> Option<u64> {
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
