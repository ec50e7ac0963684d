//! The real backend's rate limiter, modelled: `@nestjs/throttler` 6 (`^6.5.0` in
//! platform/api/package.json) registered as a global guard with one unnamed throttler
//! `{ttl: 60000, limit: 60}` (platform/api/src/app.module.ts:47-53 and :133-138), its
//! in-memory storage (`ThrottlerStorageService.increment`) and its guard's headers.
//! What it does, so the model can be checked against it (see docs/protocol.md):
//! - the key is the controller + handler (one per route, whatever its parameters) and
//!   the tracker `req.ip` (no `trust proxy` in main.ts: the TCP peer, so every box
//!   behind one NAT address shares one budget);
//! - each hit expires `ttl` after it was made (a timer per hit);
//! - the hit that makes the count exceed `limit` blocks the key for `blockDuration`
//!   (default: `ttl`); while blocked, hits are not counted; the first request after the
//!   block resets the count to that one request;
//! - allowed: `X-RateLimit-Limit`, `X-RateLimit-Remaining` (limit - hits, >= 0),
//!   `X-RateLimit-Reset` (seconds, rounded up, until the key's window ends);
//!   blocked: 429 `{"statusCode":429,"message":"ThrottlerException: Too Many Requests"}`
//!   with only `Retry-After` (seconds, rounded up, until the block ends).
//!
//! Time comes from a [`SimClock`], so tests and fleet measurements can run an
//! accelerated or manual clock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the simulator's time comes from (throttler, license expiry, stamps).
#[derive(Clone, Default)]
pub enum SimClock {
    /// The system clock.
    #[default]
    Real,
    /// A clock moved by hand (see [`ManualClock`]).
    Manual(ManualClock),
    /// Any function returning milliseconds since the Unix epoch.
    Func(Arc<dyn Fn() -> u64 + Send + Sync>),
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimClock::Real => f.write_str("Real"),
            SimClock::Manual(m) => write!(f, "Manual({})", m.now_ms()),
            SimClock::Func(_) => f.write_str("Func"),
        }
    }
}

impl SimClock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            SimClock::Real => system_ms(SystemTime::now()),
            SimClock::Manual(m) => m.now_ms(),
            SimClock::Func(f) => f(),
        }
    }
}

/// Milliseconds since the epoch of a `SystemTime` (0 before it).
pub fn system_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A shared, hand-moved clock: clones see the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(system_ms(start))))
    }
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    /// Sets the clock (milliseconds since the epoch).
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

/// What the throttler decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through, with the values of the three `X-RateLimit-*` headers.
    Allowed {
        limit: u32,
        remaining: u32,
        reset_s: i64,
    },
    /// 429 with `Retry-After: retry_after_s`.
    Blocked { retry_after_s: i64 },
}

#[derive(Debug, Default)]
struct Record {
    /// When each counted hit expires (ms), oldest first.
    hits: VecDeque<u64>,
    expires_at: u64,
    blocked: bool,
    block_expires_at: u64,
}

/// Per (route, client) hit storage with the real limiter's arithmetic.
#[derive(Debug)]
pub struct Throttler {
    /// Requests allowed per `ttl` (real: 60).
    pub limit: u32,
    /// Window of one hit, ms (real: 60 000).
    pub ttl_ms: u64,
    /// How long a key stays blocked, ms (real: `ttl`).
    pub block_ms: u64,
    keys: HashMap<(String, String), Record>,
}

/// `Math.ceil(ms / 1000)` on a signed difference.
fn ceil_s(diff_ms: i64) -> i64 {
    (diff_ms as f64 / 1000.0).ceil() as i64
}

impl Default for Throttler {
    fn default() -> Self {
        Throttler::new(60, 60_000)
    }
}

impl Throttler {
    /// `limit` requests per `ttl_ms`, blocked for `ttl_ms` when exceeded.
    pub fn new(limit: u32, ttl_ms: u64) -> Throttler {
        Throttler {
            limit,
            ttl_ms,
            block_ms: ttl_ms,
            keys: HashMap::new(),
        }
    }

    /// One request on `route` from `tracker` (the client address) at `now_ms`.
    pub fn hit(&mut self, route: &str, tracker: &str, now_ms: u64) -> Verdict {
        let (ttl, limit, block) = (self.ttl_ms, self.limit, self.block_ms);
        let rec = self
            .keys
            .entry((route.to_string(), tracker.to_string()))
            .or_insert_with(|| Record {
                expires_at: now_ms + ttl,
                ..Default::default()
            });
        // The per-hit timers that would have fired by now.
        while rec.hits.front().is_some_and(|&t| t <= now_ms) {
            rec.hits.pop_front();
        }
        let mut time_to_expire = ceil_s(rec.expires_at as i64 - now_ms as i64);
        if time_to_expire <= 0 {
            rec.expires_at = now_ms + ttl;
            time_to_expire = ceil_s(ttl as i64);
        }
        if !rec.blocked {
            rec.hits.push_back(now_ms + ttl);
        }
        if rec.hits.len() as u64 > limit as u64 && !rec.blocked {
            rec.blocked = true;
            rec.block_expires_at = now_ms + block;
        }
        let time_to_block_expire = ceil_s(rec.block_expires_at as i64 - now_ms as i64);
        if time_to_block_expire <= 0 && rec.blocked {
            rec.blocked = false;
            rec.hits.clear();
            rec.hits.push_back(now_ms + ttl);
        }
        if rec.blocked {
            Verdict::Blocked {
                retry_after_s: time_to_block_expire,
            }
        } else {
            Verdict::Allowed {
                limit,
                remaining: limit.saturating_sub(rec.hits.len() as u32),
                reset_s: time_to_expire,
            }
        }
    }

    /// Forgets every key.
    pub fn reset(&mut self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_a_minute_then_blocked_for_the_ttl() {
        let mut t = Throttler::default();
        let t0 = 1_000_000;
        for i in 0..60 {
            match t.hit("r", "ip", t0 + i) {
                Verdict::Allowed { remaining, .. } => assert_eq!(remaining, 59 - i as u32),
                v => panic!("hit {i}: {v:?}"),
            }
        }
        assert_eq!(
            t.hit("r", "ip", t0 + 100),
            Verdict::Blocked { retry_after_s: 60 }
        );
        // Another route, another client: own budgets.
        assert!(matches!(t.hit("r2", "ip", t0), Verdict::Allowed { .. }));
        assert!(matches!(t.hit("r", "ip2", t0), Verdict::Allowed { .. }));
        assert_eq!(
            t.hit("r", "ip", t0 + 30_100),
            Verdict::Blocked { retry_after_s: 30 }
        );
        // Block over: the count restarts at this request.
        assert_eq!(
            t.hit("r", "ip", t0 + 60_100),
            Verdict::Allowed {
                limit: 60,
                remaining: 59,
                reset_s: 60
            }
        );
    }

    #[test]
    fn hits_expire_one_by_one() {
        let mut t = Throttler::new(2, 10_000);
        assert!(matches!(t.hit("r", "a", 0), Verdict::Allowed { .. }));
        assert!(matches!(t.hit("r", "a", 5_000), Verdict::Allowed { .. }));
        // The first hit expired at 10 000: one left in the window.
        assert!(matches!(
            t.hit("r", "a", 10_000),
            Verdict::Allowed { remaining: 0, .. }
        ));
        assert_eq!(
            t.hit("r", "a", 10_001),
            Verdict::Blocked { retry_after_s: 10 }
        );
    }
}
