//! The routes: the node dashboard's contract (NODE.md §1, field names verbatim, every
//! date ISO 8601 UTC) and ours. Reads come from status.json, the history and the
//! in-memory progress; actions go to the daemon's loop as `Job`s.

use super::auth::{Access, Checker};
use super::cache::Cached;
use super::http::{Request, Response};
use super::shared::{describe, lock, Action, Job, Queue, Reply, ReplySlot, QUEUE};
use crate::clock::{iso8601, parse_iso8601};
use crate::http_target::{Listen, NodeUrl};
use crate::status::{Status, UpdateState};
use crate::{history, progress};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
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
    jobs: Queue,
    last_forced: Option<Instant>,
    /// `http://ADDR` forms of the listener's own address (Origin checks).
    own: Vec<String>,
    /// With `auth: "none"` on TCP, the names a request's `Host` may carry besides an IP
    /// address (None: any).
    names: Option<Vec<String>>,
    describe: String,
    status: Cached<Status>,
    history: Cached<Vec<history::Entry>>,
}

/// Whether a `Host` header (`name`, `name:port`, `[v6]:port`) names the box: an IP
/// address (a rebinding attack needs a name of its own), or one of `names`.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let digits = |p: &str| p.is_empty() || p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').is_some_and(|(ip, port)| {
            ip.parse::<std::net::Ipv6Addr>().is_ok()
                && (port.is_empty() || port.strip_prefix(':').is_some_and(digits))
        });
    }
    let name = match host.rsplit_once(':') {
        Some((n, p)) if digits(p) => n,
        Some(_) => return false,
        None => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || names.contains(&name)
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
    rx: Option<(ReplySlot, After)>,
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
        let (slot, after) = self.rx.as_ref()?;
        if let Some(reply) = lock(slot).take() {
            return Some(api.after(*after, reply));
        }
        // The loop dropped the job unanswered: it is stopping.
        let dropped = Arc::strong_count(slot) == 1;
        match () {
            _ if dropped => Some(Response::error(503, "l'agent s'arrête ; réessayez")),
            _ if now < self.until => None,
            _ => Some(Response::error(
                504,
                &format!(
                    "toujours en cours après {} s (phase : {}) ; suivez /api/agent/progress, puis l'historique",
                    ACTION_WAIT.as_secs(),
                    progress::snapshot().label
                ),
            )),
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
    pub(crate) fn new(cfg: &crate::config::Config, l: &Listen, jobs: Queue) -> Api {
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
        // DNS rebinding: another site's page, its name re-pointed at the box, reaches
        // the listener as same-origin, with its own name as Host. With no session to
        // check, only names the box is known by are answered.
        let names = (checker.is_none() && matches!(l, Listen::Tcp(_))).then(|| {
            let mut n = vec!["localhost".to_string()];
            if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                let h = h.trim().to_ascii_lowercase();
                if !h.is_empty() {
                    n.push(format!("{h}.local"));
                    n.push(h);
                }
            }
            n.extend(a.hosts.iter().cloned());
            n
        });
        Api {
            state_dir: cfg.state_dir.clone(),
            checker,
            jobs,
            last_forced: None,
            own,
            names,
            describe: describe(a),
            status: Cached::default(),
            history: Cached::default(),
        }
    }

    /// status.json, read again only when it changed.
    fn status(&mut self) -> Arc<Status> {
        let dir = &self.state_dir;
        self.status
            .get(&crate::status::path(dir), || Status::load(dir))
    }

    /// The history, read again only when it changed.
    fn history(&mut self) -> Arc<Vec<history::Entry>> {
        let dir = &self.state_dir;
        self.history.get(&history::path(dir), || history::load(dir))
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
        if let (Some(names), Some(host)) = (&self.names, req.header("host")) {
            if !host_allowed(host, names) {
                return Outcome::Now(Response::error(
                    403,
                    "nom d'hôte inconnu de la box : ajoutez-le à admin_api.hosts",
                ));
            }
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
        let st = self.status();
        let r = match route {
            Route::Page => {
                let gzip = req
                    .header("accept-encoding")
                    .is_some_and(|a| a.contains("gzip"));
                let (body, gz) = super::page::page(gzip);
                Response {
                    status: 200,
                    content_type: if gz { "text/html;gzip" } else { "text/html" },
                    body,
                }
            }
            Route::Check if force => return self.forced(After::Check),
            Route::SyncCheck => return self.forced(After::SyncStatus),
            Route::Check => Response::text(200, update_check(&st)),
            Route::History => Response::text(
                200,
                history_json(&self.history(), req.query_has("all", "true")),
            ),
            Route::Apply => return self.apply(req),
            Route::License => Response::text(200, license_info(&st)),
            Route::SyncStatus => Response::text(200, sync_status(&st)),
            Route::Push => return self.send(Action::TelemetryPush, After::Push),
            Route::AgentStatus => {
                // status.json's object, with two fields more.
                let mut body = serde_json::to_string(&*st).unwrap_or_else(|_| "{}".into());
                body.pop();
                let h = self.history();
                let last: Vec<_> = h.iter().rev().take(5).collect();
                let extra = Obj::new()
                    .s("adminApi", Some(&self.describe))
                    .raw(
                        "history",
                        &serde_json::to_string(&last).unwrap_or_else(|_| "[]".into()),
                    )
                    .done();
                body.push(',');
                body.push_str(&extra[1..]);
                Response::text(200, body)
            }
            Route::Progress => Response::text(200, progress_json(&progress::snapshot())),
        };
        Outcome::Now(r)
    }

    /// A POST must be JSON, and a browser's `Origin`, when sent, the `Host` it was
    /// asked as (behind the board's proxy, the box's own name and port, which the proxy
    /// passes on): a cross-site form can neither send JSON nor forge its Origin. The
    /// listener's own address counts only for a request without `Host`: through the
    /// proxy, `http://127.0.0.1:8091` is a page on the browser's own machine.
    fn refuse_post(&self, req: &Request) -> Option<Response> {
        let ct = req.header("content-type").unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Some(Response::error(
                415,
                "Content-Type: application/json requis",
            ));
        }
        let origin = req.header("origin")?;
        let same = match req.header("host").filter(|h| !h.is_empty()) {
            Some(host) => ["http://", "https://"].iter().any(|scheme| {
                origin.len() == scheme.len() + host.len()
                    && origin.starts_with(scheme)
                    && origin[scheme.len()..].eq_ignore_ascii_case(host)
            }),
            None => self.own.iter().any(|o| o == origin),
        };
        if same {
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
        let u = self.status().update.clone();
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
        let slot = ReplySlot::default();
        {
            let mut q = lock(&self.jobs);
            if q.len() >= QUEUE {
                return Outcome::Now(Response::error(
                    503,
                    "l'agent traite déjà d'autres actions ; réessayez",
                ));
            }
            q.push_back(Job {
                action,
                reply: slot.clone(),
            });
        }
        crate::signals::wake();
        Outcome::Wait(Waiting {
            ready: None,
            rx: Some((slot, after)),
            until: Instant::now() + ACTION_WAIT,
        })
    }

    /// The answer to an action the loop performed.
    fn after(&mut self, after: After, reply: Reply) -> Response {
        let msg = match reply {
            Ok(m) => m,
            Err((s, m)) => return Response::error(s, &m),
        };
        let st = self.status();
        let body = match after {
            After::Check => update_check(&st),
            After::SyncStatus => sync_status(&st),
            After::Apply => Obj::new()
                .b("success", true)
                .s("message", Some(&msg))
                .s("version", Some(&st.version))
                .s("slot", st.slot.as_deref())
                .done(),
            After::Push => Obj::new()
                .b("success", true)
                .s("message", Some(&msg))
                .s(
                    "lastTelemetryPush",
                    opt_date(st.telemetry.last_sent_at.as_deref()).as_deref(),
                )
                .done(),
        };
        Response::text(200, body)
    }
}

/// A date of ours or the backend's, as ISO 8601 UTC; `NEVER` when unreadable.
fn date(s: &str) -> String {
    parse_iso8601(s).map_or_else(|| NEVER.to_string(), iso8601)
}

fn opt_date(s: Option<&str>) -> Option<String> {
    s.map(date)
}

/// A JSON object written field by field: `json!` inlines kilobytes of code per use,
/// which the boards' size budget cannot spare.
pub(crate) struct Obj(String);

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj("{".into())
    }
    /// `"k": v` with `v` already JSON.
    pub(crate) fn raw(mut self, k: &str, v: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
        self.0.push_str(v);
        self
    }
    /// A string, or null.
    pub(crate) fn s(self, k: &str, v: Option<&str>) -> Obj {
        match v {
            Some(v) => {
                let q = serde_json::to_string(v).unwrap_or_default();
                self.raw(k, &q)
            }
            None => self.raw(k, "null"),
        }
    }
    /// A number, or null.
    pub(crate) fn n(self, k: &str, v: Option<i64>) -> Obj {
        match v {
            Some(v) => self.raw(k, &v.to_string()),
            None => self.raw(k, "null"),
        }
    }
    pub(crate) fn b(self, k: &str, v: bool) -> Obj {
        self.raw(k, if v { "true" } else { "false" })
    }
    pub(crate) fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `GET /api/agent/progress`.
