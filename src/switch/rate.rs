//! Per-port bandwidth limits: token buckets in libvirt's units and meaning.
//!
//! A port may have an `ingress` limit (frames the switch receives from it: libvirt's
//! `<outbound>`, what a guest sends) and an `egress` limit (frames the switch sends to it:
//! libvirt's `<inbound>`), each `{ average, peak, burst }`: `average` and `peak` in KiB/s,
//! `burst` in KiB. A frame passes when both buckets hold its size in bytes:
//! - the *average* bucket fills at `average` and holds `burst` (default: 100 ms of `average`);
//! - the *peak* bucket, with `peak`, fills at `peak` and holds one largest frame: the burst is
//!   spent no faster than `peak`.
//!
//! Both hold at least [`MIN_BUCKET`] bytes, so a 64 KiB GSO super-frame, which is counted whole
//! (the bytes it stands for), can always pass once the bucket is full. A frame that does not fit
//! is dropped and counted `rate_limited` (policing, like `tc police` and libvirt's outbound
//! filter): TCP backs off to the rate; nothing waits in the switch.
//!
//! Pure and lock-free: the worker reads the clock once per batch and passes it in as `now`;
//! the state is atomics (a limit set live by the control plane holds from the next frame). Any
//! worker may send to a port, so two may refill or spend one egress bucket at once: the refill
//! is claimed by a compare-exchange on its timestamp (one of them adds the time passed), and a
//! spend is a `fetch_sub` that may take the bucket slightly below zero, which the next refills
//! pay back. The error is a frame or two per race, never a drift.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The smallest bucket: a 64 KiB GSO super-frame with its headers.
pub const MIN_BUCKET: u64 = 65_536 + 128;
/// Tokens are kept in nanobytes (bytes × 10⁹), so that a refill of a few microseconds at a low
/// rate loses nothing to rounding.
const NANO: i128 = 1_000_000_000;

/// One direction's limit, as configured (libvirt's units: KiB/s and KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// KiB/s (≥ 1).
    pub average: u64,
    /// KiB/s (≥ `average`), if any.
    pub peak: Option<u64>,
    /// KiB, if given.
    pub burst: Option<u64>,
}

impl RateLimit {
    /// The average bucket's rate (B/s) and size (bytes).
    fn average_bucket(&self) -> (u64, u64) {
        let rate = self.average.saturating_mul(1024);
        let size = match self.burst {
            Some(kib) => kib.saturating_mul(1024),
            None => rate / 10,
        };
        (rate, size.max(MIN_BUCKET))
    }
}

impl RateLimit {
    /// `"AVERAGE[,PEAK[,BURST]]"` (KiB/s, KiB/s, KiB) as the command line gives it, or
    /// `"none"` (no limit).
    pub fn parse_cli(s: &str) -> Result<Option<RateLimit>, String> {
        if s.trim() == "none" {
            return Ok(None);
        }
        let bad = || {
            format!(
                "limit {s:?}: want AVERAGE[,PEAK[,BURST]] in KiB/s, KiB/s and KiB (e.g. \
                 2500,5000,1024), or none"
            )
        };
        let mut n = s.split(',').map(|f| match f.trim() {
            "" => Ok(None),
            f => f
                .parse::<u64>()
                .ok()
                .filter(|v| (1..=1 << 30).contains(v))
                .map(Some)
                .ok_or_else(bad),
        });
        let average = n.next().transpose()?.flatten().ok_or_else(bad)?;
        let peak = n.next().transpose()?.flatten();
        let burst = n.next().transpose()?.flatten();
        if n.next().is_some() || peak.is_some_and(|p| p < average) {
            return Err(bad());
        }
        Ok(Some(RateLimit {
            average,
            peak,
            burst,
        }))
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "average {} KiB/s", self.average)?;
        if let Some(p) = self.peak {
            write!(f, ", peak {p} KiB/s")?;
        }
        if let Some(b) = self.burst {
            write!(f, ", burst {b} KiB")?;
        }
        Ok(())
    }
}

/// A port's two limits (`None`: unlimited that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortLimits {
    pub ingress: Option<RateLimit>,
    pub egress: Option<RateLimit>,
}

/// One token bucket in atomics (rate 0: no limit).
#[derive(Debug, Default)]
struct Bucket {
    /// B/s.
    rate: AtomicU64,
    /// Nanobytes.
    size: AtomicI64,
    tokens: AtomicI64,
    /// Nanoseconds of `now` at the last refill.
    last_ns: AtomicU64,
}

impl Bucket {
    fn set(&self, rate: u64, size: u64, now: Duration) {
        let size = (i128::from(size) * NANO).min(i128::from(i64::MAX)) as i64;
        self.rate.store(0, Relaxed);
        self.size.store(size, Relaxed);
        self.tokens.store(size, Relaxed);
        self.last_ns.store(nanos(now), Relaxed);
        self.rate.store(rate, Relaxed);
    }

