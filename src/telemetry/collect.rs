//! Measurements of the box (/proc, statvfs) and of the application (its metrics file).
//!
//! Every reading is fail-soft: a source that cannot be read leaves its field out (or at
//! 0 for the application's required counters) and is logged once per distinct problem,
//! not every cycle, because the daemon keeps one `Collector` for its whole life.

use crate::clock::Clock;
use crate::fsutil;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest /proc file we read (/proc/stat on a big box is a few KiB).
const MAX_PROC_BYTES: u64 = 256 * 1024;
/// Largest application metrics file we read.
pub const MAX_APP_METRICS_BYTES: u64 = 64 * 1024;
/// Window of the first CPU measurement, when there is no previous sample to diff with.
pub const FIRST_CPU_WINDOW: Duration = Duration::from_millis(250);

/// The sources a problem can come from; each remembers its own last problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Uptime = 0,
    Cpu = 1,
    Memory = 2,
    Disk = 3,
    AppMetrics = 4,
}

const SOURCES: usize = 5;

/// What the application's metrics file said (or 0 and no latency when it could not).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AppMetrics {
    pub active_users: u64,
    pub exercises_completed_today: u64,
    pub ai_latency: Option<f64>,
}

/// One measurement of the box.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Sample {
    /// Seconds since boot.
    pub(crate) uptime: Option<u64>,
    /// Percentages in [0, 100], one decimal.
    pub(crate) cpu_usage: Option<f64>,
    pub(crate) memory_usage: Option<f64>,
    pub(crate) disk_usage: Option<f64>,
    pub(crate) app: AppMetrics,
}

/// Cumulative CPU jiffies from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// All time (user..steal; guest is already inside user).
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Keeps what consecutive samples need: the CPU counters of the previous sample and
/// the last problem seen per source (so each is logged once).
pub struct Collector {
    proc_root: PathBuf,
    first_window: Duration,
    prev_cpu: Option<CpuTimes>,
    problems: [Option<&'static str>; SOURCES],
    logged: u32,
    /// The AI probes since the last sample (`telemetry.ai_probe_url`).
    pub(crate) probes: super::probe::Probes,
}

impl Default for Collector {
    fn default() -> Self {
        Collector::new()
    }
}

impl Collector {
    /// A collector reading the real /proc.
    pub fn new() -> Collector {
        Collector::with_proc_root("/proc")
    }

    /// A collector reading `stat`, `meminfo` and `uptime` under `root` (tests feed fixed files).
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Collector {
        Collector {
            proc_root: root.into(),
            first_window: FIRST_CPU_WINDOW,
            prev_cpu: None,
            problems: [None; SOURCES],
            logged: 0,
            probes: Default::default(),
        }
    }

    /// Changes the window of the first CPU measurement.
    pub fn with_first_window(mut self, d: Duration) -> Collector {
        self.first_window = d;
        self
    }

    /// How many problems (and recoveries) were logged so far: each distinct one once.
    pub fn problems_logged(&self) -> u32 {
        self.logged
    }

    /// The current problem of a source, if any (a short kind, e.g. `"stale"`).
    pub fn problem(&self, s: Source) -> Option<&'static str> {
        self.problems[s as usize]
    }

    /// Measures the system half. `disk_path` is the directory whose filesystem is
    /// measured; the application half is left at its default (`telemetry::measure`).
    pub(crate) fn sample(&mut self, clock: &dyn Clock, disk_path: &Path) -> Sample {
        let cpu = self.cpu_usage(clock);
        let uptime = self.uptime();
        let memory = self.memory_usage();
        let disk = self.disk_usage(disk_path);
        Sample {
            uptime,
            cpu_usage: cpu,
            memory_usage: memory,
            disk_usage: disk,
            app: AppMetrics::default(),
        }
    }

    /// Seconds since boot from /proc/uptime.
    pub fn uptime(&mut self) -> Option<u64> {
        let r = self
            .read_proc("uptime")
            .and_then(|t| parse_uptime(&t).ok_or_else(|| "unexpected format".to_string()));
        self.outcome(Source::Uptime, "unreadable", "/proc/uptime", r)
    }

    /// CPU busy percentage since the previous sample; the first one measures over a
    /// short window (sleeping on the injected clock).
    pub fn cpu_usage(&mut self, clock: &dyn Clock) -> Option<f64> {
        let r = self.read_cpu();
        let now = self.outcome(Source::Cpu, "unreadable", "/proc/stat", r)?;
        let before = match self.prev_cpu {
            Some(p) => p,
            None => {
                clock.sleep(self.first_window);
                let r = self.read_cpu();
                let later = self.outcome(Source::Cpu, "unreadable", "/proc/stat", r)?;
                self.prev_cpu = Some(later);
                return Some(cpu_percent(now, later));
            }
        };
        self.prev_cpu = Some(now);
        Some(cpu_percent(before, now))
    }

