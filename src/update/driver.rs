//! The one place an update's I/O happens: feeds events to the state machine
//! (`machine.rs`, where every state and transition is written down) and performs the
//! actions it returns — journal, slots, `current`, services, hooks, status.json.

use super::journal::{self, Journal, Kind, Step};
use super::machine::{self, Action, Event, State, Which};
use super::manifest::PackageKind;
use super::slots::{self, Layout, Record};
use super::verify::{self, Package, Zip};
use super::{dir, download, fail, hooks, report, set_state, AGENT_IN_SLOT};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services;
use crate::status::UpdateState;
use std::path::PathBuf;
use std::time::Duration;

/// How long the staged agent gets to answer `--version`.
const AGENT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a driven update ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The target is active and committed.
    Committed,
    /// `current` names the target; a new agent commits it after its start.
    HandedOver,
    /// Nothing was in flight (start-up without a journal).
    Nothing,
    /// Staging failed; the target was cleared, the active slot never touched.
    Failed(Error),
    /// Back on the old slot, for this reason.
    RolledBack(String),
    /// A signal stopped the work; the journal names what the next start does.
    Interrupted,
}

impl Outcome {
    /// The command's result: a rollback is the error `RolledBack` (exit 20).
    pub(crate) fn into_result(self) -> Result<()> {
        match self {
            Outcome::Committed | Outcome::HandedOver | Outcome::Nothing => Ok(()),
            Outcome::Failed(e) => Err(e),
            Outcome::RolledBack(why) => Err(Error::RolledBack(why)),
            Outcome::Interrupted => Err(Error::Interrupted),
        }
    }
}

/// A package ready to be staged: inspected, read through `zip` (one descriptor).
pub(crate) struct Staging<'f> {
    pub(crate) zip: Zip<'f>,
    pub(crate) pkg: Package,
    pub(crate) package_sha256: Option<String>,
}

/// Drives one journal through the machine.
pub(crate) struct Driver<'c, 'f> {
    ctx: &'c Ctx<'c>,
    layout: Layout,
    dir: PathBuf,
    /// The journal's step (None: no journal on disk).
    step: Option<Step>,
    j: Journal,
    hand_over: bool,
    staging: Option<Staging<'f>>,
    /// Why staging failed (reported and returned).
    error: Option<Error>,
}

impl<'c, 'f> Driver<'c, 'f> {
    /// A driver for journal `j` at `step`.
    pub(crate) fn new(ctx: &'c Ctx<'c>, j: Journal, step: Option<Step>) -> Self {
        Driver {
            ctx,
            layout: Layout::new(&ctx.cfg.install.root),
            dir: dir(&ctx.cfg),
            step,
            j,
            hand_over: false,
            staging: None,
            error: None,
        }
    }

    /// Stage `s` when the machine says so.
    pub(crate) fn with_staging(mut self, s: Staging<'f>, hand_over: bool) -> Self {
        self.staging = Some(s);
        self.hand_over = hand_over;
        self
    }

    /// Feeds `ev`, then every event the actions produce, until the machine rests.
    pub(crate) fn drive(&mut self, mut ev: Event) -> Result<Outcome> {
        loop {
            let s = State {
                step: self.step,
                kind: self.j.kind,
                attempts: self.j.attempts,
            };
            let t = machine::transition(s, &ev).map_err(|x| Error::Other(x.to_string()))?;
            self.step = t.next.step;
            if let Some(step) = t.next.step {
                self.j.step = step;
            }
            self.j.attempts = t.next.attempts;
            if t.reason.is_some() {
                self.j.reason = t.reason.clone();
            }
            let mut follow = None;
            for a in &t.actions {
                if let Some(e) = self.perform(*a)? {
                    follow = Some(e);
                    break;
                }
            }
            match follow {
                Some(e) => ev = e,
                None => return Ok(self.outcome(&t.actions)),
            }
        }
    }

