//! When a worker polls instead of sleeping (`[switch] poll_us`): never, for a fixed window after
//! it moved frames, or for an adaptive window. Pure: the worker passes every time in (as the
//! time since it started), so the rule is unit-tested without a clock.
//!
//! The adaptive rule (after the halt polling of KVM, `halt_poll_ns`). After a wait that moved
//! frames, the worker polls its epoll set without blocking for the current window, then
//! sleeps. When it next moves frames, the gap since the last ones says whether polling pays:
//! - frames found while polling: the window was long enough, and stays;
//! - frames after a sleep, but sooner than `MAX_WINDOW` after the last ones: a longer window
//!   would have caught them without a wake-up, so the window doubles (from `START_WINDOW`, up
//!   to `MAX_WINDOW`);
//! - frames after a sleep longer than `MAX_WINDOW`: the window just spent was wasted, so it
//!   halves (to zero below `MIN_WINDOW`), unless since the gap before it a poll found frames
//!   or a short gap made it grow.
//!
//! That exception keeps the window under a request/response pattern (the request after a
//! long gap, the reply a short one later, caught by a poll or growing the window until one
//! is): the window spent after the reply is the price of catching it, and halving there
//! would undo what the reply taught. A budget bounds what polling can cost: every microsecond spent polling
//! is charged to a token bucket that refills at `SHARE` of the elapsed time (at most
//! `BURST` saved up), and a window never runs past the tokens left. So a worker polls at most
//! about `SHARE` of a core over any stretch longer than `BURST`, and an idle worker (no frames,
//! no windows) polls not at all.

use std::time::Duration;

pub(super) use crate::control::config::PollMode;

/// The first window, and what a window that shrank to zero grows back from.
pub(super) const START_WINDOW: Duration = Duration::from_micros(16);
/// The longest window: gaps longer than this are not worth polling through.
pub(super) const MAX_WINDOW: Duration = Duration::from_micros(500);
/// A window shrunk below this is zero (the worker sleeps at once until a short gap is seen).
pub(super) const MIN_WINDOW: Duration = Duration::from_micros(4);
/// The share of a core polling may take, over any stretch longer than `BURST`: 1/`SHARE_DIV`.
pub(super) const SHARE_DIV: u32 = 10;
/// The most polling time the budget saves up while unused.
pub(super) const BURST: Duration = Duration::from_millis(10);

/// One worker's polling state.
#[derive(Debug)]
pub(super) struct Poller {
    mode: PollMode,
    /// The adaptive window now (`Fixed`: the fixed one).
    window: Duration,
    /// Polling time left in the budget (`Adaptive` only).
    tokens: Duration,
    /// When the budget was last refilled.
    refilled: Duration,
    /// While polling: up to when, and since when the polling time was last charged.
    polling: Option<(Duration, Duration)>,
    /// Whether the wait now under way is a poll (`begin_wait` said so).
    polled: bool,
    /// When the worker last moved frames.
    last_moved: Option<Duration>,
    /// Whether, since the last gap longer than `MAX_WINDOW`, a poll found frames or a short
    /// gap grew the window.
    paid: bool,
}

impl Poller {
    pub(super) fn new(mode: PollMode) -> Self {
        let window = match mode {
            PollMode::Off => Duration::ZERO,
            PollMode::Fixed(d) => d,
            PollMode::Adaptive => START_WINDOW,
        };
        Self {
            mode,
            window,
            tokens: BURST,
            refilled: Duration::ZERO,
            polling: None,
            polled: false,
            last_moved: None,
            paid: false,
        }
    }

    /// The current window (`Fixed`: the fixed one; `Off`: zero).
    #[cfg(test)]
    fn window(&self) -> Duration {
        self.window
    }

    /// Before a wait at `now`: whether it should return at once (a poll) rather than sleep.
    /// A window that is over ends here, and what is left of it is charged.
    pub(super) fn begin_wait(&mut self, now: Duration) -> bool {
        self.polled = match self.polling {
            Some((until, _)) if now < until => true,
            Some(_) => {
                self.charge(now);
                self.polling = None;
                false
            }
            None => false,
        };
        self.polled
    }

