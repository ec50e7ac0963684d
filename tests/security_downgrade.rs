//! Issue 23, item 1, through the real binary: the downgrade guard counts the
//! factory version and the active slot's own version (a box that never installed a
//! package is protected too), and every commit stores the highest version, so a
//! record dropped later (a slot marked bad) does not erase it.

use crate::harness::package::*;
use crate::harness::*;
use base64::Engine;
use ring::signature::Ed25519KeyPair;
use serde_json::json;

/// A full package of `version`, its manifest v2 signed by `kp`.
fn pkg(version: &str, kp: &Ed25519KeyPair) -> Vec<u8> {
    let mut e = app(version);
    let m = manifest_v2(version, Some("full"), &e, &[]);
    let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
    e.push(file("manifest.json", &m));
    e.push(file("manifest.sig", sig.as_bytes()));
    zip(&e)
}

fn signed(rig: &mut Node) -> Ed25519KeyPair {
    let (kp, pk) = keypair();
    rig.set("updates", "public_key", json!(pk));
    kp
}

fn highest(rig: &Node) -> String {
    std::fs::read_to_string(rig.state_dir.join("update/highest-version"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_factory_box_refuses_an_older_signed_package() {
    let mut rig = Node::offline();
    let kp = signed(&mut rig);
    std::fs::create_dir_all(&rig.root).unwrap();
    std::fs::write(rig.root.join("factory-version"), "2.0.0\n").unwrap();
    let o = rig.install(&pkg("0.1.0", &kp));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("downgrade"), "{}", text(&o));
    assert_eq!(rig.current(), None);
    // The operator may still, on purpose.
    let p = rig.package("old.zip", &pkg("0.1.0", &kp));
    let o = rig.run(&["install", p.to_str().unwrap(), "--allow-downgrade"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // ...and the factory's 2.0.0 is still the highest.
    assert_eq!(highest(&rig), "2.0.0");
    assert_eq!(code(&rig.install(&pkg("1.0.0", &kp))), 21);
}

#[test]
fn a_factory_box_refuses_an_older_package_from_the_backend() {
    let sim = tls_sim();
    let mut rig = Node::updates(&sim);
    let kp = signed(&mut rig);
    std::fs::create_dir_all(&rig.root).unwrap();
    std::fs::write(rig.root.join("factory-version"), "2.0.0\n").unwrap();
    sim.publish_update("0.1.0", pkg("0.1.0", &kp), "old");
    let o = rig.run(&["update"]);
    assert_eq!(rig.current(), None, "{}", text(&o));
    if sim.profile() == cybersensei_sim::Profile::Central {
        // The real backend offers only versions newer than the box's (the factory's).
        assert_eq!(code(&o), 0, "{}", text(&o));
        return;
    }
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("downgrade"), "{}", text(&o));
    assert_eq!(sim.count("/update/download"), 0);
}

#[test]
fn a_hand_made_slot_counts_its_own_version() {
    let rig = Node::offline();
    std::fs::create_dir_all(rig.slot("a").join("bin")).unwrap();
    std::fs::write(rig.slot("a").join("VERSION"), "3.0.0\n").unwrap();
    std::os::unix::fs::symlink("slots/a", rig.root.join("current")).unwrap();
    let o = rig.run(&["status", "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"version\":\"3.0.0\""));
    let o = rig.install(&zip(&app("0.1.0")));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("downgrade"), "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(code(&rig.install(&zip(&app("3.0.1")))), 0);
}

#[test]
fn every_commit_stores_the_highest_version() {
    let rig = Node::offline();
    assert_eq!(code(&rig.install(&zip(&app("2.0.0")))), 0);
    assert_eq!(highest(&rig), "2.0.0", "stored at the commit");
    assert_eq!(code(&rig.install(&zip(&app("3.0.0")))), 0);
    assert_eq!(highest(&rig), "3.0.0", "stored at the commit");
    // The operator rolls back to 2.0.0, then forward again to 3.0.0, whose health
    // check now fails: slot b is marked bad (its record dropped) and 2.0.0 is back.
    let o = rig.run(&["rollback"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    std::fs::write(rig.slot("b").join("unhealthy"), b"1").unwrap();
    let o = rig.run(&["rollback"]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert!(!rig.root.join("slots/b.json").exists());
    // 3.0.0 was installed: 2.5.0 is a downgrade.
    let o = rig.install(&zip(&app("2.5.0")));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("3.0.0"), "{}", text(&o));
}
