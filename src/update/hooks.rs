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
use std::process::Stdio;
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
    let hook = slot.join(rel);
    match std::fs::symlink_metadata(&hook) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::CommandFailed(format!(
                "{rel} in the new slot is not a regular file"
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", hook.display()), e)),
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    log::info!("running {rel} of version {version}");
    // Its own process group (killed whole), and a clean environment: code from a
    // package never sees the agent's (the license key may be in
    // `CYBERSENSEI_LICENSE_KEY`, proxy credentials in `HTTPS_PROXY`).
    let mut c = services::child_command(&hook);
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .arg(slot)
        .current_dir(slot)
        .env(services::SLOT_ENV, slot)
        .env("CYBERSENSEI_VERSION", version)
        .env("CYBERSENSEI_HOOK", name)
        .stdin(Stdio::null());
    match old_slot {
        Some(o) => c.env("CYBERSENSEI_OLD_SLOT_DIR", o),
        None => &mut c,
    };
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
