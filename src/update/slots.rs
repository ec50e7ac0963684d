//! The A/B slots under `install.root`: which is active, their version records,
//! staging a verified package into the inactive one, and the atomic switch.
//!
//! ```text
//! install.root/slots/a/       one installation (the ZIP's root)
//! install.root/slots/a.json   its record: written last, so present = complete
//! install.root/current        -> slots/a (relative symlink, replaced by rename)
//! ```

use super::journal;
use super::manifest::PackageKind;
use super::verify::{self, Kind, Package, Zip, BUF};
use crate::error::{Error, Result};
use crate::fsutil;
use ring::digest;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The two slot names.
pub(crate) const SLOTS: [&str; 2] = ["a", "b"];

/// A slot's record: what it holds and when it was installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) version: String,
    pub(crate) installed_at: String,
    #[serde(default)]
    pub(crate) update_id: Option<String>,
    #[serde(default)]
    pub(crate) package_sha256: Option<String>,
    #[serde(default)]
    pub(crate) files: u64,
    #[serde(default)]
    pub(crate) bytes: u64,
    /// Installed from a package whose signature a trusted key verified: only then
    /// are the slot's `update-keys/` trusted (`update::trust`).
    #[serde(default)]
    pub(crate) signed: bool,
    /// `full` or `content` (absent in records of earlier releases: full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    /// The keys (base64) the package shipped in `update-keys/`: the set trusted
    /// while this slot is active (if `signed`). Absent in records of earlier
    /// releases (then the slot's `update-keys/` is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keys: Option<Vec<String>>,
}

/// The directory of a package (and so of a slot) holding the keys it hands on.
pub(crate) const KEYS_DIR: &str = "update-keys";
/// Top-level names a content package's copy of the active slot leaves out: hooks
/// and the key set come only from the package being installed.
pub(crate) const NOT_COPIED: [&str; 2] = ["hooks", KEYS_DIR];

/// Paths of an install root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

/// The other slot's name.
pub(crate) fn other(slot: &str) -> &'static str {
    if slot == "a" {
        "b"
    } else {
        "a"
    }
}

impl Layout {
    /// The layout under `root` (nothing is created).
    pub(crate) fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    /// `install.root`.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
    /// `install.root/slots`.
    pub(crate) fn slots_dir(&self) -> PathBuf {
        self.root.join("slots")
    }
    /// A slot's directory.
    pub(crate) fn slot_dir(&self, slot: &str) -> PathBuf {
        self.slots_dir().join(slot)
    }
    fn record_path(&self, slot: &str) -> PathBuf {
        self.slots_dir().join(format!("{slot}.json"))
    }
    /// Marker of a slot that failed its health check: never complete, so never a
    /// rollback target, whatever its tree holds (a `VERSION` would otherwise make it
    /// look like a hand-made installation). Cleared when the slot gets a new record.
    fn bad_path(&self, slot: &str) -> PathBuf {
        self.slots_dir().join(format!("{slot}.bad"))
    }

    /// Whether a slot was marked bad (and not reinstalled since).
    pub(crate) fn is_bad(&self, slot: &str) -> bool {
        self.bad_path(slot).exists()
    }

    /// Why a slot was marked bad, if it was.
    pub(crate) fn bad_reason(&self, slot: &str) -> Option<String> {
        let data = fsutil::read_bounded(&self.bad_path(slot), 4096).ok()?;
        Some(String::from_utf8_lossy(&data).trim().to_string())
    }

    /// Marks a slot bad (the marker first, durably), then drops its record.
    pub(crate) fn mark_bad(&self, slot: &str, why: &str) -> Result<()> {
        fsutil::atomic_write(&self.bad_path(slot), format!("{why}\n").as_bytes(), 0o644)?;
        self.invalidate(slot)
    }
    /// The `current` symlink.
    pub(crate) fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The slot the inspected package `p` installs into, with the active slot, once
    /// `p` is known to fit: declared sizes plus a block per entry for metadata (plus
    /// the copy of the active slot for a content package); the slot being replaced is
    /// freed first. `state_dir`: checked with `install.root` when they share a disk.
    pub(crate) fn target(&self, p: &Package, state_dir: &Path) -> Result<(Option<String>, String)> {
        let from = self.active();
        self.ensure()?;
        if p.kind == PackageKind::Content && from.is_none() {
            return Err(Error::PackageRejected(
                "a content package applies on top of an installation, and this box has none".into(),
            ));
        }
        let target = from.as_deref().map(other).unwrap_or("a").to_string();
        let copy = match (&from, p.kind) {
            (Some(f), PackageKind::Content) => self.usage(f),
            _ => 0,
        };
        let need = p
            .total
            .saturating_add(p.entries.len() as u64 * 4096)
            .saturating_add(copy)
            .saturating_sub(self.usage(&target));
        super::download::check_space(state_dir, 0, &self.root, need)?;
        Ok((from, target))
    }

