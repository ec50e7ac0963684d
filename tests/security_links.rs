//! Issue 23, item 3, through the real binary: every link of a staged slot is
//! resolved against the real tree (links copied from the active slot included), and
//! one that leads out of the slot refuses the package; hooks are opened without
//! following links.

use crate::harness::package::*;
use crate::harness::*;

fn content(version: &str, extra: Vec<E>) -> Vec<u8> {
    let mut e = vec![file(
        "exercises.json",
        format!("{{\"version\":\"{version}\"}}").as_bytes(),
    )];
    e.extend(extra);
    let m = manifest_v2(version, Some("content"), &e, &[]);
    e.push(file("manifest.json", &m));
    zip(&e)
}

#[test]
fn a_chain_of_links_over_three_packages_cannot_run_a_hook_from_outside() {
    let rig = Node::offline();
    // A directory outside install.root a local user controls, with a "hook".
    let marker = rig.dir.path().join("ran-as-root");
    let evil = rig.dir.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(
        evil.join("post-install"),
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["755", evil.join("post-install").to_str().unwrap()])
        .status()
        .unwrap();
    // 1.0.0 (full): d1/d2/d3/l1 -> ../../.. (the slot itself: harmless alone).
    let mut e = app("1.0.0");
    e.push(E::Link("d1/d2/d3/l1".into(), "../../..".into()));
    let o = rig.install(&zip(&e));
    assert_eq!(code(&o), 0, "{}", text(&o));
    // 1.1.0 (content): x through l1, lexically inside, really 3 levels above the slot.
    let o2 = rig.install(&content(
        "1.1.0",
        vec![E::Link("x".into(), "d1/d2/d3/l1/../../..".into())],
    ));
    // 1.2.0 (content): hooks -> x/evil.
    let o3 = rig.install(&content(
        "1.2.0",
        vec![E::Link("hooks".into(), "x/evil".into())],
    ));
    assert!(
        !marker.exists(),
        "a post-install outside the package ran:\n{}\n{}",
        text(&o2),
        text(&o3)
    );
    assert_eq!(code(&o2), 21, "{}", text(&o2));
    assert!(text(&o2).contains("leaves the slot"), "{}", text(&o2));
    assert_eq!(rig.status()["version"], "1.0.0");
}

#[test]
fn a_hook_reached_through_a_link_is_refused() {
    let rig = Node::offline();
    let marker = rig.dir.path().join("hook-ran");
    // `hooks` is a link to a directory of the package: the signed list says nothing
    // of `hooks/post-install`, which must not run.
    let mut e = app("1.0.0");
    e.push(exe(
        "other/post-install",
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    ));
    e.push(E::Link("hooks".into(), "other".into()));
    let o = rig.install(&zip(&e));
    assert!(!marker.exists(), "{}", text(&o));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert_eq!(rig.current(), None);
}
