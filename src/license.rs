//! License validation (docs/protocol.md §1): the backend's decision, the cached last good
//! validation, and the offline grace rules.

use crate::budget::{self, key_id};
use crate::clock;
use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::protocol::LicenseResponse;
use crate::status::{LicenseState, Status};
use crate::transport::{percent_encode, Reply};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Earliest wall time we ever believe (2026-01-01T00:00:00Z). A box without an RTC
/// boots in 1970; before NTP sets it, expiry arithmetic means nothing.
pub(crate) const MIN_SANE_UNIX: f64 = 1_767_225_600.0;

/// The release's build date when it was stamped (`SOURCE_DATE_EPOCH` at compile time,
/// set by board/build.sh from the commit date: reproducible), else `MIN_SANE_UNIX`:
/// no box can truly be running before its agent was built.
pub(crate) fn clock_floor() -> f64 {
    option_env!("SOURCE_DATE_EPOCH")
        // Whole seconds (reproducible-builds spec), read as an integer: no float
        // parser in the binary for this.
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(MIN_SANE_UNIX, |built| (built as f64).max(MIN_SANE_UNIX))
}

/// True when the wall clock can be trusted for expiry arithmetic.
pub(crate) fn clock_is_sane(now: f64) -> bool {
    now >= clock_floor()
}

/// The last validation, kept in `state_dir/license.json` (mode 0600).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cached {
    pub(crate) tenant_id: String,
    pub(crate) tenant_name: Option<String>,
    pub(crate) expires_at: Option<String>,
    pub(crate) usage_count: Option<u64>,
    pub(crate) max_usage_count: Option<u64>,
    /// Wall time of the last `valid: true` answer (None if the clock was not set).
    pub(crate) validated_at: Option<f64>,
    /// The last decision of the backend: only `valid` allows grace.
    pub(crate) last_decision: LicenseState,
    pub(crate) message: Option<String>,
    /// Which key this validation was for (`key_id`): a cached validation is reused at
    /// start only for the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_id: Option<String>,
    /// Wall times of the successful validations of the last 24 h: the persisted
    /// budget (see `budget`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) recent: Vec<f64>,
}

/// Why the backend gave no decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fault {
    /// Network, TLS, 5xx after the retries: the transport's words.
    Unreachable(String),
    /// An answer that is not the license protocol (portal, wrong URL, bad JSON).
    NotProtocol(String),
    /// 429: the backend asked us to wait.
    Throttled { what: String, retry_after: Duration },
}

impl Fault {
    /// The error a one-shot command exits with (14 for all three; words differ).
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Fault::Unreachable(m) => Error::unreachable(m.clone()),
            Fault::NotProtocol(m) => Error::protocol(m.clone(), None),
            Fault::Throttled { what, retry_after } => Error::Throttled {
                what: what.clone(),
                retry_after: *retry_after,
            },
        }
    }

    /// The fault behind a transport error.
    pub(crate) fn of(e: Error) -> Fault {
        match e {
            Error::Unreachable { message, .. } => Fault::Unreachable(message),
            Error::Throttled { what, retry_after } => Fault::Throttled { what, retry_after },
            Error::Protocol { message, source } => Fault::NotProtocol(match source {
                Some(s) => format!("{message} ({s})"),
                None => message,
            }),
            other => Fault::Unreachable(other.to_string()),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_error())
    }
}

/// What one validation concluded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub state: LicenseState,
    pub(crate) tenant_id: Option<String>,
    pub(crate) tenant_name: Option<String>,
    pub(crate) expires_at: Option<String>,
    pub days_left: Option<i64>,
    pub message: Option<String>,
    pub(crate) usage_count: Option<u64>,
    pub(crate) max_usage_count: Option<u64>,
    /// Warnings for the operator (expiry near, usage near its maximum, clock not set).
    pub warnings: Vec<String>,
    /// Why there was no decision, when there was none.
    pub(crate) fault: Option<Fault>,
}

impl Outcome {
    /// The outcome a cached validation stands for: its decision, tenant, expiry and
    /// usage, with no warnings yet.
    fn from_cache(c: &Cached, now: f64) -> Outcome {
        Outcome {
            state: c.last_decision,
            tenant_id: Some(c.tenant_id.clone()),
            tenant_name: c.tenant_name.clone(),
            expires_at: c.expires_at.clone(),
            days_left: days_left(c.expires_at.as_deref(), now),
            message: c.message.clone(),
            usage_count: c.usage_count,
            max_usage_count: c.max_usage_count,
            ..Outcome::default()
        }
    }

