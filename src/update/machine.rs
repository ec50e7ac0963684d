//! Every state and transition of an update, as data. Read top to bottom:
//!
//! ```text
//! journal step    event                      next step      actions (in order)
//! ------------    -----                      ---------      ------------------
//! (none)          Begin (update, install)    staging        persist, stage target
//! (none)          BeginRollback              switching      persist, stop from, point current at target
//! staging         Staged                     switching      persist, stop from, point current at target
//! staging         StageFailed                (none)         clear target, drop journal, report failed
//! switching       CurrentSwitched            switched (1)   persist, run post-switch hook, start target, health check
//! switching       CurrentSwitched (hand over) switched (1)  persist, hand over to the new agent
//! switching       SwitchFailed(why)          rolling-back   persist, stop target, point current at from, start from, drop journal, report rolled back
//! switched        Healthy                    committed      persist, report committed, [discard download], drop journal
//! switched        Unhealthy(why)             rolling-back   persist, stop target, point current at from, mark target bad, start from, drop journal, report rolled back
//! any step        Interrupted                same           (nothing: the next start recovers)
//!
//! at start-up (Restart), for the step the journal holds:
//! (none)          Restart                    (none)         settle a stale status
//! staging         Restart                    (none)         clear target, drop journal, report failed
//! switching       Restart                    rolling-back   persist, stop target, point current at from, start from, drop journal, report rolled back
//! switched        Restart, attempts < max    switched (+1)  persist, run post-switch hook, start target, health check
//!                 (+0 when the last start was cut by a reboot: `counted` false, boot.rs)
//! switched        Restart, attempts >= max   rolling-back   persist, stop target, point current at from, mark target bad, start from, drop journal, report rolled back
//! rolling-back    Restart                    rolling-back   stop target, point current at from, mark target bad, start from, drop journal, report rolled back
//! committed       Restart                    committed      report committed, [discard download], drop journal
//! ```
//!
//! `persist` writes the journal at the next step *before* the actions after it run, so
//! a crash at any instant leaves a journal whose step names what is to complete or
//! undo. Every action is idempotent (the recovery repeats them). `[discard download]`
//! only for an update (not a `rollback` command). The health check and the hook are
//! the only actions whose result is an event (Healthy/Unhealthy); staging and the
//! switch report theirs the same way. The driver (`driver.rs`, `Driver::perform`) alone
//! does the I/O; this module decides.

use super::journal::{Kind, Step};

/// What happened, fed to [`transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// An update or install starts staging its package.
    Begin,
    /// The `rollback` command starts switching to the other (complete) slot.
    BeginRollback,
    /// The target slot is complete and recorded.
    Staged,
    /// Staging failed (rejected package, I/O error): the target is cleared.
    StageFailed,
    /// `current` now names the target; `hand_over`: the daemon execs the new agent,
    /// which health-checks and commits after its start.
    CurrentSwitched { hand_over: bool },
    /// `current` could not be switched.
    SwitchFailed(String),
    /// The post-switch hook, start and health commands succeeded.
    Healthy,
    /// One of them failed or timed out.
    Unhealthy(String),
    /// A signal stopped the work; the journal stays as it is.
    Interrupted,
    /// The agent started with this journal on disk (recovery). `counted`: this start
    /// counts as an attempt (false when the last one was cut by a reboot, not failed).
    Restart {
        max_boot_attempts: u32,
        counted: bool,
    },
}

/// Which slot an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// The slot active before the update (none on a fresh box).
    From,
    /// The slot being installed or switched to.
    Target,
}

