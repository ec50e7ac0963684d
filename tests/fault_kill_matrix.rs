//! The kill -9 matrix (issue 8, part 1): real updates from the simulator through the
//! real binary, killed with SIGKILL (the debug-build hook `CYBERSENSEI_TEST_CRASH_AT`)
//! at every persisted journal step, at byte offsets inside the download and at entry
//! counts inside the extraction. After each kill the agent is restarted the way the
//! init script does it (`run`, whose start recovers the journal), then:
//! - `current` names a recorded slot whose tree is exactly one package and whose
//!   files match the digests of that package's manifest;
//! - status.json and the journal parse and agree (no journal left after recovery,
//!   no in-flight `update.state` without a journal, version/slot = `current`);
//! - the next `update` completes (resuming a partial download with `Range`);
//! - after it no partial file is left anywhere (download files, journal, temp files,
//!   `.current.tmp`), and the other slot is either empty or a complete old version.
//!
//! `cargo test --test fault_kill_matrix -- --nocapture` prints the table.

use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::{Fault, Sim, SimOptions};
use serde_json::json;
use std::time::Instant;

/// A small package: 16 incompressible 4 KiB files (so the download has many chunks
/// and the extraction many entries), a link, the version and a manifest of digests.
fn package(version: &str, unhealthy: bool) -> Vec<E> {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ version.len() as u64;
    for b in version.bytes() {
        seed = seed.rotate_left(7) ^ b as u64;
    }
    let mut noise = |n: usize| -> Vec<u8> {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        package::noise(n, seed)
    };
    let mut e = vec![
        E::Dir("bin/".into()),
        E::File("bin/run".into(), b"#!/bin/sh\nexit 0\n".to_vec(), 0o755),
        file("VERSION", format!("{version}\n").as_bytes()),
        file("version.json", &package::full_version_json(version)),
        E::Dir("data/".into()),
    ];
    for i in 0..16 {
        e.push(file(&format!("data/f{i:02}.bin"), &noise(4096)));
    }
    e.push(E::Link("data/latest".into(), "f15.bin".into()));
    if unhealthy {
        e.push(file("unhealthy", b"1"));
    }
    let m = manifest(version, &e);
    e.push(file("manifest.json", &m));
    e
}

/// What a point is expected to end on after the restart.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Old,
    New,
}

struct Point {
    name: String,
    expect: Expect,
    /// The update installs a package that fails its health check (for `rolling-back`).
    unhealthy: bool,
    /// Serve the download slowly in small chunks (download points).
    slow: bool,
}

struct Row {
    point: String,
    at_kill: String,
    after_restart: String,
    next_update: String,
    ok: Result<(), String>,
}

fn points(pkg_len: u64, entries: usize) -> Vec<Point> {
    let p = |name: String, expect, unhealthy, slow| Point {
        name,
        expect,
        unhealthy,
        slow,
    };
    let mut v = vec![
        p("journal:staging".into(), Expect::Old, false, false),
        p("journal:switching".into(), Expect::Old, false, false),
        p("switch:renamed".into(), Expect::Old, false, false),
        p("journal:switched".into(), Expect::New, false, false),
        p("journal:committed".into(), Expect::New, false, false),
        p("journal:rolling-back".into(), Expect::Old, true, false),
    ];
    // 26 offsets across the body: the first byte, evenly spread ones, the last byte.
    let mut offsets = vec![1u64];
    for i in 1..25 {
        offsets.push(pkg_len * i / 25);
    }
    offsets.push(pkg_len);
    for o in offsets {
        v.push(p(format!("download:{o}"), Expect::Old, false, true));
    }
    for n in 1..=entries {
        v.push(p(format!("extract:{n}"), Expect::Old, false, false));
    }
    v
}

/// `current` → a recorded slot holding exactly one of `pkgs`, its files matching the
/// digests of its manifest; status.json agrees. Returns (slot, version).
fn check_current(rig: &Node, pkgs: &[(&str, &[E])]) -> Result<(String, String), String> {
    let cur = rig.current().ok_or("no current")?;
    let slot = cur
        .strip_prefix("slots/")
        .ok_or_else(|| format!("current -> {cur}"))?
        .to_string();
    let version = check_slot(rig, &slot, pkgs)?;
    let st = read_json(&rig.state_dir.join("status.json"))?;
    if st["version"] != version.as_str() || st["slot"] != slot.as_str() {
        return Err(format!(
            "status says {} in slot {}, current is {version} in {slot}",
            st["version"], st["slot"]
        ));
    }
    Ok((slot, version))
}

