//! Hand-rolled HTTP/1.1 plumbing: reading one request with hard bounds, writing
//! responses (normally or with a delivery fault), percent-decoding, time stamps.

use rustls::{ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maximum size of the request line + headers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Maximum size of a request body (any route).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// A plain or TLS connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Runs the TLS handshake to completion (no-op for plain).
    pub fn handshake(&mut self) -> io::Result<()> {
        if let Conn::Tls(s) = self {
            while s.conn.is_handshaking() {
                let (rd, wr) = s.conn.complete_io(&mut s.sock)?;
                if rd == 0 && wr == 0 && s.conn.is_handshaking() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "eof in handshake",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Orderly close: TLS close_notify, FIN, then drain what the peer still sends
    /// for a moment so the kernel does not answer unread data with a RST.
    pub fn close_clean(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let tcp = self.tcp();
        let _ = tcp.shutdown(Shutdown::Write);
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        let mut t = tcp;
        while total < (1 << 20) {
            match t.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    }

    /// Abrupt close: no close_notify; with `rst`, SO_LINGER 0 so the peer gets a RST.
    pub fn close_abrupt(self, rst: bool) {
        if rst {
            set_linger_zero(self.tcp());
        } else {
            let _ = self.tcp().shutdown(Shutdown::Both);
        }
        drop(self);
    }
}

pub fn set_linger_zero(tcp: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `tcp`, pointer to a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A parsed request as read from the wire.
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
pub enum ReadError {
    /// The connection failed or closed (nothing to answer).
    Io(#[allow(dead_code)] io::Error),
    /// Answer with this status (400, 413, 431, 501) and close; carries what was parsed.
    Bad(u16, &'static str, Option<RawRequest>),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn fill(src: &mut Conn, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut tmp = [0u8; 16384];
    let n = src.read(&mut tmp)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
    }
    buf.extend_from_slice(&tmp[..n]);
    Ok(())
}

/// Reads one request: head bounded by [`MAX_HEAD`], body by `body_limit`.
pub fn read_request(conn: &mut Conn, body_limit: usize) -> Result<RawRequest, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut searched = 0usize;
    let head_end = loop {
        let start = searched.saturating_sub(3);
        if buf.len() > start {
            if let Some(i) = find(&buf[start..], b"\r\n\r\n") {
                break start + i;
            }
        }
        searched = buf.len();
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "Request Header Fields Too Large", None));
        }
        fill(conn, &mut buf)?;
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::Bad(431, "Request Header Fields Too Large", None));
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(ReadError::Bad(400, "malformed request line", None)),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(400, "unsupported HTTP version", None));
    }
    let mut headers = Vec::new();
    for line in lines {
        match line.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => {
                headers.push((k.to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => return Err(ReadError::Bad(400, "malformed header", None)),
        }
    }
    let mut req = RawRequest {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    let leftover = buf[head_end + 4..].to_vec();
    let chunked = req
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let cl = match req.header("content-length") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return Err(ReadError::Bad(400, "invalid Content-Length", Some(req))),
        },
    };
    let expects_continue = req
        .header("expect")
        .map(|v| v.eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false);
    if chunked {
        if expects_continue {
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            conn.flush()?;
        }
        match read_chunked(conn, leftover, body_limit) {
            Ok(b) => req.body = b,
            Err(ReadError::Bad(s, m, _)) => return Err(ReadError::Bad(s, m, Some(req))),
            Err(e) => return Err(e),
        }
    } else if let Some(n) = cl {
        if n > body_limit as u64 {
            return Err(ReadError::Bad(413, "Payload Too Large", Some(req)));
        }
        let n = n as usize;
        if expects_continue && leftover.len() < n {
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            conn.flush()?;
        }
        let mut body = leftover;
        while body.len() < n {
            fill(conn, &mut body)?;
        }
        body.truncate(n);
        req.body = body;
    }
    Ok(req)
}

fn read_line(conn: &mut Conn, buf: &mut Vec<u8>, pos: &mut usize) -> Result<String, ReadError> {
    loop {
        if let Some(i) = find(&buf[*pos..], b"\r\n") {
            let line = String::from_utf8_lossy(&buf[*pos..*pos + i]).into_owned();
            *pos += i + 2;
            return Ok(line);
        }
        if buf.len() - *pos > 4096 {
            return Err(ReadError::Bad(400, "bad chunk line", None));
        }
        fill(conn, buf)?;
    }
}

fn read_chunked(conn: &mut Conn, mut buf: Vec<u8>, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let line = read_line(conn, &mut buf, &mut pos)?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| ReadError::Bad(400, "bad chunk size", None))?;
        if size == 0 {
            while !read_line(conn, &mut buf, &mut pos)?.is_empty() {}
            return Ok(out);
        }
        if out.len().saturating_add(size) > limit {
            return Err(ReadError::Bad(413, "Payload Too Large", None));
        }
        while buf.len() < pos + size + 2 {
            fill(conn, &mut buf)?;
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
        if pos > 1 << 20 {
            buf.drain(..pos);
            pos = 0;
        }
    }
}

/// Percent-decodes `%XX`; a raw `+` stays a literal `+` (not form decoding);
/// malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw query string into decoded (name, value) pairs, in order.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Current time as ISO-8601 UTC with milliseconds, e.g. `2025-11-24T10:30:00.000Z`.
pub fn iso_now() -> String {
    iso_time(SystemTime::now())
}

pub fn iso_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86400) as i64);
    let rem = secs % 86400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as u32, d as u32)
}

/// A response body: owned bytes or a slice of a shared package.
pub enum Body {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>, usize, usize),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Owned(body),
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(
            status,
            "application/json; charset=utf-8",
            serde_json::to_vec(v).unwrap_or_default(),
        )
    }

    /// A JSON object with its keys in the given order (serde_json's `Value` sorts them).
    pub fn json_fields(status: u16, fields: &[(&str, serde_json::Value)]) -> Response {
        let mut out = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            out.push_str(&serde_json::to_string(v).unwrap_or_default());
        }
        out.push('}');
        Response::new(status, "application/json; charset=utf-8", out.into_bytes())
    }

    pub fn with(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Owned(v) => v,
            Body::Shared(a, s, e) => &a[*s..*e],
        }
    }

    pub fn head_bytes(&self) -> Vec<u8> {
        let mut headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            headers.push(("Content-Length", self.body_bytes().len().to_string()));
        }
        raw_head(self.status, &headers).into_bytes()
    }
}

/// A response head: the status line, `headers` in order, `Connection: close` and
/// the blank line. The one writer of a head, for normal answers and for the faults
/// that write theirs by hand.
pub fn raw_head(status: u16, headers: &[(&str, String)]) -> String {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    h
}

/// How the body of a normal response is delivered.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    Normal,
    Slow { chunk: usize, delay_ms: u64 },
    Truncate { after: u64 },
}
