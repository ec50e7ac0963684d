//! License validation (docs/protocol.md §1): the backend's decision, the cached last good
//! validation, and the offline grace rules.

use crate::clock::{self, UnixTime};
use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::key::LicenseKey;
use crate::protocol::LicenseResponse;
use crate::status::{LicenseState, Status};
use crate::transport::Reply;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The window of the validation budget (`budget`): validations older than this no
/// longer count.
pub(crate) const WINDOW: f64 = 86_400.0;
/// Validation times kept at most (the file stays small whatever happens).
const MAX_KEPT: usize = 64;
/// Tolerance for a wall clock that stepped back a little (NTP).
pub(crate) const SKEW: f64 = 300.0;

/// The validations of `recent` that still count at `now`: inside the window. One
/// from the future (the clock was set back more than `SKEW`) counts as made `now`:
/// dropping it would give a clock set back a fresh budget, and keeping its time
/// would block validations for as long as the clock went back; once stored at `now`
/// it leaves the window a day later.
pub(crate) fn recent_window(recent: &[UnixTime], now: UnixTime) -> Vec<UnixTime> {
    let mut v: Vec<UnixTime> = recent
        .iter()
        .map(|t| if t.since(now) > SKEW { now } else { *t })
        .filter(|t| now.since(*t) < WINDOW)
        .collect();
    let excess = v.len().saturating_sub(MAX_KEPT - 1);
    v.drain(..excess);
    v
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
    pub(crate) validated_at: Option<UnixTime>,
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
    pub(crate) recent: Vec<UnixTime>,
}

/// What one validation concluded.
#[derive(Debug, Default)]
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
    /// Why there was no decision, when there was none: the transport's error,
    /// its cause kept.
    pub(crate) fault: Option<Error>,
}

impl Outcome {
    /// The outcome a cached validation stands for: its decision, tenant, expiry and
    /// usage, with no warnings yet.
    fn from_cache(c: &Cached, now: UnixTime) -> Outcome {
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

    /// The exit code of a one-shot command that printed this outcome (that of
    /// [`Outcome::into_error`]).
    pub(crate) fn exit_code(&self) -> u8 {
        use crate::error::exit;
        match (self.state, &self.fault) {
            (LicenseState::Valid | LicenseState::Grace, _) => exit::OK,
            (LicenseState::Expired, _) => exit::LICENSE_EXPIRED,
            (LicenseState::Inactive, _) => exit::TENANT_INACTIVE,
            (LicenseState::Invalid, _) => exit::LICENSE_REFUSED,
            (LicenseState::Unknown, Some(f)) => f.exit_code(),
            (LicenseState::Unknown, None) => exit::UNREACHABLE,
        }
    }

    /// The error a one-shot command reports for this outcome (the transport's own,
    /// its cause kept, when there was no decision).
    pub fn into_error(self) -> Option<Error> {
        let m = self.message.unwrap_or_default();
        match self.state {
            LicenseState::Valid | LicenseState::Grace => None,
            LicenseState::Expired => Some(Error::LicenseExpired(m)),
            LicenseState::Inactive => Some(Error::TenantInactive(m)),
            LicenseState::Invalid => Some(Error::LicenseRefused(m)),
            LicenseState::Unknown => Some(match self.fault {
                Some(f) => f,
                None => Error::unreachable(m),
            }),
        }
    }
}

/// The backend's answer, classified.
#[derive(Debug)]
pub enum Decision {
    Valid(LicenseResponse),
    Expired(String),
    Inactive(String),
    Invalid(String),
    /// Not a license decision: the backend could not be used. The error says why:
    /// `Unreachable` (network, 5xx), `Protocol` (a captive portal, a wrong
    /// `backend.url`, a redirect, an error without a backend body) or `Throttled`
    /// (429).
    NoDecision(Error),
}

/// An answer that is not the license protocol.
fn not_protocol(message: String) -> Decision {
    Decision::NoDecision(Error::protocol(message, None))
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
                    not_protocol("the license answer has an unusable tenantId".into())
                }
                Some(t) if !t.trim().is_empty() => Decision::Valid(bounded(r)),
                _ => not_protocol("the license answer says valid but has no tenantId".into()),
            },
            Ok(_) => Decision::Invalid("the backend answered valid: false".into()),
            Err(_) => not_protocol(format!(
                "GET /api/license/validate answered 200 with something that is not the license JSON ({}): a captive portal or a wrong backend.url?",
                reply.content_type.as_deref().unwrap_or("no content type")
            )),
        },
        400 | 404 => {
            let Some(msg) = reply.error_message() else {
                return not_protocol(format!(
                    "GET /api/license/validate answered {} without a backend error body (a wrong backend.url, or a proxy answered?)",
                    reply.status
                ));
            };
            let n = normalize(&msg);
            if n.starts_with("cannot get") {
                // NestJS's own 404 for a route it does not have: the URL is wrong.
                // (Its text repeats the URL, key included: not kept.)
                return not_protocol(
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
                not_protocol(format!("GET /api/license/validate answered 400: {msg}"))
            } else {
                Decision::Invalid(msg)
            }
        }
        s if (300..400).contains(&s) => not_protocol(format!(
            "GET /api/license/validate answered a redirect (HTTP {s}), not followed: a captive portal or a wrong backend.url?"
        )),
        s => {
            let detail = reply.error_message().unwrap_or_default();
            Decision::NoDecision(Error::unreachable(
                format!("GET /api/license/validate: unexpected HTTP {s} {detail}")
                    .trim()
                    .to_string(),
            ))
        }
    }
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

