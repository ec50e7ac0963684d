//! The main CyberSensei services: stop, start, health-check, argv without a shell.
//!
//! Every command runs with `CYBERSENSEI_SLOT_DIR` set to the slot it concerns (when
//! known), its output inherited, and a deadline measured on the injected clock: a
//! command that hangs is killed, so a broken service script cannot park the agent.
//! Children get an environment without the agent's secrets (`child_command`) and a
//! process group of their own, killed whole at the deadline (a script's own children
//! would otherwise live on, holding our stdout). After SIGTERM a health command is
//! killed at once and any other within `STOP_GRACE`, so the agent stops promptly.

use crate::clock::Clock;
use crate::config::Services;
use crate::error::{Error, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable naming the slot directory the services should run from.
pub(crate) const SLOT_ENV: &str = "CYBERSENSEI_SLOT_DIR";
/// Pause between two rounds of health commands.
const HEALTH_RETRY: Duration = Duration::from_millis(500);
/// How often a running child is polled.
const POLL: Duration = Duration::from_millis(10);
/// After SIGTERM, how long a start/stop command may still run (the agent must exit
/// within 5 s, INTERFACE.md).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);
/// Variables of the agent's environment a child never sees.
pub(crate) const SECRET_ENV: &[&str] = &[crate::key::ENV];

/// A command for a child of the agent (service command, hook, staged agent probe):
/// no secrets in its environment, its own process group (see [`wait_child`]).
pub(crate) fn child_command(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(prog);
    for v in SECRET_ENV {
        cmd.env_remove(v);
    }
    cmd.process_group(0);
    cmd
}

/// A [`child_command`] that sees nothing of the agent's environment (the license key,
/// proxy credentials, the init script's flags): `PATH` and `LANG` only, stdin
/// closed, run from `dir`. For programs that are not the operator's own commands: a
/// package's hooks and agent, the application's metrics command.
pub(crate) fn clean_command(prog: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut c = child_command(prog);
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

/// Why [`wait_child`] abandoned a child (and killed its whole group).
#[derive(Debug)]
pub(crate) enum Abandoned {
    /// The budget ran out.
    Timeout(Duration),
    /// SIGTERM/SIGINT asked the agent to stop.
    Stop,
    /// waitpid failed.
    Wait(std::io::Error),
}

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abandoned::Timeout(d) => write!(f, "timed out after {:.1}s", d.as_secs_f64()),
            Abandoned::Stop => write!(f, "stopped: the agent is shutting down"),
            Abandoned::Wait(e) => write!(f, "waiting: {e}"),
        }
    }
}

/// Runs every `services.stop` command (without a slot in the environment).
pub(crate) fn stop(s: &Services, clock: &dyn Clock) -> Result<()> {
    stop_in(s, None, clock)
}

/// Runs every `services.stop` command for the services of `slot`.
pub(crate) fn stop_in(s: &Services, slot: Option<&Path>, clock: &dyn Clock) -> Result<()> {
    run_all("stop", &s.stop, slot, clock, s.health_timeout)
}

/// Runs every `services.start` command with the services pointed at `slot`.
pub(crate) fn start_in(s: &Services, slot: Option<&Path>, clock: &dyn Clock) -> Result<()> {
    run_all("start", &s.start, slot, clock, s.health_timeout)
}

/// Health check of the services of `slot`: every `services.health` command must exit
/// 0; failing rounds are retried until `health_timeout` has passed on `clock`.
/// An empty list means "started is healthy".
pub(crate) fn health_in(s: &Services, slot: Option<&Path>, clock: &dyn Clock) -> Result<()> {
    if s.health.is_empty() {
        return Ok(());
    }
    let timeout = s.health_timeout;
    let start = clock.monotonic();
    let mut round = 0u32;
    loop {
        round += 1;
        let left = timeout.saturating_sub(clock.monotonic().saturating_sub(start));
        let outcome = run_all("health", &s.health, slot, clock, left);
        match outcome {
            Ok(()) => {
                log::info!("health check passed (round {round})");
                return Ok(());
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                let elapsed = clock.monotonic().saturating_sub(start);
                if elapsed + HEALTH_RETRY >= timeout {
                    return Err(Error::CommandFailed(format!(
                        "health check failed for {}s ({round} rounds): {}",
                        timeout.as_secs(),
                        e.chain()
                    )));
                }
                log::info!("health check round {round} failed: {}; retrying", e.chain());
                clock.sleep(HEALTH_RETRY);
                if crate::signals::stop_requested() {
                    return Err(Error::Interrupted);
                }
            }
        }
    }
}

fn run_all(
    what: &str,
    cmds: &[Vec<String>],
    slot: Option<&Path>,
    clock: &dyn Clock,
    budget: Duration,
) -> Result<()> {
    let start = clock.monotonic();
    for argv in cmds {
        let left = budget.saturating_sub(clock.monotonic().saturating_sub(start));
        run_one(what, argv, slot, clock, left)?;
    }
    Ok(())
}

