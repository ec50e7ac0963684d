//! Keeping secrets out of every output: the one scrubber (stdout, stderr, the log
//! file, status.json, the admin API), the key's stand-in, request paths and proxy
//! URLs made safe to show, and server texts made safe to store.

use crate::percent::decode_escape;
use std::sync::{Mutex, MutexGuard};

/// Secrets this process has read (the license key): every output is scrubbed of
/// them, in whatever form a server echoed them back.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shortest secret remembered: a shorter one would match ordinary words.
const MIN_SECRET: usize = 6;

fn secrets() -> MutexGuard<'static, Vec<String>> {
    // A panic while the list is held (none can happen: pushes only) must not
    // switch the scrubber off.
    SECRETS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers a secret for [`scrub`] (shorter than 6 characters: ignored).
pub(crate) fn add_secret(secret: &str) {
    let s = secret.trim();
    if s.chars().count() < MIN_SECRET {
        return;
    }
    let mut v = secrets();
    if !v.iter().any(|k| k == s) {
        v.push(s.to_string());
    }
}

/// `text` with every remembered secret replaced by its stand-in ([`key`]), found
/// raw, percent-encoded (either case of hex digit, every byte or only some) and
/// form-encoded (`+` for a space): the forms a proxy, a portal or a backend that
/// quotes its request may use.
pub(crate) fn scrub(text: &str) -> String {
    let secrets = secrets();
    if secrets.is_empty() {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut ends, mut next) = (Vec::new(), Vec::new());
    let mut i = 0;
    'text: while i < bytes.len() {
        for s in secrets.iter() {
            if let Some(end) = match_at(bytes, i, s.as_bytes(), &mut ends, &mut next) {
                out.extend_from_slice(key(s).as_bytes());
                i = end;
                continue 'text;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // A secret is whole characters, so a cut falls between characters; lossy anyway.
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Where a writing of `secret` that starts at `text[start]` ends, if one does. Each
/// byte of the secret may be written as itself, as `%XX`, or (a space) as `+`; a `%`
/// of the secret may be read both ways, so the positions reached are a small set
/// (`ends`, `next`: buffers reused across calls). The longest match wins.
fn match_at(
    text: &[u8],
    start: usize,
    secret: &[u8],
    ends: &mut Vec<usize>,
    next: &mut Vec<usize>,
) -> Option<usize> {
    ends.clear();
    ends.push(start);
    for &b in secret {
        next.clear();
        for &p in ends.iter() {
            let rest = &text[p..];
            let first = rest.first().copied();
            if first == Some(b) || (b == b' ' && first == Some(b'+')) {
                next.push(p + 1);
            }
            if decode_escape(rest) == Some(b) {
                next.push(p + 3);
            }
        }
        if next.is_empty() {
            return None;
        }
        next.sort_unstable();
        next.dedup();
        std::mem::swap(ends, next);
    }
    ends.last().copied()
}

/// A printable stand-in for the license key: its first 4 characters and its length.
pub(crate) fn key(key: &str) -> String {
    let n = key.chars().count();
    if n <= 8 {
        return format!("[redacted, {n} chars]");
    }
    let head: String = key.chars().take(4).collect();
    format!("{head}…[redacted, {n} chars]")
}

/// A path-and-query with the value of `key=` replaced, for logging requests.
pub(crate) fn query(path_and_query: &str) -> String {
    let Some((path, q)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let parts: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("key") => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

/// A URL with any `user:pass@` removed, for messages about proxies.
pub(crate) fn url_credentials(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(host_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// Longest server-provided text kept for messages, logs and state files.
pub(crate) const MAX_SERVER_TEXT: usize = 300;

/// Text a server sent, made safe to show and store: secrets scrubbed, control characters (newlines,
/// terminal escapes) become spaces so it cannot forge log lines, and it is cut to
/// `MAX_SERVER_TEXT` characters so it cannot bloat logs, status.json or the caches.
pub(crate) fn server_text(s: &str) -> String {
    // Scrubbed whole, before the cut: a cut inside a quoted key would leave its head.
    let s = &scrub(s);
    let mut out: String = s
        .chars()
        .take(MAX_SERVER_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_SERVER_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// Longest multi-line server text (a changelog) kept.
pub(crate) const MAX_SERVER_LINES: usize = 4096;

/// Multi-line text a server sent (a changelog): like [`server_text`] but newlines
/// are kept, and cut at `MAX_SERVER_LINES` characters.
pub(crate) fn server_lines(s: &str) -> String {
    let s = &scrub(s);
    let mut out: String = s
        .chars()
        .take(MAX_SERVER_LINES)
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_SERVER_LINES).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_writing_of_a_secret() {
        let k = "S3cr/t key+%41=";
        add_secret(k);
        let stand_in = key(k);
        for form in [
            k.to_string(),
            crate::percent::percent_encode(k),
            crate::percent::percent_encode(k)
                .to_lowercase()
                .replace("s3", "S3"),
            crate::percent::percent_encode(k).replace("%20", "+"),
            // Encoded only where a client had to: the `%` stays raw.
            "S3cr%2Ft+key%2B%41%3D".replace("%41", "%2541"),
            "S3cr/t key+%41=".to_string(),
        ] {
            let text = format!("before {form} after");
            assert_eq!(scrub(&text), format!("before {stand_in} after"), "{form}");
        }
        assert_eq!(scrub("S3cr/t kex"), "S3cr/t kex");
        assert_eq!(scrub("é S3cr/t key+%41= é"), format!("é {stand_in} é"));
        // Server texts are scrubbed before they are cut.
        let long = format!("{}{k}", "x".repeat(MAX_SERVER_TEXT - 3));
        assert!(
            !server_text(&long).contains(&k[..6]),
            "{}",
            server_text(&long)
        );
    }

    #[test]
    fn key_is_never_whole() {
        let k = "A1B2C3D4-E5F6+G7H8/I9J0=";
        let r = key(k);
        assert!(!r.contains("E5F6"));
        assert!(r.starts_with("A1B2"));
        assert_eq!(key("short"), "[redacted, 5 chars]");
    }

    #[test]
    fn query_redacts_key_only() {
        assert_eq!(
            query("/api/license/validate?key=A%2BB&x=1"),
            "/api/license/validate?key=REDACTED&x=1"
        );
        assert_eq!(query("/telemetry"), "/telemetry");
    }

    #[test]
    fn proxy_credentials_hidden() {
        assert_eq!(
            url_credentials("http://bob:secret@proxy:3128"),
            "http://***@proxy:3128"
        );
        assert_eq!(url_credentials("http://proxy:3128"), "http://proxy:3128");
    }

    #[test]
    fn server_text_is_cut_and_has_no_controls() {
        let s = super::server_text(&format!("a\nb\u{1b}[2J{}", "x".repeat(1000)));
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(s.starts_with("a b [2J"), "{s:?}");
        assert_eq!(s.chars().count(), super::MAX_SERVER_TEXT + 1);
        assert_eq!(super::server_text("Licence expirée"), "Licence expirée");
    }
}
