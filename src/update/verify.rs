//! Package verification, done in full before any slot is touched: ZIP structure and
//! header consistency, entry names and types, limits, every entry's data (CRC, and
//! SHA-256 where a manifest lists it), and with `updates.public_key` the Ed25519
//! signature of `manifest.json`. Every refusal is `Error::PackageRejected`.

use super::manifest::{self, FileType, Manifest, PackageKind};
use super::version_json::{self, VersionInfo, VERSION_JSON};
use crate::error::{Error, Result};
use base64::Engine;
use ring::digest;
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use zip::{CompressionMethod, ZipArchive};

pub use super::manifest::{check_version, MANIFEST};

/// The archive over the one open descriptor of a package (verified and extracted
/// through the same `File`: nothing is reopened by path).
pub(crate) type Zip<'a> = ZipArchive<&'a File>;
/// Install hooks a package may carry (run with the new slot's path, no shell).
pub(crate) const HOOK_POST_INSTALL: &str = "hooks/post-install";
/// Run after the switch, before the new services start (see docs/updates.md).
pub(crate) const HOOK_POST_SWITCH: &str = "hooks/post-switch";
/// Detached signature of the manifest's exact bytes.
pub(crate) const SIGNATURE: &str = "manifest.sig";
/// Plain version file, for `install` of packages without a manifest.
pub(crate) const VERSION_FILE: &str = "VERSION";
/// Copy buffer for entry data (verification and extraction).
pub(crate) const BUF: usize = 64 * 1024;
const MAX_MANIFEST: u64 = 4 << 20;
const MAX_SIG: u64 = 1024;
const MAX_LINK: u64 = 4096;
const MAX_NAME: usize = 1024;
const MAX_VERSION_JSON: u64 = 1 << 20;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Bounds a package must fit in.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_unpacked: u64,
}

/// What an entry becomes in the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    /// A relative link whose target stays inside the slot.
    Symlink(String),
}

/// One checked entry: where it goes, what it is, its permission bits and size.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) index: usize,
    /// Normalized relative path (`/`-separated, no trailing slash).
    pub(crate) path: String,
    pub(crate) kind: Kind,
    /// Permission bits only (setuid, setgid and sticky stripped).
    pub(crate) mode: u32,
    /// Declared uncompressed size.
    pub(crate) size: u64,
    /// SHA-256 the manifest lists for it (of the target string for a link).
    pub(crate) sha256: Option<String>,
}

/// A package that passed verification.
#[derive(Debug, Clone)]
pub struct Package {
    pub(crate) entries: Vec<Entry>,
    /// Sum of declared uncompressed sizes.
    pub(crate) total: u64,
    pub(crate) manifest_version: Option<String>,
    pub(crate) version_file: Option<String>,
    /// The manifest signature was checked against the configured key.
    pub(crate) signed: bool,
    /// The parsed manifest (v2 or older), when the package has one.
    pub(crate) manifest: Option<Manifest>,
    /// `version.json`, when the package has one (the backend's packages do).
    pub(crate) info: Option<VersionInfo>,
    /// Full or content (see [`resolve_kind`]).
    pub(crate) kind: PackageKind,
}

impl Package {
    /// Paths a content package removes from the copy of the active slot.
    pub(crate) fn deletions(&self) -> &[String] {
        self.manifest.as_ref().map_or(&[], |m| &m.delete)
    }
    /// Whether the package carries an entry at this path (the agent).
    pub(crate) fn has_path(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }
}

/// How a package says which kind it is: `kind` in `manifest.json` and/or
/// `version.json` (they must agree). Said nowhere: a package with `version.json` is
/// *content* (what the real backend generates: `version.json` + `exercises.json`,
/// applied on top of the node's files), any other is *full* (this agent's own
/// packages: a complete installation, as before kinds existed).
pub(crate) fn resolve_kind(m: Option<&Manifest>, v: Option<&VersionInfo>) -> Result<PackageKind> {
    let (a, b) = (m.and_then(|m| m.kind), v.and_then(|v| v.kind));
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(reject(format!(
            "{MANIFEST} says kind {} but {VERSION_JSON} says {}",
            x.as_str(),
            y.as_str()
        ))),
        (Some(x), _) | (None, Some(x)) => Ok(x),
        (None, None) if v.is_some() => Ok(PackageKind::Content),
        (None, None) => Ok(PackageKind::Full),
    }
}

