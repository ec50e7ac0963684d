//! HTTP to the backend: one ureq agent over rustls, timeouts, retries with backoff,
//! bounded bodies, and exchange logs with secrets removed.

use crate::clock::Clock;
use crate::config::Backend;
use crate::error::{Error, Result};
use crate::redact;
use std::cell::Cell;
use std::io::Read;
use std::time::Duration;
use ureq::http::Response;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
use ureq::Body;

/// Largest JSON answer we read: anything bigger is refused, not buffered.
pub(crate) const MAX_JSON_BODY: u64 = 1 << 20;
/// Longest `Retry-After` we honour, so a confused server cannot park the agent.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Wait after a 429 that names no `Retry-After`: the real throttler's window.
pub(crate) const DEFAULT_THROTTLE: Duration = Duration::from_secs(60);
/// Longest silence a 429 can impose on the daemon, so a confused server cannot
/// mute a box for days.
pub(crate) const MAX_THROTTLE: Duration = Duration::from_secs(3600);
/// A command run by hand waits out a 429 this long at most (saying so); longer,
/// it stops and says when to try again.
pub(crate) const INTERACTIVE_MAX_WAIT: Duration = Duration::from_secs(60);

/// The User-Agent every request carries.
pub(crate) fn user_agent() -> String {
    format!("cybersensei-agent/{}", env!("CARGO_PKG_VERSION"))
}

/// A complete, bounded answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The message of a backend error body (NestJS: `message` as a string or an
    /// array, else `error`), bounded and cleaned for logs; None when the body is not
    /// one (a proxy's or a portal's page).
    pub(crate) fn error_message(&self) -> Option<String> {
        let e: crate::protocol::ErrorBody = serde_json::from_slice(&self.body).ok()?;
        e.message
            .map(|m| m.text())
            .or(e.error)
            .map(|m| redact::server_text(m.trim()))
    }
}

/// An answer whose body is still to be streamed (downloads).
pub(crate) struct Streaming {
    pub(crate) status: u16,
    response: Response<Body>,
}

impl Streaming {
    /// A response header, if present and ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    }
    /// The body as a reader; reads are bounded by the per-read timeout.
    pub(crate) fn into_reader(self) -> impl Read {
        self.response.into_body().into_reader()
    }
}

/// The HTTP client of the agent, built once per configuration.
pub(crate) struct Transport {
    agent: ureq::Agent,
    base: String,
    attempts: u32,
    retry_delay: Duration,
    timeout: Duration,
    /// The proxy the backend is reached through, for error messages.
    via: Option<String>,
    secrets: std::cell::RefCell<Vec<String>>,
    /// A person runs the command: a short 429 wait is announced and waited out.
    interactive: bool,
    /// Per route (path without its query), the monotonic time before which no
    /// request goes out on it: a 429's `Retry-After`. The backend's throttler counts
    /// per client address *and* route (controller + handler), so a 429 on telemetry
    /// says nothing of validation or update checks, which must not wait for it.
    blocked: std::cell::RefCell<Vec<(String, Duration)>>,
    /// The throttler's `X-RateLimit-Remaining` / `-Limit` of the last answer.
    rate: Cell<Option<RateBudget>>,
}

/// The throttler's route of a request: its path without the query.
fn route_of(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// What the backend's throttler said is left of its window (`X-RateLimit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateBudget {
    /// Requests left in the window for this client address and route.
    pub(crate) remaining: u64,
    /// Requests allowed per window.
    pub(crate) limit: u64,
    /// Seconds until the window resets, when given.
    pub(crate) reset: Option<u64>,
}

enum Outcome {
    Done(Response<Body>),
    Retry {
        why: String,
        after: Option<Duration>,
        /// The operating system's error behind a network failure (kept as the
        /// source; other ureq errors may carry the URL, hence the key: words only).
        cause: Option<std::io::Error>,
    },
    /// 429: the backend asks every request from this address to wait.
    Throttled {
        after: Option<Duration>,
    },
}