    fn outcome(&mut self, actions: &[Action]) -> Outcome {
        let last = actions.last().copied();
        match last {
            None => Outcome::Interrupted,
            Some(Action::ReportRolledBack) => Outcome::RolledBack(
                self.j
                    .reason
                    .clone()
                    .unwrap_or_else(|| "interrupted rollback".into()),
            ),
            Some(Action::ReportFailed) => {
                Outcome::Failed(self.error.take().unwrap_or_else(|| self.staging_cut()))
            }
            Some(Action::HandOver) => Outcome::HandedOver,
            Some(Action::SettleStatus) => Outcome::Nothing,
            _ => Outcome::Committed,
        }
    }

    fn slot(&self, w: Which) -> Option<PathBuf> {
        match w {
            Which::Target => Some(self.layout.slot_dir(&self.j.target)),
            Which::From => self.j.from.as_deref().map(|s| self.layout.slot_dir(s)),
        }
    }

    /// Performs one action; Some(event) when its result is one.
    fn perform(&mut self, a: Action) -> Result<Option<Event>> {
        let ctx = self.ctx;
        let s = &ctx.cfg.services;
        match a {
            Action::Persist => self.persist()?,
            Action::StageTarget => {
                return Ok(Some(match self.stage() {
                    Ok(()) => Event::Staged,
                    Err(Error::Interrupted) => Event::Interrupted,
                    Err(e) => {
                        self.error = Some(e);
                        Event::StageFailed
                    }
                }))
            }
            Action::ClearTarget => {
                if let Err(e) = self.layout.clear(&self.j.target) {
                    log::warn!("clearing slot {}: {e}", self.j.target);
                }
            }
            Action::StopServices(w) => {
                if let Err(e) = services::stop_in(s, self.slot(w).as_deref(), ctx.clock) {
                    log::warn!("stopping services: {e}; going on");
                }
            }
            Action::PointCurrent(Which::Target) => return Ok(Some(self.switch_to_target())),
            Action::PointCurrent(Which::From) => self.layout.switch_to(self.j.from.as_deref())?,
            Action::PostSwitchHook => return Ok(self.post_switch_hook()),
            Action::StartServices(Which::Target) => {
                let r = services::start_in(s, self.slot(Which::Target).as_deref(), ctx.clock);
                match r {
                    Ok(()) => {}
                    Err(Error::Interrupted) => return Ok(Some(Event::Interrupted)),
                    Err(e) => return Ok(Some(self.unhealthy(&e))),
                }
            }
            Action::StartServices(Which::From) => {
                if let Some(from) = self.slot(Which::From) {
                    if let Err(e) = services::start_in(s, Some(&from), ctx.clock) {
                        log::error!("restarting the services of the old slot: {e}");
                    }
                }
            }
            Action::HealthCheck => {
                let r = services::health_in(s, self.slot(Which::Target).as_deref(), ctx.clock);
                return Ok(Some(match r {
                    Ok(()) => Event::Healthy,
                    // Still `switched`: the next start runs the health check again.
                    Err(Error::Interrupted) => Event::Interrupted,
                    Err(e) => self.unhealthy(&e),
                }));
            }
            Action::MarkTargetBad => self.mark_target_bad(),
            Action::ReportCommitted => self.report_committed(),
            Action::DiscardDownload => {
                download::discard(&self.dir);
                let _ = std::fs::remove_file(self.dir.join("failed-id"));
            }
            Action::DropJournal => journal::clear(&self.dir)?,
            Action::ReportFailed => {
                let e = self.error.take().unwrap_or_else(|| self.staging_cut());
                fail(ctx, UpdateState::Failed, &e);
                self.error = Some(e);
            }
            Action::ReportRolledBack => {
                let why = self.j.reason.clone().unwrap_or_default();
                fail(ctx, UpdateState::RolledBack, &Error::RolledBack(why));
            }
            Action::SettleStatus => super::settle_stale_state(ctx),
            Action::HandOver => log::info!(
                "version {} brings a new agent: it health-checks and commits after the restart",
                self.j.version
            ),
        }
        Ok(None)
    }

