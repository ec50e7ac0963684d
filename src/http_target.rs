//! Local addresses, parsed here, below the config that checks them and the modules
//! that use them: a plain-HTTP target `http://host[:port][/path]` (the AI probe's
//! `telemetry.ai_probe_url`, the node API's `admin_api.node_url`) and where the
//! admin API listens (`admin_api.listen`).

use std::net::SocketAddr;
use std::path::PathBuf;

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

/// Where the listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// `IP:PORT` or `unix:/ABSOLUTE/PATH`.
    pub(crate) fn parse(s: &str) -> Option<Listen> {
        match s.strip_prefix("unix:") {
            Some(p) if p.starts_with('/') && p.len() > 1 => Some(Listen::Unix(p.into())),
            Some(_) => None,
            None => s.parse().ok().map(Listen::Tcp),
        }
    }

    /// Loopback or a Unix socket: only this box can connect.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(a) => a.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

/// `http://HOST:PORT[/prefix]` (the node API is local and plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) prefix: String,
}

impl NodeUrl {
    /// Parses the URL; None when it is not plain `http://host[:port][/prefix]`.
    pub(crate) fn parse(url: &str) -> Option<NodeUrl> {
        let t = HttpTarget::parse(url).ok()?;
        if t.path.contains(['?', '#']) || t.host.contains(['?', '#']) {
            return None;
        }
        Some(NodeUrl {
            prefix: t.path.trim_end_matches('/').to_string(),
            host: t.host,
            port: t.port,
        })
    }
}
