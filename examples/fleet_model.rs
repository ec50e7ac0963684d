//! A fleet behind one address, fast: N boxes' telemetry scheduling in simulated time
//! against the simulator's model of the real throttler (`cybersensei_sim::Throttler`,
//! `@nestjs/throttler` 6: 60 requests per minute per address and route). Run by
//! `scripts/fleet.sh` (N = 300 and 1,000 in seconds; `examples/fleet.rs` runs real
//! daemons, over TLS, and is the cross-check for small N: `scripts/fleet.sh --real`).
//!
//! What it models, and how honestly:
//! - the decisions are the agent's own functions: `telemetry::pace::{Pace, spare,
//!   SPARE_FLUSH}` for the policy the daemon runs (`FreshFirstPaced`), and, for the
//!   designs compared with it, copies of their drain rules (marked below);
//! - the daemon's step order per tick (validate, telemetry, update check, honour
//!   429s, drain, honour 429s), its jitter (±10 %), splay, `Retry-After` handling
//!   (per route now; every route for the old design), the bounded queue
//!   (`queue_max` 288, oldest dropped first) and `X-RateLimit-*` read from the last
//!   answer of any route, as `Transport::rate_budget` does;
//! - the throttler is the simulator's, the same code `tests/sim` serves over TLS;
//! - not modelled: TLS, network time, the transport's retries and their sleeps
//!   (an outage is an immediate failure), disk, the validation's daily budget
//!   (a validation every 24 h, retried hourly on failure).
//!
//!   fleet_model [N...]          default 300 1000

use cybersensei_agent::telemetry::pace::{self, Budget, Pace};
use cybersensei_sim::{Throttler, Verdict};
use std::cell::Cell;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const INTERVAL: Duration = Duration::from_secs(300);
const CHECK_INTERVAL: u64 = HOUR;
const REVALIDATE: u64 = 24 * HOUR;
const QUEUE_MAX: usize = 288;
const STEADY: u64 = 6 * HOUR;
const OUTAGE: u64 = 2 * HOUR;
const RECOVERY: u64 = 6 * HOUR;
/// The first hour is the fleet's start (every box splayed over its interval).
const WARMUP: u64 = HOUR;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Policy {
    /// Main before issue 25: oldest first, a fresh sample queued behind any backlog,
    /// fixed interval, paced drain (old thresholds), a 429 silences every route.
    OldestFirst,
    /// Fresh sample first, backlog in the room left, 429s per route; fixed interval.
    FreshFirst,
    /// FreshFirst with the gap between samples widened by the throttler (`Pace`):
    /// what the daemon runs.
    FreshFirstPaced,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Validate,
    Telemetry,
    Check,
}

impl Route {
    fn key(self) -> &'static str {
        match self {
            Route::Validate => "/api/license/validate",
            Route::Telemetry => "/telemetry",
            Route::Check => "/update/check",
        }
    }
}

enum Answer {
    Ok(Budget),
    TooMany(u64),
    Down,
}

/// Design B's drain: the old paced drain, yielding when the window is half full
/// (a drain step per gap, 5 s to 2 h).
fn b_drain_gap(gap: Duration, budget: Budget, throttled: bool) -> Duration {
    let g = gap.as_secs_f64();
    let g = match budget {
        _ if throttled => g * 2.0,
        Some((r, l)) if r * 4 < l => g * 2.0,
        Some((r, l)) if r * 2 < l => g * 1.25,
        _ => g * 7.0 / 8.0,
    };
    Duration::from_secs_f64(g.clamp(5.0, 7200.0))
}

/// The gap a drain starts at (both older designs).
const DRAIN_START_GAP: Duration = Duration::from_secs(60);

/// The pre-issue-25 drain rule (src/telemetry/mod.rs at 8aa50e2), for `OldestFirst`.
fn old_drain_gap(gap: Duration, budget: Budget, throttled: bool) -> Duration {
    let g = gap.as_secs_f64();
    let g = match budget {
        _ if throttled => g * 2.0,
        Some((r, l)) if r * 8 < l => g * 2.0,
        Some((r, l)) if r * 4 < l => g * 1.25,
        _ => g * 7.0 / 8.0,
    };
    Duration::from_secs_f64(g.clamp(5.0, 600.0))
}

struct Bx {
    id: usize,
    rng: Cell<u64>,
    next_validate: u64,
    next_telemetry: u64,
    next_check: u64,
    next_drain: Option<u64>,
    drain_gap: Duration,
    pace: Pace,
    /// collectedAt (ms) of the queued samples, oldest first.
    queue: VecDeque<u64>,
    /// collectedAt of the newest sample the backend has.
    newest: Option<u64>,
    /// Per route, the end of a 429's silence.
    blocked: Vec<(Route, u64)>,
    budget: Budget,
}

