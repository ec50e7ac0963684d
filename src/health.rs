//! The verdict at the top of `status`: is this box healthy, and if not, what to do.
//!
//! A pure function of status.json and two facts about the box (config file present,
//! license key available), so that every case is unit-tested without a box.

use crate::status::{LicenseState, Status, UpdateState};

/// How the box is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Nothing to do.
    Healthy,
    /// Running, but something needs an operator soon (offline, failed update...).
    Attention,
    /// The box does not do its job (services stopped or never licensed).
    Unhealthy,
}

impl Level {
    /// The word shown on the first line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Attention => "needs attention",
            Level::Unhealthy => "NOT HEALTHY",
        }
    }
}

/// The three lines: verdict, why, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) level: Level,
    pub(crate) why: String,
    pub(crate) todo: String,
}

/// Facts `status` knows besides status.json.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// `Some("no config file at P (…)")` when there is none (defaults in use).
    pub(crate) missing_config: Option<String>,
    /// The license key can be read (environment or key file).
    pub(crate) key_available: bool,
    /// `license.expiry_warning_days`.
    pub(crate) expiry_warning_days: u64,
}

const DOCTOR: &str = "`cybersensei-agent doctor` names the failing step";

impl Verdict {
    fn new(level: Level, why: String, todo: &str) -> Verdict {
        Verdict {
            level,
            why,
            todo: todo.to_string(),
        }
    }
}

/// Decides the verdict; the first problem in order of gravity wins.
pub(crate) fn verdict(s: &Status, f: &Facts) -> Verdict {
    if let Some(p) = &f.missing_config {
        return Verdict::new(
            Level::Unhealthy,
            format!("{p}: the daemon cannot start (state below read with the defaults)"),
            "install one (board/install.sh lays out the default) or name it with -c PATH",
        );
    }
    license_refused(s, f)
        .or_else(|| update_problem(s))
        .or_else(|| needs_attention(s, f))
        .unwrap_or_else(|| healthy(s))
}

/// `prefix`, followed by the license message when there is one.
fn with_license_message(s: &Status, prefix: &str) -> String {
    match &s.license.message {
        Some(m) if !m.is_empty() => format!("{prefix}: {m}"),
        _ => prefix.to_string(),
    }
}

/// The license forbids running the services (refused, expired, disabled, never
/// validated).
fn license_refused(s: &Status, f: &Facts) -> Option<Verdict> {
    let l = &s.license;
    let msg = |prefix: &str| with_license_message(s, prefix);
    let (why, todo) = match l.state {
        LicenseState::Invalid => (
            msg("the backend refused the license key"),
            "store the right key: echo KEY | cybersensei-agent set-key".to_string(),
        ),
        LicenseState::Expired => (
            msg("the license expired; services are stopped"),
            "renew with CyberSensei, then `cybersensei-agent validate`".to_string(),
        ),
        LicenseState::Inactive => (
            msg("the tenant is disabled on the backend; services are stopped"),
            "contact CyberSensei support, then `cybersensei-agent validate`".to_string(),
        ),
        LicenseState::Unknown if !f.key_available => (
            "never validated: no license key on this box".into(),
            "echo KEY | cybersensei-agent set-key (stores it, mode 0600, and validates)"
                .to_string(),
        ),
        LicenseState::Unknown if l.message.is_none() => (
            "this box has never validated its license".into(),
            "run `cybersensei-agent validate`".to_string(),
        ),
        LicenseState::Unknown => (
            match &l.message {
                Some(m) if m.contains("never validated") => m.clone(),
                _ => msg("never validated"),
            },
            format!("{DOCTOR}; then `cybersensei-agent validate`"),
        ),
        LicenseState::Grace | LicenseState::Valid => return None,
    };
    Some(Verdict::new(Level::Unhealthy, why, &todo))
}

/// The last update failed (rolled back or not) or cannot install on this box.
fn update_problem(s: &Status) -> Option<Verdict> {
    let u = &s.update;
    if u.state == UpdateState::RolledBack {
        return Some(Verdict::new(
            Level::Attention,
            format!(
                "update {} failed and was rolled back; version {} runs",
                u.latest_version.as_deref().unwrap_or("?"),
                s.version
            ),
            "nothing urgent: send the log (services.health output) to CyberSensei",
        ));
    }
    if u.state == UpdateState::Failed {
        return Some(Verdict::new(
            Level::Attention,
            format!(
                "the last update failed: {}",
                u.last_error.as_deref().unwrap_or("no detail recorded")
            ),
            "see `cybersensei-agent help update` for the cause's exit code; `cybersensei-agent update` retries",
        ));
    }
    if u.node_too_old == Some(true) {
        return Some(Verdict::new(
            Level::Attention,
            format!(
                "update {} is blocked: it needs this box at version {} or later (it runs {})",
                u.latest_version.as_deref().unwrap_or("?"),
                u.required_node_version.as_deref().unwrap_or("?"),
                s.version
            ),
            "bring the box to that version first (a full package: `cybersensei-agent install ZIP`), or ask CyberSensei",
        ));
    }
    None
}

