//! A/B updates (docs/protocol.md §2–3, docs/reference.md "Files on disk"): check, download,
//! verify, stage into the inactive slot, switch, health-check, commit or roll back,
//! and recovery of an update a crash interrupted. Design: docs/updates.md.
//!
//! State of this module in `state_dir/update/`: `journal.json` (update in flight),
//! `download.part` / `package.zip` / `download.json` (the package), `failed-id`.

pub(crate) mod boot;
pub mod check;
pub mod download;
pub(crate) mod driver;
pub(crate) mod factory;
pub(crate) mod hooks;
pub(crate) mod journal;
pub(crate) mod machine;
pub(crate) mod manifest;
pub mod slots;
pub(crate) mod trust;
pub mod verify;
pub mod version_json;
pub mod versions;
pub mod window;
pub mod zipbound;

use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::status::{Status, UpdateState, UpdateStatus};
use driver::{Driver, Outcome};
use journal::{Journal, Kind, Step};
use machine::Event;
use manifest::PackageKind;
use slots::Layout;
use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
/// The agent binary a package may carry (self-update).
pub(crate) const AGENT_IN_SLOT: &str = "bin/cybersensei-agent";
/// status.json is rewritten every this many downloaded bytes...
const STATUS_EVERY: u64 = 8 << 20;
/// ...but not more often than this: each rewrite fsyncs, and on ext4 (data=ordered)
/// that flushes the partial download's dirty pages too, which stalled a fast
/// download (a 50 MB package took 1.5x as long as curl).
const STATUS_MIN_GAP: Duration = Duration::from_secs(5);

/// What `/update/check` said, as the CLI and status report it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckReport {
    pub(crate) available: bool,
    pub(crate) current_version: String,
    pub(crate) latest_version: Option<String>,
    pub(crate) update_id: Option<String>,
    pub(crate) changelog: Option<String>,
    pub(crate) file_size: Option<u64>,
    /// The real backend's extra facts (required node version, flags, message).
    pub(crate) details: check::Details,
}

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

/// Where a package came from, for its version and record.
#[derive(Debug, Clone, Default)]
struct Source {
    update_id: Option<String>,
    latest_version: Option<String>,
    sha256: Option<String>,
    /// An operator allowed a version lower than the highest installed.
    allow_downgrade: bool,
}

fn dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("update")
}