fn progress_json(p: &progress::Snapshot) -> String {
    Obj::new()
        .s("phase", Some(p.phase.as_str()))
        .s("label", Some(p.label))
        .n("step", Some(i64::from(p.step)))
        .b("active", p.active)
        .n("bytes", num(Some(p.bytes)))
        .n("total", num(p.total))
        .n("percent", p.percent.map(i64::from))
        .n("etaSeconds", num(p.eta_seconds))
        .s("version", p.version.as_deref())
        .s("updateId", p.update_id.as_deref())
        .done()
}

fn num(v: Option<u64>) -> Option<i64> {
    v.map(|n| n.min(i64::MAX as u64) as i64)
}

/// `UpdateInfo` of the dashboard.
pub(crate) fn update_check(st: &Status) -> String {
    let u = &st.update;
    let checked = date(u.last_checked_at.as_deref().unwrap_or(NEVER));
    let latest = u
        .latest_version
        .clone()
        .filter(|_| u.available)
        .unwrap_or_else(|| st.version.clone());
    let pending = match (&u.update_id, u.available) {
        (Some(id), true) => {
            let size = u
                .file_size
                .map_or_else(|| "inconnue".to_string(), progress::human_size);
            let kind = if u.package_kind.as_deref() == Some("content") {
                "content"
            } else {
                "system"
            };
            let one = Obj::new()
                .s("id", Some(id))
                .s("version", Some(&latest))
                .s("type", Some(kind))
                .s(
                    "description",
                    Some(u.changelog.as_deref().unwrap_or_default()),
                )
                .s("size", Some(&size))
                // The backend gives no release date: when the agent learned of the offer.
                .s("releaseDate", Some(&checked))
                .done();
            format!("[{one}]")
        }
        _ => "[]".into(),
    };
    Obj::new()
        .s("currentVersion", Some(&st.version))
        .s("latestVersion", Some(&latest))
        .b("updateAvailable", u.available)
        .s("lastCheckDate", Some(&checked))
        .s("contentVersion", Some(&st.version))
        .raw("pendingUpdates", &pending)
        .s("state", Some(u.state.as_str()))
        .s("lastError", u.last_error.as_deref())
        .s("deferred", u.deferred.as_deref())
        .s("message", u.message.as_deref())
        .done()
}

