//! `inspect` (what a package holds) and `verify` (is it exactly what its signed
//! manifest says, and does the agent accept it).

use crate::Fail;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use zip::ZipArchive;

const MAX_SMALL: u64 = 4 << 20;

fn open(pkg: &Path) -> Result<ZipArchive<File>, Fail> {
    let f = File::open(pkg).map_err(|e| Fail::new(format!("{}: {e}", pkg.display())))?;
    ZipArchive::new(f).map_err(|e| Fail::new(format!("{}: not a ZIP: {e}", pkg.display())))
}

fn read_entry(z: &mut ZipArchive<File>, name: &str) -> Result<Option<Vec<u8>>, Fail> {
    let Ok(f) = z.by_name(name) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    f.take(MAX_SMALL + 1)
        .read_to_end(&mut out)
        .map_err(|e| Fail::new(format!("{name}: {e}")))?;
    if out.len() as u64 > MAX_SMALL {
        return Err(Fail::new(format!("{name}: larger than {MAX_SMALL} bytes")));
    }
    Ok(Some(out))
}

/// One path as the ZIP itself describes it.
#[derive(Debug, PartialEq)]
struct Actual {
    kind: &'static str,
    mode: Option<u32>,
    size: u64,
    sha256: String,
    target: Option<String>,
}

fn actual_entries(z: &mut ZipArchive<File>) -> Result<BTreeMap<String, Actual>, Fail> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..z.len() {
        let mut e = z
            .by_index(i)
            .map_err(|e| Fail::new(format!("entry {i}: {e}")))?;
        let raw = String::from_utf8_lossy(e.name_raw()).into_owned();
        let name = raw.trim_end_matches('/').to_string();
        if name == "manifest.json" || name == "manifest.sig" {
            continue;
        }
        let mode = e.unix_mode();
        let kind = match mode.map(|m| m & 0o170000) {
            Some(0o120000) => "symlink",
            Some(0o040000) => "dir",
            _ if raw.ends_with('/') => "dir",
            _ => "file",
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        let mut target = Vec::new();
        if kind != "dir" {
            loop {
                let k = e
                    .read(&mut buf)
                    .map_err(|x| Fail::new(format!("{name}: {x}")))?;
                if k == 0 {
                    break;
                }
                ctx.update(&buf[..k]);
                n += k as u64;
                if kind == "symlink" && target.len() < 4096 {
                    target.extend_from_slice(&buf[..k]);
                }
            }
        }
        out.insert(
            name,
            Actual {
                kind,
                mode: mode.map(|m| m & 0o7777),
                size: n,
                sha256: cybersensei_agent::hex::encode(ctx.finish().as_ref()),
                target: (kind == "symlink").then(|| String::from_utf8_lossy(&target).into_owned()),
            },
        );
    }
    Ok(out)
}

/// Prints the manifest summary and every entry.
pub fn inspect(pkg: &Path) -> Result<(), Fail> {
    let mut z = open(pkg)?;
    match read_entry(&mut z, "manifest.json")? {
        Some(m) => {
            let v: Value =
                serde_json::from_slice(&m).map_err(|e| Fail::new(format!("manifest.json: {e}")))?;
            let files = v.get("files").and_then(Value::as_array).map(Vec::len);
            println!(
                "manifest: version {}, kind {}, {} paths listed, {} to delete",
                v.get("version").and_then(Value::as_str).unwrap_or("?"),
                v.get("kind").and_then(Value::as_str).unwrap_or("(unset)"),
                files
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "no list of".into()),
                v.get("delete")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .unwrap_or(0)
            );
        }
        None => println!("manifest: NONE (a box with a key refuses this package)"),
    }
    match read_entry(&mut z, "manifest.sig")? {
        Some(_) => println!("signature: present (check it with `verify PKG --key NAME.pub`)"),
        None => println!("signature: NONE"),
    }
    if let Some(vj) = read_entry(&mut z, "version.json")? {
        let v: Value = serde_json::from_slice(&vj).unwrap_or(Value::Null);
        println!(
            "version.json: version {}, requiredNodeVersion {}",
            v.get("version").and_then(Value::as_str).unwrap_or("?"),
            v.get("requiredNodeVersion")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
    }
    for (name, a) in actual_entries(&mut z)? {
        let mode = a
            .mode
            .map(|m| format!("{m:04o}"))
            .unwrap_or_else(|| "----".into());
        match &a.target {
            Some(t) => println!("  {:<7} {mode} {:>10}  {name} -> {t}", a.kind, a.size),
            None => println!("  {:<7} {mode} {:>10}  {name}", a.kind, a.size),
        }
    }
    Ok(())
}

