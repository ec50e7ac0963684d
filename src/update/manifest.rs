//! `manifest.json` (format v2, docs/updates.md "Package format"): the parsed types
//! and the parser. Pure: no I/O, no policy beyond the format itself. The old forms
//! (`files` as an object `path -> sha256`, or an array of `{path, sha256}`) are still
//! accepted; v2 items add `type`, `size`, `mode` and `target`, and the manifest may
//! say its `kind` and list `delete`d paths.

use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;

/// Manifest at the package root.
pub const MANIFEST: &str = "manifest.json";
const MAX_VERSION: usize = 64;

/// How a package is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackageKind {
    /// A complete installation: the new slot is exactly the package.
    Full,
    /// Applied on top of a copy of the active slot (added/replaced files, deletions).
    Content,
}

impl PackageKind {
    /// Parses `"full"` / `"content"`.
    pub(crate) fn parse(s: &str, what: &str) -> Result<PackageKind> {
        match s {
            "full" => Ok(PackageKind::Full),
            "content" => Ok(PackageKind::Content),
            other => Err(reject(format!(
                "{what}: kind {other:?} is neither \"full\" nor \"content\""
            ))),
        }
    }
    /// The word used in the manifest, the slot record and the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PackageKind::Full => "full",
            PackageKind::Content => "content",
        }
    }
}

/// `type` of a manifest item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileType {
    File,
    Dir,
    Symlink,
}

/// One listed path and what the manifest says about it (every field but the path is
/// optional: the old forms only carry a digest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Item {
    pub(crate) ftype: Option<FileType>,
    /// Lowercase hex SHA-256 of the data (of the target string for a link).
    pub(crate) sha256: Option<String>,
    pub(crate) size: Option<u64>,
    /// Permission bits (octal string in the file).
    pub(crate) mode: Option<u32>,
    /// A link's target.
    pub(crate) target: Option<String>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub(crate) version: String,
    pub(crate) kind: Option<PackageKind>,
    /// Path -> item; None when the manifest lists no files.
    pub(crate) files: Option<BTreeMap<String, Item>>,
    /// Relative paths removed from the copy of the active slot (content packages).
    pub(crate) delete: Vec<String>,
}

fn reject(msg: impl Into<String>) -> Error {
    Error::PackageRejected(msg.into())
}

/// A version string fit for status.json and a slot record.
pub fn check_version(v: &str, what: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.len() <= MAX_VERSION
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(reject(format!(
            "{what}: version {v:?} is not a plain version string"
        )))
    }
}

fn digest(p: &str, h: &str) -> Result<String> {
    crate::hex::sha256_digest(h)
        .ok_or_else(|| reject(format!("{MANIFEST}: {p}: not a SHA-256 hex digest")))
}

fn mode(p: &str, v: &Value) -> Result<u32> {
    let bad = || {
        reject(format!(
            "{MANIFEST}: {p}: mode must be an octal string like \"0755\""
        ))
    };
    let s = v.as_str().ok_or_else(bad)?;
    if s.is_empty() || s.len() > 6 {
        return Err(bad());
    }
    let m = u32::from_str_radix(s, 8).map_err(|_| bad())?;
    if m > 0o7777 {
        return Err(bad());
    }
    Ok(m)
}

/// Normalizes a listed path the way entry names are (`./` prefix and trailing `/`
/// dropped) and refuses what could never name an entry inside the slot.
pub(crate) fn clean_path(p: &str) -> Result<String> {
    let p = p.strip_prefix("./").unwrap_or(p);
    let p = p.strip_suffix('/').unwrap_or(p);
    let bad = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.chars().any(|c| c.is_control())
        || p.split('/').any(|c| matches!(c, "" | "." | ".."));
    if bad {
        return Err(reject(format!(
            "{MANIFEST}: path {:?} is not a safe relative path",
            p.escape_debug().to_string()
        )));
    }
    Ok(p.to_string())
}

fn item(p: &str, o: &serde_json::Map<String, Value>) -> Result<Item> {
    let s = |k: &str| -> Result<Option<&str>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(reject(format!("{MANIFEST}: {p}: \"{k}\" must be a string"))),
        }
    };
    let ftype = match s("type")? {
        None => None,
        Some("file") => Some(FileType::File),
        Some("dir") => Some(FileType::Dir),
        Some("symlink") => Some(FileType::Symlink),
        Some(t) => {
            return Err(reject(format!(
                "{MANIFEST}: {p}: type {t:?} is not file, dir or symlink"
            )))
        }
    };
    let sha256 = s("sha256")?.map(|h| digest(p, h)).transpose()?;
    let size = match o.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| reject(format!("{MANIFEST}: {p}: size must be a number")))?,
        ),
    };
    let mode = match o.get("mode") {
        None | Some(Value::Null) => None,
        Some(v) => Some(mode(p, v)?),
    };
    let target = s("target")?.map(str::to_string);
    if ftype != Some(FileType::Dir) && sha256.is_none() {
        return Err(reject(format!(
            "{MANIFEST}: {p}: files and links need a \"sha256\""
        )));
    }
    Ok(Item {
        ftype,
        sha256,
        size,
        mode,
        target,
    })
}