/// The active slot ("a"/"b", None on a fresh box) and its installed version (on a
/// fresh box, the factory version: `factory`).
pub(crate) fn active(cfg: &Config) -> (Option<String>, String) {
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
/// What each journal step means at start-up is in `machine.rs`.
pub(crate) fn recover(ctx: &Ctx) -> Result<()> {
    let layout = Layout::new(&ctx.cfg.install.root);
    layout.tidy();
    let d = dir(&ctx.cfg);
    let (mut j, step) = match journal::load(&d) {
        Ok(Some(j)) => {
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
            let step = j.step;
            (j, Some(step))
        }
        Ok(None) => (nothing_in_flight(ctx), None),
        Err(e) => {
            // Atomic writes make this unreachable short of disk corruption; `current`
            // still names a slot that was complete when it was switched to.
            log::error!("{e}; dropping it and keeping the active slot");
            journal::clear(&d)?;
            fail(ctx, UpdateState::Failed, &e);
            return Ok(());
        }
    };
    let max_boot_attempts = ctx.cfg.updates.max_boot_attempts;
    // The init script started this (factory) agent because the agent the update
    // brought failed to start: that update is not healthy, whatever its services say.
    let event = if step == Some(Step::Switched)
        && j.kind == Kind::Update
        && boot::agent_failed(&ctx.cfg, &j.target)
    {
        Event::Unhealthy(format!(
            "the agent of version {} failed to start; the init script fell back to the factory agent",
            j.version
        ))
    } else {
        // A start cut by a power cut is not a failed start (docs/updates.md).
        let counted = step != Some(Step::Switched) || boot::count_this_start(&mut j);
        Event::Restart {
            max_boot_attempts,
            counted,
        }
    };
    match Driver::new(ctx, j, step).drive(event)? {
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

/// The journal stand-in when none is on disk (only `SettleStatus` reads it).
fn nothing_in_flight(ctx: &Ctx) -> Journal {
    Journal {
        step: Step::Staging,
        kind: Kind::Update,
        from: None,
        target: String::new(),
        version: String::new(),
        update_id: None,
        attempts: 0,
        reason: None,
        started_at: crate::clock::iso8601(ctx.now()),
        boot: None,
        cut_starts: 0,
    }
}

/// Without a journal nothing is in flight (recovery runs under the state lock), so a
/// downloading/verifying state left by a process that died (power cut, kill -9 in the
/// middle of a download) is stale: reset it, or status.json would claim a download
/// forever. The partial download stays and is resumed by the next update.
pub(crate) fn settle_stale_state(ctx: &Ctx) {
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
pub(crate) fn check(ctx: &Ctx) -> Result<CheckReport> {
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
        if !rr.available {
            // Nothing waits any more: what described the waiting package goes.
            u.deferred = None;
            u.breaking = None;
            u.security_update = None;
        }
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
    // Say why a check talks to the validate URL: an operator running `check-update` on
    // a fresh box would otherwise read an error about a URL they did not ask for.
    let first = |e: Error| {
        match e {
        Error::Unreachable { message, source } => Error::Unreachable {
            message: format!(
                "this box has never validated its license, and the update check needs the tenant id a validation gives: {message}"
            ),
            source,
        },
        e => e,
    }
    };
    let out = crate::license::validate(ctx).map_err(first)?;
    if let Some(e) = out.to_error() {
        return Err(first(e));
    }
    crate::license::cached_tenant_id(&ctx.cfg.state_dir)
        .or(out.tenant_id)
        .ok_or_else(|| Error::Other("no tenantId: the license was never validated".into()))
}

/// Check, download, verify and install now (an operator's `update`: whatever
/// `auto_*`, the install window or `breaking` say).
pub(crate) fn update_now(ctx: &Ctx) -> Result<UpdateReport> {
    let (r, c) = check_inner(ctx)?;
    if r.details.node_too_old {
        return Err(Error::Other(format!(
            "no update installed: {}",
            r.details
                .too_old_text(&r.current_version, r.latest_version.as_deref())
        )));
    }
    if !r.available {
        return Ok(report_now(ctx, false));
    }
    let (file, src) = downloaded(ctx, &c)?;
    let (zip, p) = inspect(ctx, &file, &src)?;
    install(ctx, zip, p, src, false)
}

/// The package a check announced, downloaded (or found already downloaded) and
/// opened, with what the check said about it.
fn downloaded(ctx: &Ctx, c: &crate::protocol::UpdateCheck) -> Result<(File, Source)> {
    let pkg = fetch(ctx, c)?;
    let file = open_package(ctx, &pkg.path)?;
    let src = Source {
        update_id: c.update_id.clone(),
        latest_version: c.latest_version.clone(),
        sha256: Some(pkg.sha256),
        allow_downgrade: false,
    };
    Ok((file, src))
}

/// Downloads the package a check announced (or finds it already downloaded).
fn fetch(ctx: &Ctx, c: &crate::protocol::UpdateCheck) -> Result<download::Downloaded> {
    // An announced downgrade is refused before a byte is downloaded (the package
    // would be refused anyway, and the daemon would fetch it again every hour).
    if let Some(v) = &c.latest_version {
        versions::check(&ctx.cfg, v, false).inspect_err(|e| fail(ctx, UpdateState::Failed, e))?;
    }
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

/// Installs a local package file through the same verification and A/B path. The
/// file is first copied into `state_dir` (a file only the agent can write, unlinked
/// at once so nothing is left behind): verification and extraction then read that
/// one descriptor, so the file cannot be swapped between the two.
/// `allow_downgrade`: `install --allow-downgrade` (a version lower than the highest
/// installed is refused otherwise).
pub(crate) fn install_file(ctx: &Ctx, zip: &Path, allow_downgrade: bool) -> Result<UpdateReport> {
    let owned = own_copy(ctx, zip).inspect_err(|e| fail(ctx, UpdateState::Failed, e))?;
    let src = Source {
        allow_downgrade,
        ..Source::default()
    };
    let (z, p) = inspect(ctx, &owned, &src)?;
    install(ctx, z, p, src, false)
}

fn own_copy(ctx: &Ctx, zip: &Path) -> Result<File> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::OpenOptionsExt;
    let shown = zip.display();
    let mut from = File::open(zip).map_err(|e| Error::io(format!("opening {shown}"), e))?;
    let max = ctx.cfg.updates.max_package_size;
    let len = from
        .metadata()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?
        .len();
    if len > max {
        return Err(Error::PackageRejected(format!(
            "{shown}: {len} bytes exceeds updates.max_package_size ({max})"
        )));
    }
    let d = dir(&ctx.cfg);
    crate::fsutil::ensure_dir(&d, 0o700)?;
    download::check_space(&ctx.cfg.state_dir, len, &ctx.cfg.install.root, 0)?;
    let tmp = d.join(format!("install-{}.zip", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut own = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let _ = std::fs::remove_file(&tmp);
    let n = std::io::copy(&mut (&mut from).take(max + 1), &mut own)
        .map_err(|e| Error::io(format!("copying {shown} into {}", d.display()), e))?;
    if n > max {
        return Err(Error::PackageRejected(format!(
            "{shown}: more than updates.max_package_size ({max}) bytes"
        )));
    }
    own.rewind()
        .map_err(|e| Error::io(format!("copying {shown}"), e))?;
    Ok(own)
}

/// Switches back to the other slot if it holds a complete installation.
pub(crate) fn rollback(ctx: &Ctx) -> Result<UpdateReport> {
    let layout = Layout::new(&ctx.cfg.install.root);
    let from = layout
        .active()
        .ok_or_else(|| Error::Other("no active slot: nothing to roll back from".into()))?;
    let target = slots::other(&from);
    if let Some(why) = layout.bad_reason(target) {
        return Err(Error::Other(format!(
            "slot {target} failed its health check ({why}); it is no rollback target"
        )));
    }
    if !layout.is_complete(target) {
        return Err(Error::Other(format!(
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
    Driver::new(ctx, j, None)
        .drive(Event::BeginRollback)?
        .into_result()?;
    Ok(report_now(ctx, true))
}

/// The daemon's hourly step: check, then download/install as `auto_*` allow. An
/// automatic install also waits for an operator when the package is `breaking`,
/// and for `updates.install_window` (a `securityUpdate` may skip the window when
/// `updates.security_outside_window` says so); meanwhile the package waits verified.
pub(crate) fn daemon_step(ctx: &Ctx) -> Result<()> {
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
    let (file, src) = downloaded(ctx, &c)?;
    let (mut zip, p) = inspect(ctx, &file, &src)?;
    let info = p.info.as_ref();
    let wait = if !u.auto_install {
        Some("auto_install is off: waiting for `update`".to_string())
    } else if info.is_some_and(|i| i.breaking) {
        Some("breaking update: installed only by an operator's `update`".to_string())
    } else {
        outside_window(ctx, info.is_some_and(|i| i.security_update))
    };
    let Some(why) = wait else {
        return install(ctx, zip, p, src, true).map(|_| ());
    };
    // Verified now (every entry's data), so a bad package is known before it is due.
    verify::scan_data(&mut zip, &p).inspect_err(|e| rejected(ctx, e))?;
    log::info!("update {id} downloaded and verified; {why}");
    report(ctx, |u| {
        u.state = UpdateState::Available;
        u.deferred = Some(why);
    });
    Ok(())
}

/// Why an automatic install must wait for `updates.install_window`, if it must.
fn outside_window(ctx: &Ctx, security: bool) -> Option<String> {
    let u = &ctx.cfg.updates;
    let w = u.install_window.as_deref()?;
    let win = window::Window::parse(w).ok()?;
    if security && u.security_outside_window {
        return None;
    }
    let minute = window::local_minute(ctx.now());
    if win.contains(minute) {
        None
    } else {
        Some(format!(
            "outside updates.install_window ({w}, local time): installs inside it"
        ))
    }
}

fn failed_id(cfg: &Config) -> Option<String> {
    let data = crate::fsutil::read_bounded(&dir(cfg).join("failed-id"), 256).ok()?;
    Some(String::from_utf8_lossy(&data).trim().to_string())
}

fn open_package(ctx: &Ctx, path: &Path) -> Result<File> {
    File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
        .inspect_err(|e| fail(ctx, UpdateState::Failed, e))
}

/// A refused package: reported, and a refused download is useless (fetched anew).
fn rejected(ctx: &Ctx, e: &Error) {
    if matches!(e, Error::PackageRejected(_)) {
        download::discard(&dir(&ctx.cfg));
    }
    fail(ctx, UpdateState::Failed, e);
}

/// Everything but the files' data (checked while extracted, or by `scan_data`),
/// then what `version.json` demands of this box. status.json shows `breaking` and
/// `securityUpdate` from then on.
fn inspect<'f>(
    ctx: &Ctx,
    file: &'f File,
    src: &Source,
) -> Result<(verify::Zip<'f>, verify::Package)> {
    let trust = trust::load(&ctx.cfg).inspect_err(|e| rejected(ctx, e))?;
    if trust.required && trust.keys.is_empty() {
        let e = trust::no_key_error(&trust);
        rejected(ctx, &e);
        return Err(e);
    }
    if !trust.required {
        log::warn!("installing without a signature check: updates.public_key is not set (docs/security.md)");
    }
    let limits = verify::Limits {
        max_entries: ctx.cfg.updates.max_entries,
        max_unpacked: ctx.cfg.updates.max_unpacked_size,
    };
    let (zip, p) = verify::inspect(file, &limits, &trust.keys).inspect_err(|e| rejected(ctx, e))?;
    // One status write for both (each rewrite fsyncs): the inspection reads only the
    // central directory and a few small entries.
    let flags = p.info.as_ref().map(|i| (i.breaking, i.security_update));
    report(ctx, |u| {
        u.state = UpdateState::Verifying;
        if let Some((b, s)) = flags {
            u.breaking = Some(b);
            u.security_update = Some(s);
        }
    });
    if let Some(info) = &p.info {
        let (_, installed) = active(&ctx.cfg);
        let facts = version_json::Facts {
            arch: version_json::box_arch(),
            installed: &installed,
            latest: src.latest_version.as_deref(),
            manifest: p.manifest_version.as_deref(),
        };
        version_json::check(info, &facts).inspect_err(|e| rejected(ctx, e))?;
    }
    // The signed manifest names the version announced; never lower than installed.
    versions::bind(src.latest_version.as_deref(), p.manifest_version.as_deref())
        .and_then(|_| versions::check(&ctx.cfg, &package_version(&p, src), src.allow_downgrade))
        .inspect_err(|e| rejected(ctx, e))?;
    Ok((zip, p))
}

/// The version a package installs: its manifest's, else its `version.json`'s, else
/// the check's `latestVersion`, else its `VERSION` file's.
fn package_version(p: &verify::Package, src: &Source) -> String {
    p.manifest_version
        .clone()
        .or_else(|| {
            p.info
                .as_ref()
                .and_then(|i| manifest::check_version(&i.version, "version.json").ok())
        })
        .or_else(|| {
            src.latest_version
                .as_deref()
                .and_then(|v| manifest::check_version(v, "latestVersion").ok())
        })
        .or_else(|| p.version_file.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// Stages an inspected package into the inactive slot, then switches (the state
/// machine's `Begin`). `hand_over`: the caller (the daemon) will exec a new agent
/// the package brings, and that agent finishes the update.
fn install(
    ctx: &Ctx,
    zip: verify::Zip,
    p: verify::Package,
    src: Source,
    hand_over: bool,
) -> Result<UpdateReport> {
    let version = package_version(&p, &src);
    let layout = Layout::new(&ctx.cfg.install.root);
    let from = layout.active();
    let prepared = (|| {
        layout.ensure()?;
        if p.kind == PackageKind::Content && from.is_none() {
            return Err(Error::PackageRejected(
                "a content package applies on top of an installation, and this box has none".into(),
            ));
        }
        let target = from.as_deref().map(slots::other).unwrap_or("a").to_string();
        // Declared sizes plus a block per entry for metadata (plus the copy of the
        // active slot for a content package); the slot being replaced is freed first.
        let copy = match (&from, p.kind) {
            (Some(f), PackageKind::Content) => layout.usage(f),
            _ => 0,
        };
        let need = p
            .total
            .saturating_add(p.entries.len() as u64 * 4096)
            .saturating_add(copy)
            .saturating_sub(layout.usage(&target));
        download::check_space(&ctx.cfg.state_dir, 0, layout.root(), need)?;
        Ok(target)
    })();
    let target = prepared.inspect_err(|e| rejected(ctx, e))?;
    let j = Journal {
        step: Step::Staging,
        kind: Kind::Update,
        from,
        target,
        version,
        update_id: src.update_id.clone(),
        attempts: 0,
        reason: None,
        started_at: crate::clock::iso8601(ctx.now()),
        boot: boot::boot_id(),
        cut_starts: 0,
    };
    let staging = driver::Staging {
        zip,
        pkg: p,
        package_sha256: src.sha256.clone(),
    };
    let outcome = Driver::new(ctx, j, None)
        .with_staging(staging, hand_over)
        .drive(Event::Begin)?;
    if let Outcome::Failed(Error::PackageRejected(_)) = &outcome {
        download::discard(&dir(&ctx.cfg));
    }
    outcome.into_result()?;
    Ok(report_now(ctx, true))
}

fn report_now(ctx: &Ctx, installed: bool) -> UpdateReport {
    let (slot, version) = active(&ctx.cfg);
    UpdateReport {
        version,
        slot: slot.unwrap_or_default(),
        installed,
    }
}
