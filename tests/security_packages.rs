//! Issue 15, findings 2, 3 and 5, through the real binary: no downgrades (durable
//! highest version, `--allow-downgrade`, the signed version bound to the check's),
//! modes, types and directories covered by the signature and capped, and a slot that
//! failed its health check is no rollback target.

use crate::harness::package::*;
use crate::harness::*;
use base64::Engine;
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};

/// A manifest v2 (types, modes, sizes, digests, directories) of `entries`, signed.
fn signed_v2(version: &str, entries: &[E], kp: &Ed25519KeyPair) -> (Vec<u8>, String) {
    let mut files = Vec::new();
    for e in entries {
        files.push(match e {
            E::Dir(n) => json!({"path": n.trim_end_matches('/'), "type": "dir", "mode": "0755"}),
            E::File(n, d, m) | E::Raw(n, d, m) => json!({"path": n, "type": "file",
                "size": d.len(), "mode": format!("{:04o}", m & 0o7777), "sha256": sha256(d)}),
            E::Deflated(n, d) => json!({"path": n, "type": "file", "size": d.len(),
                "mode": "0644", "sha256": sha256(d)}),
            E::Link(n, t) => json!({"path": n, "type": "symlink", "target": t,
                "sha256": sha256(t.as_bytes())}),
        });
    }
    let m = serde_json::to_vec_pretty(&json!({"version": version, "kind": "full", "files": files}))
        .unwrap();
    let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
    (m, sig)
}

fn with_sig(entries: &[E], m: &[u8], sig: &str) -> Vec<u8> {
    let mut all = entries.to_vec();
    all.push(file("manifest.json", m));
    all.push(file("manifest.sig", sig.as_bytes()));
    zip(&all)
}

fn pkg(version: &str, kp: &Ed25519KeyPair) -> Vec<u8> {
    let e = app(version);
    let (m, s) = signed_v2(version, &e, kp);
    with_sig(&e, &m, &s)
}

fn signed_rig() -> (Node, Ed25519KeyPair) {
    let (kp, pk) = keypair();
    let mut rig = Node::offline();
    rig.set("updates", "public_key", json!(pk));
    (rig, kp)
}

#[test]
fn a_lower_version_is_refused_unless_the_operator_allows_it() {
    let (rig, kp) = signed_rig();
    assert_eq!(code(&rig.install(&pkg("2.0.0", &kp))), 0);
    let o = rig.install(&pkg("1.0.0", &kp));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("downgrade"), "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(rig.status()["version"], "2.0.0");
    let p = rig.package("old.zip", &pkg("1.0.0", &kp));
    let o = rig.run(&["install", p.to_str().unwrap(), "--allow-downgrade"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "1.0.0");
    // The highest stays 2.0.0 (slot b, and the durable file): 1.5.0 is still lower.
    let o = rig.install(&pkg("1.5.0", &kp));
    assert_eq!(code(&o), 21, "{}", text(&o));
    let high = std::fs::read_to_string(rig.state_dir.join("update/highest-version")).unwrap();
    assert_eq!(high.trim(), "2.0.0");
    // Equal or higher is fine.
    assert_eq!(code(&rig.install(&pkg("2.1.0", &kp))), 0);
}

#[test]
fn the_backend_cannot_downgrade_nor_swap_the_announced_package() {
    let sim = tls_sim();
    let (kp, pk) = keypair();
    let mut rig = Node::updates(&sim);
    rig.set("updates", "public_key", json!(pk));
    assert_eq!(code(&rig.install(&pkg("2.0.0", &kp))), 0);
    // A correctly signed 1.0.0 offered as the latest.
    sim.publish_update("1.0.0", pkg("1.0.0", &kp), "old");
    let o = rig.run(&["update"]);
    if sim.profile() == cybersensei_sim::Profile::Central {
        // The real backend offers only newer versions, and takes a package's version
        // from its version.json: neither attack can come from it uncompromised (the
        // guide profile plays the compromised server). Nothing is downloaded.
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(rig.status()["version"], "2.0.0");
        assert_eq!(sim.count("/update/download"), 0);
        return;
    }
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("downgrade"), "{}", text(&o));
    assert_eq!(rig.status()["version"], "2.0.0");
    // Refused from the announcement: nothing downloaded.
    assert_eq!(sim.count("/update/download"), 0);
    // 3.0.0 announced, a correctly signed 2.5.0 served for it (mix-and-match).
    sim.publish_update("3.0.0", pkg("2.5.0", &kp), "swapped");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    // Refused by the manifest's version (or, when the package carries a
    // version.json, by that one first): never installed.
    assert!(
        text(&o).contains("not the package announced") || text(&o).contains("latestVersion"),
        "{}",
        text(&o)
    );
    assert_eq!(rig.status()["version"], "2.0.0");
    sim.publish_update("3.0.0", pkg("3.0.0", &kp), "right");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "3.0.0");
}