/// Running, but soon in trouble: offline on a cached validation, telemetry piling
/// up, the license near its end.
fn needs_attention(s: &Status, f: &Facts) -> Option<Verdict> {
    let l = &s.license;
    if l.state == LicenseState::Grace {
        return Some(Verdict::new(
            Level::Attention,
            with_license_message(s, "backend unreachable, running on a cached validation"),
            &format!("restore the network before the grace period ends; {DOCTOR}"),
        ));
    }
    let t = &s.telemetry;
    if t.queued > 0 {
        if let Some(e) = &t.last_error {
            return Some(Verdict::new(
                Level::Attention,
                format!("telemetry not delivered ({} queued): {e}", t.queued),
                &format!("{DOCTOR}; `cybersensei-agent telemetry --once` sends the backlog"),
            ));
        }
    }
    if let Some(d) = l.days_left {
        if d >= 0 && (d as u64) <= f.expiry_warning_days {
            return Some(Verdict::new(
                Level::Attention,
                format!("the license expires in {d} days"),
                "renew with CyberSensei before it expires",
            ));
        }
    }
    None
}

/// All is well: tenant, days left, version and slot.
fn healthy(s: &Status) -> Verdict {
    let l = &s.license;
    let tenant = l.tenant_name.as_deref().unwrap_or("tenant ?");
    let left = l
        .days_left
        .map(|d| format!(", {d} days left"))
        .unwrap_or_default();
    let slot = s
        .slot
        .as_deref()
        .map(|x| format!(" (slot {x})"))
        .unwrap_or_else(|| " (factory, no slot yet)".into());
    Verdict::new(
        Level::Healthy,
        format!(
            "license valid ({tenant}{left}), version {}{slot}",
            s.version
        ),
        "nothing",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            missing_config: None,
            key_available: true,
            expiry_warning_days: 30,
        }
    }

    fn valid() -> Status {
        let mut s = Status::default();
        s.license.state = LicenseState::Valid;
        s.license.tenant_name = Some("Acme".into());
        s.license.days_left = Some(200);
        s.version = "1.2.0".into();
        s.slot = Some("a".into());
        s
    }

    #[test]
    fn fresh_box_says_never_validated_and_what_to_run() {
        let v = verdict(&Status::default(), &facts());
        assert_eq!(v.level, Level::Unhealthy);
        assert!(v.why.contains("never validated"), "{v:?}");
        assert!(v.todo.contains("cybersensei-agent validate"), "{v:?}");
        let v = verdict(
            &Status::default(),
            &Facts {
                key_available: false,
                ..facts()
            },
        );
        assert!(v.todo.contains("set-key"), "{v:?}");
    }

    #[test]
    fn unreachable_never_validated_points_at_doctor() {
        let mut s = Status::default();
        s.license.message = Some("backend unreachable: host not found (DNS)".into());
        let v = verdict(&s, &facts());
        assert!(v.why.contains("host not found"), "{v:?}");
        assert!(v.todo.contains("doctor"), "{v:?}");
    }

    #[test]
    fn each_state_has_its_verdict() {
        assert_eq!(verdict(&valid(), &facts()).level, Level::Healthy);
        assert!(verdict(&valid(), &facts())
            .why
            .contains("Acme, 200 days left"));
        let mut s = valid();
        s.license.state = LicenseState::Expired;
        assert_eq!(verdict(&s, &facts()).level, Level::Unhealthy);
        s.license.state = LicenseState::Invalid;
        assert!(verdict(&s, &facts()).todo.contains("set-key"));
        s.license.state = LicenseState::Inactive;
        assert!(verdict(&s, &facts()).todo.contains("support"));
        s.license.state = LicenseState::Grace;
        assert_eq!(verdict(&s, &facts()).level, Level::Attention);
        let mut s = valid();
        s.update.state = UpdateState::RolledBack;
        assert!(verdict(&s, &facts()).why.contains("rolled back"));
        let mut s = valid();
        s.telemetry.queued = 4;
        s.telemetry.last_error = Some("timed out".into());
        assert!(verdict(&s, &facts()).why.contains("4 queued"));
        let mut s = valid();
        s.update.node_too_old = Some(true);
        s.update.required_node_version = Some("2.0.0".into());
        assert!(verdict(&s, &facts()).why.contains("2.0.0"));
        let mut s = valid();
        s.license.days_left = Some(10);
        assert!(verdict(&s, &facts()).why.contains("expires in 10 days"));
        let v = verdict(
            &valid(),
            &Facts {
                missing_config: Some("no config file at /etc/x.json".into()),
                ..facts()
            },
        );
        assert!(
            v.why.contains("/etc/x.json") && v.todo.contains("-c"),
            "{v:?}"
        );
    }
}
