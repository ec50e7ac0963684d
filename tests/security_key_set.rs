//! Issue 23, item 2, through the real binary: the trusted key set is the one the
//! package being installed ships (kept in its slot record), never one carried over
//! from the active slot by a content package's copy: a content package restates the
//! whole set, and one that drops a leaked key revokes it.

use crate::harness::package::*;
use crate::harness::*;
use base64::Engine;
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};

fn signed_zip(version: &str, kind: &str, mut e: Vec<E>, kp: &Ed25519KeyPair) -> Vec<u8> {
    let m = manifest_v2(version, Some(kind), &e, &[]);
    let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
    e.push(file("manifest.json", &m));
    e.push(file("manifest.sig", sig.as_bytes()));
    zip(&e)
}

/// A full package of `version` shipping `keys` (name, base64 public key).
fn full(version: &str, keys: &[(&str, &str)], kp: &Ed25519KeyPair) -> Vec<u8> {
    let mut e = app(version);
    e.push(E::Dir("update-keys/".into()));
    for (n, k) in keys {
        e.push(file(
            &format!("update-keys/{n}.pub"),
            format!("{k}\n").as_bytes(),
        ));
    }
    signed_zip(version, "full", e, kp)
}

/// A content package of `version` shipping `keys`.
fn content(version: &str, keys: &[(&str, &str)], kp: &Ed25519KeyPair) -> Vec<u8> {
    let mut e = vec![file(
        "exercises.json",
        format!("{{\"version\":\"{version}\"}}").as_bytes(),
    )];
    for (n, k) in keys {
        e.push(file(
            &format!("update-keys/{n}.pub"),
            format!("{k}\n").as_bytes(),
        ));
    }
    signed_zip(version, "content", e, kp)
}

fn security(rig: &Node) -> Value {
    let o = rig.run(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    st["security"].clone()
}

#[test]
fn a_content_package_revokes_the_key_it_no_longer_ships() {
    let (k1, p1) = keypair();
    let (k2, p2) = keypair();
    let mut rig = Node::offline();
    let keys = rig.dir.path().join("etc/update-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("factory.pub"), format!("{p1}\n")).unwrap();
    rig.set("updates", "public_key", json!(keys.to_str().unwrap()));
    // rot-2.0.0 (full, signed by k1) ships k1 and k2.
    let o = rig.install(&full("2.0.0", &[("k1", &p1), ("k2", &p2)], &k1));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(security(&rig)["trustedKeys"].as_array().unwrap().len(), 2);
    // rot-2.1.0 (content, signed by k2) ships only k2: k1 is revoked.
    let o = rig.install(&content("2.1.0", &[("k2", &p2)], &k2));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = security(&rig);
    assert_eq!(s["trustedKeys"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["keySource"], "slot b/update-keys", "{s}");
    let o = rig.install(&full("2.2.0", &[("k1", &p1), ("k2", &p2)], &k1));
    assert_eq!(
        code(&o),
        21,
        "a package signed by the revoked key: {}",
        text(&o)
    );
    assert!(text(&o).contains("any trusted key"), "{}", text(&o));
    assert_eq!(rig.status()["version"], "2.1.0");
    // k2 still installs; a content package shipping no key at all puts the box back
    // on its configured key (k1), as docs/security.md says.
    let o = rig.install(&content("2.3.0", &[], &k2));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = security(&rig);
    assert_eq!(s["keySource"], "updates.public_key", "{s}");
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert!(!rig.slot("a").join("update-keys").exists());
}
