//! Keeping secrets out of logs: the license key and proxy credentials.

use std::sync::Mutex;

/// Secrets this process has read (the license key, as is and URL-encoded): texts
/// stored in status.json are scrubbed of them, whatever a server echoed back.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remembers a secret for [`scrub`] (shorter than 6 characters: ignored, it would
/// match ordinary words).
pub(crate) fn add_secret(secret: &str) {
    let s = secret.trim();
    if s.chars().count() < 6 {
        return;
    }
    if let Ok(mut v) = SECRETS.lock() {
        for form in [s.to_string(), crate::transport::percent_encode(s)] {
            if !v.contains(&form) {
                v.push(form);
            }
        }
    }
}

/// `text` with every remembered secret replaced by its stand-in ([`key`]).
pub(crate) fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(v) = SECRETS.lock() {
        for s in v.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), &key(s));
            }
        }
    }
    out
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

/// Text a server sent, made safe to show and store: control characters (newlines,
/// terminal escapes) become spaces so it cannot forge log lines, and it is cut to
/// `MAX_SERVER_TEXT` characters so it cannot bloat logs, status.json or the caches.
pub(crate) fn server_text(s: &str) -> String {
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
