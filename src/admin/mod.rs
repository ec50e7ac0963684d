//! The local admin API and status page (docs/admin-api.md): the node dashboard's
//! update routes, ours, and a page at `/`.
//!
//! One thread serves it (`server`), so a slow or hostile client never holds up the
//! daemon: it reads status.json and the history (both written atomically) and the
//! in-memory progress, and passes actions (apply, check, telemetry push) to the
//! daemon's loop through a bounded channel; the loop performs them at its next tick
//! and answers on the job's own channel.

pub(crate) mod auth;
pub mod http;
pub(crate) mod page;
pub(crate) mod routes;
pub(crate) mod server;

use crate::config::AdminApi;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Jobs waiting for the loop, at most (more: 503).
const QUEUE: usize = 2;

/// Where the listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// `IP:PORT` or `unix:/ABSOLUTE/PATH`.
    pub(crate) fn parse(s: &str) -> Option<Listen> {
        match s.strip_prefix("unix:") {
            Some(p) if p.starts_with('/') && p.len() > 1 => Some(Listen::Unix(p.into())),
            Some(_) => None,
            None => s.parse().ok().map(Listen::Tcp),
        }
    }

    /// Loopback or a Unix socket: only this box can connect.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(a) => a.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

/// What the listener asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Install the update on offer, if its id is this one.
    Apply(String),
    /// Ask the backend for an update now.
    Check,
    /// Send a telemetry sample now.
    TelemetryPush,
}

/// The loop's answer: a sentence, or (HTTP status, message).
pub(crate) type Reply = Result<String, (u16, String)>;

/// Where the loop puts its answer to one job (a plain mutex rather than std's mpsc
/// channels: those cost ~tens of kB of code on the boards).
pub(crate) type ReplySlot = Arc<Mutex<Option<Reply>>>;

/// An action with where to answer it.
pub(crate) struct Job {
    pub(crate) action: Action,
    pub(crate) reply: ReplySlot,
}

impl Job {
    /// Answers (the listener may have given up waiting: ignored then).
    pub(crate) fn answer(self, r: Reply) {
        *lock(&self.reply) = Some(r);
    }
}

/// Locks `m`; a panic elsewhere while it was held leaves plain data behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The jobs waiting for the loop, at most `QUEUE`.
pub(crate) type Queue = Arc<Mutex<VecDeque<Job>>>;

/// The daemon's end: the jobs the listener sends.
pub(crate) struct Handle {
    jobs: Queue,
}

impl Handle {
    /// The next job, if one waits.
    pub(crate) fn next_job(&self) -> Option<Job> {
        lock(&self.jobs).pop_front()
    }
}

/// `listen (auth MODE)` or `off`, for `status` and `doctor`.
pub(crate) fn describe(a: &AdminApi) -> String {
    match &a.listen {
        Some(l) => format!("{l} (auth {})", a.auth),
        None => "off".into(),
    }
}

/// Starts the listener when `admin_api.listen` is set. An error (address in use)
/// is returned for the caller to log: the daemon runs on without it.
pub(crate) fn start(cfg: &crate::config::Config) -> std::io::Result<Option<Handle>> {
    let Some(listen) = cfg.admin_api.listen.as_deref().and_then(Listen::parse) else {
        return Ok(None);
    };
    let jobs: Queue = Arc::default();
    let api = routes::Api::new(cfg, &listen, jobs.clone());
    let sock = server::Socket::bind(&listen)?;
    log::info!("admin API listening on {}", describe(&cfg.admin_api));
    std::thread::Builder::new()
        .name("admin-api".into())
        .stack_size(128 * 1024)
        .spawn(move || server::serve(sock, api))?;
    Ok(Some(Handle { jobs }))
}