fn reject(msg: impl Into<String>) -> Error {
    Error::PackageRejected(msg.into())
}

/// Parses `updates.public_key`: base64 of the 32-byte key (or of its 44-byte DER
/// SubjectPublicKeyInfo, as `openssl pkey -pubout` writes in PEM), or a path to a
/// file holding one of those (or the raw 32 bytes).
pub fn parse_public_key(value: &str) -> Result<[u8; 32]> {
    if let Some(k) = key_from_text(value) {
        return Ok(k);
    }
    let data = crate::fsutil::read_bounded(Path::new(value), 16 * 1024).map_err(|e| {
        Error::Config(format!(
            "updates.public_key: neither base64 of a 32-byte Ed25519 key nor a readable file ({value}: {e})"
        ))
    })?;
    key_from_file_data(&data).ok_or_else(|| {
        Error::Config(format!(
            "updates.public_key: {value} holds no Ed25519 public key (base64 of 32 bytes or PEM)"
        ))
    })
}

/// The bytes of a PEM text (its armour lines dropped) or of bare base64; None if
/// what is left is not base64. Shared with the vendor tool's key reader.
pub fn pem_or_base64(text: &str) -> Option<Vec<u8>> {
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()
}

/// The key a key file holds: the raw 32 bytes, or base64 / PEM text.
pub(crate) fn key_from_file_data(data: &[u8]) -> Option<[u8; 32]> {
    if data.len() == 32 {
        let mut k = [0u8; 32];
        k.copy_from_slice(data);
        return Some(k);
    }
    std::str::from_utf8(data).ok().and_then(key_from_text)
}

fn key_from_text(text: &str) -> Option<[u8; 32]> {
    let raw = pem_or_base64(text)?;
    // DER SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix.
    const SPKI: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let key = match raw.len() {
        32 => &raw[..],
        44 if raw.starts_with(&SPKI) => &raw[12..],
        _ => return None,
    };
    let mut k = [0u8; 32];
    k.copy_from_slice(key);
    Some(k)
}

/// Verifies a package completely (structure, then every entry's data); nothing is
/// written anywhere. Used when a package waits for `update` or its window; an
/// install checks the data while extracting instead (`slots::extract`).
/// `keys`: the trusted keys (`update::trust`); empty = signatures not required.
pub fn verify(f: &File, limits: &Limits, keys: &[[u8; 32]]) -> Result<Package> {
    let (mut zip, pkg) = inspect(f, limits, keys)?;
    scan_data(&mut zip, &pkg)?;
    Ok(pkg)
}

