//! Lowercase hex: how digests are written (queue records, manifests, slot records)
//! and the one check of a SHA-256 hex digest, whoever sent it.

use std::fmt::Write;

/// Lowercase hex of bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `text` lowercased if it is a SHA-256 digest in hex (64 hex digits), else None.
pub(crate) fn sha256_digest(text: &str) -> Option<String> {
    let h = text.trim().to_ascii_lowercase();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_checks_digests() {
        assert_eq!(encode(&[0x00, 0xab, 0xff]), "00abff");
        let d = encode(ring::digest::digest(&ring::digest::SHA256, b"x").as_ref());
        assert_eq!(sha256_digest(&d.to_uppercase()), Some(d.clone()));
        assert_eq!(sha256_digest(&format!(" {d}\n")), Some(d.clone()));
        assert_eq!(sha256_digest(&d[1..]), None);
        assert_eq!(sha256_digest(&format!("{}g", &d[1..])), None);
    }
}
