//! The admin API through the real binary (`run` with `admin_api.listen`): every
//! route's shape against NODE.md §1's field lists, the apply answered only after the
//! commit, node auth against a fake node, the bounds (slowloris, oversized header,
//! cross-site form, too many connections), and a kill -9 in the middle of an apply.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A daemon killed when the test ends, whatever happens.
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Turns the API on at a free port with `auth`; returns its address.
pub(crate) fn api_on(node: &mut Node, auth: &str, node_url: Option<&str>) -> SocketAddr {
    let port = free_port();
    let mut a = json!({"listen": format!("127.0.0.1:{port}"), "auth": auth});
    if let Some(u) = node_url {
        a["node_url"] = json!(u);
    }
    node.cfg["admin_api"] = a;
    node.set("schedule", "splay", json!(false));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `run` in the background, once its API answers.
pub(crate) fn start(node: &Node, addr: SocketAddr) -> Daemon {
    let c = node
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(c);
    wait_for("the API to answer", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok()
    });
    d
}

pub(crate) fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `raw` and reads the whole answer: (status, body as JSON or a string).
pub(crate) fn raw(addr: SocketAddr, raw: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_answer(&out)
}

/// (status, body); (0, null) when the connection closed without an answer.
pub(crate) fn parse_answer(out: &[u8]) -> (u16, Value) {
    if out.is_empty() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(out);
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.into()));
    (status, v)
}

pub(crate) fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, Value) {
    let a = auth
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{a}\r\n").as_bytes(),
    )
}

pub(crate) fn post(addr: SocketAddr, path: &str, body: &Value, auth: Option<&str>) -> (u16, Value) {
    let a = auth
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let b = body.to_string();
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json\r\n{a}Content-Length: {}\r\n\r\n{b}",
            b.len()
        )
        .as_bytes(),
    )
}

/// Every field of `fields` is in `v`, with the JSON type named.
fn shape(v: &Value, fields: &[(&str, &str)], what: &str) {
    for (f, ty) in fields {
        let x = v
            .get(f)
            .unwrap_or_else(|| panic!("{what}: no `{f}` in {v}"));
        let ok = match *ty {
            "string" => x.is_string(),
            "boolean" => x.is_boolean(),
            "number" => x.is_number(),
            "array" => x.is_array(),
            "date" => x.as_str().is_some_and(is_iso_with_zone),
            "date?" => x.is_null() || x.as_str().is_some_and(is_iso_with_zone),
            "string?" => x.is_null() || x.is_string(),
            "number?" => x.is_null() || x.is_number(),
            _ => unreachable!(),
        };
        assert!(ok, "{what}: `{f}` is not a {ty}: {x}");
    }
}

/// `2026-01-01T00:00:00.000Z`: what `new Date()` parses the same everywhere.
fn is_iso_with_zone(s: &str) -> bool {
    humantime::parse_rfc3339(s).is_ok() && s.ends_with('Z')
}

