//! HTTP/1.1 requests and responses, by hand and bounded: a request line and headers
//! of at most `MAX_HEAD` bytes, a body of at most `MAX_BODY` given by
//! `Content-Length` (no chunked bodies), one request per connection.

use std::io::Write;

/// Request line plus headers, at most.
pub const MAX_HEAD: usize = 8 * 1024;
/// Body, at most.
pub const MAX_BODY: usize = 4 * 1024;
/// Headers, at most.
const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// What follows `?`, if anything.
    pub query: String,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the query holds `key=value`.
    pub fn query_has(&self, key: &str, value: &str) -> bool {
        self.query
            .split('&')
            .any(|kv| kv.split_once('=') == Some((key, value)))
    }
}

/// Why a request is refused before it is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: &'static str,
}

const fn err(status: u16, message: &'static str) -> HttpError {
    HttpError { status, message }
}

/// Parses `buf`, what a client sent so far. Ok(None): incomplete, read more.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let scan = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = scan.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD {
            Err(err(431, "request line and headers exceed 8 KiB"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| err(400, "headers are not text"))?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err(400, "malformed request line"));
    };
    if method.is_empty()
        || method.len() > 10
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.1" | "HTTP/1.0")
    {
        return Err(err(400, "malformed request line"));
    }
    let mut headers = Vec::new();
    let mut length: Option<usize> = None;
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(err(431, "too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(err(400, "malformed header"));
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(err(400, "malformed header"));
        }
        let name = name.to_ascii_lowercase();
        let value = value.trim_matches([' ', '\t']).to_string();
        match name.as_str() {
            "transfer-encoding" => return Err(err(400, "chunked bodies are not accepted")),
            "content-length" => {
                let n: usize = match value.parse() {
                    Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => n,
                    _ => return Err(err(400, "bad Content-Length")),
                };
                if length.is_some_and(|l| l != n) {
                    return Err(err(400, "bad Content-Length"));
                }
                if n > MAX_BODY {
                    return Err(err(413, "body exceeds 4 KiB"));
                }
                length = Some(n);
            }
            _ => {}
        }
        headers.push((name, value));
    }
    let start = end + 4;
    let len = length.unwrap_or(0);
    if buf.len() < start + len {
        return Ok(None);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: buf[start..start + len].to_vec(),
    }))
}

/// RFC 9110 token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A response; always `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A JSON answer already written.
    pub(crate) fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    /// The node's error shape: `{"statusCode": N, "message": "..."}`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        let m = serde_json::to_string(message).unwrap_or_default();
        Response::text(
            status,
            format!("{{\"statusCode\":{status},\"message\":{m}}}"),
        )
    }

    /// Writes the whole response.
    pub(crate) fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        // Clients read the code; the reason phrase is optional (RFC 9112).
        let reason = if self.status == 200 { "OK" } else { "" };
        // "text/html;gzip": the page, compressed.
        let (ct, enc) = match self.content_type.strip_suffix(";gzip") {
            Some(ct) => (ct, "Content-Encoding: gzip\r\n"),
            None => (self.content_type, ""),
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {ct}; charset=utf-8\r\n{enc}Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\r\n",
            self.status,
            self.body.len()
        );
        let mut all = head.into_bytes();
        all.extend_from_slice(&self.body);
        w.write_all(&all)?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_post_and_waits_for_its_body() {
        let full = b"POST /api/update/apply?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{}{}";
        assert_eq!(parse_request(&full[..full.len() - 1]), Ok(None));
        let r = parse_request(full).unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/api/update/apply")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{}{}");
        assert!(r.query_has("x", "1"));
    }

    #[test]
    fn refuses_what_is_out_of_bounds() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_request(big.as_bytes()).unwrap_err().status, 431);
        let body = b"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n";
        assert_eq!(parse_request(body).unwrap_err().status, 413);
        let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_request(te).unwrap_err().status, 400);
        assert!(parse_request(b"GET  / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\n folded\r\n\r\n").is_err());
    }
}