    /// Saves the journal, and reports the new step in status.json (or the log).
    fn persist(&self) -> Result<()> {
        let ctx = self.ctx;
        journal::save(&self.dir, &self.j)?;
        match self.j.step {
            // One status write per state: `switching` follows `staging` (or a
            // rollback command, which reports `installing` here).
            Step::Staging => {
                set_state(ctx, UpdateState::Installing);
                crate::history::record(
                    &ctx.cfg.state_dir,
                    ctx.now(),
                    crate::history::Event::Install,
                    &self.j.version,
                    self.j.update_id.as_deref(),
                    &format!("installation dans le slot {}", self.j.target),
                );
            }
            Step::Switching if self.staging.is_none() => set_state(ctx, UpdateState::Installing),
            Step::Switching => crate::progress::phase(crate::progress::Phase::Switch),
            Step::Switched => set_state(ctx, UpdateState::HealthCheck),
            Step::RollingBack => log::error!(
                "rolling back to slot {}: {}",
                self.j.from.as_deref().unwrap_or("(none)"),
                self.j.reason.as_deref().unwrap_or("")
            ),
            Step::Committed => {}
        }
        Ok(())
    }

    /// Points `current` at the target slot; whether the new agent takes over.
    fn switch_to_target(&self) -> Event {
        match self.layout.switch_to(Some(&self.j.target)) {
            // Only an agent the package brings is handed over to (a content
            // package's slot holds a clone of the running one).
            Ok(()) => Event::CurrentSwitched {
                hand_over: self.hand_over
                    && self.j.kind == Kind::Update
                    && self
                        .staging
                        .as_ref()
                        .is_some_and(|st| st.pkg.has_path(AGENT_IN_SLOT)),
            },
            Err(e) => Event::SwitchFailed(e.to_string()),
        }
    }

    /// The package's post-switch hook, if it has one; Some(unhealthy) when it fails.
    fn post_switch_hook(&self) -> Option<Event> {
        let ctx = self.ctx;
        let target = self.layout.slot_dir(&self.j.target);
        let r = hooks::run(
            &target,
            verify::HOOK_POST_SWITCH,
            self.slot(Which::From).as_deref(),
            &self.j.version,
            ctx.clock,
            ctx.cfg.updates.hook_timeout,
        );
        r.err().map(|e| self.unhealthy(&e))
    }

    /// The new version did not come up: why, for the rollback.
    fn unhealthy(&self, e: &Error) -> Event {
        Event::Unhealthy(format!("version {}: {e}", self.j.version))
    }

    /// Marks the target slot bad, and remembers the update so that the daemon does
    /// not install it again by itself.
    fn mark_target_bad(&self) {
        let why = format!(
            "version {} failed: {}",
            self.j.version,
            self.j.reason.as_deref().unwrap_or("not healthy")
        );
        if let Err(e) = self.layout.mark_bad(&self.j.target, &why) {
            log::warn!("marking slot {} bad: {e}", self.j.target);
        }
        if let Some(id) = &self.j.update_id {
            let _ = crate::fsutil::atomic_write(&self.dir.join("failed-id"), id.as_bytes(), 0o600);
        }
    }

