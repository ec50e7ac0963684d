//! A/B updates (docs/protocol.md §2–3, README "Files on disk"): check, download,
//! verify, stage into the inactive slot, switch, health-check, commit or roll back,
//! and recovery of an update a crash interrupted. Design: docs/updates.md.
//!
//! State of this module in `state_dir/update/`: `journal.json` (update in flight),
//! `download.part` / `package.zip` / `download.json` (the package), `failed-id`.

pub mod check;
pub mod download;
pub mod factory;
pub mod journal;
pub mod slots;
pub mod verify;

use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services;
use crate::status::{Status, UpdateState, UpdateStatus};
use journal::{Journal, Kind, Step};
use slots::{Layout, Record};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the staged agent gets to answer `--version`.
const AGENT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent binary a package may carry (self-update).
pub const AGENT_IN_SLOT: &str = "bin/cybersensei-agent";
/// status.json is rewritten every this many downloaded bytes...
const STATUS_EVERY: u64 = 8 << 20;
/// ...but not more often than this: each rewrite fsyncs, and on ext4 (data=ordered)
/// that flushes the partial download's dirty pages too, which stalled a fast
/// download (a 50 MB package took 1.5x as long as curl).
const STATUS_MIN_GAP: Duration = Duration::from_secs(5);

/// What `/update/check` said, as the CLI and status report it.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub available: bool,
    pub current_version: String,
    pub latest_version: Option<String>,
    pub update_id: Option<String>,
    pub changelog: Option<String>,
    pub file_size: Option<u64>,
    /// The real backend's extra facts (required node version, flags, message).
    pub details: check::Details,
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct UpdateReport {
    /// Version now running.
    pub version: String,
    /// Slot now active ("a" or "b").
    pub slot: String,
    /// False when there was nothing to do (already up to date).
    pub installed: bool,
}

/// Where a package came from, for its version and record.
#[derive(Debug, Clone, Default)]
struct Source {
    update_id: Option<String>,
    latest_version: Option<String>,
    sha256: Option<String>,
}

fn dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("update")
}

/// The active slot ("a"/"b", None on a fresh box) and its installed version (on a
/// fresh box, the factory version: `factory`).
pub fn active(cfg: &Config) -> (Option<String>, String) {
    let l = Layout::new(&cfg.install.root);
    match l.active() {
        Some(s) => {
            let v = l.version(&s);
            (Some(s), v)
        }
        None => (None, factory::version(&cfg.install.root)),
    }
}

/// Reports this module's part of status.json (plus version and slot); a failure to
/// write the report is logged, never fatal to the update itself.
fn report(ctx: &Ctx, f: impl FnOnce(&mut UpdateStatus)) {
    let (slot, version) = active(&ctx.cfg);
    let r = Status::modify(&ctx.cfg.state_dir, ctx.now(), |s| {
        f(&mut s.update);
        s.slot = slot;
        s.version = version;
    });
    if let Err(e) = r {
        log::warn!("status.json: {e}");
    }
}

fn set_state(ctx: &Ctx, state: UpdateState) {
    report(ctx, |u| u.state = state);
}

fn fail(ctx: &Ctx, state: UpdateState, e: &Error) {
    let msg = e.to_string();
    log::info!("update: {msg}");
    report(ctx, |u| {
        u.state = state;
        u.last_error = Some(msg);
    });
}

