//! One error type for the agent, with the exit code each variant maps to.

use std::fmt;

/// Exit codes of INTERFACE.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LICENSE_REFUSED: u8 = 10;
    pub const LICENSE_EXPIRED: u8 = 11;
    pub const TENANT_INACTIVE: u8 = 12;
    pub const UNREACHABLE: u8 = 14;
    pub const ROLLED_BACK: u8 = 20;
    pub const PACKAGE_REJECTED: u8 = 21;
    pub const NO_SPACE: u8 = 22;
}

/// Everything that can go wrong, grouped by what the caller does about it.
#[derive(Debug)]
pub enum Error {
    /// Bad command line or configuration; the message names the field or argument.
    Config(String),
    /// The backend could not be reached or did not speak the protocol (after retries).
    Unreachable(String),
    /// The backend answered with a status that is an answer, not a fault (4xx).
    Http { status: u16, message: String },
    /// License refused: unknown key or `valid: false`.
    LicenseRefused(String),
    /// License expired.
    LicenseExpired(String),
    /// Tenant disabled.
    TenantInactive(String),
    /// The update package was refused before any slot was touched.
    PackageRejected(String),
    /// Not enough free space for the update.
    NoSpace(String),
    /// The update failed after the switch and was rolled back.
    RolledBack(String),
    /// The run was interrupted by a signal; work left in a resumable state.
    Interrupted,
    /// Filesystem or other local failure, with context.
    Io(String),
    /// Anything else.
    Other(String),
}

impl Error {
    /// The process exit code INTERFACE.md assigns to this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::USAGE,
            Error::Unreachable(_) => exit::UNREACHABLE,
            Error::LicenseRefused(_) => exit::LICENSE_REFUSED,
            Error::LicenseExpired(_) => exit::LICENSE_EXPIRED,
            Error::TenantInactive(_) => exit::TENANT_INACTIVE,
            Error::PackageRejected(_) => exit::PACKAGE_REJECTED,
            Error::NoSpace(_) => exit::NO_SPACE,
            Error::RolledBack(_) => exit::ROLLED_BACK,
            Error::Http { .. } | Error::Interrupted | Error::Io(_) | Error::Other(_) => {
                exit::FAILURE
            }
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Error {
        Error::Io(format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::Unreachable(m) => write!(f, "backend unreachable: {m}"),
            Error::Http { status, message } => write!(f, "backend answered {status}: {message}"),
            Error::LicenseRefused(m) => write!(f, "license refused: {m}"),
            Error::LicenseExpired(m) => write!(f, "license expired: {m}"),
            Error::TenantInactive(m) => write!(f, "tenant inactive: {m}"),
            Error::PackageRejected(m) => write!(f, "update package rejected: {m}"),
            Error::NoSpace(m) => write!(f, "not enough disk space: {m}"),
            Error::RolledBack(m) => write!(f, "update rolled back: {m}"),
            Error::Interrupted => write!(f, "interrupted by a signal"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with the agent's error.
pub type Result<T> = std::result::Result<T, Error>;
