//! What the listener's thread and the daemon's loop share: the jobs (an action and
//! where to answer it) and their bounded queue.

use crate::config::AdminApi;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// Jobs waiting for the loop, at most (more: 503).
pub(crate) const QUEUE: usize = 2;

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

impl Drop for Job {
    /// Wakes the listener, so that an answer goes out at once rather than at its
    /// next 100 ms poll timeout (scripts/bench_admin_load.sh).
    fn drop(&mut self) {
        crate::self_pipe::ring(WAKE_FD.load(Ordering::Relaxed));
    }
}

/// The write end of the listener's wake-up pipe, -1 until the listener made it.
pub(crate) static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Locks `m`; a panic elsewhere while it was held leaves plain data behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The jobs waiting for the loop, at most `QUEUE`.
pub(crate) type Queue = Arc<Mutex<VecDeque<Job>>>;

/// `listen (auth MODE)` or `off`, for `status` and `doctor`.
pub(crate) fn describe(a: &AdminApi) -> String {
    match &a.listen {
        Some(l) => format!("{l} (auth {})", a.auth),
        None => "off".into(),
    }
}