    /// The slot `current` points at, if it is a link to `slots/a` or `slots/b`.
    pub(crate) fn active(&self) -> Option<String> {
        let target = fs::read_link(self.current()).ok()?;
        let name = target.file_name()?.to_str()?;
        let parent = target.parent()?.file_name()?.to_str()?;
        (parent == "slots" && SLOTS.contains(&name)).then(|| name.to_string())
    }

    /// The record of a complete slot; None while incomplete or never installed.
    pub(crate) fn record(&self, slot: &str) -> Option<Record> {
        let data = fsutil::read_bounded(&self.record_path(slot), 64 * 1024).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Whether a slot holds a complete installation (recorded, or laid out by hand
    /// with a `VERSION` or `manifest.json`).
    pub(crate) fn is_complete(&self, slot: &str) -> bool {
        !self.is_bad(slot)
            && (self.record(slot).is_some()
                || (self.slot_dir(slot).is_dir() && self.version_in_tree(slot).is_some()))
    }

    /// The version of a slot: its record, else `manifest.json` or `VERSION` in the
    /// slot (a hand-made layout), else "0.0.0".
    pub(crate) fn version(&self, slot: &str) -> String {
        if let Some(r) = self.record(slot) {
            return r.version;
        }
        self.version_in_tree(slot).unwrap_or_else(|| "0.0.0".into())
    }

    fn version_in_tree(&self, slot: &str) -> Option<String> {
        let dir = self.slot_dir(slot);
        if let Ok(data) = fsutil::read_bounded(&dir.join(verify::MANIFEST), 4 << 20) {
            if let Ok(m) = super::manifest::parse(&data) {
                return Some(m.version);
            }
        }
        let data = fsutil::read_bounded(&dir.join(verify::VERSION_FILE), 256).ok()?;
        let text = String::from_utf8_lossy(&data);
        verify::check_version(text.lines().next()?.trim(), "VERSION").ok()
    }

    /// Creates `install.root/slots` on a fresh box.
    pub(crate) fn ensure(&self) -> Result<()> {
        fsutil::ensure_dir(&self.slots_dir(), 0o755)
    }

    /// Marks a slot incomplete: its record goes first, durably.
    pub(crate) fn invalidate(&self, slot: &str) -> Result<()> {
        let p = self.record_path(slot);
        match fs::remove_file(&p) {
            Ok(()) => fsutil::fsync_dir(&self.slots_dir())
                .map_err(|e| Error::io(format!("syncing {}", self.slots_dir().display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }

    /// Empties a slot (after invalidating it) and leaves an empty directory.
    pub(crate) fn clear(&self, slot: &str) -> Result<()> {
        self.invalidate(slot)?;
        let dir = self.slot_dir(slot);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dir),
            Ok(_) => fs::remove_file(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
        // Private while staged: no other user may enter (and swap a directory for a
        // link under the agent) until the record is written (`open_up`).
        fsutil::ensure_dir(&dir, 0o700)?;
        fsutil::fsync_dir(&self.slots_dir())
            .map_err(|e| Error::io(format!("syncing {}", self.slots_dir().display()), e))
    }

    /// Writes a slot's record (atomically): from now on the slot is complete, and
    /// opened up to other users.
    pub(crate) fn write_record(&self, slot: &str, rec: &Record) -> Result<()> {
        fsutil::atomic_write_json(&self.record_path(slot), rec, 0o644)?;
        self.open_up(slot)?;
        if self.is_bad(slot) {
            std::fs::remove_file(self.bad_path(slot))
                .map_err(|e| Error::io(format!("removing {}", self.bad_path(slot).display()), e))?;
            fsutil::fsync_dir(&self.slots_dir())
                .map_err(|e| Error::io(format!("syncing {}", self.slots_dir().display()), e))?;
        }
        Ok(())
    }

    /// Gives a complete slot's directory its mode 0755 (staged at 0700), on its
    /// descriptor (never through a link).
    fn open_up(&self, slot: &str) -> Result<()> {
        let dir = self.slot_dir(slot);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&dir)
            .map_err(|e| io_err(&dir, "opening", e))?;
        f.set_permissions(fs::Permissions::from_mode(0o755))
            .map_err(|e| io_err(&dir, "setting mode of", e))
    }

    /// Points `current` at `slot` atomically (symlink under a temporary name, rename
    /// over `current`, fsync of install.root); None removes `current` (fresh box).
    pub(crate) fn switch_to(&self, slot: Option<&str>) -> Result<()> {
        let cur = self.current();
        match slot {
            Some(s) => {
                // A slot whose record was written just before a power cut is still
                // private: open it up before it goes live.
                if self.slot_dir(s).is_dir() {
                    self.open_up(s)?;
                }
                let tmp = self.root.join(".current.tmp");
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(format!("slots/{s}"), &tmp)
                    .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
                fs::rename(&tmp, &cur)
                    .map_err(|e| Error::io(format!("renaming over {}", cur.display()), e))?;
            }
            None => match fs::remove_file(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", cur.display()), e)),
            },
        }
        journal::crash_point("switch:renamed");
        fsutil::fsync_dir(&self.root)
            .map_err(|e| Error::io(format!("syncing {}", self.root.display()), e))
    }

    /// Removes leftovers of an interrupted switch.
    pub(crate) fn tidy(&self) {
        let _ = fs::remove_file(self.root.join(".current.tmp"));
    }

    /// Disk space a slot's files take (reclaimed when it is cleared).
    pub(crate) fn usage(&self, slot: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            use std::os::unix::fs::MetadataExt;
            let Ok(m) = fs::symlink_metadata(p) else {
                return 0;
            };
            let mut n = m.blocks() * 512;
            if m.is_dir() {
                if let Ok(rd) = fs::read_dir(p) {
                    for e in rd.flatten() {
                        n += walk(&e.path());
                    }
                }
            }
            n
        }
        walk(&self.slot_dir(slot))
    }
}

/// Extracts an inspected package into a slot directory in one pass over its one
/// open descriptor: every file is written, hashed while written, and held to what
/// the headers and the manifest declare (size, SHA-256; the ZIP reader checks the
/// CRC at each entry's end) before the next one starts. Permission bits kept (never
/// setuid/setgid); links created last; everything synced to disk at the end.
/// `over`: the slot already holds a copy of the active slot (content package): an
/// entry replaces what is at its path, and a parent that is a file or link there is
/// replaced by a directory (nothing is ever written through a link).
/// Returns (files, bytes) written.
pub fn extract(
    zip: &mut Zip,
    pkg: &Package,
    dir: &Path,
    max_unpacked: u64,
    over: bool,
) -> Result<(u64, u64)> {
    let mut buf = vec![0u8; BUF];
    let mut total: u64 = 0;
    let mut files: u64 = 0;
    let mut dirs: Vec<(&str, u32)> = Vec::new();
    let mut made: HashSet<PathBuf> = HashSet::new();
    // Links last: no file is ever written through a link the package made.
    let mut links = Vec::new();
    for (count, e) in pkg.entries.iter().enumerate() {
        if crate::signals::stop_requested() {
            return Err(Error::Interrupted);
        }
        let dest = dir.join(&e.path);
        match &e.kind {
            Kind::Dir => {
                parents(dir, &e.path, true, &mut made)?;
                dirs.push((e.path.as_str(), e.mode));
            }
            Kind::Symlink(t) => links.push((e, t.clone())),
            Kind::File => {
                parents(dir, &e.path, false, &mut made)?;
                if over {
                    remove_any(&dest)?;
                }
                write_file(zip, e, &dest, &mut buf, &mut total, max_unpacked)?;
                files += 1;
            }
        }
        journal::crash_after("extract", count as u64 + 1);
    }
    for (e, target) in links {
        make_link(dir, e, &target, over, &mut made)?;
    }
    for (d, mode) in dirs {
        chmod_beneath(dir, d, mode)?;
    }
    check_links(dir)?;
    sync_tree(dir)?;
    Ok((files, total))
}

/// Refuses a staged slot one of whose links leads out of it, resolved against the
/// real tree as the kernel would (chains followed, links copied from the active
/// slot included): the package's lexical check cannot see links it does not carry.
pub(crate) fn check_links(dir: &Path) -> Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let rd = fs::read_dir(&here).map_err(|e| io_err(&here, "reading", e))?;
        for ent in rd {
            let ent = ent.map_err(|e| io_err(&here, "reading", e))?;
            let r = rel.join(ent.file_name());
            let ft = ent.file_type().map_err(|e| io_err(&here, "reading", e))?;
            if ft.is_dir() {
                stack.push(r);
            } else if ft.is_symlink() && !resolves_inside(dir, &r) {
                let t = fs::read_link(dir.join(&r)).unwrap_or_default();
                return Err(Error::PackageRejected(format!(
                    "{}: link to {} leaves the slot (resolved through the installed tree)",
                    r.display(),
                    t.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether the path `rel` (under `root`) resolves inside `root`, each link on the
/// way replaced by its target (relative ones only; at most 40 links, as the kernel).
/// A missing component ends the real walk: the rest is taken lexically.
fn resolves_inside(root: &Path, rel: &Path) -> bool {
    use std::path::Component;
    let mut at = PathBuf::new();
    let mut depth = 0usize;
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push_all = |todo: &mut Vec<std::ffi::OsString>, p: &Path| -> bool {
        let mut comps = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => comps.push(n.to_os_string()),
                Component::ParentDir => comps.push("..".into()),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return false,
            }
        }
        todo.extend(comps.into_iter().rev());
        true
    };
    if !push_all(&mut todo, rel) {
        return false;
    }
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if depth == 0 {
                return false;
            }
            at.pop();
            depth -= 1;
            continue;
        }
        let p = root.join(&at).join(&c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                let Ok(t) = fs::read_link(&p) else {
                    return false;
                };
                if hops > 40 || !push_all(&mut todo, &t) {
                    return false;
                }
            }
            _ => {
                at.push(&c);
                depth += 1;
            }
        }
    }
    true
}

/// Writes one file entry to `dest` (created anew, never through a link), hashing
/// it on the way, and holds it to its declared size, the package's total and the
/// manifest's SHA-256; then gives it its mode. `total`: bytes written so far.
fn write_file(
    zip: &mut Zip,
    e: &verify::Entry,
    dest: &Path,
    buf: &mut [u8],
    total: &mut u64,
    max_unpacked: u64,
) -> Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dest)
        .map_err(|x| io_err(dest, "creating", x))?;
    let mut r = zip
        .by_index(e.index)
        .map_err(|x| Error::PackageRejected(format!("{}: {x}", e.path)))?;
    let mut hash = e
        .sha256
        .as_ref()
        .map(|_| digest::Context::new(&digest::SHA256));
    let mut n: u64 = 0;
    loop {
        let k = r
            .read(buf)
            .map_err(|x| Error::PackageRejected(format!("{}: corrupt data: {x}", e.path)))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        *total += k as u64;
        if n > e.size || *total > max_unpacked {
            return Err(Error::PackageRejected(format!(
                "{}: more data than declared (limit {max_unpacked} bytes in all)",
                e.path
            )));
        }
        if let Some(h) = hash.as_mut() {
            h.update(&buf[..k]);
        }
        out.write_all(&buf[..k])
            .map_err(|x| io_err(dest, "writing", x))?;
    }
    if n != e.size {
        return Err(Error::PackageRejected(format!(
            "{}: {n} bytes, header declares {}",
            e.path, e.size
        )));
    }
    if let (Some(h), Some(want)) = (hash, &e.sha256) {
        if crate::hex::encode(h.finish().as_ref()) != *want {
            return Err(Error::PackageRejected(format!(
                "{}: SHA-256 does not match {}",
                e.path,
                verify::MANIFEST
            )));
        }
    }
    out.set_permissions(fs::Permissions::from_mode(e.mode & 0o777))
        .map_err(|x| io_err(dest, "setting mode of", x))
}

/// Sets the mode of the directory `rel` under `root` on its descriptor, opened
/// beneath `root` without following any link (`fsutil::open_beneath`).
fn chmod_beneath(root: &Path, rel: &str, mode: u32) -> Result<()> {
    let p = root.join(rel);
    let f = fsutil::open_beneath(root, rel, libc::O_DIRECTORY | libc::O_RDONLY)
        .map_err(|x| io_err(&p, "opening (without following links)", x))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|x| io_err(&p, "setting mode of", x))
}

/// Creates one link entry, once its target matches the manifest's digest.
fn make_link(
    dir: &Path,
    e: &verify::Entry,
    target: &str,
    over: bool,
    made: &mut HashSet<PathBuf>,
) -> Result<()> {
    if let Some(want) = &e.sha256 {
        if crate::hex::encode(digest::digest(&digest::SHA256, target.as_bytes()).as_ref()) != *want
        {
            return Err(Error::PackageRejected(format!(
                "{}: link target digest mismatch",
                e.path
            )));
        }
    }
    parents(dir, &e.path, false, made)?;
    let dest = dir.join(&e.path);
    if over {
        remove_any(&dest)?;
    }
    std::os::unix::fs::symlink(target, &dest).map_err(|x| io_err(&dest, "linking", x))
}

/// Makes every parent of `rel` (and `rel` itself when `itself`) a real directory
/// under `dir`: created when missing; a file or link found there (in a copied slot)
/// is removed first, so nothing is written through a link.
fn parents(dir: &Path, rel: &str, itself: bool, made: &mut HashSet<PathBuf>) -> Result<()> {
    let comps: Vec<&str> = rel.split('/').collect();
    let upto = if itself { comps.len() } else { comps.len() - 1 };
    let mut p = dir.to_path_buf();
    for c in &comps[..upto] {
        p.push(c);
        if made.contains(&p) {
            continue;
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&p).map_err(|x| io_err(&p, "replacing", x))?;
                mkdir(&p)?;
            }
            Err(x) if x.kind() == std::io::ErrorKind::NotFound => mkdir(&p)?,
            Err(x) => return Err(io_err(&p, "reading", x)),
        }
        made.insert(p.clone());
    }
    Ok(())
}

