//! `doctor`: checks a box step by step, one line per check, and exits with the code of
//! the first failure, named. Changes nothing: no lock, no state written, no license
//! validation (the backend counts those), no update or telemetry sent.
//!
//! Order: config, key, clock, disk, then the backend one layer at a time (dns, tcp,
//! tls, http: the first layer that fails is the one to fix), then the active slot,
//! then telemetry's sources (the application's command or file, the AI probe).

use crate::clock::{iso8601, Clock};
use crate::config::Config;
use crate::error::exit;
use crate::transport::Transport;
use crate::update::manifest::{self, FileType};
use crate::update::slots::Layout;
use crate::update::verify;
use crate::{fsutil, license, redact};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Free space below which `disk` fails: a status write or a small update needs more.
pub(crate) const MIN_FREE_BYTES: u64 = 16 << 20;
/// Free inodes below which `disk` fails.
pub(crate) const MIN_FREE_INODES: u64 = 64;
/// Largest file hashed when checking a slot against its manifest: bounded work.
const MAX_HASHED_BYTES: u64 = 4 << 30;

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Ok(String),
    Fail(String),
    Skip(String),
}

/// One named check and its outcome.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) outcome: Outcome,
}

/// The exit code a failure of this check maps to (INTERFACE.md's table).
pub(crate) fn exit_code(name: &str) -> u8 {
    match name {
        "config" | "key" => exit::USAGE,
        "dns" | "tcp" | "tls" | "http" => exit::UNREACHABLE,
        _ => exit::FAILURE,
    }
}

/// Runs every check, printing each line as it completes; returns the exit code.
/// `config_problem`: why the config file could not be used (the defaults are then
/// checked instead).
pub(crate) fn run(config_problem: Option<&str>, cfg: Config, clock: &dyn Clock) -> u8 {
    let mut first: Option<Check> = None;
    let mut n = 0;
    let mut out = std::io::stdout();
    check_all(config_problem, &cfg, clock, &mut |c: Check| {
        n += 1;
        let (word, text) = match &c.outcome {
            Outcome::Ok(t) => ("ok  ", t),
            Outcome::Fail(t) => ("FAIL", t),
            Outcome::Skip(t) => ("skip", t),
        };
        // A closed stdout must not stop the checks' exit code from reaching the caller.
        let _ = writeln!(out, "{word}  {:<7} {text}", c.name);
        let _ = out.flush();
        if matches!(c.outcome, Outcome::Fail(_)) && first.is_none() {
            first = Some(c);
        }
    });
    match first {
        None => {
            println!("doctor: all {n} checks passed");
            exit::OK
        }
        Some(c) => {
            let why = match &c.outcome {
                Outcome::Fail(t) => t.as_str(),
                _ => "",
            };
            eprintln!("doctor: first failure: {}: {why}", c.name);
            exit_code(c.name)
        }
    }
}

/// Runs the checks in order, handing each to `report` as soon as it is known.
pub(crate) fn check_all(
    config_problem: Option<&str>,
    cfg: &Config,
    clock: &dyn Clock,
    report: &mut dyn FnMut(Check),
) {
    let mut emit = |name, outcome| report(Check { name, outcome });
    emit(
        "config",
        match config_problem {
            Some(p) => Outcome::Fail(format!("{p} (the checks below use the defaults)")),
            None => Outcome::Ok("loaded and valid".into()),
        },
    );
    emit("key", key(cfg));
    emit("clock", clock_check(clock.now_unix()));
    emit("disk", disk(cfg));
    for c in network(cfg, clock) {
        emit(c.name, c.outcome);
    }
    emit("slots", slots(cfg));
    emit(
        "telemetry",
        match crate::telemetry::diagnose(cfg, clock) {
            Ok(t) => Outcome::Ok(t),
            Err(t) => Outcome::Fail(t),
        },
    );
}

fn key(cfg: &Config) -> Outcome {
    let k = match license::read_key(cfg) {
        Ok(k) => k,
        Err(e) if e.to_string().contains("set-key") => return Outcome::Fail(e.to_string()),
        Err(e) => {
            return Outcome::Fail(format!(
                "{e}; store it with: echo KEY | cybersensei-agent set-key"
            ))
        }
    };
    let from_env = std::env::var("CYBERSENSEI_LICENSE_KEY")
        .map(|v| !v.trim().is_empty())
        .unwrap_or(false);
    if from_env {
        return Outcome::Ok(format!("{} from $CYBERSENSEI_LICENSE_KEY", redact::key(&k)));
    }
    let path = &cfg.license.key_file;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o004 != 0 => Outcome::Fail(format!(
            "{} is world-readable (mode {:o}): chmod 600 it",
            path.display(),
            m.permissions().mode() & 0o777
        )),
        Ok(m) => Outcome::Ok(format!(
            "{} in {} (mode {:o})",
            redact::key(&k),
            path.display(),
            m.permissions().mode() & 0o777
        )),
        Err(e) => Outcome::Fail(format!("{}: {e}", path.display())),
    }
}

