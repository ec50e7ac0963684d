//! The central profile against the real backend's code (platform/api; file:line in
//! docs/protocol.md), through a minimal raw HTTP client and a manual clock.

use cybersensei_sim::{
    version_json, LicenseOutcome, ManualClock, Profile, Sim, SimClock, SimOptions,
    DEFAULT_TENANT_ID,
};
use serde_json::{json, Value};
use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

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
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    fn message(&self) -> Value {
        self.json()["message"].clone()
    }
}

fn send(sim: &Sim, method: &str, target: &str, extra: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    Resp {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head,
        body: raw[end + 4..].to_vec(),
    }
}

fn get(sim: &Sim, target: &str) -> Resp {
    send(sim, "GET", target, "", b"")
}

fn post_json(sim: &Sim, v: &Value) -> Resp {
    send(
        sim,
        "POST",
        "/telemetry",
        "Content-Type: application/json\r\n",
        v.to_string().as_bytes(),
    )
}

/// A central simulator on a manual clock starting 2026-01-01.
fn central() -> (Sim, ManualClock) {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    let sim = Sim::start(SimOptions {
        profile: Profile::Central,
        clock: SimClock::Manual(clock.clone()),
        ..Default::default()
    })
    .unwrap();
    (sim, clock)
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn package(version: &str, required: &str) -> Vec<u8> {
    zip(&[
        (
            "version.json",
            version_json(version, "- Correctifs", required).as_bytes(),
        ),
        ("app/data", version.as_bytes()),
    ])
}

fn valid(usage: u64, max: u64, expires: &str) -> LicenseOutcome {
    LicenseOutcome::Valid {
        tenant_id: DEFAULT_TENANT_ID.into(),
        tenant_name: "Acme".into(),
        expires_at: expires.into(),
        usage_count: usage,
        max_usage_count: max,
    }
}

const T: &str = DEFAULT_TENANT_ID;

#[test]
fn validation_counts_usage_and_refuses_at_the_max() {
    let (sim, clock) = central();
    sim.set_license("K+1", valid(8, 10, "2026-06-01T00:00:00.000Z"));
    for want in [9, 10] {
        let r = get(&sim, "/api/license/validate?key=K%2B1");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["usageCount"], want);
        assert_eq!(r.json()["maxUsageCount"], 10);
    }
    let r = get(&sim, "/api/license/validate?key=K%2B1");
    assert_eq!(
        (r.status, r.message()),
        (400, json!("Limite d'utilisation atteinte"))
    );
    assert_eq!(sim.license_usage("K+1"), Some((10, 10)));
    assert_eq!(sim.counters().validations, 2);
    // Express decodes `+` as a space: an unencoded `+` is another key.
    assert_eq!(get(&sim, "/api/license/validate?key=K+1").status, 404);

    // Expiry is checked before the usage limit, and saved: the license is EXPIRED.
    clock.advance(Duration::from_secs(200 * 86_400));
    let r = get(&sim, "/api/license/validate?key=K%2B1");
    assert_eq!((r.status, r.message()), (400, json!("Licence expirée")));
    assert_eq!(sim.license_usage("K+1"), None);
    let r = get(&sim, &format!("/update/check?tenantId={T}&version=1.0.0"));
    assert_eq!(
        (r.status, r.message()),
        (400, json!("Aucune licence active trouvée pour ce tenant"))
    );

    sim.set_license("R", LicenseOutcome::Revoked);
    let r = get(&sim, "/api/license/validate?key=R");
    assert_eq!((r.status, r.message()), (400, json!("Licence révoquée")));
    assert_eq!(r.json()["error"], "Bad Request");
    assert_eq!(r.json()["statusCode"], 400);

    sim.set_license("U", valid(0, 0, ""));
    sim.set_tenant_active(T, false);
    let r = get(&sim, "/api/license/validate?key=U");
    assert_eq!((r.status, r.message()), (400, json!("Tenant inactif")));
    sim.set_tenant_active(T, true);
    let r = get(&sim, "/api/license/validate?key=U");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["maxUsageCount"], Value::Null);
    assert_eq!(r.json()["expiresAt"], Value::Null);
}