impl Transport {
    /// Builds the client: trust anchors (built-in roots plus `ca_file`), proxy, timeouts.
    pub(crate) fn new(cfg: &Backend) -> Result<Transport> {
        let tls = crate::tls::client_config(cfg)?;
        let timeout = cfg.timeout.max(Duration::from_secs(1));
        let (proxy, via) = proxy(cfg)?;
        let config = agent_config(cfg, timeout).proxy(proxy).build();
        Ok(Transport {
            agent: ureq::Agent::with_parts(
                config,
                // ureq's default chain (its SOCKS warning aside), with our TLS.
                ().chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(crate::tls::TlsConnector(tls)),
                DefaultResolver::default(),
            ),
            base: cfg.url.trim_end_matches('/').to_string(),
            attempts: cfg.retry_attempts.max(1),
            retry_delay: cfg.retry_delay,
            timeout,
            via,
            secrets: std::cell::RefCell::new(Vec::new()),
            interactive: false,
            blocked: std::cell::RefCell::new(Vec::new()),
            rate: Cell::new(None),
        })
    }

    /// Marks the transport as driven by a person (see `INTERACTIVE_MAX_WAIT`).
    pub(crate) fn set_interactive(&mut self, interactive: bool) {
        self.interactive = interactive;
    }

    /// How long the backend still asks us to wait (a 429) on the routes whose path
    /// starts with `prefix` ("" for any route), if it does.
    pub(crate) fn throttled(&self, clock: &dyn Clock, prefix: &str) -> Option<Duration> {
        let now = clock.monotonic();
        self.blocked
            .borrow()
            .iter()
            .filter(|(r, until)| r.starts_with(prefix) && *until > now)
            .map(|(_, until)| *until - now)
            .max()
    }

    /// How long `route` itself is still blocked by a 429.
    fn blocked_on(&self, clock: &dyn Clock, route: &str) -> Option<Duration> {
        let now = clock.monotonic();
        self.blocked
            .borrow()
            .iter()
            .find(|(r, until)| r == route && *until > now)
            .map(|(_, until)| *until - now)
    }

    /// The routes still blocked, with their monotonic deadline (carried across a
    /// reload by the daemon).
    pub(crate) fn blocks(&self) -> Vec<(String, Duration)> {
        self.blocked.borrow().clone()
    }

    /// Honours a wait on `route` decided elsewhere (the daemon carries it across a
    /// reload) or answered by the backend.
    pub(crate) fn block_until(&self, route: &str, until: Duration) {
        let mut b = self.blocked.borrow_mut();
        match b.iter_mut().find(|(r, _)| r == route) {
            Some((_, u)) => *u = (*u).max(until),
            None => b.push((route.to_string(), until)),
        }
    }

    /// The throttler's budget as of the last answer, when it sent `X-RateLimit-*`.
    pub(crate) fn rate_budget(&self) -> Option<RateBudget> {
        self.rate.get()
    }

    /// Registers a secret (the license key) that must never reach a log or message.
    pub(crate) fn add_secret(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut secrets = self.secrets.borrow_mut();
        for s in [secret.to_string(), percent_encode(secret)] {
            if !secrets.contains(&s) {
                secrets.push(s);
            }
        }
    }