/// Everything but the data of the files: the ZIP's structure, names, types, limits,
/// links, the manifest and its signature, `version.json`, `VERSION`. Returns the
/// archive (over the same descriptor) for the extraction.
pub fn inspect<'a>(f: &'a File, limits: &Limits, keys: &[[u8; 32]]) -> Result<(Zip<'a>, Package)> {
    let mut zip = open_archive(f, limits)?;
    let mut pkg = Package {
        entries: Vec::with_capacity(zip.len()),
        total: 0,
        manifest_version: None,
        version_file: None,
        signed: false,
        manifest: None,
        info: None,
        kind: PackageKind::Full,
    };
    let mut seen = HashSet::new();
    for i in 0..zip.len() {
        let e = zip
            .by_index_data(i)
            .map_err(|e| reject(format!("entry {i}: {e}")))?;
        let entry = check_entry(f, i, &e)?;
        if !seen.insert(entry.path.clone()) {
            return Err(reject(format!("{}: duplicate entry", entry.path)));
        }
        pkg.total = pkg.total.saturating_add(entry.size);
        if pkg.total > limits.max_unpacked {
            return Err(reject(format!(
                "unpacks to more than updates.max_unpacked_size ({} bytes)",
                limits.max_unpacked
            )));
        }
        pkg.entries.push(entry);
    }
    check_tree(&pkg.entries)?;
    read_link_targets(&mut zip, &mut pkg.entries)?;
    check_links(&pkg.entries)?;
    let manifest = read_manifest(&mut zip, &pkg, keys)?;
    pkg.signed = !keys.is_empty();
    if let Some(m) = &manifest {
        pkg.manifest_version = Some(m.version.clone());
        apply_manifest(&mut pkg.entries, m)?;
        if pkg.signed {
            signed_directories(&mut pkg.entries, m)?;
        }
    }
    cap_modes(&mut pkg.entries);
    if let Some(e) = file_at(&pkg.entries, VERSION_JSON) {
        let data = read_small(&mut zip, e.index, MAX_VERSION_JSON, VERSION_JSON)?;
        pkg.info = Some(version_json::parse(&data)?);
    }
    pkg.kind = resolve_kind(manifest.as_ref(), pkg.info.as_ref())?;
    check_hooks(&pkg.entries)?;
    pkg.manifest = manifest;
    if let Some(e) = file_at(&pkg.entries, VERSION_FILE) {
        let v = read_small(&mut zip, e.index, 256, VERSION_FILE)?;
        let v = String::from_utf8_lossy(&v)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        pkg.version_file = Some(check_version(&v, VERSION_FILE)?);
    }
    Ok((zip, pkg))
}

/// The archive, once its directory is bounded, counted and consistent.
fn open_archive<'a>(f: &'a File, limits: &Limits) -> Result<Zip<'a>> {
    // The archive reader keeps every central-directory record in memory: bound the
    // directory (count, size, ZIP64 included) from its end record before it is parsed.
    super::zipbound::check(f, limits.max_entries)?;
    let mut zip =
        ZipArchive::new(f).map_err(|e| reject(format!("not a valid ZIP archive: {e}")))?;
    if zip.len() as u64 > limits.max_entries {
        return Err(reject(format!(
            "{} entries, more than updates.max_entries ({})",
            zip.len(),
            limits.max_entries
        )));
    }
    // Duplicate names, local headers that disagree with the central directory,
    // overlapping entries (a classic zip bomb) and hidden local entries.
    zip.validate_header_consistency()
        .map_err(|e| reject(format!("inconsistent ZIP: {e}")))?;
    Ok(zip)
}

/// One directory record checked on its own: its name, that it is a plain file,
/// directory or link, stored or deflated and not encrypted; its mode and size as
/// installed (a link's target is read later).
fn check_entry(f: &File, i: usize, e: &zip::read::ZipFileEntry<'_>) -> Result<Entry> {
    let raw = e.name_raw();
    let name = check_name(raw)?;
    if unix_extra_links(f, e.header_start(), e.central_header_start()) {
        return Err(reject(format!(
            "{name}: hard link or device node (PKWARE Unix extra field) refused: only files, directories and links"
        )));
    }
    if e.encrypted() {
        return Err(reject(format!(
            "{name}: encrypted entries are not supported"
        )));
    }
    match e.compression() {
        CompressionMethod::Stored | CompressionMethod::Deflated => {}
        m => {
            return Err(reject(format!(
                "{name}: unsupported compression method {m}"
            )))
        }
    }
    let mode = e.unix_mode().unwrap_or(0);
    let ends_slash = raw.ends_with(b"/");
    let kind = match mode & S_IFMT {
        S_IFLNK => Kind::Symlink(String::new()),
        S_IFDIR => Kind::Dir,
        0 if ends_slash => Kind::Dir,
        S_IFREG | 0 => Kind::File,
        t => {
            return Err(reject(format!(
                "{name}: special file (type {t:o}) refused: only files, directories and links"
            )))
        }
    };
    if ends_slash && kind != Kind::Dir {
        return Err(reject(format!(
            "{name}: name says directory, mode says not"
        )));
    }
    let perm = mode & 0o777;
    let (mode, size) = match kind {
        Kind::Dir => (if perm == 0 { 0o755 } else { perm | 0o700 }, 0),
        Kind::File => (if perm == 0 { 0o644 } else { perm }, e.size()),
        Kind::Symlink(_) => (0o777, e.size()),
    };
    Ok(Entry {
        index: i,
        path: name,
        kind,
        mode,
        size,
        sha256: None,
    })
}