/// `UpdateHistory[]`, newest first: what ended (commits, rollbacks, refusals,
/// failures); `all` adds the install starts.
fn history_json(h: &[history::Entry], all: bool) -> String {
    let shown: Vec<_> = h
        .iter()
        .rev()
        .filter(|e| all || e.event != history::Event::Install)
        .collect();
    serde_json::to_string(&shown).unwrap_or_else(|_| "[]".into())
}

/// `LicenseInfo` plus what the agent knows.
pub(crate) fn license_info(st: &Status) -> String {
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
    let warnings = serde_json::to_string(&st.security.warnings).unwrap_or_else(|_| "[]".into());
    Obj::new()
        // The backend's validation does not say the plan, seats or features.
        .raw("type", "null")
        .s("tenantId", l.tenant_id.as_deref())
        .s("expiresAt", opt_date(l.expires_at.as_deref()).as_deref())
        .raw("maxUsers", "null")
        .raw("features", "[]")
        .s("tenantName", l.tenant_name.as_deref())
        .s("state", Some(l.state.as_str()))
        .n("daysLeft", l.days_left)
        .s(
            "lastValidatedAt",
            opt_date(l.last_validated_at.as_deref()).as_deref(),
        )
        .n("usageCount", num(l.usage_count))
        .n("maxUsageCount", num(l.max_usage_count))
        .n("usagePercent", num(usage_percent))
        .s("message", l.message.as_deref())
        .b("critical", refused)
        .s("contact", Some(CONTACT))
        .s("signatures", Some(&st.security.signatures))
        .raw("warnings", &warnings)
        .done()
}

/// `UpdateStatus` of the dashboard's sync client.
fn sync_status(st: &Status) -> String {
    let u = &st.update;
    Obj::new()
        .b("enabled", true)
        .s(
            "lastUpdateCheck",
            opt_date(u.last_checked_at.as_deref()).as_deref(),
        )
        .s(
            "lastTelemetryPush",
            opt_date(st.telemetry.last_sent_at.as_deref()).as_deref(),
        )
        .s("currentVersion", Some(&st.version))
        .b("updateAvailable", u.available)
        .s(
            "latestVersion",
            u.latest_version.as_deref().filter(|_| u.available),
        )
        .n("telemetryQueued", num(Some(st.telemetry.queued)))
        .s("updateState", Some(u.state.as_str()))
        .b(
            "busy",
            !matches!(
                u.state,
                UpdateState::Idle
                    | UpdateState::Available
                    | UpdateState::Failed
                    | UpdateState::RolledBack
            ),
        )
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_json_parses() {
        let mut st = Status::default();
        st.update.available = true;
        st.update.update_id = Some("u\"1".into());
        for body in [update_check(&st), license_info(&st), sync_status(&st)] {
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert!(v.is_object(), "{body}");
        }
        let e = Response::error(404, "x\"y");
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            (v["statusCode"].as_u64(), v["message"].as_str()),
            (Some(404), Some("x\"y"))
        );
    }

    #[test]
    fn hosts_a_rebinding_page_cannot_carry() {
        let names = ["localhost".to_string(), "box.acme.lan".to_string()];
        for ok in [
            "127.0.0.1:8091",
            "192.168.1.50",
            "[::1]:8091",
            "[fe80::1]",
            "localhost:8091",
            "LOCALHOST",
            "Box.Acme.Lan.:80",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for bad in [
            "evil.example:8091",
            "evil.example",
            "127.0.0.1.evil.example",
            "box.acme.lan.evil.example",
            "[::1",
            "[nope]:80",
            "localhost:80x",
            "",
        ] {
            assert!(!host_allowed(bad, &names), "{bad}");
        }
    }
}
