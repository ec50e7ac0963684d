//! kill -9 of the real process at each journal step and inside extraction (through
//! the debug-build hook `CYBERSENSEI_TEST_CRASH_AT`, which SIGKILLs the process at a
//! named point), then a restart: `current` must resolve to a complete slot whose
//! files match the package, and the next install must complete.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::json;

#[test]
fn kill_at_each_step_then_restart_lands_on_a_complete_slot() {
    let v1 = app("1.0.0");
    let v2 = app("2.0.0");
    let points = [
        ("journal:staging", "1.0.0"),
        ("extract:1", "1.0.0"),
        ("extract:4", "1.0.0"),
        ("journal:switching", "1.0.0"),
        ("switch:renamed", "1.0.0"),
        ("journal:switched", "2.0.0"),
        ("journal:committed", "2.0.0"),
    ];
    for (point, expect) in points {
        let rig = Node::offline();
        assert_eq!(code(&rig.install(&zip(&v1))), 0);
        let pkg = rig.package("v2.zip", &zip(&v2));
        let o = rig.run_crashing(&["install", pkg.to_str().unwrap()], point);
        assert!(killed(&o), "{point}: not killed: {}", text(&o));
        restart(&rig);
        let got = assert_complete(&rig, &[("1.0.0", &v1), ("2.0.0", &v2)], point);
        assert_eq!(got, expect, "{point}");
        // The next install completes (or is a no-op re-install of the same version).
        let o = rig.run(&["install", pkg.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{point}: next install: {}", text(&o));
        assert_complete(&rig, &[("2.0.0", &v2)], point);
        eprintln!("{point:>20}: after restart {got}, next install ok");
    }
}

#[test]
fn kill_during_rollback_finishes_the_rollback() {
    let rig = Node::offline();
    let v1 = app("1.0.0");
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let mut v2 = app("2.0.0");
    v2.push(file("unhealthy", b"1"));
    let pkg = rig.package("v2.zip", &zip(&v2));
    let o = rig.run_crashing(&["install", pkg.to_str().unwrap()], "journal:rolling-back");
    assert!(killed(&o), "{}", text(&o));
    restart(&rig);
    assert_complete(&rig, &[("1.0.0", &v1)], "rolling-back");
    assert_eq!(rig.status()["update"]["state"], "rolled-back");
}

#[test]
fn repeated_crashes_after_the_switch_roll_back_after_max_boot_attempts() {
    let mut rig = Node::offline();
    rig.set("updates", "max_boot_attempts", json!(2));
    let v1 = app("1.0.0");
    let v2 = app("2.0.0");
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let pkg = rig.package("v2.zip", &zip(&v2));
    // Every start of the new version dies right after recording the attempt.
    let o = rig.run_crashing(&["install", pkg.to_str().unwrap()], "journal:switched");
    assert!(killed(&o));
    let o = rig.run_crashing(&["validate"], "journal:switched");
    assert!(killed(&o), "second start dies too: {}", text(&o));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig.state_dir.join("update/journal.json")).unwrap())
            .unwrap();
    assert_eq!(j["attempts"], 2);
    // Third start: over the limit, the agent rolls back instead of trying again.
    let o = rig.run_crashing(&["validate"], "journal:switched");
    assert!(!killed(&o), "{}", text(&o));
    assert_complete(&rig, &[("1.0.0", &v1)], "boot attempts");
    assert_eq!(rig.status()["update"]["state"], "rolled-back");
    assert!(rig.status()["update"]["lastError"]
        .as_str()
        .unwrap()
        .contains("max_boot_attempts"));
}