/// Link targets are data: read them (bounded) before checking where they point.
fn read_link_targets(zip: &mut Zip, entries: &mut [Entry]) -> Result<()> {
    for e in entries.iter_mut() {
        if matches!(e.kind, Kind::Symlink(_)) {
            let target = read_small(zip, e.index, MAX_LINK, &e.path)?;
            let target = String::from_utf8(target)
                .map_err(|_| reject(format!("{}: link target is not UTF-8", e.path)))?;
            e.kind = Kind::Symlink(target);
        }
    }
    Ok(())
}

/// The regular file at `path`, if the package has one.
fn file_at<'e>(entries: &'e [Entry], path: &str) -> Option<&'e Entry> {
    entries
        .iter()
        .find(|e| e.path == path && e.kind == Kind::File)
}

/// An install hook must be a regular file its owner can execute.
fn check_hooks(entries: &[Entry]) -> Result<()> {
    for hook in [HOOK_POST_INSTALL, HOOK_POST_SWITCH] {
        if let Some(e) = entries.iter().find(|e| e.path == hook) {
            if e.kind != Kind::File || e.mode & 0o100 == 0 {
                return Err(reject(format!(
                    "{hook}: an install hook must be a regular file, executable by its owner"
                )));
            }
        }
    }
    Ok(())
}

/// What a v2 manifest says about an entry must be what the archive holds: its type,
/// size and link target; its `mode` (signed, unlike the ZIP's attributes) is the
/// mode the entry gets (setuid, setgid and sticky still stripped). Listed
/// directories must exist in the package.
/// In a signed package nothing the signature does not cover is installed: every
/// file and link is listed (`read_manifest`), and so is every directory, except a
/// bare parent of listed paths (old-form manifests list files only), which gets mode
/// 0755 whatever the unsigned ZIP says.
fn signed_directories(entries: &mut [Entry], m: &Manifest) -> Result<()> {
    let Some(files) = &m.files else {
        return Ok(());
    };
    for e in entries.iter_mut().filter(|e| e.kind == Kind::Dir) {
        if files.contains_key(&e.path) {
            continue;
        }
        let prefix = format!("{}/", e.path);
        if !files.keys().any(|p| p.starts_with(&prefix)) {
            return Err(reject(format!(
                "{}/: directory not listed in the signed {MANIFEST}",
                e.path
            )));
        }
        e.mode = 0o755;
    }
    Ok(())
}

/// Installed modes are capped, signed or not: never group- or world-writable, never
/// setuid, setgid or sticky (those are already dropped), directories always usable by
/// their owner.
fn cap_modes(entries: &mut [Entry]) {
    for e in entries.iter_mut() {
        match e.kind {
            Kind::File => e.mode &= 0o755,
            Kind::Dir => e.mode = (e.mode & 0o755) | 0o700,
            Kind::Symlink(_) => {}
        }
    }
}