fn clock_check(now: f64) -> Outcome {
    if license::clock_is_sane(now) {
        Outcome::Ok(format!("{} (UTC)", iso8601(now)))
    } else {
        Outcome::Fail(format!(
            "system clock not set: reads {}, before this agent's build date {}; no TLS \
             certificate can be checked until NTP sets it",
            iso8601(now),
            iso8601(license::clock_floor())
        ))
    }
}

/// Free bytes and free inodes of the filesystem holding `path` (its nearest
/// existing ancestor, as the update's space check measures it), and that ancestor.
fn statvfs(path: &Path) -> Option<(u64, u64, PathBuf)> {
    let p = fsutil::nearest_existing(path);
    let s = fsutil::statvfs(&p).ok()?;
    Some((
        (s.f_bavail as u64).saturating_mul(s.f_frsize as u64),
        s.f_favail as u64,
        p,
    ))
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() reads a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn disk(cfg: &Config) -> Outcome {
    let mut parts = Vec::new();
    for (label, dir) in [
        ("state_dir", &cfg.state_dir),
        ("install.root", &cfg.install.root),
    ] {
        let Some((free, inodes, existing)) = statvfs(dir) else {
            return Outcome::Fail(format!("{label} {}: cannot statvfs", dir.display()));
        };
        if !writable(&existing) {
            return Outcome::Fail(format!(
                "{label} {}: {} is not writable by this user (uid {}); the agent runs as root on a box",
                dir.display(),
                existing.display(),
                // SAFETY: getuid cannot fail.
                unsafe { libc::getuid() }
            ));
        }
        if free < MIN_FREE_BYTES || inodes < MIN_FREE_INODES {
            return Outcome::Fail(format!(
                "{label} {}: {} MiB and {inodes} inodes free (needs at least {} MiB, {MIN_FREE_INODES} inodes)",
                dir.display(),
                free >> 20,
                MIN_FREE_BYTES >> 20
            ));
        }
        let created = if existing.as_path() == dir.as_path() {
            ""
        } else {
            " (to be created)"
        };
        parts.push(format!(
            "{label} {}{created}: {} MiB free",
            dir.display(),
            free >> 20
        ));
    }
    Outcome::Ok(parts.join("; "))
}

/// Where the TCP connection goes: the backend itself, or the proxy that applies.
struct Target {
    host: String,
    port: u16,
    https: bool,
    via_proxy: Option<String>,
}

fn target(cfg: &Config) -> Result<Target, String> {
    let uri: ureq::http::Uri = cfg
        .backend
        .url
        .parse()
        .map_err(|e| format!("backend.url {:?}: {e}", cfg.backend.url))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| format!("backend.url {:?}: no host", cfg.backend.url))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let proxy = match &cfg.backend.proxy {
        Some(p) => Some(
            ureq::Proxy::new(p)
                .map_err(|e| format!("backend.proxy {}: {e}", redact::url_credentials(p)))?,
        ),
        None => ureq::Proxy::try_from_env(),
    };
    match proxy.filter(|p| !p.is_no_proxy(&uri)) {
        Some(p) => Ok(Target {
            host: p.host().to_string(),
            port: p.port(),
            https,
            via_proxy: Some(format!("{}:{}", p.host(), p.port())),
        }),
        None => Ok(Target {
            host,
            port,
            https,
            via_proxy: None,
        }),
    }
}

/// getaddrinfo has no timeout of its own: it runs on a thread that is abandoned
/// (and ends with the process) past `timeout`.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let h = host.to_string();
    let lookup = std::thread::spawn(move || {
        (h.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>())
    });
    let deadline = Instant::now() + timeout;
    while !lookup.is_finished() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{host}: no answer from the resolver within {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match lookup.join() {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(format!("{host}: no address")),
        Ok(Err(e)) => Err(format!("{host}: host not found ({e})")),
        Err(_) => Err(format!("{host}: the lookup failed")),
    }
}

/// The network checks in their order: each needs the one before it.
const NETWORK: [&str; 4] = ["dns", "tcp", "tls", "http"];

