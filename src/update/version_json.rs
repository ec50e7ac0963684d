//! `version.json`: the metadata the real backend puts at the root of every package it
//! builds or accepts (platform/api `VersionMetadata`: `version`, `changelog`,
//! `requiredNodeVersion`, optional `platform`, `architecture`, `breaking`,
//! `securityUpdate`, `dependencies`, `createdAt`; ours: `kind`), semantic versions,
//! and the checks a package's metadata must pass on this box. Pure: the box's facts
//! come in as arguments.

use super::manifest::PackageKind;
use crate::error::{Error, Result};
use serde_json::Value;
use std::cmp::Ordering;

/// The metadata file at a package's root.
pub(crate) const VERSION_JSON: &str = "version.json";

/// What `version.json` says (unknown fields ignored, as the backend allows them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionInfo {
    pub(crate) version: String,
    pub(crate) required_node_version: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) architecture: Option<String>,
    pub(crate) breaking: bool,
    pub(crate) security_update: bool,
    pub(crate) kind: Option<PackageKind>,
}

fn reject(msg: impl Into<String>) -> Error {
    Error::PackageRejected(msg.into())
}

/// Parses `version.json` bytes.
pub fn parse(data: &[u8]) -> Result<VersionInfo> {
    let v: Value = serde_json::from_slice(data)
        .map_err(|e| reject(format!("{VERSION_JSON}: invalid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| reject(format!("{VERSION_JSON}: not a JSON object")))?;
    let s = |k: &str| -> Result<Option<String>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(reject(format!("{VERSION_JSON}: \"{k}\" must be a string"))),
        }
    };
    let b = |k: &str| -> Result<bool> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(reject(format!(
                "{VERSION_JSON}: \"{k}\" must be true or false"
            ))),
        }
    };
    let version = s("version")?.ok_or_else(|| reject(format!("{VERSION_JSON}: no \"version\"")))?;
    Ok(VersionInfo {
        version,
        required_node_version: s("requiredNodeVersion")?,
        platform: s("platform")?,
        architecture: s("architecture")?,
        breaking: b("breaking")?,
        security_update: b("securityUpdate")?,
        kind: s("kind")?
            .map(|k| PackageKind::parse(&k, VERSION_JSON))
            .transpose()?,
    })
}

/// A semantic version (semver.org 2.0.0): `MAJOR.MINOR.PATCH[-pre][+build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    /// Dot-separated pre-release identifiers (empty for a release).
    pub(crate) pre: Vec<String>,
}