#[derive(Default, Clone)]
struct Count {
    requests: u64,
    throttled: u64,
    throttled_telemetry: u64,
    delivered: u64,
    dropped: u64,
    /// Validations and update checks that waited for (or were refused by) a 429.
    delayed_by_429: u64,
}

struct World {
    policy: Policy,
    /// Each box its own address (the backend trusting X-Forwarded-For).
    per_box: bool,
    throttler: Throttler,
    down: bool,
    c: Count,
}

impl World {
    fn request(&mut self, route: Route, now: u64, id: usize) -> Answer {
        if self.down {
            return Answer::Down;
        }
        self.c.requests += 1;
        let tracker = if self.per_box {
            format!("box-{id}")
        } else {
            "one-address".to_string()
        };
        match self.throttler.hit(route.key(), &tracker, now) {
            Verdict::Allowed {
                limit, remaining, ..
            } => Answer::Ok(Some((remaining as u64, limit as u64))),
            Verdict::Blocked { retry_after_s } => {
                self.c.throttled += 1;
                if route == Route::Telemetry {
                    self.c.throttled_telemetry += 1;
                }
                Answer::TooMany(retry_after_s.max(0) as u64 * 1000)
            }
        }
    }
}

impl Bx {
    fn rand(&self) -> f64 {
        cybersensei_agent::clock::xorshift(&self.rng)
    }

    fn jittered(&self, d: Duration) -> u64 {
        let f = 1.0 + 0.1 * (2.0 * self.rand() - 1.0);
        (d.as_secs_f64() * f).max(1.0) as u64 * 1000
    }

    fn due(&self) -> u64 {
        let mut d = self
            .next_validate
            .min(self.next_telemetry)
            .min(self.next_check);
        if let Some(x) = self.next_drain {
            d = d.min(x);
        }
        d
    }

    /// The silence left on `route` (every route for the old design).
    fn blocked_on(&self, policy: Policy, route: Route, now: u64) -> Option<u64> {
        self.blocked
            .iter()
            .filter(|(r, until)| (policy == Policy::OldestFirst || *r == route) && *until > now)
            .map(|(_, u)| *u)
            .max()
    }

    /// One request as the transport makes it: refused locally during a silence.
    fn send(&mut self, w: &mut World, route: Route, now: u64) -> Answer {
        if self.blocked_on(w.policy, route, now).is_some() {
            if route != Route::Telemetry {
                w.c.delayed_by_429 += 1;
            }
            return Answer::TooMany(0);
        }
        let a = w.request(route, now, self.id);
        match a {
            Answer::Ok(b) => {
                // The old transport kept the last answer of any route; the new one
                // keeps each route's (`Transport::rate_budget(route)`).
                if w.policy == Policy::OldestFirst || route == Route::Telemetry {
                    self.budget = b;
                }
            }
            Answer::TooMany(after) => {
                let until = now + after.max(1000);
                match self.blocked.iter_mut().find(|(r, _)| *r == route) {
                    Some((_, u)) => *u = (*u).max(until),
                    None => self.blocked.push((route, until)),
                }
            }
            Answer::Down => {}
        }
        a
    }

    fn push(&mut self, w: &mut World, at: u64) {
        if self.queue.len() >= QUEUE_MAX {
            self.queue.pop_front();
            w.c.dropped += 1;
        }
        self.queue.push_back(at);
    }

    fn delivered(&mut self, w: &mut World, at: u64) {
        w.c.delivered += 1;
        self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
    }

    /// One queued sample, oldest first; true when delivered.
    fn flush_one(&mut self, w: &mut World, now: u64) -> bool {
        let Some(&at) = self.queue.front() else {
            return false;
        };
        match self.send(w, Route::Telemetry, now) {
            Answer::Ok(_) => {
                self.queue.pop_front();
                self.delivered(w, at);
                true
            }
            _ => false,
        }
    }

    fn schedule_drain(&mut self, policy: Policy, now: u64) {
        self.drain_gap = match policy {
            Policy::OldestFirst => old_drain_gap(self.drain_gap, self.budget, false),
            _ => b_drain_gap(self.drain_gap, self.budget, false),
        };
        self.next_drain = Some(now + self.jittered(self.drain_gap));
    }

