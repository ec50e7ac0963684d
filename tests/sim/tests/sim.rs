//! Checks of the simulator itself with a minimal raw HTTP client (plain TCP, and
//! rustls trusting the generated CA).
//! These tests pin the guide profile; tests/central.rs covers the central one.

use cybersensei_sim::{Fault, LicenseOutcome, Profile, Sim, SimOptions, TlsVariant};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

fn request_on<S: Read + Write>(s: &mut S, req: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn raw(sim: &Sim, method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test/1\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    request_on(&mut s, &req, body).unwrap_or_default()
}

fn get(sim: &Sim, target: &str) -> Resp {
    parse(&raw(sim, "GET", target, "", b""))
}

fn plain() -> Sim {
    Sim::start(SimOptions {
        profile: Profile::Guide,
        ..Default::default()
    })
    .unwrap()
}

const KEY: &str = "A1B2C3D4-E5F6+G7H8/I9J0=K1L2";
const KEY_ENC: &str = "A1B2C3D4-E5F6%2BG7H8%2FI9J0%3DK1L2";

#[test]
fn license_outcomes_and_status_codes() {
    let sim = plain();
    let tenant = sim.valid_license(KEY);
    let r = get(&sim, &format!("/api/license/validate?key={KEY_ENC}"));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["tenantId"], tenant.as_str());
    assert_eq!(v["tenantName"], "Acme Corporation");
    assert_eq!(v["expiresAt"], "2099-12-31T23:59:59.000Z");
    let rec = &sim.requests_to("/api/license/validate")[0];
    assert_eq!(rec.param("key"), Some(KEY));
    assert_eq!(rec.query, format!("key={KEY_ENC}"));
    assert_eq!(rec.header("User-Agent"), Some("test/1"));
    assert_eq!(rec.status, 200);

    // A raw '+' is a literal '+', not a space.
    sim.set_license("a+b", LicenseOutcome::Expired);
    let r = get(&sim, "/api/license/validate?key=a+b");
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"statusCode":400,"message":"Licence expirée","error":"Bad Request"}"#
    );

    let cases = [
        (
            LicenseOutcome::Inactive,
            400,
            serde_json::json!("Tenant inactif"),
        ),
        (
            LicenseOutcome::Invalid,
            404,
            serde_json::json!("Clé de licence invalide"),
        ),
        (
            LicenseOutcome::ExpiredMessageArray,
            400,
            serde_json::json!(["Licence expirée"]),
        ),
        (
            LicenseOutcome::ExpiredUpperUnaccented,
            400,
            serde_json::json!("LICENCE EXPIREE"),
        ),
    ];
    for (o, status, msg) in cases {
        sim.set_license("k", o.clone());
        let r = get(&sim, "/api/license/validate?key=k");
        assert_eq!(r.status, status, "{o:?}");
        assert_eq!(r.json()["message"], msg, "{o:?}");
        assert_eq!(r.json()["statusCode"], status, "{o:?}");
    }
    sim.set_license("k", LicenseOutcome::ValidFalse);
    let r = get(&sim, "/api/license/validate?key=k");
    assert_eq!(
        (r.status, r.json()["valid"].clone()),
        (200, serde_json::json!(false))
    );

    let r = get(&sim, "/api/license/validate?key=unknown");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "Clé de licence invalide");
    assert_eq!(get(&sim, "/license/validate?key=k").status, 404);
    assert_eq!(sim.count("/api/license/validate"), 8);
}