/// A slot with a record: its tree is exactly the package of the recorded version and
/// every file matches the digest its manifest lists. Returns the version.
fn check_slot(rig: &Node, slot: &str, pkgs: &[(&str, &[E])]) -> Result<String, String> {
    let rec = read_json(&rig.root.join(format!("slots/{slot}.json")))
        .map_err(|e| format!("slot {slot} has no record: {e}"))?;
    let version = rec["version"].as_str().ok_or("record without version")?;
    let entries = pkgs
        .iter()
        .find(|(v, _)| *v == version)
        .ok_or_else(|| format!("slot {slot}: unexpected version {version}"))?
        .1;
    let dir = rig.slot(slot);
    if tree(&dir) != expected_tree(entries) {
        return Err(format!("slot {slot}: tree differs from package {version}"));
    }
    let m = read_json(&dir.join("manifest.json"))?;
    let files = m["files"].as_object().ok_or("manifest without files")?;
    for (path, digest) in files {
        let p = dir.join(path);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| format!("{path}: {e}"))?;
        let data = if meta.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else {
            std::fs::read(&p).map_err(|e| format!("{path}: {e}"))?
        };
        if sha256(&data) != digest.as_str().unwrap_or_default() {
            return Err(format!("slot {slot}: {path} does not match its digest"));
        }
    }
    Ok(version.to_string())
}

/// status.json and the journal parse and agree: recovery left no journal, and no
/// in-flight state is reported without one.
fn check_status_and_journal(rig: &Node) -> Result<String, String> {
    let st = read_json(&rig.state_dir.join("status.json"))?;
    let journal = rig.state_dir.join("update/journal.json");
    if journal.exists() {
        let j = read_json(&journal)?;
        return Err(format!("journal left after recovery: step {}", j["step"]));
    }
    let state = st["update"]["state"].as_str().unwrap_or("?").to_string();
    if ["downloading", "verifying", "installing", "health-check"].contains(&state.as_str()) {
        return Err(format!(
            "status.json says update.state {state} with no update in flight"
        ));
    }
    Ok(state)
}