    fn step_telemetry(&mut self, w: &mut World, now: u64) {
        let (mut delivered, mut flushed) = (false, false);
        if w.policy == Policy::OldestFirst {
            let mut failed = false;
            if !self.queue.is_empty() {
                flushed = self.flush_one(w, now);
                failed = !flushed;
            }
            if !failed && self.queue.is_empty() {
                if let Answer::Ok(_) = self.send(w, Route::Telemetry, now) {
                    delivered = true;
                    self.delivered(w, now);
                }
            }
            if !delivered {
                self.push(w, now);
            }
            if !delivered && flushed && self.next_drain.is_none() {
                self.schedule_drain(w.policy, now);
            }
            self.next_telemetry = now + self.jittered(INTERVAL);
            return;
        }
        let mut seen: Budget = None;
        match self.send(w, Route::Telemetry, now) {
            Answer::Ok(b) => {
                seen = b;
                delivered = true;
                self.delivered(w, now);
                if w.policy == Policy::FreshFirstPaced {
                    // The backlog in the room left, each answer checked again.
                    let mut n = 0;
                    while n < self.pace.max_flush()
                        && pace::spare(self.budget)
                        && self.flush_one(w, now)
                    {
                        flushed = true;
                        n += 1;
                    }
                } else if pace::spare(b) {
                    flushed = self.flush_one(w, now);
                }
            }
            // Refused by the throttler: the next fresh sample supersedes it, and a
            // queued copy would only add to the load (counted as dropped).
            Answer::TooMany(_) if w.policy == Policy::FreshFirstPaced => w.c.dropped += 1,
            _ => self.push(w, now),
        }
        if (delivered || flushed)
            && !self.queue.is_empty()
            && self.next_drain.is_none()
            && w.policy != Policy::FreshFirstPaced
        {
            self.schedule_drain(w.policy, now);
        }
        let gap = if w.policy == Policy::FreshFirstPaced {
            let throttled = self.blocked_on(w.policy, Route::Telemetry, now).is_some();
            // As the daemon: the budget of this cycle's last answer, none if it failed.
            let seen = if delivered {
                self.budget.or(seen)
            } else {
                None
            };
            self.pace.after_post(INTERVAL, seen, throttled);
            // As the daemon: the jitter's factor, and a new phase after a 429.
            let f = 1.0 + 0.1 * (2.0 * self.rand() - 1.0);
            let d = self.pace.delay(INTERVAL, throttled, f, self.rand());
            self.next_telemetry = now + d.as_millis() as u64;
            return;
        } else {
            INTERVAL
        };
        self.next_telemetry = now + self.jittered(gap);
    }

    fn step_drain(&mut self, w: &mut World, now: u64) {
        self.next_drain = None;
        if self.flush_one(w, now) {
            if self.queue.is_empty() {
                self.drain_gap = DRAIN_START_GAP;
            } else {
                self.schedule_drain(w.policy, now);
            }
        }
    }

    fn honour_throttle(&mut self, w: &mut World, now: u64) {
        let p = w.policy;
        let spread = 0.2 * self.rand();
        let mut moved = false;
        let mut telemetry_moved = false;
        let mut other_moved = 0;
        for (route, next) in [
            (Route::Validate, &mut self.next_validate),
            (Route::Telemetry, &mut self.next_telemetry),
            (Route::Check, &mut self.next_check),
        ] {
            let until = self
                .blocked
                .iter()
                .filter(|(r, u)| (p == Policy::OldestFirst || *r == route) && *u > now)
                .map(|(_, u)| *u)
                .max();
            if let Some(until) = until {
                if *next < until {
                    *next = until + ((until - now) as f64 * spread) as u64;
                    moved = true;
                    if route == Route::Telemetry {
                        telemetry_moved = true;
                    } else {
                        other_moved += 1;
                    }
                }
            }
        }
        if let Some(until) = self.blocked_on(p, Route::Telemetry, now) {
            if let Some(d) = self.next_drain.as_mut() {
                if *d < until {
                    *d = until + ((until - now) as f64 * spread) as u64;
                    moved = true;
                    telemetry_moved = true;
                }
            }
        }
        w.c.delayed_by_429 += other_moved;
        if moved && (p == Policy::OldestFirst || telemetry_moved) {
            self.drain_gap = match p {
                Policy::OldestFirst => old_drain_gap(self.drain_gap, None, true),
                _ => b_drain_gap(self.drain_gap, None, true),
            };
        }
    }

