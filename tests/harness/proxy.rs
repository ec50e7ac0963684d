//! A small HTTP CONNECT proxy on loopback for proxy tests: optional basic auth
//! (407 when missing or wrong), records every CONNECT target and auth header seen.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub request_line: String,
    pub proxy_authorization: Option<String>,
}

/// A running proxy; stops accepting when dropped.
pub(crate) struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy; `auth` = Some("user:pass") requires those basic credentials.
    pub(crate) fn start(auth: Option<&str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = auth.map(|a| {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a.as_bytes())
            )
        });
        let (s2, st2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s3, exp) = (s2.clone(), expected.clone());
                thread::spawn(move || handle(conn, s3, exp));
            }
        });
        Proxy { port, seen, stop }
    }

    /// `http://[auth@]127.0.0.1:port`
    pub(crate) fn url(&self, auth: Option<&str>) -> String {
        match auth {
            Some(a) => format!("http://{a}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Requests seen so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, expected: Option<String>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("proxy-authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(Seen {
        request_line: line.trim().to_string(),
        proxy_authorization: auth.clone(),
    });
    let mut conn = conn;
    if expected.is_some() && auth != expected {
        let _ = conn.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let _ = conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    // Bytes already buffered by the reader belong to the tunnel.
    let buffered = reader.buffer().to_vec();
    let mut up_w = upstream.try_clone().unwrap();
    if !buffered.is_empty() {
        let _ = up_w.write_all(&buffered);
    }
    let mut up_r = upstream;
    let mut down_w = conn.try_clone().unwrap();
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down_w);
        let _ = down_w.shutdown(Shutdown::Write);
    });
    let mut down_r = conn;
    let mut buf = [0u8; 16384];
    loop {
        match down_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if up_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = t.join();
}
