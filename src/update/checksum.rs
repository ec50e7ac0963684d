//! The SHA-256 digests the protocol carries (docs/protocol.md §2–3): the check's
//! `checksum` / `sha256`, and the download's `X-Checksum` / `X-Checksum-SHA256`
//! headers with `X-Update-Version`, checked against each other and the check.

use crate::error::{Error, Result};
use crate::protocol::UpdateCheck;
use crate::redact;

/// A digest in either form (`sha256:<hex>` or bare hex), lowercase; another
/// algorithm or a malformed value is an error rather than silently ignored.
fn digest_of(what: &str, s: &str) -> Result<String> {
    let s = s.trim();
    match s.split_once(':') {
        Some((alg, hex)) if alg.eq_ignore_ascii_case("sha256") => parse_hex_digest(hex),
        Some((alg, _)) => Err(Error::PackageRejected(format!(
            "{what}: checksum algorithm {alg:?} not supported (sha256 only)"
        ))),
        None => parse_hex_digest(s),
    }
}

/// The SHA-256 the check body promises (`checksum: "sha256:<hex>"` and/or `sha256`),
/// lowercase. When both are given they must agree.
pub fn expected_digest(c: &UpdateCheck) -> Result<Option<String>> {
    let mut found: Option<String> = None;
    for (what, v) in [("checksum", &c.checksum), ("sha256", &c.sha256)] {
        let Some(v) = v else { continue };
        let h = digest_of(what, v)?;
        if let Some(f) = &found {
            if *f != h {
                return Err(Error::PackageRejected(format!(
                    "the check's checksum {f} and sha256 {h} disagree"
                )));
            }
        }
        found = Some(h);
    }
    Ok(found)
}

/// Checks a download's `X-Checksum` / `X-Checksum-SHA256` (each in either form) and
/// `X-Update-Version` against each other and against the check's promises; returns
/// the digest the headers name, if any.
pub(crate) fn check_download_headers(
    want_sha256: Option<&str>,
    want_version: Option<&str>,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>> {
    let mut found: Option<(String, &str)> = None;
    for name in ["X-Checksum", "X-Checksum-SHA256"] {
        let Some(v) = header(name) else { continue };
        let h = digest_of(name, &v)?;
        if let Some((f, other)) = &found {
            if *f != h {
                return Err(Error::PackageRejected(format!(
                    "{other} {f} and {name} {h} disagree"
                )));
            }
        }
        if let Some(w) = want_sha256 {
            if w != h {
                return Err(Error::PackageRejected(format!(
                    "{name} {h} disagrees with the check's checksum {w}"
                )));
            }
        }
        found = Some((h, name));
    }
    if let (Some(v), Some(w)) = (header("X-Update-Version"), want_version) {
        if v.trim() != w.trim() {
            return Err(Error::PackageRejected(format!(
                "the download is version {} but the check announced {w}",
                redact::server_text(&v)
            )));
        }
    }
    Ok(found.map(|(h, _)| h))
}

/// Validates a SHA-256 hex digest, returning it lowercase.
pub fn parse_hex_digest(h: &str) -> Result<String> {
    crate::hex::sha256_digest(h).ok_or_else(|| {
        Error::PackageRejected(format!(
            "checksum {:?} is not a SHA-256 hex digest",
            redact::server_text(h.trim())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(checksum: Option<&str>, sha: Option<&str>) -> UpdateCheck {
        UpdateCheck {
            update_available: true,
            update_id: Some("x".into()),
            checksum: checksum.map(String::from),
            sha256: sha.map(String::from),
            ..Default::default()
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
        assert_eq!(
            expected_digest(&c(Some(&format!("sha256:{h}")), Some(&h))).unwrap(),
            want
        );
        assert!(expected_digest(&c(Some(&format!("sha256:{h}")), Some(&"cd".repeat(32)))).is_err());
        assert_eq!(expected_digest(&c(None, None)).unwrap(), None);
        assert!(expected_digest(&c(Some("md5:abc"), None)).is_err());
        assert!(expected_digest(&c(None, Some("xyz"))).is_err());
    }

    #[test]
    fn download_headers_must_agree() {
        let a = "ab".repeat(32);
        let b = "cd".repeat(32);
        let hdr = |pairs: Vec<(&'static str, String)>| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            }
        };
        let ok = check_download_headers(
            Some(&a),
            Some("1.2.0"),
            hdr(vec![
                ("X-Checksum", format!("sha256:{a}")),
                ("X-Checksum-SHA256", a.clone()),
                ("X-Update-Version", "1.2.0".into()),
            ]),
        );
        assert_eq!(ok.unwrap(), Some(a.clone()));
        let e = check_download_headers(
            None,
            None,
            hdr(vec![
                ("X-Checksum", format!("sha256:{a}")),
                ("X-Checksum-SHA256", b.clone()),
            ]),
        );
        assert!(e.is_err());
        assert!(
            check_download_headers(Some(&b), None, hdr(vec![("X-Checksum", a.clone())])).is_err()
        );
        let e = check_download_headers(
            None,
            Some("1.2.0"),
            hdr(vec![("X-Update-Version", "1.3.0".into())]),
        );
        assert!(e.unwrap_err().to_string().contains("1.3.0"));
    }
}