    /// Removes every registered secret from a text.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut s = text.to_string();
        for k in self.secrets.borrow().iter() {
            if s.contains(k.as_str()) {
                s = s.replace(k.as_str(), "REDACTED");
            }
        }
        s
    }

    /// GET a JSON resource with retries; the body is bounded to `MAX_JSON_BODY`.
    pub(crate) fn get(&self, clock: &dyn Clock, path_and_query: &str) -> Result<Reply> {
        let resp = self.exchange(clock, "GET", path_and_query, None, &[], false)?;
        self.bounded(path_and_query, resp)
    }

    /// POST a JSON body with retries; the answer is bounded to `MAX_JSON_BODY`.
    pub(crate) fn post_json(&self, clock: &dyn Clock, path: &str, body: &[u8]) -> Result<Reply> {
        let resp = self.exchange(clock, "POST", path, Some(body), &[], false)?;
        self.bounded(path, resp)
    }

    /// GET with retries up to the response headers; the body is left to stream,
    /// with a per-read timeout instead of a whole-exchange one.
    pub(crate) fn get_streaming(
        &self,
        clock: &dyn Clock,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<Streaming> {
        let resp = self.exchange(clock, "GET", path, None, headers, true)?;
        Ok(Streaming {
            status: resp.status().as_u16(),
            response: resp,
        })
    }

    fn bounded(&self, path: &str, resp: Response<Body>) -> Result<Reply> {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string());
        let declared = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        let what = redact::query(&self.scrub(path));
        if let Some(n) = declared {
            if n > MAX_JSON_BODY {
                // No JSON answer of the protocol is that large: not a network fault.
                return Err(Error::protocol(
                    format!("{what}: answer of {n} bytes refused (limit {MAX_JSON_BODY})"),
                    None,
                ));
            }
        }
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_JSON_BODY)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::protocol(
                    format!("{what}: answer larger than {MAX_JSON_BODY} bytes refused"),
                    None,
                ),
                other => Error::Unreachable {
                    message: format!(
                        "{what}: reading the answer: {}",
                        self.scrub(&describe(&other))
                    ),
                    source: match other {
                        ureq::Error::Io(io) => Some(Box::new(io) as crate::error::Source),
                        _ => None,
                    },
                },
            })?;
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    fn exchange(
        &self,
        clock: &dyn Clock,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, String)],
        streaming: bool,
    ) -> Result<Response<Body>> {
        let url = format!("{}{}", self.base, path);
        let shown = redact::query(&self.scrub(path));
        let mut last = String::new();
        let mut last_cause: Option<std::io::Error> = None;
        for attempt in 1..=self.attempts {
            if crate::signals::stop_requested() {
                return Err(Error::Interrupted);
            }
            if let Some(left) = self.blocked_on(clock, route_of(path)) {
                // A 429 on this route earlier: not one more request before it passes.
                return Err(Error::Throttled {
                    what: format!("{method} {shown}"),
                    retry_after: left,
                });
            }
            let started = clock.monotonic();
            let outcome = self.once(clock, method, &url, body, headers, streaming);
            let ms = clock.monotonic().saturating_sub(started).as_millis();
            let (why, after) = match outcome {
                Outcome::Done(resp) => {
                    log::info!(
                        "{method} {shown} -> {} in {ms} ms (attempt {attempt}/{})",
                        resp.status().as_u16(),
                        self.attempts
                    );
                    return Ok(resp);
                }
                Outcome::Retry { why, after, cause } => {
                    last_cause = cause;
                    (self.scrub(&why), after)
                }
                Outcome::Throttled { after } => {
                    let what = format!("{method} {shown}");
                    self.on_429(clock, route_of(path), &what, after, attempt, ms)?;
                    last = "HTTP 429 Too Many Requests".into();
                    last_cause = None;
                    continue;
                }
            };
            log::warn!(
                "{method} {shown} -> {why} in {ms} ms (attempt {attempt}/{})",
                self.attempts
            );
            last = why;
            if attempt < self.attempts {
                let wait = match after {
                    Some(d) => d.min(MAX_RETRY_AFTER),
                    None => self.backoff(clock, attempt),
                };
                if !wait.is_zero() {
                    clock.sleep(wait);
                }
            }
        }
        Err(Error::Unreachable {
            message: format!(
                "{method} {shown}: {last} (after {} attempts)",
                self.attempts
            ),
            source: last_cause.map(|e| Box::new(e) as crate::error::Source),
        })
    }

    /// A 429 for `what`: a person at the terminal waits a short `Retry-After` and
    /// the request is tried again (Ok); otherwise nothing more is sent before it has
    /// passed (Err: throttled).
    fn on_429(
        &self,
        clock: &dyn Clock,
        route: &str,
        what: &str,
        after: Option<Duration>,
        attempt: u32,
        ms: u128,
    ) -> Result<()> {
        let wait = after.unwrap_or(DEFAULT_THROTTLE).min(MAX_THROTTLE);
        log::warn!(
            "{what} -> 429 Too Many Requests in {ms} ms (attempt {attempt}/{}); Retry-After {}",
            self.attempts,
            crate::error::human_duration(wait)
        );
        if self.interactive && wait <= INTERACTIVE_MAX_WAIT && attempt < self.attempts {
            eprintln!(
                "The backend is busy (429 Too Many Requests): waiting {} as it asks, then retrying.",
                crate::error::human_duration(wait)
            );
            clock.sleep(wait);
            return Ok(());
        }
        self.block_until(route, clock.monotonic() + wait);
        Err(Error::Throttled {
            what: what.to_string(),
            retry_after: wait,
        })
    }

    /// Exponential backoff from `retry_delay`, times a random factor in [0.5, 1.5).
    fn backoff(&self, clock: &dyn Clock, attempt: u32) -> Duration {
        let base = self.retry_delay.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1) as i32);
        let jittered = base * (0.5 + clock.random());
        Duration::from_secs_f64(jittered.min(MAX_BACKOFF.as_secs_f64()))
    }

    /// One request, classified: an answer, a failure worth retrying, or a 429.
    fn once(
        &self,
        clock: &dyn Clock,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        headers: &[(&str, String)],
        streaming: bool,
    ) -> Outcome {
        match self.send(method, url, body, headers, streaming) {
            Ok(resp) => self.classify(clock, resp),
            Err(e) => Outcome::Retry {
                why: match &self.via {
                    Some(v) => format!("{} (via proxy {v})", describe(&e)),
                    None => describe(&e),
                },
                after: None,
                cause: match e {
                    ureq::Error::Io(io) => Some(io),
                    _ => None,
                },
            },
        }
    }

    /// Sends one request: a POST of JSON, a GET of JSON, or a streamed download
    /// (each read bounded instead of the whole).
    fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        headers: &[(&str, String)],
        streaming: bool,
    ) -> std::result::Result<Response<Body>, ureq::Error> {
        if method == "POST" {
            let mut req = self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json");
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            req.send(body.unwrap_or_default())
        } else {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if streaming {
                // Downloads may take long: bound each read instead of the whole.
                req.config()
                    .timeout_global(None)
                    .timeout_recv_response(Some(self.timeout))
                    .timeout_per_read(Some(self.timeout))
                    .build()
                    .call()
            } else {
                req.header("Accept", "application/json").call()
            }
        }
    }

    /// What an answer means for the retry loop: 429 throttles, 5xx is retried (after
    /// its `Retry-After`, bounded), anything else is the answer. The rate-limit
    /// headers are kept for `rate_budget`.
    fn classify(&self, clock: &dyn Clock, resp: Response<Body>) -> Outcome {
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let num = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(remaining), Some(limit)) =
            (num("x-ratelimit-remaining"), num("x-ratelimit-limit"))
        {
            self.rate.set(Some(RateBudget {
                remaining,
                limit,
                reset: num("x-ratelimit-reset"),
            }));
        }
        let wall = std::time::UNIX_EPOCH + Duration::from_secs_f64(clock.now_unix().max(0.0));
        let after = header("retry-after").and_then(|s| parse_retry_after(s, wall));
        if status == 429 {
            Outcome::Throttled { after }
        } else if (500..600).contains(&status) {
            Outcome::Retry {
                why: format!("HTTP {status}"),
                after: after.map(|d| d.min(MAX_RETRY_AFTER)),
                cause: None,
            }
        } else {
            Outcome::Done(resp)
        }
    }
}