fn mkdir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(|e| io_err(p, "creating directory", e))
}

/// Removes whatever is at `p` (file, link, or directory tree); nothing there is fine.
fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| io_err(p, "removing", e))
}

/// Removes the paths a content package deletes from the copied slot. A path whose
/// parent is not a real directory (a link, a file) is not followed: it names nothing
/// in the copy, so there is nothing to delete.
pub(crate) fn delete_paths(dir: &Path, paths: &[String]) -> Result<u64> {
    let mut n = 0;
    'next: for rel in paths {
        let mut p = dir.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                _ => continue 'next,
            }
        }
        p.push(comps[comps.len() - 1]);
        if fs::symlink_metadata(&p).is_ok() {
            remove_any(&p)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Copies the active slot's tree into the (empty) target slot for a content
/// package: directories, links and files with their modes; files are cloned
/// (`FICLONE`: shared extents, no data copied) where the filesystem can, else copied
/// in the kernel (`copy_file_range`). `skip` top-level names are left out (the old
/// package's `hooks/`: hooks come only from the package being installed). Not synced
/// here: the extraction's `syncfs` makes the whole slot durable at once.
pub(crate) fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(u64, u64)> {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf(), 0usize)];
    let mut modes = Vec::new();
    while let Some((src, dst, depth)) = stack.pop() {
        let rd = fs::read_dir(&src).map_err(|e| io_err(&src, "reading", e))?;
        for ent in rd {
            let ent = ent.map_err(|e| io_err(&src, "reading", e))?;
            let name = ent.file_name();
            if depth == 0 && skip.iter().any(|s| name == std::ffi::OsStr::new(s)) {
                continue;
            }
            if crate::signals::stop_requested() {
                return Err(Error::Interrupted);
            }
            let s = ent.path();
            let d = dst.join(&name);
            let m = fs::symlink_metadata(&s).map_err(|e| io_err(&s, "reading", e))?;
            let ft = m.file_type();
            if ft.is_dir() {
                mkdir(&d)?;
                // Capped as a package's modes are: never group- or world-writable.
                let rel = d
                    .strip_prefix(to)
                    .unwrap_or(&d)
                    .to_string_lossy()
                    .into_owned();
                modes.push((rel, (m.permissions().mode() & 0o755) | 0o700));
                stack.push((s, d, depth + 1));
            } else if ft.is_symlink() {
                let t = fs::read_link(&s).map_err(|e| io_err(&s, "reading link", e))?;
                std::os::unix::fs::symlink(&t, &d).map_err(|e| io_err(&d, "linking", e))?;
            } else if ft.is_file() {
                bytes += clone_file(&s, &d, m.permissions().mode() & 0o755)?;
                files += 1;
                journal::crash_after("copy", files);
            }
            // Anything else (a socket an application left) is not part of an
            // installation: not copied.
        }
    }
    for (d, mode) in modes {
        chmod_beneath(to, &d, mode)?;
    }
    Ok((files, bytes))
}