    /// `Daemon::tick` with every due step.
    fn tick(&mut self, w: &mut World, now: u64) {
        if now >= self.next_validate {
            self.next_validate = match self.send(w, Route::Validate, now) {
                Answer::Ok(_) => now + self.jittered(Duration::from_millis(REVALIDATE)),
                Answer::Down => now + HOUR,
                Answer::TooMany(_) => self.next_validate,
            };
        }
        if now >= self.next_telemetry {
            self.step_telemetry(w, now);
        }
        if now >= self.next_check && !matches!(self.send(w, Route::Check, now), Answer::TooMany(_))
        {
            self.next_check = now + self.jittered(Duration::from_millis(CHECK_INTERVAL));
        }
        self.honour_throttle(w, now);
        if self.next_drain.is_some_and(|d| now >= d) {
            self.step_drain(w, now);
            self.honour_throttle(w, now);
        }
    }
}

/// `FLEET_SEED` changes every box's random draws (jitter, splay, boot time).
fn seed() -> u64 {
    std::env::var("FLEET_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |s| s.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Ages (ms) of every box's newest sample at the backend, one per box per minute.
#[derive(Default)]
struct Ages(Vec<u64>);

impl Ages {
    fn take(&mut self, fleet: &[Bx], now: u64, start: u64) {
        for b in fleet {
            self.0.push(now - b.newest.unwrap_or(start));
        }
    }
    fn line(&mut self) -> String {
        let m = |x: u64| x as f64 / MIN as f64;
        format!(
            "age p50 {:.1} min, p95 {:.1} min, max {:.1} min",
            m(pct(&mut self.0, 0.5)),
            m(pct(&mut self.0, 0.95)),
            m(self.0.iter().copied().max().unwrap_or(0))
        )
    }
}

fn run(n: usize, policy: Policy, per_box: bool) -> String {
    let mut w = World {
        policy,
        per_box,
        throttler: Throttler::default(),
        down: false,
        c: Count::default(),
    };
    let t0 = 1_000_000_000u64;
    let mut fleet: Vec<Bx> = (0..n)
        .map(|i| {
            let b = Bx {
                id: i,
                rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001) ^ seed()),
                next_validate: t0,
                next_telemetry: 0,
                next_check: 0,
                next_drain: None,
                drain_gap: DRAIN_START_GAP,
                pace: Pace::new(INTERVAL),
                queue: VecDeque::new(),
                newest: None,
                blocked: Vec::new(),
                budget: None,
            };
            // Boxes boot over the first 5 minutes; splay as `Daemon::start`.
            let boot = t0 + (b.rand() * 300_000.0) as u64;
            let mut b = b;
            b.next_validate = boot;
            b.next_telemetry = boot + (b.rand() * INTERVAL.as_millis() as f64) as u64;
            b.next_check = boot + (b.rand() * CHECK_INTERVAL as f64) as u64;
            b
        })
        .collect();
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = fleet
        .iter()
        .enumerate()
        .map(|(i, b)| std::cmp::Reverse((b.due(), i)))
        .collect();
    // Runs until `until`, sampling ages each minute from `sample_from`.
    let trace = std::env::var_os("FLEET_TRACE").is_some();
    let mut advance = |fleet: &mut Vec<Bx>,
                       w: &mut World,
                       from: u64,
                       until: u64,
                       ages: &mut Ages,
                       sample_from: u64| {
        let mut next_minute = from + MIN;
        let mut first_p95_ok: Option<u64> = None;
        let mut all_heard: Option<u64> = None;
        while let Some(&std::cmp::Reverse((due, i))) = heap.peek() {
            if due.min(until) >= next_minute {
                if trace {
                    let mut g: Vec<u64> = fleet
                        .iter()
                        .map(|b| b.pace.gap(INTERVAL).as_secs() / 60)
                        .collect();
                    let q: usize = fleet.iter().map(|b| b.queue.len()).sum();
                    let mut a = Ages::default();
                    a.take(fleet, next_minute, t0);
                    let a95 = pct(&mut a.0, 0.95) / MIN;
                    eprintln!(
                        "t={} min: age95 {a95} delivered {} 429s {} requests {} gaps p5 {} p50 {} p95 {} queued {q}",
                        (next_minute - t0) / MIN,
                        w.c.delivered,
                        w.c.throttled,
                        w.c.requests,
                        pct(&mut g, 0.05),
                        pct(&mut g, 0.5),
                        pct(&mut g, 0.95)
                    );
                }
                if next_minute >= sample_from {
                    let mut now_ages = Ages::default();
                    now_ages.take(fleet, next_minute, t0);
                    if first_p95_ok.is_none() && pct(&mut now_ages.0, 0.95) <= 30 * MIN {
                        first_p95_ok = Some(next_minute);
                    }
                    ages.0.extend(now_ages.0);
                    if all_heard.is_none()
                        && fleet.iter().all(|b| b.newest.is_some_and(|t| t >= from))
                    {
                        all_heard = Some(next_minute);
                    }
                }
                next_minute += MIN;
                continue;
            }
            if due >= until {
                break;
            }
            heap.pop();
            let b = &mut fleet[i];
            if b.due() == due {
                b.tick(w, due);
            }
            heap.push(std::cmp::Reverse((b.due(), i)));
        }
        (first_p95_ok, all_heard)
    };
    let rate = |c: &Count, span: u64| c.delivered as f64 / (span as f64 / MIN as f64);
    let share = |c: &Count| 100.0 * c.throttled as f64 / c.requests.max(1) as f64;
    // Steady state (the first hour is the fleet's start, not counted).
    let mut ages = Ages::default();
    advance(
        &mut fleet,
        &mut w,
        t0,
        t0 + WARMUP,
        &mut Ages::default(),
        u64::MAX,
    );
    w.c = Count::default();
    advance(
        &mut fleet,
        &mut w,
        t0 + WARMUP,
        t0 + STEADY,
        &mut ages,
        t0 + WARMUP,
    );
    let s = w.c.clone();
    let steady = format!(
        "steady (h1-6): {:.1} posts/min, 429s {:.2} % of {} requests ({} on telemetry), {}, dropped {}, validations/checks delayed by a 429: {}",
        rate(&s, STEADY - WARMUP),
        share(&s),
        s.requests,
        s.throttled_telemetry,
        ages.line(),
        s.dropped,
        s.delayed_by_429
    );
    // Outage.
    w.down = true;
    w.c = Count::default();
    let t1 = t0 + STEADY;
    advance(
        &mut fleet,
        &mut w,
        t1,
        t1 + OUTAGE,
        &mut Ages::default(),
        u64::MAX,
    );
    let dropped_outage = w.c.dropped;
    w.down = false;
    let backlog: usize = fleet.iter().map(|b| b.queue.len()).sum();
    // Recovery.
    w.c = Count::default();
    let t2 = t1 + OUTAGE;
    let mut ages = Ages::default();
    let (ok, heard) = advance(&mut fleet, &mut w, t2, t2 + RECOVERY, &mut ages, t2);
    let r = w.c.clone();
    let left: usize = fleet.iter().map(|b| b.queue.len()).sum();
    let max_q = fleet.iter().map(|b| b.queue.len()).max().unwrap_or(0);
    let gaps: Vec<u64> = fleet
        .iter()
        .map(|b| b.pace.gap(INTERVAL).as_secs() / 60)
        .collect();
    format!(
        "N={n} {policy:?}{}\n  {steady}\n  2 h outage: backlog {backlog} samples, {dropped_outage} dropped\n  \
         recovery (6 h): every box heard again after {}, p95 age <= 30 min after {}, {:.1} posts/min, 429s {:.2} % of {} requests, {}, \
         backlog left {left} (largest queue {max_q}), dropped {}, validations/checks delayed by a 429: {}\n  \
         post gap at the end: {}-{} min",
        if per_box { ", one address per box" } else { "" },
        heard.map_or("never".into(), |t| format!("{} min", (t - t2) / MIN)),
        ok.map_or("never".into(), |t| format!("{} min", (t - t2) / MIN)),
        rate(&r, RECOVERY),
        share(&r),
        r.requests,
        ages.line(),
        r.dropped,
        r.delayed_by_429,
        gaps.iter().min().unwrap_or(&0),
        gaps.iter().max().unwrap_or(&0),
    )
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![300, 1000]
    } else {
        sizes
    };
    let policies: Vec<Policy> = match std::env::var("FLEET_POLICY").as_deref() {
        Ok("old") => vec![Policy::OldestFirst],
        Ok("fresh") => vec![Policy::FreshFirst],
        Ok("paced") => vec![Policy::FreshFirstPaced],
        _ => vec![
            Policy::OldestFirst,
            Policy::FreshFirst,
            Policy::FreshFirstPaced,
        ],
    };
    let per_box = std::env::var_os("FLEET_PER_BOX").is_some();
    println!(
        "fleet model: {}, throttler 60/min per route (tests/sim), telemetry every {} s, \
         queue_max {QUEUE_MAX}, 6 h steady, 2 h outage, 6 h recovery",
        if per_box {
            "one address per box"
        } else {
            "one address"
        },
        INTERVAL.as_secs()
    );
    for n in sizes {
        for &p in &policies {
            let t = std::time::Instant::now();
            println!("{}", run(n, p, per_box));
            println!("  ({:.1} s of real time)", t.elapsed().as_secs_f64());
        }
    }
}
