//! The daemon: one thread, one blocking loop. Intervals run on monotonic time; wall
//! time is only for timestamps and expiry, so an NTP jump neither fires every timer
//! nor stalls them.

use crate::backoff::Backoff;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::context::Ctx;
use crate::error::{exit, Error, Result};
use crate::fsutil::StateLock;
use crate::license;
use crate::state_paths::StatePaths;
use crate::status::{LicenseState, Status};
use crate::update::slots::Layout;
use crate::{admin, logging, services, signals, telemetry, update};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a step waits for a manual command holding `agent.lock` before it is
/// postponed.
const STEP_LOCK_WAIT: Duration = Duration::from_secs(10);
/// Retry delay of a step that could not take the lock.
const LOCK_RETRY: Duration = Duration::from_secs(60);
/// Revalidation pace while the wall clock is not set yet.
const CLOCK_RETRY: Duration = Duration::from_secs(60);
/// First revalidation delay after a refusal (doubles, capped by the interval).
const REFUSED_FIRST_RETRY: Duration = Duration::from_secs(15 * 60);
/// First revalidation delay when the backend is unreachable (doubles, capped).
const UNREACHABLE_FIRST_RETRY: Duration = Duration::from_secs(5 * 60);

/// How many times each step ran (for tests and the soak script).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub validations: u64,
    pub telemetry: u64,
    pub checks: u64,
    pub(crate) reloads: u64,
    /// Times a 429 silenced the backend calls.
    pub throttled: u64,
}

/// The daemon's state between steps.
pub struct Daemon<'a> {
    ctx: Ctx<'a>,
    config_path: PathBuf,
    collector: telemetry::Collector,
    next_validate: Duration,
    next_telemetry: Duration,
    next_check: Duration,
    /// When the AI service is next timed (`telemetry.ai_probe_url`).
    next_probe: Duration,
    /// The gap between fresh samples on a shared throttler (`telemetry::pace`).
    pace: telemetry::pace::Pace,
    refused_streak: u32,
    unreachable_streak: u32,
    license: LicenseState,
    services_running: Option<bool>,
    clock_warned: bool,
    /// The update session (a paused download) between check steps.
    updater: update::Updater,
    /// The agent a just-committed update brought, to be exec'd once the loop ends.
    new_agent: Option<PathBuf>,
    /// The admin API's end of its job channel (None: `admin_api.listen` is off).
    admin: Option<admin::Handle>,
    /// An admin job a pause interrupted (a download), resumed at the next tick.
    pending: Option<admin::Job>,
    /// Steps run so far.
    pub counters: Counters,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code.
pub(crate) fn main(cfg: Config, config_path: PathBuf) -> u8 {
    if let Err(e) = signals::install() {
        let e = Error::io("installing the signal handlers", e);
        crate::error::print(&e);
        return e.exit_code();
    }
    if let Err(e) = crate::fsutil::ensure_dir(&cfg.state_dir, 0o755) {
        crate::error::print(&e);
        return e.exit_code();
    }
    let run_lock = match StateLock::acquire_file(
        &StatePaths::new(&cfg.state_dir).run_lock(),
        Duration::ZERO,
    ) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!(
                "another `cybersensei-agent run` is already running for {} ({})",
                cfg.state_dir.display(),
                e.chain()
            );
            log::error!("{msg}");
            eprintln!("error: {msg}");
            return exit::FAILURE;
        }
    };
    let clock = SystemClock::new();
    let mut new_agent = None;
    let listener = admin::start(&cfg).unwrap_or_else(|e| {
        // The daemon's own jobs go on without it.
        log::error!(
            "admin API not started on {}: {e}",
            admin::describe(&cfg.admin_api)
        );
        None
    });
    let code = match Daemon::new(cfg, config_path, &clock) {
        Ok(mut d) => match d.with_admin(listener).run() {
            Ok(()) => {
                new_agent = d.new_agent().map(Path::to_path_buf);
                exit::OK
            }
            Err(e) => {
                log::error!("daemon stopped: {}", e.chain());
                e.exit_code()
            }
        },
        Err(e) => {
            log::error!("cannot start: {}", e.chain());
            crate::error::print(&e);
            e.exit_code()
        }
    };
    drop(run_lock);
    if let Some(agent) = new_agent {
        return exec_agent(&agent);
    }
    code
}

