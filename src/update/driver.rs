//! The one place an update's journaled phase does its I/O: feeds events to the state
//! machine (`machine.rs`, where every state and transition is written down) and
//! performs the actions it returns — journal, slots, `current`, services, hooks —
//! handing each step to the reporter it is given (`report.rs`). It imports nothing
//! from its parent.

use super::download;
use super::hooks;
use super::journal::{self, Journal, Kind, Step};
use super::machine::{self, Action, End, Event, State, Which};
use super::report::{Report, Reporter};
use super::slots::Layout;
use super::stage::{self, Staging, AGENT_IN_SLOT};
use super::verify;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services;
use crate::state_paths::StatePaths;
use std::path::PathBuf;

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

/// Drives one journal through the machine.
pub(crate) struct Driver<'c, 'f> {
    ctx: &'c Ctx<'c>,
    report: &'c Reporter<'c>,
    layout: Layout,
    paths: StatePaths,
    /// The update in flight: its journal, whose step is the machine's. None: none
    /// (start-up without a journal).
    j: Option<Journal>,
    staging: Option<Staging<'f>>,
    /// Why staging failed (reported and returned).
    error: Option<Error>,
}

impl<'c, 'f> Driver<'c, 'f> {
    /// A driver for the journal on disk (None: no update in flight), reporting to
    /// `report`.
    pub(crate) fn new(ctx: &'c Ctx<'c>, report: &'c Reporter<'c>, j: Option<Journal>) -> Self {
        Driver::with(ctx, report, Layout::new(&ctx.cfg.install.root), j)
    }

    fn with(
        ctx: &'c Ctx<'c>,
        report: &'c Reporter<'c>,
        layout: Layout,
        j: Option<Journal>,
    ) -> Self {
        Driver {
            ctx,
            report,
            layout,
            paths: StatePaths::new(&ctx.cfg.state_dir),
            j,
            staging: None,
            error: None,
        }
    }

    /// The install step: stages `staging` into the slot `to` names (active, target:
    /// `Layout::target`), then switches (the machine's `Begin`),
    /// reporting each journaled step; version `version` of update `update_id`. A
    /// rollback is the error `RolledBack`; a refused package's download is discarded.
    pub(crate) fn install(
        ctx: &'c Ctx<'c>,
        report: &'c Reporter<'c>,
        layout: Layout,
        to: (Option<String>, String),
        version: String,
        update_id: Option<String>,
        staging: Staging<'f>,
    ) -> Result<()> {
        let j = Journal {
            step: Step::Staging,
            kind: Kind::Update,
            from: to.0,
            target: to.1,
            version,
            update_id,
            attempts: 0,
            reason: None,
            started_at: crate::clock::iso8601(ctx.now()),
            boot: super::boot::boot_id(),
            cut_starts: 0,
        };
        let mut d = Driver::with(ctx, report, layout, None);
        match d.start(j, Some(staging), Event::Begin)? {
            Outcome::Failed(e @ Error::PackageRejected(_)) => {
                download::discard(&d.paths);
                Err(e)
            }
            o => o.into_result(),
        }
    }

    /// Starts the update or rollback `j` (not on disk yet: its first action writes
    /// it) with `ev` (`Begin` to stage `staging`, or `BeginRollback`).
    pub(crate) fn begin(
        ctx: &'c Ctx<'c>,
        report: &'c Reporter<'c>,
        j: Journal,
        staging: Option<Staging<'f>>,
        ev: Event,
    ) -> Result<Outcome> {
        Driver::new(ctx, report, None).start(j, staging, ev)
    }

    fn start(&mut self, j: Journal, staging: Option<Staging<'f>>, ev: Event) -> Result<Outcome> {
        let state = State {
            step: None,
            kind: j.kind,
            attempts: 0,
        };
        self.j = Some(j);
        self.staging = staging;
        self.run(state, ev)
    }

    /// Feeds `ev` to the journal on disk (recovery at start-up).
    pub(crate) fn drive(&mut self, ev: Event) -> Result<Outcome> {
        let state = self.state();
        self.run(state, ev)
    }

    /// The machine's state: the journal's step and counter.
    fn state(&self) -> State {
        match &self.j {
            Some(j) => State {
                step: Some(j.step),
                kind: j.kind,
                attempts: j.attempts,
            },
            None => State {
                step: None,
                kind: Kind::Update,
                attempts: 0,
            },
        }
    }

