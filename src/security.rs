//! Process hardening and the `security` part of status.json (docs/security.md).

use crate::config::Config;
use crate::key::KeySource;
use crate::status::{SecurityStatus, Status};
use crate::update::trust;

/// Makes the process non-dumpable: no core file (which would hold the license key)
/// on a crash, and /proc/<pid>/mem, environ and ptrace closed to other users. Called
/// first thing in `main`; children get it back at exec.
pub fn harden_process() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Lets a closed stdout end a one-shot command quietly (`status | head -1`), the way
/// shell tools behave, instead of the write failing with EPIPE and `println!`
/// panicking. Not for `run`: the daemon must not die with its log reader.
pub fn default_sigpipe() {
    // SAFETY: restoring the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A warning when `license.key_file` is readable by group or others (and the key is
/// not given by the environment instead).
pub(crate) fn key_file_warning(cfg: &Config) -> Option<String> {
    match KeySource::of(&cfg.license.key_file) {
        KeySource::Env => None,
        KeySource::File(p) => crate::key::file_exposure(&p),
    }
}

/// The security summary of this box now.
pub(crate) fn summary(cfg: &Config) -> SecurityStatus {
    let mut s = SecurityStatus::default();
    match trust::load(cfg) {
        Ok(t) if !t.required => {
            s.signatures = "off".into();
            s.warnings.push(
                "update signatures are OFF (updates.public_key not set): any package the backend serves is installed as root, protected by TLS alone".into(),
            );
        }
        Ok(t) => {
            s.signatures = "required".into();
            s.trusted_keys = t.ids();
            s.key_source = Some(t.source.clone());
            if t.keys.is_empty() {
                s.warnings.push(format!(
                    "no trusted update key found ({}): every update package is refused",
                    t.problems.join("; ")
                ));
            } else {
                for p in &t.problems {
                    s.warnings.push(format!("update key: {p}"));
                }
            }
        }
        Err(e) => {
            s.signatures = "required".into();
            s.warnings
                .push(format!("{}: every update package is refused", e.chain()));
        }
    }
    if let Some(w) = key_file_warning(cfg) {
        s.warnings.push(w);
    }
    s
}

/// Writes the summary into status.json and logs each warning (daemon start).
pub(crate) fn report(cfg: &Config, now_unix: f64) {
    let s = summary(cfg);
    for w in &s.warnings {
        log::warn!("security: {w}");
    }
    if let Err(e) = Status::modify(&cfg.state_dir, now_unix, |st| st.security = s) {
        log::warn!("status.json: {}", e.chain());
    }
}