/// Completes or undoes an interrupted update; run before anything else at every start.
pub fn recover(ctx: &Ctx) -> Result<()> {
    let layout = Layout::new(&ctx.cfg.install.root);
    layout.tidy();
    let d = dir(&ctx.cfg);
    let mut j = match journal::load(&d) {
        Ok(Some(j)) => j,
        Ok(None) => {
            settle_stale_state(ctx);
            return Ok(());
        }
        Err(e) => {
            // Atomic writes make this unreachable short of disk corruption; `current`
            // still names a slot that was complete when it was switched to.
            log::error!("{e}; dropping it and keeping the active slot");
            journal::clear(&d)?;
            fail(ctx, UpdateState::Failed, &e);
            return Ok(());
        }
    };
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
    let outcome = match j.step {
        Step::Staging => {
            // The target slot is incomplete and was never active: discard it.
            if let Err(e) = layout.clear(&j.target) {
                log::warn!("clearing slot {}: {e}", j.target);
            }
            journal::clear(&d)?;
            let e = Error::Other(format!(
                "update to {} interrupted while staging slot {}; the active slot was not touched",
                j.version, j.target
            ));
            fail(ctx, UpdateState::Failed, &e);
            Ok(())
        }
        Step::Switching => {
            // `current` may name either slot and services may be stopped: go back.
            roll_back(ctx, &mut j, "interrupted during the switch".into(), false)
        }
        Step::Switched => {
            j.attempts += 1;
            if j.attempts > ctx.cfg.updates.max_boot_attempts {
                let why = format!(
                    "version {} not healthy after {} starts (updates.max_boot_attempts)",
                    j.version, ctx.cfg.updates.max_boot_attempts
                );
                roll_back(ctx, &mut j, why, true)
            } else {
                journal::save(&d, &j)?;
                set_state(ctx, UpdateState::HealthCheck);
                health_and_commit(ctx, &mut j)
            }
        }
        Step::RollingBack => {
            let why = j
                .reason
                .clone()
                .unwrap_or_else(|| "interrupted rollback".into());
            roll_back(ctx, &mut j, why, true)
        }
        Step::Committed => commit(ctx, &j),
    };
    match outcome {
        // The box is back on a good slot: that is a recovery, not a failure of the
        // command that triggered it.
        Err(Error::RolledBack(m)) => {
            log::warn!("recovery rolled back: {m}");
            Ok(())
        }
        other => other,
    }
}

/// Without a journal nothing is in flight (recovery runs under the state lock), so a
/// downloading/verifying state left by a process that died (power cut, kill -9 in the
/// middle of a download) is stale: reset it, or status.json would claim a download
/// forever. The partial download stays and is resumed by the next update.
fn settle_stale_state(ctx: &Ctx) {
    let u = Status::load(&ctx.cfg.state_dir).update;
    if !matches!(
        u.state,
        UpdateState::Downloading
            | UpdateState::Verifying
            | UpdateState::Installing
            | UpdateState::HealthCheck
    ) {
        return;
    }
    let was = format!("{:?}", u.state).to_lowercase();
    log::warn!("update.state was {was} but no update is in flight: interrupted");
    report(ctx, |u| {
        u.state = if u.available {
            UpdateState::Available
        } else {
            UpdateState::Idle
        };
        u.last_error = Some(format!(
            "interrupted while {was} (the agent stopped); the next update resumes"
        ));
    });
}

/// Asks the backend once; records the answer in status.json.
pub fn check(ctx: &Ctx) -> Result<CheckReport> {
    check_inner(ctx).map(|(r, _)| r)
}

fn check_inner(ctx: &Ctx) -> Result<(CheckReport, crate::protocol::UpdateCheck)> {
    let (_, version) = active(&ctx.cfg);
    let tenant = tenant(ctx)?;
    let c = match check::ask(ctx, &tenant, &version) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            report(ctx, |u| u.last_error = Some(format!("check: {msg}")));
            return Err(e);
        }
    };
    let details = check::Details::of(&c, &version);
    let r = CheckReport {
        available: c.update_available,
        current_version: version,
        latest_version: c.latest_version.clone(),
        update_id: c.update_id.clone(),
        changelog: c.changelog.clone(),
        file_size: c.file_size,
        details,
    };
    let now = crate::clock::iso8601(ctx.now());
    let rr = r.clone();
    report(ctx, move |u| {
        u.available = rr.available;
        u.latest_version = rr.latest_version;
        u.changelog = rr.changelog;
        u.update_id = rr.update_id;
        u.file_size = rr.file_size;
        u.last_checked_at = Some(now);
        // A failed or rolled-back update stays visible until the next attempt.
        if !matches!(u.state, UpdateState::RolledBack | UpdateState::Failed) || !rr.available {
            u.state = if rr.available {
                UpdateState::Available
            } else {
                UpdateState::Idle
            };
        }
    });
    Ok((r, c))
}

