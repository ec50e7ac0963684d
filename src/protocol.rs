//! Plain data types mirroring PROTOCOL.md's JSON. No logic lives here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// 200 answer of `GET /api/license/validate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LicenseResponse {
    pub valid: bool,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub tenant_name: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub usage_count: Option<u64>,
    #[serde(default)]
    pub max_usage_count: Option<u64>,
}

/// A NestJS error body: `message` is a string or an array of strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `message` of an error body.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Message {
    One(String),
    Many(Vec<String>),
}

impl Message {
    /// All the message texts, joined for display.
    pub fn text(&self) -> String {
        match self {
            Message::One(s) => s.clone(),
            Message::Many(v) => v.join("; "),
        }
    }
}

/// 200 answer of `GET /update/check`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCheck {
    pub update_available: bool,
    #[serde(default)]
    pub current_version: Option<String>,
    #[serde(default)]
    pub latest_version: Option<String>,
    #[serde(default)]
    pub update_id: Option<String>,
    #[serde(default)]
    pub changelog: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
    /// Extension: `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Extension: bare hex digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Body of `POST /telemetry`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryPayload {
    pub tenant_id: String,
    pub uptime: u64,
    pub active_users: u64,
    pub exercises_completed_today: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_latency: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_data: Option<serde_json::Map<String, Value>>,
}

/// 2xx answer of `POST /telemetry` (informational: any 2xx is success).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TelemetryAck {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// `manifest.json` at the root of a signed package (extension).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: String,
    /// Relative path → lowercase hex SHA-256.
    #[serde(default)]
    pub files: Option<std::collections::BTreeMap<String, String>>,
}
