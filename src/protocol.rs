//! Plain data types mirroring the JSON of docs/protocol.md (both dialects). No logic lives here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// 200 answer of `GET /api/license/validate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LicenseResponse {
    pub(crate) valid: bool,
    #[serde(default)]
    pub(crate) tenant_id: Option<String>,
    #[serde(default)]
    pub(crate) tenant_name: Option<String>,
    #[serde(default)]
    pub(crate) expires_at: Option<String>,
    /// Successful validations so far (the real backend counts each one).
    #[serde(default, deserialize_with = "opt_count")]
    pub(crate) usage_count: Option<u64>,
    /// Validations allowed in all; null or absent means no limit.
    #[serde(default, deserialize_with = "opt_count")]
    pub(crate) max_usage_count: Option<u64>,
}

/// An optional `Count`: null, a number or a numeric string.
fn opt_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Count>::deserialize(d)?.map(|c| c.0))
}

/// A NestJS error body: `message` is a string or an array of strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub(crate) status_code: Option<u16>,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub(crate) error: Option<String>,
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

/// 200 answer of `GET /update/check`, in either dialect (docs/protocol.md): the
/// guide's `updateAvailable` or the real backend's `available`; numbers as JSON
/// numbers or numeric strings (`fileSize` is a bigint column there, sent as `"712"`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", try_from = "UpdateCheckWire")]
pub struct UpdateCheck {
    pub(crate) update_available: bool,
    #[serde(default)]
    pub(crate) current_version: Option<String>,
    #[serde(default)]
    pub(crate) latest_version: Option<String>,
    #[serde(default)]
    pub(crate) update_id: Option<String>,
    #[serde(default)]
    pub(crate) changelog: Option<String>,
    #[serde(default)]
    pub(crate) file_size: Option<u64>,
    /// `sha256:<hex>` (the real backend) or a bare hex digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checksum: Option<String>,
    /// Extension: bare hex digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    /// The real backend: the lowest node version the latest update installs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) required_node_version: Option<String>,
    /// The real backend: the update breaks compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) breaking: Option<bool>,
    /// The real backend: the update fixes a security problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) security_update: Option<bool>,
    /// The real backend: a sentence for people (`Le node est à jour`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// The real backend: when the update was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<String>,
}

/// `/update/check` as it comes off the wire, before the dialects are reconciled.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateCheckWire {
    #[serde(default)]
    available: Option<Flag>,
    #[serde(default)]
    update_available: Option<Flag>,
    #[serde(default)]
    current_version: Option<Text>,
    #[serde(default)]
    latest_version: Option<Text>,
    #[serde(default)]
    update_id: Option<Text>,
    #[serde(default)]
    changelog: Option<String>,
    #[serde(default)]
    file_size: Option<Count>,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    required_node_version: Option<Text>,
    #[serde(default)]
    breaking: Option<Flag>,
    #[serde(default)]
    security_update: Option<Flag>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    created_at: Option<Text>,
}

impl TryFrom<UpdateCheckWire> for UpdateCheck {
    type Error = String;
    fn try_from(w: UpdateCheckWire) -> Result<UpdateCheck, String> {
        let update_available = match (w.available.map(|f| f.0), w.update_available.map(|f| f.0)) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "`available` ({a}) and `updateAvailable` ({b}) disagree"
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => {
                return Err("neither `available` nor `updateAvailable` in the answer".into())
            }
        };
        Ok(UpdateCheck {
            update_available,
            current_version: w.current_version.map(|t| t.0),
            latest_version: w.latest_version.map(|t| t.0),
            update_id: w.update_id.map(|t| t.0),
            changelog: w.changelog,
            file_size: w.file_size.map(|c| c.0),
            checksum: w.checksum,
            sha256: w.sha256,
            required_node_version: w.required_node_version.map(|t| t.0),
            breaking: w.breaking.map(|f| f.0),
            security_update: w.security_update.map(|f| f.0),
            message: w.message.map(|m| m.text()),
            created_at: w.created_at.map(|t| t.0),
        })
    }
}

/// A non-negative integer sent as a JSON number or a numeric string (`712`, `"712"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Count(pub(crate) u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .map(Count)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a byte count"))),
            Value::String(s) => s
                .trim()
                .parse::<u64>()
                .map(Count)
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a byte count"))),
            other => Err(serde::de::Error::custom(format!(
                "expected a number or a numeric string, got {other}"
            ))),
        }
    }
}

/// A flag sent as a JSON boolean, or as `"true"`/`"false"` by metadata copied from
/// a package's version.json; null counts as false.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Flag(pub(crate) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::Null => Ok(Flag(false)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Flag(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Flag(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got {other}"
            ))),
        }
    }
}

/// An identifier or version sent as a string or a number (`"1.2.0"`, `42`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text(pub(crate) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, got {other}"
            ))),
        }
    }
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