/// What the driver does, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Write the journal at the transition's step (atomic, fsynced).
    Persist,
    /// Clear the target slot, fill it from the package, sync, record it.
    StageTarget,
    /// Empty the target slot (record first).
    ClearTarget,
    StopServices(Which),
    StartServices(Which),
    /// Point `current` at the slot (removed when `From` is none: a fresh box).
    PointCurrent(Which),
    /// Run the new slot's `hooks/post-switch` (if it has one).
    PostSwitchHook,
    /// Run the health commands: the outcome is `Healthy`/`Unhealthy`.
    HealthCheck,
    /// Remove the target's record and remember the update id as failed.
    MarkTargetBad,
    /// status.json: committed (`idle`, new version).
    ReportCommitted,
    /// Remove `package.zip` and friends, and `failed-id`.
    DiscardDownload,
    /// Remove the journal (the update is over either way).
    DropJournal,
    /// status.json: `failed`, the active slot untouched.
    ReportFailed,
    /// status.json: `rolled-back` with the journal's reason.
    ReportRolledBack,
    /// status.json: a stale in-flight state without a journal is reset.
    SettleStatus,
    /// Stop here: a new agent takes over at `switched`.
    HandOver,
}

/// Where an update stands: the journal's step (None = no journal) and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) step: Option<Step>,
    pub(crate) kind: Kind,
    /// Starts of the target's services so far (boot-attempt counter).
    pub(crate) attempts: u32,
}

/// How a driven update ended: the transition after which the machine rests says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The target is active and committed.
    Committed,
    /// `current` names the target; a new agent commits it after its start.
    HandedOver,
    /// Nothing was in flight (start-up without a journal).
    Nothing,
    /// Staging failed or was cut; the target was cleared, the active slot untouched.
    Failed,
    /// Back on the old slot (the reason is the journal's).
    RolledBack,
    /// A signal stopped the work; the journal names what the next start does.
    Interrupted,
}

/// The result of an event: the next state, why a rollback runs (if one starts), the
/// actions in order, and how the update ends when none of them yields an event
/// (None: the last action always does, so the machine goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) next: State,
    pub(crate) reason: Option<String>,
    pub(crate) actions: Vec<Action>,
    pub(crate) end: Option<End>,
}

/// An event that cannot happen in a state (a bug in the driver, never a disk state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) state: State,
    pub(crate) event: Event,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "update state machine: event {:?} at step {:?}",
            self.event, self.state.step
        )
    }
}

use Action::*;

const ROLL_BACK: &[Action] = &[
    Persist,
    StopServices(Which::Target),
    PointCurrent(Which::From),
    StartServices(Which::From),
    DropJournal,
    ReportRolledBack,
];
const ROLL_BACK_BAD: &[Action] = &[
    Persist,
    StopServices(Which::Target),
    PointCurrent(Which::From),
    MarkTargetBad,
    StartServices(Which::From),
    DropJournal,
    ReportRolledBack,
];
const SWITCH: &[Action] = &[
    Persist,
    StopServices(Which::From),
    PointCurrent(Which::Target),
];
const PROVE: &[Action] = &[
    Persist,
    PostSwitchHook,
    StartServices(Which::Target),
    HealthCheck,
];
const STAGING_LOST: &[Action] = &[ClearTarget, DropJournal, ReportFailed];

