//! Ports whose read failed, and when to try them again.
//!
//! A read error other than "nothing to read" (a netdev gone for a moment, EIO from a tap whose
//! namespace is being torn down, a socket error) used to take the port out of its worker's
//! epoll set for good: a hiccup cost a guest its network until someone re-plugged the port.
//! Now the worker takes the port down and out of epoll (so it does not spin on the error) and
//! notes it here; the main thread's tick watches it again once its backoff has passed, and the
//! next read tells. Each failure that follows a retry within [`HEALTHY_AFTER`] doubles the
//! backoff, from [`FIRST`] up to [`MAX`]; a port that read fine for that long starts again at
//! [`FIRST`].

use std::collections::HashMap;
use std::time::Duration;

use crate::switch::PortId;

pub(super) const FIRST: Duration = Duration::from_millis(500);
pub(super) const MAX: Duration = Duration::from_secs(30);
pub(super) const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The worker whose epoll set watched the port.
    worker: usize,
    backoff: Duration,
    /// When to watch it again; `None`: watched again at `since`, waiting to look healthy.
    due: Option<Duration>,
    since: Duration,
}

/// The schedule: pure, `now` is the daemon's monotonic time since start.
#[derive(Debug, Default)]
pub(super) struct Retries {
    ports: HashMap<PortId, Entry>,
}

impl Retries {
    /// `port` (watched by `worker`) failed a read at `now`; returns the wait before its retry.
    pub(super) fn failed(&mut self, port: PortId, worker: usize, now: Duration) -> Duration {
        let backoff = match self.ports.get(&port) {
            Some(e) if now.saturating_sub(e.since) < HEALTHY_AFTER => (e.backoff * 2).min(MAX),
            _ => FIRST,
        };
        self.ports.insert(
            port,
            Entry {
                worker,
                backoff,
                due: Some(now + backoff),
                since: now,
            },
        );
        backoff
    }

    /// The ports due for another try at `now`, with their worker; each is then waiting to
    /// look healthy (a failure soon after doubles its backoff).
    pub(super) fn due(&mut self, now: Duration) -> Vec<(PortId, usize)> {
        let mut out = Vec::new();
        self.ports.retain(|port, e| match e.due {
            Some(at) if at <= now => {
                out.push((*port, e.worker));
                e.due = None;
                e.since = now;
                true
            }
            Some(_) => true,
            // Healthy long enough: forgotten.
            None => now.saturating_sub(e.since) < HEALTHY_AFTER,
        });
        out
    }

    /// The port was unplugged: nothing to retry.
    pub(super) fn forget(&mut self, port: PortId) {
        self.ports.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PortId = PortId(3);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_failing_port_is_retried_with_a_doubling_backoff_that_resets_when_healthy() {
        let mut r = Retries::default();
        assert_eq!(r.failed(P, 1, secs(10.0)), FIRST);
        assert!(r.due(secs(10.4)).is_empty());
        assert_eq!(r.due(secs(10.5)), vec![(P, 1)]);
        assert!(r.due(secs(10.6)).is_empty(), "once");
        // Fails again right after the retry: twice the wait, and so on up to the cap.
        assert_eq!(r.failed(P, 1, secs(10.7)), FIRST * 2);
        assert_eq!(r.due(secs(11.7)), vec![(P, 1)]);
        let mut now = 11.7;
        let mut last = FIRST * 2;
        for _ in 0..10 {
            last = r.failed(P, 1, secs(now));
            now += last.as_secs_f64();
            assert_eq!(r.due(secs(now)), vec![(P, 1)]);
        }
        assert_eq!(last, MAX);
        // Healthy for a minute: forgotten, and the next failure starts again at FIRST.
        assert!(r.due(secs(now + 61.0)).is_empty());
        assert_eq!(r.failed(P, 1, secs(now + 62.0)), FIRST);
        r.forget(P);
        assert!(r.due(secs(now + 100.0)).is_empty());
    }
}