#[test]
fn every_route_has_the_dashboards_shape_and_apply_answers_after_the_commit() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, "admin");
    let id = sim.publish_update("2.0.0", zip(&app("2.0.0")), "- nouveautés");
    let addr = api_on(&mut node, "none", None);
    let _d = start(&node, addr);
    wait_for("the first check", Duration::from_secs(15), || {
        get(addr, "/api/update/check", None).1["updateAvailable"] == true
    });

    let (s, c) = get(addr, "/api/update/check", None);
    assert_eq!(s, 200);
    shape(
        &c,
        &[
            ("currentVersion", "string"),
            ("latestVersion", "string"),
            ("updateAvailable", "boolean"),
            ("lastCheckDate", "date"),
            ("contentVersion", "string"),
            ("pendingUpdates", "array"),
        ],
        "UpdateInfo",
    );
    assert_eq!(
        (c["currentVersion"].as_str(), c["latestVersion"].as_str()),
        (Some("1.0.0"), Some("2.0.0"))
    );
    let p = &c["pendingUpdates"][0];
    shape(
        p,
        &[
            ("id", "string"),
            ("version", "string"),
            ("type", "string"),
            ("description", "string"),
            ("size", "string"),
            ("releaseDate", "date"),
        ],
        "PendingUpdate",
    );
    assert_eq!(p["id"], id.as_str());
    // The changelog as the backend gave it (the central profile's comes from its own
    // release record).
    assert_eq!(p["description"], node.status()["update"]["changelog"]);
    assert!(!p["description"].as_str().unwrap().is_empty());
    assert!(["content", "exercises", "phishing", "system"].contains(&p["type"].as_str().unwrap()));
    // The dashboard's doubled prefix is answered too.
    assert_eq!(
        get(addr, "/api/api/update/check", None).1["pendingUpdates"][0]["id"],
        id.as_str()
    );

    let (s, l) = get(addr, "/api/license/info", None);
    assert_eq!(s, 200);
    shape(
        &l,
        &[
            ("tenantId", "string"),
            ("expiresAt", "date?"),
            ("maxUsers", "number?"),
            ("features", "array"),
            ("tenantName", "string?"),
            ("state", "string"),
            ("daysLeft", "number?"),
            ("message", "string?"),
            ("contact", "string"),
        ],
        "LicenseInfo",
    );
    assert!(l.get("type").is_some(), "{l}");
    assert_eq!(l["state"], "valid");

    let (s, y) = get(addr, "/api/sync/status", None);
    assert_eq!(s, 200);
    shape(
        &y,
        &[
            ("enabled", "boolean"),
            ("lastUpdateCheck", "date?"),
            ("lastTelemetryPush", "date?"),
            ("currentVersion", "string"),
            ("updateAvailable", "boolean"),
        ],
        "UpdateStatus",
    );
    assert_eq!(y["latestVersion"], "2.0.0");

    let (s, a) = get(addr, "/api/agent/status", None);
    assert_eq!(s, 200);
    assert_eq!(a["adminApi"], format!("{addr} (auth none)"));
    assert_eq!(a["version"], "1.0.0");
    let (s, g) = get(addr, "/api/agent/progress", None);
    assert_eq!(s, 200);
    shape(
        &g,
        &[
            ("phase", "string"),
            ("bytes", "number"),
            ("total", "number?"),
            ("percent", "number?"),
            ("etaSeconds", "number?"),
        ],
        "progress",
    );

    // Only the update on offer.
    let (s, e) = post(
        addr,
        "/api/update/apply",
        &json!({"updateId": "other"}),
        None,
    );
    assert_eq!(s, 409, "{e}");
    shape(
        &e,
        &[("statusCode", "number"), ("message", "string")],
        "error",
    );
    assert_eq!(e["statusCode"], 409);

    let (s, r) = post(addr, "/api/update/apply", &json!({"updateId": id}), None);
    assert_eq!(s, 200, "{r}");
    // A 2xx only once the new version is committed.
    assert_eq!(node.status()["version"], "2.0.0");
    assert!(!node.state_dir.join("update/journal.json").exists());
    assert_eq!(r["version"], "2.0.0");

    let (s, h) = get(addr, "/api/update/history", None);
    assert_eq!(s, 200);
    let h0 = &h[0];
    shape(
        h0,
        &[
            ("id", "string"),
            ("version", "string"),
            ("appliedAt", "date"),
            ("status", "string"),
            ("details", "string"),
        ],
        "UpdateHistory",
    );
    assert_eq!(
        (h0["version"].as_str(), h0["status"].as_str()),
        (Some("2.0.0"), Some("success")),
        "{h}"
    );
    assert!(
        h.as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] != "started"),
        "{h}"
    );
    let (_, g) = get(addr, "/api/agent/progress", None);
    assert_eq!(g["phase"], "commit", "{g}");
    let (_, c) = get(addr, "/api/update/check", None);
    assert_eq!(
        (c["updateAvailable"].as_bool(), c["currentVersion"].as_str()),
        (Some(false), Some("2.0.0"))
    );

    // `status` shows the history and the API's mode.
    let o = node.run(&["status"]);
    let t = text(&o);
    assert!(
        t.contains("History:") && t.contains("commit") && t.contains("2.0.0"),
        "{t}"
    );
    assert!(t.contains(&format!("Admin API: {addr} (auth none)")), "{t}");
}

