//! Update packages for the tests: ZIP files built with the `zip` writer, manifests
//! (v1 and v2), Ed25519 signing with ring, and the tree a slot should hold.

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One entry of a test package.
#[derive(Clone, Debug)]
pub(crate) enum E {
    File(String, Vec<u8>, u32),
    Deflated(String, Vec<u8>),
    Dir(String),
    Link(String, String),
    /// Raw external attributes (e.g. a device node).
    Raw(String, Vec<u8>, u32),
}

/// A regular file, mode 0644.
pub(crate) fn file(name: &str, data: &[u8]) -> E {
    E::File(name.into(), data.to_vec(), 0o644)
}

/// Builds a ZIP from entries.
pub(crate) fn zip(entries: &[E]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for e in entries {
        match e {
            E::File(n, d, m) => {
                w.start_file(n.as_str(), stored.unix_permissions(*m))
                    .unwrap();
                w.write_all(d).unwrap();
            }
            E::Deflated(n, d) => {
                w.start_file(
                    n.as_str(),
                    SimpleFileOptions::default()
                        .compression_method(CompressionMethod::Deflated)
                        .unix_permissions(0o644),
                )
                .unwrap();
                w.write_all(d).unwrap();
            }
            E::Dir(n) => w
                .add_directory(n.as_str(), stored.unix_permissions(0o755))
                .unwrap(),
            E::Link(n, t) => w.add_symlink(n.as_str(), t.as_str(), stored).unwrap(),
            E::Raw(n, d, attrs) => {
                w.start_file(n.as_str(), stored.external_attributes(*attrs))
                    .unwrap();
                w.write_all(d).unwrap();
            }
        }
    }
    w.finish().unwrap().into_inner()
}

/// A normal application package of `version`: VERSION, app files, an executable.
pub(crate) fn app(version: &str) -> Vec<E> {
    vec![
        E::Dir("bin/".into()),
        E::File("bin/run".into(), b"#!/bin/sh\nexit 0\n".to_vec(), 0o755),
        file("VERSION", format!("{version}\n").as_bytes()),
        // What the real backend requires at a package's root (docs/protocol.md).
        file("version.json", &full_version_json(version)),
        file("app/config.txt", format!("app {version}\n").as_bytes()),
        E::Deflated("app/data.txt".into(), version.repeat(5000).into_bytes()),
        E::Link("app/current-config".into(), "config.txt".into()),
    ]
}

/// `version.json` for `version`, as the real backend's upload requires it, of a full
/// installation (`kind: full`); no minimum node version, so that any test box may
/// install it.
pub(crate) fn full_version_json(version: &str) -> Vec<u8> {
    cybersensei_sim::version_json(version, "- tests", "0.0.0").into_bytes()
}

/// A fresh Ed25519 key pair and its public key in base64.
pub(crate) fn keypair() -> (Ed25519KeyPair, String) {
    use base64::Engine;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pk = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
    (kp, pk)
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest listing every file (and link target) of `entries`.
pub(crate) fn manifest(version: &str, entries: &[E]) -> Vec<u8> {
    let mut files = serde_json::Map::new();
    for e in entries {
        match e {
            E::File(n, d, _) | E::Deflated(n, d) | E::Raw(n, d, _) => {
                files.insert(n.clone(), Value::from(sha256(d)));
            }
            E::Link(n, t) => {
                files.insert(n.clone(), Value::from(sha256(t.as_bytes())));
            }
            E::Dir(_) => {}
        }
    }
    serde_json::to_vec_pretty(&json!({"version": version, "files": files})).unwrap()
}

/// `entries` plus a manifest and its base64 signature by `kp`.
pub(crate) fn signed(version: &str, entries: &[E], kp: &Ed25519KeyPair) -> Vec<E> {
    use base64::Engine;
    let m = manifest(version, entries);
    let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
    let mut out = entries.to_vec();
    out.push(file("manifest.json", &m));
    out.push(file("manifest.sig", sig.as_bytes()));
    out
}

/// Every path under `dir` (relative) with its content: file bytes, `-> target` for
/// links, nothing for directories.
pub(crate) fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(base, &path, out);
            } else {
                out.insert(rel, sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What `tree` should show for a slot holding exactly `entries`.
pub(crate) fn expected_tree(entries: &[E]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in entries {
        let (name, val) = match e {
            E::File(n, d, _) | E::Deflated(n, d) | E::Raw(n, d, _) => (n.clone(), sha256(d)),
            E::Link(n, t) => (n.clone(), format!("-> {t}")),
            E::Dir(n) => (n.clone(), String::new()),
        };
        let parts: Vec<&str> = name.trim_end_matches('/').split('/').collect();
        for i in 1..parts.len() {
            out.insert(format!("{}/", parts[..i].join("/")), String::new());
        }
        out.insert(name, val);
    }
    out
}

/// Incompressible bytes (xorshift from `seed`): a package as big as its content.
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An executable (mode 0755): hooks, scripts.
pub(crate) fn exe(name: &str, body: &str) -> E {
    E::File(name.into(), body.as_bytes().to_vec(), 0o755)
}

/// `version.json` as the real backend writes it (pretty JSON), from `v`.
pub(crate) fn version_json(v: Value) -> E {
    file("version.json", &serde_json::to_vec_pretty(&v).unwrap())
}

/// A manifest v2 listing every file and link of `entries` with type, size and mode,
/// plus `kind` and `delete` when given.
pub(crate) fn manifest_v2(
    version: &str,
    kind: Option<&str>,
    entries: &[E],
    delete: &[&str],
) -> Vec<u8> {
    let mut files = Vec::new();
    for e in entries {
        match e {
            E::File(n, d, m) | E::Raw(n, d, m) => files.push(json!({"path": n, "type": "file",
                "size": d.len(), "mode": format!("{:04o}", m & 0o7777), "sha256": sha256(d)})),
            E::Deflated(n, d) => files.push(json!({"path": n, "type": "file",
                "size": d.len(), "sha256": sha256(d)})),
            E::Link(n, t) => files.push(json!({"path": n, "type": "symlink", "target": t,
                "sha256": sha256(t.as_bytes())})),
            E::Dir(n) => {
                files.push(json!({"path": n.trim_end_matches('/'), "type": "dir", "mode": "0755"}))
            }
        }
    }
    let mut m = json!({"version": version, "files": files});
    if let Some(k) = kind {
        m["kind"] = json!(k);
    }
    if !delete.is_empty() {
        m["delete"] = json!(delete);
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// `entries` without the one named `name` (to replace what `app()` carries).
pub(crate) fn without(mut entries: Vec<E>, name: &str) -> Vec<E> {
    entries.retain(|e| match e {
        E::File(n, ..) | E::Raw(n, ..) | E::Deflated(n, _) | E::Link(n, _) => n != name,
        _ => true,
    });
    entries
}