#[test]
fn modes_types_and_directories_are_what_was_signed_and_capped() {
    let (rig, kp) = signed_rig();
    let e = app("1.0.0");
    let (m, s) = signed_v2("1.0.0", &e, &kp);
    // Re-packed by someone without the key: the binary 0777, an extra 0777 directory.
    let mut tampered: Vec<E> = e
        .iter()
        .map(|x| match x {
            E::File(n, d, _) if n == "bin/run" => E::File(n.clone(), d.clone(), 0o777),
            other => other.clone(),
        })
        .collect();
    let mut with_dir = tampered.clone();
    with_dir.push(E::Raw("evil/".into(), vec![], (0o040777 << 16) | 0x10));
    let o = rig.install(&with_sig(&with_dir, &m, &s));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("evil"), "{}", text(&o));
    assert_eq!(rig.current(), None);
    // Same without the directory: installed with the signed mode, not the ZIP's.
    let o = rig.install(&with_sig(&tampered, &m, &s));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(mode(&rig.slot("a").join("bin/run")), 0o755);
    // A type the signature does not say: a directory where it lists a file.
    tampered.retain(|x| !matches!(x, E::File(n, _, _) if n == "app/config.txt"));
    tampered.push(E::Dir("app/config.txt/".into()));
    let o = rig.install(&with_sig(&tampered, &m, &s));
    assert_eq!(code(&o), 21, "{}", text(&o));
}

#[test]
fn installed_modes_are_never_group_writable_nor_setuid() {
    let rig = Node::offline();
    let e = vec![
        E::Raw("open/".into(), vec![], (0o040777 << 16) | 0x10),
        E::File("open/all.sh".into(), b"#!/bin/sh\n".to_vec(), 0o777),
        E::File("suid".into(), b"x".to_vec(), 0o4755),
        E::File("group-w".into(), b"x".to_vec(), 0o664),
        file("VERSION", b"1.0.0\n"),
    ];
    let o = rig.install(&zip(&e));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let a = rig.slot("a");
    assert_eq!(mode(&a.join("open")), 0o755);
    assert_eq!(mode(&a.join("open/all.sh")), 0o755);
    assert_eq!(mode(&a.join("suid")), 0o755);
    assert_eq!(mode(&a.join("group-w")), 0o644);
    // The same from a signed manifest that asks for 0777: capped too.
    let (rig, kp) = signed_rig();
    let e = vec![
        E::File("bin/tool".into(), b"x".to_vec(), 0o777),
        file("VERSION", b"1.0.0\n"),
    ];
    let (m, s) = signed_v2("1.0.0", &e, &kp);
    let v: Value = serde_json::from_slice(&m).unwrap();
    assert!(v.to_string().contains("0777"));
    let o = rig.install(&with_sig(&e, &m, &s));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(mode(&rig.slot("a").join("bin/tool")), 0o755);
}

#[test]
fn a_slot_that_failed_its_health_check_is_no_rollback_target() {
    let rig = Node::offline();
    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    let mut bad = app("2.0.0");
    bad.push(file("unhealthy", b"1"));
    let o = rig.install(&zip(&bad));
    assert_eq!(code(&o), 20, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    // Its tree is still there (VERSION included), but it is marked bad.
    assert!(rig.slot("b").join("VERSION").exists());
    let o = rig.run(&["rollback"]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("no rollback target"), "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(rig.status()["version"], "1.0.0");
    // A good install into that slot makes it an ordinary slot again.
    assert_eq!(code(&rig.install(&zip(&app("2.1.0")))), 0);
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    let o = rig.run(&["rollback"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
}