/// dns, tcp, tls, http; after the first failure the rest are skipped, saying what
/// they need.
fn network(cfg: &Config, clock: &dyn Clock) -> Vec<Check> {
    let mut out = Vec::new();
    let started = Instant::now();
    match network_steps(cfg, clock, &mut out) {
        Ok(()) => log::debug!("doctor: network checks in {:?}", started.elapsed()),
        Err(needs) => {
            for name in &NETWORK[out.len()..] {
                out.push(Check {
                    name,
                    outcome: Outcome::Skip(needs.clone()),
                });
            }
        }
    }
    out
}

/// Runs the network checks in turn into `out`; Err(what the others need) at the
/// first that fails.
fn network_steps(cfg: &Config, clock: &dyn Clock, out: &mut Vec<Check>) -> Result<(), String> {
    let timeout = cfg.backend.timeout.max(Duration::from_secs(1));
    let mut push = |name, outcome| out.push(Check { name, outcome });
    let t = target(cfg).map_err(|e| {
        push("dns", Outcome::Fail(e));
        "(needs a usable backend.url)".to_string()
    })?;
    let via = t
        .via_proxy
        .as_ref()
        .map(|p| format!(" (proxy {p})"))
        .unwrap_or_default();
    let addrs = resolve(&t.host, t.port, timeout).map_err(|e| {
        push("dns", Outcome::Fail(format!("{e}{via}")));
        "(needs dns)".to_string()
    })?;
    let shown: Vec<String> = addrs.iter().take(3).map(|x| x.ip().to_string()).collect();
    push(
        "dns",
        Outcome::Ok(format!("{}{via} -> {}", t.host, shown.join(", "))),
    );
    let (stream, connected) = connect(&addrs, timeout, &via).map_err(|e| {
        push("tcp", Outcome::Fail(e));
        "(needs tcp)".to_string()
    })?;
    push("tcp", Outcome::Ok(connected));
    let tls = tls_check(cfg, &t, stream, timeout);
    let failed = matches!(tls, Outcome::Fail(_));
    push("tls", tls);
    if failed {
        return Err("(needs tls)".into());
    }
    push("http", http(cfg, clock));
    Ok(())
}

/// The first of (at most four of) `addrs` that accepts a connection, and a line
/// saying so.
fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    via: &str,
) -> Result<(TcpStream, String), String> {
    let mut last = String::new();
    for a in addrs.iter().take(4) {
        let t0 = Instant::now();
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                let line = format!("connected to {a}{via} in {} ms", t0.elapsed().as_millis());
                return Ok((s, line));
            }
            Err(e) => last = format!("{a}{via}: {e}"),
        }
    }
    Err(format!("{last} (firewall, or the port is closed)"))
}

/// The TLS handshake on `stream`, when it is ours to check (not plain http, not
/// through a proxy).
fn tls_check(cfg: &Config, t: &Target, stream: TcpStream, timeout: Duration) -> Outcome {
    if !t.https {
        Outcome::Skip("(plain http: backend.allow_http)".into())
    } else if t.via_proxy.is_some() {
        drop(stream);
        Outcome::Skip("(through the proxy: checked by http)".into())
    } else {
        match tls_handshake(cfg, &t.host, stream, timeout) {
            Ok(m) => Outcome::Ok(m),
            Err(e) => Outcome::Fail(e),
        }
    }
}

/// A TLS handshake with the backend, with the trust anchors the agent uses.
fn tls_handshake(
    cfg: &Config,
    host: &str,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<String, String> {
    let config = crate::tls::client_config(&cfg.backend).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
    let mut conn =
        rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS setup: {e}"))?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(format!("handshake not done within {}s", timeout.as_secs()));
        }
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) => {
                let hint = tls_hint(&e);
                return Err(format!("{host}: {e}{hint}"));
            }
        }
    }
    // Nothing more to say to this server: a close_notify, best effort.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    let mut sink = [0u8; 1];
    let _ = conn.reader().read(&mut sink);
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "?".into());
    Ok(format!("{version}, certificate of {host} verified"))
}

