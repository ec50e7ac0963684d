//! License validation through the real binary against the simulator over TLS.

use crate::harness::{self, code, text, Node, KEY};
use cybersensei_sim::{Fault, LicenseOutcome};
use std::time::{Duration, Instant};

fn valid(sim: &cybersensei_sim::Sim) {
    sim.valid_license(KEY);
}

#[test]
fn valid_license_prints_tenant_and_records_status() {
    let sim = harness::sim();
    valid(&sim);
    let node = Node::new(&sim);
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Acme Corporation"), "{out}");
    assert!(out.contains("days left"), "{out}");
    let st = node.status();
    assert_eq!(st["license"]["state"], "valid");
    assert_eq!(st["license"]["tenantName"], "Acme Corporation");
    assert_eq!(
        st["license"]["tenantId"],
        "550e8400-e29b-41d4-a716-446655440000"
    );
    assert!(st["license"]["daysLeft"].as_i64().unwrap() > 1000);
    assert!(st["license"]["lastValidatedAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(st["version"], "0.0.0");
    // The key arrived intact: `+`, `/` and `=` survived URL encoding.
    let reqs = sim.requests();
    let r = reqs
        .iter()
        .find(|r| r.path == "/api/license/validate")
        .expect("validation request");
    let key = r
        .params
        .iter()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.clone());
    assert_eq!(key.as_deref(), Some(KEY));
    let ua = r
        .headers
        .iter()
        .find(|(k, _)| k == "user-agent")
        .map(|(_, v)| v.clone());
    assert!(ua.unwrap_or_default().starts_with("cybersensei-agent/"));
}

#[test]
fn each_refusal_has_its_exit_code_and_state() {
    let cases: Vec<(LicenseOutcome, i32, &str)> = vec![
        (LicenseOutcome::Expired, 11, "expired"),
        (LicenseOutcome::ExpiredMessageArray, 11, "expired"),
        (LicenseOutcome::Inactive, 12, "inactive"),
        (LicenseOutcome::Invalid, 10, "invalid"),
        (LicenseOutcome::ValidFalse, 10, "invalid"),
        (
            LicenseOutcome::Custom {
                status: 400,
                body: r#"{"statusCode":400,"message":"licence EXPIREE"}"#.into(),
            },
            11,
            "expired",
        ),
    ];
    for (outcome, want, state) in cases {
        let sim = harness::sim();
        sim.set_license(KEY, outcome.clone());
        let node = Node::new(&sim);
        let o = node.run(&["validate"]);
        assert_eq!(code(&o), want, "{outcome:?}: {}", text(&o));
        assert_eq!(node.status()["license"]["state"], state, "{outcome:?}");
        // A refusal is an answer, not a fault: exactly one request.
        assert_eq!(sim.count("/api/license/validate"), 1, "{outcome:?}");
    }
}

#[test]
fn unknown_key_is_404_invalid() {
    let sim = harness::sim();
    let node = Node::new(&sim); // no license registered at all
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 10, "{}", text(&o));
    assert!(
        text(&o).to_lowercase().contains("check the license key"),
        "{}",
        text(&o)
    );
}

#[test]
fn offline_grace_uses_the_cache_and_never_validated_is_14() {
    let sim = harness::sim();
    valid(&sim);
    let mut node = Node::new(&sim);
    node.set("backend", "retry_attempts", 1.into());
    // Never validated + unreachable: 14, state unknown.
    sim.set_down(true);
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_eq!(node.status()["license"]["state"], "unknown");
    // One validation, then the backend goes away: grace, exit 0.
    sim.set_down(false);
    assert_eq!(code(&node.run(&["validate"])), 0);
    sim.set_down(true);
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = node.status();
    assert_eq!(st["license"]["state"], "grace");
    assert_eq!(st["license"]["tenantName"], "Acme Corporation");
    // Grace period of zero: the cache no longer helps.
    node.set("license", "grace_period", 0.into());
    std::thread::sleep(Duration::from_millis(1100));
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
}

#[test]
fn server_errors_are_retried_answers_are_not() {
    let sim = harness::sim();
    valid(&sim);
    let node = Node::new(&sim);
    sim.push_fault("/api/license/validate", Fault::Status(503, "{}".into()));
    sim.push_fault("/api/license/validate", Fault::Status(503, "{}".into()));
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(sim.count("/api/license/validate"), 3);

    sim.clear_requests();
    sim.set_license(KEY, LicenseOutcome::Expired);
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 11);
    assert_eq!(sim.count("/api/license/validate"), 1, "400 is not retried");
}

