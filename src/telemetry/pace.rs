//! The daemon's telemetry pace when the backend's throttler is shared.
//!
//! The real backend counts 60 requests a minute per client address and route, and
//! behind its Traefik without `trust proxy` every box in the field is one address
//! (docs/telemetry.md, "For CyberSensei's operators"). A box does not know how many
//! others share the budget; the throttler's `X-RateLimit-Remaining` on each answer
//! says how full the shared window is, and the daemon acts on it:
//! - `Pace`: the gap between two fresh samples (measured and posted together),
//!   never shorter than `telemetry.interval`; it widens when the window is more
//!   than half full and narrows back when it has room, so a fleet settles below the
//!   limit, each box at about the same pace; a box unheard for `AGED` ignores the
//!   full window (only a 429 slows it) and holds that gap (it does not creep
//!   below it), which keeps the gaps close together and the fleet's load steady;
//! - `Pace::delay`: after a 429, the next sample at a new phase in the gap (the
//!   boxes a 429 caught posted together; a new phase spreads them at once), early
//!   in the gap for a box already unheard for `UNHEARD`;
//! - `spare`: queued samples follow a fresh one only while at least two fifths of
//!   the window are free (at most `SPARE_FLUSH` a cycle), and only when the previous cycle's
//!   answer found it so too (`Pace::max_flush`): a backlog never competes with the
//!   fleet's fresh samples.
//!
//! Pure functions of what the throttler said: `examples/fleet_model.rs` runs these
//! same functions for 1,000 boxes against the simulator's throttler
//! (docs/telemetry.md has the figures and the designs they beat).

use std::time::Duration;

/// The widest gap between two fresh samples: a box is heard at least hourly while
/// the backend answers (the shared limit hears 60 × 60 = 3,600 boxes at that pace).
pub const MAX_POST_GAP: Duration = Duration::from_secs(3600);
/// What the throttler said of the shared window after a request: (remaining, limit).
pub type Budget = Option<(u64, u64)>;

/// The gap between two fresh samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    gap: Duration,
    /// This box's `AGED`: raised to the gap a 429 gave it (that gap was too short for
    /// this fleet), back towards `AGED` as posts are answered.
    aged: f64,
    /// Whether the last cycle's answer showed a window with room to spare.
    room: bool,
    /// Seconds from this box's last delivered sample to its last post.
    unheard: f64,
    /// The last delay `delay` gave (seconds): the time to the next post.
    next: f64,
}

/// How long the pace takes to grow from nothing back to one sample per interval.
pub const RAMP: Duration = Duration::from_secs(24 * 3600);
/// Rate kept on a window more than half full.
pub const DECREASE: f64 = 0.9;
/// The gap from which a box no longer slows for a full window, only for a 429: the
/// longest-unheard boxes keep their pace while younger ones give way, which narrows
/// the spread of gaps (the fleet's p95 age); below the 30 minutes asked at N=1,000.
pub const AGED: Duration = Duration::from_secs(26 * 60);
/// A box's own threshold comes back towards `AGED` by a factor e per `AGED_RELAX`
/// of answered posts: in time, not per post, so every box forgets a 429 (the boot's
/// storm above all) at the same speed, whatever its gap.
pub const AGED_RELAX: Duration = Duration::from_secs(90 * 60);
/// A box refused by a 429 after this long without a delivered sample retries early
/// in its gap rather than anywhere in it: no box unheard for 2 h while the backend
/// answers (1.5 × `MAX_POST_GAP`: a box may wait a whole gap legitimately).
pub const UNHEARD: Duration = Duration::from_secs(90 * 60);
/// Rate kept after a 429.
pub const ON_429: f64 = 0.7;

impl Pace {
    /// Starts at `interval` (a box alone posts at its configured pace).
    pub fn new(interval: Duration) -> Pace {
        Pace {
            gap: interval,
            aged: AGED.as_secs_f64(),
            room: true,
            unheard: 0.0,
            next: 0.0,
        }
    }

    /// The current gap, at least `interval`.
    pub fn gap(&self, interval: Duration) -> Duration {
        self.gap.max(interval)
    }