fn apply_manifest(entries: &mut [Entry], m: &Manifest) -> Result<()> {
    let Some(files) = &m.files else {
        return Ok(());
    };
    for e in entries.iter_mut() {
        let Some(it) = files.get(&e.path) else {
            continue;
        };
        let actual = match e.kind {
            Kind::Dir => FileType::Dir,
            Kind::File => FileType::File,
            Kind::Symlink(_) => FileType::Symlink,
        };
        if it.ftype.is_some_and(|t| t != actual) {
            return Err(reject(format!(
                "{}: {MANIFEST} says {:?}, the package holds a {actual:?}",
                e.path,
                it.ftype.unwrap_or(actual)
            )));
        }
        if let (Some(size), Kind::File) = (it.size, &e.kind) {
            if size != e.size {
                return Err(reject(format!(
                    "{}: {MANIFEST} says {size} bytes, the archive {}",
                    e.path, e.size
                )));
            }
        }
        if let (Some(t), Kind::Symlink(target)) = (&it.target, &e.kind) {
            if t != target {
                return Err(reject(format!(
                    "{}: {MANIFEST} says link to {t:?}, the archive to {target:?}",
                    e.path
                )));
            }
        }
        if let Some(mode) = it.mode {
            if !matches!(e.kind, Kind::Symlink(_)) {
                e.mode = mode & 0o777;
                if e.kind == Kind::Dir {
                    e.mode |= 0o700;
                }
            }
        }
        e.sha256 = it.sha256.clone();
    }
    for (p, it) in files {
        if it.ftype == Some(FileType::Dir) {
            let prefix = format!("{p}/");
            if !entries
                .iter()
                .any(|e| e.path == *p || e.path.starts_with(&prefix))
            {
                return Err(reject(format!(
                    "{MANIFEST} lists {p}/, absent from the package"
                )));
            }
        }
    }
    Ok(())
}

/// Whether the local or central header of an entry carries PKWARE's Unix extra
/// field (APPNOTE 4.5.7, id 0x000d) with its variable part: the "linked to" name of
/// a hard link (or a symlink) or a device's numbers. The zip crate ignores that
/// field, so such an entry would silently become a plain (often empty) file.
fn unix_extra_links(f: &File, local: u64, central: u64) -> bool {
    // (offset, signature, offset of the name length, offset of the fixed part's end)
    [
        (local, *b"PK\x03\x04", 26, 30),
        (central, *b"PK\x01\x02", 28, 46),
    ]
    .iter()
    .any(|&(at, sig, lens, fixed)| {
        let mut head = [0u8; 46];
        if f.read_exact_at(&mut head[..fixed], at).is_err() {
            return false;
        }
        if head[..4] != sig {
            return false;
        }
        let name_len = u16::from_le_bytes([head[lens], head[lens + 1]]) as u64;
        let extra_len = u16::from_le_bytes([head[lens + 2], head[lens + 3]]) as usize;
        let mut extra = vec![0u8; extra_len];
        if f.read_exact_at(&mut extra, at + fixed as u64 + name_len)
            .is_err()
        {
            return false;
        }
        let mut rest = &extra[..];
        while rest.len() >= 4 {
            let id = u16::from_le_bytes([rest[0], rest[1]]);
            let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
            let body = rest.get(4..4 + len).unwrap_or(&rest[4..]);
            // 12 fixed bytes (atime, mtime, uid, gid), then the variable part.
            if id == 0x000d && body.len() > 12 {
                return true;
            }
            rest = rest.get(4 + len..).unwrap_or(&[]);
        }
        false
    })
}

