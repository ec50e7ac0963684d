//! Issue 23, item 4, through the real binary: a slot is staged private (0700) and
//! opened up only once its record is written, and a content package's copy of the
//! active slot caps modes (nothing group- or world-writable carried over).

use crate::harness::package::*;
use crate::harness::*;
use std::os::unix::fs::PermissionsExt;

fn chmod(p: &std::path::Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn content(version: &str) -> Vec<u8> {
    let mut e = vec![
        file(
            "exercises.json",
            format!("{{\"version\":\"{version}\"}}").as_bytes(),
        ),
        file("data/new.txt", b"new"),
    ];
    let m = manifest_v2(version, Some("content"), &e, &[]);
    e.push(file("manifest.json", &m));
    zip(&e)
}

#[test]
fn a_slot_is_staged_private_and_a_copy_caps_modes() {
    let rig = Node::offline();
    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    assert_eq!(mode(&rig.slot("a")), 0o755);
    // Something (an application, a hand) left world-writable modes in the active slot.
    chmod(&rig.slot("a").join("app"), 0o777);
    chmod(&rig.slot("a").join("app/config.txt"), 0o666);
    chmod(&rig.slot("a").join("bin/run"), 0o4777);
    // Killed while extracting: the half-staged slot is closed to other users.
    let p = rig.package("c.zip", &content("1.1.0"));
    let o = rig.run_crashing(&["install", p.to_str().unwrap()], "extract:1");
    assert!(killed(&o), "{}", text(&o));
    let m = mode(&rig.slot("b"));
    assert_eq!(m & 0o077, 0, "slot b is {m:o} while staged");
    // Completed: open, and nothing writable by group or others, nor setuid.
    let o = rig.run(&["install", p.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(mode(&rig.slot("b")), 0o755);
    for (rel, want) in [
        ("app", 0o755),
        ("app/config.txt", 0o644),
        ("bin/run", 0o755),
        ("data", 0o755),
    ] {
        let m = mode(&rig.slot("b").join(rel));
        assert_eq!(m, want, "{rel}: {m:o}");
    }
}
