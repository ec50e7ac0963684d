//! Injected time and randomness, so intervals, backoff and expiry are testable
//! without sleeping.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A wall-clock instant: seconds since the Unix epoch, fractional (what
/// `license.json` keeps, as a plain number). Never a duration: the difference of two
/// is seconds ([`UnixTime::since`]).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub f64);

/// Earliest wall time we ever believe (2026-01-01T00:00:00Z). A box without an RTC
/// boots in 1970; before NTP sets it, expiry arithmetic means nothing.
pub(crate) const MIN_SANE: UnixTime = UnixTime(1_767_225_600.0);

/// The release's build date when it was stamped (`SOURCE_DATE_EPOCH` at compile time,
/// set by board/build.sh from the commit date: reproducible), else `MIN_SANE`:
/// no box can truly be running before its agent was built.
pub(crate) fn floor() -> UnixTime {
    option_env!("SOURCE_DATE_EPOCH")
        // Whole seconds (reproducible-builds spec), read as an integer: no float
        // parser in the binary for this.
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(MIN_SANE, |built| UnixTime((built as f64).max(MIN_SANE.0)))
}

impl UnixTime {
    /// Seconds since the epoch.
    pub fn secs(self) -> f64 {
        self.0
    }

    /// Seconds from `earlier` to this instant (negative when `earlier` is later).
    pub fn since(self, earlier: UnixTime) -> f64 {
        self.0 - earlier.0
    }

    /// This instant moved by `secs` seconds (either way).
    pub fn plus(self, secs: f64) -> UnixTime {
        UnixTime(self.0 + secs)
    }

    /// True when this reading of the wall clock can be trusted for expiry
    /// arithmetic: not before the agent was built ([`floor`]).
    pub fn is_sane(self) -> bool {
        self >= floor()
    }

    /// ISO-8601 UTC with milliseconds ([`iso8601`]).
    pub fn iso8601(self) -> String {
        iso8601(self.0)
    }

    /// Parses ISO-8601 UTC ([`parse_iso8601`]).
    pub fn parse(s: &str) -> Option<UnixTime> {
        parse_iso8601(s).map(UnixTime)
    }
}

/// Wall time, monotonic time, sleeping and randomness, as the agent sees them.
pub trait Clock {
    /// Wall-clock time as seconds since the Unix epoch (for timestamps and expiry).
    fn now_unix(&self) -> f64;
    /// [`Clock::now_unix`] as an instant.
    fn now(&self) -> UnixTime {
        UnixTime(self.now_unix())
    }
    /// Monotonic time since an arbitrary origin (for intervals and timeouts).
    fn monotonic(&self) -> Duration;
    /// Blocks for `d` (or less, if the clock decides to wake early: e.g. a signal).
    fn sleep(&self, d: Duration);
    /// A uniformly random number in [0, 1).
    fn random(&self) -> f64;
}

/// The real clock: system time, `Instant`, `thread::sleep`, and a small PRNG.
pub struct SystemClock {
    origin: Instant,
    rng: Cell<u64>,
}

