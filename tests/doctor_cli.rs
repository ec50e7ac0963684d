//! `doctor` through the real binary: each check against a real fault (the simulator's
//! faults over TLS, a closed port, an unresolvable name, a file changed in a slot, a
//! 1970 clock under libfaketime), each failure named with its exit code.

use crate::harness::package::sha256;
use crate::harness::{self, code, faketime, text, Node};
use cybersensei_sim::{Fault, Sim, SimOptions};
use std::os::unix::fs::PermissionsExt;

/// The line of check `name` in doctor's output.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
}

fn word<'a>(out: &'a str, name: &str) -> &'a str {
    line(out, name)
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

/// A node whose key file is private, as `set-key` and board/install.sh make it.
fn box_for(sim: &Sim) -> Node {
    let node = Node::new(sim);
    std::fs::set_permissions(&node.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    node
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn healthy_box_passes_every_check_and_changes_nothing() {
    let sim = harness::sim();
    sim.valid_license(harness::KEY);
    let mut node = box_for(&sim);
    node.set("backend", "timeout", 3.into());
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", text(&o));
    for name in [
        "config",
        "key",
        "clock",
        "disk",
        "dns",
        "tcp",
        "tls",
        "http",
        "slots",
        "telemetry",
    ] {
        assert_eq!(word(&out, name), "ok", "{name}:\n{out}");
    }
    assert!(out.contains("all 10 checks passed"), "{out}");
    assert!(line(&out, "key").contains("A1B2…"), "{out}");
    assert!(!out.contains(harness::KEY), "key shown whole:\n{out}");
    // Asked the health route once; no license validation (the backend counts them).
    assert_eq!(sim.count("/health"), 1);
    assert_eq!(sim.count("/api/license/validate"), 0);
    assert!(!node.state_dir.exists(), "doctor wrote state");
}

#[test]
fn unresolvable_host_fails_dns_and_skips_the_rest() {
    let sim = harness::sim();
    let mut node = box_for(&sim);
    node.set("backend", "url", "https://no-such-host.invalid".into());
    node.set("backend", "timeout", 3.into());
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_eq!(word(&out, "dns"), "FAIL", "{out}");
    assert!(line(&out, "dns").contains("no-such-host.invalid"), "{out}");
    for name in ["tcp", "tls", "http"] {
        assert_eq!(word(&out, name), "skip", "{out}");
    }
    assert!(stderr(&o).contains("first failure: dns"), "{}", text(&o));
}

#[test]
fn closed_port_fails_tcp() {
    let sim = harness::sim();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut node = box_for(&sim);
    node.set("backend", "url", format!("https://127.0.0.1:{port}").into());
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_eq!(word(&out, "dns"), "ok", "{out}");
    assert_eq!(word(&out, "tcp"), "FAIL", "{out}");
    assert!(line(&out, "tcp").contains(&port.to_string()), "{out}");
    assert!(stderr(&o).contains("first failure: tcp"), "{}", text(&o));
}

#[test]
fn unknown_certificate_authority_fails_tls_and_names_ca_file() {
    let sim = harness::sim();
    let mut node = box_for(&sim);
    node.set("backend", "ca_file", serde_json::Value::Null);
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_eq!(word(&out, "tcp"), "ok", "{out}");
    assert_eq!(word(&out, "tls"), "FAIL", "{out}");
    assert!(line(&out, "tls").contains("UnknownIssuer"), "{out}");
    assert!(line(&out, "tls").contains("backend.ca_file"), "{out}");
    assert_eq!(word(&out, "http"), "skip", "{out}");
    assert_eq!(
        sim.count("/health"),
        0,
        "no request after a failed handshake"
    );
}

#[test]
fn server_that_closes_at_once_fails_tcp_or_tls() {
    let sim = harness::sim();
    sim.set_down(true);
    let node = box_for(&sim);
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 14, "{}", text(&o));
    // The server accepts, then resets: whether connect() or the handshake sees the
    // reset first is the kernel's timing; either way that layer is named, not http.
    let e = stderr(&o);
    assert!(
        e.contains("first failure: tcp") || e.contains("first failure: tls"),
        "{}",
        text(&o)
    );
    assert_eq!(word(&out, "http"), "skip", "{out}");
}

#[test]
fn http_faults_fail_http() {
    let cases = [
        (Fault::Html, "captive portal"),
        (Fault::Status(503, "{}".into()), "503"),
        (
            Fault::Redirect {
                code: 302,
                location: "http://portal.example/login".into(),
            },
            "302",
        ),
        (Fault::Hang, "timed out"),
    ];
    for (fault, want) in cases {
        let sim = harness::sim();
        sim.set_sticky_fault("/health", Some(fault.clone()));
        let mut node = box_for(&sim);
        node.set("backend", "timeout", 2.into());
        let o = node.run(&["doctor"]);
        let out = stdout(&o);
        assert_eq!(code(&o), 14, "{fault:?}: {}", text(&o));
        assert_eq!(word(&out, "tls"), "ok", "{fault:?}: {out}");
        assert_eq!(word(&out, "http"), "FAIL", "{fault:?}: {out}");
        assert!(line(&out, "http").contains(want), "{fault:?}: {out}");
        // One attempt: doctor reports, it does not retry.
        assert_eq!(sim.count("/health"), 1, "{fault:?}");
    }
}

#[test]
fn plain_http_backend_skips_tls() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let node = box_for(&sim);
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(word(&out, "tls"), "skip", "{out}");
    assert_eq!(word(&out, "http"), "ok", "{out}");
}

