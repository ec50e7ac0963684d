//! Which Ed25519 keys an update package may be signed by (docs/security.md, "Trust
//! model").
//!
//! The anchor is `updates.public_key` (the factory key `board/install.sh` puts in
//! `/etc/cybersensei/update-keys/`): each entry a key (base64 or PEM), a key file,
//! or a directory of `*.pub` files. Rotation: a package signed by a trusted key may
//! carry `update-keys/*.pub`; once it is the active slot (and its record says its
//! signature was checked), those keys *replace* the configured ones, so a retired or
//! compromised key can be dropped by shipping the new set. Rolling back to the other
//! slot brings that slot's key set back with it.
//!
//! The set comes only from the package installed, full or content: staging reads
//! the package's own `update-keys/*.pub` (signed entries, opened without following
//! links) into the slot record, and a content package's copy of the active slot
//! leaves `update-keys/` out. A content package restates the whole set; one without
//! keys puts the box back on `updates.public_key`.

use super::slots::Layout;
use super::verify::{key_from_file_data, parse_public_key, Kind, Package};
use crate::config::Config;
use crate::error::{Error, Result};
use base64::Engine;
use std::io::Read;
use std::path::Path;

/// The directory of a package (and so of a slot) holding the keys it hands on.
pub(crate) const KEYS_DIR: &str = "update-keys";
/// Most key files read from one directory.
const MAX_KEYS: usize = 64;

/// The keys in force and where they come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    /// Signatures are required (`updates.public_key` is set).
    pub(crate) required: bool,
    pub(crate) keys: Vec<[u8; 32]>,
    /// "updates.public_key" or "slot a/update-keys".
    pub(crate) source: String,
    /// Entries that gave no key (a missing directory, an unreadable file).
    pub(crate) problems: Vec<String>,
}

impl Trust {
    /// Short ids of the keys, for status.json and logs.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.keys.iter().map(key_id).collect()
    }
}

/// First 16 hex digits of the SHA-256 of a public key (what `cybersensei-pack` prints).
pub(crate) fn key_id(k: &[u8; 32]) -> String {
    crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, k).as_ref())[..16].to_string()
}

/// The trust in force. A configured entry that is neither a key nor a readable file
/// or directory is a configuration error (exit 2), as before.
pub(crate) fn load(cfg: &Config) -> Result<Trust> {
    let mut t = Trust {
        required: !cfg.updates.public_key.is_empty(),
        source: "updates.public_key".into(),
        ..Trust::default()
    };
    for item in &cfg.updates.public_key {
        let p = Path::new(item);
        if p.is_dir() {
            read_dir_keys(p, &mut t.keys, &mut t.problems);
            continue;
        }
        match parse_public_key(item) {
            Ok(k) => t.keys.push(k),
            // A key directory or file not installed yet: every package is refused
            // (loudly, in status.json), but the agent runs.
            Err(_) if looks_like_path(item) && !p.exists() => t
                .problems
                .push(format!("{item}: no such key file or directory")),
            Err(e) => return Err(e),
        }
    }
    if !t.required {
        return Ok(t);
    }
    if let Some((slot, keys)) = slot_keys(cfg) {
        t.keys = keys;
        t.source = format!("slot {slot}/{KEYS_DIR}");
    }
    t.keys.sort();
    t.keys.dedup();
    if t.keys.is_empty() && t.problems.is_empty() {
        t.problems
            .push("no *.pub file in the configured directories".into());
    }
    Ok(t)
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.ends_with(".pub") || s.ends_with(".pem")
}

fn read_dir_keys(dir: &Path, keys: &mut Vec<[u8; 32]>, problems: &mut Vec<String>) -> usize {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect(),
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return 0;
        }
    };
    names.sort();
    let mut n = 0;
    for p in names.into_iter().take(MAX_KEYS) {
        match p.to_str().map(parse_public_key) {
            Some(Ok(k)) => {
                keys.push(k);
                n += 1;
            }
            Some(Err(e)) => problems.push(format!("{}: {e}", p.display())),
            None => problems.push(format!("{}: name not UTF-8", p.display())),
        }
    }
    n
}

/// The key set the active slot hands on: only for a slot installed from a package
/// whose signature was checked, and only if it holds at least one key. The record's
/// list (what the package shipped); a record of an earlier release has none: then
/// the slot's `update-keys/*.pub`, each opened without following a link.
fn slot_keys(cfg: &Config) -> Option<(String, Vec<[u8; 32]>)> {
    let layout = Layout::new(&cfg.install.root);
    let slot = layout.active()?;
    let rec = layout.record(&slot)?;
    if !rec.signed {
        return None;
    }
    let mut problems = Vec::new();
    let keys: Vec<[u8; 32]> = match &rec.keys {
        Some(list) => list
            .iter()
            .filter_map(|k| {
                let k32 = base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
                if k32.is_none() {
                    problems.push(format!("record: {k:?} is not a key"));
                }
                k32
            })
            .collect(),
        None => {
            let dir = layout.slot_dir(&slot);
            let names: Vec<String> = std::fs::read_dir(dir.join(KEYS_DIR))
                .map(|rd| {
                    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| n.ends_with(".pub"))
                        .take(MAX_KEYS)
                        .collect()
                })
                .unwrap_or_default();
            names
                .iter()
                .filter_map(|n| {
                    let r = read_key_beneath(&dir, &format!("{KEYS_DIR}/{n}"));
                    r.map_err(|e| problems.push(e)).ok()
                })
                .collect()
        }
    };
    for p in problems {
        log::warn!("trusted keys of slot {slot}: {p}");
    }
    (!keys.is_empty()).then_some((slot, keys))
}

/// One key file of a slot, opened beneath it without following any link.
fn read_key_beneath(slot_dir: &Path, rel: &str) -> std::result::Result<[u8; 32], String> {
    let f = crate::fsutil::open_beneath(slot_dir, rel, libc::O_RDONLY)
        .map_err(|e| format!("{rel}: {e} (a link is never followed)"))?;
    let mut data = Vec::new();
    f.take(16 * 1024 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("{rel}: {e}"))?;
    key_from_file_data(&data).ok_or_else(|| format!("{rel}: not an Ed25519 public key"))
}

/// The keys a staged package hands on, for its slot record (base64): its own
/// `update-keys/*.pub` entries, read back from the slot without following links.
/// A file that holds no key refuses the package (it was signed as one).
pub(crate) fn package_keys(slot_dir: &Path, pkg: &Package) -> Result<Vec<String>> {
    let prefix = format!("{KEYS_DIR}/");
    let mut out = Vec::new();
    for e in &pkg.entries {
        let Some(name) = e.path.strip_prefix(&prefix) else {
            continue;
        };
        if e.kind != Kind::File || name.contains('/') || !name.ends_with(".pub") {
            continue;
        }
        let k = read_key_beneath(slot_dir, &e.path).map_err(Error::PackageRejected)?;
        out.push(base64::engine::general_purpose::STANDARD.encode(k));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Refusal used when signatures are required and no key is usable.
pub(crate) fn no_key_error(t: &Trust) -> Error {
    Error::PackageRejected(format!(
        "package signatures are required (updates.public_key) but no trusted key was found: {}",
        t.problems.join("; ")
    ))
}
