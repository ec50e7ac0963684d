//! A full disk: the box's data partition is a small tmpfs (mounted in a private mount
//! namespace with `unshare -rm`, so the test needs no root and leaves nothing
//! mounted). Two ways to run out: bytes (refused up front by the free-space check)
//! and inodes (statvfs says there is room, extraction hits ENOSPC halfway). Either
//! way: exit 22, the active slot intact, status.json and the telemetry queue valid.

mod update_support;

use cybersensei_sim::Sim;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use update_support::*;

fn unshare_works() -> bool {
    let ok = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok() {
            panic!("unshare -rm does not work here: cannot make a small filesystem");
        }
        eprintln!("SKIPPED: no user/mount namespaces (unshare -rm)");
    }
    ok
}

/// Runs the scenario inside a mount namespace where `fs` is a tmpfs with `opts`;
/// the box (install root, state) lives on it. Returns the exit codes by step and
/// leaves a copy of the filesystem in `out/fs`.
fn scenario(rig: &Rig, opts: &str, v1: &Path, v2: &Path) -> Value {
    let fs = rig.dir.path().join("fs");
    let out = rig.dir.path().join("out");
    std::fs::create_dir_all(&fs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let agent = rig.cmd(&[]);
    let bin = agent.get_program().to_string_lossy().into_owned();
    let cfg = rig.config.display();
    let script = format!(
        r#"set -u
mount -t tmpfs -o {opts} tmpfs '{fs}' || exit 99
A() {{ '{bin}' -c '{cfg}' "$@"; }}
A validate >'{out}/0.log' 2>&1 || exit 98
A install '{v1}' >'{out}/1.log' 2>&1; r1=$?
A install '{v2}' >'{out}/2.log' 2>&1; r2=$?
# The backend goes away: the sample must be queued on the full filesystem.
sed -i 's#{url}#https://127.0.0.1:9#' '{cfg}'
A telemetry --once >'{out}/3.log' 2>&1; r3=$?
A status --json >'{out}/status.json' 2>'{out}/4.log'; r4=$?
df -i '{fs}' >'{out}/df.txt'; df '{fs}' >>'{out}/df.txt'
cp -a '{fs}' '{out}/fs'
printf '{{"install_v1": %d, "install_v2": %d, "telemetry": %d, "status": %d}}' $r1 $r2 $r3 $r4 >'{out}/codes.json'
"#,
        fs = fs.display(),
        out = out.display(),
        v1 = v1.display(),
        v2 = v2.display(),
        url = rig.cfg["backend"]["url"].as_str().unwrap(),
    );
    let mut c = Command::new("unshare");
    c.args(["-rm", "sh", "-c", &script]);
    for (k, v) in agent.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c.output().unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    serde_json::from_slice(&std::fs::read(out.join("codes.json")).unwrap()).unwrap()
}

/// A box whose install root and state dir are on `fs` (mounted by the scenario).
fn rig_on_small_fs(sim: &Sim) -> Rig {
    let mut rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let fs = rig.dir.path().join("fs");
    rig.set("install", "root", json!(fs.join("opt").to_str().unwrap()));
    rig.cfg["state_dir"] = json!(fs.join("state").to_str().unwrap());
    rig.write_config();
    rig
}

fn check_after(rig: &Rig, codes: &Value, v1: &[E], case: &str) {
    let out = rig.dir.path().join("out");
    let log = |n: u32| std::fs::read_to_string(out.join(format!("{n}.log"))).unwrap_or_default();
    println!(
        "{case}: {codes}\n  install v2 said: {}\n{}",
        log(2).lines().last().unwrap_or(""),
        std::fs::read_to_string(out.join("df.txt")).unwrap_or_default()
    );
    assert_eq!(codes["install_v1"], 0, "{case}: v1: {}", log(1));
    assert_eq!(codes["install_v2"], 22, "{case}: v2: {}", log(2));
    // The backend is unreachable in this box: the sample is queued (exit 1).
    assert_eq!(codes["telemetry"], 1, "{case}: telemetry: {}", log(3));
    assert_eq!(codes["status"], 0, "{case}: status: {}", log(4));
    let copy = out.join("fs");
    let cur = std::fs::read_link(copy.join("opt/current")).unwrap();
    assert_eq!(cur, Path::new("slots/a"), "{case}");
    assert_eq!(
        tree(&copy.join("opt/slots/a")),
        expected_tree(v1),
        "{case}: active slot damaged"
    );
    let st: Value =
        serde_json::from_slice(&std::fs::read(out.join("status.json")).unwrap()).unwrap();
    assert_eq!(st["version"], "1.0.0", "{case}: {st}");
    assert_eq!(st["update"]["state"], "failed", "{case}: {st}");
    assert_eq!(st["telemetry"]["queued"], 1, "{case}: {st}");
    // status.json on the full filesystem parses too (not only `status --json`).
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(copy.join("state/status.json")).unwrap()).unwrap();
    assert_eq!(on_disk["version"], "1.0.0");
    assert!(
        !copy.join("state/update/journal.json").exists(),
        "{case}: journal left"
    );
    let queued: Vec<_> = std::fs::read_dir(copy.join("state/telemetry/queue"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sample"))
        .collect();
    assert_eq!(queued.len(), 1, "{case}");
}

#[test]
fn out_of_bytes_is_refused_before_writing() {
    if !unshare_works() {
        return;
    }
    let sim = tls_sim();
    let rig = rig_on_small_fs(&sim);
    let v1 = app("1.0.0");
    let mut v2 = app("2.0.0");
    v2.push(file("app/big.bin", &noise(3 << 20, 7)));
    let p1 = rig.package("v1.zip", &zip(&v1));
    let p2 = rig.package("v2.zip", &zip(&v2));
    let codes = scenario(&rig, "size=2m", &p1, &p2);
    check_after(&rig, &codes, &v1, "2 MiB filesystem, 3 MiB update");
}

#[test]
fn out_of_inodes_halfway_through_extraction_is_22_and_the_active_slot_is_kept() {
    if !unshare_works() {
        return;
    }
    let sim = tls_sim();
    let rig = rig_on_small_fs(&sim);
    let v1 = app("1.0.0");
    let mut v2 = app("2.0.0");
    for i in 0..60 {
        v2.push(file(&format!("app/many/f{i:02}.txt"), b"x"));
    }
    let p1 = rig.package("v1.zip", &zip(&v1));
    let p2 = rig.package("v2.zip", &zip(&v2));
    let codes = scenario(&rig, "size=8m,nr_inodes=48", &p1, &p2);
    check_after(&rig, &codes, &v1, "48 inodes, 60-file update");
}