    /// The error (and so exit code) a one-shot command reports for this outcome.
    pub fn to_error(&self) -> Option<Error> {
        let m = self.message.clone().unwrap_or_default();
        match self.state {
            LicenseState::Valid | LicenseState::Grace => None,
            LicenseState::Expired => Some(Error::LicenseExpired(m)),
            LicenseState::Inactive => Some(Error::TenantInactive(m)),
            LicenseState::Invalid => Some(Error::LicenseRefused(m)),
            LicenseState::Unknown => Some(match &self.fault {
                Some(f) => f.to_error(),
                None => Error::unreachable(m),
            }),
        }
    }
}

/// The backend's answer, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Valid(LicenseResponse),
    Expired(String),
    Inactive(String),
    Invalid(String),
    /// Not a license decision: network failure, 5xx.
    Unreachable(String),
    /// Not a license decision: an answer that is not the protocol (captive portal,
    /// wrong `backend.url`, a redirect, an error without a backend body).
    NotProtocol(String),
    /// Not a license decision: the backend asked us to wait (429).
    Throttled {
        what: String,
        retry_after: Duration,
    },
}

impl Decision {
    /// The fault of a non-decision.
    fn fault(&self) -> Option<Fault> {
        match self {
            Decision::Unreachable(m) => Some(Fault::Unreachable(m.clone())),
            Decision::NotProtocol(m) => Some(Fault::NotProtocol(m.clone())),
            Decision::Throttled { what, retry_after } => Some(Fault::Throttled {
                what: what.clone(),
                retry_after: *retry_after,
            }),
            _ => None,
        }
    }
}

/// Lowercases and strips French accents, so `Licence EXPIRÉE` matches `licence expiree`.
pub fn normalize(s: &str) -> String {
    s.chars()
        .flat_map(|c| c.to_lowercase())
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ö' | 'ó' => 'o',
            'ù' | 'û' | 'ü' | 'ú' => 'u',
            'ç' => 'c',
            'ÿ' => 'y',
            other => other,
        })
        .collect()
}

/// Longest tenantId accepted (a UUID is 36): it goes into URLs and the cache.
const MAX_TENANT_ID: usize = 128;

/// The answer's free texts cut to size and stripped of control characters, so the
/// cache stays small enough to read back and nothing forges a log line.
fn bounded(mut r: LicenseResponse) -> LicenseResponse {
    r.tenant_name = r.tenant_name.map(|s| crate::redact::server_text(&s));
    r.expires_at = r.expires_at.map(|s| crate::redact::server_text(&s));
    r
}

/// Classifies a reply of `GET /api/license/validate`.
pub fn classify(reply: &Reply) -> Decision {
    match reply.status {
        200 => match serde_json::from_slice::<LicenseResponse>(&reply.body) {
            Ok(r) if r.valid => match &r.tenant_id {
                Some(t) if t.len() > MAX_TENANT_ID || t.chars().any(|c| c.is_control()) => {
                    Decision::NotProtocol("the license answer has an unusable tenantId".into())
                }
                Some(t) if !t.trim().is_empty() => Decision::Valid(bounded(r)),
                _ => Decision::NotProtocol(
                    "the license answer says valid but has no tenantId".into(),
                ),
            },
            Ok(_) => Decision::Invalid("the backend answered valid: false".into()),
            Err(_) => Decision::NotProtocol(format!(
                "GET /api/license/validate answered 200 with something that is not the license JSON ({}): a captive portal or a wrong backend.url?",
                reply.content_type.as_deref().unwrap_or("no content type")
            )),
        },
        400 | 404 => {
            let Some(msg) = reply.error_message() else {
                return Decision::NotProtocol(format!(
                    "GET /api/license/validate answered {} without a backend error body (a wrong backend.url, or a proxy answered?)",
                    reply.status
                ));
            };
            let n = normalize(&msg);
            if n.starts_with("cannot get") {
                // NestJS's own 404 for a route it does not have: the URL is wrong.
                // (Its text repeats the URL, key included: not kept.)
                return Decision::NotProtocol(
                    "the server has no /api/license/validate route (404 Cannot GET): is backend.url the CyberSensei backend?".into(),
                );
            }
            if n.contains("limite d'utilisation") || n.contains("usage limit") {
                Decision::Invalid(format!(
                    "{msg}: this license has used all the validations it allows (maxUsageCount); contact CyberSensei to raise the limit"
                ))
            } else if n.contains("revoquee") || n.contains("revoked") {
                Decision::Invalid(format!("{msg}: the license was revoked"))
            } else if n.contains("expir") {
                Decision::Expired(msg)
            } else if n.contains("inactif") || n.contains("inactive") {
                Decision::Inactive(msg)
            } else if reply.status == 400 && !n.contains("licence") && !n.contains("license") && !n.contains("cle") {
                // A ValidationPipe refusal of the request (`key must be a string`):
                // ours is malformed, which says nothing about the license.
                Decision::NotProtocol(format!(
                    "GET /api/license/validate answered 400: {msg}"
                ))
            } else {
                Decision::Invalid(msg)
            }
        }
        s if (300..400).contains(&s) => Decision::NotProtocol(format!(
            "GET /api/license/validate answered a redirect (HTTP {s}), not followed: a captive portal or a wrong backend.url?"
        )),
        s => {
            let detail = reply.error_message().unwrap_or_default();
            Decision::Unreachable(
                format!("GET /api/license/validate: unexpected HTTP {s} {detail}")
                    .trim()
                    .to_string(),
            )
        }
    }
}

