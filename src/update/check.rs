//! `GET /update/check?tenantId=&version=` (docs/protocol.md §2) in both dialects, what
//! its errors mean, and what it promises about the package (size, version; its
//! digest: `checksum.rs`).

use super::version;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::license::normalize;
use crate::percent::percent_encode;
use crate::protocol::UpdateCheck;
use crate::redact;
use crate::transport::Reply;
use std::cmp::Ordering;

/// What `/update/check` said, as the CLI and status report it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckReport {
    pub(crate) available: bool,
    pub(crate) current_version: String,
    pub(crate) latest_version: Option<String>,
    pub(crate) update_id: Option<String>,
    pub(crate) changelog: Option<String>,
    pub(crate) file_size: Option<u64>,
    /// The real backend's extra facts (required node version, flags, message).
    pub(crate) details: Details,
}

impl CheckReport {
    /// The report of answer `c` for a node at `current`.
    pub(crate) fn of(c: &UpdateCheck, current: String) -> CheckReport {
        CheckReport {
            available: c.update_available,
            details: Details::of(c, &current),
            current_version: current,
            latest_version: c.latest_version.clone(),
            update_id: c.update_id.clone(),
            changelog: c.changelog.clone(),
            file_size: c.file_size,
        }
    }
}

/// The real backend's extra facts about an update, as `check-update` and status.json
/// show them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Details {
    /// Lowest node version the latest update installs on.
    pub(crate) required_node_version: Option<String>,
    /// The update breaks compatibility.
    pub(crate) breaking: bool,
    /// The update fixes a security problem.
    pub(crate) security_update: bool,
    /// The backend's sentence (`Le node est à jour`, `... nécessite une version ...`).
    pub(crate) message: Option<String>,
    /// An update exists, but this node's version is below `required_node_version`.
    pub(crate) node_too_old: bool,
}

impl Details {
    /// The details of an answer for a node at `current`.
    pub(crate) fn of(c: &UpdateCheck, current: &str) -> Details {
        let node_too_old = !c.update_available
            && c.required_node_version
                .as_deref()
                .is_some_and(|r| version::compare_loose(current, r) == Ordering::Less);
        Details {
            required_node_version: c.required_node_version.clone(),
            breaking: c.breaking.unwrap_or(false),
            security_update: c.security_update.unwrap_or(false),
            message: c.message.clone(),
            node_too_old,
        }
    }

    /// Why a node too old gets no update, for people.
    pub(crate) fn too_old_text(&self, current: &str, latest: Option<&str>) -> String {
        format!(
            "version {} exists but needs this node at version {} or later (it runs {current}); \
             update the node first (install a newer base image or package by hand)",
            latest.unwrap_or("?"),
            self.required_node_version.as_deref().unwrap_or("?")
        )
    }
}

/// The check step: asks the backend about the version active now; its answer, and
/// the report of it.
pub(crate) fn step(ctx: &Ctx, tenant_id: &str) -> Result<(CheckReport, UpdateCheck)> {
    let (_, version) = super::factory::active(&ctx.cfg);
    let c = ask(ctx, tenant_id, &version)?;
    Ok((CheckReport::of(&c, version), c))
}

/// Asks the backend whether an update exists for `version`.
pub(crate) fn ask(ctx: &Ctx, tenant_id: &str, version: &str) -> Result<UpdateCheck> {
    let path = format!(
        "/update/check?tenantId={}&version={}",
        percent_encode(tenant_id),
        percent_encode(version)
    );
    let reply = ctx.transport.get(ctx.clock, &path)?;
    if reply.status != 200 {
        return Err(refusal(&reply));
    }
    let mut c = parse(&reply.body)?;
    // Shown to the operator and kept in status.json: bounded, no escapes.
    let text = |v: Option<String>| v.map(|v| redact::server_text(&v));
    c.latest_version = text(c.latest_version);
    c.current_version = text(c.current_version);
    c.required_node_version = text(c.required_node_version);
    c.message = text(c.message);
    c.created_at = text(c.created_at);
    c.changelog = c.changelog.map(|t| redact::server_lines(&t));
    if c.update_available {
        match c.update_id.as_deref() {
            Some(id) if valid_id(id) => {}
            _ => {
                return Err(Error::protocol(
                    "GET /update/check: update available but no usable updateId",
                    None,
                ))
            }
        }
        // Both forms of the digest, when both are given, must name the same file.
        super::checksum::expected_digest(&c)?;
    }
    Ok(c)
}

/// Decodes a 200 answer of either dialect.
pub(crate) fn parse(body: &[u8]) -> Result<UpdateCheck> {
    serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            "GET /update/check: the answer is not the update-check JSON",
            Some(Box::new(e) as crate::error::Cause),
        )
    })
}