#[test]
fn update_check_answers_like_the_service() {
    let (sim, clock) = central();
    sim.valid_license("K");
    let check = |v: &str| get(&sim, &format!("/update/check?tenantId={T}&version={v}"));

    let r = check("1.0.0");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"available": false, "message": "Aucune mise à jour disponible",
               "currentVersion": "1.0.0"})
    );

    let pkg = package("1.2.0", "1.0.0");
    let id = sim.publish_update("1.2.0", pkg.clone(), "ignored: version.json says");
    let r = check("1.0.0");
    let b = r.json();
    assert_eq!(b["available"], true);
    assert_eq!(b["updateId"], id);
    assert_eq!(b["latestVersion"], "1.2.0");
    assert_eq!(b["changelog"], "- Correctifs");
    assert_eq!(b["fileSize"], json!(pkg.len().to_string()));
    let sum = b["checksum"].as_str().unwrap();
    assert!(sum.starts_with("sha256:") && sum.len() == 7 + 64, "{sum}");
    assert_eq!(b["requiredNodeVersion"], "1.0.0");
    assert_eq!(b["breaking"], false);
    assert_eq!(b["securityUpdate"], false);
    assert_eq!(b["createdAt"], "2026-01-01T00:00:00.000Z");
    assert!(b.get("updateAvailable").is_none());
    assert_eq!(r.header("X-RateLimit-Limit").as_deref(), Some("60"));
    // Express' routing is not strict about one trailing slash.
    let r = get(&sim, &format!("/update/check/?tenantId={T}&version=1.0.0"));
    assert_eq!(r.json()["available"], true);

    // Newer or equal: up to date (a pre-release tag is ignored).
    for v in ["1.2.0", "1.3.0", "1.2.0-rc1"] {
        let b = check(v).json();
        assert_eq!(b["available"], false, "{v}");
        assert_eq!(b["message"], "Le node est à jour");
    }
    // Older than requiredNodeVersion: not available, with the reason.
    let b = check("0.0.0").json();
    assert_eq!(b["available"], false);
    assert_eq!(b["requiredNodeVersion"], "1.0.0");
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("nécessite une version du node >= 1.0.0"));

    // Errors, in the service's order.
    for q in ["", "?tenantId=", &format!("?tenantId={T}")] {
        let r = get(&sim, &format!("/update/check{q}"));
        assert_eq!(
            (r.status, r.message()),
            (400, json!("tenantId et version sont requis"))
        );
    }
    let r = get(&sim, "/update/check?tenantId=tenant-1&version=1.0.0");
    assert_eq!(
        (r.status, r.json()),
        (
            500,
            json!({"statusCode": 500, "message": "Internal server error"})
        )
    );
    let other = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let r = get(
        &sim,
        &format!("/update/check?tenantId={other}&version=1.0.0"),
    );
    assert_eq!((r.status, r.message()), (404, json!("Tenant non trouvé")));
    sim.add_tenant(other);
    let r = get(
        &sim,
        &format!("/update/check?tenantId={other}&version=1.0.0"),
    );
    assert_eq!(
        (r.status, r.message()),
        (400, json!("Aucune licence active trouvée pour ce tenant"))
    );
    sim.set_tenant_active(T, false);
    assert_eq!(check("1.0.0").message(), json!("Tenant inactif"));
    sim.set_tenant_active(T, true);
    clock.advance(Duration::from_secs(100 * 365 * 86_400));
    assert_eq!(check("1.0.0").message(), json!("Licence expirée"));
}

