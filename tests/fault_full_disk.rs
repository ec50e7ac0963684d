//! Full disk (issue 8, part 5): install.root and state_dir on a size-limited tmpfs
//! (mounted in a private mount namespace by `unshare -rm`, or `unshare -m` as root,
//! and reached from here through `/proc/<holder>/root/...`). Updates that do not fit
//! — the download, the unpacked tree (refused by the space check), and a tree that
//! passes the byte check but runs out of inodes halfway through the extraction (a
//! real ENOSPC from the kernel) — must end in exit 22 with the active slot untouched,
//! status.json valid and the telemetry queue intact (its samples are delivered
//! afterwards). Skipped with a printed reason when no tmpfs can be mounted, except
//! under `CI=true` where that fails.

use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::{Fault, Sim};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A tmpfs held mounted by a child process in its own mount namespace.
struct SmallFs {
    holder: Child,
    path: PathBuf,
    _mountpoint: tempfile::TempDir,
}

impl SmallFs {
    fn mount(opts: &str) -> Result<SmallFs, String> {
        let mp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut errors = Vec::new();
        for flags in ["-rm", "-m"] {
            let mut child = Command::new("unshare")
                .arg(flags)
                .args([
                    "sh",
                    "-c",
                    "mount -t tmpfs -o \"$1\" tmpfs \"$0\" && echo ready && exec sleep 600",
                ])
                .arg(mp.path())
                .arg(opts)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("unshare: {e}"))?;
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.trim() == "ready" {
                let path = PathBuf::from(format!("/proc/{}/root", child.id()))
                    .join(mp.path().strip_prefix("/").map_err(|e| e.to_string())?);
                return Ok(SmallFs {
                    holder: child,
                    path,
                    _mountpoint: mp,
                });
            }
            let _ = child.kill();
            let o = child.wait_with_output().map_err(|e| e.to_string())?;
            errors.push(format!(
                "unshare {flags}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(errors.join("; "))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A box whose install.root and state_dir live on `fs`.
fn rig_on(fs: &SmallFs, sim: &Sim) -> Node {
    let mut rig = Node::updates(sim);
    rig.root = fs.path.join("opt");
    rig.state_dir = fs.path.join("state");
    rig.cfg["install"]["root"] = json!(rig.root.to_str().unwrap());
    rig.cfg["state_dir"] = json!(rig.state_dir.to_str().unwrap());
    rig.write_config();
    rig
}

#[test]
fn updates_that_do_not_fit_are_refused_cleanly() {
    // (case, tmpfs options, the v2 package)
    let mut many = app("2.0.0");
    for i in 0..120 {
        many.push(file(&format!("many/f{i:03}"), b"x"));
    }
    let mut zeros = app("2.0.0");
    zeros.push(E::Deflated("big/zeros.bin".into(), vec![0u8; 6 << 20]));
    let mut big = app("2.0.0");
    big.push(E::File("big/noise.bin".into(), noise(5 << 20, 7), 0o644));
    let cases: Vec<(&str, &str, Vec<E>)> = vec![
        ("download larger than the disk", "size=4m", big),
        ("unpacked tree larger than the disk", "size=4m", zeros),
        (
            "out of inodes while extracting",
            "size=16m,nr_inodes=80",
            many,
        ),
    ];
    println!("\n| full disk case | exit | reason |");
    println!("|---|---|---|");
    for (name, opts, v2) in cases {
        let fs = match SmallFs::mount(opts) {
            Ok(f) => f,
            Err(why) => return skip_or_fail("fault_full_disk", &why),
        };
        let sim = tls_sim();
        let rig = rig_on(&fs, &sim);
        let v1 = app("1.0.0");
        sim.publish_update("1.0.0", zip(&v1), "- first");
        let o = rig.run(&["update"]);
        assert_eq!(code(&o), 0, "{name}: v1: {}", text(&o));
        // Two samples queued while the backend refuses telemetry.
        sim.set_sticky_fault("/telemetry", Some(Fault::Status(503, "{}".into())));
        for _ in 0..2 {
            let o = rig.run(&["telemetry", "--once"]);
            assert_eq!(code(&o), 1, "{name}: {}", text(&o));
        }
        sim.clear_faults();
        let queued = std::fs::read_dir(rig.state_dir.join("telemetry/queue"))
            .unwrap()
            .count();
        assert_eq!(queued, 2, "{name}");
        let slot_a = tree(&rig.slot("a"));

        sim.publish_update("2.0.0", zip(&v2), "- too big");
        let o = rig.run(&["update"]);
        let reason = text(&o)
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .to_string();
        println!("| {name} ({opts}) | {} | {reason} |", code(&o));
        assert_eq!(code(&o), 22, "{name}: {}", text(&o));
        assert!(
            reason.contains("space") || reason.contains("No space"),
            "{name}: {reason}"
        );
        assert_eq!(rig.current().as_deref(), Some("slots/a"), "{name}");
        assert_eq!(tree(&rig.slot("a")), slot_a, "{name}: active slot changed");
        assert!(
            tree(&rig.slot("b")).is_empty(),
            "{name}: slot b left with files"
        );
        assert!(!rig.root.join("slots/b.json").exists(), "{name}");
        assert!(
            !rig.state_dir.join("update/journal.json").exists(),
            "{name}"
        );
        let st = rig.status(); // parses
        assert_eq!(st["version"], "1.0.0", "{name}");
        assert_eq!(st["update"]["state"], "failed", "{name}");
        // The queue survived: both samples and a fresh one are delivered.
        let o = rig.run(&["telemetry", "--once"]);
        assert_eq!(code(&o), 0, "{name}: {}", text(&o));
        assert_eq!(sim.telemetry().len(), 3, "{name}: queued samples lost");
        assert_eq!(rig.status()["telemetry"]["queued"], 0, "{name}");
        // And the box still updates once there is room (the old slot b is freed).
        sim.publish_update("2.0.1", zip(&app("2.0.1")), "- small");
        let o = rig.run(&["update"]);
        assert_eq!(code(&o), 0, "{name}: small update: {}", text(&o));
        assert_eq!(rig.status()["version"], "2.0.1", "{name}");
    }
}
