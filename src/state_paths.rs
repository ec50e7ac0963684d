//! Every file the agent keeps under `state_dir`, named in one place (README "Files on
//! disk"). The modules that own a file read and write it; only its name lives here,
//! so a path is spelled once and a new file shows up in this list.

use std::path::{Path, PathBuf};

/// The files under one `state_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatePaths {
    root: PathBuf,
}

impl StatePaths {
    /// The files under `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> StatePaths {
        StatePaths {
            root: state_dir.to_path_buf(),
        }
    }

    /// `state_dir` itself.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `status.json`: the node's state for the admin interface (`status.rs`).
    pub(crate) fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// `license.json`: the last validation (`license.rs`).
    pub(crate) fn license(&self) -> PathBuf {
        self.root.join("license.json")
    }

    /// `agent.lock`: the state lock every writer holds (`fsutil::StateLock`).
    pub(crate) fn agent_lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }

    /// `run.lock`: held by the one daemon of this `state_dir`.
    pub(crate) fn run_lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// `agent-starts`: the init scripts' count of unconfirmed starts (`update/boot.rs`).
    pub(crate) fn agent_starts(&self) -> PathBuf {
        self.root.join("agent-starts")
    }

    /// `telemetry/`: the telemetry module's directory.
    pub(crate) fn telemetry(&self) -> PathBuf {
        self.root.join("telemetry")
    }

    /// `telemetry/queue/`: unsent reports (`telemetry/queue.rs`).
    pub(crate) fn telemetry_queue(&self) -> PathBuf {
        self.telemetry().join("queue")
    }

    /// `update/`: the update module's directory.
    pub(crate) fn update(&self) -> PathBuf {
        self.root.join("update")
    }

    /// A file of `update/` (one copy of the joins for all of them: size budget).
    fn in_update(&self, name: &str) -> PathBuf {
        let mut p = self.update();
        p.push(name);
        p
    }

    /// `update/journal.json`: the update in flight (`update/journal.rs`).
    pub(crate) fn journal(&self) -> PathBuf {
        self.in_update("journal.json")
    }

    /// `update/download.part`: a download under way (`update/download.rs`).
    pub(crate) fn download_part(&self) -> PathBuf {
        self.in_update("download.part")
    }

    /// `update/download.json`: which update the download files belong to.
    pub(crate) fn download_meta(&self) -> PathBuf {
        self.in_update("download.json")
    }

    /// `update/package.zip`: a complete package waiting to be installed.
    pub(crate) fn package(&self) -> PathBuf {
        self.in_update("package.zip")
    }

    /// `update/failed-id`: the update that failed its health check (not retried by
    /// the daemon).
    pub(crate) fn failed_id(&self) -> PathBuf {
        self.in_update("failed-id")
    }

    /// `update/highest-version`: the downgrade guard's record (`update/downgrade.rs`).
    pub(crate) fn highest_version(&self) -> PathBuf {
        self.in_update("highest-version")
    }

    /// `update/install-PID.zip`: `install`'s private copy of a local package,
    /// unlinked as soon as it is open.
    pub(crate) fn install_copy(&self, pid: u32) -> PathBuf {
        self.update().join(format!("install-{pid}.zip"))
    }
}