/// What a non-200 answer of the check means (the real backend's messages, compared
/// case- and accent-insensitively like the license's).
pub(crate) fn refusal(reply: &Reply) -> Error {
    let status = reply.status;
    let Some(msg) = reply.error_message() else {
        return Error::protocol(
            format!("GET /update/check answered {status} without a backend error body"),
            None,
        );
    };
    let n = normalize(&msg);
    let from_check = |m: &str| format!("{m} (answer of /update/check)");
    match status {
        404 if n.contains("tenant") => Error::LicenseRefused(from_check(&format!(
            "{msg}: the backend does not know this box's tenant; validate the license again, then contact CyberSensei support"
        ))),
        400 if n.contains("inactif") || n.contains("inactive") => Error::TenantInactive(
            from_check(&format!("{msg}: the tenant is disabled, contact CyberSensei support")),
        ),
        400 if n.contains("aucune licence active") || n.contains("no active license") => {
            Error::LicenseRefused(from_check(&format!(
                "{msg}: the tenant has no active license (revoked or replaced), contact CyberSensei support"
            )))
        }
        400 if n.contains("expir") => Error::LicenseExpired(from_check(&format!(
            "{msg}: contact CyberSensei to renew the license"
        ))),
        // A ValidationPipe refusal (`tenantId must be a UUID`, `version should not be
        // empty`) or NestJS's 404 for a route it lacks: the request or the URL is
        // wrong, not the network and not the license.
        400 if n.contains("must be") || n.contains("should not be empty") => Error::protocol(
            format!("GET /update/check was refused as malformed ({status}: {msg}); this agent and the backend disagree on the protocol"),
            None,
        ),
        404 if n.starts_with("cannot get") => Error::protocol(
            format!("the server has no /update/check route ({status}: {msg})"),
            None,
        ),
        _ => Error::Http {
            status,
            message: format!("GET /update/check: {msg}"),
        },
    }
}

/// What a refused download means (`GET /update/download/{id}` answered `status`
/// with `body`): withdrawn or gone updates are said as such.
pub(crate) fn download_refusal(status: u16, url_path: &str, body: &[u8]) -> Error {
    let reply = Reply {
        status,
        content_type: None,
        body: body.to_vec(),
    };
    let msg = reply.error_message();
    let n = msg.as_deref().map(normalize).unwrap_or_default();
    let what = format!("GET {url_path}");
    match (status, msg) {
        (400, Some(m)) if n.contains("plus active") || n.contains("no longer active") => {
            Error::Withdrawn(format!(
                "{what}: {m}: the backend withdrew this update after announcing it; the next check will say what to install"
            ))
        }
        (404, Some(m)) => Error::Withdrawn(format!(
            "{what}: {m}: the update is no longer on the backend; the next check will say what to install"
        )),
        (_, Some(m)) => Error::Http {
            status,
            message: format!("{what}: {m}"),
        },
        (_, None) => Error::Http {
            status,
            message: what,
        },
    }
}

/// An update id we are willing to put in a URL path and a file.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_and_string_numbers() {
        let real = br#"{"available":true,"updateId":"7c9e","currentVersion":"1.0.0",
            "latestVersion":"1.2.0","changelog":"x","fileSize":"712",
            "checksum":"sha256:abc","requiredNodeVersion":null,"breaking":false,
            "securityUpdate":true,"createdAt":"2026-01-01T00:00:00.000Z"}"#;
        let r = parse(real).unwrap();
        assert!(r.update_available);
        assert_eq!(r.file_size, Some(712));
        assert_eq!(r.security_update, Some(true));
        let guide = br#"{"updateAvailable":false,"currentVersion":"1.0.0"}"#;
        assert!(!parse(guide).unwrap().update_available);
        let e = parse(br#"{"currentVersion":"1.0.0"}"#).unwrap_err();
        assert!(matches!(e, Error::Protocol { .. }), "{e}");
        let e = parse(br#"{"available":true,"updateAvailable":false}"#).unwrap_err();
        assert!(e.chain().to_string().contains("disagree"), "{e}");
        assert!(parse(br#"{"available":true,"fileSize":"-3"}"#).is_err());
    }

    #[test]
    fn node_too_old() {
        let body = br#"{"available":false,"message":"n\u00e9cessite","currentVersion":"0.0.0",
            "latestVersion":"2.0.0","requiredNodeVersion":"1.0.0"}"#;
        let d = Details::of(&parse(body).unwrap(), "0.0.0");
        assert!(d.node_too_old);
        let d = Details::of(&parse(body).unwrap(), "1.0.0");
        assert!(!d.node_too_old);
    }

    #[test]
    fn ids() {
        assert!(valid_id("7c9e6679-7425-40de-944b-e07fc1f90ae7"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }
}