#[test]
fn config_and_key_problems_exit_2() {
    let sim = harness::sim();
    let node = box_for(&sim);
    // No config file: named first, the rest checked with the defaults.
    let missing = node.dir.path().join("nope.json");
    let o = harness::agent_command()
        .arg("-c")
        .arg(&missing)
        .arg("doctor")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert_eq!(word(&out, "config"), "FAIL", "{out}");
    assert!(line(&out, "config").contains("nope.json"), "{out}");
    assert!(out.contains("slots"), "later checks ran:\n{out}");
    // A config with a typo: the key is named.
    std::fs::write(&missing, r#"{"backend": {"ur1": "x"}}"#).unwrap();
    let o = harness::agent_command()
        .arg("-c")
        .arg(&missing)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(line(&stdout(&o), "config").contains("ur1"), "{}", text(&o));
    // A world-readable key file.
    std::fs::set_permissions(&node.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = node.run(&["doctor"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert_eq!(word(&stdout(&o), "key"), "FAIL", "{}", text(&o));
    assert!(
        line(&stdout(&o), "key").contains("chmod 600"),
        "{}",
        text(&o)
    );
    // No key at all.
    std::fs::remove_file(&node.key_file).unwrap();
    let o = node.run(&["doctor"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(line(&stdout(&o), "key").contains("set-key"), "{}", text(&o));
}

#[test]
fn a_file_changed_in_the_active_slot_fails_slots() {
    let sim = harness::sim();
    let node = box_for(&sim);
    let slot = node.root.join("slots/a");
    std::fs::create_dir_all(slot.join("app")).unwrap();
    std::fs::write(slot.join("app/main.js"), b"console.log(1)\n").unwrap();
    let digest = sha256(b"console.log(1)\n");
    std::fs::write(
        slot.join("manifest.json"),
        format!(r#"{{"version": "1.2.0", "files": {{"app/main.js": "{digest}"}}}}"#),
    )
    .unwrap();
    std::os::unix::fs::symlink("slots/a", node.root.join("current")).unwrap();
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(line(&out, "slots").contains("1 file(s) match"), "{out}");
    assert!(line(&out, "slots").contains("1.2.0"), "{out}");
    std::fs::write(slot.join("app/main.js"), b"console.log(2)\n").unwrap();
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(word(&out, "slots"), "FAIL", "{out}");
    assert!(line(&out, "slots").contains("app/main.js"), "{out}");
    assert!(stderr(&o).contains("first failure: slots"), "{}", text(&o));
}

#[test]
fn clock_in_1970_fails_clock() {
    let Some(lib) = faketime() else { return };
    let sim = harness::sim();
    let node = box_for(&sim);
    let o = node
        .command(&["doctor"])
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", "@1970-01-01 00:00:00")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert_eq!(word(&out, "clock"), "FAIL", "{out}");
    assert!(line(&out, "clock").contains("1970"), "{out}");
    assert!(stderr(&o).contains("first failure: clock"), "{}", text(&o));
    // The backend's certificate is not valid yet in 1970: the TLS line says to look at
    // the clock (matched on rustls's error kind, not its wording).
    assert_eq!(word(&out, "tls"), "FAIL", "{out}");
    assert!(line(&out, "tls").contains("check the clock"), "{out}");
}

#[test]
fn manifest_v2_dirs_files_and_links_are_checked() {
    let sim = harness::sim();
    let node = box_for(&sim);
    let slot = node.root.join("slots/b");
    std::fs::create_dir_all(slot.join("app")).unwrap();
    std::fs::write(slot.join("app/main.js"), b"run()\n").unwrap();
    std::os::unix::fs::symlink("main.js", slot.join("app/link")).unwrap();
    let manifest = serde_json::json!({
        "version": "1.3.0", "kind": "full",
        "files": [
            {"path": "app", "type": "dir", "mode": "0755"},
            {"path": "app/main.js", "type": "file", "sha256": sha256(b"run()\n")},
            {"path": "app/link", "type": "symlink", "target": "main.js",
             "sha256": sha256(b"main.js")}
        ]
    });
    std::fs::write(slot.join("manifest.json"), manifest.to_string()).unwrap();
    std::os::unix::fs::symlink("slots/b", node.root.join("current")).unwrap();
    let o = node.run(&["doctor"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        line(&out, "slots").contains("slot b, version 1.3.0, 3 file(s)"),
        "{out}"
    );
    // The link now points elsewhere: named.
    std::fs::remove_file(slot.join("app/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", slot.join("app/link")).unwrap();
    let o = node.run(&["doctor"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        line(&stdout(&o), "slots").contains("app/link"),
        "{}",
        text(&o)
    );
    // A listed directory replaced by a file: named too.
    std::fs::remove_file(slot.join("app/link")).unwrap();
    std::os::unix::fs::symlink("main.js", slot.join("app/link")).unwrap();
    std::fs::remove_dir_all(slot.join("app")).unwrap();
    std::fs::write(slot.join("app"), b"x").unwrap();
    let o = node.run(&["doctor"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(line(&stdout(&o), "slots").contains("app"), "{}", text(&o));
}