/// Reads the license key: `$CYBERSENSEI_LICENSE_KEY`, else `license.key_file`, trimmed.
pub(crate) fn read_key(cfg: &Config) -> Result<String> {
    if let Ok(k) = std::env::var("CYBERSENSEI_LICENSE_KEY") {
        let k = k.trim();
        if !k.is_empty() {
            crate::redact::add_secret(k);
            return Ok(k.to_string());
        }
    }
    let path = &cfg.license.key_file;
    let data = fsutil::read_bounded(path, 4096).map_err(|e| {
        Error::Config(format!(
            "license.key_file: cannot read {}: {e} (set the key with `cybersensei-agent set-key`)",
            path.display()
        ))
    })?;
    let key = String::from_utf8(data)
        .map_err(|_| Error::Config(format!("license.key_file: {} is not text", path.display())))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::Config(format!(
            "license.key_file: {} is empty",
            path.display()
        )));
    }
    crate::redact::add_secret(key);
    Ok(key.to_string())
}

/// Writes a key to `license.key_file` atomically with mode 0600 (creating its directory).
pub(crate) fn store_key(path: &Path, key: &str) -> Result<()> {
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::Config(
            "set-key: the key read from stdin is empty".into(),
        ));
    }
    if key.len() > 1024 || key.chars().any(|c| c.is_control()) {
        return Err(Error::Config(
            "set-key: the key must be one line of at most 1024 characters".into(),
        ));
    }
    fsutil::ensure_dir(&fsutil::parent_of(path), 0o700)?;
    fsutil::atomic_write(path, format!("{key}\n").as_bytes(), 0o600)
}

fn cache_path(state_dir: &Path) -> PathBuf {
    crate::state_paths::StatePaths::new(state_dir).license()
}

/// The cached last validation, if any (a corrupt file counts as none, logged).
pub(crate) fn load_cache(state_dir: &Path) -> Option<Cached> {
    let p = cache_path(state_dir);
    let data = fsutil::read_bounded(&p, 64 * 1024).ok()?;
    match serde_json::from_slice(&data) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("{}: unreadable ({e}); ignoring it", p.display());
            None
        }
    }
}

/// The tenant id of the last validation: what telemetry and update checks need.
pub(crate) fn cached_tenant_id(state_dir: &Path) -> Option<String> {
    load_cache(state_dir).map(|c| c.tenant_id)
}

fn days_left(expires_at: Option<&str>, now: f64) -> Option<i64> {
    if !clock_is_sane(now) {
        return None;
    }
    let exp = clock::parse_iso8601(expires_at?)?;
    Some(((exp - now) / 86400.0).floor() as i64)
}

