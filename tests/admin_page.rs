//! The status page at `/` in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by board/ci-setup.sh): what it shows of a real box,
//! the apply button driven through WebDriver, and a screenshot written by the test.

use crate::admin_api::{api_on, get, start, wait_for};
use crate::harness::package::*;
use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// The flags of a headless run in a container (no sandbox: the tests may run as root).
const FLAGS: [&str; 4] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1000,1600",
];

/// The DOM once the page's scripts have run.
fn dump_dom(url: &str) -> String {
    let o = Command::new(CHROMIUM)
        .args(FLAGS)
        .args(["--virtual-time-budget=8000", "--dump-dom", url])
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes a PNG of the page to `out`.
fn screenshot(url: &str, out: &Path) {
    let o = Command::new(CHROMIUM)
        .args(FLAGS)
        .arg("--virtual-time-budget=8000")
        .arg(format!("--screenshot={}", out.display()))
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium --screenshot failed");
    let png = std::fs::read(out).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// One WebDriver command to chromedriver; its `value`.
fn wd(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, len) = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "chromedriver closed without an answer");
        out.extend_from_slice(&buf[..n]);
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while out.len() < head_end + len {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "chromedriver closed mid-answer");
        out.extend_from_slice(&buf[..n]);
    }
    let v: Value = serde_json::from_slice(&out[head_end..head_end + len]).unwrap_or(Value::Null);
    v["value"].clone()
}

/// A WebDriver session, closed (its browser ended) whatever happens.
struct Session {
    port: u16,
    id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        wd(self.port, "DELETE", &format!("/session/{}", self.id), None);
    }
}

/// Where the screenshot goes: next to the test binary's target directory.
fn shot_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().join(name)
}

#[test]
fn the_page_in_headless_chromium_shows_the_box_and_applies_the_update() {
    if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
        skip_or_fail(
            "admin_page",
            "chromium and chromium-driver are not installed (board/ci-setup.sh)",
        );
        return;
    }
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, "page");
    let id = sim.publish_update("2.0.0", zip(&app("2.0.0")), "- nouvel exercice de phishing");
    let addr: SocketAddr = api_on(&mut node, "none", None);
    let _d = start(&node, addr);
    wait_for("the offer", Duration::from_secs(15), || {
        get(addr, "/api/update/check", None).1["updateAvailable"] == true
    });
    let url = format!("http://{addr}/");
    let (s, page) = get(addr, "/", None);
    assert_eq!(s, 200);
    let page = page.as_str().unwrap().to_string();
    assert!(page.len() <= 12 * 1024, "page is {} bytes", page.len());
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "external asset"
    );

    let dom = dump_dom(&url);
    for want in [
        "Licence",
        "valide",
        "Version 2.0.0 proposée",
        "Appliquer la mise à jour",
        "Historique",
        "En file d'attente",
        "Signatures des mises à jour désactivées",
        // Where each telemetry field came from (issue 25 item 4).
        "memoryUsage : measured",
    ] {
        assert!(dom.contains(want), "page lacks {want:?}:\n{dom}");
    }
    assert!(dom.contains("1.0.0"), "{dom}");
    // The changelog as the backend gave it.
    let changelog = node.status()["update"]["changelog"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        dom.contains(&changelog),
        "page lacks the changelog {changelog:?}:\n{dom}"
    );
    screenshot(&url, &shot_path("admin-page-offer.png"));

    // The apply button, clicked in the browser: confirm, then the answer after commit.
    let port = crate::admin_api::free_port();
    let mut driver = Command::new(DRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        wait_for("chromedriver", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions":
            {"binary": CHROMIUM, "args": FLAGS}}}});
        let session = wd(port, "POST", "/session", Some(caps));
        let sid = session["sessionId"].as_str().expect("session").to_string();
        let _session = Session {
            port,
            id: sid.clone(),
        };
        let p = |x: &str| format!("/session/{sid}{x}");
        wd(port, "POST", &p("/url"), Some(json!({"url": url})));
        let mut button = Value::Null;
        wait_for("the apply button", Duration::from_secs(10), || {
            button = wd(
                port,
                "POST",
                &p("/element"),
                Some(json!({"using": "css selector", "value": "#apply"})),
            );
            button.get("element-6066-11e4-a52e-4f735466cecf").is_some()
        });
        let eid = button["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string();
        wd(
            port,
            "POST",
            &p(&format!("/element/{eid}/click")),
            Some(json!({})),
        );
        let mut confirm = Value::Null;
        wait_for("the confirmation", Duration::from_secs(10), || {
            confirm = wd(port, "GET", &p("/alert/text"), None);
            confirm.is_string()
        });
        assert_eq!(confirm, "Installer cette mise à jour maintenant ?");
        wd(port, "POST", &p("/alert/accept"), Some(json!({})));
        let mut said = Value::Null;
        wait_for("the page's verdict", Duration::from_secs(30), || {
            said = wd(port, "GET", &p("/alert/text"), None);
            said.is_string()
        });
        wd(port, "POST", &p("/alert/accept"), Some(json!({})));
        said
    });
    let _ = driver.kill();
    let _ = driver.wait();
    let said = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let said = said.as_str().unwrap();
    assert!(said.starts_with("Mise à jour validée"), "{said}");
    assert_eq!(node.status()["version"], "2.0.0");
    let _ = id;

    let dom = dump_dom(&url);
    assert!(dom.contains("Aucune mise à jour disponible."), "{dom}");
    assert!(dom.contains("version 2.0.0 installée et validée"), "{dom}");
    let out = shot_path("admin-page-after-apply.png");
    screenshot(&url, &out);
    eprintln!("screenshots: {} and admin-page-offer.png", out.display());
}