#[test]
fn too_many_requests_honours_retry_after() {
    let sim = harness::sim();
    valid(&sim);
    let node = Node::new(&sim);
    sim.push_fault(
        "/api/license/validate",
        Fault::TooMany {
            retry_after: "2".into(),
        },
    );
    let t = Instant::now();
    let o = node.run(&["validate"]);
    let took = t.elapsed();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(sim.count("/api/license/validate"), 2);
    assert!(took >= Duration::from_secs(2), "waited only {took:?}");
    assert!(took < Duration::from_secs(10), "waited {took:?}");
}

#[test]
fn hanging_server_ends_within_timeout_times_attempts() {
    let sim = harness::sim();
    valid(&sim);
    let mut node = Node::new(&sim);
    node.set("backend", "timeout", 1.into());
    node.set("backend", "retry_attempts", 2.into());
    sim.set_sticky_fault("/api/license/validate", Some(Fault::Hang));
    let t = Instant::now();
    let o = node.run(&["validate"]);
    let took = t.elapsed();
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert!(took < Duration::from_secs(2 + 3), "took {took:?}");
    assert!(text(&o).contains("timed out"), "{}", text(&o));
}

#[test]
fn oversized_answer_is_refused_without_reading_it() {
    for content_length in [true, false] {
        let sim = harness::sim();
        valid(&sim);
        let mut node = Node::new(&sim);
        node.set("backend", "retry_attempts", 1.into());
        sim.push_fault(
            "/api/license/validate",
            Fault::Oversized {
                bytes: 200 << 20,
                content_length,
            },
        );
        let t = Instant::now();
        let o = node.run(&["validate"]);
        assert_eq!(code(&o), 14, "{}", text(&o));
        assert!(
            text(&o).contains("larger than") || text(&o).contains("refused"),
            "{}",
            text(&o)
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn captive_portal_is_unreachable_not_a_refusal() {
    let sim = harness::sim();
    valid(&sim);
    let mut node = Node::new(&sim);
    node.set("backend", "retry_attempts", 1.into());
    sim.push_fault("/api/license/validate", Fault::Html);
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_eq!(node.status()["license"]["state"], "unknown");
    sim.push_fault(
        "/api/license/validate",
        Fault::Redirect {
            code: 302,
            location: "https://portal.example/login".into(),
        },
    );
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert!(text(&o).contains("redirect"), "{}", text(&o));
}

#[test]
fn key_never_leaks_to_output_logs_or_state() {
    let sim = harness::sim();
    valid(&sim);
    let mut node = Node::new(&sim);
    node.set("log", "level", "debug".into());
    let mut outputs = String::new();
    sim.push_fault("/api/license/validate", Fault::Status(500, "{}".into()));
    for args in [
        vec!["validate"],
        vec!["config", "check"],
        vec!["status"],
        vec!["status", "--json"],
    ] {
        let o = node.run(&args);
        outputs.push_str(&text(&o));
    }
    sim.set_down(true);
    outputs.push_str(&text(&node.run(&["validate"])));
    let encoded = cybersensei_agent::percent::percent_encode(KEY);
    assert!(!outputs.contains(KEY), "key in output:\n{outputs}");
    assert!(!outputs.contains(&encoded), "encoded key in output");
    assert!(
        outputs.contains("A1B2"),
        "redacted key shown in config check"
    );
    for f in harness::all_files(node.dir.path()) {
        if f == node.key_file {
            continue;
        }
        let data = std::fs::read(&f).unwrap();
        let s = String::from_utf8_lossy(&data);
        assert!(
            !s.contains(KEY) && !s.contains(&encoded),
            "key found in {}",
            f.display()
        );
    }
}

#[test]
fn config_errors_name_the_field_and_exit_2() {
    let sim = harness::sim();
    let node = Node::new(&sim);
    std::fs::write(&node.config, r#"{"backend": {"timeout": "abc"}}"#).unwrap();
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).contains(r#"backend.timeout: expected a number of seconds, got "abc""#),
        "{}",
        text(&o)
    );
    std::fs::write(&node.config, r#"{"updates": {"auto_instal": true}}"#).unwrap();
    let o = node.run(&["config", "check"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o).contains("updates.auto_instal"), "{}", text(&o));
    let o = node.run(&["frobnicate"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn guide_config_verbatim_passes_config_check() {
    let sim = harness::sim();
    let node = Node::new(&sim);
    std::fs::write(
        &node.config,
        r#"{
  "backend":   {"url": "https://central.cybersensei.com", "timeout": 30,
                "retry_attempts": 3, "retry_delay": 5},
  "telemetry": {"interval": 300, "enabled": true},
  "updates":   {"check_interval": 3600, "auto_download": false, "auto_install": false}
}"#,
    )
    .unwrap();
    let o = node.run(&["config", "check"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"revalidate_interval\": 86400"));
}

#[test]
fn plain_http_is_refused_unless_allowed() {
    let sim = cybersensei_sim::Sim::start(cybersensei_sim::SimOptions {
        tls: false,
        ..Default::default()
    })
    .unwrap();
    valid(&sim);
    let mut node = Node::new(&sim);
    node.set("backend", "allow_http", false.into());
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("allow_http"));
    node.set("backend", "allow_http", true.into());
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn set_key_stores_privately_and_validates() {
    let sim = harness::sim();
    valid(&sim);
    let mut node = Node::new(&sim);
    let kf = node.dir.path().join("newdir/license.key");
    node.set("license", "key_file", kf.to_str().unwrap().into());
    let mut c = node.command(&["set-key"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("  {KEY}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!text(&o).contains(KEY), "key echoed");
    assert!(text(&o).contains("Acme Corporation"));
    assert_eq!(std::fs::read_to_string(&kf).unwrap(), format!("{KEY}\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An empty key is refused and the stored one kept.
    let mut c = node.command(&["set-key"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"  \n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 2);
    assert_eq!(std::fs::read_to_string(&kf).unwrap(), format!("{KEY}\n"));
}

#[test]
fn second_command_waits_then_names_the_holder() {
    let sim = harness::sim();
    valid(&sim);
    let node = Node::new(&sim);
    std::fs::create_dir_all(&node.state_dir).unwrap();
    let _held =
        cybersensei_agent::fsutil::StateLock::acquire(&node.state_dir, Duration::ZERO).unwrap();
    let t = Instant::now();
    let o = node
        .command(&["validate"])
        .env("CYBERSENSEI_LOCK_WAIT", "1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("process {}", std::process::id())),
        "{}",
        text(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// `key` as a server may quote it: raw, percent-encoded in upper and lower case, and
/// form-encoded (`+` for a space).
fn quoted_forms(key: &str) -> Vec<String> {
    let upper = cybersensei_agent::percent::percent_encode(key);
    let lower = upper
        .split('%')
        .enumerate()
        .map(|(i, s)| match i {
            0 => s.to_string(),
            _ => format!("{}{}", s[..2].to_lowercase(), &s[2..]),
        })
        .collect::<Vec<_>>()
        .join("%");
    let form = upper.replace("%20", "+");
    vec![key.to_string(), upper, lower, form]
}

/// Issue 23, item 8: a server text quoting the key (a proxy, a captive portal, a
/// backend bug) in every form a server may write it reaches no output: not stdout,
/// stderr, the log file, status.json nor any other file the agent writes.
#[test]
fn server_text_quoting_the_key_is_scrubbed_from_every_output() {
    let sim = harness::sim();
    let mut node = Node::new(&sim);
    node.set("log", "level", "debug".into());
    // The harness's key (`+`, `/`, `=`), then one with spaces (form-encoded `+`).
    for key in [KEY, "K3Y with space+plus/slash"] {
        std::fs::write(&node.key_file, format!("{key}\n")).unwrap();
        let forms = quoted_forms(key);
        let message = format!("licence invalide: cle {} non reconnue", forms.join(" / "));
        let body =
            serde_json::json!({"statusCode": 400, "message": message, "error": "Bad Request"});
        let mut outputs = String::new();
        for args in [vec!["validate"], vec!["status"], vec!["doctor"]] {
            sim.push_fault(
                "/api/license/validate",
                Fault::Status(400, body.to_string()),
            );
            outputs.push_str(&text(&node.run(&args)));
        }
        assert!(
            outputs.contains("non reconnue"),
            "the server's text is shown (scrubbed), not dropped:\n{outputs}"
        );
        for f in &forms {
            assert!(
                !outputs.contains(f.as_str()),
                "{f:?} in stdout/stderr:\n{outputs}"
            );
        }
        for file in harness::all_files(node.dir.path()) {
            if file == node.key_file {
                continue;
            }
            let s = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).to_string();
            for f in &forms {
                assert!(
                    !s.contains(f.as_str()),
                    "{f:?} found in {}:\n{s}",
                    file.display()
                );
            }
        }
    }
}
