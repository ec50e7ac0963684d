//! Temp files a power cut left behind. `fsutil::atomic_write` writes `.NAME.tmp.PID`
//! beside the file and renames it over NAME; a cut between the creation and the
//! rename leaves the temp file on disk (found by `board/power-cut.sh`: a slot record's
//! temp file stayed in `install.root/slots/` for good, one more per such cut). The
//! state file itself is intact (the rename never happened); the temp file is litter
//! that nothing else would ever remove. Swept at start, under the state lock, next to
//! the journal's recovery.

use crate::config::Config;
use crate::state_paths::StatePaths;
use std::fs;
use std::path::{Path, PathBuf};

/// The directories the agent writes state files into with `atomic_write` (the
/// telemetry queue directory is swept by the queue itself).
fn dirs(cfg: &Config) -> [PathBuf; 5] {
    [
        cfg.state_dir.clone(),
        StatePaths::new(&cfg.state_dir).update(),
        StatePaths::new(&cfg.state_dir).telemetry(),
        cfg.install.root.clone(),
        cfg.install.root.join("slots"),
    ]
}

/// Removes every `.NAME.tmp.PID` in the agent's state directories whose process PID
/// is gone (a live one may be another agent command writing right now). Returns how
/// many were removed; failures are logged, never fatal.
pub(crate) fn sweep(cfg: &Config) -> usize {
    dirs(cfg).iter().map(|d| sweep_dir(d)).sum()
}

/// [`sweep`] for one directory.
pub(crate) fn sweep_dir(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = temp_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        // Only plain files: a directory or link of that shape is not ours.
        if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        match fs::remove_file(e.path()) {
            Ok(()) => {
                log::info!(
                    "removed {}, left by an interrupted write",
                    e.path().display()
                );
                n += 1;
            }
            Err(err) => log::warn!("cannot remove {}: {err}", e.path().display()),
        }
    }
    n
}

/// The PID of a temp file name `.NAME.tmp.PID` (NAME not empty), else None.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once(".tmp.")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(p, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_exactly() {
        assert_eq!(temp_pid(".status.json.tmp.127"), Some(127));
        assert_eq!(temp_pid(".b.json.tmp.4194303"), Some(4194303));
        assert_eq!(temp_pid(".current.tmp"), None);
        assert_eq!(temp_pid("status.json.tmp.12"), None);
        assert_eq!(temp_pid("..tmp.12"), None);
        assert_eq!(temp_pid(".x.tmp.12a"), None);
        assert_eq!(temp_pid(".x.tmp."), None);
    }
}