#[test]
fn download_is_whole_without_range_and_refuses_inactive_updates() {
    let (sim, _) = central();
    sim.valid_license("K");
    let pkg = package("2.0.0", "0.0.1");
    let id = sim.publish_update("2.0.0", pkg.clone(), "");
    let r = send(
        &sim,
        "GET",
        &format!("/update/download/{id}"),
        "Range: bytes=10-\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pkg);
    assert_eq!(r.header("Accept-Ranges"), None);
    assert_eq!(r.header("Content-Range"), None);
    assert_eq!(r.header("Content-Type").as_deref(), Some("application/zip"));
    assert_eq!(r.header("Content-Length"), Some(pkg.len().to_string()));
    assert_eq!(
        r.header("Content-Disposition").as_deref(),
        Some("attachment; filename=\"cybersensei-update-2.0.0.zip\"")
    );
    assert_eq!(r.header("X-Update-Version").as_deref(), Some("2.0.0"));
    let sum = r.header("X-Checksum").unwrap();
    assert_eq!(
        json!(sum),
        get(&sim, &format!("/update/check?tenantId={T}&version=1.0.0")).json()["checksum"]
    );
    assert_eq!(r.header("X-Checksum-SHA256"), None);

    sim.set_update_active(&id, false);
    let r = get(&sim, &format!("/update/download/{id}"));
    assert_eq!(
        (r.status, r.message()),
        (400, json!("Cette mise à jour n'est plus active"))
    );
    let b = get(&sim, &format!("/update/check?tenantId={T}&version=1.0.0")).json();
    assert_eq!(b["message"], "Aucune mise à jour disponible");
    let r = get(
        &sim,
        "/update/download/7c9e6679-7425-40de-944b-e07fc1f90ae7",
    );
    assert_eq!(
        (r.status, r.message()),
        (404, json!("Mise à jour non trouvée"))
    );
    assert_eq!(get(&sim, "/update/download/not-a-uuid").status, 500);
    let r = get(&sim, "/update/nothing");
    assert_eq!(
        (r.status, r.message()),
        (404, json!("Cannot GET /update/nothing"))
    );
}

#[test]
fn uploads_without_a_valid_version_json_are_refused() {
    let (sim, _) = central();
    let e = sim
        .try_publish_update("1.0.0", zip(&[("app/x", b"x")]), "")
        .unwrap_err();
    assert_eq!(
        e,
        "Le fichier ZIP doit contenir un fichier version.json à la racine"
    );
    let bad = zip(&[(
        "version.json",
        br#"{"version": "1.0", "changelog": "x", "requiredNodeVersion": "1.0.0"}"#,
    )]);
    let e = sim.try_publish_update("1.0", bad, "").unwrap_err();
    assert!(e.starts_with("Format de version invalide"), "{e}");
    let e = sim
        .try_publish_update("1.0.0", package("1.0.1", "1.0.0"), "")
        .unwrap_err();
    assert!(e.contains("1.0.1"), "{e}");
}

#[test]
fn telemetry_goes_through_the_validation_pipe() {
    let (sim, clock) = central();
    sim.valid_license("K");
    let ok = json!({"tenantId": T, "uptime": 86400, "activeUsers": 3,
                    "exercisesCompletedToday": 4, "aiLatency": 12.5, "version": "1.2.0",
                    "additionalData": {"cpuUsage": 1.5, "collectedAt": "2025-01-01T00:00:00Z"}});
    clock.advance(Duration::from_millis(1234));
    let r = post_json(&sim, &ok);
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json(),
        json!({"success": true, "message": "Télémétrie enregistrée avec succès",
               "timestamp": "2026-01-01T00:00:01.234Z", "tenantId": T})
    );
    assert_eq!(sim.telemetry(), vec![ok.clone()]);
    assert_eq!(
        sim.telemetry_received_at(),
        vec!["2026-01-01T00:00:01.234Z".to_string()]
    );

    let mut bad = ok.clone();
    bad["collectedAt"] = json!("2025-01-01T00:00:00Z");
    bad["tenantId"] = json!("550e8400e29b41d4a716446655440000");
    bad["uptime"] = json!(-1);
    bad["activeUsers"] = json!("3");
    let r = post_json(&sim, &bad);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        json!([
            "property collectedAt should not exist",
            "tenantId must be a UUID",
            "uptime must not be less than 0",
            "activeUsers must not be less than 0",
            "activeUsers must be an integer number"
        ])
    );
    assert_eq!(r.json()["error"], "Bad Request");
    // Not JSON: body-parser leaves {} and every required field is reported.
    let r = send(
        &sim,
        "POST",
        "/telemetry",
        "Content-Type: text/plain\r\n",
        b"x",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.message().as_array().unwrap().len(), 8);
    let r = send(
        &sim,
        "POST",
        "/telemetry",
        "Content-Type: application/json\r\n",
        b"[1]",
    );
    assert_eq!(
        r.message(),
        json!(["an unknown value was passed to the validate function"])
    );
    let mut big = ok.clone();
    big["additionalData"]["pad"] = json!("x".repeat(100 * 1024));
    assert_eq!(post_json(&sim, &big).status, 413);
    let mut unknown = ok.clone();
    unknown["tenantId"] = json!("7c9e6679-7425-40de-944b-e07fc1f90ae7");
    let r = post_json(&sim, &unknown);
    assert_eq!((r.status, r.message()), (404, json!("Tenant non trouvé")));
    assert_eq!(sim.telemetry().len(), 1);
}

