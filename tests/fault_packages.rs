//! Hostile packages (issue 8, part 4), crafted byte by byte where the zip writer
//! refuses to produce them: duplicate names, NUL and backslashes in names, a hard
//! link (PKWARE Unix extra field 0x000d), local and central headers that disagree,
//! a manifest listing absent files, a signature over another manifest. Each must be
//! refused with exit 21, `current` and the active slot unchanged, nothing written
//! outside install.root.

use crate::harness::package::*;
use crate::harness::*;

/// One raw entry: name in the local and central headers, data, stored.
#[derive(Clone)]
struct Raw {
    local_name: Vec<u8>,
    central_name: Vec<u8>,
    data: Vec<u8>,
    /// Size written in the central header (None: the real one).
    central_size: Option<u32>,
    /// Compression method in the local header (central always says stored).
    local_method: u16,
    /// Extra field in both headers.
    extra: Vec<u8>,
    mode: u32,
}

fn raw(name: &[u8], data: &[u8]) -> Raw {
    Raw {
        local_name: name.to_vec(),
        central_name: name.to_vec(),
        data: data.to_vec(),
        central_size: None,
        local_method: 0,
        extra: Vec::new(),
        mode: 0o100644,
    }
}

fn crc(d: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(d);
    c.sum()
}

/// A stored ZIP from raw entries (no data descriptors, no zip64).
fn build(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let off = out.len() as u32;
        let (c, n) = (crc(&e.data), e.data.len() as u32);
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.local_method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(e.local_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(e.extra.len() as u16).to_le_bytes());
        out.extend_from_slice(&e.local_name);
        out.extend_from_slice(&e.extra);
        out.extend_from_slice(&e.data);
        let cn = e.central_size.unwrap_or(n);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&(0x0300u16 | 20).to_le_bytes()); // made by Unix
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0x21, 0]);
        central.extend_from_slice(&c.to_le_bytes());
        central.extend_from_slice(&cn.to_le_bytes());
        central.extend_from_slice(&cn.to_le_bytes());
        central.extend_from_slice(&(e.central_name.len() as u16).to_le_bytes());
        central.extend_from_slice(&(e.extra.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&(e.mode << 16).to_le_bytes());
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(&e.central_name);
        central.extend_from_slice(&e.extra);
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// PKWARE Unix extra field (APPNOTE 4.5.7, id 0x000d): atime, mtime, uid, gid, then
/// the "linked to" name of a hard or symbolic link.
fn unix_extra_link(target: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x000du16.to_le_bytes());
    v.extend_from_slice(&((12 + target.len()) as u16).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(target);
    v
}

#[test]
fn hostile_packages_are_refused_with_21_and_touch_nothing() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (kp, pk) = keypair();
    let good = app("2.0.0");
    let ok = raw(b"ok.txt", b"fine");

    // A signature over another manifest: version 2.0.0's manifest is signed, 2.0.1's
    // (listing the same files) is shipped.
    let sig_other = {
        let signed_m = manifest("2.0.0", &good);
        let shipped = manifest("2.0.1", &good);
        let mut e = good.clone();
        e.push(file("manifest.json", &shipped));
        e.push(file(
            "manifest.sig",
            b64(kp.sign(&signed_m).as_ref()).as_bytes(),
        ));
        zip(&e)
    };
    // A correctly signed manifest listing a file the ZIP lacks.
    let listed_absent = {
        let m = manifest(
            "2.0.0",
            &[good.clone(), vec![file("bin/helper", b"x")]].concat(),
        );
        let mut e = good.clone();
        e.push(file("manifest.json", &m));
        e.push(file("manifest.sig", b64(kp.sign(&m).as_ref()).as_bytes()));
        zip(&e)
    };
    // Unsigned (no key configured): the manifest is still an integrity check.
    let listed_absent_unsigned = {
        let m = manifest(
            "2.0.0",
            &[good.clone(), vec![file("lib/x.so", b"x")]].concat(),
        );
        let mut e = good.clone();
        e.push(file("manifest.json", &m));
        zip(&e)
    };
    let mut hard = raw(b"etc-passwd", b"");
    hard.extra = unix_extra_link(b"/etc/passwd");
    let mut hard_rel = raw(b"copy", b"");
    hard_rel.extra = unix_extra_link(b"../../../../etc/shadow");
    let mut name_differs = raw(b"app.txt", b"data");
    name_differs.local_name = b"../x.txt".to_vec();
    let mut size_differs = raw(b"big.txt", b"0123456789");
    size_differs.central_size = Some(4);
    let mut method_differs = raw(b"m.txt", b"0123456789");
    method_differs.local_method = 8;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "duplicate names",
            build(&[raw(b"a.txt", b"1"), raw(b"a.txt", b"2")]),
            false,
        ),
        (
            "duplicate after normalization (file and dir/)",
            build(&[raw(b"a", b"1"), {
                let mut d = raw(b"a/", b"");
                d.mode = 0o040755;
                d
            }]),
            false,
        ),
        (
            "NUL in name",
            build(&[ok.clone(), raw(b"bin/run\0.txt", b"x")]),
            false,
        ),
        ("NUL hiding ..", build(&[raw(b"../\0evil", b"x")]), false),
        (
            "backslash traversal",
            build(&[raw(b"..\\..\\evil.txt", b"x")]),
            false,
        ),
        (
            "backslash in a name",
            build(&[raw(b"bin\\run", b"x")]),
            false,
        ),
        ("drive letter", build(&[raw(b"C:\\evil.txt", b"x")]), false),
        (
            "hard link to /etc/passwd",
            build(&[ok.clone(), hard]),
            false,
        ),
        ("hard link, relative escape", build(&[hard_rel]), false),
        ("local name != central name", build(&[name_differs]), false),
        ("central size != local size", build(&[size_differs]), false),
        (
            "local method deflate, central stored",
            build(&[method_differs]),
            false,
        ),
        (
            "manifest lists an absent file (signed)",
            listed_absent,
            true,
        ),
        (
            "manifest lists an absent file (unsigned)",
            listed_absent_unsigned,
            false,
        ),
        ("signature over another manifest", sig_other, true),
    ];
    println!("\n| hostile package | exit | reason |");
    println!("|---|---|---|");
    let mut failures = Vec::new();
    for (name, bytes, needs_key) in cases {
        let mut rig = Node::offline();
        install_v1(&mut rig, needs_key.then_some((&kp, pk.as_str())), name);
        let slot_a = tree(&rig.slot("a"));
        let before = rig.files_outside();
        let o = rig.install(&bytes);
        let reason = text(&o)
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .to_string();
        println!("| {name} | {} | {} |", code(&o), reason.replace('|', "\\|"));
        let mut problems = Vec::new();
        if code(&o) != 21 {
            problems.push(format!("exit {}: {}", code(&o), text(&o)));
        }
        if rig.current().as_deref() != Some("slots/a") {
            problems.push(format!("current -> {:?}", rig.current()));
        }
        if tree(&rig.slot("a")) != slot_a {
            problems.push("active slot changed".into());
        }
        if rig.files_outside() != before {
            problems.push("wrote outside install.root/state_dir".into());
        }
        if !tree(&rig.slot("b")).is_empty() {
            problems.push(format!("slot b not empty: {:?}", tree(&rig.slot("b"))));
        }
        if rig.status()["version"] != "1.0.0" {
            problems.push("status version changed".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