/// Signature by one of `keys`, the ZIP equal to the manifest, and the agent's verdict.
pub fn verify(pkg: &Path, keys: &[[u8; 32]]) -> Result<(), Fail> {
    let mut z = open(pkg)?;
    let manifest = read_entry(&mut z, "manifest.json")?
        .ok_or_else(|| Fail::new("no manifest.json: unsigned package"))?;
    let sig = read_entry(&mut z, "manifest.sig")?
        .ok_or_else(|| Fail::new("no manifest.sig: unsigned package"))?;
    let sig = if sig.len() == 64 {
        sig
    } else {
        let clean: String = String::from_utf8_lossy(&sig)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|_| Fail::new("manifest.sig: not base64 of a signature"))?
    };
    let signer = keys
        .iter()
        .find(|k| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &k[..])
                .verify(&manifest, &sig)
                .is_ok()
        })
        .ok_or_else(|| Fail::new("manifest.sig: signature does not verify with any given key"))?;
    println!("signature: good, key {}", crate::keys::key_id(signer));
    let m: Value =
        serde_json::from_slice(&manifest).map_err(|e| Fail::new(format!("manifest.json: {e}")))?;
    let listed = m
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| Fail::new("manifest.json: \"files\" is not a v2 list"))?;
    let actual = actual_entries(&mut z)?;
    let mut seen = std::collections::HashSet::new();
    for item in listed {
        let path = item
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Fail::new("manifest.json: an item without \"path\""))?;
        seen.insert(path.to_string());
        let a = actual
            .get(path)
            .ok_or_else(|| Fail::new(format!("{path}: listed, absent from the ZIP")))?;
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("file");
        if kind != a.kind {
            return Err(Fail::new(format!(
                "{path}: manifest says {kind}, ZIP holds a {}",
                a.kind
            )));
        }
        if let Some(mode) = item.get("mode").and_then(Value::as_str) {
            let want = u32::from_str_radix(mode, 8)
                .map_err(|_| Fail::new(format!("{path}: mode {mode:?} is not octal")))?;
            if a.mode != Some(want) {
                return Err(Fail::new(format!(
                    "{path}: manifest says mode {mode}, ZIP says {:?}",
                    a.mode.map(|m| format!("{m:04o}"))
                )));
            }
        }
        if kind != "dir" {
            if let Some(size) = item.get("size").and_then(Value::as_u64) {
                if size != a.size {
                    return Err(Fail::new(format!(
                        "{path}: size {} in the ZIP, {size} listed",
                        a.size
                    )));
                }
            }
            let h = item.get("sha256").and_then(Value::as_str).unwrap_or("");
            if !h.eq_ignore_ascii_case(&a.sha256) {
                return Err(Fail::new(format!(
                    "{path}: SHA-256 differs from the manifest"
                )));
            }
        }
    }
    if let Some(extra) = actual.keys().find(|p| !seen.contains(*p)) {
        return Err(Fail::new(format!(
            "{extra}: in the ZIP, not in the manifest"
        )));
    }
    println!("contents: {} paths, exactly as listed", actual.len());
    // The agent's own verification, with the key that signed it.
    let limits = cybersensei_agent::update::verify::Limits {
        max_entries: 100_000,
        max_unpacked: u64::MAX,
    };
    let f = File::open(pkg).map_err(|e| Fail::new(format!("{}: {e}", pkg.display())))?;
    cybersensei_agent::update::verify::verify(&f, &limits, std::slice::from_ref(signer))
        .map_err(|e| Fail::new(format!("the agent refuses it: {e}")))?;
    println!("agent: accepted");
    Ok(())
}
