//! The routes: the node dashboard's contract (NODE.md §1, field names verbatim, every
//! date ISO 8601 UTC) and ours. Reads come from status.json, the history and the
//! in-memory progress; actions go to the daemon's loop as `Job`s.

use super::auth::{Access, Checker, NodeUrl};
use super::http::{Request, Response};
use super::{Action, Job, Listen, Reply};
use crate::clock::{iso8601, parse_iso8601};
use crate::status::{Status, UpdateState};
use crate::{history, progress};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

/// At most one forced check a minute (the backend throttles checks per box).
const FORCE_GAP: Duration = Duration::from_secs(60);
/// How long a request waits for the loop's action: under the dashboard's 30 s.
const ACTION_WAIT: Duration = Duration::from_secs(25);
/// The renewal contact of the integration guide.
const CONTACT: &str = "support@cybersensei.com";
/// Shown for a date never set (a missing date blanks the dashboard's page).
const NEVER: &str = "1970-01-01T00:00:00.000Z";

/// The routes' state.
pub(crate) struct Api {
    state_dir: PathBuf,
    checker: Option<Checker>,
    jobs: SyncSender<Job>,
    last_forced: Option<Instant>,
    /// `http://ADDR` forms of the listener's own address (Origin checks).
    own: Vec<String>,
    describe: String,
}

/// What a request gets: an answer now, or later from the loop.
pub(crate) enum Outcome {
    Now(Response),
    Wait(Waiting),
}

/// What the answer is made of once the loop has acted.
#[derive(Clone, Copy)]
enum After {
    Check,
    SyncStatus,
    Apply,
    Push,
}

/// A request waiting for the loop (or an answer ready to write).
pub(crate) struct Waiting {
    ready: Option<Response>,
    rx: Option<(Receiver<Reply>, After)>,
    until: Instant,
}

impl Waiting {
    /// An answer ready now.
    pub(crate) fn answered(r: Response) -> Waiting {
        Waiting {
            ready: Some(r),
            rx: None,
            until: Instant::now(),
        }
    }