/// The transition function: pure, total over the states a journal can hold.
pub(crate) fn transition(s: State, e: &Event) -> Result<Transition, Invalid> {
    let go = |step: Option<Step>,
              attempts: u32,
              reason: Option<String>,
              actions: &[Action],
              end: Option<End>| {
        Ok(Transition {
            next: State {
                step,
                kind: s.kind,
                attempts,
            },
            reason,
            actions: actions.to_vec(),
            end,
        })
    };
    let commit = |persist: bool| {
        let mut a = Vec::new();
        if persist {
            a.push(Persist);
        }
        a.push(ReportCommitted);
        if s.kind == Kind::Update {
            a.push(DiscardDownload);
        }
        a.push(DropJournal);
        go(
            Some(Step::Committed),
            s.attempts,
            None,
            &a,
            Some(End::Committed),
        )
    };
    let rolled_back = Some(End::RolledBack);
    let failed = Some(End::Failed);
    use Step::*;
    match (s.step, e) {
        (_, Event::Interrupted) => go(s.step, s.attempts, None, &[], Some(End::Interrupted)),
        (None, Event::Begin) => go(Some(Staging), 0, None, &[Persist, StageTarget], None),
        (None, Event::BeginRollback) => go(Some(Switching), 0, None, SWITCH, None),
        (None, Event::Restart { .. }) => go(None, 0, None, &[SettleStatus], Some(End::Nothing)),
        (Some(Staging), Event::Staged) => go(Some(Switching), 0, None, SWITCH, None),
        (Some(Staging), Event::StageFailed) => go(None, 0, None, STAGING_LOST, failed),
        (Some(Staging), Event::Restart { .. }) => go(None, 0, None, STAGING_LOST, failed),
        (Some(Switching), Event::CurrentSwitched { hand_over: true }) => go(
            Some(Switched),
            1,
            None,
            &[Persist, HandOver],
            Some(End::HandedOver),
        ),
        (Some(Switching), Event::CurrentSwitched { hand_over: false }) => {
            go(Some(Switched), 1, None, PROVE, None)
        }
        (Some(Switching), Event::SwitchFailed(why)) => go(
            Some(RollingBack),
            s.attempts,
            Some(format!("switching current: {why}")),
            ROLL_BACK,
            rolled_back,
        ),
        (Some(Switching), Event::Restart { .. }) => go(
            Some(RollingBack),
            s.attempts,
            Some("interrupted during the switch".into()),
            ROLL_BACK,
            rolled_back,
        ),
        (Some(Switched), Event::Healthy) => commit(true),
        (Some(Switched), Event::Unhealthy(why)) => go(
            Some(RollingBack),
            s.attempts,
            Some(why.clone()),
            ROLL_BACK_BAD,
            rolled_back,
        ),
        (
            Some(Switched),
            Event::Restart {
                max_boot_attempts,
                counted,
            },
        ) => {
            let attempts = s.attempts.saturating_add(u32::from(*counted));
            if attempts > *max_boot_attempts {
                let why = format!(
                    "not healthy after {max_boot_attempts} starts (updates.max_boot_attempts)"
                );
                go(
                    Some(RollingBack),
                    attempts,
                    Some(why),
                    ROLL_BACK_BAD,
                    rolled_back,
                )
            } else {
                go(Some(Switched), attempts, None, PROVE, None)
            }
        }
        // Finishing an interrupted rollback: the journal already holds the step and
        // the reason; every action is repeated (they are idempotent).
        (Some(RollingBack), Event::Restart { .. }) => go(
            Some(RollingBack),
            s.attempts,
            None,
            &ROLL_BACK_BAD[1..],
            rolled_back,
        ),
        (Some(Committed), Event::Restart { .. }) => commit(false),
        (_, ev) => Err(Invalid {
            state: s,
            event: ev.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a transition ends the update (no journal is left after its actions).
    fn is_final(t: &Transition) -> bool {
        t.actions.contains(&DropJournal) || t.next.step.is_none()
    }

    const STEPS: [Option<Step>; 6] = [
        None,
        Some(Step::Staging),
        Some(Step::Switching),
        Some(Step::Switched),
        Some(Step::RollingBack),
        Some(Step::Committed),
    ];

    fn st(step: Option<Step>, kind: Kind, attempts: u32) -> State {
        State {
            step,
            kind,
            attempts,
        }
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Begin,
            Event::BeginRollback,
            Event::Staged,
            Event::StageFailed,
            Event::CurrentSwitched { hand_over: false },
            Event::CurrentSwitched { hand_over: true },
            Event::SwitchFailed("x".into()),
            Event::Healthy,
            Event::Unhealthy("y".into()),
            Event::Interrupted,
            Event::Restart {
                max_boot_attempts: 3,
                counted: true,
            },
        ]
    }

    /// The whole table: every (step, event) pair, its next step and actions, or
    /// invalid. Written out so that a change to the machine shows up here.
    fn expected(step: Option<Step>, e: &Event, kind: Kind) -> Option<(Option<Step>, Vec<Action>)> {
        use Step::*;
        let w = |s: Option<Step>, a: &[Action]| Some((s, a.to_vec()));
        let commit = |persist: bool| {
            let mut a = vec![];
            if persist {
                a.push(Persist);
            }
            a.push(ReportCommitted);
            if kind == Kind::Update {
                a.push(DiscardDownload);
            }
            a.push(DropJournal);
            Some((Some(Committed), a))
        };
        match (step, e) {
            (s, Event::Interrupted) => w(s, &[]),
            (None, Event::Begin) => w(Some(Staging), &[Persist, StageTarget]),
            (None, Event::BeginRollback) => w(
                Some(Switching),
                &[
                    Persist,
                    StopServices(Which::From),
                    PointCurrent(Which::Target),
                ],
            ),
            (None, Event::Restart { .. }) => w(None, &[SettleStatus]),
            (Some(Staging), Event::Staged) => w(
                Some(Switching),
                &[
                    Persist,
                    StopServices(Which::From),
                    PointCurrent(Which::Target),
                ],
            ),
            (Some(Staging), Event::StageFailed | Event::Restart { .. }) => {
                w(None, &[ClearTarget, DropJournal, ReportFailed])
            }
            (Some(Switching), Event::CurrentSwitched { hand_over: true }) => {
                w(Some(Switched), &[Persist, HandOver])
            }
            (Some(Switching), Event::CurrentSwitched { hand_over: false }) => w(
                Some(Switched),
                &[
                    Persist,
                    PostSwitchHook,
                    StartServices(Which::Target),
                    HealthCheck,
                ],
            ),
            (Some(Switching), Event::SwitchFailed(_) | Event::Restart { .. }) => w(
                Some(RollingBack),
                &[
                    Persist,
                    StopServices(Which::Target),
                    PointCurrent(Which::From),
                    StartServices(Which::From),
                    DropJournal,
                    ReportRolledBack,
                ],
            ),
            (Some(Switched), Event::Healthy) => commit(true),
            (Some(Switched), Event::Unhealthy(_)) => w(
                Some(RollingBack),
                &[
                    Persist,
                    StopServices(Which::Target),
                    PointCurrent(Which::From),
                    MarkTargetBad,
                    StartServices(Which::From),
                    DropJournal,
                    ReportRolledBack,
                ],
            ),
            (Some(RollingBack), Event::Restart { .. }) => w(
                Some(RollingBack),
                &[
                    StopServices(Which::Target),
                    PointCurrent(Which::From),
                    MarkTargetBad,
                    StartServices(Which::From),
                    DropJournal,
                    ReportRolledBack,
                ],
            ),
            (Some(Committed), Event::Restart { .. }) => commit(false),
            // Switched + Restart depends on the counter: tested on its own below.
            (Some(Switched), Event::Restart { .. }) => None,
            _ => Some((Some(Step::Staging), vec![HandOver, HandOver])), // marker: invalid
        }
    }

    #[test]
    fn every_step_times_every_event() {
        let mut valid = 0;
        let mut invalid = 0;
        for kind in [Kind::Update, Kind::Rollback] {
            for step in STEPS {
                for e in events() {
                    let got = transition(st(step, kind, 1), &e);
                    match expected(step, &e, kind) {
                        None => continue,
                        Some((Some(Step::Staging), a)) if a == vec![HandOver, HandOver] => {
                            assert!(got.is_err(), "{step:?} x {e:?} should be invalid: {got:?}");
                            invalid += 1;
                        }
                        Some((next, actions)) => {
                            let t = got.unwrap_or_else(|x| panic!("{x}"));
                            assert_eq!(t.next.step, next, "{step:?} x {e:?}");
                            assert_eq!(t.actions, actions, "{step:?} x {e:?}");
                            assert_eq!(t.next.kind, kind);
                            valid += 1;
                        }
                    }
                }
            }
        }
        // 2 kinds x (6 steps x 11 events - the 1 counter-dependent pair).
        assert_eq!(valid + invalid, 2 * (6 * 11 - 1));
        assert_eq!(valid, 2 * 20);
    }

    /// The driver stops when no action yields an event; the transition then names
    /// the end. Every transition either names one, or its last action always yields
    /// an event (staging, the switch, the health check), never both; and a
    /// transition that leaves no journal (step None) never goes on.
    #[test]
    fn the_machine_rests_only_with_an_end() {
        let always_yields =
            |a: &Action| matches!(a, StageTarget | PointCurrent(Which::Target) | HealthCheck);
        let mut n = 0;
        for kind in [Kind::Update, Kind::Rollback] {
            for step in STEPS {
                for attempts in [0, 1, 5] {
                    for e in events() {
                        let Ok(t) = transition(st(step, kind, attempts), &e) else {
                            continue;
                        };
                        let goes_on = t.actions.last().is_some_and(always_yields);
                        assert_eq!(t.end.is_some(), !goes_on, "{step:?} {e:?}: {t:?}");
                        if t.next.step.is_none() {
                            assert!(!t.actions.iter().any(always_yields), "{step:?} {e:?}");
                        }
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 100, "{n}");
        let end = |step, e: Event| transition(st(step, Kind::Update, 1), &e).unwrap().end;
        let restart = || Event::Restart {
            max_boot_attempts: 3,
            counted: true,
        };
        assert_eq!(end(None, restart()), Some(End::Nothing));
        assert_eq!(end(Some(Step::Staging), restart()), Some(End::Failed));
        assert_eq!(end(Some(Step::Switching), restart()), Some(End::RolledBack));
        assert_eq!(end(Some(Step::Committed), restart()), Some(End::Committed));
        assert_eq!(
            end(Some(Step::Switched), Event::Healthy),
            Some(End::Committed)
        );
        assert_eq!(
            end(Some(Step::Switched), Event::Interrupted),
            Some(End::Interrupted)
        );
        assert_eq!(
            end(
                Some(Step::Switching),
                Event::CurrentSwitched { hand_over: true }
            ),
            Some(End::HandedOver)
        );
    }

    #[test]
    fn a_start_cut_by_a_reboot_is_not_an_attempt() {
        for attempts in [1, 3, 7] {
            let t = transition(
                st(Some(Step::Switched), Kind::Update, attempts),
                &Event::Restart {
                    max_boot_attempts: 3,
                    counted: false,
                },
            )
            .unwrap();
            assert_eq!(t.next.attempts, attempts, "not counted");
            let back = attempts > 3;
            assert_eq!(t.actions.contains(&MarkTargetBad), back, "{attempts}");
        }
    }

    #[test]
    fn every_interrupted_state_at_start_up() {
        let r = |step, attempts, max| {
            transition(
                st(step, Kind::Update, attempts),
                &Event::Restart {
                    max_boot_attempts: max,
                    counted: true,
                },
            )
            .unwrap()
        };
        // No journal: nothing in flight.
        let t = r(None, 0, 3);
        assert_eq!((t.next.step, t.actions.clone()), (None, vec![SettleStatus]));
        assert!(is_final(&t));
        // Staging: the target is partial, never active: discard it.
        let t = r(Some(Step::Staging), 0, 3);
        assert_eq!(t.next.step, None);
        assert_eq!(t.actions[0], ClearTarget);
        assert!(!t.actions.contains(&PointCurrent(Which::From)));
        // Switching: current may name either slot: go back, the target stays complete.
        let t = r(Some(Step::Switching), 0, 3);
        assert_eq!(t.next.step, Some(Step::RollingBack));
        assert_eq!(t.reason.as_deref(), Some("interrupted during the switch"));
        assert!(!t.actions.contains(&MarkTargetBad));
        assert_eq!(t.actions[0], Persist);
        // Switched: each start counts; the attempt is persisted before services start.
        for (attempts, max, next, last) in [
            (1, 3, Step::Switched, HealthCheck),
            (2, 3, Step::Switched, HealthCheck),
            (3, 3, Step::RollingBack, ReportRolledBack),
            (1, 1, Step::RollingBack, ReportRolledBack),
            (u32::MAX, 3, Step::RollingBack, ReportRolledBack),
        ] {
            let t = r(Some(Step::Switched), attempts, max);
            assert_eq!(t.next.step, Some(next), "{attempts}/{max}");
            assert_eq!(t.next.attempts, attempts.saturating_add(1));
            assert_eq!(t.actions[0], Persist);
            assert_eq!(*t.actions.last().unwrap(), last);
            if next == Step::RollingBack {
                assert!(t.actions.contains(&MarkTargetBad));
                assert!(t.reason.unwrap().contains("max_boot_attempts"));
            }
        }
        // Rolling back: finish it, keeping the journal's own reason (no new one).
        let t = r(Some(Step::RollingBack), 2, 3);
        assert_eq!(t.next.step, Some(Step::RollingBack));
        assert_eq!(t.reason, None);
        assert_ne!(t.actions[0], Persist);
        assert!(is_final(&t));
        // Committed: only bookkeeping; an interrupted `rollback` keeps the download.
        let t = r(Some(Step::Committed), 1, 3);
        assert_eq!(
            t.actions,
            vec![ReportCommitted, DiscardDownload, DropJournal]
        );
        let t = transition(
            st(Some(Step::Committed), Kind::Rollback, 1),
            &Event::Restart {
                max_boot_attempts: 3,
                counted: true,
            },
        )
        .unwrap();
        assert_eq!(t.actions, vec![ReportCommitted, DropJournal]);
    }

    #[test]
    fn persist_always_comes_first_when_the_step_changes() {
        for kind in [Kind::Update, Kind::Rollback] {
            for step in STEPS {
                for attempts in [0, 1, 5] {
                    for e in events() {
                        let Ok(t) = transition(st(step, kind, attempts), &e) else {
                            continue;
                        };
                        let changes = t.next.step.is_some()
                            && (t.next.step != step || t.next.attempts != attempts);
                        if changes {
                            assert_eq!(t.actions.first(), Some(&Persist), "{step:?} {e:?}");
                        }
                        // Services of the target start only after current names it
                        // (or it already did: switched).
                        if let Some(i) = t
                            .actions
                            .iter()
                            .position(|a| *a == StartServices(Which::Target))
                        {
                            assert!(
                                step == Some(Step::Switched)
                                    || t.actions[..i].contains(&PointCurrent(Which::Target))
                                    || step == Some(Step::Switching),
                                "{step:?} {e:?}"
                            );
                        }
                        // A rollback never starts the old services before current
                        // names the old slot again.
                        if let Some(i) = t
                            .actions
                            .iter()
                            .position(|a| *a == StartServices(Which::From))
                        {
                            assert!(t.actions[..i].contains(&PointCurrent(Which::From)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_whole_update_and_a_whole_rollback_as_event_sequences() {
        let mut s = st(None, Kind::Update, 0);
        for e in [
            Event::Begin,
            Event::Staged,
            Event::CurrentSwitched { hand_over: false },
            Event::Healthy,
        ] {
            s = transition(s, &e).unwrap().next;
        }
        assert_eq!(s.step, Some(Step::Committed));
        let mut s = st(None, Kind::Rollback, 0);
        for e in [
            Event::BeginRollback,
            Event::CurrentSwitched { hand_over: false },
            Event::Unhealthy("health".into()),
        ] {
            s = transition(s, &e).unwrap().next;
        }
        assert_eq!(s.step, Some(Step::RollingBack));
    }
}
