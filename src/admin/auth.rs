//! `admin_api.auth: "node"`: the request's `Authorization` header is forwarded to
//! `GET {node_url}/api/user/me`; any session the node accepts may read, actions need
//! `role: "ADMIN"`. Positive answers are cached per token (its SHA-256, never the
//! token) for at most `CACHE_FOR`.

use crate::http_target::NodeUrl;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a positive answer of the node stands.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Most tokens remembered.
const CACHE_MAX: usize = 16;
/// Bounds the node's answer: connect, each read, and its size.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);
const NODE_MAX_ANSWER: u64 = 16 * 1024;

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// May read and act.
    Admin,
    /// May read.
    Reader,
}

/// Why a request is not let in: (status, message).
pub(crate) type Denied = (u16, &'static str);

/// The node's answers, remembered.
pub(crate) struct Checker {
    node: NodeUrl,
    cache: Vec<([u8; 32], Access, Instant)>,
}

impl Checker {
    /// A checker asking `node`.
    pub(crate) fn new(node: NodeUrl) -> Checker {
        Checker {
            node,
            cache: Vec::new(),
        }
    }

    /// What the holder of `authorization` may do.
    pub(crate) fn check(&mut self, authorization: Option<&str>) -> Result<Access, Denied> {
        let Some(token) = authorization.filter(|t| !t.is_empty()) else {
            return Err((401, "session requise (en-tête Authorization)"));
        };
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(d.as_ref());
        let now = Instant::now();
        self.cache
            .retain(|(_, _, at)| now.saturating_duration_since(*at) < CACHE_FOR);
        if let Some((_, a, _)) = self.cache.iter().find(|(k, _, _)| *k == key) {
            return Ok(*a);
        }
        let access = self.ask(token)?;
        if self.cache.len() == CACHE_MAX {
            self.cache.remove(0);
        }
        self.cache.push((key, access, now));
        Ok(access)
    }

    /// `GET /api/user/me` with the token, over HTTP/1.0 (so no chunked answer).
    fn ask(&self, token: &str) -> Result<Access, Denied> {
        const DOWN: Denied = (503, "le nœud ne répond pas : session impossible à vérifier");
        if token.contains(['\r', '\n']) {
            return Err((401, "session refusée"));
        }
        let n = &self.node;
        let addr = (n.host.as_str(), n.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(DOWN)?;
        let mut s = TcpStream::connect_timeout(&addr, NODE_TIMEOUT).map_err(|_| DOWN)?;
        let _ = s.set_read_timeout(Some(NODE_TIMEOUT));
        let _ = s.set_write_timeout(Some(NODE_TIMEOUT));
        let req = format!(
            "GET {}/api/user/me HTTP/1.0\r\nHost: {}:{}\r\nAuthorization: {token}\r\nAccept: application/json\r\n\r\n",
            n.prefix, n.host, n.port
        );
        s.write_all(req.as_bytes()).map_err(|_| DOWN)?;
        let mut answer = Vec::new();
        s.take(NODE_MAX_ANSWER)
            .read_to_end(&mut answer)
            .map_err(|_| DOWN)?;
        let status = answer
            .get(9..12)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or(DOWN)?;
        match status {
            200 => {}
            401 | 403 => return Err((401, "session refusée par le nœud")),
            _ => return Err(DOWN),
        }
        let body = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| &answer[i + 4..])
            .ok_or(DOWN)?;
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| DOWN)?;
        if v.get("active").and_then(|a| a.as_bool()) == Some(false) {
            return Err((401, "compte désactivé"));
        }
        Ok(match v.get("role").and_then(|r| r.as_str()) {
            Some("ADMIN") => Access::Admin,
            _ => Access::Reader,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls() {
        let u = NodeUrl::parse("http://127.0.0.1:8080/node").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 8080, "/node")
        );
        assert_eq!(NodeUrl::parse("http://n").unwrap().port, 80);
        assert!(NodeUrl::parse("https://n").is_none());
        assert!(NodeUrl::parse("http://:80").is_none());
        assert!(NodeUrl::parse("http://u@n:80").is_none());
    }
}
