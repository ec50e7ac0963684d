//! Install hooks a package may ship (in the manner of Mender state scripts and RAUC
//! slot hooks): `hooks/post-install` runs once the new slot is complete, before it is
//! recorded (a failure rejects the package: the slot is cleared, exit 21);
//! `hooks/post-switch` runs after `current` names the new slot and before its
//! services start (database migrations belong there; a failure rolls back, exit 20).
//! Each is executed directly (no shell: the kernel honours a `#!` line) as
//! `<hook> <new slot dir>`, from the new slot, with `CYBERSENSEI_SLOT_DIR`,
//! `CYBERSENSEI_OLD_SLOT_DIR`, `CYBERSENSEI_VERSION` and `CYBERSENSEI_HOOK` set (and
//! only those, `PATH` and `LANG`: nothing of the agent's environment, which may hold
//! the license key), stdin closed, and killed after `updates.hook_timeout` seconds on
//! the injected clock.
//! A hook may run again after a power cut (recovery repeats the step it was in), so
//! it must be idempotent, as Mender asks of its scripts.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::services;
use std::path::Path;
use std::time::Duration;

/// Runs the slot's hook `rel` (e.g. `hooks/post-switch`) if the slot has one.
/// Ok(false) when there is none.
pub(crate) fn run(
    slot: &Path,
    rel: &str,
    old_slot: Option<&Path>,
    version: &str,
    clock: &dyn Clock,
    budget: Duration,
) -> Result<bool> {
    let Some(hook) = in_slot(slot, rel)? else {
        return Ok(false);
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    log::info!("running {rel} of version {version}");
    let mut c = package_command(&hook, slot);
    c.arg(slot)
        .env(services::SLOT_ENV, slot)
        .env("CYBERSENSEI_VERSION", version)
        .env("CYBERSENSEI_HOOK", name);
    match old_slot {
        Some(o) => c.env("CYBERSENSEI_OLD_SLOT_DIR", o),
        None => &mut c,
    };
    let _contain = Contain::start();
    let child = c
        .spawn()
        .map_err(|e| Error::io(format!("{rel} cannot run"), e))?;
    match services::wait_child(child, clock, budget, services::STOP_GRACE) {
        Ok(st) if st.success() => {
            super::journal::crash_point(&format!("hook:{name}"));
            Ok(true)
        }
        Ok(st) => Err(Error::CommandFailed(format!("{rel} failed ({st})"))),
        Err(services::Abandoned::Stop) => Err(Error::Interrupted),
        Err(e) => Err(Error::CommandFailed(format!("{rel}: {e}"))),
    }
}

/// A command for a program a package brings (a hook, the staged agent's probe): its
/// own process group (killed whole), run from the slot, stdin closed, and a clean
/// environment: code from a package never sees the agent's (the license key may be
/// in `CYBERSENSEI_LICENSE_KEY`, proxy credentials in `HTTPS_PROXY`, the init
/// script's `CYBERSENSEI_AGENT_FALLBACK`): `PATH` and `LANG` only.
pub(crate) fn package_command(prog: &Path, slot: &Path) -> std::process::Command {
    services::clean_command(prog, slot)
}

/// Keeps what a package's program starts from outliving it: while one runs, the
/// agent is a child subreaper (`PR_SET_CHILD_SUBREAPER`: whatever the program
/// orphans, `setsid` or a double fork included, becomes the agent's child, not
/// init's), and when it ends (done, failed, timed out) every process that became
/// the agent's descendant since is killed and reaped. Where the kernel or qemu-user
/// refuses the subreaper, a thread samples the descendants every 20 ms instead, and
/// those seen are killed by pid (and start time) at the end. A hook must not leave
/// processes behind: services are started by `services.start`.
pub(crate) struct Contain {
    before: Vec<i32>,
    was_reaper: bool,
    active: bool,
    watch: Option<Watch>,
}

/// The sampling thread of [`Contain`] without a subreaper: its stop flag, and the
/// `(pid, start time)` of every new descendant it saw.
type Watch = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<Vec<(i32, u64)>>,
);