    /// The answer, once there is one.
    pub(crate) fn poll(&mut self, api: &mut Api, now: Instant) -> Option<Response> {
        if let Some(r) = self.ready.take() {
            return Some(r);
        }
        let (rx, after) = self.rx.as_ref()?;
        match rx.try_recv() {
            Ok(reply) => Some(api.after(*after, reply)),
            Err(TryRecvError::Empty) if now < self.until => None,
            Err(TryRecvError::Empty) => Some(Response::error(
                504,
                &format!(
                    "toujours en cours après {} s (phase : {}) ; suivez /api/agent/progress, puis l'historique",
                    ACTION_WAIT.as_secs(),
                    progress::snapshot().label
                ),
            )),
            Err(TryRecvError::Disconnected) => {
                Some(Response::error(503, "l'agent s'arrête ; réessayez"))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Check,
    History,
    Apply,
    License,
    SyncStatus,
    SyncCheck,
    Push,
    AgentStatus,
    Progress,
}

/// Path, method, route.
const ROUTES: [(&str, &str, Route); 10] = [
    ("/", "GET", Route::Page),
    ("/api/update/check", "GET", Route::Check),
    ("/api/update/history", "GET", Route::History),
    ("/api/update/apply", "POST", Route::Apply),
    ("/api/license/info", "GET", Route::License),
    ("/api/sync/status", "GET", Route::SyncStatus),
    ("/api/sync/update/check", "POST", Route::SyncCheck),
    ("/api/sync/telemetry/push", "POST", Route::Push),
    ("/api/agent/status", "GET", Route::AgentStatus),
    ("/api/agent/progress", "GET", Route::Progress),
];

impl Api {
    /// The routes over `cfg`, sending jobs on `jobs`.
    pub(crate) fn new(cfg: &crate::config::Config, l: &Listen, jobs: SyncSender<Job>) -> Api {
        let a = &cfg.admin_api;
        let checker = (a.auth == "node")
            .then(|| NodeUrl::parse(&a.node_url))
            .flatten()
            .map(Checker::new);
        let own = match l {
            Listen::Tcp(addr) => {
                let port = addr.port();
                vec![format!("http://{addr}"), format!("http://localhost:{port}")]
            }
            Listen::Unix(_) => vec![],
        };
        Api {
            state_dir: cfg.state_dir.clone(),
            checker,
            jobs,
            last_forced: None,
            own,
            describe: super::describe(a),
        }
    }

    /// Routes one request.
    pub(crate) fn handle(&mut self, req: &Request) -> Outcome {
        // The dashboard's doubled prefix, if a proxy passed it on unchanged.
        let path = match req.path.strip_prefix("/api") {
            Some(p) if p.starts_with("/api/") => p,
            _ => req.path.as_str(),
        };
        let Some(&(_, method, route)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
            return Outcome::Now(Response::error(404, "route inconnue"));
        };
        if req.method != method {
            return Outcome::Now(Response::error(405, "méthode non permise sur cette route"));
        }
        let force = route == Route::Check && req.query_has("force", "true");
        let action = matches!(route, Route::Apply | Route::SyncCheck | Route::Push) || force;
        if method == "POST" {
            if let Some(r) = self.refuse_post(req) {
                return Outcome::Now(r);
            }
        }
        if route != Route::Page {
            if let Some(c) = self.checker.as_mut() {
                match c.check(req.header("authorization")) {
                    Err((s, m)) => return Outcome::Now(Response::error(s, m)),
                    Ok(Access::Reader) if action => {
                        return Outcome::Now(Response::error(403, "rôle ADMIN requis"))
                    }
                    Ok(_) => {}
                }
            }
        }
        let st = || Status::load(&self.state_dir);
        let r = match route {
            Route::Page => Response {
                status: 200,
                content_type: "text/html",
                body: super::page::PAGE.as_bytes().to_vec(),
            },
            Route::Check if force => return self.forced(After::Check),
            Route::SyncCheck => return self.forced(After::SyncStatus),
            Route::Check => Response::json(200, &update_check(&st())),
            Route::History => Response::json(
                200,
                &history_json(&self.state_dir, req.query_has("all", "true")),
            ),
            Route::Apply => return self.apply(req),
            Route::License => Response::json(200, &license_info(&st())),
            Route::SyncStatus => Response::json(200, &sync_status(&st())),
            Route::Push => return self.send(Action::TelemetryPush, After::Push),
            Route::AgentStatus => {
                let mut v = serde_json::to_value(st()).unwrap_or(Value::Null);
                v["adminApi"] = json!(self.describe);
                let h = history::load(&self.state_dir);
                v["history"] = json!(h.iter().rev().take(5).collect::<Vec<_>>());
                Response::json(200, &v)
            }
            Route::Progress => Response::json(200, &progress::snapshot()),
        };
        Outcome::Now(r)
    }

    /// A POST must be JSON, and a browser's `Origin`, when sent, this listener's (or
    /// the `Host` it was asked as, behind the board's proxy): a cross-site form can
    /// neither send JSON nor forge its Origin.
    fn refuse_post(&self, req: &Request) -> Option<Response> {
        let ct = req.header("content-type").unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Some(Response::error(
                415,
                "Content-Type: application/json requis",
            ));
        }
        let origin = req.header("origin")?;
        let host = req.header("host").unwrap_or("");
        let via_host = !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if via_host || self.own.iter().any(|o| o == origin) {
            None
        } else {
            Some(Response::error(
                403,
                "origine refusée (requête d'un autre site)",
            ))
        }
    }

    /// A forced check, at most once a minute; otherwise the last result, with its date.
    fn forced(&mut self, after: After) -> Outcome {
        let now = Instant::now();
        if self
            .last_forced
            .is_some_and(|t| now.saturating_duration_since(t) < FORCE_GAP)
        {
            return Outcome::Now(self.after(after, Ok(String::new())));
        }
        let o = self.send(Action::Check, after);
        if matches!(&o, Outcome::Wait(_)) {
            self.last_forced = Some(now);
        }
        o
    }

    /// `{"updateId"}` must name the update on offer.
    fn apply(&mut self, req: &Request) -> Outcome {
        let id = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("updateId")?.as_str().map(str::to_string));
        let Some(id) = id.filter(|i| !i.is_empty() && i.len() <= 200) else {
            return Outcome::Now(Response::error(
                400,
                "corps attendu : {\"updateId\": \"...\"}",
            ));
        };
        let u = Status::load(&self.state_dir).update;
        if progress::snapshot().active {
            return Outcome::Now(Response::error(409, "une mise à jour est déjà en cours"));
        }
        if !u.available || u.update_id.as_deref() != Some(id.as_str()) {
            return Outcome::Now(Response::error(
                409,
                &format!(
                    "la mise à jour {id} n'est pas celle proposée ({})",
                    u.update_id.as_deref().unwrap_or("aucune")
                ),
            ));
        }
        self.send(Action::Apply(id), After::Apply)
    }

    /// Hands an action to the loop and waits for its answer.
    fn send(&mut self, action: Action, after: After) -> Outcome {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        match self.jobs.try_send(Job { action, reply: tx }) {
            Ok(()) => {
                crate::signals::wake();
                Outcome::Wait(Waiting {
                    ready: None,
                    rx: Some((rx, after)),
                    until: Instant::now() + ACTION_WAIT,
                })
            }
            Err(TrySendError::Full(_)) => Outcome::Now(Response::error(
                503,
                "l'agent traite déjà d'autres actions ; réessayez",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Outcome::Now(Response::error(503, "l'agent s'arrête ; réessayez"))
            }
        }
    }

    /// The answer to an action the loop performed.
    fn after(&self, after: After, reply: Reply) -> Response {
        let msg = match reply {
            Ok(m) => m,
            Err((s, m)) => return Response::error(s, &m),
        };
        let st = Status::load(&self.state_dir);
        match after {
            After::Check => Response::json(200, &update_check(&st)),
            After::SyncStatus => Response::json(200, &sync_status(&st)),
            After::Apply => Response::json(
                200,
                &json!({"success": true, "message": msg, "version": st.version,
                        "slot": st.slot}),
            ),
            After::Push => Response::json(
                200,
                &json!({"success": true, "message": msg,
                        "lastTelemetryPush": st.telemetry.last_sent_at.as_deref().map(date)}),
            ),
        }
    }
}

/// A date of ours or the backend's, as ISO 8601 UTC; `NEVER` when unreadable.
fn date(s: &str) -> String {
    parse_iso8601(s).map_or_else(|| NEVER.to_string(), iso8601)
}

fn opt_date(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |d| Value::String(date(d)))
}

/// `UpdateInfo` of the dashboard.
pub(crate) fn update_check(st: &Status) -> Value {
    let u = &st.update;
    let checked = date(u.last_checked_at.as_deref().unwrap_or(NEVER));
    let latest = u
        .latest_version
        .clone()
        .filter(|_| u.available)
        .unwrap_or_else(|| st.version.clone());
    let pending: Vec<Value> = match (&u.update_id, u.available) {
        (Some(id), true) => vec![json!({
            "id": id,
            "version": latest,
            "type": if u.package_kind.as_deref() == Some("content") { "content" } else { "system" },
            "description": u.changelog.clone().unwrap_or_default(),
            "size": u.file_size.map_or_else(|| "inconnue".to_string(), progress::human_size),
            // The backend gives no release date: when the agent learned of the offer.
            "releaseDate": checked,
        })],
        _ => vec![],
    };
    json!({
        "currentVersion": st.version,
        "latestVersion": latest,
        "updateAvailable": u.available,
        "lastCheckDate": checked,
        "contentVersion": st.version,
        "pendingUpdates": pending,
        "state": u.state.as_str(),
        "lastError": u.last_error,
        "deferred": u.deferred,
        "message": u.message,
    })
}

/// `UpdateHistory[]`, newest first: what ended (commits, rollbacks, refusals,
/// failures); `all` adds the install starts.
fn history_json(state_dir: &std::path::Path, all: bool) -> Value {
    let h = history::load(state_dir);
    let shown: Vec<_> = h
        .iter()
        .rev()
        .filter(|e| all || e.event != history::Event::Install)
        .collect();
    json!(shown)
}

/// `LicenseInfo` plus what the agent knows.
pub(crate) fn license_info(st: &Status) -> Value {
    let l = &st.license;
    let usage_percent = match (l.usage_count, l.max_usage_count) {
        (Some(u), Some(m)) if m > 0 => Some(u.saturating_mul(100) / m),
        _ => None,
    };
    let refused = matches!(
        l.state,
        crate::status::LicenseState::Expired
            | crate::status::LicenseState::Inactive
            | crate::status::LicenseState::Invalid
    );
    json!({
        // The backend's validation does not say the plan, seats or features.
        "type": Value::Null,
        "tenantId": l.tenant_id,
        "expiresAt": opt_date(l.expires_at.as_deref()),
        "maxUsers": Value::Null,
        "features": [],
        "tenantName": l.tenant_name,
        "state": l.state.as_str(),
        "daysLeft": l.days_left,
        "lastValidatedAt": opt_date(l.last_validated_at.as_deref()),
        "usageCount": l.usage_count,
        "maxUsageCount": l.max_usage_count,
        "usagePercent": usage_percent,
        "message": l.message,
        "critical": refused,
        "contact": CONTACT,
        "signatures": st.security.signatures,
        "warnings": st.security.warnings,
    })
}

/// `UpdateStatus` of the dashboard's sync client.
fn sync_status(st: &Status) -> Value {
    let u = &st.update;
    json!({
        "enabled": true,
        "lastUpdateCheck": opt_date(u.last_checked_at.as_deref()),
        "lastTelemetryPush": opt_date(st.telemetry.last_sent_at.as_deref()),
        "currentVersion": st.version,
        "updateAvailable": u.available,
        "latestVersion": if u.available { u.latest_version.clone() } else { None },
        "telemetryQueued": st.telemetry.queued,
        "updateState": u.state.as_str(),
        "busy": !matches!(u.state, UpdateState::Idle | UpdateState::Available | UpdateState::Failed | UpdateState::RolledBack),
    })
}