/// What a cached validation allows when the backend gives no decision (`fault`).
pub(crate) fn offline_state(
    cache: Option<&Cached>,
    cfg: &Config,
    now: f64,
    fault: &Fault,
) -> Outcome {
    let why = fault.to_string();
    let Some(c) = cache else {
        return Outcome {
            state: LicenseState::Unknown,
            message: Some(format!("never validated; {why}")),
            fault: Some(fault.clone()),
            ..Outcome::default()
        };
    };
    let mut out = Outcome {
        fault: Some(fault.clone()),
        ..Outcome::from_cache(c, now)
    };
    if c.last_decision != LicenseState::Valid {
        // The backend's last word was a refusal: being offline does not undo it.
        return out;
    }
    // Unknown unless the grace period says otherwise; each path below sets the message.
    out.state = LicenseState::Unknown;
    if !clock_is_sane(now) {
        // Cannot measure the grace period or expiry: keep running on the last
        // validation, but say why; this is neither a refusal nor valid-forever,
        // since the clock is checked again on every step.
        out.state = LicenseState::Grace;
        out.message = Some(format!("system clock not set; {why}"));
        return out;
    }
    if let Some(exp) = c.expires_at.as_deref().and_then(clock::parse_iso8601) {
        if now >= exp {
            out.state = LicenseState::Expired;
            out.message = Some(format!(
                "license expired at {} ({why})",
                c.expires_at.as_deref().unwrap_or("?")
            ));
            return out;
        }
    }
    match c.validated_at {
        Some(at) if now - at <= cfg.license.grace_period.as_secs_f64() && now >= at - 300.0 => {
            let left = cfg.license.grace_period.as_secs_f64() - (now - at);
            out.state = LicenseState::Grace;
            out.message = Some(format!(
                "{why}; running on the validation of {} for {}h more",
                clock::iso8601(at),
                (left / 3600.0).floor() as i64
            ));
        }
        Some(at) => {
            out.message = Some(format!(
                "{why}; and the last validation ({}) is older than the grace period ({}s)",
                clock::iso8601(at),
                cfg.license.grace_period.as_secs()
            ));
        }
        None => {
            out.message = Some(format!("{why}; and the last validation has no usable time"));
        }
    }
    out
}

fn warnings_for(out: &mut Outcome, cfg: &Config) {
    if let Some(d) = out.days_left {
        if d < cfg.license.expiry_warning_days as i64 && d >= 0 {
            out.warnings.push(format!(
                "license expires in {d} day(s) ({}): contact CyberSensei to renew",
                out.expires_at.as_deref().unwrap_or("?")
            ));
        }
    }
    if let Some(w) = usage_warning(out.usage_count, out.max_usage_count) {
        out.warnings.push(w);
    }
}

/// The warning once `usageCount` reaches 90 % of `maxUsageCount`.
pub(crate) fn usage_warning(used: Option<u64>, max: Option<u64>) -> Option<String> {
    let (u, m) = (used?, max?);
    (m > 0 && u.saturating_mul(10) >= m.saturating_mul(9)).then(|| {
        format!(
            "license validations at {u} of {m} ({}%): when the backend's count reaches its maximum it refuses this license for good; contact CyberSensei to raise maxUsageCount",
            u.saturating_mul(100) / m
        )
    })
}

/// Applies a backend decision to the cache; returns the outcome.
pub fn decide(decision: Decision, cfg: &Config, now: f64) -> Result<Outcome> {
    decide_for(decision, cfg, now, None)
}

/// `decide`, recording which key (`key_id`) a valid answer was for.
pub(crate) fn decide_for(
    decision: Decision,
    cfg: &Config,
    now: f64,
    key_id: Option<&str>,
) -> Result<Outcome> {
    let state_dir = &cfg.state_dir;
    let previous = load_cache(state_dir);
    let fault = decision.fault();
    let refuse = |state: LicenseState, msg: String| -> Result<Outcome> {
        if let Some(mut c) = previous.clone() {
            c.last_decision = state;
            c.message = Some(msg.clone());
            fsutil::atomic_write_json(&cache_path(state_dir), &c, 0o600)?;
        }
        let known = previous.as_ref().map(|c| Outcome::from_cache(c, now));
        Ok(Outcome {
            state,
            message: Some(msg),
            // A refusal reports no days left, even with an expiry on record.
            days_left: None,
            ..known.unwrap_or_default()
        })
    };
    let mut out = match decision {
        Decision::Valid(r) => {
            let mut recent = previous
                .as_ref()
                .map(|c| budget::window(&c.recent, now))
                .unwrap_or_default();
            recent.push(now);
            let cache = Cached {
                tenant_id: r.tenant_id.unwrap_or_default(),
                tenant_name: r.tenant_name,
                expires_at: r.expires_at,
                usage_count: r.usage_count,
                max_usage_count: r.max_usage_count,
                validated_at: clock_is_sane(now).then_some(now),
                last_decision: LicenseState::Valid,
                message: None,
                key_id: key_id.map(str::to_string),
                recent,
            };
            fsutil::ensure_dir(state_dir, 0o755)?;
            fsutil::atomic_write_json(&cache_path(state_dir), &cache, 0o600)?;
            let mut o = Outcome::from_cache(&cache, now);
            if !clock_is_sane(now) {
                o.warnings
                    .push("system clock not set: expiry cannot be checked yet".into());
            }
            o
        }
        Decision::Expired(m) => refuse(
            LicenseState::Expired,
            format!("{m}: contact CyberSensei to renew the license"),
        )?,
        Decision::Inactive(m) => refuse(
            LicenseState::Inactive,
            format!("{m}: the tenant is disabled, contact CyberSensei support"),
        )?,
        Decision::Invalid(m) => refuse(
            LicenseState::Invalid,
            format!("{m}: check the license key, then contact CyberSensei support"),
        )?,
        Decision::Unreachable(_) | Decision::NotProtocol(_) | Decision::Throttled { .. } => {
            let fault = fault.unwrap_or_else(|| Fault::Unreachable(String::new()));
            offline_state(previous.as_ref(), cfg, now, &fault)
        }
    };
    warnings_for(&mut out, cfg);
    Ok(out)
}

