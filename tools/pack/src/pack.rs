//! `pack DIR`: every path of DIR (directories included, symlinks as links) into a
//! ZIP whose `manifest.json` (v2) lists each one's type, mode, size and SHA-256, and
//! whose `manifest.sig` is the Ed25519 signature of the manifest's exact bytes.

use crate::Fail;
use base64::Engine;
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Names the packer writes itself; a DIR holding them is refused.
const RESERVED: [&str; 2] = ["manifest.json", "manifest.sig"];

/// `version.json` the real backend requires at the root of an upload.
pub struct VersionJson {
    pub changelog: String,
    pub required_node_version: String,
}

/// What to pack.
pub struct Spec {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub key: Option<Ed25519KeyPair>,
    pub version: Option<String>,
    pub kind: String,
    pub delete: Vec<String>,
    pub version_json: Option<VersionJson>,
}

/// One path of the tree.
enum Node {
    Dir(u32),
    File(u32, u64),
    Link(String),
}

fn walk(root: &Path, rel: &str, out: &mut Vec<(String, Node)>) -> Result<(), Fail> {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(&here).map_err(|e| Fail::new(format!("{}: {e}", here.display())))? {
        let e = e.map_err(|e| Fail::new(format!("{}: {e}", here.display())))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| Fail::new(format!("{}/{n:?}: name is not UTF-8", here.display())))?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if rel.is_empty() && RESERVED.contains(&name.as_str()) {
            return Err(Fail::new(format!(
                "{path}: written by the packer; remove it from the directory"
            )));
        }
        let full = root.join(&path);
        let md = std::fs::symlink_metadata(&full)
            .map_err(|e| Fail::new(format!("{}: {e}", full.display())))?;
        let ft = md.file_type();
        let mode = md.permissions().mode() & 0o7777;
        // The agent refuses these modes on the box; refuse them here, where the
        // vendor can fix the tree, rather than ship a package every box rejects.
        if !ft.is_symlink() && mode & 0o7022 != 0 {
            return Err(Fail::new(format!(
                "{path}: mode {mode:04o} is setuid/setgid/sticky or group/world-writable; chmod it first"
            )));
        }
        if ft.is_dir() {
            out.push((path.clone(), Node::Dir(mode)));
            walk(root, &path, out)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                eprintln!(
                    "cybersensei-pack: note: {path} has {} hard links; packed as a plain file",
                    md.nlink()
                );
            }
            out.push((path, Node::File(mode, md.len())));
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&full)
                .map_err(|e| Fail::new(format!("{}: {e}", full.display())))?;
            let t = t
                .into_os_string()
                .into_string()
                .map_err(|_| Fail::new(format!("{path}: link target is not UTF-8")))?;
            if t.starts_with('/') {
                return Err(Fail::new(format!(
                    "{path}: absolute link target {t:?}; the agent accepts relative links inside the slot only"
                )));
            }
            out.push((path, Node::Link(t)));
        } else {
            return Err(Fail::new(format!(
                "{path}: not a file, directory or symlink (device, FIFO or socket)"
            )));
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(String, u64), Fail> {
    let mut f = File::open(path).map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
        if k == 0 {
            break;
        }
        ctx.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(ctx.finish().as_ref()), n))
}

fn hex(b: &[u8]) -> String {
    cybersensei_agent::hex::encode(b)
}

fn sha256(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// The version: `--version`, else DIR/version.json's, else DIR/VERSION's first line.
fn version_of(spec: &Spec) -> Result<String, Fail> {
    let v = if let Some(v) = &spec.version {
        v.clone()
    } else if let Ok(data) = std::fs::read(spec.dir.join("version.json")) {
        let j: Value =
            serde_json::from_slice(&data).map_err(|e| Fail::new(format!("version.json: {e}")))?;
        j.get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| Fail::new("version.json: no \"version\" string"))?
            .to_string()
    } else if let Ok(text) = std::fs::read_to_string(spec.dir.join("VERSION")) {
        text.lines().next().unwrap_or("").trim().to_string()
    } else {
        return Err(Fail::new(
            "no version: give --version, or put version.json or VERSION in DIR",
        ));
    };
    cybersensei_agent::update::verify::check_version(&v, "--version")
        .map_err(|e| Fail::new(e.to_string()))
}

fn mode_str(m: u32) -> String {
    format!("{m:04o}")
}