/// Replaces this process with the updated agent, same arguments and pid (the init
/// system's pidfile stays right). Returns only if the exec failed.
fn exec_agent(agent: &Path) -> u8 {
    use std::os::unix::process::CommandExt;
    log::info!(
        "update brought a new agent: restarting as {}",
        agent.display()
    );
    // The fallback flag described how *this* agent was started: the new one was not
    // started by the init script's fallback and must not take its start for a failed one.
    let err = std::process::Command::new(agent)
        .args(std::env::args_os().skip(1))
        .env_remove(update::boot::FALLBACK_ENV)
        .exec();
    log::error!("cannot run the new agent {}: {err}", agent.display());
    // Non-zero, so a supervisor (systemd Restart=on-failure) starts us again.
    exit::FAILURE
}

impl<'a> Daemon<'a> {
    /// A daemon over `cfg`, reloading from `config_path` on SIGHUP.
    pub fn new(cfg: Config, config_path: PathBuf, clock: &'a dyn Clock) -> Result<Daemon<'a>> {
        let ctx = Ctx::new(cfg, clock, false)?;
        let pace = telemetry::pace::Pace::new(ctx.cfg.telemetry.interval);
        Ok(Daemon {
            ctx,
            config_path,
            collector: telemetry::Collector::new(),
            next_validate: Duration::ZERO,
            next_telemetry: Duration::ZERO,
            next_check: Duration::ZERO,
            next_probe: Duration::ZERO,
            pace,
            refused_streak: 0,
            unreachable_streak: 0,
            license: LicenseState::Unknown,
            services_running: None,
            clock_warned: false,
            updater: update::Updater::default(),
            new_agent: None,
            admin: None,
            pending: None,
            counters: Counters::default(),
        })
    }

    /// Gives the daemon the admin API's job channel.
    fn with_admin(&mut self, admin: Option<admin::Handle>) -> &mut Self {
        self.admin = admin;
        self
    }

    /// The license state as of the last validation.
    pub fn license_state(&self) -> LicenseState {
        self.license
    }

    /// Boot sequence then the loop, until a stop is requested.
    pub(crate) fn run(&mut self) -> Result<()> {
        log::info!(
            "cybersensei-agent {} starting (backend {})",
            env!("CARGO_PKG_VERSION"),
            self.ctx.cfg.backend.url
        );
        self.start()?;
        while self.tick() {
            if self.new_agent.is_some() {
                return Ok(());
            }
        }
        // Asked to stop while handing an update over: stop, do not exec the new agent
        // (it would not know of the stop and the init script would have to kill it).
        // The journal stays at `switched`: the next start's recovery finishes it.
        if self.new_agent.take().is_some() {
            log::info!("stop requested: the new agent finishes the update at the next start");
        }
        log::info!("stopping on signal");
        Ok(())
    }

    /// The agent binary an update just installed, when the loop ended to run it.
    pub(crate) fn new_agent(&self) -> Option<&Path> {
        self.new_agent.as_deref()
    }

    /// Recovery of an interrupted update, the boot validation, and the first schedule.
    pub fn start(&mut self) -> Result<()> {
        {
            let _lock = StateLock::acquire(&self.ctx.cfg.state_dir, STEP_LOCK_WAIT * 6)?;
            let before = update::active(&self.ctx.cfg).0;
            if let Err(e) = update::recover(&self.ctx) {
                // A failed recovery is logged and reported, but the loop still runs:
                // the license and telemetry must keep working so the box stays reachable.
                log::error!("update recovery: {}", e.chain());
            }
            crate::leftovers::sweep(&self.ctx.cfg);
            // Up and recovered: the init script's count of failed starts is reset.
            update::boot::confirm_start(&self.ctx.cfg, before.as_deref());
            // Under the lock: status.json is rewritten by whoever holds it.
            crate::security::report(&self.ctx.cfg, self.ctx.now());
        }
        let now = self.ctx.clock.monotonic();
        self.next_validate = now;
        let cfg = &self.ctx.cfg;
        let (t_first, c_first) = if cfg.schedule.splay {
            (
                self.splay(cfg.telemetry.interval),
                self.splay(cfg.updates.check_interval),
            )
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        self.next_telemetry = now + t_first;
        self.next_check = now + c_first;
        if !self.reuse_validation() {
            self.step_validate();
        }
        Ok(())
    }

    /// Budget rule 1 (`budget`): starts on a cached validation young enough instead
    /// of spending one; the next validation falls when that one is an interval old.
    fn reuse_validation(&mut self) -> bool {
        let cfg = &self.ctx.cfg;
        let Ok(key) = crate::key::LicenseKey::read(&cfg.license.key_file) else {
            return false;
        };
        let wall = self.ctx.clock.now();
        let interval = cfg.license.revalidate_interval;
        let cache = license::load_cache(&cfg.state_dir);
        let Some(age) = crate::budget::reusable_at_start(cache.as_ref(), &key.id(), interval, wall)
        else {
            return false;
        };
        let Some(out) = license::cached_outcome(cfg, wall) else {
            return false;
        };
        log::info!(
            "license valid for {} until {} (validation of {} min ago reused; the backend counts each validation, next one in {})",
            out.tenant_name.as_deref().unwrap_or("?"),
            out.expires_at.as_deref().unwrap_or("?"),
            age.as_secs() / 60,
            crate::error::human_duration(interval.saturating_sub(age))
        );
        for w in &out.warnings {
            log::warn!("{w}");
        }
        if let Err(e) = license::record(&cfg.state_dir, &out, wall) {
            log::warn!("status.json: {}", e.chain());
        }
        self.license = out.state;
        self.next_validate = self.ctx.clock.monotonic() + interval.saturating_sub(age);
        self.gate_services(&out);
        true
    }

    fn splay(&self, interval: Duration) -> Duration {
        interval.mul_f64(self.ctx.clock.random())
    }

    fn jittered(&self, interval: Duration) -> Duration {
        let pct = self.ctx.cfg.schedule.jitter_percent as f64 / 100.0;
        let f = 1.0 + pct * (2.0 * self.ctx.clock.random() - 1.0);
        Duration::from_secs_f64((interval.as_secs_f64() * f).max(1.0))
    }

    /// Sleeps until the next step is due (or a signal), runs what is due.
    /// Returns false once a stop was requested.
    pub fn tick(&mut self) -> bool {
        if signals::stop_requested() {
            return false;
        }
        let now = self.ctx.clock.monotonic();
        let due = self.next_due();
        if due > now {
            self.ctx.clock.sleep(due - now);
        }
        signals::take_wake();
        if signals::stop_requested() {
            return false;
        }
        if signals::take_reload() {
            self.reload();
            return true;
        }
        let now = self.ctx.clock.monotonic();
        if now >= self.next_validate {
            self.step_validate();
        }
        if signals::stop_requested() {
            return false;
        }
        if self.ctx.cfg.telemetry.enabled && now >= self.next_telemetry {
            self.step_telemetry();
        }
        if self.probing() && now >= self.next_probe {
            // Local and lock-free: the AI service's latency between two samples.
            telemetry::probe_ai(&self.ctx, &mut self.collector);
            self.next_probe = now + telemetry::probe::PROBE_EVERY;
        }
        if signals::stop_requested() {
            return false;
        }
        if now >= self.next_check {
            self.step_check();
        }
        self.honour_throttle();
        if signals::stop_requested() {
            return false;
        }
        self.step_admin();
        release_free_memory();
        !signals::stop_requested()
    }

    /// The monotonic time at which the next step is due.
    pub fn next_due(&self) -> Duration {
        let mut due = self.next_validate.min(self.next_check);
        if self.ctx.cfg.telemetry.enabled {
            due = due.min(self.next_telemetry);
        }
        if self.probing() {
            due = due.min(self.next_probe);
        }
        if self.pending.is_some() {
            due = due.min(self.ctx.clock.monotonic());
        }
        due
    }

    /// Whether the daemon times the AI service between samples.
    fn probing(&self) -> bool {
        self.ctx.cfg.telemetry.enabled && self.ctx.cfg.telemetry.ai_probe_url.is_some()
    }

    /// Runs the steps due now without sleeping (an in-process fleet drives many
    /// daemons on one injected clock: `examples/fleet.rs`). False once stopping.
    pub fn run_due(&mut self) -> bool {
        if self.next_due() > self.ctx.clock.monotonic() {
            return !signals::stop_requested();
        }
        self.tick()
    }

    /// A 429 silences its own route until its `Retry-After` has passed (the backend's
    /// throttler counts per client address and route, shared by every box behind the
    /// address): the steps of that route due before then move past it, spread over a
    /// few seconds so the boxes behind one address do not all come back in the same
    /// second. A 429 on telemetry never delays a validation or an update check.
    fn honour_throttle(&mut self) {
        let now = self.ctx.clock.monotonic();
        let t = &self.ctx.transport;
        let clock = self.ctx.clock;
        let routes = [
            t.throttled(clock, "/api/license/"),
            t.throttled(clock, telemetry::send::PATH),
            t.throttled(clock, "/update/"),
        ];
        let Some(longest) = routes.iter().flatten().max().copied() else {
            return;
        };
        let spread = 0.2 * self.ctx.clock.random();
        let mut moved = false;
        let mut push = |next: &mut Duration, left: Option<Duration>| {
            if let Some(left) = left {
                let until = now + left;
                if *next < until {
                    *next = until + Duration::from_secs_f64(left.as_secs_f64() * spread);
                    moved = true;
                }
            }
        };
        push(&mut self.next_validate, routes[0]);
        push(&mut self.next_telemetry, routes[1]);
        push(&mut self.next_check, routes[2]);
        if moved {
            self.counters.throttled += 1;
            log::warn!(
                "backend rate limit (429): no request to that route for {} as it asks",
                crate::error::human_duration(longest)
            );
        }
    }

    /// Re-reads the config; a broken file is reported and the old config kept.
    pub(crate) fn reload(&mut self) {
        self.counters.reloads += 1;
        match Config::load(&self.config_path) {
            Ok(cfg) => match Ctx::new(cfg, self.ctx.clock, false) {
                Ok(ctx) => {
                    for (route, until) in self.ctx.transport.blocks() {
                        ctx.transport.block_until(&route, until);
                    }
                    let old = std::mem::replace(&mut self.ctx, ctx);
                    logging::init(&self.ctx.cfg.log.level, None);
                    let now = self.ctx.clock.monotonic();
                    let cfg = &self.ctx.cfg;
                    // A shorter interval applies now; a longer one from the next step.
                    self.next_telemetry = self.next_telemetry.min(now + cfg.telemetry.interval);
                    self.next_check = self.next_check.min(now + cfg.updates.check_interval);
                    self.next_validate = self
                        .next_validate
                        .min(now + cfg.license.revalidate_interval);
                    if old.cfg.services != cfg.services {
                        log::info!("services commands changed");
                    }
                    log::info!("configuration reloaded from {}", self.config_path.display());
                }
                Err(e) => {
                    log::error!(
                        "configuration reload refused, keeping the previous one: {}",
                        e.chain()
                    )
                }
            },
            Err(e) => log::error!(
                "configuration reload refused, keeping the previous one: {}",
                e.chain()
            ),
        }
    }

    fn lock(&self) -> Option<StateLock> {
        match StateLock::acquire(&self.ctx.cfg.state_dir, STEP_LOCK_WAIT) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("step postponed: {}", e.chain());
                None
            }
        }
    }