/// GET /health (the backend's public health route), once, no retries.
fn http(cfg: &Config, clock: &dyn Clock) -> Outcome {
    let mut b = cfg.backend.clone();
    b.retry_attempts = 1;
    let t = match Transport::new(&b) {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    match t.get(clock, "/health") {
        Ok(r) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
            let is_json = r
                .content_type
                .as_deref()
                .is_some_and(|c| c.contains("json"));
            match (r.status, json) {
                (200..=299, Some(v)) if is_json => Outcome::Ok(format!(
                    "GET /health: HTTP {} {}",
                    r.status,
                    crate::redact::server_text(&v.to_string())
                )),
                // A NestJS error body: the backend itself answered, it only lacks the route.
                (400..=499, Some(v)) if is_json && v.get("statusCode").is_some() => {
                    Outcome::Ok(format!(
                        "GET /health: HTTP {} from the backend (no health route; it answers)",
                        r.status
                    ))
                }
                (s, _) => Outcome::Fail(format!(
                    "GET /health: HTTP {s} ({}): not the backend's answer (captive portal, proxy page or wrong backend.url?)",
                    r.content_type.as_deref().unwrap_or("no content type")
                )),
            }
        }
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?.take(MAX_HASHED_BYTES);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(crate::hex::encode(ctx.finish().as_ref()))
}

/// Whether the slot's `rel` is what its manifest item says: the type, and the
/// digest of a file's data or a link's target; Err says how it differs.
fn matches_manifest(dir: &Path, rel: &str, item: &manifest::Item) -> Result<(), String> {
    let p = dir.join(rel);
    let meta = std::fs::symlink_metadata(&p).map_err(|e| format!("{rel}: {e}"))?;
    let is_type = match item.ftype {
        Some(FileType::Dir) => meta.is_dir(),
        Some(FileType::Symlink) => meta.file_type().is_symlink(),
        Some(FileType::File) => meta.is_file(),
        None => true,
    };
    if !is_type {
        return Err(format!(
            "{rel} is not the {:?} manifest.json lists",
            item.ftype.unwrap_or(FileType::File)
        ));
    }
    let Some(want) = &item.sha256 else {
        return Ok(());
    };
    let got = if meta.file_type().is_symlink() {
        // A link's digest is the digest of its target string (manifest v2).
        std::fs::read_link(&p).map(|t| {
            use std::os::unix::ffi::OsStrExt;
            crate::hex::encode(
                ring::digest::digest(&ring::digest::SHA256, t.as_os_str().as_bytes()).as_ref(),
            )
        })
    } else if meta.is_dir() {
        return Ok(());
    } else {
        sha256_file(&p)
    };
    match got {
        Ok(h) if &h == want => Ok(()),
        Ok(_) => Err(format!(
            "{rel} differs from manifest.json (modified on the box?)"
        )),
        Err(e) => Err(format!("{rel}: {e}")),
    }
}

fn slots(cfg: &Config) -> Outcome {
    let l = Layout::new(&cfg.install.root);
    let current = l.current();
    let Some(slot) = l.active() else {
        return match std::fs::symlink_metadata(&current) {
            Err(_) => Outcome::Ok(format!(
                "no slot installed yet in {} (the factory agent runs)",
                cfg.install.root.display()
            )),
            Ok(_) => Outcome::Fail(format!(
                "{} is not a link to slots/a or slots/b",
                current.display()
            )),
        };
    };
    if !l.is_complete(&slot) {
        return Outcome::Fail(format!(
            "slot {slot} is active but incomplete (no record, VERSION or manifest.json)"
        ));
    }
    let dir = l.slot_dir(&slot);
    let version = l.version(&slot);
    let data = match crate::fsutil::read_bounded(&dir.join(verify::MANIFEST), 4 << 20) {
        Ok(d) => d,
        Err(_) => {
            return Outcome::Ok(format!(
                "slot {slot}, version {version} (no manifest.json: file digests not checked)"
            ))
        }
    };
    let files = match verify::parse_manifest(&data) {
        Ok(m) => m.files.unwrap_or_default(),
        Err(e) => return Outcome::Fail(format!("slot {slot}: {e}")),
    };
    for (rel, item) in &files {
        if let Err(e) = matches_manifest(&dir, rel, item) {
            return Outcome::Fail(format!("slot {slot}: {e}"));
        }
    }
    Outcome::Ok(format!(
        "slot {slot}, version {version}, {} file(s) match manifest.json",
        files.len()
    ))
}

/// What to look at for a handshake failure: matched on rustls's error kind, not its
/// text (which changes between rustls releases).
fn tls_hint(e: &std::io::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer)) => {
            " (a TLS-inspecting proxy, or a private CA: backend.ca_file)"
        }
        Some(rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        )) => " (check the clock, then the backend's certificate)",
        _ => "",
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_before_build_date_fails() {
        assert!(matches!(clock_check(0.0), Outcome::Fail(m) if m.contains("1970")));
        assert!(matches!(
            clock_check(license::clock_floor() + 86400.0),
            Outcome::Ok(_)
        ));
    }

    #[test]
    fn failures_map_to_exit_codes() {
        assert_eq!(exit_code("config"), exit::USAGE);
        assert_eq!(exit_code("tls"), exit::UNREACHABLE);
        assert_eq!(exit_code("slots"), exit::FAILURE);
    }
}
