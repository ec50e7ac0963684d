//! `version.json`: the metadata the real backend puts at the root of every package it
//! builds or accepts (platform/api `VersionMetadata`: `version`, `changelog`,
//! `requiredNodeVersion`, optional `platform`, `architecture`, `breaking`,
//! `securityUpdate`, `dependencies`, `createdAt`; ours: `kind`) (versions compared by
//! `version.rs`), and the checks a package's metadata must pass on this box. Pure: the box's facts
//! come in as arguments.

use super::manifest::PackageKind;
use super::version::Semver;
use crate::error::{Error, Result};
use serde_json::Value;

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