/// Validates once against the backend, updates the cache and status.json.
pub fn validate(ctx: &Ctx) -> Result<Outcome> {
    let key = read_key(&ctx.cfg)?;
    ctx.transport.add_secret(&key);
    let path = format!("/api/license/validate?key={}", percent_encode(&key));
    let before = ctx.now();
    // In 1970 (no RTC, NTP not there yet) every certificate is "not yet valid": asking
    // would only burn retries and look like a backend failure. Plain http (a LAN
    // backend) can still answer, so it is asked.
    let clock_unset = !clock_is_sane(before) && !ctx.cfg.backend.url.starts_with("http://");
    let decision = if clock_unset {
        Decision::Unreachable(format!(
            "system clock not set (reads {}, before {}): certificates cannot be checked until NTP sets it",
            clock::iso8601(before),
            clock::iso8601(clock_floor())
        ))
    } else {
        match ctx.transport.get(ctx.clock, &path) {
            Ok(reply) => classify(&reply),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => match Fault::of(e) {
                Fault::Unreachable(m) => Decision::Unreachable(m),
                Fault::NotProtocol(m) => Decision::NotProtocol(m),
                Fault::Throttled { what, retry_after } => Decision::Throttled { what, retry_after },
            },
        }
    };
    let now = ctx.now();
    let out = decide_for(decision, &ctx.cfg, now, Some(&key_id(&key)))?;
    for w in &out.warnings {
        log::warn!("{w}");
    }
    match out.state {
        LicenseState::Valid => log::info!(
            "license valid for {} until {}",
            out.tenant_name.as_deref().unwrap_or("?"),
            out.expires_at.as_deref().unwrap_or("?")
        ),
        // The daemon says "clock not set" once; not again on every retry. A command
        // run by hand prints the outcome itself: not twice.
        s if clock_unset || ctx.interactive => log::debug!(
            "license {}: {}",
            s.as_str(),
            out.message.as_deref().unwrap_or("")
        ),
        s => log::warn!(
            "license {}: {}",
            s.as_str(),
            out.message.as_deref().unwrap_or("")
        ),
    }
    record(&ctx.cfg.state_dir, &out, now)?;
    Ok(out)
}

/// The outcome the cache stands for, as if the backend had just said it again (the
/// daemon starting on a reused validation: see `budget`). None without a cache.
pub(crate) fn cached_outcome(cfg: &Config, now: f64) -> Option<Outcome> {
    let c = load_cache(&cfg.state_dir)?;
    let mut out = Outcome::from_cache(&c, now);
    warnings_for(&mut out, cfg);
    Some(out)
}

/// Reports an outcome in status.json.
pub(crate) fn record(state_dir: &Path, out: &Outcome, now: f64) -> Result<()> {
    let cache = load_cache(state_dir);
    Status::modify(state_dir, now, |s| {
        let l = &mut s.license;
        l.state = out.state;
        l.tenant_id = out.tenant_id.clone();
        l.tenant_name = out.tenant_name.clone();
        l.expires_at = out.expires_at.clone();
        l.days_left = out.days_left;
        l.message = out.message.clone();
        l.usage_count = out.usage_count;
        l.max_usage_count = out.max_usage_count;
        l.last_validated_at = cache.and_then(|c| c.validated_at).map(clock::iso8601);
        if out.message.is_none() && !out.warnings.is_empty() {
            l.message = Some(out.warnings.join("; "));
        }
    })?;
    Ok(())
}