/// The tenant id the check needs: from the last validation, else validate now.
fn tenant(ctx: &Ctx) -> Result<String> {
    if let Some(t) = crate::license::cached_tenant_id(&ctx.cfg.state_dir) {
        return Ok(t);
    }
    let out = crate::license::validate(ctx)?;
    if let Some(e) = out.to_error() {
        return Err(e);
    }
    crate::license::cached_tenant_id(&ctx.cfg.state_dir)
        .or(out.tenant_id)
        .ok_or_else(|| Error::Other("no tenantId: the license was never validated".into()))
}

/// Check, download, verify and install now.
pub fn update_now(ctx: &Ctx) -> Result<UpdateReport> {
    let (r, c) = check_inner(ctx)?;
    if r.details.node_too_old {
        return Err(Error::Other(format!(
            "no update installed: {}",
            r.details
                .too_old_text(&r.current_version, r.latest_version.as_deref())
        )));
    }
    if !r.available {
        let (slot, version) = active(&ctx.cfg);
        return Ok(UpdateReport {
            version,
            slot: slot.unwrap_or_default(),
            installed: false,
        });
    }
    let pkg = fetch(ctx, &c)?;
    install_package(
        ctx,
        &pkg.path,
        Source {
            update_id: c.update_id.clone(),
            latest_version: c.latest_version.clone(),
            sha256: Some(pkg.sha256.clone()),
        },
        false,
    )
}

/// Downloads the package a check announced (or finds it already downloaded).
fn fetch(ctx: &Ctx, c: &crate::protocol::UpdateCheck) -> Result<download::Downloaded> {
    let want = download::Want {
        update_id: c.update_id.clone().unwrap_or_default(),
        size: c.file_size,
        sha256: check::expected_digest(c).inspect_err(|e| fail(ctx, UpdateState::Failed, e))?,
        version: c.latest_version.clone(),
    };
    let d = dir(&ctx.cfg);
    if let Some(p) = download::ready(&d, &want) {
        log::info!("package {} already downloaded", want.update_id);
        return Ok(p);
    }
    report(ctx, |u| {
        u.state = UpdateState::Downloading;
        u.downloaded_bytes = Some(0);
    });
    let started = ctx.clock.monotonic();
    let next = Cell::new((STATUS_EVERY, started + STATUS_MIN_GAP));
    let on_progress = |n: u64| {
        let (bytes, at) = next.get();
        let now = ctx.clock.monotonic();
        if n >= bytes && now >= at {
            next.set((n + STATUS_EVERY, now + STATUS_MIN_GAP));
            report(ctx, |u| u.downloaded_bytes = Some(n));
        }
    };
    match download::fetch(ctx, &d, &want, &on_progress) {
        Ok(p) => {
            log::info!(
                "downloaded {} ({} bytes, sha256 {}) in {:.3} s",
                want.update_id,
                p.size,
                p.sha256,
                ctx.clock.monotonic().saturating_sub(started).as_secs_f64()
            );
            report(ctx, |u| u.downloaded_bytes = Some(p.size));
            Ok(p)
        }
        Err(Error::Interrupted) => {
            set_state(ctx, UpdateState::Available);
            Err(Error::Interrupted)
        }
        Err(e) => {
            fail(ctx, UpdateState::Failed, &e);
            Err(e)
        }
    }
}

/// Installs a local package file through the same verification and A/B path.
pub fn install_file(ctx: &Ctx, zip: &Path) -> Result<UpdateReport> {
    let meta = std::fs::metadata(zip).map_err(|e| Error::io(format!("{}", zip.display()), e))?;
    let max = ctx.cfg.updates.max_package_size;
    if meta.len() > max {
        let e = Error::PackageRejected(format!(
            "{}: {} bytes exceeds updates.max_package_size ({max})",
            zip.display(),
            meta.len()
        ));
        fail(ctx, UpdateState::Failed, &e);
        return Err(e);
    }
    install_package(ctx, zip, Source::default(), false)
}

