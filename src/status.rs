//! `state_dir/status.json`: the node's state as the admin interface reads it.
//!
//! Each module reports its part through `Status::modify`; this module alone owns the
//! file and rewrites it atomically after every change.

use crate::error::Result;
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `license.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LicenseState {
    Valid,
    Grace,
    Expired,
    Inactive,
    Invalid,
    #[default]
    Unknown,
}

impl LicenseState {
    /// Whether the main services may run in this state.
    pub fn allows_services(self) -> bool {
        matches!(self, LicenseState::Valid | LicenseState::Grace)
    }
    /// The word used in status.json.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseState::Valid => "valid",
            LicenseState::Grace => "grace",
            LicenseState::Expired => "expired",
            LicenseState::Inactive => "inactive",
            LicenseState::Invalid => "invalid",
            LicenseState::Unknown => "unknown",
        }
    }
}

/// `update.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    #[default]
    Idle,
    Available,
    Downloading,
    Verifying,
    Installing,
    HealthCheck,
    RolledBack,
    Failed,
}

/// The `license` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseStatus {
    pub state: LicenseState,
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    pub expires_at: Option<String>,
    pub days_left: Option<i64>,
    pub last_validated_at: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub usage_count: Option<u64>,
    #[serde(default)]
    pub max_usage_count: Option<u64>,
}

/// The `update` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub available: bool,
    pub latest_version: Option<String>,
    pub changelog: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub update_id: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
    #[serde(default)]
    pub downloaded_bytes: Option<u64>,
    #[serde(default)]
    pub last_installed_at: Option<String>,
    /// The real backend: lowest node version the latest update installs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_node_version: Option<String>,
    /// The latest update breaks compatibility (the check's answer, or the package's
    /// `version.json`; absent = not said). Never installed automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaking: Option<bool>,
    /// The latest update is a security fix (the check's answer or `version.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_update: Option<bool>,
    /// The backend's sentence about the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// An update exists but this node is older than its `requiredNodeVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_too_old: Option<bool>,
    /// Why a downloaded, verified package waits instead of installing automatically
    /// (auto_install off, breaking, outside `updates.install_window`).
    #[serde(default)]
    pub deferred: Option<String>,
}

/// The `telemetry` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryStatus {
    pub last_sent_at: Option<String>,
    pub queued: u64,
    pub last_error: Option<String>,
    #[serde(default)]
    pub dropped: u64,
}

/// The `services` object: whether the agent let the main services run, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicesStatus {
    pub running: Option<bool>,
    pub reason: Option<String>,
}

/// The whole of status.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub version: String,
    pub slot: Option<String>,
    pub license: LicenseStatus,
    pub update: UpdateStatus,
    pub telemetry: TelemetryStatus,
    #[serde(default)]
    pub services: ServicesStatus,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            version: "0.0.0".into(),
            slot: None,
            license: LicenseStatus::default(),
            update: UpdateStatus::default(),
            telemetry: TelemetryStatus::default(),
            services: ServicesStatus::default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            updated_at: None,
        }
    }
}

/// Path of status.json in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

impl Status {
    /// Reads status.json; a missing or unreadable file yields the default state
    /// (logged), since status is a report and must never stop the agent.
    pub fn load(state_dir: &Path) -> Status {
        let p = path(state_dir);
        match fsutil::read_bounded(&p, 4 << 20) {
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!(
                        "{}: unreadable ({e}); starting from a fresh status",
                        p.display()
                    );
                    Status::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Status::default(),
            Err(e) => {
                log::warn!("{}: {e}; starting from a fresh status", p.display());
                Status::default()
            }
        }
    }

    /// Writes status.json atomically (mode 0644: the admin interface reads it).
    pub fn save(&mut self, state_dir: &Path, now_unix: f64) -> Result<()> {
        fsutil::ensure_dir(state_dir, 0o755)?;
        self.agent_version = env!("CARGO_PKG_VERSION").into();
        self.updated_at = Some(crate::clock::iso8601(now_unix));
        fsutil::atomic_write_json(&path(state_dir), self, 0o644)
    }

    /// Load, change, save: the way every module reports its part.
    pub fn modify(state_dir: &Path, now_unix: f64, f: impl FnOnce(&mut Status)) -> Result<Status> {
        let mut s = Status::load(state_dir);
        let before = s.clone();
        f(&mut s);
        if s != before || !path(state_dir).exists() {
            s.save(state_dir, now_unix)?;
        }
        Ok(s)
    }
}
