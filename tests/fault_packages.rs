//! Hostile packages beyond the usual zip-slip list, crafted byte by byte where the
//! `zip` writer refuses to make them: duplicate names, NUL in a name, local and
//! central headers that disagree, a signature made for another manifest. Each is
//! refused with 21 before any slot is touched, nothing lands outside install.root,
//! and a good package installs afterwards.

mod update_support;

use serde_json::json;
use update_support::*;

/// Replaces `from` by `to` (same length) in the local headers (`local`) and/or the
/// central directory (`central`) of a ZIP.
fn patch_name(z: &mut [u8], from: &str, to: &str, local: bool, central: bool) {
    assert_eq!(from.len(), to.len());
    let sigs: Vec<(&[u8], usize)> = [
        (local, (&b"PK\x03\x04"[..], 30usize)),
        (central, (&b"PK\x01\x02"[..], 46usize)),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, s)| s)
    .collect();
    let mut patched = 0;
    for (sig, name_at) in sigs {
        let mut i = 0;
        while i + name_at + from.len() <= z.len() {
            if &z[i..i + 4] == sig && &z[i + name_at..i + name_at + from.len()] == from.as_bytes() {
                z[i + name_at..i + name_at + from.len()].copy_from_slice(to.as_bytes());
                patched += 1;
            }
            i += 1;
        }
    }
    assert!(patched > 0, "{from} not found");
}

/// Writes a little-endian u32 at `off` of the first header with `sig`.
fn patch_u32(z: &mut [u8], sig: &[u8], off: usize, v: u32) {
    let p = z.windows(4).position(|w| w == sig).unwrap();
    z[p + off..p + off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Every file outside install.root and state_dir, with its digest.
fn outside(rig: &Rig) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = tree(rig.dir.path())
        .into_iter()
        .filter(|(k, _)| !k.starts_with("opt") && !k.starts_with("state") && !k.ends_with(".zip"))
        .filter(|(k, _)| k != "agent.log")
        .collect();
    v.sort();
    v
}

#[test]
fn crafted_packages_are_refused_before_any_slot_is_touched() {
    let (kp, pk) = keypair();
    let good = app("2.0.0");

    let duplicate = {
        let mut z = zip(&[file("a.txt", b"first"), file("b.txt", b"second")]);
        patch_name(&mut z, "b.txt", "a.txt", true, true);
        z
    };
    let nul = {
        let mut z = zip(&[file("ok.txt", b"x"), file("evil.txt", b"x")]);
        patch_name(&mut z, "evil.txt", "ev\0l.txt", true, true);
        z
    };
    // The central directory says `safe.txt`; the local header says `../x.txt`.
    let local_disagrees = {
        let mut z = zip(&[file("safe.txt", b"payload")]);
        patch_name(&mut z, "safe.txt", "../x.txt", true, false);
        z
    };
    // The local header claims more bytes than the central directory.
    let sizes_disagree = {
        let mut z = zip(&[file("a.txt", b"0123456789")]);
        patch_u32(&mut z, b"PK\x03\x04", 18, 5000);
        patch_u32(&mut z, b"PK\x03\x04", 22, 5000);
        z
    };
    // A genuine signature, by the right key, of another manifest (version 1's).
    let sig_of_other = {
        use base64::Engine;
        let other = manifest("1.0.0", &app("1.0.0"));
        let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&other).as_ref());
        let mut e = good.clone();
        e.push(file("manifest.json", &manifest("2.0.0", &good)));
        e.push(file("manifest.sig", sig.as_bytes()));
        zip(&e)
    };
    // A socket (S_IFSOCK) entry: ZIP cannot express a hard link at all (no type for
    // it in the Unix mode bits, which are all the extractor reads), so the other
    // non-regular types are what an attacker has.
    let socket = zip(&[E::Raw("sock".into(), vec![], 0o140644u32 << 16)]);

    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        ("duplicate entry names", duplicate, false, "duplicate"),
        ("NUL in a name", nul, false, "NUL"),
        (
            "local header name differs from central",
            local_disagrees,
            false,
            "filename mismatch",
        ),
        (
            "local header sizes differ from central",
            sizes_disagree,
            false,
            "size mismatch",
        ),
        ("socket entry", socket, false, "special file"),
        (
            "signature made for another manifest",
            sig_of_other,
            true,
            "does not verify",
        ),
    ];
    println!("{:<44} exit  reason", "case");
    for (name, bytes, needs_key, why) in cases {
        let mut rig = Rig::offline();
        if needs_key {
            rig.set("updates", "public_key", json!(pk));
        }
        let v1 = app("1.0.0");
        let first = if needs_key {
            zip(&signed("1.0.0", &v1, &kp))
        } else {
            zip(&v1)
        };
        assert_eq!(code(&rig.install(&first)), 0, "{name}: v1");
        let slot_a = tree(&rig.slot("a"));
        let before = outside(&rig);
        let o = rig.install(&bytes);
        let said = text(&o);
        let reason = said
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("")
            .to_string();
        println!("{name:<44} {:<5} {reason}", code(&o));
        assert_eq!(code(&o), 21, "{name}: {said}");
        assert!(reason.contains(why), "{name}: wrong reason: {said}");
        assert_eq!(rig.current().as_deref(), Some("slots/a"), "{name}");
        assert_eq!(tree(&rig.slot("a")), slot_a, "{name}: active slot changed");
        assert_eq!(outside(&rig), before, "{name}: wrote outside");
        assert!(!rig.dir.path().join("x.txt").exists(), "{name}");
        assert_eq!(rig.status()["version"], "1.0.0", "{name}");
        let next = if needs_key {
            zip(&signed("2.0.0", &good, &kp))
        } else {
            zip(&good)
        };
        let o = rig.install(&next);
        assert_eq!(code(&o), 0, "{name}: good after bad: {}", text(&o));
    }
}