/// Parses manifest bytes (v2 and the older forms).
pub(crate) fn parse(data: &[u8]) -> Result<Manifest> {
    let v: Value = serde_json::from_slice(data)
        .map_err(|e| reject(format!("{MANIFEST}: invalid JSON: {e}")))?;
    let version = v
        .get("version")
        .and_then(|x| x.as_str())
        .ok_or_else(|| reject(format!("{MANIFEST}: no \"version\" string")))?;
    let version = check_version(version, MANIFEST)?;
    let kind = match v.get("kind") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(PackageKind::parse(k, MANIFEST)?),
        Some(_) => return Err(reject(format!("{MANIFEST}: \"kind\" must be a string"))),
    };
    let delete = deletions(v.get("delete"))?;
    Ok(Manifest {
        version,
        kind,
        files: files(v.get("files"))?,
        delete,
    })
}

/// `delete`: the paths a content package removes (none when absent).
fn deletions(v: Option<&Value>) -> Result<Vec<String>> {
    let mut delete = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for d in a {
                let d = d.as_str().ok_or_else(|| {
                    reject(format!("{MANIFEST}: \"delete\" must list path strings"))
                })?;
                delete.push(clean_path(d)?);
            }
        }
        Some(_) => return Err(reject(format!("{MANIFEST}: \"delete\" must be an array"))),
    }
    Ok(delete)
}

/// `files`, in the old object form (`path -> sha256`) or as an array of items;
/// None when absent.
fn files(v: Option<&Value>) -> Result<Option<BTreeMap<String, Item>>> {
    let mut files = BTreeMap::new();
    let mut add = |p: &str, it: Item| -> Result<()> {
        let p = clean_path(p)?;
        if files.insert(p.clone(), it).is_some() {
            return Err(reject(format!("{MANIFEST}: {p} listed twice")));
        }
        Ok(())
    };
    match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => {
            for (p, h) in o {
                let h = h
                    .as_str()
                    .ok_or_else(|| reject(format!("{MANIFEST}: {p}: digest is not a string")))?;
                let it = Item {
                    sha256: Some(digest(p, h)?),
                    ..Item::default()
                };
                add(p, it)?;
            }
        }
        Some(Value::Array(a)) => {
            for x in a {
                let o = x.as_object();
                let p = o.and_then(|o| o.get("path")).and_then(|p| p.as_str());
                match (o, p) {
                    (Some(o), Some(p)) => add(p, item(p, o)?)?,
                    _ => {
                        return Err(reject(format!(
                            "{MANIFEST}: file items need a \"path\" string"
                        )))
                    }
                }
            }
        }
        Some(_) => {
            return Err(reject(format!(
                "{MANIFEST}: \"files\" must be an object or array"
            )))
        }
    }
    Ok(Some(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn old_object_form() {
        let m = parse(
            format!(
                r#"{{"version":"1.0.0","files":{{"./a":"{}"}}}}"#,
                H.to_uppercase()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, None);
        let f = m.files.unwrap();
        assert_eq!(f["a"].sha256.as_deref(), Some(H));
        assert_eq!(f["a"].ftype, None);
    }

    #[test]
    fn old_array_form_and_no_files() {
        let m = parse(
            format!(r#"{{"version":"1.0.0","files":[{{"path":"a/b","sha256":"{H}"}}]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(m.files.unwrap().contains_key("a/b"));
        let m = parse(br#"{"version":"1.0.0"}"#).unwrap();
        assert_eq!(m.files, None);
        assert!(m.delete.is_empty());
    }

    #[test]
    fn v2_form() {
        let text = format!(
            r#"{{"version":"1.2.0","kind":"content","files":[
              {{"path":"bin","type":"dir","mode":"0755"}},
              {{"path":"bin/x","type":"file","size":3,"mode":"0750","sha256":"{H}"}},
              {{"path":"lib/l.so","type":"symlink","target":"l.so.1","sha256":"{H}"}}],
              "delete":["app/old.js","./d/"]}}"#
        );
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.kind, Some(PackageKind::Content));
        assert_eq!(m.delete, vec!["app/old.js".to_string(), "d".to_string()]);
        let f = m.files.unwrap();
        assert_eq!(f["bin"].ftype, Some(FileType::Dir));
        assert_eq!(f["bin"].mode, Some(0o755));
        assert_eq!(f["bin/x"].size, Some(3));
        assert_eq!(f["bin/x"].mode, Some(0o750));
        assert_eq!(f["lib/l.so"].target.as_deref(), Some("l.so.1"));
    }

    #[test]
    fn refusals() {
        for bad in [
            r#"{"version":"1.0.0","kind":"delta"}"#.to_string(),
            r#"{"version":"1.0.0","kind":3}"#.into(),
            r#"{"version":"1.0.0","delete":["../etc/passwd"]}"#.into(),
            r#"{"version":"1.0.0","delete":["/etc"]}"#.into(),
            r#"{"version":"1.0.0","delete":"a"}"#.into(),
            format!(r#"{{"version":"1.0.0","files":[{{"path":"a","mode":"9","sha256":"{H}"}}]}}"#),
            format!(
                r#"{{"version":"1.0.0","files":[{{"path":"a","mode":"017777","sha256":"{H}"}}]}}"#
            ),
            format!(
                r#"{{"version":"1.0.0","files":[{{"path":"a","type":"fifo","sha256":"{H}"}}]}}"#
            ),
            r#"{"version":"1.0.0","files":[{"path":"a","type":"file"}]}"#.into(),
            format!(
                r#"{{"version":"1.0.0","files":[{{"path":"a","sha256":"{H}"}},{{"path":"./a","sha256":"{H}"}}]}}"#
            ),
            format!(r#"{{"version":"1.0.0","files":[{{"path":"../a","sha256":"{H}"}}]}}"#),
            r#"{"version":"1 0","files":{}}"#.into(),
            r#"{"files":{}}"#.into(),
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(Error::PackageRejected(_))),
                "accepted {bad}"
            );
        }
    }
}