#[test]
fn throttler_sixty_per_minute_per_route_and_address() {
    let (sim, clock) = central();
    sim.valid_license("K");
    let check = format!("/update/check?tenantId={T}&version=1.0.0");
    for i in 0..60 {
        let r = get(&sim, &check);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.header("X-RateLimit-Remaining"),
            Some((59 - i).to_string())
        );
    }
    clock.advance(Duration::from_secs(20));
    let r = get(&sim, &check);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("Retry-After").as_deref(), Some("60"));
    assert_eq!(r.header("X-RateLimit-Limit"), None);
    assert_eq!(
        r.json(),
        json!({"statusCode": 429, "message": "ThrottlerException: Too Many Requests"})
    );
    // Another route has its own budget.
    assert_eq!(get(&sim, "/api/license/validate?key=K").status, 200);
    clock.advance(Duration::from_secs(45));
    let r = get(&sim, &check);
    assert_eq!(r.header("Retry-After").as_deref(), Some("15"));
    clock.advance(Duration::from_secs(15));
    let r = get(&sim, &check);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining").as_deref(), Some("59"));

    let c = sim.counters();
    assert_eq!(c.requests["/update/check"], 63);
    assert_eq!(c.requests["/api/license/validate"], 1);
    assert_eq!(c.throttled["/update/check"], 2);
    assert_eq!(c.throttled_total(), 2);
    assert_eq!(c.validations, 1);

    sim.set_rate_limit(1, Duration::from_secs(10));
    assert_eq!(get(&sim, &check).status, 200);
    assert_eq!(get(&sim, &check).status, 429);
}

#[test]
fn binary_serves_the_central_profile() {
    let dir = tempfile_dir();
    let pkg = dir.join("u.zip");
    std::fs::write(&pkg, package("1.1.0", "1.0.0")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cybersensei-sim"))
        .args([
            "--profile",
            "central",
            "--quiet",
            "--license-key",
            "K",
            "--update",
        ])
        .arg(format!("1.1.0={}", pkg.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let url = String::from_utf8(line).unwrap();
    let addr = url.strip_prefix("URL http://").unwrap().to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /update/check?tenantId={T}&version=1.0.0 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(resp.contains("\"available\":true"), "{resp}");
    assert!(resp.contains("\"latestVersion\":\"1.1.0\""), "{resp}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sim-central-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
