//! The library's daemon driven in this process on an injected clock (no binary): the
//! schedule tests, which run days of the loop in seconds.

use super::Node;
use cybersensei_agent::clock::{Clock, FakeClock};
use cybersensei_agent::config::Config;
use cybersensei_agent::daemon::Daemon;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock now, Unix seconds: where a [`FakeClock`] starts.
pub(crate) fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Node {
    /// The daemon of this box's config on `clock`, started (its boot steps done).
    pub(crate) fn started_daemon<'a>(&self, clock: &'a dyn Clock) -> Daemon<'a> {
        let cfg = Config::load(&self.config).unwrap();
        let mut d = Daemon::new(cfg, self.config.clone(), clock).unwrap();
        d.start().unwrap();
        d
    }
}

/// Ticks `d` until `clock`'s monotonic time reaches `until` (each tick sleeps, on the
/// fake clock, until its next step).
pub(crate) fn run_until(d: &mut Daemon, clock: &FakeClock, until: Duration) {
    while clock.monotonic() < until {
        assert!(d.tick(), "the loop stopped");
    }
}