/// The HTTP client's settings: no redirects, bounded headers and buffers, one idle
/// connection, `timeout` for the whole of each request and its connect.
fn agent_config(
    cfg: &Backend,
    timeout: Duration,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .https_only(!cfg.allow_http)
        // A redirect is never followed: the key is in the query of the license
        // call, and a captive portal must not become our backend.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(user_agent())
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .max_response_header_size(16 * 1024)
        .input_buffer_size(32 * 1024)
        .output_buffer_size(16 * 1024)
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
}

/// The proxy to use (`backend.proxy`, else the environment's) and, when it applies
/// to the backend, its `host:port` for error messages.
fn proxy(cfg: &Backend) -> Result<(Option<ureq::Proxy>, Option<String>)> {
    let proxy = match &cfg.proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| {
            Error::Config(format!(
                "backend.proxy: {}: {e}",
                redact::url_credentials(p)
            ))
        })?),
        // ureq reads HTTPS_PROXY/ALL_PROXY/NO_PROXY (either case) itself; we take
        // its reading so that errors can name the proxy in use.
        None => ureq::Proxy::try_from_env(),
    };
    let via = proxy.as_ref().and_then(|p| proxy_in_use(p, &cfg.url));
    if let Some(v) = &via {
        let from = if cfg.proxy.is_some() {
            "backend.proxy"
        } else {
            "environment"
        };
        log::debug!("backend reached through proxy {v} (from {from})");
    }
    Ok((proxy, via))
}