/// A safe relative name: UTF-8, no absolute path, `..`, `.`, empty component,
/// backslash, NUL or control character, no drive letter.
fn check_name(raw: &[u8]) -> Result<String> {
    let shown = String::from_utf8_lossy(raw).escape_debug().to_string();
    let name = std::str::from_utf8(raw)
        .map_err(|_| reject(format!("entry name {shown:?} is not UTF-8")))?;
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(reject(format!("entry name {shown:?}: empty or too long")));
    }
    if name.starts_with('/') {
        return Err(reject(format!("{shown}: absolute path refused")));
    }
    if name.contains('\\') || name.chars().any(|c| c.is_control()) {
        return Err(reject(format!(
            "{shown}: backslash, NUL or control character in name refused"
        )));
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(reject(format!("{shown}: empty name")));
    }
    for (i, comp) in trimmed.split('/').enumerate() {
        match comp {
            ".." => return Err(reject(format!("{shown}: `..` component refused"))),
            "." | "" => return Err(reject(format!("{shown}: empty or `.` component refused"))),
            c if i == 0 && c.len() == 2 && c.ends_with(':') => {
                return Err(reject(format!("{shown}: drive letter refused")))
            }
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

/// Every parent of an entry must be a directory, never a file or a link: nothing is
/// ever written through a link.
fn check_tree(entries: &[Entry]) -> Result<()> {
    let nondir: HashSet<&str> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir)
        .map(|e| e.path.as_str())
        .collect();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if nondir.contains(p) {
                return Err(reject(format!(
                    "{}: its parent {p} is a file or link in the package",
                    e.path
                )));
            }
        }
    }
    Ok(())
}

