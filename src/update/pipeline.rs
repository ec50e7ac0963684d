//! The update pipeline: check → download → inspect → install. Each step is a
//! function returning what the next one needs, or a [`Stop`] that says how its
//! failure is reported; [`stopped`] is the one place that reports it (through
//! `report.rs`). A run ends in a [`Done`]. The journaled phase the install starts
//! (staging, switch, health check, commit or rollback) is `driver.rs`.

use super::check::{self, CheckReport};
use super::download::{self, Session};
use super::driver::{Driver, Outcome, Staging};
use super::journal::{Journal, Kind, Step};
use super::machine::Event;
use super::manifest::{self, PackageKind};
use super::report::{Report, Reporter};
use super::slots::{self, Layout};
use super::{checksum, downgrade, factory, trust, verify, version_json};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::UpdateCheck;
use crate::state_paths::StatePaths;
use crate::window;
use std::fs::File;
use std::path::Path;

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

/// How a run of the pipeline ended, short of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// Nothing to install (none newer, or the daemon may not fetch it).
    Nothing,
    /// The daemon does not retry by itself an update that failed before.
    NotRetried,
    /// Downloaded and verified; the install waits, for this reason.
    Deferred(String),
    /// Installed and committed, or handed over to the agent the package brings.
    Installed,
}

/// Why the pipeline stopped, by how it is reported ([`stopped`]).
enum Stop {
    /// Not reported here: before the check (the tenant id), or by the journaled
    /// phase itself.
    Quiet(Error),
    /// The check failed: `lastError`, the state unchanged.
    Check(Error),
    /// A download paused or stopped by a signal: the update stays available.
    Paused,
    /// The update failed.
    Failed(Error),
    /// The package was refused (a refused download is useless: fetched anew).
    Rejected(Error),
}

/// Runs `steps` with a reporter; a [`Stop`] is reported ([`stopped`]) and becomes
/// the error the command or daemon step returns.
fn run<T>(ctx: &Ctx, steps: impl FnOnce(&Reporter) -> std::result::Result<T, Stop>) -> Result<T> {
    let rep = Reporter::new(ctx);
    steps(&rep).map_err(|s| stopped(&rep, &StatePaths::new(&ctx.cfg.state_dir), s))
}