#[test]
fn after_a_kill_9_mid_apply_the_page_tells_the_truth() {
    if !Path::new(CHROMIUM).exists() {
        skip_or_fail(
            "admin_page",
            "chromium is not installed (board/ci-setup.sh)",
        );
        return;
    }
    let sim = tls_sim();
    let mut node = Node::updates(&sim);
    install_v1(&mut node, None, "kill page");
    // 2.0.0 is unhealthy: after the kill, the restart's health check rolls it back.
    let mut v2 = app("2.0.0");
    v2.push(file("unhealthy", b"1"));
    let id = sim.publish_update("2.0.0", zip(&v2), "- cassée");
    let addr = api_on(&mut node, "none", None);
    let c = node
        .command(&["run"])
        .env("CYBERSENSEI_TEST_CRASH_AT", "journal:switched")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = crate::admin_api::Daemon(c);
    wait_for("the offer", Duration::from_secs(15), || {
        TcpStream::connect(addr).is_ok()
            && get(addr, "/api/update/check", None).1["updateAvailable"] == true
    });
    let (s, _) = crate::admin_api::post(addr, "/api/update/apply", &json!({"updateId": id}), None);
    assert_ne!(s / 100, 2);
    let _ = d.0.wait();
    drop(d);
    let _d = start(&node, addr);
    wait_for("the recovery", Duration::from_secs(20), || {
        get(addr, "/api/update/history", None).1[0]["event"] == "rollback"
            && !node.state_dir.join("update/journal.json").exists()
    });
    assert_complete(&node, &[("1.0.0", &app("1.0.0"))], "page kill");
    let dom = dump_dom(&format!("http://{addr}/"));
    for want in [
        "retour arrière",
        "revenue à la version précédente",
        "installation",
    ] {
        assert!(dom.contains(want), "page lacks {want:?}:\n{dom}");
    }
    // The version shown is the one the slots hold.
    assert!(
        dom.contains("<th>Version installée</th><td>1.0.0</td>"),
        "{dom}"
    );
    screenshot(
        &format!("http://{addr}/"),
        &shot_path("admin-page-after-kill.png"),
    );
}