/// Switches back to the other slot if it holds a complete installation.
pub fn rollback(ctx: &Ctx) -> Result<UpdateReport> {
    let layout = Layout::new(&ctx.cfg.install.root);
    let from = layout
        .active()
        .ok_or_else(|| Error::Other("no active slot: nothing to roll back from".into()))?;
    let target = slots::other(&from);
    if !layout.is_complete(target) {
        return Err(Error::Other(format!(
            "slot {target} holds no complete installation; nothing to roll back to"
        )));
    }
    let mut j = Journal {
        step: Step::Switching,
        kind: Kind::Rollback,
        from: Some(from),
        target: target.to_string(),
        version: layout.version(target),
        update_id: None,
        attempts: 0,
        reason: None,
        started_at: crate::clock::iso8601(ctx.now()),
    };
    switch(ctx, &mut j, false)
}

/// The daemon's hourly step: check, then download/install as `auto_*` allow.
pub fn daemon_step(ctx: &Ctx) -> Result<()> {
    let u = &ctx.cfg.updates;
    let (r, c) = check_inner(ctx)?;
    if !r.available || !(u.auto_download || u.auto_install) {
        return Ok(());
    }
    let id = c.update_id.clone().unwrap_or_default();
    if failed_id(&ctx.cfg).as_deref() == Some(id.as_str()) {
        log::info!("update {id} failed before; not retrying it automatically (run `update`)");
        return Ok(());
    }
    let pkg = fetch(ctx, &c)?;
    let src = Source {
        update_id: c.update_id.clone(),
        latest_version: c.latest_version.clone(),
        sha256: Some(pkg.sha256.clone()),
    };
    if !u.auto_install {
        // Verified now, so a bad package is known before someone runs `update`.
        set_state(ctx, UpdateState::Verifying);
        let v = verify_package(ctx, &pkg.path);
        match v {
            Ok(_) => {
                log::info!("update {id} downloaded and verified; waiting for `update`");
                set_state(ctx, UpdateState::Available);
                Ok(())
            }
            Err(e) => Err(e),
        }
    } else {
        install_package(ctx, &pkg.path, src, true).map(|_| ())
    }
}

fn failed_id(cfg: &Config) -> Option<String> {
    let data = crate::fsutil::read_bounded(&dir(cfg).join("failed-id"), 256).ok()?;
    Some(String::from_utf8_lossy(&data).trim().to_string())
}

fn verify_package(ctx: &Ctx, path: &Path) -> Result<verify::Package> {
    let key = match &ctx.cfg.updates.public_key {
        Some(k) => Some(verify::parse_public_key(k)?),
        None => None,
    };
    let limits = verify::Limits {
        max_entries: ctx.cfg.updates.max_entries,
        max_unpacked: ctx.cfg.updates.max_unpacked_size,
    };
    verify::verify(path, &limits, key.as_ref()).inspect_err(|e| {
        if matches!(e, Error::PackageRejected(_)) {
            // A refused download is useless: fetch it anew next time.
            download::discard(&dir(&ctx.cfg));
        }
        fail(ctx, UpdateState::Failed, e);
    })
}

/// Verify, stage into the inactive slot, then switch.
/// `hand_over`: the caller (the daemon) will exec a new agent the package brings, and
/// that agent finishes the update (see `switch`).
fn install_package(ctx: &Ctx, path: &Path, src: Source, hand_over: bool) -> Result<UpdateReport> {
    set_state(ctx, UpdateState::Verifying);
    let pkg = verify_package(ctx, path)?;
    let version = pkg
        .manifest_version
        .clone()
        .or_else(|| {
            src.latest_version
                .as_deref()
                .and_then(|v| verify::check_version(v, "latestVersion").ok())
        })
        .or_else(|| pkg.version_file.clone())
        .unwrap_or_else(|| "unknown".into());
    let layout = Layout::new(&ctx.cfg.install.root);
    let staged = stage(ctx, &layout, path, &pkg, &version, &src).inspect_err(|e| {
        fail(ctx, UpdateState::Failed, e);
    })?;
    let mut j = staged;
    switch(ctx, &mut j, hand_over)
}

