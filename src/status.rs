//! `state_dir/status.json`: the node's state as the admin interface reads it.
//!
//! Each module reports its part through `Status::modify`; this module alone owns the
//! file and rewrites it atomically after every change.

use crate::error::Result;
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Gives a unit enum its serde form from `as_str` and `ALL`, so each state's word
/// (a status.json contract, INTERFACE.md) is written in one place.
macro_rules! serde_as_word {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let word = std::borrow::Cow::<str>::deserialize(d)?;
                <$t>::ALL
                    .iter()
                    .copied()
                    .find(|x| x.as_str() == word)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown state `{word}`")))
            }
        }
    };
}

/// `license.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Every state, for parsing.
    const ALL: [LicenseState; 6] = [
        LicenseState::Valid,
        LicenseState::Grace,
        LicenseState::Expired,
        LicenseState::Inactive,
        LicenseState::Invalid,
        LicenseState::Unknown,
    ];
    /// Whether the main services may run in this state.
    pub(crate) fn allows_services(self) -> bool {
        matches!(self, LicenseState::Valid | LicenseState::Grace)
    }
    /// The word used in status.json.
    pub(crate) fn as_str(self) -> &'static str {
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
serde_as_word!(LicenseState);

/// `update.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum UpdateState {
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

impl UpdateState {
    /// Every state, for parsing.
    const ALL: [UpdateState; 8] = [
        UpdateState::Idle,
        UpdateState::Available,
        UpdateState::Downloading,
        UpdateState::Verifying,
        UpdateState::Installing,
        UpdateState::HealthCheck,
        UpdateState::RolledBack,
        UpdateState::Failed,
    ];
    /// The word used in status.json and by `status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "idle",
            UpdateState::Available => "available",
            UpdateState::Downloading => "downloading",
            UpdateState::Verifying => "verifying",
            UpdateState::Installing => "installing",
            UpdateState::HealthCheck => "health-check",
            UpdateState::RolledBack => "rolled-back",
            UpdateState::Failed => "failed",
        }
    }
}
serde_as_word!(UpdateState);

/// The `license` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LicenseStatus {
    pub(crate) state: LicenseState,
    pub(crate) tenant_id: Option<String>,
    pub(crate) tenant_name: Option<String>,
    pub(crate) expires_at: Option<String>,
    pub(crate) days_left: Option<i64>,
    pub(crate) last_validated_at: Option<String>,
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) usage_count: Option<u64>,
    #[serde(default)]
    pub(crate) max_usage_count: Option<u64>,
}

/// The `update` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateStatus {
    pub(crate) state: UpdateState,
    pub(crate) available: bool,
    pub(crate) latest_version: Option<String>,
    pub(crate) changelog: Option<String>,
    pub(crate) last_checked_at: Option<String>,
    pub(crate) last_error: Option<String>,
    #[serde(default)]
    pub(crate) update_id: Option<String>,
    #[serde(default)]
    pub(crate) file_size: Option<u64>,
    #[serde(default)]
    pub(crate) downloaded_bytes: Option<u64>,
    #[serde(default)]
    pub(crate) last_installed_at: Option<String>,
    /// The real backend: lowest node version the latest update installs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) required_node_version: Option<String>,
    /// The latest update breaks compatibility (the check's answer, or the package's
    /// `version.json`; absent = not said). Never installed automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) breaking: Option<bool>,
    /// The latest update is a security fix (the check's answer or `version.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) security_update: Option<bool>,
    /// The backend's sentence about the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// An update exists but this node is older than its `requiredNodeVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node_too_old: Option<bool>,
    /// Why a downloaded, verified package waits instead of installing automatically
    /// (auto_install off, breaking, outside `updates.install_window`).
    #[serde(default)]
    pub(crate) deferred: Option<String>,
}

/// The `telemetry` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TelemetryStatus {
    pub(crate) last_sent_at: Option<String>,
    pub(crate) queued: u64,
    pub(crate) last_error: Option<String>,
    #[serde(default)]
    pub(crate) dropped: u64,
    /// Where each field of the last sample came from: `measured`, `file`, `command`,
    /// `probe`, or what was sent instead and why (docs/telemetry.md).
    #[serde(default)]
    pub(crate) sources: std::collections::BTreeMap<String, String>,
}

