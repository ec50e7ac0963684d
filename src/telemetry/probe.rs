//! `telemetry.ai_probe_url`: the AI service's real latency, timed by the agent.
//!
//! The node's own sync sent a constant 250 ms (../shared/NODE.md §4). The agent times
//! `GET <url>` (the AI service's `/health`) over plain HTTP on the box's network, with
//! a deadline, every `PROBE_EVERY` in the daemon and once more at a sample that has
//! none; a sample carries the median of the probes answered since the previous
//! sample, and no `aiLatency` at all when none answered (the DTO makes it optional:
//! nothing is invented). Hand-written (a request line and a status line) because the
//! backend's transport is TLS-only and a local probe needs no more.

use crate::clock::Clock;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one probe may take, connection included.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The daemon's pace of probes between two samples.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(60);
/// Answers kept between two samples (the newest; a week-long interval keeps 64).
const MAX_KEPT: usize = 64;
/// Most bytes of an answer read before its status line must have come.
const MAX_HEAD: usize = 4096;

/// Where the probe goes: `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` (no user info, query allowed in the path).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
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
        Ok(Target {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            path: path.into(),
        })
    }

    /// Times one `GET`: connection to status line. A 2xx is an answer; anything
    /// else (refused, timeout, 5xx, garbage) is a reason.
    pub(crate) fn time(&self, clock: &dyn Clock, timeout: Duration) -> Result<Duration, String> {
        let start = clock.monotonic();
        let left = || timeout.saturating_sub(clock.monotonic().saturating_sub(start));
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cybersensei-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path
        );
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer within {} s", timeout.as_secs())
            }
            _ => e.to_string(),
        };
        s.set_write_timeout(Some(left().max(Duration::from_millis(1))))
            .map_err(io)?;
        s.write_all(req.as_bytes()).map_err(io)?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        loop {
            let l = left();
            if l.is_zero() {
                return Err(format!("no answer within {} s", timeout.as_secs()));
            }
            s.set_read_timeout(Some(l)).map_err(io)?;
            let n = s.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.contains(&b'\n') || head.len() >= MAX_HEAD {
                break;
            }
        }
        let took = clock.monotonic().saturating_sub(start);
        let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let status = match (words.next(), words.next()) {
            (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
            _ => None,
        };
        match status {
            Some(200..=299) => Ok(took),
            Some(c) => Err(format!("answered {c}")),
            None if head.is_empty() => Err("closed without an answer".into()),
            None => Err("not an HTTP answer".into()),
        }
    }
}

/// The probes answered since the last sample, and the last failure (for status).
#[derive(Debug, Default)]
pub(crate) struct Probes {
    answered: heapless::Deque<f64, MAX_KEPT>,
    tried: u32,
    last_error: Option<String>,
}

impl Probes {
    /// Runs one probe of `url` and keeps its time (in ms) or its failure.
    pub(crate) fn probe(&mut self, url: &str, clock: &dyn Clock) {
        self.tried = self.tried.saturating_add(1);
        let r = Target::parse(url).and_then(|t| t.time(clock, PROBE_TIMEOUT));
        match r {
            Ok(d) => {
                if self.answered.is_full() {
                    self.answered.pop_front();
                }
                let _ = self.answered.push_back(d.as_secs_f64() * 1000.0);
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    log::warn!("telemetry: AI probe {url}: {e}; aiLatency is left out while it does not answer");
                }
                self.last_error = Some(e);
                return;
            }
        }
        if self.last_error.take().is_some() {
            log::info!("telemetry: AI probe {url} answers again");
        }
    }

    /// The median (ms, one decimal) of the answers since the last call, or None when
    /// none answered (a probe is run first when none was tried); starts a new window.
    pub(crate) fn take_median(&mut self, url: &str, clock: &dyn Clock) -> Result<f64, String> {
        if self.tried == 0 {
            self.probe(url, clock);
        }
        let mut v: heapless::Vec<f64, MAX_KEPT> = self.answered.iter().copied().collect();
        let tried = self.tried;
        self.answered.clear();
        self.tried = 0;
        if v.is_empty() {
            return Err(format!(
                "{tried} probe(s), none answered: {}",
                self.last_error.as_deref().unwrap_or("?")
            ));
        }
        v.sort_unstable_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let m = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Ok((m * 10.0).round() / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use std::io::Write;

    /// The median of the answers since the last sample: three probes answered after
    /// 20, 400 and 60 ms, one refused; then a new window with none answered.
    #[test]
    fn median_of_the_answers_since_the_last_sample() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for ms in [20u64, 400, 60] {
                let Ok((mut c, _)) = l.accept() else { return };
                let mut b = [0u8; 512];
                let _ = std::io::Read::read(&mut c, &mut b);
                std::thread::sleep(Duration::from_millis(ms));
                let _ = c.write_all(b"HTTP/1.0 204 No Content\r\n\r\n");
            }
        });
        let clock = SystemClock::new();
        let mut p = Probes::default();
        for _ in 0..3 {
            p.probe(&url, &clock);
        }
        p.probe("http://127.0.0.1:1/health", &clock);
        let m = p.take_median(&url, &clock).unwrap();
        assert!((60.0..300.0).contains(&m), "median {m}");
        // Nothing answers now (the server is gone): no latency invented.
        let e = p.take_median(&url, &clock).unwrap_err();
        assert!(e.starts_with("1 probe(s), none answered"), "{e}");
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8000/health").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8000, "/health")
        );
        let t = Target::parse("http://ai").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("ai", 80, "/"));
        let t = Target::parse("http://[::1]:81/h?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 81, "/h?x=1")
        );
        for bad in [
            "https://ai/health",
            "http://",
            "http://u@ai/",
            "http://ai:x/",
            "http://ai:0/",
            "ai:80",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