    /// Feeds `ev` at `state`, then every event the actions produce, until the
    /// machine rests; its last transition says how the update ended.
    fn run(&mut self, mut state: State, mut ev: Event) -> Result<Outcome> {
        loop {
            let t = machine::transition(state, &ev).map_err(|x| Error::Other(x.to_string()))?;
            if let Some(j) = &mut self.j {
                // A transition that leaves no journal (step None) is the last one
                // (machine test `the_machine_rests_only_with_an_end`): the journal's
                // data stays for its actions.
                if let Some(step) = t.next.step {
                    j.step = step;
                }
                j.attempts = t.next.attempts;
                if t.reason.is_some() {
                    j.reason = t.reason.clone();
                }
            }
            let mut follow = None;
            for a in &t.actions {
                if let Some(e) = self.perform(*a)? {
                    follow = Some(e);
                    break;
                }
            }
            match (follow, t.end) {
                (Some(e), _) => ev = e,
                (None, Some(end)) => return Ok(self.outcome(end)),
                (None, None) => return Err(invalid("the machine rested without an end")),
            }
            state = self.state();
        }
    }

    fn outcome(&mut self, end: End) -> Outcome {
        match end {
            End::Committed => Outcome::Committed,
            End::HandedOver => Outcome::HandedOver,
            End::Nothing => Outcome::Nothing,
            End::Failed => Outcome::Failed(self.take_error()),
            End::RolledBack => Outcome::RolledBack(self.reason()),
            End::Interrupted => Outcome::Interrupted,
        }
    }

    /// Why the journal's rollback runs (the journal's reason).
    fn reason(&self) -> String {
        self.j
            .as_ref()
            .and_then(|j| j.reason.clone())
            .unwrap_or_else(|| "interrupted rollback".into())
    }

    /// The error staging ended with (kept by `ReportFailed`), else that it was cut.
    fn take_error(&mut self) -> Error {
        match (self.error.take(), &self.j) {
            (Some(e), _) => e,
            (None, Some(j)) => staging_cut(j),
            (None, None) => invalid("a failure without a journal"),
        }
    }

    /// Performs one action; Some(event) when its result is one.
    fn perform(&mut self, a: Action) -> Result<Option<Event>> {
        if a == Action::SettleStatus {
            self.tell(Report::SettleStale);
            return Ok(None);
        }
        // Every other action is about the update in flight: the machine gives them
        // only at a step, or right after one.
        let j = self
            .j
            .take()
            .ok_or_else(|| invalid("an action without a journal"))?;
        let r = self.perform_on(&j, a);
        self.j = Some(j);
        r
    }

    fn perform_on(&mut self, j: &Journal, a: Action) -> Result<Option<Event>> {
        let ctx = self.ctx;
        let s = &ctx.cfg.services;
        let slot = |w: Which| match w {
            Which::Target => Some(self.layout.slot_dir(&j.target)),
            Which::From => j.from.as_deref().map(|s| self.layout.slot_dir(s)),
        };
        match a {
            Action::Persist => self.persist(j)?,
            Action::StageTarget => {
                let staged = match self.staging.as_mut() {
                    Some(st) => stage::fill(ctx, &self.layout, j, st),
                    None => Err(invalid("nothing to stage")),
                };
                return Ok(Some(match staged {
                    Ok(()) => Event::Staged,
                    Err(Error::Interrupted) => Event::Interrupted,
                    Err(e) => {
                        self.error = Some(e);
                        Event::StageFailed
                    }
                }));
            }
            Action::ClearTarget => {
                if let Err(e) = self.layout.clear(&j.target) {
                    log::warn!("clearing slot {}: {}", j.target, e.chain());
                }
            }
            Action::StopServices(w) => {
                if let Err(e) = services::stop_in(s, slot(w).as_deref(), ctx.clock) {
                    log::warn!("stopping services: {}; going on", e.chain());
                }
            }
            Action::PointCurrent(Which::Target) => return Ok(Some(self.switch_to_target(j))),
            Action::PointCurrent(Which::From) => self.layout.switch_to(j.from.as_deref())?,
            Action::PostSwitchHook => {
                let (target, from) = (slot(Which::Target), slot(Which::From));
                return Ok(self.post_switch_hook(j, target, from));
            }
            Action::StartServices(Which::Target) => {
                let r = services::start_in(s, slot(Which::Target).as_deref(), ctx.clock);
                match r {
                    Ok(()) => {}
                    Err(Error::Interrupted) => return Ok(Some(Event::Interrupted)),
                    Err(e) => return Ok(Some(unhealthy(j, &e))),
                }
            }
            Action::StartServices(Which::From) => {
                if let Some(from) = slot(Which::From) {
                    if let Err(e) = services::start_in(s, Some(&from), ctx.clock) {
                        log::error!("restarting the services of the old slot: {}", e.chain());
                    }
                }
            }
            Action::HealthCheck => {
                let r = services::health_in(s, slot(Which::Target).as_deref(), ctx.clock);
                return Ok(Some(match r {
                    Ok(()) => Event::Healthy,
                    // Still `switched`: the next start runs the health check again.
                    Err(Error::Interrupted) => Event::Interrupted,
                    Err(e) => unhealthy(j, &e),
                }));
            }
            Action::MarkTargetBad => self.mark_target_bad(j),
            Action::ReportCommitted => {
                // The downgrade guard's durable record: a slot record can be dropped
                // later (a slot marked bad), this file is not.
                if let Err(e) = super::downgrade::store(&self.ctx.cfg) {
                    log::warn!("storing the highest version installed: {e}");
                }
                self.tell(Report::Committed(j));
            }
            Action::DiscardDownload => {
                download::discard(&self.paths);
                let _ = std::fs::remove_file(self.paths.failed_id());
            }
            Action::DropJournal => journal::clear(&self.paths)?,
            Action::ReportFailed => {
                let e = self.error.take().unwrap_or_else(|| staging_cut(j));
                self.tell(Report::Failed(&e));
                self.error = Some(e);
            }
            Action::ReportRolledBack => self.tell(Report::RolledBack(j)),
            Action::SettleStatus => self.tell(Report::SettleStale),
            Action::HandOver => log::info!(
                "version {} brings a new agent: it health-checks and commits after the restart",
                j.version
            ),
        }
        Ok(None)
    }

