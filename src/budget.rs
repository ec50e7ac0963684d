//! Validations are spent like money. The real backend counts every successful
//! `GET /api/license/validate` against the license's `maxUsageCount` and refuses the
//! license for good once it is reached, so a box in a crash loop or on flaky power
//! must not validate at every start. The rule (docs/license.md):
//!
//! 1. At start, `run` reuses a cached `valid` validation of the same key younger than
//!    `license.revalidate_interval` (and not from the future): no request, and the
//!    next validation is due when that one is `revalidate_interval` old, exactly as
//!    if the daemon had never stopped.
//! 2. Failed attempts cost nothing at the backend (only successes count); they back
//!    off (daemon) and a 429 silences every route for its `Retry-After`.
//! 3. A persisted budget: at most `DAILY` automatic validations in any 24 h, counted
//!    from the wall times kept in `license.json` (so restarts do not reset it). When
//!    it is spent the daemon keeps the cached state and validates when the oldest one
//!    leaves the window. A person's `validate` is never refused, but counted.

use crate::license::{clock_is_sane, Cached};
use crate::status::LicenseState;
use std::time::Duration;

/// The budget's window.
pub(crate) const WINDOW: f64 = 86_400.0;
/// Automatic (daemon) validations allowed in any `WINDOW`.
pub const DAILY: usize = 4;
/// Entries kept at most (the file stays small whatever happens).
const MAX_KEPT: usize = 64;
/// Tolerance for a wall clock that stepped back a little (NTP).
const SKEW: f64 = 300.0;

/// The validations of `recent` that still count at `now`: inside the window. One
/// from the future (the clock was set back more than `SKEW`) counts as made `now`:
/// dropping it would give a clock set back a fresh budget, and keeping its time
/// would block validations for as long as the clock went back; once stored at `now`
/// it leaves the window a day later.
pub(crate) fn window(recent: &[f64], now: f64) -> Vec<f64> {
    let mut v: Vec<f64> = recent
        .iter()
        .map(|t| if *t > now + SKEW { now } else { *t })
        .filter(|t| *t > now - WINDOW)
        .collect();
    let excess = v.len().saturating_sub(MAX_KEPT - 1);
    v.drain(..excess);
    v
}

/// A short fingerprint of the key (SHA-256, 16 hex digits): tells whether a cached
/// validation was for the key in use, without keeping the key.
pub(crate) fn key_id(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Rule 1: the age of a cached validation `run` may start on instead of asking.
pub(crate) fn reusable_at_start(
    cache: Option<&Cached>,
    key_id: &str,
    revalidate_interval: Duration,
    now: f64,
) -> Option<Duration> {
    let c = cache?;
    if c.last_decision != LicenseState::Valid || c.key_id.as_deref() != Some(key_id) {
        return None;
    }
    if !clock_is_sane(now) {
        return None;
    }
    let at = c.validated_at?;
    let age = now - at;
    if !(-SKEW..revalidate_interval.as_secs_f64()).contains(&age) {
        return None;
    }
    if let Some(exp) = c
        .expires_at
        .as_deref()
        .and_then(crate::clock::parse_iso8601)
    {
        if now >= exp {
            return None;
        }
    }
    Some(Duration::from_secs_f64(age.max(0.0)))
}

/// Rule 3: how long until the daemon may validate again (None: now).
pub(crate) fn wait_for_budget(cache: Option<&Cached>, now: f64) -> Option<Duration> {
    let c = cache?;
    let w = window(&c.recent, now);
    if w.len() < DAILY {
        return None;
    }
    let oldest = w.iter().copied().fold(f64::INFINITY, f64::min);
    Some(Duration::from_secs_f64((oldest + WINDOW - now).max(60.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_798_761_600.0;

    fn cache(validated_at: f64, key: &str, recent: Vec<f64>) -> Cached {
        Cached {
            tenant_id: "t".into(),
            tenant_name: None,
            expires_at: Some("2099-01-01T00:00:00Z".into()),
            usage_count: None,
            max_usage_count: None,
            validated_at: Some(validated_at),
            last_decision: LicenseState::Valid,
            message: None,
            key_id: Some(key_id(key)),
            recent,
        }
    }

    #[test]
    fn reuse_only_young_same_key_valid() {
        let day = Duration::from_secs(86_400);
        let c = cache(NOW - 3600.0, "K", vec![]);
        assert_eq!(
            reusable_at_start(Some(&c), &key_id("K"), day, NOW),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            reusable_at_start(Some(&c), &key_id("other"), day, NOW),
            None
        );
        assert_eq!(
            reusable_at_start(Some(&c), &key_id("K"), Duration::from_secs(600), NOW),
            None
        );
        let mut refused = c.clone();
        refused.last_decision = LicenseState::Expired;
        assert_eq!(
            reusable_at_start(Some(&refused), &key_id("K"), day, NOW),
            None
        );
        let future = cache(NOW + 7200.0, "K", vec![]);
        assert_eq!(
            reusable_at_start(Some(&future), &key_id("K"), day, NOW),
            None
        );
    }

    #[test]
    fn budget_counts_a_rolling_day() {
        let recent: Vec<f64> = (0..DAILY)
            .map(|i| NOW - 3600.0 * (i as f64 + 1.0))
            .collect();
        let c = cache(NOW - 3600.0, "K", recent);
        let wait = wait_for_budget(Some(&c), NOW).unwrap();
        assert_eq!(wait, Duration::from_secs(86_400 - 3600 * DAILY as u64));
        assert_eq!(wait_for_budget(Some(&c), NOW + 86_400.0), None);
        // A clock set back by years does not block validations for years: a day.
        let back = NOW - 1e8;
        assert_eq!(
            wait_for_budget(Some(&c), back),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn a_clock_set_back_keeps_the_budget_spent() {
        // Four validations in the last four hours, then the clock goes back 10 min,
        // an hour, a year: the budget stays spent (it used to start afresh).
        let recent: Vec<f64> = (0..DAILY).map(|i| NOW - 3600.0 * i as f64).collect();
        let c = cache(NOW, "K", recent.clone());
        for back in [600.0, 3600.0, 365.0 * 86_400.0] {
            let now = NOW - back;
            assert_eq!(window(&recent, now).len(), DAILY, "back {back}");
            let wait = wait_for_budget(Some(&c), now).expect("still spent");
            assert!(wait.as_secs_f64() <= WINDOW, "back {back}: {wait:?}");
        }
        // Stored at the new `now`, they leave the window a day later.
        let later = NOW - 3600.0 + WINDOW + 1.0;
        assert!(window(&window(&recent, NOW - 3600.0), later).is_empty());
    }
}