    /// After the wait: it returned at `woke`, then the worker moved frames (`moved`) or not,
    /// and was done at `now` (`now >= woke >=` the `begin_wait` before it).
    pub(super) fn after_wait(&mut self, woke: Duration, moved: bool, now: Duration) {
        if self.polled {
            self.charge(woke);
        }
        if !moved {
            return;
        }
        if self.mode == PollMode::Adaptive {
            if self.polled {
                self.paid = true;
            } else {
                self.adapt(woke);
            }
        }
        self.last_moved = Some(now);
        let len = match self.mode {
            PollMode::Off => Duration::ZERO,
            PollMode::Fixed(d) => d,
            PollMode::Adaptive => self.window.min(self.refill(now)),
        };
        self.polling = (!len.is_zero()).then_some((now + len, now));
    }

    /// Charges the polling time since the last charge, up to `at` (no further than the end of
    /// the window), to the budget.
    fn charge(&mut self, at: Duration) {
        if let Some((until, since)) = self.polling.as_mut() {
            let spent = at.min(*until).saturating_sub(*since);
            *since = at;
            if self.mode == PollMode::Adaptive {
                self.refill(at);
                self.tokens = self.tokens.saturating_sub(spent);
            }
        }
    }

    /// Adds `SHARE_DIV`th of the time since the last refill to the budget; returns the budget.
    fn refill(&mut self, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.refilled);
        self.tokens = (self.tokens + elapsed / SHARE_DIV).min(BURST);
        self.refilled = self.refilled.max(now);
        self.tokens
    }

    /// Frames after a sleep, at `woke`: would a longer window have caught them?
    fn adapt(&mut self, woke: Duration) {
        let Some(last) = self.last_moved else { return };
        if woke.saturating_sub(last) <= MAX_WINDOW {
            self.window = (self.window * 2).clamp(START_WINDOW, MAX_WINDOW);
            self.paid = true;
        } else if !std::mem::take(&mut self.paid) {
            self.window /= 2;
            if self.window < MIN_WINDOW {
                self.window = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// A worker over `arrivals` (sorted frame times) until `end`: a poll takes 1 µs, a sleep
    /// wakes 20 µs after the frame, moving frames takes 2 µs. Returns (frames a poll caught,
    /// frames that needed a wake-up, time spent polling).
    fn simulate(p: &mut Poller, arrivals: &[Duration], end: Duration) -> (usize, usize, Duration) {
        let (mut t, mut next) = (Duration::ZERO, 0);
        let (mut caught, mut woken, mut polled) = (0, 0, Duration::ZERO);
        while t < end {
            let poll = p.begin_wait(t);
            let woke = if poll {
                polled += US;
                t + US
            } else {
                match arrivals.get(next) {
                    Some(&a) => a.max(t) + 20 * US,
                    None => end,
                }
            };
            let mut moved = false;
            while arrivals.get(next).is_some_and(|&a| a <= woke) {
                moved = true;
                next += 1;
                if poll {
                    caught += 1;
                } else {
                    woken += 1;
                }
            }
            let now = if moved { woke + 2 * US } else { woke };
            p.after_wait(woke, moved, now);
            t = now;
        }
        (caught, woken, polled)
    }

    fn every(period: Duration, offset: Duration, end: Duration) -> Vec<Duration> {
        let n = (end.as_nanos() / period.as_nanos()) as u32;
        (0..n).map(|i| period * i + offset).collect()
    }

    #[test]
    fn off_never_polls_and_fixed_polls_its_window() {
        let mut off = Poller::new(PollMode::Off);
        off.after_wait(Duration::ZERO, true, US);
        assert!(!off.begin_wait(2 * US));

        let mut fixed = Poller::new(PollMode::Fixed(100 * US));
        assert!(!fixed.begin_wait(Duration::ZERO));
        fixed.after_wait(Duration::ZERO, true, 10 * US);
        assert!(fixed.begin_wait(50 * US));
        fixed.after_wait(51 * US, false, 51 * US);
        assert!(fixed.begin_wait(109 * US));
        fixed.after_wait(110 * US, false, 110 * US);
        assert!(!fixed.begin_wait(110 * US), "the window ended");
        assert_eq!(fixed.window(), 100 * US, "a fixed window does not adapt");
    }

    #[test]
    fn idle_worker_never_polls() {
        let mut p = Poller::new(PollMode::Adaptive);
        let end = Duration::from_secs(3);
        let (_, _, polled) = simulate(&mut p, &[], end);
        assert_eq!(polled, Duration::ZERO);
        // Nothing but wake-ups that moved nothing (a timeout, a spurious event): still none.
        for ms in 1..100 {
            let t = Duration::from_millis(ms);
            assert!(!p.begin_wait(t));
            p.after_wait(t, false, t);
        }
    }

    #[test]
    fn short_gaps_grow_the_window_to_the_cap_and_long_ones_shrink_it_to_zero() {
        let mut p = Poller::new(PollMode::Adaptive);
        let mut t = Duration::ZERO;
        p.after_wait(t, true, t);
        // Frames 450 µs after the last ones: after a sleep while the window is shorter, and it
        // doubles each time; then a poll catches them, and it stays.
        let mut windows = Vec::new();
        for _ in 0..7 {
            let next = t + 450 * US;
            while p.begin_wait(t) && t < next {
                t += US;
                p.after_wait(t, t >= next, t);
            }
            if t < next {
                t = next;
                p.after_wait(t, true, t);
            }
            windows.push(p.window().as_micros());
        }
        assert_eq!(windows, [32, 64, 128, 256, 500, 500, 500]);
        // Frames 10 ms apart: each window is wasted, so it halves each time (after the first
        // gap, which ends the stretch where polling paid), and ends at zero: then the worker
        // sleeps at once.
        let mut shrinks = 0;
        let long_gap = |p: &mut Poller, t: &mut Duration| {
            while p.begin_wait(*t) {
                *t += US;
                p.after_wait(*t, false, *t);
            }
            *t += 10_000 * US;
            p.after_wait(*t, true, *t);
        };
        long_gap(&mut p, &mut t);
        assert_eq!(p.window(), MAX_WINDOW);
        while !p.window().is_zero() {
            let before = p.window();
            long_gap(&mut p, &mut t);
            assert!(p.window() < before);
            shrinks += 1;
            assert!(shrinks < 100, "the window never reached zero");
        }
        assert_eq!(shrinks, 7, "500 µs halved to below 4 µs");
        assert!(!p.begin_wait(t));
        // A short gap again: it grows back from the start.
        t += 50 * US;
        p.after_wait(t, true, t);
        assert_eq!(p.window(), START_WINDOW);
    }

    #[test]
    fn a_poll_that_finds_frames_keeps_the_window() {
        let mut p = Poller::new(PollMode::Adaptive);
        p.after_wait(Duration::ZERO, true, Duration::ZERO);
        assert!(p.begin_wait(5 * US));
        p.after_wait(6 * US, true, 8 * US);
        assert_eq!(p.window(), START_WINDOW);
        assert!(
            p.begin_wait(9 * US),
            "a new window from the end of that work"
        );
    }

    #[test]
    fn request_response_replies_are_caught_cheaply() {
        // A ping every 2 ms whose reply comes back 60 µs after the request.
        let end = Duration::from_secs(1);
        let mut arrivals: Vec<_> = every(2000 * US, Duration::ZERO, end);
        arrivals.extend(every(2000 * US, 60 * US, end));
        arrivals.sort();
        let mut p = Poller::new(PollMode::Adaptive);
        let (caught, woken, polled) = simulate(&mut p, &arrivals, end);
        assert!(caught > 450, "replies caught by a poll: {caught} of 500");
        assert!(woken < 550, "{woken}");
        // The waste: a window after each reply (before the next request), bounded by the share.
        assert!(polled <= end / SHARE_DIV + BURST, "{polled:?}");
    }

    #[test]
    fn polling_never_passes_its_share_of_a_core() {
        // Frames every 300 µs: each would be caught by a 500 µs window, so polling would take
        // the whole core; the budget holds it to its share.
        let end = Duration::from_secs(2);
        let arrivals = every(300 * US, Duration::ZERO, end);
        let mut p = Poller::new(PollMode::Adaptive);
        let (caught, _, polled) = simulate(&mut p, &arrivals, end);
        assert!(caught > 0);
        assert!(polled <= end / SHARE_DIV + BURST, "{polled:?}");
        assert!(
            polled >= end / SHARE_DIV / 2,
            "the budget is used: {polled:?}"
        );
        // Fixed polling has no budget: it polls through every gap.
        let mut fixed = Poller::new(PollMode::Fixed(500 * US));
        let (_, woken, polled) = simulate(&mut fixed, &arrivals, end);
        assert!(polled > end * 9 / 10 && woken <= 1, "{polled:?} {woken}");
    }
}