    /// Hands `r` to the reporter (every report of the journaled phase).
    fn tell(&self, r: Report) {
        self.report.report(r);
    }

    /// Saves the journal, and reports the step it names.
    fn persist(&self, j: &Journal) -> Result<()> {
        journal::save(&self.paths, j)?;
        self.tell(Report::Step {
            journal: j,
            staging: self.staging.is_some(),
        });
        Ok(())
    }

    /// Points `current` at the target slot; whether the new agent takes over.
    fn switch_to_target(&self, j: &Journal) -> Event {
        match self.layout.switch_to(Some(&j.target)) {
            // Only an agent the package brings is handed over to (a content
            // package's slot holds a clone of the running one).
            Ok(()) => Event::CurrentSwitched {
                hand_over: j.kind == Kind::Update
                    && self
                        .staging
                        .as_ref()
                        .is_some_and(|st| st.hand_over && st.pkg.has_path(AGENT_IN_SLOT)),
            },
            Err(e) => Event::SwitchFailed(e.chain().to_string()),
        }
    }

    /// The package's post-switch hook in `target` (the slot before: `from`), if it
    /// has one; Some(unhealthy) when it fails.
    fn post_switch_hook(
        &self,
        j: &Journal,
        target: Option<PathBuf>,
        from: Option<PathBuf>,
    ) -> Option<Event> {
        let ctx = self.ctx;
        let target = target?;
        let r = hooks::run(
            &target,
            verify::HOOK_POST_SWITCH,
            from.as_deref(),
            &j.version,
            ctx.clock,
            ctx.cfg.updates.hook_timeout,
        );
        r.err().map(|e| unhealthy(j, &e))
    }

    /// Marks the target slot bad, and remembers the update so that the daemon does
    /// not install it again by itself.
    fn mark_target_bad(&self, j: &Journal) {
        let why = format!(
            "version {} failed: {}",
            j.version,
            j.reason.as_deref().unwrap_or("not healthy")
        );
        if let Err(e) = self.layout.mark_bad(&j.target, &why) {
            log::warn!("marking slot {} bad: {}", j.target, e.chain());
        }
        if let Some(id) = &j.update_id {
            let _ = crate::fsutil::atomic_write(&self.paths.failed_id(), id.as_bytes(), 0o600);
        }
    }
}

/// The new version did not come up: why, for the rollback.
fn unhealthy(j: &Journal, e: &Error) -> Event {
    Event::Unhealthy(format!("version {}: {}", j.version, e.chain()))
}

/// Why staging ended when no error was kept: it was cut (a restart).
fn staging_cut(j: &Journal) -> Error {
    Error::Unfinished(format!(
        "update to {} interrupted while staging slot {}; the active slot was not touched",
        j.version, j.target
    ))
}

/// A driver bug (never a disk state): the machine and the driver disagree.
fn invalid(what: &str) -> Error {
    Error::Other(format!("update state machine: {what}"))
}