#[test]
fn forced_checks_at_most_once_a_minute_and_unknown_routes() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    let addr = api_on(&mut node, "none", None);
    let _d = start(&node, addr);
    wait_for("the first check", Duration::from_secs(15), || {
        sim.count("/update/check") >= 1
    });
    let before = sim.count("/update/check");
    let (s, c) = get(addr, "/api/update/check?force=true", None);
    assert_eq!(s, 200, "{c}");
    assert_eq!(sim.count("/update/check"), before + 1);
    let (s, c2) = get(addr, "/api/update/check?force=true", None);
    assert_eq!(s, 200);
    assert_eq!(
        sim.count("/update/check"),
        before + 1,
        "a second forced check within a minute"
    );
    assert_eq!(c2["lastCheckDate"], c["lastCheckDate"]);
    let (s, _) = post(addr, "/api/sync/update/check", &json!({}), None);
    assert_eq!((s, sim.count("/update/check")), (200, before + 1));
    let (s, e) = get(addr, "/api/nope", None);
    assert_eq!((s, e["statusCode"].as_u64()), (404, Some(404)));
    let (s, _) = get(addr, "/api/update/apply", None);
    assert_eq!(s, 405);
    let (s, p) = post(addr, "/api/sync/telemetry/push", &json!({}), None);
    assert_eq!(s, 200, "{p}");
    shape(&p, &[("lastTelemetryPush", "date")], "push");
}

/// A fake node: `GET /api/user/me` answers by token, counting the asks.
fn fake_node() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let asks = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (a, dn) = (asks.clone(), down.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            if dn.load(Ordering::SeqCst) {
                continue; // dropped: the node is down
            }
            a.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let role = if !req.starts_with("GET /api/user/me ") {
                None
            } else if req.contains("Authorization: Bearer admin-token") {
                Some("ADMIN")
            } else if req.contains("Authorization: Bearer manager-token") {
                Some("MANAGER")
            } else {
                None
            };
            let answer = match role {
                Some(r) => {
                    let b = json!({"id": 1, "name": "x", "email": "x@y", "role": r,
                        "department": "IT", "active": true, "createdAt": "2026-01-01T00:00:00Z"})
                    .to_string();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                }
                None => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into(),
            };
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (url, asks, down)
}

#[test]
fn node_auth_admin_acts_manager_reads_401_and_node_down() {
    use std::sync::atomic::Ordering;
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    let (url, asks, down) = fake_node();
    let addr = api_on(&mut node, "node", Some(&url));
    let _d = start(&node, addr);
    let (s, e) = get(addr, "/api/update/check", None);
    assert_eq!((s, e["statusCode"].as_u64()), (401, Some(401)), "{e}");
    let (s, _) = get(addr, "/api/update/check", Some("Bearer wrong"));
    assert_eq!(s, 401);
    let (s, _) = get(addr, "/api/update/history", Some("Bearer manager-token"));
    assert_eq!(s, 200);
    let (s, e) = post(
        addr,
        "/api/sync/telemetry/push",
        &json!({}),
        Some("Bearer manager-token"),
    );
    assert_eq!(s, 403, "{e}");
    let (s, _) = get(
        addr,
        "/api/update/check?force=true",
        Some("Bearer manager-token"),
    );
    assert_eq!(s, 403);
    let (s, e) = post(
        addr,
        "/api/update/apply",
        &json!({"updateId": "x"}),
        Some("Bearer manager-token"),
    );
    assert_eq!(s, 403, "{e}");
    let (s, p) = post(
        addr,
        "/api/sync/telemetry/push",
        &json!({}),
        Some("Bearer admin-token"),
    );
    assert_eq!(s, 200, "{p}");
    // The page itself holds no data: served without a session.
    assert_eq!(get(addr, "/", None).0, 200);
    // Positive answers are cached (the manager's and admin's above).
    let n = asks.load(Ordering::SeqCst);
    assert_eq!(
        get(addr, "/api/agent/status", Some("Bearer admin-token")).0,
        200
    );
    assert_eq!(
        asks.load(Ordering::SeqCst),
        n,
        "asked the node again within 60 s"
    );
    // Node down: a token not cached cannot be checked (503), a cached one still reads.
    down.store(true, Ordering::SeqCst);
    let (s, e) = get(addr, "/api/update/check", Some("Bearer other"));
    assert_eq!(s, 503, "{e}");
    assert_eq!(
        get(addr, "/api/update/check", Some("Bearer manager-token")).0,
        200
    );
}

