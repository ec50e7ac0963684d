//! The one place an update's phases and outcomes become `status.json`'s `update`
//! section (plus `version` and `slot`), the update history (`crate::history`) and the
//! live progress (`crate::progress`). Nothing else in `update/` writes them.
//!
//! The interface is one call, [`Reporter::report`], handed one [`Report`] at a time:
//! the pipeline (`pipeline.rs`) hands it what each step returned (and its failures, in
//! `pipeline::stopped`); the driver (`driver.rs`) the journaled phase's steps, through
//! the reporter the pipeline or recovery passes down; the download its bytes, through
//! a closure the pipeline passes down. No step calls anything else of this module.
//! Every write moves the live progress to its state's phase; `Progress` feeds its
//! bytes; `Step` (staging) records `install` and enters `switch`; `Committed` records
//! `commit`; `RolledBack` records `rollback`; `Failed` records `refused` or `failed`.
//!
//! | [`Report`]      | when                                               | update.state           |
//! |-----------------|----------------------------------------------------|------------------------|
//! | `Target`        | the package a run is about is known (live progress names it) | (kept)       |
//! | `Checked`       | the backend answered a check                       | available / idle       |
//! | `CheckFailed`   | the check failed                                   | (kept), lastError      |
//! | `Downloading`   | a download starts (its announced size)             | downloading            |
//! | `Progress`      | bytes downloaded so far (status.json: throttled)   | (kept)                 |
//! | `Downloaded`    | the package is whole                               | (kept)                 |
//! | `Paused`        | a download paused or was stopped by a signal       | available              |
//! | `Verifying`     | the package was inspected: its kind and flags      | verifying              |
//! | `Deferred`      | downloaded and verified, the install waits (why)   | available, deferred    |
//! | `Failed`        | the update stopped on an error                     | failed, lastError      |
//! | `Step`          | the journaled phase wrote its journal (the journal)| installing / health-check |
//! | `RolledBack`    | the journaled phase went back (the journal)        | rolled-back, lastError |
//! | `Committed`     | the journaled phase committed (the journal)        | idle                   |
//! | `SettleStale`   | start-up found an in-flight state and no journal   | available / idle       |
//!
//! The total of a download is the check's `fileSize` (status.json `update.fileSize`).
//! Each status.json change is one atomic rewrite (each fsyncs); a failure to write
//! it is logged, never fatal to the update.

use super::check::CheckReport;
use super::factory;
use super::journal::{Journal, Kind, Step};
use super::verify::Package;
use crate::context::Ctx;
use crate::error::Error;
use crate::history::{self, Event};
use crate::progress;
use crate::status::{Status, UpdateState, UpdateStatus};
use std::cell::Cell;
use std::time::Duration;

/// status.json is rewritten every this many downloaded bytes...
const STATUS_EVERY: u64 = 8 << 20;
/// ...but not more often than this: each rewrite fsyncs, and on ext4 (data=ordered)
/// that flushes the partial download's dirty pages too, which stalled a fast
/// download (a 50 MB package took 1.5x as long as curl).
const STATUS_MIN_GAP: Duration = Duration::from_secs(5);

