//! A/B updates (docs/protocol.md §2–3, docs/reference.md "Files on disk"): check, download,
//! verify, stage into the inactive slot, switch, health-check, commit or roll back,
//! and recovery of an update a crash interrupted. Design: docs/updates.md.
//!
//! This file is the façade the commands and the daemon call. Behind it:
//! `pipeline.rs` runs check → download → inspect → install; `driver.rs` performs the
//! journaled phase the state machine (`machine.rs`) decides; `recover.rs` starts
//! that phase from the disk (recovery, `rollback`); `report.rs` is the one writer of
//! status.json's `update` section. Files: `crate::state_paths`.

pub(crate) mod boot;
pub mod check;
pub mod checksum;
pub(crate) mod downgrade;
pub mod download;
pub(crate) mod driver;
pub(crate) mod factory;
pub(crate) mod hooks;
pub(crate) mod inspect;
pub(crate) mod journal;
pub(crate) mod machine;
pub(crate) mod manifest;
pub(crate) mod pipeline;
pub(crate) mod recover;
pub(crate) mod report;
pub mod slots;
pub(crate) mod stage;
pub(crate) mod trust;
pub mod verify;
pub mod version;
pub mod version_json;
/// The install window lives below the config that holds it (`crate::window`).
pub use crate::window;
pub mod zipbound;

use crate::context::Ctx;
use crate::error::Result;
use download::{Parked, Session};
use pipeline::Done;
use std::path::Path;
use std::time::Duration;

pub(crate) use check::CheckReport;
pub(crate) use factory::active;
pub(crate) use recover::recover;
pub(crate) use stage::AGENT_IN_SLOT;

/// What an install did.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateReport {
    /// Version now running.
    pub(crate) version: String,
    /// Slot now active ("a" or "b").
    pub(crate) slot: String,
    /// False when there was nothing to do (already up to date).
    pub(crate) installed: bool,
}

impl UpdateReport {
    /// What the box runs now.
    pub(crate) fn now(ctx: &Ctx, installed: bool) -> UpdateReport {
        let (slot, version) = factory::active(&ctx.cfg);
        UpdateReport {
            version,
            slot: slot.unwrap_or_default(),
            installed,
        }
    }
}

/// Asks the backend once; records the answer in status.json.
pub(crate) fn check(ctx: &Ctx) -> Result<CheckReport> {
    pipeline::check_once(ctx)
}

/// Check, download, verify and install now (an operator's `update`: whatever
/// `auto_*`, the install window or `breaking` say).
pub(crate) fn update_now(ctx: &Ctx) -> Result<UpdateReport> {
    let mut parked = None;
    let session = Session {
        parked: &mut parked,
        pause_at: None,
    };
    let done = pipeline::update_now(ctx, session, None)?;
    Ok(UpdateReport::now(ctx, done == Done::Installed))
}

/// Installs a local package file through the same verification and A/B path
/// (`allow_downgrade`: `install --allow-downgrade`).
pub(crate) fn install_file(ctx: &Ctx, zip: &Path, allow_downgrade: bool) -> Result<UpdateReport> {
    pipeline::install_local(ctx, zip, allow_downgrade)?;
    Ok(UpdateReport::now(ctx, true))
}

/// Switches back to the other slot if it holds a complete installation.
pub(crate) fn rollback(ctx: &Ctx) -> Result<UpdateReport> {
    recover::rollback(ctx)?;
    Ok(UpdateReport::now(ctx, true))
}

/// The daemon's update session: what outlives one hourly step (a paused download's
/// open stream, on a server that cannot resume).
#[derive(Default)]
pub(crate) struct Updater {
    parked: Option<Parked>,
}

impl Updater {
    /// The daemon's hourly step (`pipeline::daemon_step`). A download pauses at
    /// `pause_at` (monotonic: when telemetry or revalidation falls due), its work
    /// kept, and returns `Error::Interrupted`; the next step resumes it.
    pub(crate) fn step(&mut self, ctx: &Ctx, pause_at: Duration) -> Result<()> {
        let session = Session {
            parked: &mut self.parked,
            pause_at: Some(pause_at),
        };
        pipeline::daemon_step(ctx, session).map(|_| ())
    }

    /// The admin API's apply: [`update_now`] for the update `update_id` only (what
    /// the page showed), pausing at `pause_at` like [`Updater::step`].
    pub(crate) fn apply(
        &mut self,
        ctx: &Ctx,
        update_id: &str,
        pause_at: Duration,
    ) -> Result<UpdateReport> {
        let session = Session {
            parked: &mut self.parked,
            pause_at: Some(pause_at),
        };
        let done = pipeline::update_now(ctx, session, Some(update_id))?;
        Ok(UpdateReport::now(ctx, done == Done::Installed))
    }
}