    /// Whether `bytes` may pass at `now` (and if so they are spent).
    fn admit(&self, bytes: usize, now: Duration) -> bool {
        let rate = self.rate.load(Relaxed);
        if rate == 0 {
            return true;
        }
        let size = self.size.load(Relaxed);
        let now_ns = nanos(now);
        let last = self.last_ns.load(Relaxed);
        if now_ns > last
            && self
                .last_ns
                .compare_exchange(last, now_ns, Relaxed, Relaxed)
                .is_ok()
        {
            let add = (i128::from(now_ns - last) * i128::from(rate)).min(i128::from(size)) as i64;
            let _ = self
                .tokens
                .fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_add(add).min(size)));
        }
        let cost = (i128::from(bytes as u64) * NANO).min(i128::from(i64::MAX)) as i64;
        if self.tokens.load(Relaxed) < cost {
            return false;
        }
        self.tokens.fetch_sub(cost, Relaxed);
        true
    }

    /// Gives back what `admit` took (the other bucket refused the frame).
    fn refund(&self, bytes: usize) {
        if self.rate.load(Relaxed) != 0 {
            let cost = (i128::from(bytes as u64) * NANO).min(i128::from(i64::MAX)) as i64;
            self.tokens.fetch_add(cost, Relaxed);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One direction of a port: the average and the peak bucket.
#[derive(Debug, Default)]
pub(super) struct Meter {
    average: Bucket,
    peak: Bucket,
}

impl Meter {
    pub(super) fn set(&self, limit: Option<&RateLimit>, now: Duration) {
        match limit {
            None => {
                self.average.set(0, 0, now);
                self.peak.set(0, 0, now);
            }
            Some(l) => {
                let (rate, size) = l.average_bucket();
                self.average.set(rate, size, now);
                let peak = l.peak.map_or(0, |p| p.saturating_mul(1024));
                self.peak.set(peak, MIN_BUCKET, now);
            }
        }
    }

    pub(super) fn admit(&self, bytes: usize, now: Duration) -> bool {
        if !self.peak.admit(bytes, now) {
            return false;
        }
        if !self.average.admit(bytes, now) {
            self.peak.refund(bytes);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn passed(m: &Meter, frame: usize, step: Duration, until: Duration) -> usize {
        let mut now = Duration::ZERO;
        let mut bytes = 0;
        while now < until {
            if m.admit(frame, now) {
                bytes += frame;
            }
            now += step;
        }
        bytes
    }

    #[test]
    fn the_command_line_form() {
        let l = RateLimit::parse_cli("2500,5000,1024").unwrap().unwrap();
        assert_eq!((l.average, l.peak, l.burst), (2500, Some(5000), Some(1024)));
        let l = RateLimit::parse_cli("100,,64").unwrap().unwrap();
        assert_eq!((l.average, l.peak, l.burst), (100, None, Some(64)));
        assert_eq!(RateLimit::parse_cli("none"), Ok(None));
        for bad in ["", "0", "x", "10,5", "1,2,3,4", "-1"] {
            assert!(RateLimit::parse_cli(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unlimited_passes_everything() {
        let m = Meter::default();
        assert_eq!(passed(&m, 1500, MS, 1000 * MS), 1500 * 1000);
    }

    #[test]
    fn the_average_holds_over_time_after_the_burst() {
        let m = Meter::default();
        // 1000 KiB/s, burst 100 KiB, offered 1500 B every 0.1 ms (15 MB/s) for 10 s.
        let limit = RateLimit {
            average: 1000,
            peak: None,
            burst: Some(100),
        };
        m.set(Some(&limit), Duration::ZERO);
        let got = passed(&m, 1500, MS / 10, 10_000 * MS) as f64;
        let want = 1000.0 * 1024.0 * 10.0 + 100.0 * 1024.0;
        assert!((got - want).abs() / want < 0.01, "got {got} want {want}");
    }

    #[test]
    fn peak_paces_the_burst_and_a_super_frame_always_fits() {
        let m = Meter::default();
        let limit = RateLimit {
            average: 100,
            peak: Some(200),
            burst: Some(1),
        };
        m.set(Some(&limit), Duration::ZERO);
        assert!(
            m.admit(65_000, Duration::ZERO),
            "the bucket holds a super-frame"
        );
        // In the first second the peak (200 KiB/s) paces a full bucket, then the average.
        let got = passed(&m, 1000, MS, 1000 * MS);
        assert!(got <= 200 * 1024, "{got}");
        m.set(None, Duration::ZERO);
        assert!(m.admit(1 << 20, Duration::ZERO));
    }
}
