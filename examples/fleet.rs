//! A site's boxes behind one NAT address against the real backend's throttler
//! (scripts/fleet.sh runs it): N real `Daemon`s in one process, on one injected clock
//! shared with the simulator's `central` profile (60 requests per minute per client
//! address and route, `@nestjs/throttler` 6), all connecting from 127.0.0.1 like boxes
//! behind one address. Measures, per N: the 429s of a steady state, and after a 24 h
//! outage (every box's queue full) the 429s and the time until every backlog is
//! delivered.
//!
//!   fleet N [N...]             e.g. fleet 10 50
//!
//! Time is simulated: each event runs the daemon whose next step is due first, with
//! the clock set to that moment; an agent that sleeps inside a step moves everyone's
//! time (it does not happen here: retries are off, and a 429 is never slept on).

use cybersensei_agent::clock::{xorshift, Clock};
use cybersensei_agent::config::Config;
use cybersensei_agent::daemon::Daemon;
use cybersensei_agent::telemetry::queue::queue_dir;
use cybersensei_sim::{LicenseOutcome, ManualClock, Profile, Sim, SimClock, SimOptions};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The agent's view of the simulator's manual clock.
struct FleetClock {
    m: ManualClock,
    start_ms: u64,
    rng: Cell<u64>,
}

impl Clock for FleetClock {
    fn now_unix(&self) -> f64 {
        self.m.now_ms() as f64 / 1000.0
    }
    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.m.now_ms() - self.start_ms)
    }
    fn sleep(&self, d: Duration) {
        // The shared clock counts milliseconds: round up, or a sub-millisecond
        // wait would never end.
        let ms = d.as_nanos().div_ceil(1_000_000) as u64;
        self.m.advance(Duration::from_millis(ms));
    }
    fn random(&self) -> f64 {
        xorshift(&self.rng)
    }
}

/// Simulated time per phase.
const STEADY: Duration = Duration::from_secs(2 * 3600);
const OUTAGE: Duration = Duration::from_secs(24 * 3600);
const DRAIN_MAX: Duration = Duration::from_secs(24 * 3600);

struct Phase {
    posts: u64,
    throttled: u64,
    throttled_by_route: String,
}

fn snapshot(sim: &Sim) -> (u64, u64, std::collections::BTreeMap<String, u64>) {
    let c = sim.counters();
    (
        c.requests.get("/telemetry").copied().unwrap_or(0),
        c.throttled_total(),
        c.throttled.clone(),
    )
}