    fn step_validate(&mut self) {
        let now = self.ctx.clock.monotonic();
        // Budget rule 3: never more than budget::DAILY automatic validations a day.
        let cache = license::load_cache(&self.ctx.cfg.state_dir);
        if let Some(wait) = crate::budget::wait_for_budget(cache.as_ref(), self.ctx.clock.now()) {
            log::warn!(
                "license: {} validations in the last 24 h already (the backend counts each one); keeping the cached state, next validation in {}",
                crate::budget::DAILY,
                crate::error::human_duration(wait)
            );
            self.next_validate = now + wait;
            return;
        }
        let Some(_lock) = self.lock() else {
            self.next_validate = now + LOCK_RETRY;
            return;
        };
        self.counters.validations += 1;
        let interval = self.ctx.cfg.license.revalidate_interval;
        let wall = self.ctx.clock.now();
        let outcome = match license::validate(&self.ctx) {
            Ok(o) => o,
            Err(Error::Interrupted) => return,
            Err(e) => {
                // Missing key file and the like: the services cannot be licensed.
                log::error!("license validation impossible: {}", e.chain());
                let o = license::Outcome {
                    message: Some(e.chain().to_string()),
                    ..license::Outcome::default()
                };
                let _ = license::record(&self.ctx.cfg.state_dir, &o, wall);
                o
            }
        };
        self.license = outcome.state;
        let backoff = |first: Duration, streak: u32| Backoff::new(first, interval).delay(streak);
        let next = if !wall.is_sane() {
            if !self.clock_warned {
                log::warn!(
                    "system clock not set (reads {}, before {}); retrying in {}s",
                    wall.iso8601(),
                    crate::clock::floor().iso8601(),
                    CLOCK_RETRY.as_secs()
                );
                self.clock_warned = true;
            }
            CLOCK_RETRY
        } else {
            self.clock_warned = false;
            match outcome.state {
                LicenseState::Valid => {
                    self.refused_streak = 0;
                    self.unreachable_streak = 0;
                    interval
                }
                LicenseState::Expired | LicenseState::Inactive | LicenseState::Invalid => {
                    self.unreachable_streak = 0;
                    let d = backoff(REFUSED_FIRST_RETRY, self.refused_streak);
                    self.refused_streak += 1;
                    d
                }
                LicenseState::Grace | LicenseState::Unknown => {
                    let d = backoff(UNREACHABLE_FIRST_RETRY, self.unreachable_streak);
                    self.unreachable_streak += 1;
                    d
                }
            }
        };
        self.next_validate = now + self.jittered(next);
        self.gate_services(&outcome);
    }