#[test]
fn update_check_and_ranged_download() {
    let sim = plain();
    let tenant = sim.valid_license(KEY);
    let zip: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = sim.publish_update("1.2.0", zip.clone(), "- fixes");

    let r = get(
        &sim,
        &format!("/update/check?tenantId={tenant}&version=1.0.0"),
    );
    let v = r.json();
    assert_eq!(v["updateAvailable"], true);
    assert_eq!(v["updateId"], id.as_str());
    assert_eq!(v["fileSize"], zip.len());
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &zip)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["checksum"], format!("sha256:{sha}"));

    let r = get(
        &sim,
        &format!("/update/check?tenantId={tenant}&version=1.2.0"),
    );
    let v = r.json();
    assert_eq!(v["updateAvailable"], false);
    assert!(v["updateId"].is_null() && v["fileSize"].is_null() && v["changelog"].is_null());
    assert_eq!(
        get(&sim, "/update/check?tenantId=nobody&version=1.0.0").status,
        404
    );

    let r = get(&sim, &format!("/update/download/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, zip);
    assert_eq!(r.header("content-type").as_deref(), Some("application/zip"));
    assert_eq!(r.header("x-checksum-sha256"), Some(sha.clone()));

    let r = parse(&raw(
        &sim,
        "GET",
        &format!("/update/download/{id}"),
        "Range: bytes=40000-\r\n",
        b"",
    ));
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 40000-99999/100000")
    );
    assert_eq!(r.header("content-length").as_deref(), Some("60000"));
    assert_eq!(r.body, &zip[40000..]);
    let r = parse(&raw(
        &sim,
        "GET",
        &format!("/update/download/{id}"),
        "Range: bytes=100000-\r\n",
        b"",
    ));
    assert_eq!(r.status, 416);

    sim.set_range_support(false);
    let r = parse(&raw(
        &sim,
        "GET",
        &format!("/update/download/{id}"),
        "Range: bytes=10-\r\n",
        b"",
    ));
    assert_eq!((r.status, r.body.len()), (200, zip.len()));
    assert_eq!(
        sim.download_ranges(),
        vec![
            None,
            Some("bytes=40000-".to_string()),
            Some("bytes=100000-".to_string()),
            Some("bytes=10-".to_string())
        ]
    );

    // Truncated download: full Content-Length, fewer bytes.
    sim.push_fault("/update/download", Fault::Truncate { after_bytes: 1000 });
    let r = get(&sim, &format!("/update/download/{id}"));
    assert_eq!(r.header("content-length").as_deref(), Some("100000"));
    assert_eq!(r.body.len(), 1000);
    assert_eq!(get(&sim, "/update/download/nope").status, 404);
}