/// Packs `spec.dir` into `spec.out` (written under a temporary name, then renamed).
pub fn pack(spec: &Spec) -> Result<(), Fail> {
    if !spec.dir.is_dir() {
        return Err(Fail::new(format!(
            "{}: not a directory",
            spec.dir.display()
        )));
    }
    let version = version_of(spec)?;
    let mut tree = Vec::new();
    walk(&spec.dir, "", &mut tree)?;
    let generated_vj = match &spec.version_json {
        Some(vj) => {
            if tree.iter().any(|(p, _)| p == "version.json") {
                return Err(Fail::new(
                    "--version-json: DIR already holds a version.json (drop one of the two)",
                ));
            }
            let created = cybersensei_agent::clock::iso8601(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            );
            let j = json!({"version": version, "changelog": vj.changelog,
                           "requiredNodeVersion": vj.required_node_version,
                           "kind": spec.kind, "createdAt": created});
            Some(
                serde_json::to_vec_pretty(&j)
                    .map_err(|e| Fail::new(format!("version.json: {e}")))?,
            )
        }
        None => None,
    };
    let mut files = Vec::new();
    for (path, node) in &tree {
        let mut m = Map::new();
        m.insert("path".into(), Value::from(path.as_str()));
        match node {
            Node::Dir(mode) => {
                m.insert("type".into(), "dir".into());
                m.insert("mode".into(), mode_str(*mode).into());
            }
            Node::File(mode, _) => {
                let (h, n) = sha256_file(&spec.dir.join(path))?;
                m.insert("type".into(), "file".into());
                m.insert("size".into(), n.into());
                m.insert("mode".into(), mode_str(*mode).into());
                m.insert("sha256".into(), h.into());
            }
            Node::Link(t) => {
                m.insert("type".into(), "symlink".into());
                m.insert("target".into(), t.as_str().into());
                m.insert("sha256".into(), sha256(t.as_bytes()).into());
            }
        }
        files.push(Value::Object(m));
    }
    if let Some(vj) = &generated_vj {
        files.push(
            json!({"path": "version.json", "type": "file", "size": vj.len(),
                          "mode": "0644", "sha256": sha256(vj)}),
        );
    }
    let manifest = json!({"version": version, "kind": spec.kind, "files": files,
                          "delete": spec.delete});
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Fail::new(format!("manifest: {e}")))?;
    let signature = spec.key.as_ref().map(|k| {
        let mut s = base64::engine::general_purpose::STANDARD.encode(k.sign(&manifest).as_ref());
        s.push('\n');
        s
    });

    let tmp = {
        let mut s = spec.out.as_os_str().to_os_string();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let f = File::create(&tmp).map_err(|e| Fail::new(format!("{}: {e}", tmp.display())))?;
    let mut w = ZipWriter::new(f);
    let zerr = |e: zip::result::ZipError| Fail::new(format!("writing {}: {e}", spec.out.display()));
    let ioerr = |e: std::io::Error| Fail::new(format!("writing {}: {e}", spec.out.display()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(false);
    // The manifest first: a reader can check it before the data.
    w.start_file("manifest.json", stored.unix_permissions(0o644))
        .map_err(zerr)?;
    w.write_all(&manifest).map_err(ioerr)?;
    if let Some(sig) = &signature {
        w.start_file("manifest.sig", stored.unix_permissions(0o644))
            .map_err(zerr)?;
        w.write_all(sig.as_bytes()).map_err(ioerr)?;
    }
    if let Some(vj) = &generated_vj {
        w.start_file("version.json", deflated.unix_permissions(0o644))
            .map_err(zerr)?;
        w.write_all(vj).map_err(ioerr)?;
    }
    for (path, node) in &tree {
        match node {
            Node::Dir(mode) => w
                .add_directory(format!("{path}/"), stored.unix_permissions(*mode))
                .map_err(zerr)?,
            Node::File(mode, size) => {
                let opts = deflated
                    .unix_permissions(*mode)
                    .large_file(*size >= 0xFFFF_FFFF);
                w.start_file(path.as_str(), opts).map_err(zerr)?;
                let full = spec.dir.join(path);
                let mut src =
                    File::open(&full).map_err(|e| Fail::new(format!("{}: {e}", full.display())))?;
                std::io::copy(&mut src, &mut w).map_err(ioerr)?;
            }
            Node::Link(t) => w
                .add_symlink(path.as_str(), t.as_str(), stored)
                .map_err(zerr)?,
        }
    }
    let f = w.finish().map_err(zerr)?;
    f.sync_all().map_err(ioerr)?;
    drop(f);
    std::fs::rename(&tmp, &spec.out).map_err(ioerr)?;
    let size = std::fs::metadata(&spec.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: version {version}, kind {}, {} paths, {size} bytes, sha256 {}, {}",
        spec.out.display(),
        spec.kind,
        files.len(),
        sha256_file(&spec.out)?.0,
        match &spec.key {
            Some(k) => format!(
                "signed by key {}",
                crate::keys::key_id(ring::signature::KeyPair::public_key(k).as_ref())
            ),
            None => "UNSIGNED".into(),
        }
    );
    Ok(())
}
