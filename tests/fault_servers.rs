//! Hostile servers against the real binary on loopback: slow drips, endless bodies,
//! huge headers, wrong content types, malformed / hostile JSON, redirects, bad TLS
//! certificates and resets. Each case must end with a clear error and its documented
//! exit code within timeout × attempts (plus a margin), with a bounded peak RSS,
//! state that still parses, and the key sent nowhere but the configured backend.
//! (Captive portal, 30x to another host and oversized answers are in license_cli.rs.)

use crate::harness::measure::{run_measured, under_emulator, Run};
use crate::harness::{self, Node, KEY};
use cybersensei_sim::{Fault, Sim, SimOptions, TlsVariant};
use std::time::Duration;

/// Peak RSS allowed for the agent under any hostile answer (a debug build validating
/// a license peaks at a few MiB; an unbounded read of an endless body would not stop).
const MAX_RSS_KIB: i64 = 32 * 1024;
/// Per-request timeout and attempts of the nodes below: the time budget of a call.
const TIMEOUT: u64 = 1;
const ATTEMPTS: u64 = 2;
/// Slack over timeout × attempts for process start, TLS and backoff.
const MARGIN: Duration = Duration::from_secs(3);

/// Common post-conditions: bounded time and memory, key not echoed.
fn check_run(case: &str, r: &Run, budget: Duration) {
    assert!(
        r.took < budget,
        "{case}: took {:?} (budget {budget:?}): {}",
        r.took,
        r.out
    );
    if !under_emulator() {
        assert!(
            r.rss_kib < MAX_RSS_KIB,
            "{case}: peak RSS {} KiB: {}",
            r.rss_kib,
            r.out
        );
    }
    assert!(!r.out.contains(KEY), "{case}: key in the output: {}", r.out);
    assert!(
        !r.out.contains("panicked"),
        "{case}: the agent panicked: {}",
        r.out
    );
}

fn budget() -> Duration {
    Duration::from_secs(TIMEOUT * ATTEMPTS) + MARGIN
}

/// A node with short timeouts against `sim`.
fn node(sim: &Sim) -> Node {
    let mut n = Node::new(sim);
    n.set("backend", "timeout", TIMEOUT.into());
    n.set("backend", "retry_attempts", ATTEMPTS.into());
    n
}

/// A plain-HTTP simulator standing for a host that is not the backend.
fn other_host() -> Sim {
    Sim::start(SimOptions::default()).unwrap()
}