    /// (MemTotal − MemAvailable) / MemTotal from /proc/meminfo.
    pub fn memory_usage(&mut self) -> Option<f64> {
        let r = self
            .read_proc("meminfo")
            .and_then(|t| parse_meminfo(&t).ok_or_else(|| "no MemTotal/MemAvailable".to_string()));
        self.outcome(Source::Memory, "unreadable", "/proc/meminfo", r)
    }

    /// Used share of the filesystem holding `path` (or its nearest existing ancestor).
    pub fn disk_usage(&mut self, path: &Path) -> Option<f64> {
        let target = crate::fsutil::nearest_existing(path);
        let r = statvfs_usage(&target).map_err(|e| format!("statvfs {}: {e}", target.display()));
        self.outcome(Source::Disk, "statvfs failed", "disk", r)
    }

    /// The application's counters; missing, unreadable, malformed or stale (older
    /// than `max_age` by the injected clock) → zeros and no latency.
    pub fn app_metrics(&mut self, clock: &dyn Clock, file: &Path, max_age: Duration) -> AppMetrics {
        let r = read_app_metrics(file, clock.now_unix(), max_age);
        self.app_outcome(&file.display().to_string(), r)
            .unwrap_or_default()
    }

    /// Logs an application source's problem once (and its recovery once); the
    /// problem's message is returned for status.json.
    pub(crate) fn app_outcome(
        &mut self,
        what: &str,
        r: std::result::Result<AppMetrics, (&'static str, String)>,
    ) -> std::result::Result<AppMetrics, String> {
        match r {
            Ok(m) => {
                self.clear(Source::AppMetrics, Path::new(what));
                Ok(m)
            }
            Err((kind, msg)) => {
                self.note(
                    Source::AppMetrics,
                    kind,
                    &format!(
                        "{what}: {msg}; activeUsers and exercisesCompletedToday are sent as 0 \
                         and aiLatency is left out"
                    ),
                );
                Err(msg)
            }
        }
    }

    fn read_proc(&self, name: &str) -> std::result::Result<String, String> {
        let p = self.proc_root.join(name);
        let data = fsutil::read_bounded(&p, MAX_PROC_BYTES).map_err(|e| e.to_string())?;
        String::from_utf8(data).map_err(|_| "not UTF-8".to_string())
    }

    fn read_cpu(&self) -> std::result::Result<CpuTimes, String> {
        self.read_proc("stat")
            .and_then(|t| parse_stat(&t).ok_or_else(|| "no cpu line".to_string()))
    }

    fn outcome<T>(
        &mut self,
        s: Source,
        kind: &'static str,
        what: &str,
        r: std::result::Result<T, String>,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                self.clear(s, Path::new(what));
                Some(v)
            }
            Err(e) => {
                self.note(s, kind, &format!("{what}: {e}; the field is left out"));
                None
            }
        }
    }

    /// Logs a problem unless it is the one already logged for this source.
    fn note(&mut self, s: Source, kind: &'static str, msg: &str) {
        if self.problems[s as usize] != Some(kind) {
            log::warn!("telemetry: {msg}");
            self.problems[s as usize] = Some(kind);
            self.logged += 1;
        }
    }

    /// Logs that a source is readable again after a problem.
    fn clear(&mut self, s: Source, what: &Path) {
        if self.problems[s as usize].take().is_some() {
            log::info!("telemetry: {} is readable again", what.display());
            self.logged += 1;
        }
    }
}

/// Seconds since boot from sysinfo(2): the fallback when /proc/uptime cannot be read.
pub fn sysinfo_uptime() -> Option<u64> {
    // SAFETY: sysinfo fills the zeroed struct we own.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the return value is checked.
    if unsafe { libc::sysinfo(&mut si) } != 0 {
        return None;
    }
    u64::try_from(si.uptime).ok()
}

/// `x` clamped to [0, 100] and rounded to one decimal (NaN → 0).
pub fn percent(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    (x.clamp(0.0, 100.0) * 10.0).round() / 10.0
}

/// Busy share between two /proc/stat readings (0 when no time passed).
pub(crate) fn cpu_percent(a: CpuTimes, b: CpuTimes) -> f64 {
    let total = b.total.saturating_sub(a.total);
    let idle = b.idle.saturating_sub(a.idle);
    if total == 0 {
        return 0.0;
    }
    percent(total.saturating_sub(idle) as f64 * 100.0 / total as f64)
}

/// Parses the aggregate `cpu` line of /proc/stat.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut f = [0u64; 8];
    let mut n = 0;
    for (slot, v) in f.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = v.parse().ok()?;
        n += 1;
    }
    // Kernels since 2.6.11 have at least 8 fields; accept the 4 of older ones.
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    let total = user
        .saturating_add(nice)
        .saturating_add(system)
        .saturating_add(idle)
        .saturating_add(iowait)
        .saturating_add(irq)
        .saturating_add(softirq)
        .saturating_add(steal);
    Some(CpuTimes {
        total,
        idle: idle.saturating_add(iowait),
    })
}