    /// status.json and the log after a commit.
    fn report_committed(&self) {
        let ctx = self.ctx;
        let now = crate::clock::iso8601(ctx.now());
        let kind = self.j.kind;
        report(ctx, |u| {
            u.state = UpdateState::Idle;
            u.last_error = None;
            u.deferred = None;
            if kind == Kind::Update {
                u.available = false;
                u.downloaded_bytes = None;
                u.last_installed_at = Some(now);
                u.breaking = None;
                u.security_update = None;
            }
        });
        log::info!(
            "version {} committed in slot {}",
            self.j.version,
            self.j.target
        );
        crate::progress::phase(crate::progress::Phase::Commit);
        let what = if kind == Kind::Update {
            format!(
                "version {} installée et validée (slot {})",
                self.j.version, self.j.target
            )
        } else {
            format!(
                "retour à la version {} (slot {}) à la demande",
                self.j.version, self.j.target
            )
        };
        crate::history::record(
            &ctx.cfg.state_dir,
            ctx.now(),
            crate::history::Event::Commit,
            &self.j.version,
            self.j.update_id.as_deref(),
            &what,
        );
    }

    /// Why staging ended when no error was kept: it was cut (a restart).
    fn staging_cut(&self) -> Error {
        Error::Other(format!(
            "update to {} interrupted while staging slot {}; the active slot was not touched",
            self.j.version, self.j.target
        ))
    }

    /// Fills the target slot from the package in one pass and records it: a copy of
    /// the active slot first for a content package (minus its hooks, minus the
    /// package's deletions), then every entry extracted and checked as it is
    /// written, `syncfs`, the agent probe, the post-install hook, the record.
    fn stage(&mut self) -> Result<()> {
        let ctx = self.ctx;
        let Some(st) = self.staging.as_mut() else {
            return Err(Error::Other("nothing to stage".into()));
        };
        let target = self.j.target.clone();
        self.layout.clear(&target)?;
        let slot_dir = self.layout.slot_dir(&target);
        let over = st.pkg.kind == PackageKind::Content;
        if !over && !st.pkg.deletions().is_empty() {
            log::warn!("a full package lists deletions: ignored (the slot is exactly the package)");
        }
        if over {
            let from = self
                .j
                .from
                .as_deref()
                .ok_or_else(|| Error::Other("content package without an active slot".into()))?;
            let src = self.layout.slot_dir(from);
            let (n, b) = slots::copy_tree(&src, &slot_dir, &["hooks"])?;
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
        let old = self.j.from.as_deref().map(|s| self.layout.slot_dir(s));
        hooks::run(
            &slot_dir,
            verify::HOOK_POST_INSTALL,
            old.as_deref(),
            &self.j.version,
            ctx.clock,
            ctx.cfg.updates.hook_timeout,
        )
        .map_err(|e| match e {
            Error::Interrupted => e,
            e => Error::PackageRejected(format!("install hook: {e}")),
        })?;
        self.layout.write_record(
            &target,
            &Record {
                version: self.j.version.clone(),
                installed_at: crate::clock::iso8601(ctx.now()),
                update_id: self.j.update_id.clone(),
                package_sha256: st.package_sha256.clone(),
                files,
                bytes,
                kind: Some(st.pkg.kind.as_str().to_string()),
                signed: st.pkg.signed,
            },
        )?;
        log::info!(
            "staged version {} ({} package) in slot {target}",
            self.j.version,
            st.pkg.kind.as_str()
        );
        Ok(())
    }
}

/// Self-update guard: a package carrying the agent must carry one that runs here.
fn probe_agent(ctx: &Ctx, slot_dir: &std::path::Path) -> Result<()> {
    let bin = slot_dir.join(AGENT_IN_SLOT);
    if std::fs::symlink_metadata(&bin).is_err() {
        return Ok(());
    }
    let child = services::child_command(&bin)
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
    match services::wait_child(child, ctx.clock, AGENT_PROBE_TIMEOUT, services::STOP_GRACE) {
        Ok(st) if st.success() => Ok(()),
        // SIGTERM: not the package's fault; the staging is resumed at the next start.
        Err(services::Gave::Stop) => Err(Error::Interrupted),
        Ok(st) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package fails `--version` ({st})"
        ))),
        Err(e) => Err(Error::PackageRejected(format!(
            "{AGENT_IN_SLOT} in the package: `--version` {e}"
        ))),
    }
}
