//! Staging: fills the inactive slot from an inspected package in one pass and
//! records it (the journaled phase's `StageTarget`, performed for `driver.rs`).

use super::hooks;
use super::journal::Journal;
use super::manifest::PackageKind;
use super::slots::{self, Layout, Record};
use super::trust;
use super::verify::{self, Package, Zip};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services;
use std::time::Duration;

/// The agent binary a package may carry (self-update).
pub(crate) const AGENT_IN_SLOT: &str = "bin/cybersensei-agent";
/// How long the staged agent gets to answer `--version`.
const AGENT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A package ready to be staged: inspected, read through `zip` (one descriptor).
pub(crate) struct Staging<'f> {
    pub(crate) zip: Zip<'f>,
    pub(crate) pkg: Package,
    pub(crate) package_sha256: Option<String>,
    /// The caller (the daemon) execs a new agent the package brings, and that agent
    /// finishes the update.
    pub(crate) hand_over: bool,
}

/// Fills the target slot from the package in one pass and records it: a copy of
/// the active slot first for a content package (minus its hooks, minus the
/// package's deletions), then every entry extracted and checked as it is
/// written, `syncfs`, the agent probe, the post-install hook, the record.
pub(crate) fn fill(ctx: &Ctx, layout: &Layout, j: &Journal, st: &mut Staging) -> Result<()> {
    let target = j.target.clone();
    layout.clear(&target)?;
    let slot_dir = layout.slot_dir(&target);
    let over = st.pkg.kind == PackageKind::Content;
    if !over && !st.pkg.deletions().is_empty() {
        log::warn!("a full package lists deletions: ignored (the slot is exactly the package)");
    }
    if over {
        let from = j
            .from
            .as_deref()
            .ok_or_else(|| Error::Other("content package without an active slot".into()))?;
        let src = layout.slot_dir(from);
        let (n, b) = slots::copy_tree(&src, &slot_dir, &slots::NOT_COPIED)?;
        let d = slots::delete_paths(&slot_dir, st.pkg.deletions())?;
        log::info!(
            "copied slot {from} ({n} files, {b} bytes) into slot {target}; {d} paths deleted"
        );
    }
    let (files, bytes) = slots::extract(
        &mut st.zip,
        &st.pkg,
        &slot_dir,
        ctx.cfg.updates.max_unpacked_size,
        over,
    )?;
    if st.pkg.has_path(AGENT_IN_SLOT) {
        probe_agent(ctx, &slot_dir)?;
    }
    // The keys the package hands on, read before any of its code runs.
    let keys = trust::package_keys(&slot_dir, &st.pkg)?;
    let old = j.from.as_deref().map(|s| layout.slot_dir(s));
    hooks::run(
        &slot_dir,
        verify::HOOK_POST_INSTALL,
        old.as_deref(),
        &j.version,
        ctx.clock,
        ctx.cfg.updates.hook_timeout,
    )
    .map_err(|e| match e {
        Error::Interrupted => e,
        e => Error::PackageRejected(format!("install hook: {}", e.chain())),
    })?;
    layout.write_record(
        &target,
        &Record {
            version: j.version.clone(),
            installed_at: crate::clock::iso8601(ctx.now()),
            update_id: j.update_id.clone(),
            package_sha256: st.package_sha256.clone(),
            files,
            bytes,
            kind: Some(st.pkg.kind.as_str().to_string()),
            signed: st.pkg.signed,
            keys: Some(keys),
        },
    )?;
    log::info!(
        "staged version {} ({} package) in slot {target}",
        j.version,
        st.pkg.kind.as_str()
    );
    Ok(())
}

/// Self-update guard: a package carrying the agent must carry one that runs here.
fn probe_agent(ctx: &Ctx, slot_dir: &std::path::Path) -> Result<()> {
    let bin = match hooks::in_slot(slot_dir, AGENT_IN_SLOT) {
        Ok(Some(bin)) => bin,
        Ok(None) => return Ok(()),
        Err(e) => return Err(Error::PackageRejected(e.to_string())),
    };
    // The same cleared environment as hooks: no proxy credentials, no fallback flag;
    // and nothing it starts outlives it.
    let _contain = hooks::Contain::start();
    let child = hooks::package_command(&bin, slot_dir)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::PackageRejected(format!(
                "{AGENT_IN_SLOT} in the package cannot run here: {e}"
            ))
        })?;
    match services::wait_child(child, ctx.clock, AGENT_PROBE_TIMEOUT, services::STOP_GRACE) {
        Ok(st) if st.success() => Ok(()),
        // SIGTERM: not the package's fault; the staging is resumed at the next start.
        Err(services::Abandoned::Stop) => Err(Error::Interrupted),
        Ok(st) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package fails `--version` ({st})"
        ))),
        Err(e) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package: `--version` {e}"
        ))),
    }
}