impl Contain {
    /// Becomes a subreaper (or starts sampling) and notes the descendants there are.
    pub(crate) fn start() -> Contain {
        // The crate's unit tests run in parallel threads of one process: there the
        // other tests' children would look left behind (the binary's tests cover it).
        if cfg!(test) {
            return Contain {
                before: Vec::new(),
                was_reaper: true,
                active: false,
                watch: None,
            };
        }
        let mut was: libc::c_int = 0;
        // SAFETY: prctl(2) writes one int through the pointer we pass; scalars else.
        let reaper = unsafe {
            libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut was as *mut libc::c_int);
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) == 0
        };
        let before = descendants();
        let watch = (!reaper).then(|| {
            use std::sync::atomic::{AtomicBool, Ordering};
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let (flag, known) = (stop.clone(), before.clone());
            let h = std::thread::spawn(move || {
                let mut seen: Vec<(i32, u64)> = Vec::new();
                loop {
                    for p in descendants().into_iter().filter(|p| !known.contains(p)) {
                        if let Some((_, t)) = stat(p) {
                            if !seen.contains(&(p, t)) {
                                seen.push((p, t));
                            }
                        }
                    }
                    if flag.load(Ordering::Relaxed) {
                        return seen;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            (stop, h)
        });
        Contain {
            before,
            was_reaper: was != 0 || !reaper,
            active: true,
            watch,
        }
    }
}

impl Drop for Contain {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        if let Some((stop, h)) = self.watch.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let seen = h.join().unwrap_or_default();
            for (pid, t) in seen {
                if stat(pid).is_some_and(|(_, now)| now == t) {
                    // SAFETY: kill(2) with scalars; the start time matched: that process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let me = std::process::id() as i32;
        // A few rounds: a process may fork while the previous round kills.
        for _ in 0..20 {
            let left: Vec<i32> = descendants()
                .into_iter()
                .filter(|p| !self.before.contains(p))
                .collect();
            if left.is_empty() {
                break;
            }
            for &pid in &left {
                // SAFETY: kill(2) with scalars.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
            for &pid in &left {
                if stat(pid).is_some_and(|(pp, _)| pp == me) {
                    let mut st = 0;
                    // SAFETY: waitpid(2) on our own child, into a local int.
                    unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                }
            }
            log::warn!(
                "killed {} process(es) a package's program left behind",
                left.len()
            );
        }
        if !self.was_reaper {
            // SAFETY: prctl(2) with scalars.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0 as libc::c_ulong) };
        }
    }
}

/// A process's parent and start time (fields 4 and 22 of /proc/PID/stat, counted
/// after the command's `)`).
fn stat(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Every descendant of the agent (zombies included, until reaped).
fn descendants() -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| Some((pid, stat(pid)?.0)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![std::process::id() as i32];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// The path of the program `rel` of a slot, once opened beneath the slot without
/// following any link (`fsutil::open_beneath`) and found a regular file; None when
/// there is none. A link anywhere on the way refuses it: a hook or an agent is run
/// only from the slot's own files, never from where a chain of links leads.
pub(crate) fn in_slot(slot: &Path, rel: &str) -> Result<Option<std::path::PathBuf>> {
    let f = match crate::fsutil::open_beneath(slot, rel, libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR)) => {
            return Err(Error::CommandFailed(format!(
                "{rel} in the new slot is reached through a link (or a file stands on its way): refused"
            )))
        }
        Err(e) => return Err(Error::io(format!("opening {rel} in {}", slot.display()), e)),
    };
    match f.metadata() {
        Ok(m) if m.is_file() => Ok(Some(slot.join(rel))),
        _ => Err(Error::CommandFailed(format!(
            "{rel} in the new slot is not a regular file"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use std::os::unix::fs::PermissionsExt;

    fn hook(dir: &Path, body: &str) {
        let p = dir.join("hooks/post-switch");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn runs_with_the_slot_and_reports_failure_and_timeout() {
        let d = tempfile::tempdir().unwrap();
        let c = SystemClock::new();
        let t = Duration::from_secs(5);
        assert!(!run(d.path(), "hooks/post-switch", None, "1.0.0", &c, t).unwrap());
        hook(
            d.path(),
            "#!/bin/sh\necho \"$1|$CYBERSENSEI_SLOT_DIR|$CYBERSENSEI_VERSION|$CYBERSENSEI_HOOK|$(pwd)\" > out\n",
        );
        assert!(run(d.path(), "hooks/post-switch", None, "1.2.0", &c, t).unwrap());
        let out = std::fs::read_to_string(d.path().join("out")).unwrap();
        let p = d.path().display().to_string();
        let real = std::fs::canonicalize(d.path())
            .unwrap()
            .display()
            .to_string();
        assert_eq!(out.trim(), format!("{p}|{p}|1.2.0|post-switch|{real}"));
        hook(d.path(), "#!/bin/sh\nexit 4\n");
        let e = run(d.path(), "hooks/post-switch", None, "1", &c, t).unwrap_err();
        assert!(e.to_string().contains("failed"), "{e}");
        hook(d.path(), "#!/bin/sh\nexec sleep 30\n");
        let e = run(
            d.path(),
            "hooks/post-switch",
            None,
            "1",
            &c,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        hook(d.path(), "not a program\n");
        assert!(run(d.path(), "hooks/post-switch", None, "1", &c, t).is_err());
    }
}
