//! One error type for the agent, with the exit code each variant maps to.
//!
//! Shaped like ureq's: one enum, `#[non_exhaustive]`, variants that keep their cause
//! (`std::error::Error::source`) instead of flattening it into text, and the kinds
//! that callers act on kept apart (unreachable vs. not the protocol vs. throttled).
//! `Display` is the error's own words; the cause is only in `source()`, and
//! [`chain`] writes both, once, for a person or a log.

use std::fmt;
use std::time::Duration;

/// Exit codes (docs/reference.md, "Exit codes").
pub mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub(crate) const LICENSE_REFUSED: u8 = 10;
    pub(crate) const LICENSE_EXPIRED: u8 = 11;
    pub(crate) const TENANT_INACTIVE: u8 = 12;
    pub(crate) const UNREACHABLE: u8 = 14;
    pub(crate) const ROLLED_BACK: u8 = 20;
    pub(crate) const PACKAGE_REJECTED: u8 = 21;
    pub(crate) const NO_SPACE: u8 = 22;
}

/// A cause kept behind an error (a parse error, a library error).
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, grouped by what the caller does about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad command line or configuration; the message names the field or argument.
    Config(String),
    /// The backend could not be reached (network, TLS, 5xx) after the retries.
    Unreachable {
        /// What was asked, what went wrong, how many attempts.
        message: String,
        /// The HTTP client's error of the last attempt, when there was one.
        source: Option<Cause>,
    },
    /// The backend answered, but not in the protocol: a body the agent cannot read,
    /// a missing field, a header that contradicts the body. Not a network problem.
    Protocol {
        /// What was asked and what was wrong with the answer.
        message: String,
        /// The parse error, when there is one.
        source: Option<Cause>,
    },
    /// The backend asked us to wait (429, `Retry-After`); nothing more is sent to it
    /// before `retry_after` has passed.
    Throttled {
        /// The request that was refused (secrets removed).
        what: String,
        /// How long the backend asked to wait.
        retry_after: Duration,
    },
    /// The backend answered with a status that is an answer, not a fault (4xx).
    Http { status: u16, message: String },
    /// License refused: unknown key, `valid: false`, revoked, usage limit reached.
    LicenseRefused(String),
    /// License expired.
    LicenseExpired(String),
    /// Tenant disabled.
    TenantInactive(String),
    /// The update package was refused before any slot was touched.
    PackageRejected(String),
    /// Not enough free space (predicted, or ENOSPC/EDQUOT from the kernel).
    NoSpace {
        /// What was being written, and how much was missing when known.
        message: String,
        /// The kernel's error, when the disk actually filled up.
        source: Option<std::io::Error>,
    },
    /// The update failed after the switch and was rolled back.
    RolledBack(String),
    /// The run was interrupted by a signal; work left in a resumable state.
    Interrupted,
    /// Filesystem or other local failure: what was being done, and the cause.
    Io {
        /// What was being done and to which path.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `agent.lock` stayed held by another command or the daemon for the whole wait.
    Busy(String),
    /// The box has never validated its license, so it has no tenant id (telemetry
    /// and update checks need one).
    NeverValidated(String),
    /// The command cannot be done on this box as it is: a rollback with no complete
    /// other slot, an update this node is too old for.
    Refused(String),
    /// An update stopped before its switch (cut by a restart while staging): the
    /// active slot was not touched.
    Unfinished(String),
    /// The update the backend announced is no longer offered (deactivated or deleted
    /// after the check): the next check says what to install.
    Withdrawn(String),
    /// A service command or an update hook failed: its exit status, a spawn error,
    /// its timeout.
    CommandFailed(String),
    /// A telemetry sample asked for now (the admin API's push) was not delivered: it
    /// waits in the queue (how many are queued).
    NotDelivered(String),
    /// One of the agent's own values could not be written as JSON (a broken
    /// invariant: the types written have no map with non-string keys).
    Serialize {
        /// What was being written.
        what: String,
        /// serde's error.
        source: Cause,
    },
    /// A broken invariant of the agent itself, nothing an operator did, reported
    /// rather than panicking. Three uses, all in the journaled phase: the state
    /// machine has no move for an event, the driver and the machine disagree
    /// (`driver.rs`), a content package's journal has no active slot to copy from
    /// (`stage.rs`).
    Other(String),
}

