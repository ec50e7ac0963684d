//! `state_dir/update-history.json`: what happened to each update (install, commit,
//! rollback, refusal, failure), the last `MAX` events, newest last. Written
//! atomically by whoever holds `agent.lock` (the update code), read by `status` and
//! the admin API. Every event is written when it happens, so after a kill -9 or a
//! power cut the file holds what the journal's recovery then completes.

use crate::fsutil;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Most events kept.
pub(crate) const MAX: usize = 100;
/// Longest `details` kept, in characters.
const MAX_DETAILS: usize = 300;
/// Largest file read (100 events of ~600 bytes, with room).
const MAX_FILE: u64 = 256 * 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Event {
    /// An install started (staging the inactive slot).
    Install,
    /// A version was committed (an update, or a rollback an operator asked for).
    Commit,
    /// The new version failed after the switch; the old one runs again.
    Rollback,
    /// A package refused before the switch (signature, size, version...).
    Refused,
    /// Any other failure (download, space, interrupted staging).
    Failed,
}

impl Event {
    /// Every event, for reading the file back.
    const ALL: [Event; 5] = [
        Event::Install,
        Event::Commit,
        Event::Rollback,
        Event::Refused,
        Event::Failed,
    ];
    /// The word in the file.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Event::Install => "install",
            Event::Commit => "commit",
            Event::Rollback => "rollback",
            Event::Refused => "refused",
            Event::Failed => "failed",
        }
    }
}

/// One event, in the dashboard's `UpdateHistory` shape plus `event` and `repeat`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    /// Increasing number, as a string (the dashboard's key).
    pub(crate) id: String,
    pub(crate) version: String,
    /// ISO 8601 UTC.
    pub(crate) applied_at: String,
    /// `success` (a commit), `started` (an install start: not served to the
    /// dashboard, which would show it as a failure) or `failed`.
    pub(crate) status: String,
    /// A short sentence a person can read.
    pub(crate) details: String,
    pub(crate) event: Event,
    /// The backend's update id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update_id: Option<String>,
    /// How many times in a row the same event happened (an hourly failing download).
    pub(crate) repeat: u32,
}

impl Entry {
    /// One entry of the file, read by hand (a derived Deserialize costs the boards
    /// kilobytes); None when it is not one.
    fn from_json(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let word = v.get("event")?.as_str()?;
        Some(Entry {
            id: s("id")?,
            version: s("version")?,
            applied_at: s("appliedAt")?,
            status: s("status")?,
            details: s("details").unwrap_or_default(),
            event: *Event::ALL.iter().find(|e| e.as_str() == word)?,
            update_id: s("updateId"),
            repeat: v
                .get("repeat")
                .and_then(Value::as_u64)
                .map_or(1, |n| n.min(u32::MAX as u64) as u32),
        })
    }
}

/// The history file.
pub(crate) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("update-history.json")
}

/// The events, oldest first; an unreadable file reads as empty (logged).
pub(crate) fn load(state_dir: &Path) -> Vec<Entry> {
    let p = path(state_dir);
    match fsutil::read_bounded(&p, MAX_FILE) {
        Ok(data) => match serde_json::from_slice::<Value>(&data) {
            Ok(Value::Array(a)) => a.iter().filter_map(Entry::from_json).collect(),
            _ => {
                log::warn!("{}: unreadable; history starts anew", p.display());
                vec![]
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => {
            log::warn!("{}: {e}", p.display());
            vec![]
        }
    }
}

/// Appends an event (the same event as the last one again only bumps its `repeat`
/// and time); keeps the last `MAX`. A failed write is logged: history is a report.
pub(crate) fn record(
    state_dir: &Path,
    now_unix: f64,
    event: Event,
    version: &str,
    update_id: Option<&str>,
    details: &str,
) {
    let mut all = load(state_dir);
    let details: String = crate::redact::scrub(details)
        .chars()
        .take(MAX_DETAILS)
        .collect();
    let at = crate::clock::iso8601(now_unix);
    let status = match event {
        Event::Commit => "success",
        Event::Install => "started",
        _ => "failed",
    };
    match all.last_mut() {
        Some(last) if last.event == event && last.version == version && last.details == details => {
            last.repeat = last.repeat.saturating_add(1);
            last.applied_at = at;
        }
        last => {
            let id = last
                .and_then(|l| l.id.parse::<u64>().ok())
                .map_or(1, |n| n + 1);
            all.push(Entry {
                id: id.to_string(),
                version: version.to_string(),
                applied_at: at,
                status: status.into(),
                details,
                event,
                update_id: update_id.map(str::to_string),
                repeat: 1,
            });
        }
    }
    let extra = all.len().saturating_sub(MAX);
    all.drain(..extra);
    // Compact: the same serializer as the API's answers (one copy of its code).
    let data = serde_json::to_vec(&all).unwrap_or_else(|_| b"[]".to_vec());
    if let Err(e) = fsutil::atomic_write(&path(state_dir), &data, 0o644) {
        log::warn!("update history: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_numbered_and_repeats_folded() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..(MAX + 5) {
            record(
                d.path(),
                1.0e9,
                Event::Failed,
                &format!("1.0.{i}"),
                None,
                "x",
            );
        }
        record(d.path(), 1.0e9 + 1.0, Event::Failed, "1.0.104", None, "x");
        let all = load(d.path());
        assert_eq!(all.len(), MAX);
        assert_eq!(all[0].version, "1.0.5");
        let last = all.last().unwrap();
        assert_eq!((last.id.as_str(), last.repeat), ("105", 2));
        assert_eq!(last.applied_at, "2001-09-09T01:46:41.000Z");
        assert_eq!(last.status, "failed");
    }
}
