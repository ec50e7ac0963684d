//! The daemon as a good neighbour and a careful spender, on a `FakeClock` against the
//! simulator: a 429 on telemetry silences telemetry only, for its `Retry-After`;
//! restarts through a day cost one validation; a revalidation interval set too short
//! cannot spend more than the daily budget.

use crate::harness::in_process::{run_until, wall_now};
use crate::harness::{self, Node, KEY};
use cybersensei_agent::budget;
use cybersensei_agent::clock::{Clock, FakeClock};
use cybersensei_sim::{Fault, Sim};
use serde_json::json;
use std::time::Duration;

fn node(sim: &Sim) -> Node {
    sim.valid_license(KEY);
    Node::new(sim)
}

/// The backend's throttler counts per address *and* route: a 429 on telemetry
/// silences telemetry (fresh samples and the drain) for its `Retry-After`, and
/// neither the update check due in the same tick nor later ones wait for it
/// (issue 25: validations and update checks are never delayed by telemetry's 429s).
#[test]
fn a_429_on_telemetry_silences_telemetry_only_for_its_retry_after() {
    let sim = harness::sim();
    let mut n = node(&sim);
    n.set("telemetry", "interval", json!(60));
    n.set("updates", "check_interval", json!(120));
    n.set("schedule", "splay", json!(false));
    let clock = FakeClock::new(wall_now());
    let mut d = n.started_daemon(&clock);
    assert_eq!(sim.count("/api/license/validate"), 1);
    // The first telemetry post meets a 429 asking for 10 minutes; the update check
    // is due in the same tick.
    sim.push_fault(
        "/telemetry",
        Fault::TooMany {
            retry_after: "600".into(),
        },
    );
    let t0 = clock.monotonic();
    assert!(d.tick());
    assert_eq!(sim.count("/telemetry"), 1);
    assert_eq!(sim.count("/update/check"), 1, "the check did not wait");
    // Checks every 120 s go on; telemetry waits past the 600 s.
    let silence = t0 + Duration::from_secs(600);
    while clock.monotonic() < silence - Duration::from_secs(5) {
        assert!(d.tick());
    }
    assert_eq!(sim.count("/telemetry"), 1, "telemetry waited out the 429");
    assert!(
        sim.count("/update/check") >= 4,
        "{}",
        sim.count("/update/check")
    );
    run_until(&mut d, &clock, t0 + Duration::from_secs(900));
    assert!(sim.count("/telemetry") >= 2, "telemetry resumed");
    assert!(d.counters.throttled >= 1);
    // The sample the 429 refused was queued, then delivered.
    assert_eq!(n.status()["telemetry"]["queued"], 0);
}

#[test]
fn restarts_every_hour_for_a_day_cost_one_validation() {
    let sim = harness::sim();
    let n = node(&sim);
    let clock = FakeClock::new(wall_now());
    for hour in 0..24u64 {
        let mut d = n.started_daemon(&clock);
        let end = clock.monotonic() + Duration::from_secs(3600);
        run_until(&mut d, &clock, end);
        assert_eq!(n.status()["license"]["state"], "valid", "hour {hour}");
    }
    let v = sim.count("/api/license/validate");
    println!("24 restarts in 24 h at the defaults: {v} validation(s)");
    assert!((1..=2).contains(&v), "{v} validations");
}

#[test]
fn a_short_revalidate_interval_cannot_exceed_the_daily_budget() {
    let sim = harness::sim();
    let mut n = node(&sim);
    n.set("license", "revalidate_interval", json!(600));
    let clock = FakeClock::new(wall_now());
    let mut d = n.started_daemon(&clock);
    // Every step due within the 24 h that started with the boot validation.
    let day = clock.monotonic() + Duration::from_secs(24 * 3600 - 1);
    while d.next_due() < day {
        assert!(d.tick());
    }
    let v = sim.count("/api/license/validate");
    println!(
        "a day with revalidate_interval 600: {v} validations (budget {})",
        budget::DAILY
    );
    assert_eq!(v, budget::DAILY, "{v} validations");
    assert_eq!(n.status()["license"]["state"], "valid");
}
