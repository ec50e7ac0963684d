//! The journaled operations that start from the disk rather than from a package:
//! the recovery of an interrupted update at every start, and the `rollback` command.
//! Both hand a journal to the driver (`driver.rs`).

use super::boot;
use super::driver::{Driver, Outcome};
use super::journal::{self, Journal, Kind, Step};
use super::machine::Event;
use super::report::{Report, Reporter};
use super::slots::{self, Layout};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state_paths::StatePaths;

/// Completes or undoes an interrupted update; run before anything else at every start.
/// What each journal step means at start-up is in `machine.rs`.
pub(crate) fn recover(ctx: &Ctx) -> Result<()> {
    let layout = Layout::new(&ctx.cfg.install.root);
    layout.tidy();
    let paths = StatePaths::new(&ctx.cfg.state_dir);
    let rep = Reporter::new(ctx);
    let mut j = match journal::load(&paths) {
        Ok(j) => j,
        Err(e) => {
            // Atomic writes make this unreachable short of disk corruption; `current`
            // still names a slot that was complete when it was switched to.
            log::error!("{}; dropping it and keeping the active slot", e.chain());
            journal::clear(&paths)?;
            rep.report(Report::Failed(&e));
            return Ok(());
        }
    };
    if let Some(j) = &j {
        rep.report(Report::Target {
            version: Some(&j.version),
            update_id: j.update_id.as_deref(),
        });
        log::warn!(
            "recovering an interrupted {} at step {} (slot {} -> {})",
            if j.kind == Kind::Update {
                "update"
            } else {
                "rollback"
            },
            j.step.as_str(),
            j.from.as_deref().unwrap_or("none"),
            j.target
        );
    }
    let max_boot_attempts = ctx.cfg.updates.max_boot_attempts;
    // The init script started this (factory) agent because the agent the update
    // brought failed to start: that update is not healthy, whatever its services say.
    let event = match &mut j {
        Some(j)
            if j.step == Step::Switched
                && j.kind == Kind::Update
                && boot::agent_failed(&ctx.cfg, &j.target) =>
        {
            Event::Unhealthy(format!(
                "the agent of version {} failed to start; the init script fell back to the factory agent",
                j.version
            ))
        }
        // A start cut by a power cut is not a failed start (docs/updates.md).
        Some(j) if j.step == Step::Switched => Event::Restart {
            max_boot_attempts,
            counted: boot::count_this_start(j),
        },
        _ => Event::Restart {
            max_boot_attempts,
            counted: true,
        },
    };
    match Driver::new(ctx, &rep, j).drive(event)? {
        // The box is back on a good slot: that is a recovery, not a failure of the
        // command that triggered it.
        Outcome::RolledBack(m) => {
            log::warn!("recovery rolled back: {m}");
            Ok(())
        }
        Outcome::Failed(_) => Ok(()),
        o => o.into_result(),
    }
}

/// Switches back to the other slot if it holds a complete installation.
pub(crate) fn rollback(ctx: &Ctx) -> Result<()> {
    let layout = Layout::new(&ctx.cfg.install.root);
    let from = layout
        .active()
        .ok_or_else(|| Error::Refused("no active slot: nothing to roll back from".into()))?;
    let target = slots::other(&from);
    // The update an operator rolls back from is not installed again by the daemon
    // (as one that failed its health check): only a person's `update` brings it back.
    let left = layout.record(&from).and_then(|r| r.update_id);
    if let Some(why) = layout.bad_reason(target) {
        return Err(Error::Refused(format!(
            "slot {target} failed its health check ({why}); it is no rollback target"
        )));
    }
    if !layout.is_complete(target) {
        return Err(Error::Refused(format!(
            "slot {target} holds no complete installation; nothing to roll back to"
        )));
    }
    let j = Journal {
        step: Step::Switching,
        kind: Kind::Rollback,
        from: Some(from),
        target: target.to_string(),
        version: layout.version(target),
        update_id: None,
        attempts: 0,
        reason: None,
        started_at: crate::clock::iso8601(ctx.now()),
        boot: None,
        cut_starts: 0,
    };
    let rep = Reporter::new(ctx);
    rep.report(Report::Target {
        version: Some(&j.version),
        update_id: None,
    });
    Driver::begin(ctx, &rep, j, None, Event::BeginRollback)?.into_result()?;
    if let Some(id) = left {
        let paths = StatePaths::new(&ctx.cfg.state_dir);
        crate::fsutil::atomic_write(&paths.failed_id(), id.as_bytes(), 0o600)?;
    }
    Ok(())
}
