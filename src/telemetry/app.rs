//! `telemetry.app_metrics_command`: the application's counters printed by a command
//! (board/node-metrics.sh reads them from the node's PostgreSQL), in the place of the
//! metrics file nothing on a box writes (../shared/NODE.md §4).
//!
//! One argv, executed directly (no shell), with the environment of install hooks
//! (`PATH` and `LANG` only: nothing of the agent's, which may hold the license key or
//! proxy credentials), stdin closed, from `/`, in its own process group killed whole
//! after `COMMAND_TIMEOUT`. Its stdout (at most `MAX_APP_METRICS_BYTES`) is parsed as
//! the file is; its stderr (first `MAX_STDERR` bytes) explains a failure in the log.

use super::collect::{parse_app_metrics, AppMetrics, MAX_APP_METRICS_BYTES};
use crate::clock::Clock;
use crate::services;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the command may run before it is killed (and the sample goes without).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of stderr kept for the log.
const MAX_STDERR: u64 = 1024;

/// Reads at most `limit + 1` bytes of `r` on a thread.
fn bounded_reader(
    r: Option<impl Read + Send + 'static>,
    limit: u64,
) -> Option<JoinHandle<Vec<u8>>> {
    let r = r?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.take(limit + 1).read_to_end(&mut buf);
        buf
    }))
}

/// What a reader got, waiting at most `wait` (a grandchild holding the pipe open must
/// not hold the agent: its reader is left behind, detached).
fn collect(h: Option<JoinHandle<Vec<u8>>>, wait: Duration) -> Vec<u8> {
    let Some(h) = h else { return Vec::new() };
    let deadline = std::time::Instant::now() + wait;
    while !h.is_finished() {
        if std::time::Instant::now() >= deadline {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().unwrap_or_default()
}

/// Runs `argv` and parses what it prints; the error is (kind, message) as the file's.
pub(crate) fn run(
    argv: &[String],
    clock: &dyn Clock,
    timeout: Duration,
) -> Result<AppMetrics, (&'static str, String)> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(("cannot run", "empty command".into()));
    };
    let mut c = services::clean_command(prog, Path::new("/"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| ("cannot run", format!("cannot run ({e})")))?;
    let out = bounded_reader(child.stdout.take(), MAX_APP_METRICS_BYTES);
    let err = bounded_reader(child.stderr.take(), MAX_STDERR);
    let status = services::wait_child(child, clock, timeout, Duration::ZERO)
        .map_err(|g| ("failed", g.to_string()))?;
    let wait = Duration::from_millis(500);
    let stdout = collect(out, wait);
    if !status.success() {
        let stderr = collect(err, wait);
        let why = String::from_utf8_lossy(&stderr);
        let why = why
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let why = crate::redact::scrub(why);
        return Err((
            "failed",
            if why.is_empty() {
                format!("{status}")
            } else {
                format!("{status}: {why}")
            },
        ));
    }
    if stdout.len() as u64 > MAX_APP_METRICS_BYTES {
        return Err((
            "malformed",
            format!("printed more than {MAX_APP_METRICS_BYTES} bytes"),
        ));
    }
    parse_app_metrics(&stdout).map_err(|m| ("malformed", format!("malformed output ({m})")))
}