/// What the reporter is handed: a phase that starts, or how a step ended (the
/// table in the module doc).
pub(crate) enum Report<'a> {
    /// The package a run is about: its version and update id, when known.
    Target {
        version: Option<&'a str>,
        update_id: Option<&'a str>,
    },
    /// What the backend answered.
    Checked(&'a CheckReport),
    /// The check failed.
    CheckFailed(&'a Error),
    /// A download starts; its announced size (the check's `fileSize`).
    Downloading { size: Option<u64> },
    /// This many bytes of the package are on disk.
    Progress(u64),
    /// The package is whole, this many bytes long.
    Downloaded(u64),
    /// A download paused (the daemon's other steps) or was stopped by a signal.
    Paused,
    /// The package was inspected: its kind (`full`, `content`) and what its
    /// `version.json` says (breaking, securityUpdate), when it has one.
    Verifying(&'a Package),
    /// Downloaded and verified; the install waits, for this reason.
    Deferred(String),
    /// The update stopped on this error; the active slot untouched.
    Failed(&'a Error),
    /// The journaled phase wrote its journal at `journal.step` (`staging`: it stages
    /// a package, not a `rollback` command).
    Step { journal: &'a Journal, staging: bool },
    /// The journaled phase went back to the old slot (for the journal's reason).
    RolledBack(&'a Journal),
    /// The journaled phase committed (an update, or a `rollback` command).
    Committed(&'a Journal),
    /// Start-up found no journal: an in-flight state in status.json is stale.
    SettleStale,
}

/// A state status.json names while the journaled phase works.
#[derive(Clone, Copy)]
enum Phase {
    /// The inactive slot is being filled, or `current` switched.
    Installing,
    /// `current` names the new slot; its services start and are checked.
    HealthCheck,
}

/// Writes an update's phases and outcomes into status.json.
pub(crate) struct Reporter<'c> {
    ctx: &'c Ctx<'c>,
    /// The next progress write: at this many bytes, not before this instant.
    next_progress: Cell<(u64, Duration)>,
}

impl<'c> Reporter<'c> {
    /// A reporter for the update `ctx` runs.
    pub(crate) fn new(ctx: &'c Ctx<'c>) -> Self {
        Reporter {
            ctx,
            next_progress: Cell::new((0, Duration::ZERO)),
        }
    }

    /// Writes what `r` says (the table in the module doc).
    pub(crate) fn report(&self, r: Report<'_>) {
        match r {
            Report::Target { version, update_id } => progress::target(version, update_id),
            Report::Checked(c) => self.checked(c),
            Report::CheckFailed(e) => self.check_failed(e),
            Report::Downloading { size } => self.downloading(size),
            Report::Progress(bytes) => self.progress(bytes),
            Report::Downloaded(bytes) => self.write(&mut |u| u.downloaded_bytes = Some(bytes)),
            Report::Paused => self.write(&mut |u| u.state = UpdateState::Available),
            Report::Verifying(p) => self.verifying(
                p.kind.as_str(),
                p.info.as_ref().map(|i| (i.breaking, i.security_update)),
            ),
            Report::Deferred(why) => self.deferred(why),
            Report::Failed(e) => self.failed(e),
            Report::Step { journal, staging } => self.step(journal, staging),
            Report::RolledBack(j) => self.rolled_back(j),
            Report::Committed(j) => self.committed(j),
            Report::SettleStale => self.settle_stale(),
        }
    }

    /// Rewrites the update section (and the version and slot now active). `dyn`:
    /// one copy of the load-change-save for every call (board size budget).
    fn write(&self, f: &mut dyn FnMut(&mut UpdateStatus)) {
        let ctx = self.ctx;
        let (slot, version) = factory::active(&ctx.cfg);
        let r = Status::modify(&ctx.cfg.state_dir, ctx.now(), |s| {
            f(&mut s.update);
            s.slot = slot;
            s.version = version;
            // The live progress follows the state written (a paused download or a
            // package waiting for `update` ends its working phase).
            progress::follow(s.update.state);
        });
        if let Err(e) = r {
            log::warn!("status.json: {}", e.chain());
        }
    }

    /// What the backend answered (now), with the real backend's extra facts.
    fn checked(&self, r: &CheckReport) {
        let now = crate::clock::iso8601(self.ctx.now());
        let d = &r.details;
        if d.node_too_old {
            log::warn!(
                "update: {}",
                d.too_old_text(&r.current_version, r.latest_version.as_deref())
            );
        }
        self.write(&mut |u| {
            u.required_node_version = d.required_node_version.clone();
            u.breaking = d.breaking.then_some(true);
            u.security_update = d.security_update.then_some(true);
            u.message = d.message.clone();
            u.node_too_old = d.node_too_old.then_some(true);
            u.available = r.available;
            u.latest_version = r.latest_version.clone();
            u.changelog = r.changelog.clone();
            u.update_id = r.update_id.clone();
            u.file_size = r.file_size;
            u.last_checked_at = Some(now.clone());
            if !r.available {
                // Nothing waits any more: what described the waiting package goes.
                u.deferred = None;
                u.breaking = None;
                u.security_update = None;
                u.package_kind = None;
            }
            // A failed or rolled-back update stays visible until the next attempt.
            if !matches!(u.state, UpdateState::RolledBack | UpdateState::Failed) || !r.available {
                u.state = if r.available {
                    UpdateState::Available
                } else {
                    UpdateState::Idle
                };
            }
        });
    }

    /// The check failed: said, the state left as it was.
    fn check_failed(&self, e: &Error) {
        let msg = e.chain().to_string();
        self.write(&mut |u| u.last_error = Some(format!("check: {msg}")));
    }

    /// A download starts (`size`: announced).
    fn downloading(&self, size: Option<u64>) {
        progress::bytes(0, size);
        let now = self.ctx.clock.monotonic();
        self.next_progress.set((STATUS_EVERY, now + STATUS_MIN_GAP));
        self.write(&mut |u| {
            u.state = UpdateState::Downloading;
            u.downloaded_bytes = Some(0);
        });
    }

    /// The package was inspected. One status write for both (each rewrite fsyncs).
    fn verifying(&self, kind: &str, breaking_security: Option<(bool, bool)>) {
        self.write(&mut |u| {
            u.state = UpdateState::Verifying;
            u.package_kind = Some(kind.into());
            if let Some((b, s)) = breaking_security {
                u.breaking = Some(b);
                u.security_update = Some(s);
            }
        });
    }

    /// The journaled phase entered `p`.
    fn phase(&self, p: Phase) {
        let state = match p {
            Phase::Installing => UpdateState::Installing,
            Phase::HealthCheck => UpdateState::HealthCheck,
        };
        self.write(&mut |u| u.state = state);
    }

    /// `bytes` of the package are on disk: written every `STATUS_EVERY` bytes, at
    /// most once per `STATUS_MIN_GAP`.
    fn progress(&self, bytes: u64) {
        // In memory, every chunk (its total set as the download began); never waits
        // for the admin listener.
        progress::chunk(bytes);
        let (at_bytes, at) = self.next_progress.get();
        let now = self.ctx.clock.monotonic();
        if bytes >= at_bytes && now >= at {
            self.next_progress
                .set((bytes + STATUS_EVERY, now + STATUS_MIN_GAP));
            self.write(&mut |u| u.downloaded_bytes = Some(bytes));
        }
    }

    /// Downloaded and verified; the install waits, for this reason.
    fn deferred(&self, why: String) {
        let mut why = Some(why);
        self.write(&mut |u| {
            u.state = UpdateState::Available;
            u.deferred = why.take();
        });
    }

    /// The update stopped on `e`; the active slot untouched.
    fn failed(&self, e: &Error) {
        self.error(UpdateState::Failed, e);
        let event = match e {
            Error::PackageRejected(_) => Event::Refused,
            _ => Event::Failed,
        };
        let (version, id) = progress::current_target();
        let version = version.unwrap_or_else(|| "?".into());
        self.history(event, &version, id.as_deref(), &e.to_string());
    }

    /// Appends to the update history (`crate::history`).
    fn history(&self, event: Event, version: &str, update_id: Option<&str>, details: &str) {
        let ctx = self.ctx;
        history::record(
            &ctx.cfg.state_dir,
            ctx.now(),
            event,
            version,
            update_id,
            details,
        );
    }

    /// The journaled phase wrote its journal at `j.step` (`staging`: it stages a
    /// package, not a `rollback` command).
    fn step(&self, j: &Journal, staging: bool) {
        match j.step {
            // One status write per state: `switching` follows `staging` (or a
            // rollback command, which reports `installing` here).
            Step::Staging => {
                self.phase(Phase::Installing);
                let what = format!("installation dans le slot {}", j.target);
                self.history(Event::Install, &j.version, j.update_id.as_deref(), &what);
            }
            Step::Switching if !staging => self.phase(Phase::Installing),
            Step::Switching => progress::phase(progress::Phase::Switch),
            Step::Committed => {}
            Step::Switched => self.phase(Phase::HealthCheck),
            Step::RollingBack => log::error!(
                "rolling back to slot {}: {}",
                j.from.as_deref().unwrap_or("(none)"),
                j.reason.as_deref().unwrap_or("")
            ),
        }
    }

    /// The journaled phase `j` went back to the old slot (for `j.reason`).
    fn rolled_back(&self, j: &Journal) {
        let why = j.reason.clone().unwrap_or_default();
        let e = Error::RolledBack(why);
        self.error(UpdateState::RolledBack, &e);
        self.history(
            Event::Rollback,
            &j.version,
            j.update_id.as_deref(),
            &e.to_string(),
        );
    }

    fn error(&self, state: UpdateState, e: &Error) {
        let mut msg = Some(e.chain().to_string());
        log::info!("update: {}", msg.as_deref().unwrap_or_default());
        self.write(&mut |u| {
            u.state = state;
            u.last_error = msg.take();
        });
    }

    /// The journaled phase `j` committed (an update, or a `rollback` command).
    fn committed(&self, j: &Journal) {
        let kind = j.kind;
        let mut now = Some(crate::clock::iso8601(self.ctx.now()));
        self.write(&mut |u| {
            u.state = UpdateState::Idle;
            u.last_error = None;
            u.deferred = None;
            if kind == Kind::Update {
                u.available = false;
                u.downloaded_bytes = None;
                u.last_installed_at = now.take();
                u.breaking = None;
                u.security_update = None;
            }
        });
        log::info!("version {} committed in slot {}", j.version, j.target);
        progress::phase(progress::Phase::Commit);
        let what = if kind == Kind::Update {
            format!(
                "version {} installée et validée (slot {})",
                j.version, j.target
            )
        } else {
            format!(
                "retour à la version {} (slot {}) à la demande",
                j.version, j.target
            )
        };
        self.history(Event::Commit, &j.version, j.update_id.as_deref(), &what);
    }

    /// Without a journal nothing is in flight (recovery runs under the state lock),
    /// so a downloading/verifying state left by a process that died (power cut,
    /// kill -9 in the middle of a download) is stale: reset it, or status.json would
    /// claim a download forever. The partial download stays and is resumed by the
    /// next update.
    fn settle_stale(&self) {
        let u = Status::load(&self.ctx.cfg.state_dir).update;
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
        self.write(&mut |u| {
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
}