#[test]
fn node_auth_with_the_node_not_listening_is_503() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    let url = format!("http://127.0.0.1:{}", free_port());
    let addr = api_on(&mut node, "node", Some(&url));
    let _d = start(&node, addr);
    let (s, e) = get(addr, "/api/update/check", Some("Bearer admin-token"));
    assert_eq!((s, e["statusCode"].as_u64()), (503, Some(503)), "{e}");
}

#[test]
fn none_is_refused_off_loopback() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    node.set("admin_api", "listen", json!("0.0.0.0:8091"));
    node.set("admin_api", "auth", json!("none"));
    let o = node.run(&["config", "check"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("admin_api.auth"), "{}", text(&o));
}

#[test]
fn slowloris_oversized_header_cross_site_form_and_too_many_connections() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    let addr = api_on(&mut node, "none", None);
    let _d = start(&node, addr);

    // A client sending one byte a second holds nothing up, and is cut at 5 s.
    let t = Instant::now();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for b in b"GET /api/agent/status HTTP/1.1\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    });
    std::thread::sleep(Duration::from_millis(300));
    let q = Instant::now();
    assert_eq!(get(addr, "/api/agent/progress", None).0, 200);
    assert!(
        q.elapsed() < Duration::from_millis(500),
        "held up: {:?}",
        q.elapsed()
    );
    let out = slow.join().unwrap();
    let took = t.elapsed();
    assert_eq!(parse_answer(&out).0, 408);
    assert!(took < Duration::from_secs(8), "{took:?}");

    // 8 KiB of headers at most.
    let big = format!(
        "GET /api/agent/status HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(raw(addr, big.as_bytes()).0, 431);
    // 4 KiB of body at most.
    let b = "x".repeat(5000);
    let r = format!("POST /api/update/apply HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
    assert_eq!(raw(addr, r.as_bytes()).0, 413);

    // What a cross-site form can send: a form encoding, or JSON-ish text/plain;
    // and JSON from another origin.
    let form = "updateId=x";
    let r = format!("POST /api/update/apply HTTP/1.1\r\nOrigin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}", form.len());
    let (s, e) = raw(addr, r.as_bytes());
    assert_eq!(s, 415, "{e}");
    let body = r#"{"updateId":"x"}"#;
    let r = format!("POST /api/update/apply HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (s, e) = raw(addr, r.as_bytes());
    assert_eq!(s, 403, "{e}");
    let r = format!("POST /api/sync/telemetry/push HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}");
    assert_eq!(raw(addr, r.as_bytes()).0, 415);

    // A few connections at once (8: a browser opens up to 6 ahead of its requests);
    // the next one gets 503 at once.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (s, e) = get(addr, "/api/agent/status", None);
    assert_eq!(s, 503, "{e}");
    drop(idle);
    wait_for("the idle connections to go", Duration::from_secs(3), || {
        get(addr, "/api/agent/progress", None).0 == 200
    });
}

#[test]
fn with_auth_none_a_rebinding_page_of_another_name_is_refused() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    let addr = api_on(&mut node, "none", None);
    node.set("admin_api", "hosts", json!(["box.acme.lan"]));
    let _d = start(&node, addr);
    let port = addr.port();
    let get_as = |host: &str| {
        raw(
            addr,
            format!("GET /api/license/info HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
    };
    // evil.example re-pointed at the box: same-origin for the browser, so the
    // Origin check alone lets its JSON POST through; its name gives it away.
    let (s, e) = get_as(&format!("evil.example:{port}"));
    assert_eq!(s, 403, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("admin_api.hosts"),
        "{e}"
    );
    let body = r#"{"updateId":"x"}"#;
    let r = format!("POST /api/update/apply HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (s, e) = raw(addr, r.as_bytes());
    assert_eq!(s, 403, "{e}");
    // The names the box is known by: an address, localhost, a configured name.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("Box.Acme.Lan:{port}"),
        "192.168.1.50".to_string(),
    ] {
        let (s, e) = get_as(&host);
        assert_eq!(s, 200, "{host}: {e}");
    }
}

#[test]
fn kill_9_mid_apply_then_history_and_api_tell_the_truth() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, "kill");
    let id = sim.publish_update("2.0.0", zip(&app("2.0.0")), "- deux");
    let addr = api_on(&mut node, "none", None);
    // The daemon SIGKILLs itself once the new slot is switched to, before its health
    // check and commit (the debug build's crash hook).
    let c = node
        .command(&["run"])
        .env("CYBERSENSEI_TEST_CRASH_AT", "journal:switched")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon(c);
    wait_for("the API", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_ok()
    });
    wait_for("the offer", Duration::from_secs(15), || {
        get(addr, "/api/update/check", None).1["updateAvailable"] == true
    });
    // The apply never answers 2xx: the process dies before the commit.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let b = json!({"updateId": id}).to_string();
    write!(s, "POST /api/update/apply HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.is_empty() || !String::from_utf8_lossy(&out).starts_with("HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let st = d.0.wait().unwrap();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&st) == Some(9),
        "{st:?}"
    );
    // Before any restart the history says an install started, nothing more.
    let h: Value =
        serde_json::from_slice(&std::fs::read(node.state_dir.join("update-history.json")).unwrap())
            .unwrap();
    let last = h.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["event"].as_str(), last["version"].as_str()),
        (Some("install"), Some("2.0.0")),
        "{h}"
    );
    // The restart's recovery health-checks and commits; history and API agree with
    // the slots.
    drop(d);
    let _d = start(&node, addr);
    // The listener answers from the start; recovery runs right after.
    wait_for("the recovery's commit", Duration::from_secs(15), || {
        get(addr, "/api/update/history", None).1[0]["version"] == "2.0.0"
            && !node.state_dir.join("update/journal.json").exists()
    });
    let (_, h) = get(addr, "/api/update/history", None);
    assert_eq!(
        (h[0]["version"].as_str(), h[0]["status"].as_str()),
        (Some("2.0.0"), Some("success")),
        "{h}"
    );
    let v = assert_complete(&node, &[("2.0.0", &app("2.0.0"))], "after kill");
    assert_eq!(v, "2.0.0");
    assert_eq!(
        get(addr, "/api/update/check", None).1["currentVersion"],
        "2.0.0"
    );
}

#[test]
fn apply_of_a_package_downloaded_and_waiting_for_an_operator() {
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, "deferred");
    let id = sim.publish_update("2.0.0", zip(&app("2.0.0")), "- attend");
    node.set("updates", "auto_download", json!(true));
    let addr = api_on(&mut node, "none", None);
    let _d = start(&node, addr);
    // Downloaded and verified by the daemon, then waiting: auto_install is off.
    wait_for("the package to wait", Duration::from_secs(15), || {
        get(addr, "/api/update/check", None).1["deferred"].is_string()
    });
    let (_, g) = get(addr, "/api/agent/progress", None);
    assert_eq!(g["active"], false, "{g}");
    let (s, r) = post(addr, "/api/update/apply", &json!({"updateId": id}), None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(node.status()["version"], "2.0.0");
}
