//! The agent against the simulator's `central` profile (the real backend's code):
//! the real binary validates, checks, downloads, installs and sends telemetry the
//! real DTO accepts; every real error is mapped to a clear state and exit code; a
//! node too old is said as such; the factory version is what the check sends;
//! restarts of `run` do not spend validations; a 429 is said and honoured.

use crate::harness::package::{app, file, zip, E};
use crate::harness::{code, signal, text, Node, KEY};
use cybersensei_sim::{version_json, LicenseOutcome, Profile, Sim, SimOptions};
use std::time::{Duration, Instant};

fn central() -> Sim {
    Sim::start(SimOptions {
        tls: true,
        profile: Profile::Central,
        ..Default::default()
    })
    .expect("simulator starts")
}

/// A package the central backend accepts: `version.json` at its root.
fn package(version: &str, required: &str) -> Vec<u8> {
    let mut entries: Vec<E> = app(version);
    // app() carries a version.json without a minimum node version: replace it.
    entries.retain(|e| !matches!(e, E::File(n, ..) if n == "version.json"));
    entries.push(file(
        "version.json",
        version_json(version, &format!("release {version}"), required).as_bytes(),
    ));
    zip(&entries)
}

#[test]
fn validates_checks_downloads_installs_and_reports_against_the_real_backend() {
    let sim = central();
    sim.valid_license(KEY);
    let n = Node::new(&sim);
    std::fs::create_dir_all(&n.root).unwrap();
    std::fs::write(n.root.join("factory-version"), "1.0.0\n").unwrap();
    let o = n.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("Acme Corporation"), "{}", text(&o));
    assert_eq!(n.status()["license"]["usageCount"], 43);

    sim.publish_update("1.2.0", package("1.2.0", "1.0.0"), "");
    let o = n.run(&["check-update"]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("Update available: 1.0.0 -> 1.2.0"), "{t}");
    assert!(t.contains("Requires node version: 1.0.0"), "{t}");
    // The check carried the factory version, not 0.0.0.
    let checks = sim.requests_to("/update/check");
    assert_eq!(checks.last().unwrap().param("version"), Some("1.0.0"));
    let st = n.status();
    assert_eq!(st["update"]["available"], true);
    assert_eq!(st["update"]["requiredNodeVersion"], "1.0.0");
    assert!(st["update"]["fileSize"].as_u64().unwrap() > 0, "{st}");

    let o = n.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("Installed version 1.2.0"), "{}", text(&o));
    assert_eq!(n.status()["version"], "1.2.0");

    let o = n.run(&["telemetry", "--once"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let bodies = sim.telemetry();
    assert_eq!(bodies.len(), 1, "the ValidationPipe accepted the body");
    assert_eq!(bodies[0]["version"], "1.2.0");
    // Up to date now: said by the backend, shown as such.
    let o = n.run(&["check-update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        text(&o).contains("Up to date (version 1.2.0)"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("Le node est à jour"), "{}", text(&o));
}

#[test]
fn a_node_too_old_is_said_as_such_not_up_to_date() {
    let sim = central();
    sim.valid_license(KEY);
    let n = Node::new(&sim);
    sim.publish_update("2.0.0", package("2.0.0", "1.0.0"), "");
    // A fresh box without a recorded factory version reports 0.0.0.
    let o = n.run(&["check-update"]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("Update not possible yet"), "{t}");
    assert!(t.contains("1.0.0 or later"), "{t}");
    assert!(!t.contains("Up to date"), "{t}");
    let st = n.status();
    assert_eq!(st["update"]["nodeTooOld"], true, "{st}");
    assert_eq!(st["update"]["available"], false);
    assert_eq!(st["update"]["requiredNodeVersion"], "1.0.0");
    let o = n.run(&["status"]);
    assert!(
        text(&o).contains("blocked: 2.0.0 needs this node at 1.0.0 or later (it runs 0.0.0)"),
        "{}",
        text(&o)
    );
    let o = n.run(&["update"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("needs this node at version 1.0.0"),
        "{}",
        text(&o)
    );
    assert_eq!(sim.count("/update/download"), 0);
    // The factory image records its version: the same box can now update.
    std::fs::create_dir_all(&n.root).unwrap();
    std::fs::write(n.root.join("factory-version"), "1.0.0\n").unwrap();
    let o = n.run(&["check-update"]);
    assert!(
        text(&o).contains("Update available: 1.0.0 -> 2.0.0"),
        "{}",
        text(&o)
    );
    assert!(n.status()["update"].get("nodeTooOld").is_none());
}

#[test]
fn every_real_error_has_its_state_and_exit_code() {
    // License refusals of /api/license/validate.
    for (outcome, want, words) in [
        (LicenseOutcome::Revoked, 10, "revoked"),
        (LicenseOutcome::Expired, 11, "Licence expirée"),
        (LicenseOutcome::Inactive, 12, "Tenant inactif"),
        (LicenseOutcome::Invalid, 10, "Clé de licence invalide"),
    ] {
        let sim = central();
        sim.set_license(KEY, outcome.clone());
        let n = Node::new(&sim);
        let o = n.run(&["validate"]);
        let t = text(&o);
        assert_eq!(code(&o), want, "{outcome:?}: {t}");
        assert!(t.contains(words), "{outcome:?}: {t}");
        // Said once on stdout, not repeated as an error line.
        assert!(!t.contains("error:"), "{outcome:?}: {t}");
    }
    // Usage limit: the backend refuses for good; invalid, exit 10, said plainly.
    let sim = central();
    sim.set_license(
        KEY,
        LicenseOutcome::Valid {
            tenant_id: cybersensei_sim::DEFAULT_TENANT_ID.into(),
            tenant_name: "Acme".into(),
            expires_at: cybersensei_sim::DEFAULT_EXPIRES_AT.into(),
            usage_count: 9,
            max_usage_count: 10,
        },
    );
    let n = Node::new(&sim);
    let o = n.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("10 of 10"), "90 % warning: {}", text(&o));
    let o = n.run(&["status"]);
    assert!(text(&o).contains("10/10"), "{}", text(&o));
    let o = n.run(&["validate"]);
    let t = text(&o);
    assert_eq!(code(&o), 10, "{t}");
    assert!(t.contains("Limite d'utilisation atteinte"), "{t}");
    assert!(t.contains("maxUsageCount"), "{t}");
    assert_eq!(n.status()["license"]["state"], "invalid");

    // Errors of /update/check after a good validation.
    let sim = central();
    let tenant = sim.valid_license(KEY);
    let n = Node::new(&sim);
    assert_eq!(code(&n.run(&["validate"])), 0);
    sim.set_tenant_active(&tenant, false);
    let o = n.run(&["check-update"]);
    assert_eq!(code(&o), 12, "{}", text(&o));
    assert!(text(&o).contains("Tenant inactif"), "{}", text(&o));
    sim.set_tenant_active(&tenant, true);
    sim.set_license(KEY, LicenseOutcome::Revoked);
    let o = n.run(&["check-update"]);
    assert_eq!(code(&o), 10, "{}", text(&o));
    assert!(text(&o).contains("Aucune licence active"), "{}", text(&o));
    // Still ACTIVE in the database but past its expiry: `Licence expirée`.
    sim.set_license(
        KEY,
        LicenseOutcome::Valid {
            tenant_id: tenant.clone(),
            tenant_name: "Acme".into(),
            expires_at: "2020-01-01T00:00:00.000Z".into(),
            usage_count: 1,
            max_usage_count: 1000,
        },
    );
    let o = n.run(&["check-update"]);
    assert_eq!(code(&o), 11, "{}", text(&o));
    assert!(text(&o).contains("Licence expirée"), "{}", text(&o));
    sim.set_license(KEY, LicenseOutcome::default_valid());

    // An update withdrawn between the check and the download: said as such.
    let id = sim.publish_update("1.5.0", package("1.5.0", "0.0.0"), "");
    sim.set_sticky_fault(
        "/update/download",
        Some(cybersensei_sim::Fault::Status(
            400,
            r#"{"statusCode":400,"message":"Cette mise à jour n'est plus active","error":"Bad Request"}"#.into(),
        )),
    );
    let o = n.run(&["update"]);
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("withdrew this update"), "{t}");
    sim.set_sticky_fault("/update/download", None);
    // Deactivated: no longer announced.
    sim.set_update_active(&id, false);
    let o = n.run(&["check-update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!text(&o).contains("Update available"), "{}", text(&o));
}

#[test]
fn an_unreadable_answer_is_a_protocol_error_not_unreachable() {
    let sim = central();
    sim.valid_license(KEY);
    let n = Node::new(&sim);
    assert_eq!(code(&n.run(&["validate"])), 0);
    sim.set_sticky_fault(
        "/update/check",
        Some(cybersensei_sim::Fault::Status(
            200,
            r#"{"available": true, "fileSize": {"n": 1}}"#.into(),
        )),
    );
    let o = n.run(&["check-update"]);
    let t = text(&o);
    assert_eq!(code(&o), 14, "{t}");
    assert!(t.contains("backend answer not understood"), "{t}");
    assert!(!t.contains("unreachable"), "{t}");
}

#[test]
fn a_hundred_restarts_of_run_cost_at_most_two_validations() {
    let sim = central();
    sim.valid_license(KEY);
    let n = Node::new(&sim);
    let mut spent = vec![];
    for i in 0..100 {
        let mut child = n.daemon().spawn().unwrap();
        // The start is over once the license state is written for this run.
        let t0 = Instant::now();
        loop {
            let log = std::fs::read_to_string(&n.log_file).unwrap_or_default();
            if log.matches("license valid for").count() > i {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "run {i} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Half are stopped cleanly, half crash (kill -9).
        if i % 2 == 0 {
            signal(&child, libc::SIGTERM);
        } else {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        spent.push(sim.counters().validations);
    }
    let validations = sim.counters().validations;
    eprintln!("100 restarts of run: {validations} validation(s) spent (after each: {spent:?})");
    assert!(
        validations <= 2,
        "{validations} validations for 100 restarts"
    );
    assert_eq!(sim.license_usage(KEY).unwrap().0, 42 + validations);
    // status shows the usage.
    let o = n.run(&["status"]);
    assert!(
        text(&o).contains(&format!("{}/1000", 42 + validations)),
        "{}",
        text(&o)
    );
}

#[test]
fn a_long_retry_after_is_said_with_its_length_not_waited_silently() {
    let sim = central();
    sim.valid_license(KEY);
    let n = Node::new(&sim);
    assert_eq!(code(&n.run(&["validate"])), 0);
    // One request per 10 minutes: the second check is refused for ~10 min.
    sim.set_rate_limit(1, Duration::from_secs(600));
    assert_eq!(code(&n.run(&["check-update"])), 0);
    let t0 = Instant::now();
    let o = n.run(&["check-update"]);
    let t = text(&o);
    assert_eq!(code(&o), 14, "{t}");
    assert!(t.contains("429"), "{t}");
    assert!(t.contains("10 min"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(
        sim.count("/update/check"),
        2,
        "no retry against a long Retry-After"
    );
    // A short one is waited out, and said.
    sim.set_rate_limit(1, Duration::from_secs(2));
    assert_eq!(code(&n.run(&["check-update"])), 0);
    let o = n.run(&["check-update"]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("waiting 2 s as it asks"), "{t}");
}
