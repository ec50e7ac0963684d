//! The kill -9 matrix for a content package with install hooks (the companion of
//! `fault_kill_matrix.rs`, which covers full packages and the download): an update
//! 1.0.0 (full) -> 2.0.0 (content: `version.json`, a manifest v2 with deletions,
//! replaced and added files, `hooks/post-install` and `hooks/post-switch`) from the
//! simulator, SIGKILLed at every journal step, inside the copy of the active slot,
//! at every extracted entry and right after each hook. Restarted as the init script
//! does (`run`), then:
//! - `current` names a recorded slot whose tree is exactly 1.0.0 or exactly 1.0.0
//!   with 2.0.0 applied (the other slot untouched), status.json agrees, no journal;
//! - the next `update` completes, with no partial file left.
//!
//! `cargo test --test fault_kill_content -- --nocapture` prints the table.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn v1() -> Vec<E> {
    let mut e = vec![
        E::Dir("bin/".into()),
        E::File("bin/run".into(), b"#!/bin/sh\nexit 0\n".to_vec(), 0o755),
        file("VERSION", b"1.0.0\n"),
        E::Dir("data/".into()),
    ];
    for i in 0..8 {
        e.push(file(&format!("data/f{i:02}.bin"), &noise(4096, 100 + i)));
    }
    e.push(E::Link("data/latest".into(), "f07.bin".into()));
    e.push(file("exercises.json", b"{\"version\":\"1.0.0\"}"));
    e
}

/// The content package 2.0.0; `unhealthy` adds the file the health check refuses.
fn v2(log: &Path, unhealthy: bool) -> Vec<E> {
    let log = log.display();
    let mut e = vec![
        version_json(json!({"version": "2.0.0", "changelog": "- content",
            "requiredNodeVersion": "1.0.0"})),
        file("exercises.json", b"{\"version\":\"2.0.0\"}"),
        file("data/f01.bin", &noise(4096, 999)),
        file("migrations/changelog.xml", b"<databaseChangeLog/>"),
        exe(
            "hooks/post-install",
            &format!("#!/bin/sh\necho \"post-install $1\" >> '{log}'\n"),
        ),
        exe(
            "hooks/post-switch",
            &format!("#!/bin/sh\necho \"post-switch $1\" >> '{log}'\n"),
        ),
    ];
    if unhealthy {
        e.push(file("unhealthy", b"1"));
    }
    let m = manifest_v2("2.0.0", None, &e, &["data/f00.bin"]);
    e.push(file("manifest.json", &m));
    e
}

/// 1.0.0 with 2.0.0 applied.
fn applied(old: &[E], pkg: &[E]) -> BTreeMap<String, String> {
    let mut t = expected_tree(old);
    t.remove("data/f00.bin");
    t.extend(expected_tree(pkg));
    t
}

struct Row {
    point: String,
    at_kill: String,
    after_restart: String,
    ok: Result<(), String>,
}

fn points(entries: usize, copied: usize) -> Vec<(String, &'static str, bool)> {
    let mut v = vec![("journal:staging".to_string(), "1.0.0", false)];
    for n in 1..=copied {
        v.push((format!("copy:{n}"), "1.0.0", false));
    }
    for n in 1..=entries {
        v.push((format!("extract:{n}"), "1.0.0", false));
    }
    for (p, want, bad) in [
        ("hook:post-install", "1.0.0", false),
        ("journal:switching", "1.0.0", false),
        ("switch:renamed", "1.0.0", false),
        ("journal:switched", "2.0.0", false),
        ("hook:post-switch", "2.0.0", false),
        ("journal:committed", "2.0.0", false),
        ("journal:rolling-back", "1.0.0", true),
    ] {
        v.push((p.to_string(), want, bad));
    }
    v
}

