//! No downgrades (TUF's rollback attack): the highest version ever installed is kept
//! in durable state, and a lower one is refused, from the backend always and from
//! `install` unless the operator says `--allow-downgrade` (docs/security.md).
//!
//! The highest counts `state_dir/update/highest-version`, every slot record, the
//! active slot's own version (a slot laid out by hand: its `manifest.json` or
//! `VERSION`) and `install.root/factory-version`: a box that never installed a
//! package is protected from its first update on. The file is seeded by
//! `board/install.sh`, and rewritten (atomically) before each install and at every
//! commit, so a record dropped later (a slot marked bad) does not lose the version.

use super::slots::{Layout, SLOTS};
use super::version::Semver;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::state_paths::StatePaths;

fn parse(v: &str) -> Option<Semver> {
    Semver::parse(v.trim())
}

/// The highest version this box ever had (stored, recorded, the active slot's, the
/// factory's); None on a box with no comparable version anywhere.
pub(crate) fn highest(cfg: &Config) -> Option<String> {
    let layout = Layout::new(&cfg.install.root);
    let paths = StatePaths::new(&cfg.state_dir);
    let stored = fsutil::read_bounded(&paths.highest_version(), 256)
        .ok()
        .map(|d| String::from_utf8_lossy(&d).trim().to_string());
    let recorded = SLOTS
        .iter()
        .filter_map(|s| layout.record(s).map(|r| r.version));
    let active = layout.active().map(|s| layout.version(&s));
    let factory = super::factory::read(layout.root());
    stored
        .into_iter()
        .chain(recorded)
        .chain(active)
        .chain(factory)
        .filter_map(|v| parse(&v).map(|p| (p, v)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

/// Stores the highest version (atomically), when there is one: before an install,
/// and at every commit.
pub(crate) fn store(cfg: &Config) -> Result<Option<String>> {
    let Some(high) = highest(cfg) else {
        return Ok(None);
    };
    let paths = StatePaths::new(&cfg.state_dir);
    fsutil::ensure_dir(&paths.update(), 0o700)?;
    fsutil::atomic_write(
        &paths.highest_version(),
        format!("{high}\n").as_bytes(),
        0o644,
    )?;
    Ok(Some(high))
}

/// Refuses `version` when it is lower than the highest installed (or cannot be
/// compared with it), unless `allow`. Stores the highest on the way.
pub(crate) fn check(cfg: &Config, version: &str, allow: bool) -> Result<()> {
    let Some(high) = store(cfg)? else {
        return Ok(());
    };
    let (Some(h), new) = (parse(&high), parse(version)) else {
        return Ok(());
    };
    let lower = match &new {
        Some(n) => *n < h,
        None => true,
    };
    if !lower {
        return Ok(());
    }
    if allow {
        log::warn!("installing {version}, lower than {high} installed before (--allow-downgrade)");
        return Ok(());
    }
    Err(Error::PackageRejected(match new {
        Some(_) => format!(
            "version {version} is lower than {high}, installed before: downgrades are refused (an operator may `install --allow-downgrade`)"
        ),
        None => format!(
            "version {version:?} cannot be compared with {high}, installed before: refused as a possible downgrade"
        ),
    }))
}

/// The signed manifest must name the version the check announced (TUF's
/// mix-and-match and freeze: a correctly signed but other package served for it).
pub(crate) fn bind(announced: Option<&str>, manifest: Option<&str>) -> Result<()> {
    let (Some(a), Some(m)) = (announced, manifest) else {
        return Ok(());
    };
    let same = match (parse(a), parse(m)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim() == m.trim(),
    };
    if same {
        Ok(())
    } else {
        Err(Error::PackageRejected(format!(
            "manifest.json says version {m}, the backend announced {a}: not the package announced"
        )))
    }
}