/// Runs one argv to completion within `budget`; non-zero exit, signal or timeout fail.
pub(crate) fn run_one(
    what: &str,
    argv: &[String],
    slot: Option<&Path>,
    clock: &dyn Clock,
    budget: Duration,
) -> Result<()> {
    let Some((prog, args)) = argv.split_first() else {
        return Ok(());
    };
    let shown = argv.join(" ");
    let mut cmd = child_command(prog);
    cmd.args(args).stdin(Stdio::null());
    match slot {
        Some(dir) => cmd.env(SLOT_ENV, dir),
        None => cmd.env_remove(SLOT_ENV),
    };
    // A health check's output is shown labelled (an operator watching `update` must
    // know whose words they are); stop/start commands keep our stdout/stderr, since
    // the daemons they launch may hold their output for good.
    let labelled = what == "health";
    if labelled {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("{what} command `{shown}`: cannot run"), e))?;
    let forwarders =
        labelled.then(|| crate::child_output::forward(&mut child, &format!("{what} `{shown}`")));
    // A health command is only a probe: dropped at once on SIGTERM.
    let grace = if what == "health" {
        Duration::ZERO
    } else {
        STOP_GRACE
    };
    let waited = wait_child(child, clock, budget, grace);
    if let Some(f) = forwarders {
        f.finish(Duration::from_millis(500));
    }
    let status = match waited {
        Ok(st) => st,
        Err(Abandoned::Stop) => {
            log::warn!("{what} command `{shown}`: killed, the agent is stopping");
            return Err(Error::Interrupted);
        }
        Err(e) => {
            return Err(Error::CommandFailed(format!(
                "{what} command `{shown}`: {e}"
            )))
        }
    };
    if status.success() {
        log::debug!("{what} command `{shown}`: ok");
        Ok(())
    } else {
        Err(Error::CommandFailed(format!(
            "{what} command `{shown}`: {status}"
        )))
    }
}

/// Kills the child's whole process group (it leads one when started by
/// [`child_command`]; otherwise only the child), then reaps the child.
fn kill_group(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: getpgid/kill on our own child's pid; a group id equal to the pid
    // means the child leads its own group, never ours.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `child` at most `budget` on `clock`, or `grace` once a stop was
/// requested; past that its whole process group is killed and the child reaped.
pub(crate) fn wait_child(
    mut child: Child,
    clock: &dyn Clock,
    budget: Duration,
    grace: Duration,
) -> std::result::Result<std::process::ExitStatus, Abandoned> {
    let start = clock.monotonic();
    let mut stop_seen: Option<Duration> = None;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(Abandoned::Wait(e));
            }
        }
        let now = clock.monotonic();
        if crate::signals::stop_requested() {
            let since = *stop_seen.get_or_insert(now);
            if now.saturating_sub(since) >= grace {
                kill_group(&mut child);
                return Err(Abandoned::Stop);
            }
        }
        if now.saturating_sub(start) >= budget {
            kill_group(&mut child);
            return Err(Abandoned::Timeout(budget));
        }
        // The injected clock measures the deadline; a short real pause keeps a fake
        // clock (which does not sleep) from spinning ahead of a real child.
        std::thread::sleep(Duration::from_millis(1));
        clock.sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, SystemClock};

    fn svc(health: Vec<Vec<String>>, timeout: u64) -> Services {
        Services {
            stop: vec![],
            start: vec![],
            health,
            health_timeout: Duration::from_secs(timeout),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn empty_health_is_healthy() {
        let c = FakeClock::new(0.0);
        assert!(health_in(&svc(vec![], 1), None, &c).is_ok());
    }

    #[test]
    fn health_retries_until_success() {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("n");
        // Fails twice, then succeeds: the retry loop must get there.
        let script = format!(
            "c=$(cat {0} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {0}; [ $c -ge 3 ]",
            n.display()
        );
        let c = FakeClock::new(0.0);
        health_in(&svc(vec![sh(&script)], 30), None, &c).unwrap();
        assert_eq!(std::fs::read_to_string(&n).unwrap().trim(), "3");
    }

    #[test]
    fn health_gives_up_at_timeout() {
        let c = FakeClock::new(0.0);
        let t0 = c.monotonic();
        let e = health_in(&svc(vec![vec!["false".into()]], 5), None, &c).unwrap_err();
        assert!(e.to_string().contains("health check failed"), "{e}");
        assert!(c.monotonic() - t0 >= Duration::from_secs(4));
    }

    #[test]
    fn slot_dir_is_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let s = Services {
            stop: vec![],
            start: vec![sh(&format!("echo \"${SLOT_ENV}\" > {}", out.display()))],
            health: vec![],
            health_timeout: Duration::from_secs(5),
        };
        start_in(&s, Some(Path::new("/opt/x/slots/b")), &SystemClock::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "/opt/x/slots/b"
        );
    }

    #[test]
    fn hanging_command_is_killed() {
        let c = SystemClock::new();
        let t = std::time::Instant::now();
        let e = run_one(
            "start",
            &["sleep".into(), "30".into()],
            None,
            &c,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_fails_clearly() {
        let e = run_one(
            "stop",
            &["/nonexistent/prog".into()],
            None,
            &SystemClock::new(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot run"), "{e}");
    }
}