/// `current` -> a recorded slot holding exactly one of the trees; status agrees;
/// the other slot is recorded and exactly one of the trees, or unrecorded (empty
/// unless `unrecorded_ok`: a slot that failed its health check keeps its files
/// without a record until the next update clears it). Returns the version.
fn check(
    rig: &Node,
    trees: &[(&str, BTreeMap<String, String>)],
    unrecorded_ok: bool,
) -> Result<String, String> {
    let cur = rig.current().ok_or("no current")?;
    let slot = cur.strip_prefix("slots/").ok_or("current elsewhere")?;
    let rec = read_json(&rig.root.join(format!("slots/{slot}.json")))?;
    let version = rec["version"].as_str().ok_or("record without version")?;
    let want = trees
        .iter()
        .find(|(v, _)| *v == version)
        .ok_or_else(|| format!("unexpected version {version}"))?;
    if tree(&rig.slot(slot)) != want.1 {
        return Err(format!("slot {slot} is not exactly {version}"));
    }
    let st = read_json(&rig.state_dir.join("status.json"))?;
    if st["version"] != version || st["slot"] != slot {
        return Err(format!("status says {} in {}", st["version"], st["slot"]));
    }
    let state = st["update"]["state"].as_str().unwrap_or("?");
    if ["downloading", "verifying", "installing", "health-check"].contains(&state) {
        return Err(format!("state {state} with nothing in flight"));
    }
    if rig.state_dir.join("update/journal.json").exists() {
        return Err("journal left".into());
    }
    let other = if slot == "a" { "b" } else { "a" };
    let t = tree(&rig.slot(other));
    if rig.root.join(format!("slots/{other}.json")).exists() {
        if !trees.iter().any(|(_, w)| *w == t) {
            return Err(format!("slot {other} recorded but damaged"));
        }
    } else if !t.is_empty() && !unrecorded_ok {
        return Err(format!("slot {other}: files without a record"));
    }
    Ok(version.to_string())
}

fn run_point(name: &str, want: &str, bad: bool) -> Row {
    let mut row = Row {
        point: name.to_string(),
        at_kill: String::new(),
        after_restart: String::new(),
        ok: Ok(()),
    };
    row.ok = (|| -> Result<(), String> {
        let sim = tls_sim();
        let mut rig = Node::updates(&sim);
        rig.set("telemetry", "enabled", json!(false));
        rig.set("updates", "check_interval", json!(86400));
        let log = rig.dir.path().join("hooks.log");
        let old = v1();
        let o = rig.install(&zip(&old));
        if code(&o) != 0 {
            return Err(format!("v1: {}", text(&o)));
        }
        let first = v2(&log, bad);
        sim.publish_update("2.0.0", zip(&first), "- content");
        let o = rig.run_crashing(&["update"], name);
        if !killed(&o) {
            return Err(format!("not killed (exit {}): {}", code(&o), text(&o)));
        }
        row.at_kill = read_json(&rig.state_dir.join("update/journal.json"))
            .map(|j| format!("journal {}", j["step"].as_str().unwrap_or("?")))
            .unwrap_or_else(|_| "no journal".into());
        restart_run(&rig, &sim)?;
        let trees = [
            ("1.0.0", expected_tree(&old)),
            ("2.0.0", applied(&old, &first)),
        ];
        let version = check(&rig, &trees, bad)?;
        let st = read_json(&rig.state_dir.join("status.json"))?;
        row.after_restart = format!(
            "{version} {}",
            st["update"]["state"].as_str().unwrap_or("?")
        );
        if version != want {
            return Err(format!("after restart on {version}, expected {want}"));
        }
        let good = v2(&log, false);
        if bad {
            sim.publish_update("2.0.0", zip(&good), "- fixed");
        }
        let o = rig.run(&["update"]);
        if code(&o) != 0 {
            return Err(format!("next update exit {}: {}", code(&o), text(&o)));
        }
        let trees = [
            ("1.0.0", expected_tree(&old)),
            ("2.0.0", applied(&old, &good)),
        ];
        if check(&rig, &trees, false)? != "2.0.0" {
            return Err("next update did not land on 2.0.0".into());
        }
        let left: Vec<String> = tree(&rig.state_dir)
            .into_keys()
            .chain(tree(&rig.root).into_keys())
            .filter(|k| {
                k.contains(".tmp")
                    || k.ends_with(".zip")
                    || k.ends_with("download.part")
                    || k.ends_with("journal.json")
            })
            .collect();
        if !left.is_empty() {
            return Err(format!("partial files left: {left:?}"));
        }
        Ok(())
    })();
    row
}

#[test]
fn kill_matrix_content_package_with_hooks() {
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let pkg = v2(&scratch.path().join("x"), false);
    let copied = v1().iter().filter(|e| matches!(e, E::File(..))).count();
    let pts = points(pkg.len(), copied);
    let rows = in_parallel(&pts, 2, |(name, want, bad)| run_point(name, want, *bad));
    println!(
        "\ncontent kill matrix: {} points, {} package entries, {copied} files copied, {:.1} s",
        rows.len(),
        pkg.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "| {:<22} | {:<20} | {:<16} | result |",
        "kill point", "at kill", "after restart"
    );
    let mut failures = Vec::new();
    for row in &rows {
        let r = match &row.ok {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failures.push(format!("{}: {e}", row.point));
                "FAIL".into()
            }
        };
        println!(
            "| {:<22} | {:<20} | {:<16} | {r} |",
            row.point, row.at_kill, row.after_restart
        );
    }
    assert_eq!(rows.len(), pts.len());
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
