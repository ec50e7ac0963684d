//! The update pipeline: check → download → inspect → install, in [`steps`]. Each
//! step is one call into the module that does it (`check::step`,
//! `download::obtain`, `inspect::open` and `inspect::admit`, `Driver::install`),
//! returning what the next one needs; `steps` hands each outcome to the reporter
//! (`report.rs`), so no step writes status.json itself (the download's bytes and
//! the journaled phase's steps reach it through the closure and the reporter passed
//! down). A failure is a [`Stop`] that says how it is reported; [`stopped`] is the
//! one place that reports it. A run ends in a [`Done`].

use super::check::{self, CheckReport};
use super::download::{self, Fetching, Session};
use super::driver::Driver;
use super::report::{Report, Reporter};
use super::slots::Layout;
use super::stage::Staging;
use super::{downgrade, inspect, verify};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::UpdateCheck;
use crate::state_paths::StatePaths;
use crate::window;
use std::fs::File;
use std::path::Path;

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

/// Asks the backend once; records the answer in status.json.
pub(crate) fn check_once(ctx: &Ctx) -> Result<CheckReport> {
    run(ctx, |rep| {
        let tenant = tenant(ctx).map_err(Stop::Quiet)?;
        let (r, _) = check::step(ctx, &tenant).map_err(Stop::Check)?;
        rep.report(Report::Checked(&r));
        Ok(r)
    })
}

/// Check, download, verify and install now (an operator's `update`: whatever
/// `auto_*`, the install window or `breaking` say). `offered`: only while the
/// check still offers that update id (the admin API's apply: what the page showed).
pub(crate) fn update_now(ctx: &Ctx, session: Session, offered: Option<&str>) -> Result<Done> {
    run(ctx, |rep| steps(ctx, rep, session, Mode::Now { offered }))
}

/// The daemon's hourly step: check, then download/install as `auto_*` allow. An
/// automatic install also waits for an operator when the package is `breaking`,
/// and for `updates.install_window` (a `securityUpdate` may skip the window when
/// `updates.security_outside_window` says so); meanwhile the package waits verified.
pub(crate) fn daemon_step(ctx: &Ctx, session: Session) -> Result<Done> {
    run(ctx, |rep| steps(ctx, rep, session, Mode::Daemon))
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
        let (z, p) = inspect::open(ctx, &own).map_err(Stop::Rejected)?;
        rep.report(Report::Verifying(&p));
        let version = inspect::admit(ctx, &p, None, allow_downgrade).map_err(Stop::Rejected)?;
        rep.report(Report::Target {
            version: Some(&version),
            update_id: None,
        });
        let staging = Staging {
            zip: z,
            pkg: p,
            package_sha256: None,
            hand_over: false,
        };
        install(ctx, rep, staging, version, None)
    })
}

/// Who runs the pipeline: it decides what is installed, and when.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// An operator's `update` (`offered`: the admin API's apply of that update id).
    Now { offered: Option<&'a str> },
    /// The daemon's hourly step (`auto_*`, `breaking`, the install window).
    Daemon,
}