    /// Runs the main services only while the license allows them.
    fn gate_services(&mut self, outcome: &license::Outcome) {
        let allow = outcome.state.allows_services();
        if self.services_running == Some(allow) {
            return;
        }
        let s = &self.ctx.cfg.services;
        let current = Layout::new(&self.ctx.cfg.install.root).current();
        let (result, reason) = if allow {
            (
                services::start_in(s, Some(&current), self.ctx.clock),
                format!("license {}", outcome.state.as_str()),
            )
        } else {
            log::warn!(
                "stopping the CyberSensei services: license {} ({})",
                outcome.state.as_str(),
                outcome.message.as_deref().unwrap_or("")
            );
            (
                services::stop(s, self.ctx.clock),
                format!(
                    "stopped: license {}{}",
                    outcome.state.as_str(),
                    outcome
                        .message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            )
        };
        match result {
            Ok(()) => {
                self.services_running = Some(allow);
                if allow {
                    log::info!("CyberSensei services started ({reason})");
                }
                let _ = Status::modify(&self.ctx.cfg.state_dir, self.ctx.now(), |st| {
                    st.services.running = Some(allow);
                    st.services.reason = Some(reason);
                });
            }
            Err(e) => log::error!("services: {}", e.chain()),
        }
    }

    fn step_telemetry(&mut self) {
        let now = self.ctx.clock.monotonic();
        let interval = self.ctx.cfg.telemetry.interval;
        // Measured before the lock: the application's sources must not hold it.
        let measured = telemetry::measure(&self.ctx, &mut self.collector);
        if signals::stop_requested() {
            return;
        }
        let Some(_lock) = self.lock() else {
            self.next_telemetry = now + LOCK_RETRY;
            return;
        };
        self.counters.telemetry += 1;
        let r = telemetry::send_cycle(&self.ctx, measured, self.pace.max_flush(), true);
        let throttled = self
            .ctx
            .transport
            .throttled(self.ctx.clock, telemetry::send::PATH)
            .is_some();
        match &r {
            Ok(r) if r.delivered => {
                if r.flushed > 0 {
                    log::info!(
                        "telemetry: {} queued sample(s) delivered after the fresh one, {} left",
                        r.flushed,
                        r.queued
                    );
                }
            }
            Ok(r) => log::warn!("telemetry not delivered; {} sample(s) queued", r.queued),
            Err(Error::Interrupted) => return,
            Err(e) => log::warn!("telemetry: {}", e.chain()),
        }
        // The window as this cycle's last answer described it; an older answer's
        // (a failed cycle) says nothing of now.
        let budget = match &r {
            Ok(r) if r.delivered => telemetry::budget(self.ctx.transport.rate_budget()),
            _ => None,
        };
        self.pace.after_post(interval, budget, throttled);
        let pct = self.ctx.cfg.schedule.jitter_percent as f64 / 100.0;
        let f = 1.0 + pct * (2.0 * self.ctx.clock.random() - 1.0);
        let r = self.ctx.clock.random();
        self.next_telemetry = now + self.pace.delay(interval, throttled, f, r);
    }

    /// The admin API's jobs: each performed now, answered on its own channel; one a
    /// download pause interrupted waits for the next tick.
    fn step_admin(&mut self) {
        loop {
            let Some(job) = self
                .pending
                .take()
                .or_else(|| self.admin.as_ref().and_then(|h| h.next_job()))
            else {
                return;
            };
            match self.perform(&job.action) {
                Err(Error::Interrupted) => {
                    self.pending = Some(job);
                    return;
                }
                Ok(m) => job.answer(Ok(m)),
                Err(e) => {
                    let status = match e {
                        Error::Unreachable { .. }
                        | Error::Protocol { .. }
                        | Error::Throttled { .. } => 502,
                        Error::LicenseRefused(_)
                        | Error::LicenseExpired(_)
                        | Error::TenantInactive(_) => 403,
                        Error::PackageRejected(_) => 422,
                        Error::NoSpace { .. } => 507,
                        Error::Http { status, .. } if status == 409 || status == 503 => status,
                        _ => 500,
                    };
                    job.answer(Err((status, e.to_string())));
                }
            }
            if self.new_agent.is_some() {
                return;
            }
        }
    }

    /// One admin action, under the state lock.
    fn perform(&mut self, a: &admin::Action) -> Result<String> {
        let now = self.ctx.clock.monotonic();
        if matches!(a, admin::Action::Apply(_)) && !self.license.allows_services() {
            return Err(Error::LicenseRefused(format!(
                "licence {}: updates wait for a valid license",
                self.license.as_str()
            )));
        }
        // Measured before the lock, as in the regular cycle: the sources must not hold it.
        let action = match a {
            admin::Action::Apply(id) => Perform::Apply(id),
            admin::Action::Check => Perform::Check,
            admin::Action::TelemetryPush => {
                Perform::Push(telemetry::measure(&self.ctx, &mut self.collector))
            }
        };
        let Some(_lock) = self.lock() else {
            return Err(Error::Http {
                status: 503,
                message: "agent.lock is held by another command; try again".into(),
            });
        };
        match action {
            Perform::Apply(id) => {
                let before = update::active(&self.ctx.cfg).0;
                let due = self.due_besides_check();
                let rep = self.updater.apply(&self.ctx, id, due.max(now))?;
                self.pick_up_new_agent(before);
                Ok(format!(
                    "version {} installée et validée (slot {})",
                    rep.version, rep.slot
                ))
            }
            Perform::Check => {
                self.counters.checks += 1;
                let r = update::check(&self.ctx)?;
                self.next_check = now + self.jittered(self.ctx.cfg.updates.check_interval);
                Ok(if r.available {
                    format!(
                        "mise à jour {} disponible",
                        r.latest_version.as_deref().unwrap_or("?")
                    )
                } else {
                    "aucune mise à jour disponible".into()
                })
            }
            Perform::Push(m) => {
                self.counters.telemetry += 1;
                let r = telemetry::send_cycle(&self.ctx, m, telemetry::pace::SPARE_FLUSH, true)?;
                if r.delivered {
                    Ok("télémétrie envoyée".into())
                } else {
                    Err(Error::NotDelivered(format!(
                        "telemetry not delivered; {} sample(s) queued",
                        r.queued
                    )))
                }
            }
        }
    }

    /// When validation or telemetry next fall due (a download pauses for them).
    fn due_besides_check(&self) -> Duration {
        let mut due = self.next_validate;
        if self.ctx.cfg.telemetry.enabled {
            due = due.min(self.next_telemetry);
        }
        due
    }

    /// A committed update that carries an agent: run it now rather than at the next
    /// reboot (the init script would pick the same binary). It answered --version
    /// before the commit.
    fn pick_up_new_agent(&mut self, before: Option<String>) {
        let after = update::active(&self.ctx.cfg).0;
        if after.is_some() && after != before {
            let agent = Layout::new(&self.ctx.cfg.install.root)
                .current()
                .join(update::AGENT_IN_SLOT);
            if agent.is_file() {
                self.new_agent = Some(agent);
            }
        }
    }

    fn step_check(&mut self) {
        let now = self.ctx.clock.monotonic();
        let interval = self.ctx.cfg.updates.check_interval;
        if !self.license.allows_services() {
            // Updates are part of the licensed service; try again next interval.
            self.next_check = now + self.jittered(interval);
            return;
        }
        let Some(_lock) = self.lock() else {
            self.next_check = now + LOCK_RETRY;
            return;
        };
        self.counters.checks += 1;
        let before = update::active(&self.ctx.cfg).0;
        // A download pauses when telemetry or revalidation falls due (its partial
        // file kept): they run, then this step comes again at once and resumes it.
        let due = self.due_besides_check();
        match self.updater.step(&self.ctx, due.max(now)) {
            Ok(()) => {}
            // A signal, or the pause above: `next_check` stays due.
            Err(Error::Interrupted) => return,
            Err(e) => log::warn!("update: {}", e.chain()),
        }
        self.next_check = now + self.jittered(interval);
        self.pick_up_new_agent(before);
    }
}

/// An admin action as performed: a push carries the sample measured before the
/// state lock (the sources must not hold it).
enum Perform<'a> {
    Apply(&'a str),
    Check,
    Push(telemetry::Measured),
}

/// Hands the heap freed by a step back to the kernel before sleeping for minutes, so
/// the idle RSS is what the daemon keeps, not its peak during a TLS exchange.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointers change.
    unsafe {
        libc::malloc_trim(0);
    }
}