impl SystemClock {
    /// A system clock whose PRNG is seeded from the OS.
    pub fn new() -> SystemClock {
        let mut seed = [0u8; 8];
        // ring's SystemRandom reads getrandom(2); fall back to time and pid.
        use ring::rand::SecureRandom;
        let s = if ring::rand::SystemRandom::new().fill(&mut seed).is_ok() {
            u64::from_le_bytes(seed)
        } else {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ ((std::process::id() as u64) << 32)
        };
        SystemClock {
            origin: Instant::now(),
            rng: Cell::new(s | 1),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

/// xorshift64*: plenty for jitter and splay, not for secrets.
pub fn xorshift(state: &Cell<u64>) -> f64 {
    let mut x = state.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (r >> 11) as f64 / (1u64 << 53) as f64
}

impl Clock for SystemClock {
    fn now_unix(&self) -> f64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        crate::signals::sleep_interruptible(d);
    }
    fn random(&self) -> f64 {
        xorshift(&self.rng)
    }
}

/// A clock for tests: time only moves when someone sleeps or calls `advance`. Only in
/// builds with the `test-seams` feature (the tests'), never in the product.
#[cfg(any(test, feature = "test-seams"))]
pub struct FakeClock {
    wall: Cell<f64>,
    mono: Cell<Duration>,
    rng: Cell<u64>,
    slept: Cell<Duration>,
}

#[cfg(any(test, feature = "test-seams"))]
impl FakeClock {
    /// A fake clock starting at `unix` seconds wall time, monotonic zero.
    pub fn new(unix: f64) -> FakeClock {
        FakeClock {
            wall: Cell::new(unix),
            mono: Cell::new(Duration::ZERO),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            slept: Cell::new(Duration::ZERO),
        }
    }
    /// Moves both clocks forward.
    pub fn advance(&self, d: Duration) {
        self.wall.set(self.wall.get() + d.as_secs_f64());
        self.mono.set(self.mono.get() + d);
    }
    /// Jumps the wall clock only (NTP setting the time), by `secs` (may be negative).
    pub fn jump_wall(&self, secs: f64) {
        self.wall.set(self.wall.get() + secs);
    }
    /// Total time spent in `sleep`.
    pub fn slept(&self) -> Duration {
        self.slept.get()
    }
}

#[cfg(any(test, feature = "test-seams"))]
impl Clock for FakeClock {
    fn now_unix(&self) -> f64 {
        self.wall.get()
    }
    fn monotonic(&self) -> Duration {
        self.mono.get()
    }
    fn sleep(&self, d: Duration) {
        self.slept.set(self.slept.get() + d);
        self.advance(d);
    }
    fn random(&self) -> f64 {
        xorshift(&self.rng)
    }
}

/// ISO-8601 UTC with milliseconds, as the backend writes it.
///
/// Plain arithmetic (days to civil date, Hinnant's algorithm) rather than a date
/// crate: it is all we format, and it holds past 2038 on 32-bit targets.
pub fn iso8601(unix: f64) -> String {
    // Rounded to the millisecond: 19.099 is 19.0989999… as a float.
    let total_ms = (unix.max(0.0) * 1000.0).round().min(u64::MAX as f64) as u64;
    let (secs, millis) = (total_ms / 1000, total_ms % 1000);
    let (days, rem) = (secs / 86400, secs % 86400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since 0000-03-01 in 400-year eras; March-based years put the leap day last.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// Parses ISO-8601 UTC (`2025-12-31T23:59:59.000Z`, with or without fractions; `T` or
/// a space; `Z`, `+00:00` or nothing), by plain arithmetic: humantime refuses
/// instants after 2038-01-19 on 32-bit targets (armv7), which lost the expiry of
/// licenses running to 2099 there.
pub fn parse_iso8601(s: &str) -> Option<f64> {
    let b = s.trim().as_bytes();
    let num = |from: usize, to: usize| -> Option<u64> {
        let t = b.get(from..to)?;
        t.iter().try_fold(0u64, |a, d| {
            d.is_ascii_digit().then(|| a * 10 + u64::from(d - b'0'))
        })
    };
    let sep = |i: usize, ok: &[u8]| b.get(i).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"T ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let mdays: [u64; 12] = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let m = usize::try_from(month).ok()?.checked_sub(1)?;
    if day == 0 || day > *mdays.get(m)? {
        return None;
    }
    let ydays: u64 = mdays.iter().take(m).sum::<u64>() + day - 1;
    let leaps = |y: u64| y / 4 - y / 100 + y / 400;
    let days = (year - 1970) * 365 + leaps(year - 1) - leaps(1969) + ydays;
    let secs = days * 86400 + hour * 3600 + minute * 60 + second.min(59);
    let mut rest = b.get(19..)?;
    let mut nanos = 0u64;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        let mut mult = 100_000_000;
        for d in frac.get(..n)? {
            nanos += mult * u64::from(d - b'0');
            mult /= 10;
        }
        rest = frac.get(n..)?;
    }
    match rest {
        b"" | b"Z" | b"+00:00" => {
            Some(Duration::new(secs, u32::try_from(nanos).ok()?).as_secs_f64())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{iso8601, parse_iso8601};

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400.25), "2000-02-29T00:00:00.250Z");
        assert_eq!(iso8601(1_767_225_599.0), "2025-12-31T23:59:59.000Z");
        assert_eq!(iso8601(4_102_444_799.999), "2099-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-5.0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn round_trips_through_the_parser_every_few_days_to_2200() {
        let mut t = 0u64;
        while t < 7_258_118_400 {
            let s = iso8601(t as f64);
            assert_eq!(parse_iso8601(&s), Some(t as f64), "{s}");
            t += 86_400 * 3 + 3_661;
        }
    }
}