/// The steps, in order: check, download, inspect (open, then admit), install. Each
/// step is a call into the module that does it and returns one outcome, which this
/// function hands to the reporter; a failure is a [`Stop`].
fn steps(
    ctx: &Ctx,
    rep: &Reporter,
    session: Session,
    mode: Mode,
) -> std::result::Result<Done, Stop> {
    let tenant = tenant(ctx).map_err(Stop::Quiet)?;
    let (r, c) = check::step(ctx, &tenant).map_err(Stop::Check)?;
    rep.report(Report::Checked(&r));
    if let Some(done) = nothing_to_do(ctx, &r, &c, mode)? {
        return Ok(done);
    }
    // An announced downgrade is refused before a byte is downloaded (the package
    // would be refused anyway, and the daemon would fetch it again every hour).
    if let Some(v) = &c.latest_version {
        downgrade::check(&ctx.cfg, v, false).map_err(Stop::Failed)?;
    }
    // What the live progress names (history records of a failure too).
    let id = c.update_id.clone().unwrap_or_default();
    rep.report(Report::Target {
        version: c.latest_version.as_deref(),
        update_id: Some(&id),
    });
    let on = |f| {
        rep.report(match f {
            Fetching::Started { size } => Report::Downloading { size },
            Fetching::Bytes(n) => Report::Progress(n),
        })
    };
    let got = download::obtain(ctx, &c, session, &on).map_err(|e| match e {
        Error::Interrupted => Stop::Paused,
        e => Stop::Failed(e),
    })?;
    if let Some(size) = got.fetched {
        rep.report(Report::Downloaded(size));
    }
    let (mut zip, p) = inspect::open(ctx, &got.file).map_err(Stop::Rejected)?;
    // One status write for both (each rewrite fsyncs): the inspection reads only the
    // central directory and a few small entries.
    rep.report(Report::Verifying(&p));
    let latest = c.latest_version.as_deref();
    let version = inspect::admit(ctx, &p, latest, false).map_err(Stop::Rejected)?;
    if let Some(why) = waits(ctx, mode, &p) {
        // Verified now (every entry's data), so a bad package is known before it is due.
        verify::scan_data(&mut zip, &p).map_err(Stop::Rejected)?;
        log::info!("update {id} downloaded and verified; {why}");
        rep.report(Report::Deferred(why.clone()));
        return Ok(Done::Deferred(why));
    }
    rep.report(Report::Target {
        version: Some(&version),
        update_id: c.update_id.as_deref(),
    });
    let staging = Staging {
        zip,
        pkg: p,
        package_sha256: Some(got.sha256.clone()),
        hand_over: matches!(mode, Mode::Daemon),
    };
    install(ctx, rep, staging, version, c.update_id.clone())
}

/// Whether the check's answer ends the run here, and how.
fn nothing_to_do(
    ctx: &Ctx,
    r: &CheckReport,
    c: &UpdateCheck,
    mode: Mode,
) -> std::result::Result<Option<Done>, Stop> {
    match mode {
        Mode::Now { offered } => {
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
            Ok((!r.available).then_some(Done::Nothing))
        }
        Mode::Daemon => {
            let u = &ctx.cfg.updates;
            if !r.available || !(u.auto_download || u.auto_install) {
                return Ok(Some(Done::Nothing));
            }
            let id = c.update_id.clone().unwrap_or_default();
            if failed_id(&ctx.cfg.state_dir).as_deref() == Some(id.as_str()) {
                log::info!("update {id} failed or was rolled back before; not retrying it automatically (run `update`)");
                return Ok(Some(Done::NotRetried));
            }
            Ok(None)
        }
    }
}

/// Why an inspected package waits instead of being installed now (the daemon's
/// rules), if it does.
fn waits(ctx: &Ctx, mode: Mode, p: &verify::Package) -> Option<String> {
    if let Mode::Now { .. } = mode {
        return None;
    }
    let info = p.info.as_ref();
    if !ctx.cfg.updates.auto_install {
        Some("auto_install is off: waiting for `update`".to_string())
    } else if info.is_some_and(|i| i.breaking) {
        Some("breaking update: installed only by an operator's `update`".to_string())
    } else {
        outside_window(ctx, info.is_some_and(|i| i.security_update))
    }
}

/// The install step: the inactive slot chosen (once the package is known to fit),
/// then the journaled phase (`driver.rs`), which reports its own steps and outcome.
/// `hand_over`: the caller (the daemon) will exec a new agent the package brings,
/// and that agent finishes the update.
fn install(
    ctx: &Ctx,
    rep: &Reporter,
    staging: Staging,
    version: String,
    update_id: Option<String>,
) -> std::result::Result<Done, Stop> {
    let layout = Layout::new(&ctx.cfg.install.root);
    let to = layout
        .target(&staging.pkg, &ctx.cfg.state_dir)
        .map_err(Stop::Rejected)?;
    Driver::install(ctx, rep, layout, to, version, update_id, staging).map_err(Stop::Quiet)?;
    Ok(Done::Installed)
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
