//! The license key: read in one place (the environment, else `license.key_file`),
//! registered with the scrubber as soon as it is read, and never shown: no `Display`,
//! a `Debug` that prints the stand-in.

use crate::error::{Error, Result};
use crate::{fsutil, redact};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The variable that gives the key instead of the file.
pub(crate) const ENV: &str = "CYBERSENSEI_LICENSE_KEY";
/// Longest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `$CYBERSENSEI_LICENSE_KEY`.
    Env,
    /// `license.key_file`.
    File(PathBuf),
}

impl KeySource {
    /// Where the key is read from: the environment when it holds one, else the file.
    pub(crate) fn of(key_file: &Path) -> KeySource {
        match env_value() {
            Some(_) => KeySource::Env,
            None => KeySource::File(key_file.to_path_buf()),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "${ENV}"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The key of the environment, trimmed, when set and not blank.
fn env_value() -> Option<String> {
    let v = std::env::var(ENV).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// A license key, with where it came from.
#[derive(Clone)]
pub(crate) struct LicenseKey {
    text: String,
    source: KeySource,
}

impl std::fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LicenseKey({}, from {})", self.shown(), self.source)
    }
}

impl LicenseKey {
    /// The key in use: `$CYBERSENSEI_LICENSE_KEY`, else the file at `key_file`.
    pub(crate) fn read(key_file: &Path) -> Result<LicenseKey> {
        match env_value() {
            Some(text) => Ok(LicenseKey::new(text, KeySource::Env)),
            None => LicenseKey::from_file(key_file),
        }
    }

    /// The key stored at `path`, whatever the environment says (`set-key` validates
    /// what it has just written).
    pub(crate) fn from_file(path: &Path) -> Result<LicenseKey> {
        let data = fsutil::read_bounded(path, MAX_KEY_FILE).map_err(|e| {
            Error::Config(format!(
                "license.key_file: cannot read {}: {e} (set the key with `cybersensei-agent set-key`)",
                path.display()
            ))
        })?;
        let text = String::from_utf8(data).map_err(|_| {
            Error::Config(format!("license.key_file: {} is not text", path.display()))
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Config(format!(
                "license.key_file: {} is empty",
                path.display()
            )));
        }
        Ok(LicenseKey::new(
            text.to_string(),
            KeySource::File(path.to_path_buf()),
        ))
    }

    /// Checks `text` (read from stdin by `set-key`) and writes it to `path`
    /// atomically with mode 0600, creating its directory.
    pub(crate) fn store(path: &Path, text: &str) -> Result<LicenseKey> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Config(
                "set-key: the key read from stdin is empty".into(),
            ));
        }
        // Registered before anything can fail, so no message can carry it.
        redact::add_secret(text);
        if text.len() > 1024 || text.chars().any(|c| c.is_control()) {
            return Err(Error::Config(
                "set-key: the key must be one line of at most 1024 characters".into(),
            ));
        }
        fsutil::ensure_dir(&fsutil::parent_of(path), 0o700)?;
        fsutil::atomic_write(path, format!("{text}\n").as_bytes(), 0o600)?;
        Ok(LicenseKey::new(
            text.to_string(),
            KeySource::File(path.to_path_buf()),
        ))
    }

    fn new(text: String, source: KeySource) -> LicenseKey {
        redact::add_secret(&text);
        LicenseKey { text, source }
    }

    /// Where the key came from.
    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key as the value of a URL query (the one request that carries it).
    pub(crate) fn query_value(&self) -> String {
        crate::percent::percent_encode(&self.text)
    }

    /// A printable stand-in: its first 4 characters and its length.
    pub(crate) fn shown(&self) -> String {
        redact::key(&self.text)
    }

    /// A short fingerprint (SHA-256, 16 hex digits): tells whether a cached
    /// validation was for this key, without keeping the key.
    pub(crate) fn id(&self) -> String {
        id(&self.text)
    }
}

/// The fingerprint of [`LicenseKey::id`] for a key's text.
pub(crate) fn id(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    crate::hex::encode(&d.as_ref()[..8])
}

/// The one permission rule for the key file: readable by nobody but its owner
/// (and root). The problem, worded for the operator, when it is broken.
pub(crate) fn file_exposure(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "license.key_file {} is readable by group or others (mode {mode:04o}): chmod 600 it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_stand_in_only() {
        let k = LicenseKey::new("A1B2C3D4-E5F6".into(), KeySource::Env);
        let d = format!("{k:?}");
        assert!(!d.contains("E5F6"), "{d}");
        assert!(d.contains("A1B2"), "{d}");
        assert_eq!(k.id(), id("A1B2C3D4-E5F6"));
        assert_eq!(k.id().len(), 16);
    }

    #[test]
    fn one_rule_for_the_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("license.key");
        std::fs::write(&p, "K\n").unwrap();
        for (mode, exposed) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(file_exposure(&p).is_some(), exposed, "{mode:o}");
        }
    }
}