/// `host:port` of the proxy (no credentials) when it applies to the backend URL.
fn proxy_in_use(p: &ureq::Proxy, backend: &str) -> Option<String> {
    let uri = backend.parse::<ureq::http::Uri>().ok()?;
    if p.is_no_proxy(&uri) {
        return None;
    }
    Some(format!("{}:{}", p.host(), p.port()))
}

/// A one-line reason for a transport failure, worded for an operator.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found (DNS)".into(),
        ureq::Error::ConnectionFailed => "connection refused or failed".into(),
        ureq::Error::Tls(m) => format!("TLS error: {m}"),
        ureq::Error::Io(io) => format!("network error: {io}"),
        ureq::Error::ConnectProxyFailed(r) if r.contains("407") => {
            "proxy answered 407 Proxy Authentication Required (user:pass in backend.proxy or HTTPS_PROXY)".into()
        }
        ureq::Error::ConnectProxyFailed(r) => format!("proxy refused the tunnel: {r}"),
        other => format!("{other}"),
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (relative to `now`), at
/// most a day (callers bound it further for what they do).
pub fn parse_retry_after(s: &str, now: std::time::SystemTime) -> Option<Duration> {
    const DAY: Duration = Duration::from_secs(86_400);
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n).min(DAY));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(DAY))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass as they are).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999", now),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn unreachable_keeps_the_os_error_and_not_the_key() {
        use std::error::Error as _;
        // A port nothing listens on (bound then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut cfg = crate::config::Config::default().backend;
        cfg.url = format!("http://127.0.0.1:{port}");
        cfg.allow_http = true;
        cfg.retry_attempts = 1;
        let t = Transport::new(&cfg).unwrap();
        t.add_secret("SECRET-KEY");
        let clock = crate::clock::SystemClock::new();
        let e = t
            .get(&clock, "/api/license/validate?key=SECRET-KEY")
            .unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
        let io = e
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the io::Error is the source");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(!e.to_string().contains("SECRET-KEY"), "{e}");
    }

    #[test]
    fn encodes_key_characters() {
        assert_eq!(percent_encode("a+b/c=d e"), "a%2Bb%2Fc%3Dd%20e");
        assert_eq!(percent_encode("A1-B2_c.d~"), "A1-B2_c.d~");
    }
}
