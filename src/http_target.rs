//! A plain-HTTP target, `http://host[:port][/path]`: the AI probe's
//! (`telemetry.ai_probe_url`), parsed here, below the config that checks it and the
//! probe that times it (`telemetry::probe`).

/// Where the probe goes: `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl HttpTarget {
    /// Parses `http://host[:port][/path]` (no user info, query allowed in the path).
    pub(crate) fn parse(url: &str) -> Result<HttpTarget, String> {
        let bad = || "expected http://host[:port][/path]".to_string();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("HTTP://"))
            .ok_or_else(bad)?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() || auth.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return Err(bad());
        }
        let (host, port) = match auth.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (auth, 80),
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(HttpTarget {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            path: path.into(),
        })
    }
}