/// Links: relative targets only, resolving (lexically) inside the slot, and never
/// passing through another link of the package on the way (so the lexical answer is
/// the real one).
fn check_links(entries: &[Entry]) -> Result<()> {
    let links: HashSet<&str> = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::Symlink(_)))
        .map(|e| e.path.as_str())
        .collect();
    for e in entries {
        let Kind::Symlink(target) = &e.kind else {
            continue;
        };
        let bad = |why: &str| reject(format!("{}: link to {target:?} refused: {why}", e.path));
        if target.is_empty() || target.starts_with('/') {
            return Err(bad("empty or absolute target"));
        }
        if target.contains('\\') || target.chars().any(|c| c.is_control()) {
            return Err(bad("backslash or control character"));
        }
        let mut stack: Vec<&str> = e.path.split('/').collect();
        stack.pop();
        let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in comps.iter().enumerate() {
            match *c {
                "." => {}
                ".." => {
                    if stack.pop().is_none() {
                        return Err(bad("escapes the slot"));
                    }
                }
                c => {
                    stack.push(c);
                    if i + 1 < comps.len() && links.contains(stack.join("/").as_str()) {
                        return Err(bad("goes through another link"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads one entry's whole data, refusing more than `limit` bytes.
fn read_small(zip: &mut Zip, index: usize, limit: u64, what: &str) -> Result<Vec<u8>> {
    let f = zip
        .by_index(index)
        .map_err(|e| reject(format!("{what}: {e}")))?;
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| reject(format!("{what}: corrupt data: {e}")))?;
    if out.len() as u64 > limit {
        return Err(reject(format!("{what}: larger than {limit} bytes")));
    }
    Ok(out)
}

/// Parses manifest bytes (see `manifest::parse`).
pub fn parse_manifest(data: &[u8]) -> Result<Manifest> {
    manifest::parse(data)
}

/// Decodes `manifest.sig`: raw 64 bytes, or base64 of them.
fn decode_signature(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() == 64 {
        return Some(data.to_vec());
    }
    let text = std::str::from_utf8(data).ok()?;
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .ok()?;
    (sig.len() == 64).then_some(sig)
}

/// Reads, checks the signature of, and parses the manifest. With a key, manifest,
/// signature and a complete file list are required.
fn read_manifest(zip: &mut Zip, pkg: &Package, keys: &[[u8; 32]]) -> Result<Option<Manifest>> {
    let find = |name: &str| {
        pkg.entries
            .iter()
            .find(|e| e.path == name && e.kind == Kind::File)
            .map(|e| e.index)
    };
    let Some(mi) = find(MANIFEST) else {
        if !keys.is_empty() {
            return Err(reject(format!(
                "unsigned package: {MANIFEST} missing and updates.public_key is set"
            )));
        }
        return Ok(None);
    };
    let data = read_small(zip, mi, MAX_MANIFEST, MANIFEST)?;
    if !keys.is_empty() {
        let si = find(SIGNATURE).ok_or_else(|| {
            reject(format!(
                "unsigned package: {SIGNATURE} missing and updates.public_key is set"
            ))
        })?;
        let sig = read_small(zip, si, MAX_SIG, SIGNATURE)?;
        let sig = decode_signature(&sig)
            .ok_or_else(|| reject(format!("{SIGNATURE}: not a 64-byte Ed25519 signature")))?;
        // Any trusted key will do (several during a rotation).
        if !keys.iter().any(|key| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key[..])
                .verify(&data, &sig)
                .is_ok()
        }) {
            return Err(reject(format!(
                "{SIGNATURE}: signature does not verify with any trusted key"
            )));
        }
    }
    let m = parse_manifest(&data)?;
    match &m.files {
        Some(files) => {
            let present: HashSet<&str> = pkg
                .entries
                .iter()
                .filter(|e| e.kind != Kind::Dir)
                .map(|e| e.path.as_str())
                .collect();
            if let Some(p) = files
                .iter()
                .find(|(p, it)| it.ftype != Some(FileType::Dir) && !present.contains(p.as_str()))
                .map(|(p, _)| p)
            {
                return Err(reject(format!(
                    "{MANIFEST} lists {p}, absent from the package"
                )));
            }
            if let Some(e) = pkg.entries.iter().find(|e| {
                e.kind != Kind::Dir
                    && e.path != MANIFEST
                    && e.path != SIGNATURE
                    && !files.contains_key(&e.path)
            }) {
                return Err(reject(format!("{} is not listed in {MANIFEST}", e.path)));
            }
        }
        None if !keys.is_empty() => {
            if let Some(e) = pkg
                .entries
                .iter()
                .find(|e| e.kind != Kind::Dir && e.path != MANIFEST && e.path != SIGNATURE)
            {
                return Err(reject(format!(
                    "{} is not listed in {MANIFEST} (signed packages list every file)",
                    e.path
                )));
            }
        }
        None => {}
    }
    Ok(Some(m))
}

/// Reads every file's data once: the ZIP CRC is checked by the reader at the end of
/// each entry, sizes are held to what the headers declare, and listed digests match.
pub(crate) fn scan_data(zip: &mut Zip, pkg: &Package) -> Result<()> {
    let mut buf = vec![0u8; BUF];
    for e in &pkg.entries {
        let expected = e.sha256.as_ref();
        match &e.kind {
            Kind::Dir => continue,
            Kind::Symlink(t) => {
                if let Some(h) = expected {
                    if crate::hex::encode(digest::digest(&digest::SHA256, t.as_bytes()).as_ref())
                        != *h
                    {
                        return Err(reject(format!("{}: link target digest mismatch", e.path)));
                    }
                }
                continue;
            }
            Kind::File => {}
        }
        let mut r = zip
            .by_index(e.index)
            .map_err(|x| reject(format!("{}: {x}", e.path)))?;
        let mut ctx = expected.map(|_| digest::Context::new(&digest::SHA256));
        let mut n: u64 = 0;
        loop {
            let k = r
                .read(&mut buf)
                .map_err(|x| reject(format!("{}: corrupt data: {x}", e.path)))?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > e.size {
                return Err(reject(format!(
                    "{}: more data than its declared {} bytes",
                    e.path, e.size
                )));
            }
            if let Some(c) = ctx.as_mut() {
                c.update(&buf[..k]);
            }
        }
        if n != e.size {
            return Err(reject(format!(
                "{}: {n} bytes, header declares {}",
                e.path, e.size
            )));
        }
        if let (Some(c), Some(h)) = (ctx, expected) {
            if crate::hex::encode(c.finish().as_ref()) != *h {
                return Err(reject(format!(
                    "{}: SHA-256 does not match {MANIFEST}",
                    e.path
                )));
            }
        }
        if crate::signals::stop_requested() {
            return Err(Error::Interrupted);
        }
    }
    Ok(())
}