#[test]
fn telemetry_is_recorded_and_validated() {
    let dir = std::env::temp_dir().join(format!("sim-tl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("t.jsonl");
    let _ = std::fs::remove_file(&log);
    let sim = Sim::start(SimOptions {
        telemetry_log: Some(log.clone()),
        profile: Profile::Guide,
        ..Default::default()
    })
    .unwrap();
    let body = br#"{"tenantId":"t","uptime":86400,"activeUsers":3,"exercisesCompletedToday":4,"additionalData":{"cpuUsage":1.5}}"#;
    let r = parse(&raw(
        &sim,
        "POST",
        "/telemetry",
        "Content-Type: application/json\r\n",
        body,
    ));
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["message"], "Télémétrie enregistrée avec succès");
    let ts = v["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "{ts}"
    );

    let r = parse(&raw(
        &sim,
        "POST",
        "/telemetry",
        "",
        br#"{"tenantId":"t","uptime":"x"}"#,
    ));
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].is_array());
    assert_eq!(
        parse(&raw(&sim, "POST", "/telemetry", "", b"not json")).status,
        400
    );

    let t = sim.telemetry();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["additionalData"]["cpuUsage"], 1.5);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.lines().count(), 1);
    assert_eq!(sim.count("/telemetry"), 3);
    assert_eq!(sim.requests_to("/telemetry")[0].body_len, body.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn faults_are_consumed_once_and_sticky_ones_stay() {
    let sim = plain();
    sim.valid_license("k");
    let target = "/api/license/validate?key=k";
    sim.push_fault(
        "/api/license/validate",
        Fault::Status(503, r#"{"statusCode":503}"#.into()),
    );
    sim.push_fault(
        "/api/license",
        Fault::TooMany {
            retry_after: "2".into(),
        },
    );
    sim.push_fault("/telemetry", Fault::Reset);
    assert_eq!(get(&sim, target).status, 503);
    let r = get(&sim, target);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    assert_eq!(get(&sim, target).status, 200);

    sim.set_sticky_fault("/api/license/validate", Some(Fault::Html));
    for _ in 0..2 {
        let r = get(&sim, target);
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    sim.set_sticky_fault("/api/license/validate", None);
    sim.push_fault(
        "/api/license/validate",
        Fault::Redirect {
            code: 302,
            location: "https://portal.example/".into(),
        },
    );
    let r = get(&sim, target);
    assert_eq!(
        (r.status, r.header("location").as_deref()),
        (302, Some("https://portal.example/"))
    );
    sim.push_fault(
        "/api/license/validate",
        Fault::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{bad".to_vec()),
    );
    assert_eq!(get(&sim, target).body, b"{bad");
    assert_eq!(get(&sim, target).json()["valid"], true);
    // The telemetry reset is still queued: other routes did not consume it.
    let out = raw(&sim, "POST", "/telemetry", "", b"{}");
    assert!(out.is_empty());
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 429, 200, 200, 200, 302, 200, 200, 0]);
    assert!(sim.requests()[0]
        .fault
        .as_deref()
        .unwrap()
        .starts_with("Status(503"));
}

#[test]
fn hang_slow_oversized_and_down_do_not_block() {
    let sim = plain();
    sim.valid_license("k");
    // Slow body arrives whole.
    sim.push_fault(
        "/api/license",
        Fault::SlowBody {
            chunk: 50,
            delay_ms: 20,
        },
    );
    let t = Instant::now();
    let r = get(&sim, "/api/license/validate?key=k");
    assert_eq!(r.json()["valid"], true);
    assert!(t.elapsed() >= Duration::from_millis(60));

    // Oversized without Content-Length: the client reads a bit and leaves.
    sim.push_fault(
        "/api/license",
        Fault::Oversized {
            bytes: 1 << 30,
            content_length: false,
        },
    );
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.write_all(b"GET /api/license/validate?key=k HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    s.read_exact(&mut buf).unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(!String::from_utf8_lossy(&buf[..200])
        .to_lowercase()
        .contains("content-length"));
    drop(s);

    // Down: connections closed unanswered, nothing recorded.
    sim.set_down(true);
    assert!(raw(&sim, "GET", "/api/license/validate?key=k", "", b"").is_empty());
    sim.set_down(false);
    assert_eq!(get(&sim, "/api/license/validate?key=k").status, 200);
    assert_eq!(sim.count("/"), 3);

    // Hang: the client times out; dropping the sim is still quick.
    sim.set_sticky_fault("/api/license", Some(Fault::Hang));
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(b"GET /api/license/validate?key=k HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 16];
    assert!(s.read(&mut b).is_err(), "hang answered");
    assert_eq!(sim.requests().last().unwrap().status, 0);
    let t = Instant::now();
    drop(sim);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The hanging connection is closed soon after.
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
}

#[test]
fn oversized_headers_get_431() {
    let sim = plain();
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    let r = parse(&raw(&sim, "GET", "/api/license/validate?key=k", &big, b""));
    assert_eq!(r.status, 431);
}

fn tls_get(sim: &Sim, ca_pem: &str, host: &str) -> Result<Resp, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(sim.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = "GET /api/license/validate?key=k HTTP/1.1\r\nHost: x\r\n\r\n";
    request_on(&mut tls, req, b"")
        .map(|b| parse(&b))
        .map_err(|e| e.to_string())
}

#[test]
fn tls_good_and_hostile_certificates() {
    let sim = Sim::start(SimOptions {
        tls: true,
        profile: Profile::Guide,
        ..Default::default()
    })
    .unwrap();
    sim.valid_license("k");
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let ca = sim.ca_pem().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let r = tls_get(&sim, &ca, host).unwrap();
        assert_eq!(r.json()["valid"], true);
    }
    assert!(tls_get(&sim, &ca, "example.com").is_err());

    for (variant, want) in [
        (TlsVariant::WrongHost, "not valid for name"),
        (TlsVariant::Expired, "expired"),
        (TlsVariant::UntrustedCa, "unknownissuer"),
    ] {
        let bad = Sim::start(SimOptions {
            tls: true,
            tls_variant: variant,
            profile: Profile::Guide,
            ..Default::default()
        })
        .unwrap();
        bad.valid_license("k");
        let err = tls_get(&bad, &bad.ca_pem().unwrap(), "127.0.0.1")
            .err()
            .expect("must fail");
        assert!(err.to_lowercase().contains(want), "{variant:?}: {err}");
        eprintln!("{variant:?}: {err}");
        assert_eq!(bad.count("/"), 0);
        assert!(bad.wait_for_handshake_failure());
    }
}

trait WaitHs {
    fn wait_for_handshake_failure(&self) -> bool;
}
impl WaitHs for Sim {
    fn wait_for_handshake_failure(&self) -> bool {
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if self.handshake_failures() > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

#[test]
fn binary_prints_url_serves_and_exits_0_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("sim-bin-{}", std::process::id()));
    let ca = dir.join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cybersensei-sim"))
        .args([
            "--profile",
            "guide",
            "--tls",
            "--port",
            "0",
            "--quiet",
            "--ca-out",
        ])
        .arg(&ca)
        .args([
            "--license",
            &format!("{KEY}=valid"),
            "--license",
            "k=inactive",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let url = line.strip_prefix("URL https://127.0.0.1:").expect(&line);
    let port: u16 = url.parse().unwrap();
    let pem = std::fs::read_to_string(&ca).unwrap();
    // Reuse the TLS client against the child's port through a dummy Sim-less path.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let fetch = |target: &str| {
        let conn = rustls::ClientConnection::new(
            Arc::new(cfg.clone()),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        parse(
            &request_on(
                &mut tls,
                &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
                b"",
            )
            .unwrap(),
        )
    };
    assert_eq!(
        fetch(&format!("/api/license/validate?key={KEY_ENC}")).json()["tenantName"],
        "Acme Corporation"
    );
    assert_eq!(
        fetch("/api/license/validate?key=k").json()["message"],
        "Tenant inactif"
    );
    unsafe { libc_kill(child.id() as i32, 15) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