/// No server but the backend was contacted, and none of them saw `key`.
fn assert_key_not_sent(case: &str, key: &str, others: &[&Sim]) {
    let encoded = cybersensei_agent::percent::percent_encode(key);
    for s in others {
        for r in s.requests() {
            let text = format!("{} {:?} {:?}", r.query, r.headers, r.body);
            assert!(
                !text.contains(key) && !text.contains(&encoded),
                "{case}: key sent to {}: {text}",
                s.url()
            );
        }
        assert!(
            s.requests().is_empty(),
            "{case}: {} was contacted: {:?}",
            s.url(),
            s.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
}

/// The hostile answers a JSON call can get, each as (name, fault).
fn hostile_json_answers() -> Vec<(&'static str, Fault)> {
    let deep = "[".repeat(100_000);
    vec![
        (
            "slow drip (1 byte / 400 ms)",
            Fault::SlowBody {
                chunk: 1,
                delay_ms: 400,
            },
        ),
        (
            "endless chunked body",
            Fault::Endless {
                content_type: "application/json".into(),
                chunked: true,
                delay_ms: 0,
            },
        ),
        (
            "endless close-delimited drip",
            Fault::Endless {
                content_type: "application/json".into(),
                chunked: false,
                delay_ms: 200,
            },
        ),
        ("1 MiB header", Fault::HugeHeader { bytes: 1 << 20 }),
        (
            "binary body as image/png",
            Fault::Raw(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 8\r\n\
Connection: close\r\n\r\n\x89PNG\r\n\x1a\n"
                    .to_vec(),
            ),
        ),
        ("invalid JSON", Fault::Status(200, r#"{"valid": tru"#.into())),
        (
            "JSON with wrong types",
            Fault::Status(
                200,
                r#"{"valid":"yes","tenantId":42,"updateAvailable":"no","usageCount":"x"}"#.into(),
            ),
        ),
        (
            "huge numbers",
            Fault::Status(
                200,
                r#"{"valid":true,"tenantId":"t","updateAvailable":true,"updateId":"u","usageCount":184467440737095516160000,"fileSize":1e999999}"#
                    .into(),
            ),
        ),
        ("100k nested arrays", Fault::Status(200, deep.clone())),
        (
            "100 KB tenantId",
            Fault::Status(
                200,
                format!(r#"{{"valid":true,"tenantId":"{}"}}"#, "t".repeat(100_000)),
            ),
        ),
        (
            "100k nested arrays in an error body",
            Fault::Status(400, format!(r#"{{"statusCode":400,"message":{deep}"#)),
        ),
        ("connection reset", Fault::Reset),
    ]
}

#[test]
fn validate_survives_every_hostile_answer_with_exit_14() {
    for (case, fault) in hostile_json_answers() {
        let sim = harness::sim();
        sim.valid_license(KEY);
        let n = node(&sim);
        sim.set_sticky_fault("/api/license/validate", Some(fault));
        let r = run_measured(n.command(&["validate"]), n.dir.path());
        // A hostile answer is never a license refusal: 14 (unreachable, no cache).
        assert_eq!(r.code, 14, "{case}: {}", r.out);
        // Said for what it is: a network failure, or an answer that is not the protocol.
        assert!(
            r.out.contains("unreachable")
                || r.out.contains("not the license JSON")
                || r.out.contains("not understood")
                || r.out.contains("unusable tenantId")
                || r.out.contains("without a backend error body"),
            "{case}: {}",
            r.out
        );
        check_run(case, &r, budget());
        assert_eq!(n.status()["license"]["state"], "unknown", "{case}");
        assert!(!n.state_dir.join("license.json").exists(), "{case}");
        eprintln!(
            "validate / {case}: exit {} in {:?}, peak RSS {} KiB",
            r.code, r.took, r.rss_kib
        );
    }
}

#[test]
fn hostile_answers_leave_the_license_cache_intact() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let n = node(&sim);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    let cache = n.state_dir.join("license.json");
    let before = std::fs::read(&cache).unwrap();
    for (case, fault) in hostile_json_answers() {
        sim.set_sticky_fault("/api/license/validate", Some(fault.clone()));
        let r = run_measured(n.command(&["validate"]), n.dir.path());
        // Offline grace from the cached validation: still valid, with a warning.
        assert_eq!(r.code, 0, "{case}: {}", r.out);
        check_run(case, &r, budget());
        assert_eq!(
            std::fs::read(&cache).unwrap(),
            before,
            "{case}: cache changed"
        );
        let state = n.status()["license"]["state"].clone();
        assert!(state == "valid" || state == "grace", "{case}: {state}");
        sim.set_sticky_fault("/update/check", Some(fault.clone()));
        let r = run_measured(n.command(&["check-update"]), n.dir.path());
        // A 4xx with a readable error body is an answer (exit 1, its message shown);
        // anything else (an error body too deep to read included) is 14.
        let want = 14;
        assert_eq!(r.code, want, "check-update / {case}: {}", r.out);
        check_run(case, &r, budget());
        assert_eq!(
            std::fs::read(&cache).unwrap(),
            before,
            "{case}: cache changed"
        );
        n.status();
        eprintln!(
            "check-update / {case}: exit {} in {:?}, peak RSS {} KiB",
            r.code, r.took, r.rss_kib
        );
        sim.clear_faults();
    }
}

#[test]
fn telemetry_survives_hostile_answers_and_keeps_the_sample() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let n = node(&sim);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    let mut queued = 0;
    for (case, fault) in hostile_json_answers() {
        // A telemetry answer is only judged by its status: a hostile 200 body is a
        // delivery; what must hold is bounded time and memory and a valid queue.
        sim.set_sticky_fault("/telemetry", Some(fault));
        let r = run_measured(n.command(&["telemetry", "--once"]), n.dir.path());
        check_run(case, &r, budget());
        let st = n.status();
        let q = st["telemetry"]["queued"].as_u64().expect("queued count");
        if r.code == 0 {
            assert_eq!(q, 0, "{case}: delivered yet queued: {}", r.out);
        } else {
            assert!(q > queued || q >= 1, "{case}: sample lost: {}", r.out);
        }
        queued = q;
        eprintln!(
            "telemetry --once / {case}: exit {} in {:?}, peak RSS {} KiB, queued {q}",
            r.code, r.took, r.rss_kib
        );
    }
    sim.clear_faults();
    let r = run_measured(n.command(&["telemetry", "--once"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(n.status()["telemetry"]["queued"], 0, "queue drained");
}

#[test]
fn redirects_are_not_followed_and_the_key_stays_home() {
    let target = other_host();
    let sim = harness::sim();
    sim.valid_license(KEY);
    let n = node(&sim);
    let enc = cybersensei_agent::percent::percent_encode(KEY);
    let cases = [
        (
            "302 to http: on another host",
            format!("{}/api/license/validate?key={enc}", target.url()),
        ),
        (
            "307 loop to itself",
            format!("{}/api/license/validate?key={enc}", sim.url()),
        ),
        (
            "308 to http: on the same port",
            format!("http://127.0.0.1:{}/api/license/validate", sim.port()),
        ),
    ];
    for (case, location) in cases {
        sim.clear_requests();
        let code = if case.starts_with("302") {
            302
        } else if case.starts_with("307") {
            307
        } else {
            308
        };
        sim.set_sticky_fault(
            "/api/license/validate",
            Some(Fault::Redirect { code, location }),
        );
        let r = run_measured(n.command(&["validate"]), n.dir.path());
        assert_eq!(r.code, 14, "{case}: {}", r.out);
        assert!(r.out.contains("redirect"), "{case}: {}", r.out);
        check_run(case, &r, budget());
        // A redirect is an answer: one request, not retried, not followed.
        assert_eq!(sim.count("/api/license/validate"), 1, "{case}");
        assert_key_not_sent(case, KEY, &[&target]);
        n.status();
    }
    // Telemetry redirects are not followed either (downloads: see below).
    sim.clear_faults();
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    sim.set_sticky_fault(
        "/telemetry",
        Some(Fault::Redirect {
            code: 307,
            location: format!("{}/telemetry", target.url()),
        }),
    );
    let r = run_measured(n.command(&["telemetry", "--once"]), n.dir.path());
    assert_ne!(r.code, 0, "{}", r.out);
    check_run("telemetry redirect", &r, budget());
    assert_key_not_sent("telemetry redirect", KEY, &[&target]);
}

#[test]
fn bad_certificates_are_refused_before_the_key_is_sent() {
    for variant in [
        TlsVariant::WrongHost,
        TlsVariant::Expired,
        TlsVariant::UntrustedCa,
    ] {
        let case = format!("{variant:?}");
        let sim = Sim::start(SimOptions {
            tls: true,
            tls_variant: variant,
            ..Default::default()
        })
        .unwrap();
        sim.valid_license(KEY);
        let n = node(&sim);
        let r = run_measured(n.command(&["validate"]), n.dir.path());
        assert_eq!(r.code, 14, "{case}: {}", r.out);
        let lower = r.out.to_lowercase();
        assert!(
            lower.contains("certificate") || lower.contains("tls"),
            "{case}: no clear reason: {}",
            r.out
        );
        check_run(&case, &r, budget());
        // The handshake failed, so no request (and no key) reached the impostor.
        assert!(sim.handshake_failures() >= 1, "{case}");
        assert!(sim.requests().is_empty(), "{case}: {:?}", sim.requests());
        assert_eq!(n.status()["license"]["state"], "unknown", "{case}");
        eprintln!(
            "validate / TLS {case}: exit {} in {:?}, peak RSS {} KiB",
            r.code, r.took, r.rss_kib
        );
    }
}

mod downloads {
    use super::*;
    use crate::harness::package::{app, expected_tree, file, tree, zip};
    use crate::harness::{code, text, UPDATE_KEY};

    fn rig(sim: &Sim) -> Node {
        let mut rig = Node::updates(sim);
        rig.set("backend", "timeout", TIMEOUT.into());
        rig.set("backend", "retry_attempts", ATTEMPTS.into());
        rig
    }

    /// A box running 1.0.0 from slot a, 2.0.0 published.
    fn installed(sim: &Sim) -> Node {
        sim.valid_license(UPDATE_KEY);
        let rig = rig(sim);
        sim.publish_update("1.0.0", zip(&app("1.0.0")), "- first");
        let o = rig.run(&["update"]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(rig.current().as_deref(), Some("slots/a"));
        let mut v2 = app("2.0.0");
        v2.push(file("big", &vec![7u8; 256 * 1024]));
        sim.publish_update("2.0.0", zip(&v2), "- second");
        rig
    }

    fn assert_untouched(case: &str, rig: &Node) {
        assert_eq!(rig.current().as_deref(), Some("slots/a"), "{case}");
        assert_eq!(
            tree(&rig.slot("a")),
            expected_tree(&app("1.0.0")),
            "{case}: active slot changed"
        );
        let st = rig.status();
        assert_eq!(st["version"], "1.0.0", "{case}");
    }

    #[test]
    fn reset_mid_download_resumes_with_a_range_and_completes() {
        let sim = harness::sim();
        let rig = installed(&sim);
        sim.clear_requests();
        sim.push_fault(
            "/update/download/",
            Fault::Truncate {
                after_bytes: 100_000,
            },
        );
        let r = run_measured(rig.command(&["update"]), rig.dir.path());
        assert_eq!(r.code, 0, "{}", r.out);
        check_run("reset mid-download", &r, Duration::from_secs(20));
        let ranges = sim.download_ranges();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[1].as_deref(), Some("bytes=100000-"), "{ranges:?}");
        assert_eq!(rig.current().as_deref(), Some("slots/b"));
        assert_eq!(rig.status()["version"], "2.0.0");
    }

    #[test]
    fn hostile_download_answers_are_refused_with_the_slot_untouched() {
        let sim = harness::sim();
        let rig = installed(&sim);
        let target = other_host();
        let cases: Vec<(&str, Fault, &[i32])> = vec![
            ("reset on every attempt", Fault::Reset, &[14, 1]),
            (
                "endless chunked body",
                Fault::Endless {
                    content_type: "application/octet-stream".into(),
                    chunked: true,
                    delay_ms: 0,
                },
                &[21],
            ),
            (
                "endless close-delimited body",
                Fault::Endless {
                    content_type: "application/octet-stream".into(),
                    chunked: false,
                    delay_ms: 0,
                },
                &[21],
            ),
            ("HTML instead of the package", Fault::Html, &[21, 14, 1]),
            (
                "1 MiB header",
                Fault::HugeHeader { bytes: 1 << 20 },
                &[14, 1],
            ),
            (
                "redirect to another host",
                Fault::Redirect {
                    code: 302,
                    location: format!("{}/update/download/x", target.url()),
                },
                &[14, 1],
            ),
        ];
        for (case, fault, codes) in cases {
            sim.set_sticky_fault("/update/download/", Some(fault));
            let r = run_measured(rig.command(&["update"]), rig.dir.path());
            assert!(
                codes.contains(&r.code),
                "{case}: exit {}: {}",
                r.code,
                r.out
            );
            check_run(
                case,
                &r,
                Duration::from_secs(TIMEOUT * ATTEMPTS * 2) + MARGIN,
            );
            assert_untouched(case, &rig);
            assert_key_not_sent(case, UPDATE_KEY, &[&target]);
            eprintln!(
                "update / {case}: exit {} in {:?}, peak RSS {} KiB",
                r.code, r.took, r.rss_kib
            );
        }
        // And the next clean update still goes through.
        sim.clear_faults();
        let o = rig.run(&["update"]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(rig.current().as_deref(), Some("slots/b"));
    }
}

/// A NestJS error body whose message is huge and carries a forged log line and a
/// terminal escape.
fn hostile_message(prefix: &str) -> String {
    let msg = format!(
        "{prefix}\n2026-01-01T00:00:00Z [INFO] forged line\u{1b}[2J{}",
        "x".repeat(200_000)
    );
    serde_json::json!({"statusCode": 400, "message": msg}).to_string()
}

fn assert_sane_text(case: &str, what: &str, text: &str, max: usize) {
    assert!(text.len() <= max, "{case}: {what} is {} bytes", text.len());
    assert!(
        !text.contains('\u{1b}') && !text.contains("\n2026-01-01T00:00:00Z [INFO] forged"),
        "{case}: {what} carries the server's control characters: {text:?}"
    );
}

#[test]
fn server_messages_are_bounded_and_cannot_forge_log_lines() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let n = node(&sim);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);

    sim.set_license(
        KEY,
        cybersensei_sim::LicenseOutcome::Custom {
            status: 400,
            body: hostile_message("Licence expirée"),
        },
    );
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 11, "{}", &r.out[..r.out.len().min(2000)]);
    assert_sane_text("validate", "output", &r.out, 8 * 1024);
    let st = n.status();
    assert_eq!(st["license"]["state"], "expired");
    let cache = std::fs::read(n.state_dir.join("license.json")).unwrap();
    assert!(
        cache.len() < 16 * 1024,
        "license.json is {} bytes",
        cache.len()
    );
    let status_text = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert_sane_text("validate", "status.json", &status_text, 16 * 1024);
    // The cache is still readable: with the backend gone, the refusal is remembered.
    sim.set_down(true);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 11, "{}", &r.out[..r.out.len().min(2000)]);
    sim.set_down(false);

    sim.valid_license(KEY);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    sim.set_sticky_fault(
        "/telemetry",
        Some(Fault::Status(400, hostile_message("Bad telemetry"))),
    );
    let r = run_measured(n.command(&["telemetry", "--once"]), n.dir.path());
    assert_ne!(r.code, 0, "{}", &r.out[..r.out.len().min(2000)]);
    assert_sane_text("telemetry", "output", &r.out, 8 * 1024);
    let status_text = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert_sane_text("telemetry", "status.json", &status_text, 16 * 1024);

    sim.set_sticky_fault(
        "/update/check",
        Some(Fault::Status(400, hostile_message("Bad check"))),
    );
    let r = run_measured(n.command(&["check-update"]), n.dir.path());
    assert_eq!(r.code, 1, "{}", &r.out[..r.out.len().min(2000)]);
    assert_sane_text("check-update", "output", &r.out, 8 * 1024);
    let log = std::fs::read_to_string(&n.log_file).unwrap_or_default();
    assert_sane_text("all", "the log file", &log, 64 * 1024);
}

#[test]
fn huge_tenant_fields_do_not_break_the_license_cache() {
    let sim = harness::sim();
    let n = node(&sim);
    let name = format!("Acme\n[ERROR] forged\u{1b}[2J{}", "n".repeat(100_000));
    let body = serde_json::json!({
        "valid": true, "tenantId": cybersensei_sim::DEFAULT_TENANT_ID,
        "tenantName": name, "expiresAt": "2099-12-31T23:59:59.000Z",
        "usageCount": 1, "maxUsageCount": 10
    })
    .to_string();
    sim.set_license(
        KEY,
        cybersensei_sim::LicenseOutcome::Custom { status: 200, body },
    );
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", &r.out[..r.out.len().min(2000)]);
    assert_sane_text("validate", "output", &r.out, 8 * 1024);
    let status_text = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert_sane_text("validate", "status.json", &status_text, 16 * 1024);
    // The cached validation still carries the box through an outage.
    sim.set_down(true);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", &r.out[..r.out.len().min(2000)]);
    let state = n.status()["license"]["state"].clone();
    assert!(state == "valid" || state == "grace", "{state}");
}

#[test]
fn huge_update_check_texts_are_bounded() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let n = node(&sim);
    let r = run_measured(n.command(&["validate"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", r.out);
    let body = serde_json::json!({
        "updateAvailable": true, "currentVersion": "0.0.0",
        "latestVersion": format!("9.9.9\n[ERROR] forged\u{1b}[2J{}", "v".repeat(100_000)),
        "updateId": "abc", "changelog": format!("- fix\u{1b}[2J\n{}", "c".repeat(300_000)),
        "fileSize": 10
    })
    .to_string();
    sim.set_sticky_fault("/update/check", Some(Fault::Status(200, body)));
    let r = run_measured(n.command(&["check-update"]), n.dir.path());
    assert_eq!(r.code, 0, "{}", &r.out[..r.out.len().min(2000)]);
    assert_sane_text("check-update", "output", &r.out, 16 * 1024);
    assert!(!r.out.contains("\n[ERROR] forged"), "{}", r.out);
    let status_text = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert_sane_text("check-update", "status.json", &status_text, 16 * 1024);
    n.status();
}