/// The `services` object: whether the agent let the main services run, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServicesStatus {
    pub(crate) running: Option<bool>,
    pub(crate) reason: Option<String>,
}

/// The `security` object: whether update packages must be signed, by which keys,
/// and what weakens the box (docs/security.md). Recomputed at each start and by
/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityStatus {
    /// `required` or `off` (no `updates.public_key`: any package the backend serves
    /// is installed, protected by TLS alone).
    pub(crate) signatures: String,
    /// Ids of the trusted keys (first 16 hex digits of their SHA-256).
    pub(crate) trusted_keys: Vec<String>,
    /// Where they come from: `updates.public_key` or `slot X/update-keys`.
    pub(crate) key_source: Option<String>,
    /// Problems a person should fix, worst first.
    pub(crate) warnings: Vec<String>,
}

/// The whole of status.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    pub(crate) version: String,
    pub(crate) slot: Option<String>,
    pub(crate) license: LicenseStatus,
    pub(crate) update: UpdateStatus,
    pub(crate) telemetry: TelemetryStatus,
    #[serde(default)]
    pub(crate) services: ServicesStatus,
    #[serde(default)]
    pub(crate) security: SecurityStatus,
    #[serde(default)]
    pub(crate) agent_version: String,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
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
            security: SecurityStatus::default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            updated_at: None,
        }
    }
}

fn scrub_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let clean = crate::redact::scrub(s);
            if clean != *s {
                *s = clean;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub_strings),
        serde_json::Value::Object(o) => o.values_mut().for_each(scrub_strings),
        _ => {}
    }
}

/// Path of status.json in a state directory.
pub(crate) fn path(state_dir: &Path) -> PathBuf {
    crate::state_paths::StatePaths::new(state_dir).status()
}

impl Status {
    /// Reads status.json; a missing or unreadable file yields the default state
    /// (logged), since status is a report and must never stop the agent.
    pub(crate) fn load(state_dir: &Path) -> Status {
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
    pub(crate) fn save(&mut self, state_dir: &Path, now_unix: f64) -> Result<()> {
        fsutil::ensure_dir(state_dir, 0o755)?;
        self.agent_version = env!("CARGO_PKG_VERSION").into();
        self.updated_at = Some(crate::clock::iso8601(now_unix));
        // A server may echo the key back in a message: status.json is world-readable.
        let mut v = serde_json::to_value(&*self)
            .map_err(|e| crate::error::Error::Other(format!("serializing status: {e}")))?;
        scrub_strings(&mut v);
        fsutil::atomic_write_json(&path(state_dir), &v, 0o644)
    }

    /// Load, change, save: the way every module reports its part.
    pub(crate) fn modify(
        state_dir: &Path,
        now_unix: f64,
        f: impl FnOnce(&mut Status),
    ) -> Result<Status> {
        let mut s = Status::load(state_dir);
        let before = s.clone();
        f(&mut s);
        if s != before || !path(state_dir).exists() {
            s.save(state_dir, now_unix)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_are_the_interface_ones_and_round_trip() {
        let words: Vec<_> = UpdateState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "idle",
                "available",
                "downloading",
                "verifying",
                "installing",
                "health-check",
                "rolled-back",
                "failed"
            ]
        );
        for s in UpdateState::ALL {
            let v = serde_json::to_value(s).unwrap();
            assert_eq!(v, s.as_str());
            assert_eq!(serde_json::from_value::<UpdateState>(v).unwrap(), s);
        }
        for s in LicenseState::ALL {
            let v = serde_json::to_value(s).unwrap();
            assert_eq!(v, s.as_str());
            assert_eq!(serde_json::from_value::<LicenseState>(v).unwrap(), s);
        }
        assert!(serde_json::from_str::<UpdateState>("\"healthcheck\"").is_err());
    }
}
