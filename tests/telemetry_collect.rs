//! Telemetry measurements against fixed /proc files (exact values) and the real /proc.

use cybersensei_agent::clock::{Clock, FakeClock};
use cybersensei_agent::fsutil::nearest_existing;
use cybersensei_agent::telemetry::collect::{
    self, parse_app_metrics, parse_meminfo, parse_stat, percent, Source,
};
use cybersensei_agent::telemetry::Collector;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fake clock whose `sleep` also rewrites /proc/stat, as the kernel would have
/// during the first-sample window.
struct ProcClock {
    inner: FakeClock,
    stat: PathBuf,
    next: RefCell<Option<String>>,
}

impl Clock for ProcClock {
    fn now_unix(&self) -> f64 {
        self.inner.now_unix()
    }
    fn monotonic(&self) -> Duration {
        self.inner.monotonic()
    }
    fn sleep(&self, d: Duration) {
        if let Some(text) = self.next.borrow_mut().take() {
            std::fs::write(&self.stat, text).unwrap();
        }
        self.inner.sleep(d);
    }
    fn random(&self) -> f64 {
        self.inner.random()
    }
}

fn stat_line(user: u64, system: u64, idle: u64, iowait: u64) -> String {
    format!(
        "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 {user} 0 {system} {idle} {iowait} 0 0 0 0 0\nintr 1 2 3\nctxt 99\n"
    )
}

fn fixed_proc() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("stat"), stat_line(100, 100, 700, 100)).unwrap();
    std::fs::write(
        d.path().join("meminfo"),
        "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     372000 kB\nBuffers:           1000 kB\n",
    )
    .unwrap();
    std::fs::write(d.path().join("uptime"), "86400.73 12345.00\n").unwrap();
    d
}

#[test]
fn fixed_proc_files_give_exact_values() {
    let d = fixed_proc();
    let stat = d.path().join("stat");
    let clock = ProcClock {
        inner: FakeClock::new(1_800_000_000.0),
        stat: stat.clone(),
        // During the first window: +100 user, +50 system, +300 idle, +50 iowait.
        next: RefCell::new(Some(stat_line(200, 150, 1000, 150))),
    };
    let mut c = Collector::with_proc_root(d.path());
    // First sample: measured over the window (slept on the injected clock).
    assert_eq!(c.cpu_usage(&clock), Some(30.0)); // busy 150 of 500
    assert_eq!(clock.inner.slept(), collect::FIRST_CPU_WINDOW);
    // Next sample: the delta since the previous one, no sleep.
    std::fs::write(&stat, stat_line(290, 150, 1010, 150)).unwrap(); // busy 90 of 100
    assert_eq!(c.cpu_usage(&clock), Some(90.0));
    assert_eq!(clock.inner.slept(), collect::FIRST_CPU_WINDOW);
    // Nothing moved: 0, not NaN.
    assert_eq!(c.cpu_usage(&clock), Some(0.0));
    assert_eq!(c.memory_usage(), Some(62.8));
    assert_eq!(c.uptime(), Some(86400));
}

#[test]
fn first_window_is_configurable() {
    let d = fixed_proc();
    let clock = FakeClock::new(1_800_000_000.0);
    let mut c = Collector::with_proc_root(d.path()).with_first_window(Duration::from_millis(200));
    assert_eq!(c.cpu_usage(&clock), Some(0.0));
    assert_eq!(clock.slept(), Duration::from_millis(200));
}

#[test]
fn parsers_handle_variants_and_rounding() {
    // Old kernels: only 4 fields.
    let t = parse_stat("cpu 1 2 3 4\n").unwrap();
    assert_eq!((t.total, t.idle), (10, 4));
    assert_eq!(parse_stat("intr 1\n"), None);
    assert_eq!(parse_stat("cpu 1 x 3 4\n"), None);
    // No MemAvailable (before 3.14): MemFree + Buffers + Cached.
    let m = "MemTotal: 3000 kB\nMemFree: 500 kB\nBuffers: 250 kB\nCached: 250 kB\n";
    assert_eq!(parse_meminfo(m), Some(66.7));
    assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
    assert_eq!(percent(100.0 / 3.0), 33.3);
    assert_eq!(percent(f64::NAN), 0.0);
    assert_eq!(percent(104.2), 100.0);
    assert_eq!(percent(-3.0), 0.0);
}

#[test]
fn missing_proc_files_leave_fields_out_and_log_once() {
    let d = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(1_800_000_000.0);
    let mut c = Collector::with_proc_root(d.path());
    for _ in 0..3 {
        assert_eq!(c.uptime(), None);
        assert_eq!(c.memory_usage(), None);
        assert_eq!(c.cpu_usage(&clock), None);
    }
    assert_eq!(c.problems_logged(), 3, "one per source, not per cycle");
    std::fs::write(d.path().join("uptime"), "5.5 1.0\n").unwrap();
    assert_eq!(c.uptime(), Some(5));
    assert_eq!(c.problem(Source::Uptime), None);
    assert_eq!(c.problems_logged(), 4, "the recovery is logged once too");
}

