//! `install ZIP`, `rollback` and the A/B path through the real binary, on temp dirs
//! (no backend needed): happy path, refusals (exit 21), health failure (exit 20),
//! self-update probe.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::json;

#[test]
fn install_twice_alternates_slots_and_keeps_the_first() {
    let rig = Node::offline();
    let v1 = app("1.0.0");
    let o = rig.install(&zip(&v1));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("version 1.0.0 in slot a"), "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    let st = rig.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["slot"], "a");
    assert_eq!(st["update"]["state"], "idle");
    // Modes kept: the executable stays executable.
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(rig.slot("a").join("bin/run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o755);

    let v2 = app("2.0.0");
    let o = rig.install(&zip(&v2));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(tree(&rig.slot("b")), expected_tree(&v2));
    assert_eq!(
        tree(&rig.slot("a")),
        expected_tree(&v1),
        "first slot intact"
    );
    assert_eq!(rig.status()["version"], "2.0.0");
    // Old services stopped from slot a, new ones started from slot b.
    let log = rig.services_log();
    let a = rig.slot("a").display().to_string();
    let b = rig.slot("b").display().to_string();
    assert!(log.contains(&format!("stop {a}\nstart {b}")), "{log}");
    let o = rig.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["version"], "2.0.0");
    assert_eq!(st["slot"], "b");
    assert!(!rig.state_dir.join("update/journal.json").exists());
}

#[test]
fn rollback_command_returns_to_the_other_slot() {
    let rig = Node::offline();
    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    let o = rig.run(&["rollback"]);
    assert_ne!(code(&o), 0, "nothing to roll back to yet: {}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(code(&rig.install(&zip(&app("2.0.0")))), 0);
    let o = rig.run(&["rollback"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(rig.status()["version"], "1.0.0");
    // And forward again: slot b is still complete.
    let o = rig.run(&["rollback"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "2.0.0");
}

#[test]
fn health_failure_rolls_back_with_20() {
    let rig = Node::offline();
    let v1 = app("1.0.0");
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let mut v2 = app("2.0.0");
    v2.push(file("unhealthy", b"1"));
    let o = rig.install(&zip(&v2));
    assert_eq!(code(&o), 20, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    let st = rig.status();
    assert_eq!(st["update"]["state"], "rolled-back");
    assert_eq!(st["version"], "1.0.0");
    assert!(
        st["update"]["lastError"]
            .as_str()
            .unwrap()
            .contains("health"),
        "{st}"
    );
    // The old services were started again, after the new ones were stopped.
    let log = rig.services_log();
    let a = rig.slot("a").display().to_string();
    let b = rig.slot("b").display().to_string();
    assert!(
        log.ends_with(&format!("start {b}\nstop {b}\nstart {a}\n")),
        "{log}"
    );
    // The failed slot is no rollback target.
    let o = rig.run(&["rollback"]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
}

#[test]
fn first_install_that_fails_health_leaves_an_empty_box() {
    let rig = Node::offline();
    let mut v1 = app("1.0.0");
    v1.push(file("unhealthy", b"1"));
    let o = rig.install(&zip(&v1));
    assert_eq!(code(&o), 20, "{}", text(&o));
    assert_eq!(rig.current(), None);
    assert_eq!(rig.status()["version"], "0.0.0");
}

#[test]
fn bad_packages_are_rejected_before_the_switch() {
    let (kp, pk) = keypair();
    let (other_kp, _) = keypair();
    let good = app("2.0.0");
    // The manifest and signature of `good`, over files whose content changed (with a
    // correct ZIP CRC: only the manifest digest can catch it).
    let tampered = {
        let signed_good = signed("2.0.0", &good, &kp);
        let e: Vec<E> = signed_good
            .into_iter()
            .map(|e| match e {
                E::File(n, _, m) if n == "app/config.txt" => E::File(n, b"app 2.0.1\n".to_vec(), m),
                other => other,
            })
            .collect();
        zip(&e)
    };
    let mut corrupt_crc = zip(&good);
    let pos = corrupt_crc
        .windows(10)
        .position(|w| w == b"app 2.0.0\n")
        .unwrap();
    corrupt_crc[pos] = b'X';
    let mut unsupported = zip(&[file("a.txt", b"hello")]);
    // Compression method 12 (bzip2) in the local (offset 8) and central headers.
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let p = unsupported.windows(4).position(|w| w == sig).unwrap();
        let off = if sig[2] == 3 { 8 } else { 10 };
        unsupported[p + off] = 12;
    }
    let listed_absent = {
        let mut e = good.clone();
        let m = manifest(
            "2.0.0",
            &[good.clone(), vec![file("missing.txt", b"x")]].concat(),
        );
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
        e.push(file("manifest.json", &m));
        e.push(file("manifest.sig", sig.as_bytes()));
        zip(&e)
    };
    let unlisted = {
        let mut e = signed("2.0.0", &good, &kp);
        e.push(file("extra.bin", b"not in the manifest"));
        zip(&e)
    };
    let bomb = vec![E::Deflated("big.bin".into(), vec![0u8; 20 << 20])];
    let many: Vec<E> = (0..50).map(|i| file(&format!("f{i}"), b"x")).collect();
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "zip-slip",
            zip(&[file("../evil.txt", b"x")]),
            false,
            "`..` component",
        ),
        (
            "zip-slip nested",
            zip(&[file("app/../../evil.txt", b"x")]),
            false,
            "`..` component",
        ),
        (
            "absolute path",
            zip(&[file("/tmp/evil-abs.txt", b"x")]),
            false,
            "absolute path",
        ),
        (
            "backslash",
            zip(&[file("..\\evil.txt", b"x")]),
            false,
            "backslash",
        ),
        (
            "escaping symlink",
            zip(&[E::Link("l".into(), "../../..".into()), file("a", b"x")]),
            false,
            "escapes the slot",
        ),
        (
            "absolute symlink",
            zip(&[E::Link("l".into(), "/etc/passwd".into())]),
            false,
            "absolute target",
        ),
        (
            "write through symlink",
            zip(&[
                E::Link("d".into(), "sub".into()),
                E::Dir("sub/".into()),
                file("d/x", b"x"),
            ]),
            false,
            "is a file or link",
        ),
        (
            "device file",
            zip(&[E::Raw("dev".into(), vec![], (0o020644u32) << 16)]),
            false,
            "special file",
        ),
        (
            "fifo",
            zip(&[E::Raw("fifo".into(), vec![], (0o010644u32) << 16)]),
            false,
            "special file",
        ),
        ("zip bomb", zip(&bomb), false, "max_unpacked_size"),
        ("too many entries", zip(&many), false, "max_entries"),
        (
            "corrupt archive",
            b"PK\x03\x04 this is not really a zip file at all".to_vec(),
            false,
            "not a valid ZIP",
        ),
        (
            "truncated archive",
            zip(&good)[..300].to_vec(),
            false,
            "not a valid ZIP",
        ),
        ("crc mismatch", corrupt_crc, false, "checksum"),
        (
            "unsupported compression",
            unsupported,
            false,
            "unsupported compression",
        ),
        (
            "unsigned with key",
            zip(&good),
            true,
            "manifest.json missing",
        ),
        (
            "signature missing",
            {
                let mut e = good.clone();
                e.push(file("manifest.json", &manifest("2.0.0", &good)));
                zip(&e)
            },
            true,
            "manifest.sig missing",
        ),
        (
            "signature by another key",
            zip(&signed("2.0.0", &good, &other_kp)),
            true,
            "does not verify",
        ),
        (
            "signature garbage",
            {
                let mut e = good.clone();
                e.push(file("manifest.json", &manifest("2.0.0", &good)));
                e.push(file("manifest.sig", b"bm90IGEgc2lnbmF0dXJl"));
                zip(&e)
            },
            true,
            "not a 64-byte",
        ),
        ("tampered file", tampered, true, "SHA-256 does not match"),
        (
            "manifest lists an absent file",
            listed_absent,
            true,
            "absent from the package",
        ),
        ("file not in manifest", unlisted, true, "not listed"),
    ];
    for (name, bytes, needs_key, why) in cases {
        let mut rig = Node::offline();
        rig.set("updates", "max_unpacked_size", json!(10 << 20));
        rig.set("updates", "max_entries", json!(40));
        install_v1(&mut rig, needs_key.then_some((&kp, pk.as_str())), name);
        let slot_a = tree(&rig.slot("a"));
        let outside = rig.files_outside();
        let o = rig.install(&bytes);
        assert_eq!(code(&o), 21, "{name}: {}", text(&o));
        assert!(text(&o).contains(why), "{name}: wrong reason: {}", text(&o));
        assert_eq!(rig.current().as_deref(), Some("slots/a"), "{name}");
        assert_eq!(tree(&rig.slot("a")), slot_a, "{name}: active slot changed");
        assert_eq!(
            rig.files_outside(),
            outside,
            "{name}: wrote outside install.root"
        );
        assert!(
            !std::path::Path::new("/tmp/evil-abs.txt").exists(),
            "{name}"
        );
        let st = rig.status();
        assert_eq!(st["update"]["state"], "failed", "{name}");
        assert_eq!(st["version"], "1.0.0", "{name}");
        assert!(
            !rig.state_dir.join("update/journal.json").exists(),
            "{name}"
        );
        // A good package still installs afterwards.
        let v2 = if needs_key {
            zip(&signed("2.0.0", &good, &kp))
        } else {
            zip(&good)
        };
        let o = rig.install(&v2);
        assert_eq!(code(&o), 0, "{name}: good after bad: {}", text(&o));
        assert_eq!(rig.current().as_deref(), Some("slots/b"), "{name}");
    }
}

#[test]
fn signed_package_installs_with_its_manifest_version() {
    let (kp, pk) = keypair();
    let mut rig = Node::offline();
    rig.set("updates", "public_key", json!(pk));
    // The tree's own VERSION says otherwise: the signed manifest's version wins.
    let entries = signed("3.1.4", &without(app("ignored"), "version.json"), &kp);
    let o = rig.install(&zip(&entries));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "3.1.4");
    assert_eq!(tree(&rig.slot("a")), expected_tree(&entries));
    // The key may also be given as a file path.
    let kf = rig.dir.path().join("update.pub");
    std::fs::write(&kf, format!("{pk}\n")).unwrap();
    rig.set("updates", "public_key", json!(kf.to_str().unwrap()));
    let o = rig.install(&zip(&signed(
        "3.1.5",
        &without(app("x"), "version.json"),
        &kp,
    )));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "3.1.5");
}

#[test]
fn self_update_agent_that_cannot_start_is_rejected() {
    let rig = Node::offline();
    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    let mut broken = app("2.0.0");
    broken.push(E::File(
        "bin/cybersensei-agent".into(),
        b"#!/bin/sh\nexit 3\n".to_vec(),
        0o755,
    ));
    let o = rig.install(&zip(&broken));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("--version"), "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    // A binary for another machine fails the same way (exec format error).
    let mut foreign = app("2.0.0");
    foreign.push(E::File(
        "bin/cybersensei-agent".into(),
        b"\x7fELF\x02\x01\x01garbage".to_vec(),
        0o755,
    ));
    let o = rig.install(&zip(&foreign));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    // The real agent, carried by a package, passes the probe and is installed.
    let real = std::fs::read(env!("CARGO_BIN_EXE_cybersensei-agent")).unwrap();
    let mut good = app("2.0.0");
    good.push(E::File("bin/cybersensei-agent".into(), real, 0o755));
    let o = rig.install(&zip(&good));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    let o = std::process::Command::new(rig.root.join("current/bin/cybersensei-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn setuid_bits_are_stripped() {
    let rig = Node::offline();
    let o = rig.install(&zip(&[E::File("bin/tool".into(), b"x".to_vec(), 0o4755)]));
    // unix_permissions() in the writer keeps only 0o777, so craft the attrs raw.
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = rig.install(&zip(&[E::Raw(
        "bin/tool".into(),
        b"x".to_vec(),
        (0o106755u32) << 16,
    )]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(rig.slot("b").join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o7777, 0o755);
}