impl Semver {
    /// Parses a strict semantic version; a leading `v` is not accepted.
    pub fn parse(s: &str) -> Option<Semver> {
        let core_pre = s.split_once('+').map_or(s, |(a, build)| {
            if build.is_empty() || !build.split('.').all(ident_ok) {
                ""
            } else {
                a
            }
        });
        let (core, pre) = match core_pre.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core_pre, None),
        };
        let mut n = core.split('.').map(num);
        let (major, minor, patch) = (n.next()??, n.next()??, n.next()??);
        if n.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => vec![],
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                let ok = ids.iter().all(|i| {
                    ident_ok(i)
                        && !(i.len() > 1
                            && i.starts_with('0')
                            && i.bytes().all(|b| b.is_ascii_digit()))
                });
                if !ok {
                    return None;
                }
                ids
            }
        };
        Some(Semver {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn ident_ok(i: &str) -> bool {
    !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn num(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

impl Ord for Semver {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if c != Ordering::Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The canonical name of an architecture spelling, None when unknown.
pub(crate) fn canonical_arch(a: &str) -> Option<&'static str> {
    match a.trim().to_ascii_lowercase().as_str() {
        "x64" | "amd64" | "x86_64" | "x86-64" => Some("x86_64"),
        "arm64" | "aarch64" | "armv8" => Some("aarch64"),
        "armv7" | "armv7l" | "armhf" | "arm" => Some("arm"),
        _ => None,
    }
}

/// This box's architecture, in the canonical names above.
pub(crate) fn box_arch() -> &'static str {
    canonical_arch(std::env::consts::ARCH).unwrap_or(std::env::consts::ARCH)
}

/// The facts of this box a package's metadata is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Facts<'a> {
    /// Canonical architecture (`box_arch()`).
    pub(crate) arch: &'a str,
    /// Version of the active slot ("0.0.0" on a fresh box).
    pub(crate) installed: &'a str,
    /// The check's `latestVersion`, for a package from the backend.
    pub(crate) latest: Option<&'a str>,
    /// The manifest's version, when the package has a manifest.
    pub(crate) manifest: Option<&'a str>,
}

/// Every refusal `version.json` can cause (exit 21 with the reason).
pub(crate) fn check(v: &VersionInfo, f: &Facts) -> Result<()> {
    let ours = Semver::parse(&v.version).ok_or_else(|| {
        reject(format!(
            "{VERSION_JSON}: version {:?} is not a semantic version (MAJOR.MINOR.PATCH)",
            v.version
        ))
    })?;
    if let Some(p) = &v.platform {
        if !matches!(p.to_ascii_lowercase().as_str(), "linux" | "any" | "all") {
            return Err(reject(format!(
                "{VERSION_JSON}: platform {p:?} is not linux"
            )));
        }
    }
    if let Some(a) = &v.architecture {
        let any = matches!(a.to_ascii_lowercase().as_str(), "any" | "all" | "noarch");
        if !any && canonical_arch(a) != Some(f.arch) {
            return Err(reject(format!(
                "{VERSION_JSON}: architecture {a:?} is not this box's ({})",
                f.arch
            )));
        }
    }
    for (other, what) in [
        (f.latest, "the check's latestVersion"),
        (f.manifest, "manifest.json"),
    ] {
        let Some(other) = other else { continue };
        if Semver::parse(other).as_ref() != Some(&ours) {
            return Err(reject(format!(
                "{VERSION_JSON}: version {} is not {what} ({other})",
                v.version
            )));
        }
    }
    if let Some(req) = &v.required_node_version {
        let need = Semver::parse(req).ok_or_else(|| {
            reject(format!(
                "{VERSION_JSON}: requiredNodeVersion {req:?} is not a semantic version"
            ))
        })?;
        match Semver::parse(f.installed) {
            Some(have) if have >= need => {}
            Some(_) => {
                return Err(reject(format!(
                    "{VERSION_JSON}: requires version {req} installed first (this box runs {})",
                    f.installed
                )))
            }
            None => {
                return Err(reject(format!(
                    "{VERSION_JSON}: requires version {req}; the installed version {:?} cannot be compared",
                    f.installed
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> VersionInfo {
        VersionInfo {
            version: version.into(),
            ..VersionInfo::default()
        }
    }

    fn facts<'a>(installed: &'a str) -> Facts<'a> {
        Facts {
            arch: "x86_64",
            installed,
            latest: None,
            manifest: None,
        }
    }

    #[test]
    fn parses_what_the_backend_generator_writes() {
        // platform/api update.service.ts generateUpdatePackage, JSON.stringify(.., 2).
        let v = parse(
            br#"{
  "version": "1.3.0",
  "changelog": "New exercises",
  "requiredNodeVersion": "1.0.0",
  "createdAt": "2025-11-24T10:00:00.000Z"
}"#,
        )
        .unwrap();
        assert_eq!(v.version, "1.3.0");
        assert_eq!(v.required_node_version.as_deref(), Some("1.0.0"));
        assert!(!v.breaking && !v.security_update);
        assert_eq!(v.kind, None);
        let v = parse(br#"{"version":"2.0.0","breaking":true,"securityUpdate":true,"kind":"full","dependencies":{"x":"1"}}"#).unwrap();
        assert!(v.breaking && v.security_update);
        assert_eq!(v.kind, Some(PackageKind::Full));
        assert!(parse(br#"{"version":"2.0.0","breaking":"yes"}"#).is_err());
        assert!(parse(br#"{"changelog":"x"}"#).is_err());
        assert!(parse(br#"[1]"#).is_err());
        assert!(parse(br#"{"version":"2.0.0","kind":"delta"}"#).is_err());
    }

    #[test]
    fn semver_parse_and_order() {
        for ok in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc.1+b",
        ] {
            assert!(Semver::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.x", "", "1.0.0-", "1.0.0-01", "1.0.0+",
            " 1.0.0",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
            "10.0.0",
        ];
        for w in order.windows(2) {
            assert!(
                Semver::parse(w[0]) < Semver::parse(w[1]),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(Semver::parse("1.0.0+a"), Semver::parse("1.0.0+b"));
    }

    #[test]
    fn architecture_spellings() {
        for (a, c) in [
            ("x64", "x86_64"),
            ("amd64", "x86_64"),
            ("X86_64", "x86_64"),
            ("arm64", "aarch64"),
            ("aarch64", "aarch64"),
            ("armv7", "arm"),
            ("armhf", "arm"),
            ("arm", "arm"),
            ("armv7l", "arm"),
        ] {
            assert_eq!(canonical_arch(a), Some(c), "{a}");
        }
        assert_eq!(canonical_arch("mips"), None);
        assert!(canonical_arch(std::env::consts::ARCH).is_some());
    }

    #[test]
    fn checks() {
        let f = facts("1.0.0");
        assert!(check(&info("1.1.0"), &f).is_ok());
        let mut v = info("1.1.0");
        v.architecture = Some("amd64".into());
        v.platform = Some("Linux".into());
        assert!(check(&v, &f).is_ok());
        v.architecture = Some("arm64".into());
        let e = check(&v, &f).unwrap_err().to_string();
        assert!(e.contains("architecture \"arm64\""), "{e}");
        v.architecture = Some("any".into());
        v.platform = Some("windows".into());
        assert!(check(&v, &f).unwrap_err().to_string().contains("platform"));
        assert!(check(&info("1.1"), &f)
            .unwrap_err()
            .to_string()
            .contains("semantic"));
        let latest = Facts {
            latest: Some("1.2.0"),
            ..f.clone()
        };
        assert!(check(&info("1.1.0"), &latest)
            .unwrap_err()
            .to_string()
            .contains("latestVersion"));
        assert!(check(&info("1.2.0"), &latest).is_ok());
        let man = Facts {
            manifest: Some("1.1.1"),
            ..f.clone()
        };
        assert!(check(&info("1.1.0"), &man)
            .unwrap_err()
            .to_string()
            .contains("manifest.json"));
        let mut v = info("1.1.0");
        v.required_node_version = Some("1.0.0".into());
        assert!(check(&v, &f).is_ok());
        v.required_node_version = Some("1.0.1".into());
        assert!(check(&v, &f)
            .unwrap_err()
            .to_string()
            .contains("requires version 1.0.1"));
        assert!(check(&v, &facts("unknown")).is_err());
        assert!(check(&v, &facts("0.0.0")).is_err());
        v.required_node_version = Some("latest".into());
        assert!(check(&v, &f).is_err());
    }
}