/// Stages a verified package into the inactive slot; returns the journal, at the
/// step where the slot is complete.
fn stage(
    ctx: &Ctx,
    layout: &Layout,
    path: &Path,
    pkg: &verify::Package,
    version: &str,
    src: &Source,
) -> Result<Journal> {
    layout.ensure()?;
    let from = layout.active();
    let target = from.as_deref().map(slots::other).unwrap_or("a").to_string();
    // Declared sizes plus a block per entry for metadata; the slot being replaced is
    // freed first.
    let need = pkg
        .total
        .saturating_add(pkg.entries.len() as u64 * 4096)
        .saturating_sub(layout.usage(&target));
    download::check_space(&ctx.cfg.state_dir, 0, layout.root(), need)?;
    set_state(ctx, UpdateState::Installing);
    let d = dir(&ctx.cfg);
    let mut j = Journal {
        step: Step::Staging,
        kind: Kind::Update,
        from: from.clone(),
        target: target.clone(),
        version: version.to_string(),
        update_id: src.update_id.clone(),
        attempts: 0,
        reason: None,
        started_at: crate::clock::iso8601(ctx.now()),
    };
    journal::save(&d, &j)?;
    let result = (|| {
        layout.clear(&target)?;
        let slot_dir = layout.slot_dir(&target);
        let mut zip = verify::open(path)?;
        let (files, bytes) =
            slots::extract(&mut zip, pkg, &slot_dir, ctx.cfg.updates.max_unpacked_size)?;
        probe_agent(ctx, &slot_dir)?;
        layout.write_record(
            &target,
            &Record {
                version: version.to_string(),
                installed_at: crate::clock::iso8601(ctx.now()),
                update_id: src.update_id.clone(),
                package_sha256: src.sha256.clone(),
                files,
                bytes,
            },
        )
    })();
    match result {
        Ok(()) => {
            log::info!("staged version {version} in slot {target}");
            j.step = Step::Switching;
            Ok(j)
        }
        Err(Error::Interrupted) => {
            // Left as `staging`: the next start clears the slot.
            Err(Error::Interrupted)
        }
        Err(e) => {
            if let Err(x) = layout.clear(&target) {
                log::warn!("clearing slot {target}: {x}");
            }
            journal::clear(&d)?;
            Err(e)
        }
    }
}

/// Self-update guard: a package carrying the agent must carry one that runs here.
fn probe_agent(ctx: &Ctx, slot_dir: &Path) -> Result<()> {
    let bin = slot_dir.join(AGENT_IN_SLOT);
    if std::fs::symlink_metadata(&bin).is_err() {
        return Ok(());
    }
    let child = std::process::Command::new(&bin)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::PackageRejected(format!(
                "{AGENT_IN_SLOT} in the package cannot run here: {e}"
            ))
        })?;
    match services::wait_bounded(child, ctx.clock, AGENT_PROBE_TIMEOUT) {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package fails `--version` ({st})"
        ))),
        Err(e) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package: `--version` {e}"
        ))),
    }
}

/// Stop, switch `current`, start, health-check; from a journal at `Switching`.
/// With `hand_over`, an update whose slot carries an agent stops at `Switched`: the
/// daemon execs that agent, whose start-up recovery runs the health check and commits
/// (or rolls back after `max_boot_attempts` starts), so a new agent that cannot keep
/// running is never committed.
fn switch(ctx: &Ctx, j: &mut Journal, hand_over: bool) -> Result<UpdateReport> {
    let d = dir(&ctx.cfg);
    let layout = Layout::new(&ctx.cfg.install.root);
    j.step = Step::Switching;
    journal::save(&d, j)?;
    set_state(ctx, UpdateState::Installing);
    let from_dir = j.from.as_deref().map(|s| layout.slot_dir(s));
    if let Err(e) = services::stop_in(&ctx.cfg.services, from_dir.as_deref(), ctx.clock) {
        log::warn!("stopping services: {e}; switching anyway");
    }
    if let Err(e) = layout.switch_to(Some(&j.target)) {
        roll_back(ctx, j, format!("switching current: {e}"), false)?;
    }
    j.step = Step::Switched;
    j.attempts = 1;
    journal::save(&d, j)?;
    set_state(ctx, UpdateState::HealthCheck);
    if hand_over
        && j.kind == Kind::Update
        && layout.slot_dir(&j.target).join(AGENT_IN_SLOT).is_file()
    {
        log::info!(
            "version {} brings a new agent: it health-checks and commits after the restart",
            j.version
        );
    } else {
        health_and_commit(ctx, j)?;
    }
    let (slot, version) = active(&ctx.cfg);
    Ok(UpdateReport {
        version,
        slot: slot.unwrap_or_default(),
        installed: true,
    })
}