/// Reports `stop` (the one place a failure before the journaled phase is); the
/// error to return.
fn stopped(rep: &Reporter, paths: &StatePaths, stop: Stop) -> Error {
    match stop {
        Stop::Quiet(e) => e,
        Stop::Check(e) => {
            rep.report(Report::CheckFailed(&e));
            e
        }
        Stop::Paused => {
            rep.report(Report::Paused);
            Error::Interrupted
        }
        Stop::Failed(e) => {
            rep.report(Report::Failed(&e));
            e
        }
        Stop::Rejected(e) => {
            if matches!(e, Error::PackageRejected(_)) {
                download::discard(paths);
            }
            rep.report(Report::Failed(&e));
            e
        }
    }
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

impl Source {
    /// A local package file (`install`).
    fn local(allow_downgrade: bool) -> Source {
        Source {
            allow_downgrade,
            ..Source::default()
        }
    }
}

/// Asks the backend once; records the answer in status.json.
pub(crate) fn check_once(ctx: &Ctx) -> Result<CheckReport> {
    run(ctx, |rep| check(ctx, rep).map(|(r, _)| r))
}

/// Check, download, verify and install now (an operator's `update`: whatever
/// `auto_*`, the install window or `breaking` say). `offered`: only while the
/// check still offers that update id (the admin API's apply: what the page showed).
pub(crate) fn update_now(ctx: &Ctx, session: Session, offered: Option<&str>) -> Result<Done> {
    run(ctx, |rep| update_steps(ctx, rep, session, offered))
}

/// The daemon's hourly step: check, then download/install as `auto_*` allow. An
/// automatic install also waits for an operator when the package is `breaking`,
/// and for `updates.install_window` (a `securityUpdate` may skip the window when
/// `updates.security_outside_window` says so); meanwhile the package waits verified.
pub(crate) fn daemon_step(ctx: &Ctx, session: Session) -> Result<Done> {
    run(ctx, |rep| daemon_steps(ctx, rep, session))
}

/// Installs a local package file through the same verification and A/B path. The
/// file is first copied into `state_dir` (a file only the agent can write, unlinked
/// at once so nothing is left behind): verification and extraction then read that
/// one descriptor, so the file cannot be swapped between the two.
/// `allow_downgrade`: `install --allow-downgrade` (a version lower than the highest
/// installed is refused otherwise).
pub(crate) fn install_local(ctx: &Ctx, zip: &Path, allow_downgrade: bool) -> Result<Done> {
    run(ctx, |rep| {
        rep.report(Report::Target {
            version: None,
            update_id: None,
        });
        let own = own_copy(ctx, zip).map_err(Stop::Failed)?;
        let src = Source::local(allow_downgrade);
        let (z, p) = inspect(ctx, rep, &own, &src)?;
        install(ctx, rep, z, p, src, false)
    })
}

/// Asks the backend once; records the answer.
fn check(ctx: &Ctx, rep: &Reporter) -> std::result::Result<(CheckReport, UpdateCheck), Stop> {
    let (_, version) = factory::active(&ctx.cfg);
    let tenant = tenant(ctx).map_err(Stop::Quiet)?;
    let c = check::ask(ctx, &tenant, &version).map_err(Stop::Check)?;
    let r = CheckReport::of(&c, version);
    rep.report(Report::Checked(&r));
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
    let mut out = crate::license::validate(ctx).map_err(first)?;
    let tenant = out.tenant_id.take();
    if let Some(e) = out.into_error() {
        return Err(first(e));
    }
    crate::license::cached_tenant_id(&ctx.cfg.state_dir)
        .or(tenant)
        .ok_or_else(|| Error::NeverValidated("no tenantId: the license was never validated".into()))
}

/// [`update_now`]'s steps.
fn update_steps(
    ctx: &Ctx,
    rep: &Reporter,
    session: Session,
    offered: Option<&str>,
) -> std::result::Result<Done, Stop> {
    let (r, c) = check(ctx, rep)?;
    if let Some(want) = offered {
        if !r.available || r.update_id.as_deref() != Some(want) {
            return Err(Stop::Quiet(Error::Withdrawn(format!(
                "update {want} is no longer on offer (now: {})",
                r.update_id.as_deref().unwrap_or("none")
            ))));
        }
    }
    if r.details.node_too_old {
        return Err(Stop::Quiet(Error::Refused(format!(
            "no update installed: {}",
            r.details
                .too_old_text(&r.current_version, r.latest_version.as_deref())
        ))));
    }
    if !r.available {
        return Ok(Done::Nothing);
    }
    let (file, src) = download(ctx, rep, session, &c)?;
    let (zip, p) = inspect(ctx, rep, &file, &src)?;
    install(ctx, rep, zip, p, src, false)
}

/// [`daemon_step`]'s steps.
fn daemon_steps(ctx: &Ctx, rep: &Reporter, session: Session) -> std::result::Result<Done, Stop> {
    let u = &ctx.cfg.updates;
    let (r, c) = check(ctx, rep)?;
    if !r.available || !(u.auto_download || u.auto_install) {
        return Ok(Done::Nothing);
    }
    let id = c.update_id.clone().unwrap_or_default();
    if failed_id(&ctx.cfg.state_dir).as_deref() == Some(id.as_str()) {
        log::info!("update {id} failed or was rolled back before; not retrying it automatically (run `update`)");
        return Ok(Done::NotRetried);
    }
    let (file, src) = download(ctx, rep, session, &c)?;
    let (mut zip, p) = inspect(ctx, rep, &file, &src)?;
    let info = p.info.as_ref();
    let wait = if !u.auto_install {
        Some("auto_install is off: waiting for `update`".to_string())
    } else if info.is_some_and(|i| i.breaking) {
        Some("breaking update: installed only by an operator's `update`".to_string())
    } else {
        outside_window(ctx, info.is_some_and(|i| i.security_update))
    };
    let Some(why) = wait else {
        return install(ctx, rep, zip, p, src, true);
    };
    // Verified now (every entry's data), so a bad package is known before it is due.
    verify::scan_data(&mut zip, &p).map_err(Stop::Rejected)?;
    log::info!("update {id} downloaded and verified; {why}");
    rep.report(Report::Deferred(why.clone()));
    Ok(Done::Deferred(why))
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
    let paths = StatePaths::new(&ctx.cfg.state_dir);
    let d = paths.update();
    crate::fsutil::ensure_dir(&d, 0o700)?;
    download::check_space(&ctx.cfg.state_dir, len, &ctx.cfg.install.root, 0)?;
    let tmp = paths.install_copy(std::process::id());
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

/// Why an automatic install must wait for `updates.install_window`, if it must.
fn outside_window(ctx: &Ctx, security: bool) -> Option<String> {
    let u = &ctx.cfg.updates;
    let win = u.install_window?;
    if security && u.security_outside_window {
        return None;
    }
    let minute = window::local_minute(ctx.now());
    if win.contains(minute) {
        None
    } else {
        Some(format!(
            "outside updates.install_window ({win}, local time): installs inside it"
        ))
    }
}

fn failed_id(state_dir: &Path) -> Option<String> {
    let data = crate::fsutil::read_bounded(&StatePaths::new(state_dir).failed_id(), 256).ok()?;
    Some(String::from_utf8_lossy(&data).trim().to_string())
}

/// The package a check announced, downloaded (or found already downloaded) and
/// opened, with what the check said about it.
fn download(
    ctx: &Ctx,
    rep: &Reporter,
    session: Session,
    c: &UpdateCheck,
) -> std::result::Result<(File, Source), Stop> {
    // An announced downgrade is refused before a byte is downloaded (the package
    // would be refused anyway, and the daemon would fetch it again every hour).
    if let Some(v) = &c.latest_version {
        downgrade::check(&ctx.cfg, v, false).map_err(Stop::Failed)?;
    }
    let want = download::Want {
        update_id: c.update_id.clone().unwrap_or_default(),
        size: c.file_size,
        sha256: checksum::expected_digest(c).map_err(Stop::Failed)?,
        version: c.latest_version.clone(),
    };
    // What the live progress names (history records of a failure too).
    rep.report(Report::Target {
        version: want.version.as_deref(),
        update_id: Some(&want.update_id),
    });
    let paths = StatePaths::new(&ctx.cfg.state_dir);
    let pkg = match download::ready(&paths, &want) {
        Some(p) => {
            log::info!("package {} already downloaded", want.update_id);
            p
        }
        None => {
            rep.report(Report::Downloading { size: want.size });
            let started = ctx.clock.monotonic();
            let p = match download::fetch(ctx, &paths, &want, session, &|n| {
                rep.report(Report::Progress(n))
            }) {
                Ok(p) => p,
                Err(Error::Interrupted) => return Err(Stop::Paused),
                Err(e) => return Err(Stop::Failed(e)),
            };
            log::info!(
                "downloaded {} ({} bytes, sha256 {}) in {:.3} s",
                want.update_id,
                p.size,
                p.sha256,
                ctx.clock.monotonic().saturating_sub(started).as_secs_f64()
            );
            rep.report(Report::Downloaded(p.size));
            p
        }
    };
    let file = File::open(&pkg.path)
        .map_err(|e| Stop::Failed(Error::io(format!("opening {}", pkg.path.display()), e)))?;
    let src = Source {
        update_id: c.update_id.clone(),
        latest_version: c.latest_version.clone(),
        sha256: Some(pkg.sha256),
        allow_downgrade: false,
    };
    Ok((file, src))
}

/// Everything but the files' data (checked while extracted, or by `scan_data`),
/// then what `version.json` demands of this box. status.json shows `breaking` and
/// `securityUpdate` from then on.
fn inspect<'f>(
    ctx: &Ctx,
    rep: &Reporter,
    file: &'f File,
    src: &Source,
) -> std::result::Result<(verify::Zip<'f>, verify::Package), Stop> {
    let trust = trust::load(&ctx.cfg).map_err(Stop::Rejected)?;
    if trust.required && trust.keys.is_empty() {
        return Err(Stop::Rejected(trust::no_key_error(&trust)));
    }
    if !trust.required {
        log::warn!("installing without a signature check: updates.public_key is not set (docs/security.md)");
    }
    let limits = verify::Limits {
        max_entries: ctx.cfg.updates.max_entries,
        max_unpacked: ctx.cfg.updates.max_unpacked_size,
    };
    let (zip, p) = verify::inspect(file, &limits, &trust.keys).map_err(Stop::Rejected)?;
    // One status write for both (each rewrite fsyncs): the inspection reads only the
    // central directory and a few small entries.
    rep.report(Report::Verifying {
        kind: p.kind.as_str(),
        breaking_security: p.info.as_ref().map(|i| (i.breaking, i.security_update)),
    });
    if let Some(info) = &p.info {
        let (_, installed) = factory::active(&ctx.cfg);
        let facts = version_json::Facts {
            arch: version_json::box_arch(),
            installed: &installed,
            latest: src.latest_version.as_deref(),
            manifest: p.manifest_version.as_deref(),
        };
        version_json::check(info, &facts).map_err(Stop::Rejected)?;
    }
    // The signed manifest names the version announced; never lower than installed.
    downgrade::bind(src.latest_version.as_deref(), p.manifest_version.as_deref())
        .and_then(|_| downgrade::check(&ctx.cfg, &package_version(&p, src), src.allow_downgrade))
        .map_err(Stop::Rejected)?;
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
    rep: &Reporter,
    zip: verify::Zip,
    p: verify::Package,
    src: Source,
    hand_over: bool,
) -> std::result::Result<Done, Stop> {
    let version = package_version(&p, &src);
    rep.report(Report::Target {
        version: Some(&version),
        update_id: src.update_id.as_deref(),
    });
    let layout = Layout::new(&ctx.cfg.install.root);
    let from = layout.active();
    let target = target_slot(ctx, &layout, from.as_deref(), &p).map_err(Stop::Rejected)?;
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
        boot: super::boot::boot_id(),
        cut_starts: 0,
    };
    let staging = Staging {
        zip,
        pkg: p,
        package_sha256: src.sha256.clone(),
        hand_over,
    };
    // The journaled phase reports its own outcome.
    match Driver::begin(ctx, rep, j, Some(staging), Event::Begin).map_err(Stop::Quiet)? {
        Outcome::Failed(e @ Error::PackageRejected(_)) => {
            download::discard(&StatePaths::new(&ctx.cfg.state_dir));
            Err(Stop::Quiet(e))
        }
        o => o
            .into_result()
            .map(|()| Done::Installed)
            .map_err(Stop::Quiet),
    }
}

/// The slot to install into, once the package is known to fit: declared sizes plus a
/// block per entry for metadata (plus the copy of the active slot for a content
/// package); the slot being replaced is freed first.
fn target_slot(
    ctx: &Ctx,
    layout: &Layout,
    from: Option<&str>,
    p: &verify::Package,
) -> Result<String> {
    layout.ensure()?;
    if p.kind == PackageKind::Content && from.is_none() {
        return Err(Error::PackageRejected(
            "a content package applies on top of an installation, and this box has none".into(),
        ));
    }
    let target = from.map(slots::other).unwrap_or("a").to_string();
    let copy = match (from, p.kind) {
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
}
