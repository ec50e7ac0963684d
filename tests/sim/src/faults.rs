//! Scripted misbehaviours ([`Fault`]): which one applies to a request, and the
//! answers that are not HTTP a server should give (hanging, endless, oversized).

use super::*;

/// A scripted misbehaviour, consumed before normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with this body (`application/json`), e.g. `Status(503, "{}".into())`.
    Status(u16, String),
    /// 429 with `Retry-After: <retry_after>` (seconds or an HTTP date, verbatim).
    TooMany { retry_after: String },
    /// Read the request, never answer (until the client leaves or the sim is dropped).
    Hang,
    /// The normal answer, body written `chunk` bytes at a time with `delay_ms` pauses.
    SlowBody { chunk: usize, delay_ms: u64 },
    /// The normal answer's headers (full Content-Length) then only `after_bytes` of
    /// the body, then the connection is dropped (no TLS close_notify).
    Truncate { after_bytes: u64 },
    /// 200 JSON-ish body of `bytes` bytes, streamed; with `content_length` false the
    /// body is close-delimited (no Content-Length).
    Oversized { bytes: u64, content_length: bool },
    /// 200 `text/html` captive-portal page.
    Html,
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
    /// A redirect (301/302/307...) to `location`.
    Redirect { code: u16, location: String },
    /// Close the connection at once (RST) without answering.
    Reset,
    /// 200 whose body never ends: `content_type`, filler written every `delay_ms`
    /// (chunked when `chunked`, else close-delimited) until the client leaves.
    Endless {
        content_type: String,
        chunked: bool,
        delay_ms: u64,
    },
    /// 200 with a header line of `bytes` bytes before the (valid) answer.
    HugeHeader { bytes: usize },
}

pub(crate) fn raw_status(b: &[u8]) -> u16 {
    let s = String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
    s.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| s.starts_with("HTTP/"))
        .unwrap_or(0)
}

pub(crate) fn take_fault(sh: &Shared, path: &str) -> Option<Fault> {
    let mut st = sh.st();
    if let Some(i) = st.faults.iter().position(|(p, _)| path.starts_with(p)) {
        return Some(st.faults.remove(i).1);
    }
    st.sticky
        .iter()
        .filter(|(p, _)| path.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, f)| f.clone())
}

pub(crate) fn fault_action(sh: &Shared, req: &RawRequest, peer: &str, f: Fault) -> Action {
    match f {
        Fault::Status(code, body) => Action::Send(
            Response::new(code, "application/json; charset=utf-8", body.into_bytes()),
            Delivery::Normal,
        ),
        Fault::TooMany { retry_after } => Action::Send(
            match sh.profile {
                Profile::Guide => nest_error(429, json!("ThrottlerException: Too Many Requests")),
                Profile::Central => central::too_many(),
            }
            .with("Retry-After", &retry_after),
            Delivery::Normal,
        ),
        Fault::Hang => Action::Hang,
        Fault::SlowBody { chunk, delay_ms } => Action::Send(
            route(sh, req, peer),
            Delivery::Slow {
                chunk: chunk.max(1),
                delay_ms,
            },
        ),
        Fault::Truncate { after_bytes } => Action::Send(
            route(sh, req, peer),
            Delivery::Truncate { after: after_bytes },
        ),
        Fault::Oversized {
            bytes,
            content_length,
        } => Action::Oversized {
            bytes,
            content_length,
        },
        Fault::Html => Action::Send(
            Response::new(
                200,
                "text/html; charset=utf-8",
                b"<!DOCTYPE html>\n<html><head><title>Wi-Fi Login</title></head>\
<body><h1>Welcome to Guest Wi-Fi</h1><p>Please accept the terms to continue.</p>\
<form method=\"post\" action=\"/login\"><button>Accept</button></form></body></html>\n"
                    .to_vec(),
            ),
            Delivery::Normal,
        ),
        Fault::Raw(b) => Action::Raw(b),
        Fault::Redirect { code, location } => Action::Send(
            Response::new(
                code,
                "text/html; charset=utf-8",
                format!("<a href=\"{location}\">Moved</a>").into_bytes(),
            )
            .with("Location", &location),
            Delivery::Normal,
        ),
        Fault::Reset => Action::Reset,
        Fault::Endless {
            content_type,
            chunked,
            delay_ms,
        } => Action::Endless {
            content_type,
            chunked,
            delay_ms,
        },
        Fault::HugeHeader { bytes } => {
            let mut head = http::raw_head(
                200,
                &[
                    ("X-Filler", "h".repeat(bytes)),
                    ("Content-Type", "application/json".into()),
                    ("Content-Length", "2".into()),
                ],
            );
            head.push_str("{}");
            Action::Raw(head.into_bytes())
        }
    }
}

pub(crate) fn hang(sh: &Shared, conn: Conn) {
    let started = Instant::now();
    let mut tcp = conn.tcp();
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    while !sh.stopping() && started.elapsed() < Duration::from_secs(600) {
        match tcp.read(&mut buf) {
            Ok(0) => break, // the client gave up
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::TimedOut
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    conn.close_abrupt(false);
}

pub(crate) fn oversized(sh: &Shared, mut conn: Conn, bytes: u64, content_length: bool) {
    let mut headers = vec![(
        "Content-Type",
        "application/json; charset=utf-8".to_string(),
    )];
    if content_length {
        headers.push(("Content-Length", bytes.to_string()));
    }
    let head = http::raw_head(200, &headers);
    let prefix = br#"{"valid":true,"tenantId":"550e8400-e29b-41d4-a716-446655440000","x":""#;
    let res: io::Result<()> = (|| {
        conn.write_all(head.as_bytes())?;
        let mut sent = 0u64;
        let p = &prefix[..(prefix.len() as u64).min(bytes) as usize];
        conn.write_all(p)?;
        sent += p.len() as u64;
        let filler = vec![b'a'; 64 * 1024];
        while sent < bytes {
            if sh.stopping() {
                return Ok(());
            }
            let n = (bytes - sent).min(filler.len() as u64) as usize;
            conn.write_all(&filler[..n])?;
            sent += n as u64;
        }
        conn.flush()
    })();
    let _ = res;
    conn.close_abrupt(false);
}

pub(crate) fn endless(
    sh: &Shared,
    mut conn: Conn,
    content_type: &str,
    chunked: bool,
    delay_ms: u64,
) {
    let mut headers = vec![("Content-Type", content_type.to_string())];
    if chunked {
        headers.push(("Transfer-Encoding", "chunked".to_string()));
    }
    let head = http::raw_head(200, &headers);
    let filler = vec![b'['; 16 * 1024];
    let started = Instant::now();
    let res: io::Result<()> = (|| {
        conn.write_all(head.as_bytes())?;
        while !sh.stopping() && started.elapsed() < Duration::from_secs(600) {
            if chunked {
                conn.write_all(format!("{:x}\r\n", filler.len()).as_bytes())?;
                conn.write_all(&filler)?;
                conn.write_all(b"\r\n")?;
            } else {
                conn.write_all(&filler)?;
            }
            conn.flush()?;
            if delay_ms > 0 {
                sleep_interruptible(sh, Duration::from_millis(delay_ms));
            }
        }
        Ok(())
    })();
    let _ = res;
    conn.close_abrupt(false);
}
