//! The local admin API and status page (docs/admin-api.md): the node dashboard's
//! update routes, ours, and a page at `/`.
//!
//! One thread serves it (`server`), so a slow or hostile client never holds up the
//! daemon: it reads status.json and the history (both written atomically) and the
//! in-memory progress, and passes actions (apply, check, telemetry push) to the
//! daemon's loop through a bounded channel; the loop performs them at its next tick
//! and answers on the job's own channel.

pub(crate) mod auth;
pub(crate) mod cache;
pub mod http;
pub(crate) mod page;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod shared;

use crate::http_target::Listen;
pub(crate) use shared::{describe, Action, Job};
use shared::{lock, Queue};
use std::sync::Arc;

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
