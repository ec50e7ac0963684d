//! Regression test for what `board/power-cut.sh` found: a power cut between the
//! creation of an atomic write's temp file (`.NAME.tmp.PID`) and its rename left the
//! temp file on disk for good (a slot record's, in `install.root/slots/`). A kill -9
//! of the process could not show it (the kernel keeps the page cache and the kill
//! points sit between writes); on the disk image after the cut it was there, and it
//! was still there after every later boot, one more per such cut.
//!
//! The box is laid out as the cut left it; the next locked command (here `install`,
//! the same start-up path as `run`) must remove the leftovers of dead processes and
//! nothing else.

use crate::harness::package::*;
use crate::harness::*;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// A PID that belonged to a process that has exited (reaped: no longer in use).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn temp_files_left_by_a_power_cut_are_swept_at_the_next_start() {
    let mut rig = Node::offline();
    install_v1(&mut rig, None, "v1");
    let dead = dead_pid();
    let live = std::process::id();
    let upd = rig.state_dir.join("update");
    fs::create_dir_all(&upd).unwrap();
    let slots = rig.root.join("slots");
    let left: Vec<PathBuf> = vec![
        slots.join(format!(".b.json.tmp.{dead}")),
        rig.state_dir.join(format!(".status.json.tmp.{dead}")),
        rig.state_dir.join(format!(".license.json.tmp.{dead}")),
        upd.join(format!(".journal.json.tmp.{dead}")),
        rig.root.join(format!(".x.tmp.{dead}")),
    ];
    for p in &left {
        fs::write(p, b"{\"half\": ").unwrap();
    }
    // Not ours to remove: a write in flight in a live process, names that only look
    // alike, the switch's own temp link (recovery's business), a directory.
    let keep: Vec<PathBuf> = vec![
        rig.state_dir.join(format!(".status.json.tmp.{live}")),
        rig.state_dir.join(".notes.tmp"),
        rig.state_dir.join(format!("status.json.tmp.{dead}")),
        slots.join(format!(".a.json.tmp.{dead}x")),
    ];
    for p in &keep {
        fs::write(p, b"x").unwrap();
    }
    let dir_alike = rig.state_dir.join(format!(".d.tmp.{dead}"));
    fs::create_dir(&dir_alike).unwrap();

    let o = rig.install(&zip(&app("1.1.0")));
    assert_eq!(code(&o), 0, "{}", text(&o));
    for p in &left {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    for p in &keep {
        assert!(p.exists(), "{} was removed", p.display());
    }
    assert!(dir_alike.is_dir());
    // The box is otherwise what the install made it.
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(rig.status()["version"], "1.1.0");
}