/// Memory in use, in percent, from /proc/meminfo (MemAvailable, or the older
/// MemFree + Buffers + Cached estimate on kernels before 3.14).
pub fn parse_meminfo(text: &str) -> Option<f64> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    let total = field("MemTotal")?;
    if total == 0 {
        return None;
    }
    let avail = match field("MemAvailable") {
        Some(a) => a,
        None => field("MemFree")?
            .saturating_add(field("Buffers").unwrap_or(0))
            .saturating_add(field("Cached").unwrap_or(0)),
    };
    Some(percent(
        total.saturating_sub(avail.min(total)) as f64 * 100.0 / total as f64,
    ))
}

/// Whole seconds since boot from /proc/uptime (`350735.47 234388.90`): the integer
/// part, read as an integer (a float parser would cost ~14 kB in the binary).
pub(crate) fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    first
        .split_once('.')
        .map_or(first, |(whole, _)| whole)
        .parse()
        .ok()
}

/// Used share of a filesystem as `df` computes it: used / (used + available to users).
pub(crate) fn statvfs_usage(path: &Path) -> std::io::Result<f64> {
    let st = crate::fsutil::statvfs(path)?;
    let blocks = st.f_blocks as u64;
    let free = st.f_bfree as u64;
    let avail = st.f_bavail as u64;
    let used = blocks.saturating_sub(free);
    let denom = used.saturating_add(avail);
    if denom == 0 {
        return Ok(0.0);
    }
    Ok(percent(used as f64 * 100.0 / denom as f64))
}

/// Reads and checks the application's metrics file; the error is (kind, message).
///
/// The file's directory belongs to the application's user, so what sits there is not
/// trusted to be a file: it is opened without following a link and without blocking
/// (a FIFO with no writer would hold the daemon in open(2) for good), and anything
/// but a regular file is refused. Age and size come from the open descriptor.
pub(crate) fn read_app_metrics(
    file: &Path,
    now_unix: f64,
    max_age: Duration,
) -> std::result::Result<AppMetrics, (&'static str, String)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(("missing", "missing".into()))
        }
        // O_NOFOLLOW on a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(("not regular", "not a regular file (a symbolic link)".into()))
        }
        Err(e) => return Err(("unreadable", format!("unreadable ({e})"))),
    };
    let meta = f
        .metadata()
        .map_err(|e| ("unreadable", format!("unreadable ({e})")))?;
    if !meta.is_file() {
        return Err((
            "not regular",
            format!("not a regular file ({:?})", meta.file_type()),
        ));
    }
    if let Ok(mtime) = meta.modified() {
        let m = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let age = now_unix - m;
        if age > max_age.as_secs_f64() {
            return Err((
                "stale",
                format!(
                    "stale (last written {:.0} s ago, limit {} s)",
                    age,
                    max_age.as_secs()
                ),
            ));
        }
    }
    let mut data = Vec::new();
    f.take(MAX_APP_METRICS_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| ("unreadable", format!("unreadable ({e})")))?;
    if data.len() as u64 > MAX_APP_METRICS_BYTES {
        return Err((
            "unreadable",
            format!("unreadable (larger than {MAX_APP_METRICS_BYTES} bytes)"),
        ));
    }
    parse_app_metrics(&data).map_err(|m| ("malformed", format!("malformed ({m})")))
}

/// Parses `{"activeUsers": 3, "exercisesCompletedToday": 12, "aiLatency": 240.5}`.
pub fn parse_app_metrics(data: &[u8]) -> std::result::Result<AppMetrics, String> {
    let v: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("not a JSON object")?;
    let count = |k: &str| -> std::result::Result<u64, String> {
        let n = o.get(k).ok_or_else(|| format!("{k} missing"))?;
        if let Some(u) = n.as_u64() {
            return Ok(u);
        }
        match n.as_f64() {
            // An integral float (3.0) is a count written by a loose JSON encoder.
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(f as u64),
            _ => Err(format!("{k} is not a non-negative integer")),
        }
    };
    let active_users = count("activeUsers")?;
    let exercises_completed_today = count("exercisesCompletedToday")?;
    let ai_latency = match o.get("aiLatency") {
        None | Some(serde_json::Value::Null) => None,
        Some(x) => match x.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Some(f),
            _ => return Err("aiLatency is not a non-negative number".into()),
        },
    };
    Ok(AppMetrics {
        active_users,
        exercises_completed_today,
        ai_latency,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_uptime;

    #[test]
    fn uptime_is_the_whole_seconds_of_the_first_field() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350735));
        assert_eq!(parse_uptime("12 3"), Some(12));
        assert_eq!(parse_uptime("0.99 0.5"), Some(0));
        for bad in ["", "-1.5 2", "nan 1", "x.5 1", ".5 1"] {
            assert_eq!(parse_uptime(bad), None, "{bad}");
        }
    }
}