fn read_uptime() -> f64 {
    let t = std::fs::read_to_string("/proc/uptime").unwrap();
    t.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn real_proc_values_are_plausible() {
    let clock = cybersensei_agent::clock::SystemClock::new();
    let mut c = Collector::new().with_first_window(Duration::from_millis(50));
    let before = read_uptime();
    let ours = c.uptime().unwrap() as f64;
    let after = read_uptime();
    assert!(
        ours >= before.floor() - 1.0 && ours <= after + 1.0,
        "uptime {ours} vs kernel {before}..{after}"
    );
    let cpu = c.cpu_usage(&clock).unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    let mem = c.memory_usage().unwrap();
    assert!(mem > 0.0 && mem < 100.0, "{mem}");
    // A second CPU sample works from the previous counters.
    let cpu2 = c.cpu_usage(&clock).unwrap();
    assert!((0.0..=100.0).contains(&cpu2), "{cpu2}");
}

#[test]
fn disk_usage_of_missing_root_uses_nearest_ancestor_and_matches_df() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("opt/cybersensei/not/yet");
    assert_eq!(nearest_existing(&missing), d.path());
    let mut c = Collector::with_proc_root(d.path());
    let ours = c.disk_usage(&missing).unwrap();
    assert_eq!(Some(ours), c.disk_usage(d.path()));
    assert!((0.0..=100.0).contains(&ours), "{ours}");
    // df rounds its Use% up to a whole percent; the same formula must agree within 1.
    if let Ok(o) = std::process::Command::new("df")
        .arg("-P")
        .arg(d.path())
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        let pct: f64 = text
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|p| p.trim_end_matches('%').parse().ok())
            .unwrap();
        assert!((ours - pct).abs() <= 1.0, "ours {ours} df {pct}");
    }
}

fn write_metrics(path: &Path, text: &str, mtime_unix: f64) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs_f64(mtime_unix))
        .unwrap();
}

#[test]
fn app_metrics_valid_missing_stale_malformed() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("metrics.json");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let clock = FakeClock::new(now);
    let max_age = Duration::from_secs(600);
    let mut c = Collector::with_proc_root(d.path());

    // Missing: zeros, no latency, logged once however many cycles.
    for _ in 0..3 {
        let m = c.app_metrics(&clock, &file, max_age);
        assert_eq!(
            (m.active_users, m.exercises_completed_today, m.ai_latency),
            (0, 0, None)
        );
    }
    assert_eq!(c.problem(Source::AppMetrics), Some("missing"));
    assert_eq!(c.problems_logged(), 1);

    // Valid and fresh.
    write_metrics(
        &file,
        r#"{"activeUsers": 3, "exercisesCompletedToday": 12, "aiLatency": 240.5}"#,
        now - 10.0,
    );
    let m = c.app_metrics(&clock, &file, max_age);
    assert_eq!(
        (m.active_users, m.exercises_completed_today, m.ai_latency),
        (3, 12, Some(240.5))
    );
    assert_eq!(c.problem(Source::AppMetrics), None);
    assert_eq!(c.problems_logged(), 2);

    // Stale: written longer ago than two intervals by the injected clock.
    clock.advance(Duration::from_secs(601));
    for _ in 0..2 {
        let m = c.app_metrics(&clock, &file, max_age);
        assert_eq!((m.active_users, m.ai_latency), (0, None));
    }
    assert_eq!(c.problem(Source::AppMetrics), Some("stale"));
    assert_eq!(c.problems_logged(), 3);

    // Malformed (fresh file): a different problem, logged once.
    let now = clock.now_unix();
    for text in [
        r#"{"activeUsers": "three"}"#,
        "{not json",
        r#"{"activeUsers": -1, "exercisesCompletedToday": 1}"#,
    ] {
        write_metrics(&file, text, now);
        let m = c.app_metrics(&clock, &file, max_age);
        assert_eq!(
            (m.active_users, m.exercises_completed_today, m.ai_latency),
            (0, 0, None),
            "{text}"
        );
        assert_eq!(c.problem(Source::AppMetrics), Some("malformed"));
    }
    assert_eq!(c.problems_logged(), 4);

    // Too large to be a metrics file: refused, not read whole.
    let big = format!(
        r#"{{"activeUsers": 1, "exercisesCompletedToday": 2, "pad": "{}"}}"#,
        "x".repeat(collect::MAX_APP_METRICS_BYTES as usize)
    );
    write_metrics(&file, &big, now);
    assert_eq!(c.app_metrics(&clock, &file, max_age).active_users, 0);
    assert_eq!(c.problem(Source::AppMetrics), Some("unreadable"));
}

#[test]
fn app_metrics_parser_edges() {
    let m = parse_app_metrics(br#"{"activeUsers": 3.0, "exercisesCompletedToday": 0}"#).unwrap();
    assert_eq!((m.active_users, m.ai_latency), (3, None));
    let m = parse_app_metrics(
        br#"{"activeUsers": 1, "exercisesCompletedToday": 2, "aiLatency": null}"#,
    )
    .unwrap();
    assert_eq!(m.ai_latency, None);
    assert!(parse_app_metrics(br#"{"activeUsers": 1.5, "exercisesCompletedToday": 2}"#).is_err());
    assert!(parse_app_metrics(
        br#"{"activeUsers": 1, "exercisesCompletedToday": 2, "aiLatency": -4}"#
    )
    .is_err());
    assert!(parse_app_metrics(br#"[1, 2]"#).is_err());
    assert!(parse_app_metrics(br#"{"exercisesCompletedToday": 2}"#).is_err());
}

#[test]
fn sysinfo_fallback_agrees_with_proc_uptime() {
    let before = read_uptime();
    let s = collect::sysinfo_uptime().unwrap() as f64;
    let after = read_uptime();
    assert!(
        s >= before.floor() - 1.0 && s <= after + 1.0,
        "{s} vs {before}..{after}"
    );
}