fn days_left(expires_at: Option<&str>, now: UnixTime) -> Option<i64> {
    if !now.is_sane() {
        return None;
    }
    let exp = UnixTime::parse(expires_at?)?;
    Some((exp.since(now) / 86400.0).floor() as i64)
}

/// What a cached validation allows when the backend gives no decision (`fault`).
pub(crate) fn offline_state(
    cache: Option<&Cached>,
    cfg: &Config,
    now: UnixTime,
    fault: Error,
) -> Outcome {
    let why = crate::error::chain(&fault);
    let Some(c) = cache else {
        return Outcome {
            state: LicenseState::Unknown,
            message: Some(format!("never validated; {why}")),
            fault: Some(fault),
            ..Outcome::default()
        };
    };
    let mut out = Outcome {
        fault: Some(fault),
        ..Outcome::from_cache(c, now)
    };
    if c.last_decision != LicenseState::Valid {
        // The backend's last word was a refusal: being offline does not undo it.
        return out;
    }
    // Unknown unless the grace period says otherwise; each path below sets the message.
    out.state = LicenseState::Unknown;
    if !now.is_sane() {
        // Cannot measure the grace period or expiry: keep running on the last
        // validation, but say why; this is neither a refusal nor valid-forever,
        // since the clock is checked again on every step.
        out.state = LicenseState::Grace;
        out.message = Some(format!("system clock not set; {why}"));
        return out;
    }
    if let Some(exp) = c.expires_at.as_deref().and_then(UnixTime::parse) {
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
        Some(at)
            if now.since(at) <= cfg.license.grace_period.as_secs_f64()
                && now.since(at) >= -SKEW =>
        {
            let left = cfg.license.grace_period.as_secs_f64() - now.since(at);
            out.state = LicenseState::Grace;
            out.message = Some(format!(
                "{why}; running on the validation of {} for {}h more",
                at.iso8601(),
                (left / 3600.0).floor() as i64
            ));
        }
        Some(at) => {
            out.message = Some(format!(
                "{why}; and the last validation ({}) is older than the grace period ({}s)",
                at.iso8601(),
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
pub fn decide(decision: Decision, cfg: &Config, now: UnixTime) -> Result<Outcome> {
    decide_for(decision, cfg, now, None)
}

/// `decide`, recording which key (`key_id`) a valid answer was for.
pub(crate) fn decide_for(
    decision: Decision,
    cfg: &Config,
    now: UnixTime,
    key_id: Option<&str>,
) -> Result<Outcome> {
    let state_dir = &cfg.state_dir;
    let previous = load_cache(state_dir);
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
                .map(|c| recent_window(&c.recent, now))
                .unwrap_or_default();
            recent.push(now);
            let cache = Cached {
                tenant_id: r.tenant_id.unwrap_or_default(),
                tenant_name: r.tenant_name,
                expires_at: r.expires_at,
                usage_count: r.usage_count,
                max_usage_count: r.max_usage_count,
                validated_at: now.is_sane().then_some(now),
                last_decision: LicenseState::Valid,
                message: None,
                key_id: key_id.map(str::to_string),
                recent,
            };
            fsutil::ensure_dir(state_dir, 0o755)?;
            fsutil::atomic_write_json(&cache_path(state_dir), &cache, 0o600)?;
            let mut o = Outcome::from_cache(&cache, now);
            if !now.is_sane() {
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
        Decision::NoDecision(fault) => offline_state(previous.as_ref(), cfg, now, fault),
    };
    warnings_for(&mut out, cfg);
    Ok(out)
}

/// Validates the key in use once against the backend, updates the cache and
/// status.json.
pub fn validate(ctx: &Ctx) -> Result<Outcome> {
    validate_key(ctx, &LicenseKey::read(&ctx.cfg.license.key_file)?)
}

/// Validates `key` once against the backend, updates the cache and status.json.
pub(crate) fn validate_key(ctx: &Ctx, key: &LicenseKey) -> Result<Outcome> {
    let path = format!("/api/license/validate?key={}", key.query_value());
    let before = ctx.clock.now();
    // In 1970 (no RTC, NTP not there yet) every certificate is "not yet valid": asking
    // would only burn retries and look like a backend failure. Plain http (a LAN
    // backend) can still answer, so it is asked.
    let clock_unset = !before.is_sane() && !ctx.cfg.backend.url.starts_with("http://");
    let decision = if clock_unset {
        Decision::NoDecision(Error::unreachable(format!(
            "system clock not set (reads {}, before {}): certificates cannot be checked until NTP sets it",
            before.iso8601(),
            clock::floor().iso8601()
        )))
    } else {
        match ctx.transport.get(ctx.clock, &path) {
            Ok(reply) => classify(&reply),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => Decision::NoDecision(e),
        }
    };
    let now = ctx.clock.now();
    let out = decide_for(decision, &ctx.cfg, now, Some(&key.id()))?;
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
pub(crate) fn cached_outcome(cfg: &Config, now: UnixTime) -> Option<Outcome> {
    let c = load_cache(&cfg.state_dir)?;
    let mut out = Outcome::from_cache(&c, now);
    warnings_for(&mut out, cfg);
    Some(out)
}

/// Reports an outcome in status.json.
pub(crate) fn record(state_dir: &Path, out: &Outcome, now: UnixTime) -> Result<()> {
    let cache = load_cache(state_dir);
    Status::modify(state_dir, now.secs(), |s| {
        let l = &mut s.license;
        l.state = out.state;
        l.tenant_id = out.tenant_id.clone();
        l.tenant_name = out.tenant_name.clone();
        l.expires_at = out.expires_at.clone();
        l.days_left = out.days_left;
        l.message = out.message.clone();
        l.usage_count = out.usage_count;
        l.max_usage_count = out.max_usage_count;
        l.last_validated_at = cache.and_then(|c| c.validated_at).map(UnixTime::iso8601);
        if out.message.is_none() && !out.warnings.is_empty() {
            l.message = Some(out.warnings.join("; "));
        }
    })?;
    Ok(())
}
