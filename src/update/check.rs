//! `GET /update/check?tenantId=&version=` (PROTOCOL.md §2) and what it promises
//! about the package (size, digest).

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::{ErrorBody, UpdateCheck};
use crate::redact;
use crate::transport::percent_encode;

/// Asks the backend whether an update exists for `version`.
pub fn ask(ctx: &Ctx, tenant_id: &str, version: &str) -> Result<UpdateCheck> {
    let path = format!(
        "/update/check?tenantId={}&version={}",
        percent_encode(tenant_id),
        percent_encode(version)
    );
    let reply = ctx.transport.get(ctx.clock, &path)?;
    if reply.status != 200 {
        let message = serde_json::from_slice::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|b| b.message.map(|m| m.text()))
            .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
        let message = redact::server_text(&message);
        return Err(Error::Http {
            status: reply.status,
            message,
        });
    }
    let mut c: UpdateCheck = serde_json::from_slice(&reply.body).map_err(|e| {
        Error::Unreachable(format!(
            "/update/check: answer is not the expected JSON: {e}"
        ))
    })?;
    // Shown to the operator and kept in status.json: bounded, no escapes.
    c.latest_version = c.latest_version.map(|v| redact::server_text(&v));
    c.current_version = c.current_version.map(|v| redact::server_text(&v));
    c.changelog = c.changelog.map(|t| redact::server_lines(&t));
    if c.update_available {
        match c.update_id.as_deref() {
            Some(id) if valid_id(id) => {}
            _ => {
                return Err(Error::Unreachable(
                    "/update/check: update available but no usable updateId".into(),
                ))
            }
        }
    }
    Ok(c)
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

/// The SHA-256 the check body promises (`checksum: "sha256:<hex>"` or `sha256`),
/// lowercase; a malformed value is an error rather than silently ignored.
pub fn expected_digest(c: &UpdateCheck) -> Result<Option<String>> {
    let raw = match (&c.checksum, &c.sha256) {
        (Some(s), _) => {
            let s = s.trim();
            match s.split_once(':') {
                Some((alg, hex)) if alg.eq_ignore_ascii_case("sha256") => Some(hex.to_string()),
                Some((alg, _)) => {
                    return Err(Error::PackageRejected(format!(
                        "checksum algorithm {alg:?} not supported (sha256 only)"
                    )))
                }
                None => Some(s.to_string()),
            }
        }
        (None, Some(h)) => Some(h.trim().to_string()),
        (None, None) => None,
    };
    raw.map(|h| parse_hex_digest(&h)).transpose()
}

/// Validates a SHA-256 hex digest, returning it lowercase.
pub fn parse_hex_digest(h: &str) -> Result<String> {
    let h = h.trim().to_ascii_lowercase();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(Error::PackageRejected(format!(
            "checksum {h:?} is not a SHA-256 hex digest"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(checksum: Option<&str>, sha: Option<&str>) -> UpdateCheck {
        UpdateCheck {
            update_available: true,
            current_version: None,
            latest_version: None,
            update_id: Some("x".into()),
            changelog: None,
            file_size: None,
            checksum: checksum.map(String::from),
            sha256: sha.map(String::from),
        }
    }

    #[test]
    fn digest_forms() {
        let h = "AB".repeat(32);
        let want = Some("ab".repeat(32));
        assert_eq!(
            expected_digest(&c(Some(&format!("sha256:{h}")), None)).unwrap(),
            want
        );
        assert_eq!(expected_digest(&c(None, Some(&h))).unwrap(), want);
        assert_eq!(expected_digest(&c(None, None)).unwrap(), None);
        assert!(expected_digest(&c(Some("md5:abc"), None)).is_err());
        assert!(expected_digest(&c(None, Some("xyz"))).is_err());
    }

    #[test]
    fn ids() {
        assert!(valid_id("7c9e6679-7425-40de-944b-e07fc1f90ae7"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }
}