    /// After a fresh sample's post, in rates (samples per second, 1/gap): the fair
    /// rule of congestion control. A 429 or a window more than half full cuts the
    /// rate by a factor (multiplicative: a box posting more often gives back more,
    /// and hears the window more often); otherwise the rate grows by the same amount
    /// per unit of time for every box (additive: 0 to `1/interval` in `RAMP`), so
    /// boxes sharing the window converge to the same pace whatever they started at.
    /// A box whose gap has reached its `AGED` threshold ignores a full window (only
    /// a 429 slows it) and holds that gap: the cuts fall on the boxes heard
    /// recently, so the gaps stay close together instead of spreading to the hour.
    /// `budget` is None when the post failed: the window's state is then unknown.
    pub fn after_post(&mut self, interval: Duration, budget: Budget, throttled: bool) {
        let i = interval.as_secs_f64().max(1.0);
        let g = self.gap.max(interval).as_secs_f64();
        let r = 1.0 / g;
        let aged = g >= self.aged;
        let r = match budget {
            _ if throttled => r * ON_429,
            Some((rem, l)) if rem.saturating_mul(4) < l && !aged => r * ON_429,
            Some((rem, l)) if rem.saturating_mul(2) < l && !aged => r * DECREASE,
            Some(_) => r + g / (i * RAMP.as_secs_f64()),
            None => r,
        };
        let base = AGED.as_secs_f64();
        if throttled {
            self.aged = self.aged.max(1.0 / r);
        } else if budget.is_some() {
            // The gap just elapsed is the time since this box's last answered post.
            let keep = (-g / AGED_RELAX.as_secs_f64()).exp();
            self.aged = base + (self.aged - base) * keep;
        }
        self.room = budget.is_some() && spare(budget);
        // `budget` is Some when the fresh sample was delivered.
        self.unheard = if budget.is_some() {
            0.0
        } else {
            self.unheard + self.next
        };
        let mut gap = 1.0 / r;
        if aged && !throttled && budget.is_some() {
            // An aged box holds its threshold: creeping below it by the additive step
            // (9 % a post at 26 min) would make it young, cut again, and the fleet's
            // load would swing with the sawtooth (the bursts that meet the block).
            gap = gap.max(self.aged);
        }
        let max = MAX_POST_GAP.max(interval).as_secs_f64();
        self.gap = Duration::from_secs_f64(gap.clamp(i, max));
    }
}

impl Pace {
    /// The delay to the next fresh sample: the gap with the daemon's jitter `f` (a
    /// factor near 1), or, after a 429, a fresh phase drawn from `r` in [0, 1)
    /// anywhere in the gap's last three quarters. A 429 means many boxes posted
    /// together; jitter alone takes hours to spread such a cluster, a new phase
    /// spreads it at once (and the refused box is heard sooner). The phase is drawn
    /// no later than `UNHEARD` after this box's last delivered sample, and never
    /// earlier than a quarter gap: a box refused again and again at long gaps would
    /// otherwise stay unheard for hours.
    pub fn delay(&mut self, interval: Duration, throttled: bool, f: f64, r: f64) -> Duration {
        let g = self.gap(interval).as_secs_f64();
        let d = if throttled {
            let last = ((UNHEARD.as_secs_f64() - self.unheard) / g).clamp(0.25, 1.0);
            g * (0.25 + (last - 0.25) * r)
        } else {
            g * f
        };
        self.next = d.max(1.0);
        Duration::from_secs_f64(self.next)
    }
}

/// Most queued samples sent after a fresh one in a cycle, while the window has room.
pub const SPARE_FLUSH: usize = 10;

impl Pace {
    /// How many queued samples this cycle may send after its fresh one: none unless
    /// the previous cycle's answer showed room to spare. A window read just after an
    /// outage or after the throttler's block is empty whatever the fleet's load; if
    /// every box then flushed its backlog, the fleet's fresh samples would meet the
    /// block minutes later (the 2 h outage's recovery at N = 1,000).
    pub fn max_flush(&self) -> usize {
        if self.room {
            SPARE_FLUSH
        } else {
            0
        }
    }
}

