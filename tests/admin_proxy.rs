//! The board's nginx snippet in a real nginx (Debian's, installed by
//! board/ci-setup.sh), in front of the real agent daemon and a fake node API, as on a
//! box: the snippet is the file `board/install.sh` puts in `/etc/nginx/snippets`,
//! included unchanged in a server block that also has the node dashboard's own
//! `location /api/` (agent/dashboard/nginx.conf). nginx runs as the test user in one
//! process (`master_process off`) on a free loopback port, from a temp dir; its access
//! log says, for every request, the URI it passed on and which upstream answered.
//!
//! The snippet's upstream is the board's `127.0.0.1:8091` (board/etc/agent.json), so
//! the daemon listens there: these tests take turns on it (a lock here; another
//! process's run of them is waited for).

use crate::admin_api::{free_port, wait_for, Daemon};
use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::Sim;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";
/// The board's admin API address, the snippet's upstream.
const BOARD_API: &str = "127.0.0.1:8091";

/// One test at a time on the board's port.
static BOARD_PORT: Mutex<()> = Mutex::new(());

/// An nginx of our own, stopped when the test ends.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx with `snippet` included in its server block, before the node
    /// dashboard's `location /api/` pointing at `node`.
    fn start(snippet: &Path, node: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("html")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(
            d.join("html/index.html"),
            "<!doctype html><title>dashboard</title>",
        )
        .unwrap();
        let port = free_port();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format route '$request_method $request_uri $uri $upstream_addr $status';
    access_log {d}/access.log route;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        include {snippet};
        # The node dashboard's own nginx.conf: the rest of /api/ to the node API.
        location /api/ {{
            proxy_pass http://{node}/api/;
            proxy_set_header Host $host;
        }}
        location / {{
            root {d}/html;
            try_files $uri /index.html;
        }}
    }}
}}
"#,
            d = d.display(),
            snippet = snippet.display(),
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut n = Nginx { child, dir, port };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = n.child.try_wait().unwrap().is_some();
            assert!(
                !exited && t.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log's lines: `METHOD REQUEST_URI URI_PASSED_ON UPSTREAM STATUS`.
    fn access(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `method path` through nginx, with `headers` (Host defaults to nginx's own
    /// address): (status, body as JSON or a string, the access-log line).
    fn ask(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value, String) {
        let before = self.access().len();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let b = body.unwrap_or("");
        if body.is_some() {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        req.push_str(b);
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        // Closed before waiting for the log: nginx may linger on the connection until
        // the client closes it, and logs the request only then.
        drop(s);
        let (status, v) = crate::admin_api::parse_answer(&out);
        // nginx logs a request once it has answered it, so its line may come a little
        // after the answer.
        let t = Instant::now();
        loop {
            if let Some(l) = self.access().get(before) {
                return (status, v, l.clone());
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "no access-log line for {method} {path} (answer {status} {v}); error log:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The node API's stand-in: `/api/user/me` answers a user, any other path a JSON
/// saying the node answered it; it keeps the paths it was asked.
fn fake_node() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).to_string();
            let target = req.split(' ').nth(1).unwrap_or("").to_string();
            s2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(target.clone());
            let b = if target == "/api/user/me" {
                json!({"id": 1, "name": "Admin", "email": "admin@box", "role": "ADMIN",
                    "department": "IT", "active": true, "createdAt": "2026-01-01T00:00:00Z",
                    "answeredBy": "node"})
            } else {
                json!({"answeredBy": "node", "path": target})
            }
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    (addr, seen)
}

/// The box's files as `board/install.sh` lays them out (with an `/etc/nginx/snippets`
/// already there, as on a box with nginx): its root.
fn board_install() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/nginx/snippets")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(repo.join("board/install.sh"))
        .env("DESTDIR", root.path())
        .env("AGENT_BIN", env!("CARGO_BIN_EXE_cybersensei-agent"))
        .env("INIT", "none")
        .env_remove("NGINX_SNIPPETS_DIR")
        .env_remove("TRAEFIK_DYNAMIC_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "install.sh: {}", text(&o));
    root
}

/// Waits (up to 2 min) until nobody listens on the board's port: another process
/// running these tests has it.
fn board_port_free() {
    let t = Instant::now();
    while TcpListener::bind(BOARD_API).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{BOARD_API} stays in use by another process"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The whole box: the agent (v1.0.0 installed, 2.0.0 on offer) with the board's
/// `admin_api`, the fake node, nginx with the installed snippet.
struct Box {
    sim: Sim,
    node: Node,
    update_id: String,
    seen: Arc<Mutex<Vec<String>>>,
    nginx: Nginx,
    _daemon: Daemon,
    _root: tempfile::TempDir,
}

/// `None` (after saying SKIPPED, or failing under CI) when nginx is not installed.
fn the_box(ctx: &str) -> Option<Box> {
    if !Path::new(NGINX).exists() {
        skip_or_fail(
            "admin_proxy",
            "nginx is not installed (board/ci-setup.sh installs Debian's)",
        );
        return None;
    }
    let root = board_install();
    let snippet = root
        .path()
        .join("etc/nginx/snippets/cybersensei-agent.conf");
    assert_eq!(
        std::fs::read(&snippet).unwrap(),
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("board/proxy/nginx-cybersensei-agent.conf")
        )
        .unwrap(),
        "the installed snippet is the board's file"
    );
    let board_cfg = read_json(&root.path().join("etc/cybersensei/agent.json")).unwrap();
    let api = board_cfg["admin_api"].clone();
    assert_eq!(api["listen"], BOARD_API, "board/etc/agent.json's admin API");

    let (node_addr, seen) = fake_node();
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, ctx);
    let update_id =
        sim.publish_update("2.0.0", zip(&app("2.0.0")), "- nouvel exercice de phishing");
    node.cfg["admin_api"] = api;
    node.cfg["admin_api"]["node_url"] = json!(format!("http://{node_addr}"));
    node.set("schedule", "splay", json!(false));
    board_port_free();
    let c = node
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(c);
    let addr: SocketAddr = BOARD_API.parse().unwrap();
    // The offer with this test's update id: the agent on the port is ours.
    wait_for("the agent's offer", Duration::from_secs(15), || {
        TcpStream::connect(addr).is_ok()
            && crate::admin_api::get(addr, "/api/update/check", None).1["pendingUpdates"][0]["id"]
                == update_id.as_str()
    });
    let nginx = Nginx::start(&snippet, node_addr);
    Some(Box {
        sim,
        node,
        update_id,
        seen,
        nginx,
        _daemon: daemon,
        _root: root,
    })
}

/// The access-log line's URI passed on and upstream: `(uri, "agent"|"node"|other)`.
fn route(line: &str, node: &str) -> (String, String) {
    let w: Vec<&str> = line.split(' ').collect();
    let who = match w.get(3).copied() {
        Some(BOARD_API) => "agent".to_string(),
        Some(a) if a == node => "node".to_string(),
        Some(a) => a.to_string(),
        None => String::new(),
    };
    (w.get(2).copied().unwrap_or("").to_string(), who)
}

fn node_addr(b: &Box) -> String {
    // The upstream of a line answered by the node: its address as nginx logs it.
    b.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let (_, v, line) = b.nginx.ask("GET", "/api/user/me", &[], None);
    assert_eq!(v["answeredBy"], "node", "{line}");
    line.split(' ').nth(3).unwrap().to_string()
}

#[test]
fn the_boards_nginx_snippet_sends_the_dashboards_paths_to_the_agent_and_the_rest_to_the_node() {
    let _turn = BOARD_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = the_box("nginx routes") else {
        return;
    };
    let node = node_addr(&b);
    let json_post = [("Content-Type", "application/json")];

    // (method, path as the browser asks, body, who answers, the path it gets)
    let agent: &[(&str, &str, Option<&str>, &str)] = &[
        ("GET", "/api/api/update/check", None, "/api/update/check"),
        (
            "GET",
            "/api/api/update/history",
            None,
            "/api/update/history",
        ),
        (
            "POST",
            "/api/api/update/apply",
            Some(r#"{"updateId":"not-on-offer"}"#),
            "/api/update/apply",
        ),
        ("GET", "/api/update/check", None, "/api/update/check"),
        ("GET", "/api/update/history", None, "/api/update/history"),
        ("GET", "/api/license/info", None, "/api/license/info"),
        ("GET", "/api/sync/status", None, "/api/sync/status"),
        (
            "POST",
            "/api/sync/telemetry/push",
            Some("{}"),
            "/api/sync/telemetry/push",
        ),
        ("GET", "/api/agent/status", None, "/api/agent/status"),
        ("GET", "/api/agent/progress", None, "/api/agent/progress"),
    ];
    for (m, p, body, want_uri) in agent {
        let h: &[(&str, &str)] = if body.is_some() { &json_post } else { &[] };
        let (s, v, line) = b.nginx.ask(m, p, h, *body);
        let (uri, who) = route(&line, &node);
        assert_eq!(
            (who.as_str(), uri.as_str()),
            ("agent", *want_uri),
            "{m} {p}: {line}"
        );
        assert!(v.get("answeredBy").is_none(), "{m} {p}: {v}");
        match *p {
            "/api/api/update/apply" => {
                assert_eq!((s, v["statusCode"].as_u64()), (409, Some(409)), "{v}")
            }
            _ => assert_eq!(s, 200, "{m} {p}: {v}"),
        }
    }
    // What the agent answered is the dashboard's contract, with the true values.
    let (_, c, _) = b.nginx.ask("GET", "/api/api/update/check", &[], None);
    assert_eq!(c["currentVersion"], "1.0.0");
    assert_eq!(c["latestVersion"], "2.0.0");
    assert_eq!(c["pendingUpdates"][0]["id"], b.update_id.as_str());
    let (_, h, _) = b.nginx.ask("GET", "/api/api/update/history", &[], None);
    assert!(h.is_array(), "{h}");
    let (_, l, _) = b.nginx.ask("GET", "/api/license/info", &[], None);
    assert!(
        l.get("tenantName").is_some() && l.get("daysLeft").is_some(),
        "{l}"
    );
    // The query string survives the rewrite: the forced check reaches the backend.
    let before = b.sim.count("/update/check");
    let (s, _, line) = b
        .nginx
        .ask("GET", "/api/api/update/check?force=true", &[], None);
    assert_eq!(s, 200);
    assert!(
        line.starts_with("GET /api/api/update/check?force=true /api/update/check "),
        "{line}"
    );
    assert_eq!(b.sim.count("/update/check"), before + 1, "the forced check");

    // Everything else under /api/ is the node's, with its own path.
    let node_paths = [
        "/api/user/me",
        "/api/users",
        "/api/health",
        "/api/updates/check",
        "/api/updatex/check",
        "/api/api/users",
        "/api/api/updates",
        "/api/license/infos",
        "/api/license/other",
        "/api/license",
        "/api/synchro/status",
        "/api/agents/1",
        "/api/telemetry",
    ];
    b.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    for p in node_paths {
        let (s, v, line) = b.nginx.ask("GET", p, &[], None);
        let (uri, who) = route(&line, &node);
        assert_eq!(
            (who.as_str(), uri.as_str(), s),
            ("node", p, 200),
            "GET {p}: {line}"
        );
        assert_eq!(v["answeredBy"], "node", "GET {p}: {v}");
    }
    // The agent's prefixes without their slash: nginx's own redirect to the prefix
    // (a `location` ending in `/` with proxy_pass), which the agent then answers. The
    // node serves none of these four paths (its controllers: /api/sync/..., no
    // /api/sync), so nothing of the node's is hidden.
    for p in ["/api/update", "/api/api/update", "/api/sync", "/api/agent"] {
        let (s, _, line) = b.nginx.ask("GET", p, &[], None);
        assert_eq!(s, 301, "GET {p}: {line}");
        assert!(line.ends_with(" - 301"), "GET {p}: {line}");
    }
    let seen = b.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen, node_paths, "what the node was asked");
    // And the dashboard's own files are nginx's.
    let (s, page, line) = b.nginx.ask("GET", "/updates", &[], None);
    assert_eq!(s, 200);
    assert!(
        page.as_str().is_some_and(|p| p.contains("dashboard")),
        "{page}"
    );
    assert!(line.ends_with(" - 200"), "{line}");
    let _ = &b.node;
}

#[test]
fn through_nginx_a_cross_site_post_is_refused_and_the_boxs_own_page_applies() {
    let _turn = BOARD_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = the_box("nginx origin") else {
        return;
    };
    let node = node_addr(&b);
    let apply = |host: &str, origin: Option<&str>, ct: &str, id: &str| {
        let mut h = vec![("Host", host), ("Content-Type", ct)];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        let body = json!({"updateId": id}).to_string();
        b.nginx
            .ask("POST", "/api/api/update/apply", &h, Some(&body))
    };
    let own = format!("127.0.0.1:{}", b.nginx.port);
    let id = b.update_id.as_str();
    let json_ct = "application/json";
    // Refused by the agent (so the upstream is the agent, and it answered 4xx).
    for (host, origin, ct, want) in [
        (own.as_str(), Some("http://evil.example"), json_ct, 403),
        (own.as_str(), Some("null"), json_ct, 403),
        // The agent's own address is not the page's: the browser is on nginx's.
        (own.as_str(), Some("http://127.0.0.1:8091"), json_ct, 403),
        // Another origin on the same box: the node API's port.
        (
            "cybersensei-box:3005",
            Some("http://cybersensei-box:8080"),
            json_ct,
            403,
        ),
        (
            "cybersensei-box:3005",
            Some("http://cybersensei-box"),
            json_ct,
            403,
        ),
        // A cross-site form can only send these.
        (own.as_str(), Some("http://evil.example"), "text/plain", 415),
        (own.as_str(), None, "application/x-www-form-urlencoded", 415),
    ] {
        let (s, v, line) = apply(host, origin, ct, id);
        let (uri, who) = route(&line, &node);
        assert_eq!(
            (who.as_str(), uri.as_str(), s, v["statusCode"].as_u64()),
            ("agent", "/api/update/apply", want, Some(want as u64)),
            "Host {host}, Origin {origin:?}, {ct}: {v}"
        );
    }
    assert_eq!(b.node.status()["version"], "1.0.0", "nothing was applied");
    // The box's real origins behind the proxy: the dashboard's port 3005 (compose's
    // AGENT_DASHBOARD_PORT), port 80 (no port in Host or Origin), TLS terminated in
    // front. An action the agent answers at once: the telemetry push.
    for (host, origin) in [
        ("cybersensei-box:3005", "http://cybersensei-box:3005"),
        ("cybersensei-box", "http://cybersensei-box"),
        ("192.168.1.20", "http://192.168.1.20"),
        ("cybersensei-box", "https://cybersensei-box"),
        ("[fd00::20]:3005", "http://[fd00::20]:3005"),
    ] {
        let h = [
            ("Host", host),
            ("Origin", origin),
            ("Content-Type", json_ct),
        ];
        let (s, v, line) = b
            .nginx
            .ask("POST", "/api/sync/telemetry/push", &h, Some("{}"));
        assert_eq!(route(&line, &node).1, "agent", "{line}");
        assert_eq!(s, 200, "Host {host}, Origin {origin}: {v}");
    }
    // The page's own origin (the browser on nginx's address): the update is applied,
    // and answered only after the commit.
    let origin = format!("http://{own}");
    let (s, v, line) = apply(&own, Some(&origin), json_ct, id);
    assert_eq!(route(&line, &node).1, "agent", "{line}");
    assert_eq!(s, 200, "{v}");
    assert_eq!(b.node.status()["version"], "2.0.0");
    let (_, h, _) = b.nginx.ask("GET", "/api/api/update/history", &[], None);
    let last = h
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        (last["version"].as_str(), last["status"].as_str()),
        (Some("2.0.0"), Some("success")),
        "{h}"
    );
}
