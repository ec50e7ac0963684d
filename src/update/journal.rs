//! The update journal (`state_dir/update/journal.json`): the one record of an update
//! in flight, rewritten atomically before each step so that a restart after a power
//! cut knows exactly what to complete or undo (see docs/updates.md).
//!
//! Also the fault hooks the kill tests use: only in builds with the `test-seams`
//! feature (the tests enable it; a box's binary, debug or release, never has it), the environment
//! variable `CYBERSENSEI_TEST_CRASH_AT` names a point where the process SIGKILLs
//! itself (`journal:<step>`, `switch:renamed`, `download:<bytes>`, `extract:<entries>`,
//! `copy:<files>` while a content package copies the active slot, `hook:<name>` after
//! an install hook succeeded).

use crate::error::{Error, Result};
use crate::fsutil;
use crate::state_paths::StatePaths;
use serde::{Deserialize, Serialize};

/// Largest journal file read back.
const MAX_JOURNAL: u64 = 64 * 1024;

/// The persisted steps of an update; each is written before the work it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Step {
    /// The inactive slot is being cleared and filled; it is incomplete.
    Staging,
    /// The new slot is complete; services are being stopped and `current` switched.
    Switching,
    /// `current` points at the new slot; services start and the health check runs.
    Switched,
    /// Going back to `from`: stop, switch back, start the old services.
    RollingBack,
    /// The health check passed; only bookkeeping is left.
    Committed,
}

impl Step {
    /// The word used in the journal and in crash points.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Staging => "staging",
            Step::Switching => "switching",
            Step::Switched => "switched",
            Step::RollingBack => "rolling-back",
            Step::Committed => "committed",
        }
    }
}

/// What started the journal: an update/install (staging a package) or a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    Update,
    Rollback,
}

/// The journal's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Journal {
    pub(crate) step: Step,
    pub(crate) kind: Kind,
    /// Slot active before ("a"/"b"), None on a fresh box.
    pub(crate) from: Option<String>,
    /// Slot being installed or switched to.
    pub(crate) target: String,
    /// Version being installed (of `target`).
    pub(crate) version: String,
    /// Backend update id, when the package came from the backend.
    pub(crate) update_id: Option<String>,
    /// Starts of the new slot's services so far (boot-attempt counter).
    pub(crate) attempts: u32,
    /// Why a rollback is under way, for status.json.
    #[serde(default)]
    pub(crate) reason: Option<String>,
    pub(crate) started_at: String,
    /// The kernel's boot id when the last attempt was counted: a start that finds
    /// another one knows the box rebooted (lost power) during that attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) boot: Option<String>,
    /// Starts of the new slot cut by a reboot, forgiven (not in `attempts`).
    #[serde(default)]
    pub(crate) cut_starts: u32,
}

/// Reads the journal; None when there is no update in flight.
pub(crate) fn load(paths: &StatePaths) -> Result<Option<Journal>> {
    let p = paths.journal();
    match fsutil::read_bounded(&p, MAX_JOURNAL) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::io(format!("{}: unreadable journal", p.display()), e.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

/// Persists the journal (atomic, fsynced) before the step it names is taken.
pub(crate) fn save(paths: &StatePaths, j: &Journal) -> Result<()> {
    fsutil::ensure_dir(&paths.update(), 0o700)?;
    fsutil::atomic_write_json(&paths.journal(), j, 0o600)?;
    log::debug!("journal: {} (target slot {})", j.step.as_str(), j.target);
    crash_point(&format!("journal:{}", j.step.as_str()));
    Ok(())
}

/// Removes the journal once the update is finished either way.
pub(crate) fn clear(paths: &StatePaths) -> Result<()> {
    let p = paths.journal();
    match std::fs::remove_file(&p) {
        Ok(()) => {
            let dir = paths.update();
            fsutil::fsync_dir(&dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// Kills the process with SIGKILL if `CYBERSENSEI_TEST_CRASH_AT` names `point`
/// (`test-seams` builds only: a box's binary never reads the variable).
pub(crate) fn crash_point(point: &str) {
    #[cfg(feature = "test-seams")]
    {
        if std::env::var("CYBERSENSEI_TEST_CRASH_AT").ok().as_deref() == Some(point) {
            die(point);
        }
    }
    #[cfg(not(feature = "test-seams"))]
    let _ = point;
}

/// Kills the process once a counter passes the number in `CYBERSENSEI_TEST_CRASH_AT`
/// of the form `<what>:<n>` (`test-seams` builds only).
pub(crate) fn crash_after(what: &str, count: u64) {
    #[cfg(feature = "test-seams")]
    {
        if let Ok(v) = std::env::var("CYBERSENSEI_TEST_CRASH_AT") {
            if let Some(n) = v
                .strip_prefix(what)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                if count >= n {
                    die(&v);
                }
            }
        }
    }
    #[cfg(not(feature = "test-seams"))]
    let _ = (what, count);
}

#[cfg(feature = "test-seams")]
fn die(point: &str) {
    eprintln!("test crash point {point}: SIGKILL");
    // SAFETY: sending a signal to our own pid has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear() {
        let d = tempfile::tempdir().unwrap();
        let dir = StatePaths::new(d.path());
        assert_eq!(load(&dir).unwrap(), None);
        let j = Journal {
            step: Step::Switched,
            kind: Kind::Update,
            from: Some("a".into()),
            target: "b".into(),
            version: "1.2.0".into(),
            update_id: Some("u1".into()),
            attempts: 1,
            reason: None,
            started_at: "2025-01-01T00:00:00.000Z".into(),
            boot: Some("b1".into()),
            cut_starts: 2,
        };
        save(&dir, &j).unwrap();
        let text = std::fs::read_to_string(dir.journal()).unwrap();
        assert!(text.contains("\"step\": \"switched\""), "{text}");
        assert_eq!(load(&dir).unwrap(), Some(j));
        clear(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        clear(&dir).unwrap();
    }

    #[test]
    fn garbage_journal_is_an_error_not_a_guess() {
        let d = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(d.path());
        std::fs::create_dir(paths.update()).unwrap();
        std::fs::write(paths.journal(), b"{not json").unwrap();
        let e = load(&paths).unwrap_err();
        assert!(
            e.chain().to_string().contains("unreadable journal: "),
            "{e}"
        );
        // The parse error stays behind it as a source, not only as words.
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("an io::Error source");
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        assert!(io.get_ref().is_some_and(|j| j.is::<serde_json::Error>()));
    }
}
