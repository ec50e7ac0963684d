//! The one retry policy: exponential backoff from a first wait, doubled at each
//! retry, capped; jittered when many boxes could retry together. Used by the
//! transport (between the attempts of one request) and the daemon (between license
//! validations that gave no valid answer). Telemetry's pace (`telemetry::pace`) is
//! congestion control on a shared window, not a retry: it has its own rule.

use std::time::Duration;

/// Doublings counted at most: past them the cap has long been reached.
const MAX_DOUBLINGS: u32 = 16;

/// An exponential backoff: `first`, `2 × first`, `4 × first`… never above `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff that starts at `first` and never waits more than `max`.
    pub(crate) const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before retry `n` (0: the first retry).
    pub(crate) fn delay(&self, n: u32) -> Duration {
        self.scaled(n, 1.0)
    }

    /// [`Backoff::delay`] times a factor in [0.5, 1.5) drawn from `random` (in [0, 1),
    /// the injected clock's): boxes that failed together do not retry together.
    pub(crate) fn jittered(&self, n: u32, random: f64) -> Duration {
        self.scaled(n, 0.5 + random.clamp(0.0, 1.0))
    }

    fn scaled(&self, n: u32, factor: f64) -> Duration {
        let f = self.first.as_secs_f64() * 2f64.powi(n.min(MAX_DOUBLINGS) as i32) * factor;
        Duration::from_secs_f64(f.min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters() {
        let s = Duration::from_secs;
        let b = Backoff::new(s(5), s(300));
        let waits: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.delay(u32::MAX), s(300));
        assert_eq!(b.jittered(0, 0.0), Duration::from_millis(2500));
        assert_eq!(b.jittered(1, 0.5), s(10));
        assert!(b.jittered(2, 0.999_999) < s(30));
        assert_eq!(b.jittered(9, 0.9), s(300), "the cap holds after the jitter");
        assert_eq!(
            Backoff::new(Duration::ZERO, s(300)).delay(5),
            Duration::ZERO
        );
    }
}
