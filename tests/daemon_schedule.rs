//! The daemon's schedule over accelerated days: the real `Daemon` loop driven by a
//! `FakeClock` against the simulator over TLS. Requests are counted where they land
//! (the simulator), not by the daemon's own counters alone.

use crate::harness::in_process::wall_now;
use crate::harness::{self, Node, KEY};
use cybersensei_agent::clock::{Clock, FakeClock};
use cybersensei_agent::config::Config;
use cybersensei_agent::daemon::Daemon;
use cybersensei_agent::status::LicenseState;
use cybersensei_sim::Sim;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const VALIDATE: &str = "/api/license/validate";
const TELEMETRY: &str = "/telemetry";
const CHECK: &str = "/update/check";

/// A node with the default of every interval (docs/reference.md, "Configuration") (the harness only sets
/// paths, the backend and fast retries).
fn default_node(sim: &Sim) -> Node {
    sim.valid_license(KEY);
    let mut n = Node::new(sim);
    n.cfg["telemetry"]
        .as_object_mut()
        .unwrap()
        .remove("interval");
    n.write_config();
    n
}

/// Ticks the daemon until the fake monotonic clock reaches `until`; the simulator's
/// clock follows the fake wall clock (the central profile's rate limit counts time).
fn run_until(sim: &Sim, d: &mut Daemon, clock: &FakeClock, until: Duration) {
    while clock.monotonic() < until {
        sim.set_now_ms((clock.now_unix() * 1000.0) as u64);
        assert!(d.tick(), "the loop stopped");
    }
}

/// (validations, telemetry posts, update checks) the simulator has received.
fn counts(sim: &Sim) -> (usize, usize, usize) {
    (sim.count(VALIDATE), sim.count(TELEMETRY), sim.count(CHECK))
}

#[test]
fn a_day_at_the_defaults_is_288_posts_24_checks_1_validation_no_retries() {
    let sim = harness::sim();
    let n = default_node(&sim);
    let cfg = Config::load(&n.config).unwrap();
    assert_eq!(cfg.telemetry.interval.as_secs(), 300);
    assert_eq!(cfg.updates.check_interval.as_secs(), 3600);
    assert_eq!(cfg.license.revalidate_interval.as_secs(), 86400);
    let clock = FakeClock::new(wall_now());
    let mut d = Daemon::new(cfg, n.config.clone(), &clock).unwrap();
    d.start().unwrap();
    run_until(&sim, &mut d, &clock, 24 * HOUR);
    let (v, t, c) = counts(&sim);
    println!("24 h at the defaults: {v} validations, {t} telemetry posts, {c} update checks");
    // The boot validation; the next is due 24 h ± jitter later, so it may or may
    // not fall inside the day.
    assert!((1..=2).contains(&v), "validations: {v}");
    // 86400 / 300 = 288; the splay puts the first post anywhere in the first
    // interval and the ±10 % jitter averages out over a day: within ±3 %.
    assert!((280..=296).contains(&t), "telemetry posts: {t}");
    assert!((23..=25).contains(&c), "update checks: {c}");
    // No retries with a healthy backend: every request is one step of the daemon.
    let k = d.counters;
    assert_eq!(
        sim.requests().len() as u64,
        k.validations + k.telemetry + k.checks,
        "{k:?}"
    );
    assert_eq!(
        (v as u64, t as u64, c as u64),
        (k.validations, k.telemetry, k.checks)
    );
    assert_eq!(d.license_state(), LicenseState::Valid);
}

#[test]
fn wall_clock_jumps_neither_fire_every_timer_nor_stall_them() {
    let sim = harness::sim();
    let n = default_node(&sim);
    let clock = FakeClock::new(wall_now());
    let mut d = n.started_daemon(&clock);
    run_until(&sim, &mut d, &clock, 2 * HOUR);

    for (label, jump) in [
        ("3 years forward", 3.0 * 365.0 * 86400.0),
        ("3 years back", -3.0 * 365.0 * 86400.0),
    ] {
        let before = counts(&sim);
        let start = clock.monotonic();
        clock.jump_wall(jump);
        // One tick right after the jump: nothing may fire because of it.
        let t0 = clock.monotonic();
        d.tick();
        let after_one = counts(&sim);
        assert!(
            clock.monotonic() > t0 || after_one.1 - before.1 <= 1,
            "{label}: a tick without sleeping fired {after_one:?} vs {before:?}"
        );
        run_until(&sim, &mut d, &clock, start + HOUR);
        let after = counts(&sim);
        let (v, t, c) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        println!(
            "hour after the wall clock jumped {label}: {v} validations, {t} posts, {c} checks"
        );
        assert!((11..=13).contains(&t), "{label}: telemetry posts {t}");
        assert!(c <= 2, "{label}: update checks {c}");
        assert_eq!(v, 0, "{label}: the jump triggered a validation");
    }
    assert_eq!(d.license_state(), LicenseState::Valid);
}

#[test]
fn boot_in_1970_then_ntp_validates_within_a_minute_never_refused() {
    let sim = harness::sim();
    let n = default_node(&sim);
    let cfg = Config::load(&n.config).unwrap();
    let real_now = wall_now();
    // A box without RTC: 1970-01-01 plus its uptime.
    let clock = FakeClock::new(30.0);
    let mut d = Daemon::new(cfg, n.config.clone(), &clock).unwrap();
    d.start().unwrap();
    assert_eq!(d.license_state(), LicenseState::Unknown);
    run_until(&sim, &mut d, &clock, Duration::from_secs(10 * 60));
    // Ten minutes in 1970: no validation can reach the backend over TLS, and the
    // state is never a refusal.
    assert_eq!(sim.count(VALIDATE), 0);
    assert_eq!(d.license_state(), LicenseState::Unknown);
    assert_eq!(n.status()["license"]["state"], "unknown");

    // NTP answers: the wall clock jumps to now.
    let set_at = clock.monotonic();
    clock.jump_wall(real_now - clock.now_unix());
    while sim.count(VALIDATE) == 0 {
        assert!(
            clock.monotonic() - set_at <= Duration::from_secs(61),
            "no validation within a minute of the clock being set"
        );
        assert!(d.tick());
    }
    assert_eq!(d.license_state(), LicenseState::Valid);
    assert_eq!(n.status()["license"]["state"], "valid");
    // And the slow schedule resumes: no validation storm in the next hour.
    run_until(&sim, &mut d, &clock, set_at + HOUR);
    assert_eq!(sim.count(VALIDATE), 1);
}
