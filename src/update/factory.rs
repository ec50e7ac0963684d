//! The version a box was shipped with. A fresh box has no active slot; reporting
//! `0.0.0` then would make the real backend refuse every update that requires a
//! node version (`requiredNodeVersion: 1.0.0`). The factory image records what it
//! holds in `install.root/factory-version` (one line, written by board/install.sh
//! from `FACTORY_VERSION`), and the agent reports it until a slot is active.

use super::slots::Layout;
use crate::config::Config;
use crate::fsutil;
use std::path::{Path, PathBuf};

/// The file, relative to `install.root`.
pub(crate) const FILE: &str = "factory-version";

/// What a box reports when nothing at all is recorded.
pub(crate) const NONE: &str = "0.0.0";

/// `install.root/factory-version`.
pub(crate) fn path(root: &Path) -> PathBuf {
    root.join(FILE)
}

/// The active slot ("a"/"b", None on a fresh box) and its installed version (on a
/// fresh box, the factory version).
pub(crate) fn active(cfg: &Config) -> (Option<String>, String) {
    let l = Layout::new(&cfg.install.root);
    match l.active() {
        Some(s) => {
            let v = l.version(&s);
            (Some(s), v)
        }
        None => (None, version(&cfg.install.root)),
    }
}

/// The recorded factory version, if the file holds a plain version string.
pub(crate) fn read(root: &Path) -> Option<String> {
    let p = path(root);
    let data = fsutil::read_bounded(&p, 256).ok()?;
    let text = String::from_utf8_lossy(&data);
    let line = text.lines().next()?.trim();
    match super::verify::check_version(line, FILE) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!("{}: {e}; reporting {NONE}", p.display());
            None
        }
    }
}

/// The version of a box without an active slot: the factory's, else `0.0.0`.
pub(crate) fn version(root: &Path) -> String {
    read(root).unwrap_or_else(|| NONE.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_version_or_zero() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(version(d.path()), "0.0.0");
        std::fs::write(path(d.path()), "1.0.0\n").unwrap();
        assert_eq!(version(d.path()), "1.0.0");
        std::fs::write(path(d.path()), "1.0.0; rm -rf /\n").unwrap();
        assert_eq!(version(d.path()), "0.0.0");
    }
}