fn clone_file(src: &Path, dst: &Path, mode: u32) -> Result<u64> {
    use std::os::unix::io::AsRawFd;
    let mut i = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(|e| io_err(src, "opening", e))?;
    let mut o = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)
        .map_err(|e| io_err(dst, "creating", e))?;
    let len = i.metadata().map_err(|e| io_err(src, "reading", e))?.len();
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    let cloned = unsafe { libc::ioctl(o.as_raw_fd(), libc::FICLONE as _, i.as_raw_fd()) } == 0;
    if !cloned {
        // std uses copy_file_range between two files (no user-space buffer).
        std::io::copy(&mut i, &mut o).map_err(|e| io_err(dst, "copying to", e))?;
        // Start writing the copy to disk now, without waiting: the disk works while
        // the next files are copied, so the final syncfs finds little left (a hint;
        // the syncfs decides).
        // SAFETY: sync_file_range reads its scalar arguments; the fd is open.
        unsafe {
            libc::sync_file_range(o.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    o.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(dst, "setting mode of", e))?;
    Ok(len)
}

fn io_err(p: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", p.display()), e)
}

/// Makes the whole extracted tree durable: one syncfs(2) of the slot's filesystem
/// (files, their data and every directory entry) instead of an fsync per file.
fn sync_tree(dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let d = File::open(dir).map_err(|e| io_err(dir, "opening", e))?;
    // SAFETY: syncfs on a descriptor we own.
    let rc = unsafe { libc::syncfs(d.as_raw_fd()) };
    if rc != 0 {
        return Err(io_err(dir, "syncing", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_is_a_relative_link_and_active_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        l.ensure().unwrap();
        assert_eq!(l.active(), None);
        l.switch_to(Some("a")).unwrap();
        assert_eq!(l.active().as_deref(), Some("a"));
        assert_eq!(
            fs::read_link(l.current()).unwrap(),
            PathBuf::from("slots/a")
        );
        l.switch_to(Some("b")).unwrap();
        assert_eq!(l.active().as_deref(), Some("b"));
        l.switch_to(None).unwrap();
        assert_eq!(l.active(), None);
        assert!(!d.path().join(".current.tmp").exists());
    }

    #[test]
    fn record_makes_a_slot_complete_and_clear_undoes_it() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        l.ensure().unwrap();
        l.clear("b").unwrap();
        fs::write(l.slot_dir("b").join("f"), b"x").unwrap();
        assert!(!l.is_complete("b"));
        assert_eq!(l.version("b"), "0.0.0");
        let rec = Record {
            version: "1.2.0".into(),
            installed_at: "t".into(),
            update_id: None,
            package_sha256: None,
            files: 1,
            bytes: 1,
            signed: false,
            kind: None,
            keys: None,
        };
        l.write_record("b", &rec).unwrap();
        assert!(l.is_complete("b"));
        assert_eq!(l.version("b"), "1.2.0");
        l.clear("b").unwrap();
        assert!(!l.is_complete("b"));
        assert_eq!(fs::read_dir(l.slot_dir("b")).unwrap().count(), 0);
    }

    #[test]
    fn links_resolve_against_the_real_tree() {
        let d = tempfile::tempdir().unwrap();
        let slot = d.path().join("s");
        fs::create_dir_all(slot.join("d1/d2/d3")).unwrap();
        std::os::unix::fs::symlink("../../..", slot.join("d1/d2/d3/l1")).unwrap();
        std::os::unix::fs::symlink("d1/d2", slot.join("ok")).unwrap();
        assert!(check_links(&slot).is_ok());
        for (name, t) in [
            ("x", "d1/d2/d3/l1/../.."),
            ("y", "/etc"),
            ("z", "d1/d2/d3/l1/d1/d2/d3/l1/.."),
        ] {
            std::os::unix::fs::symlink(t, slot.join(name)).unwrap();
            let e = check_links(&slot).unwrap_err().to_string();
            assert!(e.contains("leaves the slot"), "{t}: {e}");
            fs::remove_file(slot.join(name)).unwrap();
        }
        // A loop is refused, not followed forever.
        std::os::unix::fs::symlink("loop", slot.join("loop")).unwrap();
        assert!(check_links(&slot).is_err());
    }

    #[test]
    fn hand_made_slot_reports_its_version_file() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        fs::create_dir_all(l.slot_dir("a")).unwrap();
        fs::write(l.slot_dir("a").join("VERSION"), "0.9.1\n").unwrap();
        std::os::unix::fs::symlink("slots/a", l.current()).unwrap();
        assert_eq!(l.active().as_deref(), Some("a"));
        assert_eq!(l.version("a"), "0.9.1");
        assert!(l.is_complete("a"));
    }
}