/// Starts the target slot's services and checks them: commit or roll back.
fn health_and_commit(ctx: &Ctx, j: &mut Journal) -> Result<()> {
    let layout = Layout::new(&ctx.cfg.install.root);
    let slot_dir = layout.slot_dir(&j.target);
    let s = &ctx.cfg.services;
    let r = services::start_in(s, Some(&slot_dir), ctx.clock)
        .and_then(|_| services::health_in(s, Some(&slot_dir), ctx.clock));
    match r {
        Ok(()) => commit(ctx, j),
        // Still `switched`: the next start runs the health check again.
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => roll_back(ctx, j, format!("version {}: {e}", j.version), true),
    }
}

fn commit(ctx: &Ctx, j: &Journal) -> Result<()> {
    let d = dir(&ctx.cfg);
    let mut j = j.clone();
    j.step = Step::Committed;
    journal::save(&d, &j)?;
    let now = crate::clock::iso8601(ctx.now());
    let kind = j.kind;
    report(ctx, |u| {
        u.state = UpdateState::Idle;
        u.last_error = None;
        if kind == Kind::Update {
            u.available = false;
            u.downloaded_bytes = None;
            u.last_installed_at = Some(now);
        }
    });
    if kind == Kind::Update {
        download::discard(&d);
        let _ = std::fs::remove_file(d.join("failed-id"));
    }
    journal::clear(&d)?;
    log::info!("version {} committed in slot {}", j.version, j.target);
    Ok(())
}

/// Back to `from`: stop the new services, switch back (or remove `current` on a box
/// that had nothing), start the old services. `bad` marks the target slot
/// incomplete so that neither `rollback` nor a retry lands on it again. Always
/// returns `Error::RolledBack`.
fn roll_back(ctx: &Ctx, j: &mut Journal, why: String, bad: bool) -> Result<()> {
    let d = dir(&ctx.cfg);
    let layout = Layout::new(&ctx.cfg.install.root);
    j.step = Step::RollingBack;
    j.reason = Some(why.clone());
    journal::save(&d, j)?;
    log::error!(
        "rolling back to slot {}: {why}",
        j.from.as_deref().unwrap_or("(none)")
    );
    let s = &ctx.cfg.services;
    let target_dir = layout.slot_dir(&j.target);
    if let Err(e) = services::stop_in(s, Some(&target_dir), ctx.clock) {
        log::warn!("stopping the new services: {e}");
    }
    layout.switch_to(j.from.as_deref())?;
    if bad {
        if let Err(e) = layout.invalidate(&j.target) {
            log::warn!("marking slot {} bad: {e}", j.target);
        }
        if let Some(id) = &j.update_id {
            let _ = crate::fsutil::atomic_write(&d.join("failed-id"), id.as_bytes(), 0o600);
        }
    }
    if let Some(from) = &j.from {
        let from_dir = layout.slot_dir(from);
        if let Err(e) = services::start_in(s, Some(&from_dir), ctx.clock) {
            log::error!("restarting the services of slot {from}: {e}");
        }
    }
    journal::clear(&d)?;
    let e = Error::RolledBack(why);
    fail(ctx, UpdateState::RolledBack, &e);
    Err(e)
}