/// No partial file anywhere once an update succeeded.
fn check_no_leftovers(rig: &Node) -> Result<(), String> {
    let mut bad = Vec::new();
    for (base, t) in [("state", tree(&rig.state_dir)), ("opt", tree(&rig.root))] {
        for name in t.keys() {
            let leaf = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            if leaf.contains(".tmp")
                || [
                    "download.part",
                    "package.zip",
                    "download.json",
                    "journal.json",
                ]
                .contains(&leaf)
            {
                bad.push(format!("{base}/{name}"));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("partial files left: {bad:?}"))
    }
}

fn part_size(rig: &Node) -> Option<u64> {
    std::fs::metadata(rig.state_dir.join("update/download.part"))
        .ok()
        .map(|m| m.len())
}

fn run_point(pt: &Point, v1: &[E], v2: &[E], v2_bad: &[E]) -> Row {
    let mut row = Row {
        point: pt.name.clone(),
        at_kill: String::new(),
        after_restart: String::new(),
        next_update: String::new(),
        ok: Ok(()),
    };
    row.ok = (|| -> Result<(), String> {
        let sim = Sim::start(SimOptions {
            tls: true,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        sim.valid_license(UPDATE_KEY);
        let mut rig = Node::updates(&sim);
        // The restart must not start an update check on its own (splay over a day).
        rig.set("telemetry", "enabled", json!(false));
        rig.set("updates", "check_interval", json!(86400));
        let o = rig.install(&zip(v1));
        if code(&o) != 0 {
            return Err(format!("v1: {}", text(&o)));
        }
        let first = if pt.unhealthy { v2_bad } else { v2 };
        sim.publish_update("2.0.0", zip(first), "- next");
        if pt.slow {
            sim.set_sticky_fault(
                "/update/download",
                Some(Fault::SlowBody {
                    chunk: 1024,
                    delay_ms: 1,
                }),
            );
        }
        let o = rig.run_crashing(&["update"], &pt.name);
        if !killed(&o) {
            return Err(format!("not killed (exit {}): {}", code(&o), text(&o)));
        }
        let j = read_json(&rig.state_dir.join("update/journal.json"))
            .ok()
            .map(|j| j["step"].as_str().unwrap_or("?").to_string());
        row.at_kill = match (j, part_size(&rig)) {
            (Some(s), _) => format!("journal {s}"),
            (None, Some(n)) => format!("part {n} B"),
            (None, None) => "no journal".into(),
        };
        let had_part = part_size(&rig).unwrap_or(0);
        sim.clear_faults();

        restart_run(&rig, &sim)?;
        let pkgs: [(&str, &[E]); 2] = [("1.0.0", v1), ("2.0.0", first)];
        let (slot, version) = check_current(&rig, &pkgs)?;
        let state = check_status_and_journal(&rig)?;
        row.after_restart = format!("{slot} {version} {state}");
        let want = match pt.expect {
            Expect::Old => "1.0.0",
            Expect::New => "2.0.0",
        };
        if version != want {
            return Err(format!("after restart on {version}, expected {want}"));
        }

        if pt.unhealthy {
            // That update was refused for good; a fixed one is published.
            sim.publish_update("2.0.0", zip(v2), "- fixed");
        }
        let downloads_before = sim.count("/update/download/");
        let o = rig.run(&["update"]);
        if code(&o) != 0 {
            return Err(format!("next update exit {}: {}", code(&o), text(&o)));
        }
        let ranges = sim.download_ranges();
        let new_ranges = &ranges[downloads_before.min(ranges.len())..];
        let fetched = match new_ranges.first() {
            None => "no download".to_string(),
            Some(None) => "full download".to_string(),
            Some(Some(r)) => format!("resumed {r}"),
        };
        // A partial download is resumed, never fetched again from zero (a complete
        // one is not fetched at all).
        if pt.slow && had_part > 0 && matches!(new_ranges.first(), Some(None)) {
            return Err(format!("{had_part} bytes on disk, downloaded from zero"));
        }
        let pkgs: [(&str, &[E]); 2] = [("1.0.0", v1), ("2.0.0", v2)];
        let (slot, version) = check_current(&rig, &pkgs)?;
        if version != "2.0.0" {
            return Err(format!("next update left {version}"));
        }
        row.next_update = format!("ok {slot} {version}, {fetched}");
        let st = read_json(&rig.state_dir.join("status.json"))?;
        if st["update"]["state"] != "idle" {
            return Err(format!("after the update: state {}", st["update"]["state"]));
        }
        check_status_and_journal(&rig)?;
        check_no_leftovers(&rig)?;
        // The other slot: empty, or a complete old version.
        let other = if slot == "a" { "b" } else { "a" };
        if rig.root.join(format!("slots/{other}.json")).exists() {
            check_slot(&rig, other, &pkgs)?;
        } else if !tree(&rig.slot(other)).is_empty() {
            return Err(format!("slot {other}: files without a record"));
        }
        Ok(())
    })();
    row
}

#[test]
fn kill_matrix_every_point_recovers_and_the_next_update_completes() {
    let started = Instant::now();
    let v1 = package("1.0.0", false);
    let v2 = package("2.0.0", false);
    let v2_bad = package("2.0.0", true);
    let pkg_len = zip(&v2).len() as u64;
    let pts = points(pkg_len, v2.len());
    assert!(pts.len() >= 50, "{} points", pts.len());

    // Two workers (CI has two cores); each point has its own simulator and box.
    let rows = in_parallel(&pts, 2, |pt| run_point(pt, &v1, &v2, &v2_bad));
    println!(
        "\nkill matrix: {} points, package {pkg_len} bytes, {} entries, {:.1} s",
        rows.len(),
        v2.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "| {:<22} | {:<20} | {:<22} | {:<42} | result |",
        "kill point", "at kill", "after restart", "next update"
    );
    println!(
        "|{:-<24}|{:-<22}|{:-<24}|{:-<44}|{:-<8}|",
        "", "", "", "", ""
    );
    let mut failures = Vec::new();
    for row in &rows {
        let result = match &row.ok {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failures.push(format!("{}: {e}", row.point));
                "FAIL".to_string()
            }
        };
        println!(
            "| {:<22} | {:<20} | {:<22} | {:<42} | {result} |",
            row.point, row.at_kill, row.after_restart, row.next_update
        );
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
