//! The daemon's telemetry pace when the backend's throttler is shared.
//!
//! The real backend counts 60 requests a minute per client address and route, and
//! behind its Traefik without `trust proxy` every box in the field is one address
//! (docs/telemetry.md, "For CyberSensei's operators"). A box does not know how many
//! others share the budget; the throttler's `X-RateLimit-Remaining` on each answer
//! says how full the shared window is. Two loops read it:
//! - `Pace`: the gap between two fresh samples (measured and posted together),
//!   never shorter than `telemetry.interval`; it widens when the window is nearly
//!   full and narrows back when it has room, so a fleet settles below the limit;
//! - `drain_gap`: the paced drain of a backlog, which yields first: it uses only
//!   what the fresh samples leave (more than half of the window free).
//!
//! Pure functions of what the throttler said: `examples/fleet_model.rs` runs these
//! same functions for 1,000 boxes against the simulator's throttler.

use std::time::Duration;

/// The widest gap between two fresh samples: the fleet's size the shared limit can
/// hear every `MAX_POST_GAP` is 60 × 120 = 7,200 boxes.
pub const MAX_POST_GAP: Duration = Duration::from_secs(2 * 3600);
/// The daemon's fastest pace when draining a backlog: one queued sample per gap.
pub const DRAIN_GAP: Duration = Duration::from_secs(5);
/// The gap a drain starts at (slow start: a site's boxes all come back together).
pub const DRAIN_START_GAP: Duration = Duration::from_secs(60);
/// The drain's slowest pace.
pub const MAX_DRAIN_GAP: Duration = Duration::from_secs(600);

/// What the throttler said of the shared window after a request: (remaining, limit).
pub type Budget = Option<(u64, u64)>;

/// The gap between two fresh samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    gap: Duration,
}

impl Pace {
    /// Starts at `interval` (a box alone posts at its configured pace).
    pub fn new(interval: Duration) -> Pace {
        Pace { gap: interval }
    }

    /// The current gap, at least `interval`.
    pub fn gap(&self, interval: Duration) -> Duration {
        self.gap.max(interval)
    }

    /// After a fresh sample's post: widen fast when the window is nearly full or
    /// refused us (x2 on a 429, x1.5 under an eighth left, x1.15 under a quarter),
    /// narrow gently (x0.85) when more than half is left, else hold.
    pub fn after_post(&mut self, interval: Duration, budget: Budget, throttled: bool) {
        let g = self.gap.max(interval).as_secs_f64();
        let g = match budget {
            _ if throttled => g * 2.0,
            Some((r, l)) if r.saturating_mul(8) < l => g * 1.5,
            Some((r, l)) if r.saturating_mul(4) < l => g * 1.15,
            Some((r, l)) if r.saturating_mul(2) >= l => g * 0.85,
            _ => g,
        };
        let max = MAX_POST_GAP.max(interval).as_secs_f64();
        self.gap = Duration::from_secs_f64(g.clamp(interval.as_secs_f64(), max));
    }
}

/// The next gap of the paced drain: it yields to fresh samples, using only a window
/// more than half free (x2 on a 429 or under a quarter left, x1.25 under a half,
/// -1/8 otherwise), within [`DRAIN_GAP`, `MAX_DRAIN_GAP`].
pub fn drain_gap(gap: Duration, budget: Budget, throttled: bool) -> Duration {
    let g = gap.as_secs_f64();
    let g = match budget {
        _ if throttled => g * 2.0,
        Some((r, l)) if r.saturating_mul(4) < l => g * 2.0,
        Some((r, l)) if r.saturating_mul(2) < l => g * 1.25,
        _ => g * 7.0 / 8.0,
    };
    Duration::from_secs_f64(g.clamp(DRAIN_GAP.as_secs_f64(), MAX_DRAIN_GAP.as_secs_f64()))
}

/// Whether a budget leaves room for a queued sample after a fresh one (more than
/// half of the window free, or nothing said).
pub fn spare(budget: Budget) -> bool {
    budget.is_none_or(|(r, l)| r.saturating_mul(2) >= l)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_drain_yields_fast_and_comes_back_gently() {
        let g = S(40);
        let b = |r| Some((r, 60));
        assert_eq!(drain_gap(g, b(50), false), S(35));
        assert_eq!(drain_gap(g, b(20), false), S(50));
        assert_eq!(drain_gap(g, b(10), false), S(80));
        assert_eq!(drain_gap(g, b(50), true), S(80));
        assert_eq!(drain_gap(DRAIN_GAP, None, false), DRAIN_GAP);
        assert_eq!(drain_gap(MAX_DRAIN_GAP, b(0), false), MAX_DRAIN_GAP);
    }

    #[test]
    fn the_pace_widens_on_a_full_window_and_returns_to_the_interval() {
        let i = S(300);
        let mut p = Pace::new(i);
        p.after_post(i, Some((50, 60)), false);
        assert_eq!(p.gap(i), i, "never faster than the interval");
        p.after_post(i, None, true);
        assert_eq!(p.gap(i), S(600));
        p.after_post(i, Some((5, 60)), false);
        assert_eq!(p.gap(i), S(900));
        p.after_post(i, Some((20, 60)), false);
        assert_eq!(p.gap(i), S(900), "held between a quarter and a half");
        for _ in 0..20 {
            p.after_post(i, None, true);
        }
        assert_eq!(p.gap(i), MAX_POST_GAP);
        for _ in 0..40 {
            p.after_post(i, Some((60, 60)), false);
        }
        assert_eq!(p.gap(i), i);
    }
}
