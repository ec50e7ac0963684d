//! The init scripts' fallback to the factory agent (docs/security.md, finding 4).
//!
//! An updated agent that dies before its start-up recovery (it rejects the config,
//! it crashes in `main`) cannot count its own boot attempts. The init scripts do it
//! for it, before starting anything: `state_dir/agent-starts` holds the number of
//! starts of the slot's agent not yet confirmed; past `MAX_AGENT_STARTS` (3), or when
//! the slot's agent died at once, they start the factory agent with
//! `CYBERSENSEI_AGENT_FALLBACK=1`. That agent's recovery then rolls back an update
//! still waiting (journal `switched`) whose slot brought the agent that failed.

use super::journal::Journal;
use super::slots::Layout;
use crate::config::Config;
use crate::state_paths::StatePaths;
use std::path::Path;

/// Set by the init scripts when they start the factory agent because the slot's
/// agent failed.
pub(crate) const FALLBACK_ENV: &str = "CYBERSENSEI_AGENT_FALLBACK";

/// This agent was started instead of the slot's own, which failed.
pub(crate) fn is_fallback() -> bool {
    std::env::var(FALLBACK_ENV).is_ok_and(|v| v == "1")
}

/// Whether an update switched to `target` must be rolled back because its agent
/// failed to start: this process is the factory agent the init script fell back to,
/// *and* the script's count on disk holds a start of that slot. The flag alone is no
/// evidence: inherited by mistake (a daemon started as the fallback execs the agent of
/// its next update), it would make that agent reject its own update.
pub(crate) fn agent_failed(cfg: &Config, target: &str) -> bool {
    is_fallback()
        && Layout::new(&cfg.install.root)
            .slot_dir(target)
            .join(super::stage::AGENT_IN_SLOT)
            .is_file()
        && counted_starts(&StatePaths::new(&cfg.state_dir), target) > 0
}

/// The init scripts' count of unconfirmed starts of slot `target` (0 when the file is
/// absent, unreadable or about another slot). Format: `N slots/X [BOOT-ID [CUTS]]`.
fn counted_starts(paths: &StatePaths, target: &str) -> u32 {
    let Ok(data) = crate::fsutil::read_bounded(&paths.agent_starts(), 512) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&data);
    let mut words = text.split_whitespace();
    let n = words
        .next()
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or(0);
    let slot = words.next().map(Path::new).and_then(Path::file_name);
    if slot.is_some_and(|s| s == target) {
        n
    } else {
        0
    }
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

/// Starts of a new slot's agent cut by a reboot that are forgiven: beyond, they count
/// (an agent that hangs the box until a watchdog resets it must still fail).
pub(crate) const MAX_FORGIVEN_CUTS: u32 = 10;

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`), None if unknown.
pub(crate) fn boot_id() -> Option<String> {
    // Test builds: a reboot without rebooting.
    #[cfg(feature = "test-seams")]
    if let Ok(v) = std::env::var("CYBERSENSEI_TEST_BOOT_ID") {
        return Some(v);
    }
    let data =
        crate::fsutil::read_bounded(Path::new("/proc/sys/kernel/random/boot_id"), 64).ok()?;
    let id = String::from_utf8(data).ok()?.trim().to_string();
    let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(id)
}

/// Whether this start of the switched slot's agent counts against
/// `updates.max_boot_attempts`, and records this boot in `j` (persisted by the
/// recovery before the health check). A crash restarts the agent in the same boot; a
/// journal naming another boot means the box lost power (or was reset) during the
/// last attempt: not the agent's failure, forgiven up to [`MAX_FORGIVEN_CUTS`] times.
pub(crate) fn count_this_start(j: &mut Journal) -> bool {
    let now = boot_id();
    let rebooted = matches!((&j.boot, &now), (Some(was), Some(is)) if was != is);
    let forgiven = rebooted && j.cut_starts < MAX_FORGIVEN_CUTS;
    if forgiven {
        j.cut_starts += 1;
        log::warn!(
            "the last start of version {} was cut by a reboot (power cut): not a failed start ({} of {MAX_FORGIVEN_CUTS} forgiven)",
            j.version,
            j.cut_starts
        );
    }
    if now.is_some() {
        j.boot = now;
    }
    !forgiven
}