fn since(sim: &Sim, before: &(u64, u64, std::collections::BTreeMap<String, u64>)) -> Phase {
    let now = snapshot(sim);
    let by: Vec<String> = now
        .2
        .iter()
        .map(|(k, v)| (k, v - before.2.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    Phase {
        posts: now.0 - before.0,
        throttled: now.1 - before.1,
        throttled_by_route: if by.is_empty() {
            "-".into()
        } else {
            by.join(", ")
        },
    }
}

fn queued(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .map(|d| {
            std::fs::read_dir(queue_dir(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// Runs every daemon's due steps until `until` (monotonic); calls `every_minute`
/// with the time each simulated minute, stopping early when it returns true.
fn run_until(
    fleet: &mut [Daemon],
    clock: &FleetClock,
    until: Duration,
    mut every_minute: impl FnMut(Duration) -> bool,
) -> Option<Duration> {
    let mut next_minute = clock.monotonic() + Duration::from_secs(60);
    let mut events = 0u64;
    let verbose = std::env::var_os("FLEET_VERBOSE").is_some();
    loop {
        let (i, due) = fleet
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.next_due()))
            .min_by_key(|(_, due)| *due)?;
        let now = clock.monotonic();
        let target = due.max(now).min(until).min(next_minute);
        if target > now {
            clock.sleep(target - now);
        }
        if target >= next_minute {
            if verbose && target.as_secs() % 3600 < 60 {
                eprintln!("t={} h: {events} events", target.as_secs() / 3600);
            }
            if every_minute(target) {
                return Some(target);
            }
            next_minute += Duration::from_secs(60);
            continue;
        }
        if target >= until {
            return None;
        }
        events += 1;
        fleet[i].run_due();
    }
}

fn box_config(dir: &Path, url: &str, key_file: &Path) -> PathBuf {
    let cfg = serde_json::json!({
        "backend": {"url": url, "allow_http": true, "timeout": 5, "retry_attempts": 1,
                    "retry_delay": 1},
        "license": {"key_file": key_file},
        "telemetry": {"app_metrics_file": dir.join("metrics.json")},
        "install": {"root": dir.join("opt")},
        "state_dir": dir.join("state"),
        "log": {"level": "error"}
    });
    let p = dir.join("agent.json");
    std::fs::write(&p, cfg.to_string()).expect("config written");
    p
}

fn measure(n: usize, base: &Path) -> Result<String, String> {
    let m = ManualClock::new(SystemTime::now());
    let clock = FleetClock {
        start_ms: m.now_ms(),
        m: m.clone(),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ n as u64),
    };
    let sim = Sim::start(SimOptions {
        profile: Profile::Central,
        clock: SimClock::Manual(m.clone()),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let mut fleet = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = base.join(format!("n{n}-box{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let key = format!("FLEET-KEY-{n}-{i}");
        sim.set_license(&key, LicenseOutcome::default_valid());
        let key_file = dir.join("license.key");
        std::fs::write(&key_file, &key).map_err(|e| e.to_string())?;
        let path = box_config(&dir, &sim.url(), &key_file);
        let cfg = Config::load(&path).map_err(|e| e.to_string())?;
        let mut d = Daemon::new(cfg, path, &clock).map_err(|e| e.to_string())?;
        d.start().map_err(|e| e.to_string())?;
        fleet.push(d);
        dirs.push(dir.join("state"));
    }
    // Steady state.
    let before = snapshot(&sim);
    let end = clock.monotonic() + STEADY;
    run_until(&mut fleet, &clock, end, |_| false);
    let steady = since(&sim, &before);
    // 24 h outage: every box queues what it measures.
    sim.set_down(true);
    let end = clock.monotonic() + OUTAGE;
    run_until(&mut fleet, &clock, end, |_| false);
    sim.set_down(false);
    let backlog = queued(&dirs);
    let before = snapshot(&sim);
    let t0 = clock.monotonic();
    let end = t0 + DRAIN_MAX;
    let done = run_until(&mut fleet, &clock, end, |_| queued(&dirs) == 0);
    let drain = since(&sim, &before);
    let drain_time = match done {
        Some(t) => format!("{} min", (t - t0).as_secs() / 60),
        None => format!("not drained in 24 h ({} left)", queued(&dirs)),
    };
    let ideal = backlog.div_ceil(60);
    let steady_rate = steady.posts as f64 / STEADY.as_secs_f64() * 60.0;
    Ok(format!(
        "N={n:<3} steady 2 h: {} posts ({steady_rate:.1}/min), 429s {} ({})\n      \
         after 24 h outage: backlog {backlog} samples, drained in {drain_time} \
         (the throttler's floor: {ideal} min at 60/min), {} posts, 429s {} ({})",
        steady.posts,
        steady.throttled,
        steady.throttled_by_route,
        drain.posts,
        drain.throttled,
        drain.throttled_by_route,
    ))
}

fn main() -> Result<(), String> {
    // The boxes read their own key files; an inherited key would make them one box.
    std::env::remove_var("CYBERSENSEI_LICENSE_KEY");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        return Err("usage: fleet N [N...]".into());
    }
    let base = tempfile::tempdir_in(std::env::var("FLEET_DIR").unwrap_or_else(|_| "/tmp".into()))
        .map_err(|e| e.to_string())?;
    for n in sizes {
        let started = std::time::Instant::now();
        let line = measure(n, base.path())?;
        println!("{line}");
        println!(
            "      ({:.0} s of real time)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
