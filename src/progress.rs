//! The update in progress, in memory only (no flash write per chunk): phase, bytes,
//! total, percent and ETA, for `GET /api/agent/progress` and a person's terminal.
//!
//! One process runs at most one update at a time (under `agent.lock`), so one
//! process-wide value is enough; the update code sets it through a few calls
//! without a new parameter, and the admin listener copies it under the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The steps of an update, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// Nothing ran since the agent started.
    #[default]
    Idle,
    Download,
    Verify,
    Extract,
    Switch,
    HealthCheck,
    Commit,
    /// Ended without a commit (refused, failed, rolled back).
    Failed,
    RolledBack,
}

impl Phase {
    /// Its number among the six working phases (0: none).
    fn step(self) -> u8 {
        match self {
            Phase::Download => 1,
            Phase::Verify => 2,
            Phase::Extract => 3,
            Phase::Switch => 4,
            Phase::HealthCheck => 5,
            Phase::Commit => 6,
            _ => 0,
        }
    }
    /// The word `/api/agent/progress` serves.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Download => "download",
            Phase::Verify => "verify",
            Phase::Extract => "extract",
            Phase::Switch => "switch",
            Phase::HealthCheck => "health-check",
            Phase::Commit => "commit",
            Phase::Failed => "failed",
            Phase::RolledBack => "rolled-back",
        }
    }
    /// The French word the status page and a terminal show.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Phase::Idle => "aucune",
            Phase::Download => "téléchargement",
            Phase::Verify => "vérification",
            Phase::Extract => "extraction",
            Phase::Switch => "bascule",
            Phase::HealthCheck => "contrôle de santé",
            Phase::Commit => "validée",
            Phase::Failed => "échec",
            Phase::RolledBack => "retour arrière",
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    /// The version and update id being installed, when known.
    version: Option<String>,
    update_id: Option<String>,
    phase: Phase,
    bytes: u64,
    total: Option<u64>,
    /// When the current phase began, and the bytes counted then.
    since: Option<Instant>,
    base: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    version: None,
    update_id: None,
    phase: Phase::Idle,
    bytes: 0,
    total: None,
    since: None,
    base: 0,
});

/// A person watches on a terminal: each new phase is printed on stderr.
static TERMINAL: AtomicBool = AtomicBool::new(false);