/// Whether a budget leaves room for a queued sample after a fresh one (at least two
/// fifths of the window free, or nothing said). Half, without `Pace::max_flush`'s
/// check of the previous cycle, drained a 2 h outage's backlog as fast at N = 300;
/// with that check, two fifths does (half left 11-56 samples 6 h later).
pub fn spare(budget: Budget) -> bool {
    budget.is_none_or(|(r, l)| r.saturating_mul(5) >= l.saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_pace_cuts_on_a_full_window_and_grows_back_to_the_interval() {
        let i = S(300);
        let mut p = Pace::new(i);
        p.after_post(i, Some((50, 60)), false);
        assert_eq!(p.gap(i), i, "never faster than the interval");
        p.after_post(i, None, true);
        assert!((p.gap(i).as_secs_f64() - 300.0 / ON_429).abs() < 1.0);
        let g = p.gap(i);
        p.after_post(i, None, false);
        assert_eq!(p.gap(i), g, "a failed post: unknown, unchanged");
        p.after_post(i, Some((20, 60)), false);
        assert!((p.gap(i).as_secs_f64() - g.as_secs_f64() / DECREASE).abs() < 1.0);
        let d = |p: &Pace, t, r| {
            let mut p = *p;
            p.delay(i, t, 1.0, r).as_secs_f64()
        };
        let g = p.gap(i).as_secs_f64();
        assert_eq!(d(&p, false, 0.9), g, "no 429: the gap (times the jitter)");
        let q = d(&p, true, 0.0) - g / 4.0;
        assert!(
            q.abs() < 0.01,
            "a 429: a new phase, at least a quarter of the gap"
        );
        assert!((d(&p, true, 0.999) - g).abs() < 1.0, "and at most the gap");
        for _ in 0..40 {
            p.after_post(i, None, true);
        }
        assert_eq!(p.gap(i), MAX_POST_GAP);
        // An empty window: back to the interval within RAMP of posting.
        let mut t = Duration::ZERO;
        while p.gap(i) > i {
            t += p.gap(i);
            p.after_post(i, Some((60, 60)), false);
            assert!(t <= RAMP, "{t:?}");
        }
    }

    #[test]
    fn a_box_unheard_for_aged_ignores_a_full_window_until_a_429() {
        let i = S(300);
        let full = Some((5, 60));
        let mut young = Pace::new(i);
        young.gap = AGED - S(60);
        young.after_post(i, full, false);
        assert!(young.gap(i) > AGED - S(60), "younger than AGED: slows");
        let mut old = Pace::new(i);
        old.gap = AGED;
        old.after_post(i, full, false);
        assert!(old.gap(i) <= AGED, "unheard for AGED: keeps its pace");
        // A 429 says this fleet cannot afford that gap: the box slows, and its own
        // threshold rises to the new gap, so full windows slow it again ...
        let g0 = old.gap(i).as_secs_f64();
        old.after_post(i, None, true);
        let g = old.gap(i);
        assert!((g.as_secs_f64() - g0 / ON_429).abs() < 1.0);
        old.after_post(i, full, false);
        assert!(old.gap(i) > g, "a full window slows it again after a 429");
        // ... until answered posts bring the threshold back towards AGED.
        let before = old.aged;
        old.after_post(i, Some((60, 60)), false);
        assert!(old.aged < before && old.aged > AGED.as_secs_f64());
    }

    /// The threshold a 429 raised comes back in time, at the same speed for a box
    /// posting every 10 min as for one posting hourly (per post, the hourly box kept
    /// the boot's storm six times longer).
    #[test]
    fn a_raised_threshold_relaxes_per_hour_whatever_the_gap() {
        let i = S(300);
        let raised = 60.0 * 60.0;
        let base = AGED.as_secs_f64();
        let relax = |gap: Duration, posts: usize| {
            let mut p = Pace::new(i);
            p.aged = raised;
            for _ in 0..posts {
                p.gap = gap;
                p.after_post(i, Some((60, 60)), false);
            }
            p.aged
        };
        // An hour of answered posts either way.
        let want = base + (raised - base) * (-3600.0 / AGED_RELAX.as_secs_f64()).exp();
        let often = relax(S(600), 6);
        let hourly = relax(S(3600), 1);
        assert!((often - want).abs() < 1.0, "{often} vs {want}");
        assert!((hourly - want).abs() < 1.0, "{hourly} vs {want}");
        // A failed post says nothing: the threshold stays.
        let mut p = Pace::new(i);
        p.aged = raised;
        p.after_post(i, None, false);
        assert_eq!(p.aged, raised);
    }

    /// An aged box holds its threshold on an answered post instead of creeping below
    /// it by the additive step; a younger box still ramps.
    #[test]
    fn an_aged_box_holds_its_threshold() {
        let i = S(300);
        let empty = Some((60, 60));
        let mut old = Pace::new(i);
        old.gap = AGED;
        old.after_post(i, empty, false);
        assert_eq!(old.gap(i), AGED, "aged: holds AGED");
        let mut young = Pace::new(i);
        young.gap = AGED - S(120);
        young.after_post(i, empty, false);
        assert!(young.gap(i) < AGED - S(120), "young: ramps");
        // A 429 still slows it.
        old.after_post(i, None, true);
        assert!(old.gap(i) > AGED);
    }

    /// After a 429 the new phase is drawn no later than `UNHEARD` after the box's
    /// last delivered sample (and no earlier than a quarter gap): refused again and
    /// again at hourly gaps, a box is still heard within about 2 h.
    #[test]
    fn a_box_refused_after_long_unheard_retries_early() {
        let i = S(300);
        let g = MAX_POST_GAP.as_secs_f64();
        let mut p = Pace::new(i);
        p.gap = MAX_POST_GAP;
        // Heard (a new pace), then refused a whole gap later.
        assert_eq!(p.delay(i, false, 1.0, 0.5).as_secs_f64(), g);
        p.after_post(i, None, true);
        // Unheard for a gap: the new phase no later than UNHEARD after the delivery.
        let d = p.delay(i, true, 1.0, 0.999).as_secs_f64();
        assert!((g + d - UNHEARD.as_secs_f64()).abs() < 10.0, "{d}");
        // Past UNHEARD: a quarter gap (not sooner: the block, the neighbours).
        p.after_post(i, None, true);
        assert!((p.delay(i, true, 1.0, 0.999).as_secs_f64() - g / 4.0).abs() < 1.0);
        p.after_post(i, None, true);
        assert!((p.delay(i, true, 1.0, 0.0).as_secs_f64() - g / 4.0).abs() < 1.0);
        // Heard again: UNHEARD counts from this delivery.
        p.after_post(i, Some((30, 60)), false);
        let waited = p.delay(i, false, 1.0, 0.0).as_secs_f64();
        p.after_post(i, None, true);
        let d = p.delay(i, true, 1.0, 0.999).as_secs_f64();
        assert!(
            (waited + d - UNHEARD.as_secs_f64()).abs() < 10.0,
            "{waited} {d}"
        );
    }

    /// Queued samples follow a fresh one only when the previous cycle's answer found
    /// the window with room too: the window read just after an outage, a failure or
    /// the throttler's block is empty whatever the fleet's load.
    #[test]
    fn the_backlog_waits_for_a_cycle_that_found_room() {
        let i = S(300);
        let mut p = Pace::new(i);
        assert_eq!(p.max_flush(), SPARE_FLUSH, "a box starts free to flush");
        p.after_post(i, None, false);
        assert_eq!(p.max_flush(), 0, "after a failed post (backend down)");
        p.after_post(i, Some((45, 60)), false);
        assert_eq!(p.max_flush(), SPARE_FLUSH, "after an answer with room");
        p.after_post(i, None, true);
        assert_eq!(p.max_flush(), 0, "after a 429");
        p.after_post(i, Some((45, 60)), false);
        p.after_post(i, Some((23, 60)), false);
        assert_eq!(p.max_flush(), 0, "after a window less than 2/5 free");
        p.after_post(i, Some((24, 60)), false);
        assert_eq!(p.max_flush(), SPARE_FLUSH, "2/5 free is room");
    }
}
