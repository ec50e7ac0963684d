//! The init scripts' fallback to the factory agent (docs/security.md, finding 4).
//!
//! An updated agent that dies before its start-up recovery (it rejects the config,
//! it crashes in `main`) cannot count its own boot attempts. The init scripts do it
//! for it, before starting anything: `state_dir/agent-starts` holds the number of
//! starts of the slot's agent not yet confirmed; past `MAX_AGENT_STARTS` (3), or when
//! the slot's agent died at once, they start the factory agent with
//! `CYBERSENSEI_AGENT_FALLBACK=1`. That agent's recovery then rolls back an update
//! still waiting (journal `switched`) whose slot brought the agent that failed.

use super::slots::Layout;
use crate::config::Config;
use crate::state_paths::StatePaths;

/// Set by the init scripts when they start the factory agent because the slot's
/// agent failed.
pub(crate) const FALLBACK_ENV: &str = "CYBERSENSEI_AGENT_FALLBACK";

/// This agent was started instead of the slot's own, which failed.
pub(crate) fn is_fallback() -> bool {
    std::env::var(FALLBACK_ENV).is_ok_and(|v| v == "1")
}

/// Whether an update switched to `target` must be rolled back because its agent
/// failed to start (this process is the factory agent the init script fell back to).
pub(crate) fn agent_failed(cfg: &Config, target: &str) -> bool {
    is_fallback()
        && Layout::new(&cfg.install.root)
            .slot_dir(target)
            .join(super::driver::AGENT_IN_SLOT)
            .is_file()
}

/// The agent is up (recovery done): the starts are confirmed. A factory agent the
/// init script fell back to leaves the counter (so the failing slot agent is not
/// tried again at every restart) unless its recovery moved `current`.
pub(crate) fn confirm_start(cfg: &Config, slot_before: Option<&str>) {
    let moved = Layout::new(&cfg.install.root).active().as_deref() != slot_before;
    if is_fallback() && !moved {
        return;
    }
    remove(&StatePaths::new(&cfg.state_dir));
}

fn remove(paths: &StatePaths) {
    let starts = paths.agent_starts();
    match std::fs::remove_file(&starts) {
        Ok(()) => {
            let _ = crate::fsutil::fsync_dir(paths.root());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("{}: {e}", starts.display()),
    }
}