impl Error {
    /// This error and its causes, each once ([`chain`]): for logs and status.json.
    /// (A `Display` adapter: a log line or a `format!` writes it without a
    /// `String` at every call site.)
    pub(crate) fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    /// The process exit code docs/reference.md assigns to this error.
    ///
    /// An answer that is not the protocol and a backend that asks us to wait both
    /// exit 14 like an unreachable backend: in each case the backend could not be used
    /// and a later attempt may work; the message says which it was.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::USAGE,
            Error::Unreachable { .. } | Error::Protocol { .. } | Error::Throttled { .. } => {
                exit::UNREACHABLE
            }
            Error::LicenseRefused(_) => exit::LICENSE_REFUSED,
            Error::LicenseExpired(_) => exit::LICENSE_EXPIRED,
            Error::TenantInactive(_) => exit::TENANT_INACTIVE,
            Error::PackageRejected(_) => exit::PACKAGE_REJECTED,
            Error::NoSpace { .. } => exit::NO_SPACE,
            Error::RolledBack(_) => exit::ROLLED_BACK,
            Error::Http { .. }
            | Error::Interrupted
            | Error::Io { .. }
            | Error::Busy(_)
            | Error::NeverValidated(_)
            | Error::Withdrawn(_)
            | Error::Refused(_)
            | Error::Unfinished(_)
            | Error::CommandFailed(_)
            | Error::NotDelivered(_)
            | Error::Serialize { .. }
            | Error::Other(_) => exit::FAILURE,
        }
    }

    /// Wraps an I/O error with what was being done and to which path. The one place
    /// where a full disk (ENOSPC, EDQUOT) becomes `NoSpace`.
    pub(crate) fn io(context: impl fmt::Display, e: std::io::Error) -> Error {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            Error::NoSpace {
                message: context.to_string(),
                source: Some(e),
            }
        } else {
            Error::Io {
                context: context.to_string(),
                source: e,
            }
        }
    }

    /// One of the agent's own values could not be written as JSON.
    pub(crate) fn serialize(what: impl Into<String>, e: serde_json::Error) -> Error {
        Error::Serialize {
            what: what.into(),
            source: Box::new(e),
        }
    }

    /// The backend could not be reached, with the HTTP client's error behind it.
    pub(crate) fn unreachable_by(message: impl Into<String>, source: Option<Cause>) -> Error {
        Error::Unreachable {
            message: message.into(),
            source,
        }
    }

    /// The backend could not be reached; no cause kept beyond the words.
    pub fn unreachable(message: impl Into<String>) -> Error {
        Error::Unreachable {
            message: message.into(),
            source: None,
        }
    }

    /// Not enough space, predicted before writing (no kernel error behind it).
    pub(crate) fn no_space(message: impl Into<String>) -> Error {
        Error::NoSpace {
            message: message.into(),
            source: None,
        }
    }

    /// An answer that is not the protocol, with the parse error behind it.
    pub(crate) fn protocol(message: impl Into<String>, source: impl Into<Option<Cause>>) -> Error {
        Error::Protocol {
            message: message.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::Unreachable { message, .. } => write!(f, "backend unreachable: {message}"),
            Error::Protocol { message, .. } => write!(
                f,
                "backend answer not understood: {message}; is backend.url the CyberSensei backend?"
            ),
            Error::Throttled { what, retry_after } => write!(
                f,
                "backend rate limit: {what} answered 429 Too Many Requests; it asks to wait {} before any new request",
                human_duration(*retry_after)
            ),
            Error::Http { status, message } => write!(f, "backend answered {status}: {message}"),
            Error::LicenseRefused(m) => write!(f, "license refused: {m}"),
            Error::LicenseExpired(m) => write!(f, "license expired: {m}"),
            Error::TenantInactive(m) => write!(f, "tenant inactive: {m}"),
            Error::PackageRejected(m) => write!(f, "update package rejected: {m}"),
            Error::NoSpace { message, .. } => write!(f, "not enough disk space: {message}"),
            Error::RolledBack(m) => write!(f, "update rolled back: {m}"),
            Error::Interrupted => write!(f, "interrupted by a signal"),
            Error::Io { context, .. } => write!(f, "{context}"),
            Error::Busy(m)
            | Error::NeverValidated(m)
            | Error::Withdrawn(m)
            | Error::Refused(m)
            | Error::Unfinished(m)
            | Error::CommandFailed(m)
            | Error::NotDelivered(m) => write!(f, "{m}"),
            Error::Serialize { what, .. } => write!(f, "serializing {what}"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Protocol {
                source: Some(s), ..
            }
            | Error::Unreachable {
                source: Some(s), ..
            } => Some(s.as_ref()),
            Error::NoSpace {
                source: Some(s), ..
            } => Some(s),
            Error::Io { source, .. } => Some(source),
            Error::Serialize { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// An error and its causes, each once: `what failed: why: why that`. How the CLI
/// prints an error, and how logs and status.json word one. A cause whose words are
/// already there (a transport message naming the network error) is not repeated.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let words = c.to_string();
        if !words.is_empty() && !out.contains(&words) {
            out.push_str(": ");
            out.push_str(&words);
        }
        cause = c.source();
    }
    out
}

/// An error shown with its causes ([`chain`]).
pub(crate) struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(self.0))
    }
}

/// Prints an error for the person at the terminal: `error: ` and its [`chain`],
/// scrubbed of secrets.
pub(crate) fn print(e: &Error) {
    eprintln!("error: {}", crate::redact::scrub(&chain(e)));
}

/// "45 s", "12 min", "3 h 5 min": how long, for a person.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 {
        format!("{} min", s.div_ceil(60))
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// Result with the agent's error.
pub(crate) type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn enospc_is_no_space_with_its_source() {
        let e = Error::io("writing x", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.exit_code(), exit::NO_SPACE);
        assert!(e.source().is_some());
        let e = Error::io("writing x", std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.exit_code(), exit::FAILURE);
        assert_eq!(e.to_string(), "writing x");
        assert_eq!(
            chain(&e),
            format!(
                "writing x: {}",
                std::io::Error::from_raw_os_error(libc::EACCES)
            )
        );
    }

    #[test]
    fn protocol_is_not_unreachable() {
        let parse = serde_json::from_str::<u64>("\"x\"").unwrap_err();
        let words = parse.to_string();
        let e = Error::protocol("GET /update/check", Some(Box::new(parse) as Cause));
        assert!(e.to_string().starts_with("backend answer not understood"));
        assert!(!e.to_string().contains("unreachable"));
        assert!(e.source().is_some());
        assert!(
            !e.to_string().contains(&words),
            "the cause is in source() only"
        );
        assert_eq!(chain(&e).matches(&words).count(), 1, "{}", chain(&e));
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 300)),
            "3 h 5 min"
        );
    }
}
