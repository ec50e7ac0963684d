//! The kill -9 matrix: real updates from the simulator over TLS through the real
//! binary, SIGKILLed (debug-build hook `CYBERSENSEI_TEST_CRASH_AT`) at every persisted
//! journal step, at 20 byte offsets inside the download and at every entry of the
//! extraction; after each, a restart as the init script would do it, then the
//! invariants. Prints the table of points and outcomes (`--nocapture`).

mod update_support;

use cybersensei_sim::Sim;
use update_support::*;

/// Version 2: 30 small files plus a 320 KiB incompressible blob, so the download
/// and the extraction both have many points to be killed at.
fn v2_entries(version: &str) -> Vec<E> {
    let mut v = app(version);
    for i in 0..30 {
        v.push(file(
            &format!("app/lib/part{i:02}.txt"),
            format!("{version} part {i}\n").repeat(40).as_bytes(),
        ));
    }
    v.push(file(
        "app/blob.bin",
        &noise(320 * 1024, 0x9E37_79B9_7F4A_7C15),
    ));
    v
}

/// Files in state_dir that belong to a download in progress.
fn partial_files(rig: &Rig) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![rig.state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let n = p.to_string_lossy().into_owned();
                if n.ends_with(".part") || n.ends_with(".tmp") || n.contains(".tmp.") {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// status.json and the journal (if any) parse, and agree with `current`.
fn state_files_agree(rig: &Rig, ctx: &str) {
    let st = rig.status();
    let cur = rig.current();
    if let Some(c) = &cur {
        let slot = c.trim_start_matches("slots/");
        assert_eq!(st["slot"], slot, "{ctx}: status.json names another slot");
    }
    let j = rig.state.join("update/journal.json");
    if j.exists() {
        let _: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap())
            .unwrap_or_else(|e| panic!("{ctx}: journal does not parse: {e}"));
    }
}

struct Outcome {
    point: String,
    after_restart: String,
    next: String,
}

fn one_point(sim: &Sim, point: &str, v1: &[E], v2: &[E], unhealthy: bool) -> Outcome {
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    assert_eq!(code(&rig.install(&zip(v1))), 0, "{point}: v1");
    let o = rig.run_crashing(&["update"], point);
    assert!(killed(&o), "{point}: not killed: {}", text(&o));
    // The box comes back: the init script starts the agent, whose first act is the
    // journal's recovery (any locked command does it).
    restart(&rig);
    state_files_agree(&rig, point);
    let after = assert_complete(&rig, &[("1.0.0", v1), ("2.0.0", v2)], point);
    // The next update completes (or finds it done); an unhealthy v2 rolls back.
    let o = rig.run(&["update"]);
    let next = if unhealthy {
        assert!(matches!(code(&o), 0 | 20), "{point}: {}", text(&o));
        assert_complete(&rig, &[("1.0.0", v1)], point);
        "rolled back to 1.0.0".to_string()
    } else {
        assert_eq!(code(&o), 0, "{point}: next update: {}", text(&o));
        let v = assert_complete(&rig, &[("2.0.0", v2)], point);
        format!("update ok, {v}")
    };
    state_files_agree(&rig, point);
    assert!(
        partial_files(&rig).is_empty(),
        "{point}: partial files left: {:?}",
        partial_files(&rig)
    );
    Outcome {
        point: point.to_string(),
        after_restart: after,
        next,
    }
}

#[test]
fn kill_matrix_every_step_download_offset_and_extracted_entry() {
    let sim = tls_sim();
    let v1 = app("1.0.0");
    let v2 = v2_entries("2.0.0");
    let v2_zip = zip(&v2);
    sim.publish_update("2.0.0", v2_zip.clone(), "- matrix");

    let mut points: Vec<String> = ["staging", "switching", "switched", "committed"]
        .iter()
        .map(|s| format!("journal:{s}"))
        .collect();
    points.push("switch:renamed".into());
    let size = v2_zip.len() as u64;
    for k in 1..=20u64 {
        points.push(format!("download:{}", size * k / 21));
    }
    let entries = v2.len();
    for n in 1..=entries {
        points.push(format!("extract:{n}"));
    }
    let started = std::time::Instant::now();
    // Two workers: each point is its own box; the simulator serves both.
    let half = points.len() / 2;
    let (a, b) = points.split_at(half);
    let mut table = std::thread::scope(|s| {
        let run = |ps: &[String]| -> Vec<Outcome> {
            ps.iter()
                .map(|p| one_point(&sim, p, &v1, &v2, false))
                .collect()
        };
        let hb = s.spawn(move || run(b));
        let mut out = run(a);
        out.extend(hb.join().unwrap());
        out
    });

    // The rollback path has its own persisted step.
    let mut bad = v2.clone();
    bad.push(file("unhealthy", b"1"));
    sim.publish_update("2.0.0", zip(&bad), "- unhealthy");
    for p in ["journal:switched", "journal:rolling-back"] {
        let mut o = one_point(&sim, p, &v1, &bad, true);
        o.point = format!("{p} (unhealthy v2)");
        table.push(o);
    }

    println!("{:<34} {:<14} next run", "killed at", "after restart");
    for o in &table {
        println!("{:<34} {:<14} {}", o.point, o.after_restart, o.next);
    }
    println!(
        "{} points in {:.1} s",
        table.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(table.len() >= 50, "only {} points", table.len());
}
