//! A/B updates (PROTOCOL.md §2–3). STUB: being written in another branch.

use crate::config::Config;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// What `/update/check` said, as the CLI and status report it.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub available: bool,
    pub current_version: String,
    pub latest_version: Option<String>,
    pub update_id: Option<String>,
    pub changelog: Option<String>,
    pub file_size: Option<u64>,
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct UpdateReport {
    /// Version now running.
    pub version: String,
    /// Slot now active ("a" or "b").
    pub slot: String,
    /// False when there was nothing to do (already up to date).
    pub installed: bool,
}

/// The active slot ("a"/"b", None on a fresh box) and its installed version ("0.0.0" if none).
pub fn active(cfg: &Config) -> (Option<String>, String) {
    let _ = cfg;
    (None, "0.0.0".into())
}

/// Completes or undoes an interrupted update; run before anything else at every start.
pub fn recover(ctx: &Ctx) -> Result<()> {
    let _ = ctx;
    Ok(())
}

/// Asks the backend once; records the answer in status.json.
pub fn check(ctx: &Ctx) -> Result<CheckReport> {
    let _ = ctx;
    Err(Error::Other("update check not implemented yet".into()))
}

/// Check, download, verify and install now.
pub fn update_now(ctx: &Ctx) -> Result<UpdateReport> {
    let _ = ctx;
    Err(Error::Other("update not implemented yet".into()))
}

/// Installs a local package file through the same verification and A/B path.
pub fn install_file(ctx: &Ctx, zip: &std::path::Path) -> Result<UpdateReport> {
    let _ = (ctx, zip);
    Err(Error::Other("install not implemented yet".into()))
}

/// Switches back to the other slot if it holds a complete installation.
pub fn rollback(ctx: &Ctx) -> Result<UpdateReport> {
    let _ = ctx;
    Err(Error::Other("rollback not implemented yet".into()))
}

/// The daemon's hourly step: check, then download/install as `auto_*` allow.
pub fn daemon_step(ctx: &Ctx) -> Result<()> {
    check(ctx).map(|_| ())
}