/// Prints each new phase on stderr from now on (an interactive command on a tty).
pub(crate) fn show_on_terminal() {
    TERMINAL.store(true, Ordering::Relaxed);
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // A panic while holding it cannot leave it inconsistent (plain copies).
    let mut g = STATE.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

/// Names what is being installed (None: not known yet).
pub(crate) fn target(version: Option<&str>, update_id: Option<&str>) {
    with(|s| {
        s.version = version.map(str::to_string);
        s.update_id = update_id.map(str::to_string);
    });
}

/// The version and update id being installed, as `target` named them.
pub(crate) fn current_target() -> (Option<String>, Option<String>) {
    with(|s| (s.version.clone(), s.update_id.clone()))
}

/// Follows the update state written to status.json: the working states and the
/// two failed ends enter their phase (`switch` and `commit` are entered by the
/// driver). `idle`/`available` end a working phase (a paused download, a verified
/// package waiting for `update`) and leave an ended one shown.
pub(crate) fn follow(state: crate::status::UpdateState) {
    use crate::status::UpdateState as U;
    let p = match state {
        U::Downloading => Phase::Download,
        U::Verifying => Phase::Verify,
        U::Installing => Phase::Extract,
        U::HealthCheck => Phase::HealthCheck,
        U::Failed => Phase::Failed,
        U::RolledBack => Phase::RolledBack,
        U::Idle | U::Available => {
            with(|s| {
                if matches!(s.phase.step(), 1..=5) {
                    s.phase = Phase::Idle;
                }
            });
            return;
        }
    };
    phase(p);
}

/// Enters `phase` (the same phase again keeps its counters).
pub(crate) fn phase(phase: Phase) {
    with(|s| {
        if s.phase != phase {
            s.phase = phase;
            s.since = Some(Instant::now());
            s.base = s.bytes;
            if phase == Phase::Download {
                s.bytes = 0;
                s.base = 0;
                s.total = None;
            }
            if TERMINAL.load(Ordering::Relaxed) && phase != Phase::Download {
                eprintln!("[{}/6] {}", phase.step(), phase.label());
            }
        }
    });
}

/// Bytes done in the current phase, of `total` when known.
pub(crate) fn bytes(done: u64, total: Option<u64>) {
    with(|s| set_bytes(s, done, total));
}

/// `bytes` for each chunk of a download, which never waits: while the admin listener
/// (at nice 19) holds the lock to copy the value, this chunk's count is dropped and
/// the next one's (an absolute count) replaces it. So a listener preempted while
/// holding the lock cannot stall the download.
pub(crate) fn chunk(done: u64) {
    match STATE.try_lock() {
        Ok(mut g) => set_bytes(&mut g, done, None),
        Err(std::sync::TryLockError::Poisoned(p)) => set_bytes(&mut p.into_inner(), done, None),
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
}

fn set_bytes(s: &mut State, done: u64, total: Option<u64>) {
    if s.since.is_none() {
        s.since = Some(Instant::now());
        s.base = done;
    }
    s.bytes = done;
    if total.is_some() {
        s.total = total;
    }
}

/// What `GET /api/agent/progress` serves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) phase: Phase,
    /// The phase in French.
    pub(crate) label: &'static str,
    /// 1 to 6 among download, verify, extract, switch, health-check, commit (0: none).
    pub(crate) step: u8,
    /// An update is running (not idle, committed, failed or rolled back).
    pub(crate) active: bool,
    pub(crate) bytes: u64,
    pub(crate) total: Option<u64>,
    pub(crate) percent: Option<u8>,
    /// Seconds left in the download at its current rate.
    pub(crate) eta_seconds: Option<u64>,
    pub(crate) version: Option<String>,
    pub(crate) update_id: Option<String>,
}

/// A copy of the current progress.
pub(crate) fn snapshot() -> Snapshot {
    let s = with(|s| s.clone());
    let active = s.phase.step() > 0 && s.phase != Phase::Commit;
    let percent = s
        .total
        .filter(|&t| t > 0 && s.phase == Phase::Download)
        .map(|t| (s.bytes.min(t) * 100 / t) as u8);
    let eta_seconds = match (s.phase, s.total, s.since) {
        (Phase::Download, Some(t), Some(since)) => {
            let secs = since.elapsed().as_secs_f64();
            let done = s.bytes.saturating_sub(s.base) as f64;
            (secs >= 1.0 && done > 0.0)
                .then(|| (t.saturating_sub(s.bytes) as f64 / (done / secs)).round() as u64)
        }
        _ => None,
    };
    Snapshot {
        phase: s.phase,
        label: s.phase.label(),
        step: s.phase.step(),
        active,
        bytes: s.bytes,
        total: s.total,
        percent,
        eta_seconds,
        version: s.version,
        update_id: s.update_id,
    }
}

/// One line for a terminal: `téléchargement 42 % (21.0 / 50.0 MB), 12 s restantes`.
pub(crate) fn line(s: &Snapshot) -> String {
    let mut out = format!("[{}/6] {}", s.step, s.label);
    if let Some(p) = s.percent {
        out.push_str(&format!(" {p} %"));
    }
    if let Some(t) = s.total {
        out.push_str(&format!(" ({} / {})", human_size(s.bytes), human_size(t)));
    }
    if let Some(e) = s.eta_seconds {
        out.push_str(&format!(", {e} s restantes"));
    }
    out
}

/// `25 MB`, `712 B`: decimal units, as the dashboard shows a size.
pub(crate) fn human_size(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in ["kB", "MB", "GB", "TB"] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_dashboard_shows_them() {
        assert_eq!(human_size(712), "712 B");
        assert_eq!(human_size(25_000_000), "25.0 MB");
        assert_eq!(human_size(1_500), "1.5 kB");
    }
}
