//! The inspect step: a package is opened and checked (signature, entries, sizes:
//! everything but the files' data, which is checked while extracted or by
//! `verify::scan_data`), then admitted: what its `version.json` demands of this box,
//! and the downgrade guard. Between the two the pipeline reports what it found.

use super::verify::{self, Package, Zip};
use super::{downgrade, factory, manifest, trust, version_json};
use crate::context::Ctx;
use crate::error::Result;
use std::fs::File;

/// Opens the package in `file` and checks all but its data against the trusted keys.
pub(crate) fn open<'f>(ctx: &Ctx, file: &'f File) -> Result<(Zip<'f>, Package)> {
    let trust = trust::load(&ctx.cfg)?;
    if trust.required && trust.keys.is_empty() {
        return Err(trust::no_key_error(&trust));
    }
    if !trust.required {
        log::warn!("installing without a signature check: updates.public_key is not set (docs/security.md)");
    }
    let limits = verify::Limits {
        max_entries: ctx.cfg.updates.max_entries,
        max_unpacked: ctx.cfg.updates.max_unpacked_size,
    };
    verify::inspect(file, &limits, &trust.keys)
}

/// What `version.json` demands of this box, then the signed manifest names the
/// version announced (`latest`), never lower than installed unless
/// `allow_downgrade`; the version the package installs.
pub(crate) fn admit(
    ctx: &Ctx,
    p: &Package,
    latest: Option<&str>,
    allow_downgrade: bool,
) -> Result<String> {
    if let Some(info) = &p.info {
        let (_, installed) = factory::active(&ctx.cfg);
        let facts = version_json::Facts {
            arch: version_json::box_arch(),
            installed: &installed,
            latest,
            manifest: p.manifest_version.as_deref(),
        };
        version_json::check(info, &facts)?;
    }
    let version = package_version(p, latest);
    downgrade::bind(latest, p.manifest_version.as_deref())?;
    downgrade::check(&ctx.cfg, &version, allow_downgrade)?;
    Ok(version)
}

/// The version a package installs: its manifest's, else its `version.json`'s, else
/// the check's `latestVersion`, else its `VERSION` file's.
fn package_version(p: &Package, latest: Option<&str>) -> String {
    p.manifest_version
        .clone()
        .or_else(|| {
            p.info
                .as_ref()
                .and_then(|i| manifest::check_version(&i.version, "version.json").ok())
        })
        .or_else(|| latest.and_then(|v| manifest::check_version(v, "latestVersion").ok()))
        .or_else(|| p.version_file.clone())
        .unwrap_or_else(|| "unknown".into())
}
