//! The second-generation update engine through the real binary: content packages
//! (applied on a copy of the active slot), install hooks, `version.json` refusals
//! (exit 21 with the reason), the one verified pass, and a journal written by the
//! previous release.

use crate::harness::package::*;
use crate::harness::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// A full 1.0.0 installation as the box has it: the app, the content the backend
/// ships (exercises, templates), a file a later package deletes, and an old hook.
fn base(log: &str) -> Vec<E> {
    let mut e = app("1.0.0");
    e.push(file(
        "exercises.json",
        b"{\"version\":\"1.0.0\",\"exercises\":[]}",
    ));
    e.push(file("phishing_templates.json", b"[\"t1\"]"));
    e.push(file("app/old.js", b"old();"));
    e.push(exe(
        "hooks/post-switch",
        &format!("#!/bin/sh\necho \"old-hook $1\" >> '{log}'\n"),
    ));
    e
}

fn hook_log(rig: &Node) -> String {
    std::fs::read_to_string(rig.dir.path().join("hooks.log")).unwrap_or_default()
}

fn log_path(rig: &Node) -> String {
    rig.dir.path().join("hooks.log").display().to_string()
}

/// What a content package of `version` carries: version.json (as the backend's
/// generator writes it) and new exercises, a migration, a replaced app file.
fn content(version: &str, required: &str, extra: Vec<E>) -> Vec<E> {
    let mut e = vec![
        version_json(json!({"version": version, "changelog": "New exercises",
            "requiredNodeVersion": required, "createdAt": "2026-11-30T10:00:00.000Z"})),
        file(
            "exercises.json",
            format!("{{\"version\":\"{version}\"}}").as_bytes(),
        ),
        file("migrations/changelog.xml", b"<databaseChangeLog/>"),
        file("app/config.txt", format!("app {version}\n").as_bytes()),
    ];
    e.extend(extra);
    e
}

fn with_manifest(version: &str, kind: Option<&str>, e: Vec<E>, delete: &[&str]) -> Vec<E> {
    let m = manifest_v2(version, kind, &e, delete);
    let mut e = e;
    e.push(file("manifest.json", &m));
    e
}

/// The tree a content package leaves: the old slot minus its hooks and the
/// deletions, plus the package.
fn applied(old: &[E], pkg: &[E], delete: &[&str]) -> BTreeMap<String, String> {
    let mut t = expected_tree(old);
    t.retain(|k, _| !k.starts_with("hooks/") && !delete.iter().any(|d| k == d));
    t.extend(expected_tree(pkg));
    t
}

fn assert_untouched(rig: &Node, old: &[E], ctx: &str) {
    assert_eq!(rig.current().as_deref(), Some("slots/a"), "{ctx}");
    assert_eq!(tree(&rig.slot("a")), expected_tree(old), "{ctx}: slot a");
    assert!(tree(&rig.slot("b")).is_empty(), "{ctx}: slot b not cleared");
    assert!(
        !rig.root.join("slots/b.json").exists(),
        "{ctx}: slot b recorded"
    );
    assert_eq!(rig.status()["version"], "1.0.0", "{ctx}");
    assert!(!rig.state_dir.join("update/journal.json").exists(), "{ctx}");
}

#[test]
fn content_package_applies_on_a_copy_keeps_the_rest_and_rolls_back() {
    let rig = Node::offline();
    let v1 = base(&log_path(&rig));
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let a = rig.slot("a").display().to_string();
    assert_eq!(hook_log(&rig), format!("old-hook {a}\n"));

    let pkg = with_manifest(
        "1.1.0",
        None,
        content("1.1.0", "1.0.0", vec![]),
        &["app/old.js"],
    );
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(tree(&rig.slot("b")), applied(&v1, &pkg, &["app/old.js"]));
    assert_eq!(
        tree(&rig.slot("a")),
        expected_tree(&v1),
        "active slot touched"
    );
    // Unchanged files kept their modes; the old package's hook neither came along
    // nor ran again.
    let m = std::fs::metadata(rig.slot("b").join("bin/run")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert_eq!(hook_log(&rig), format!("old-hook {a}\n"));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig.root.join("slots/b.json")).unwrap()).unwrap();
    assert_eq!(rec["kind"], "content");
    assert_eq!(rec["version"], "1.1.0");
    assert_eq!(rig.status()["version"], "1.1.0");
    // `breaking`/`securityUpdate` describe an available package: none after the commit.
    assert!(rig.status()["update"]["breaking"].is_null());

    // A content package whose new version is unhealthy: back to 1.1.0 in slot b.
    let bad = content("1.2.0", "1.1.0", vec![file("unhealthy", b"1")]);
    let before = tree(&rig.slot("b"));
    let o = rig.install(&zip(&bad));
    assert_eq!(code(&o), 20, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(tree(&rig.slot("b")), before);
    assert_eq!(rig.status()["update"]["state"], "rolled-back");
    assert_eq!(rig.status()["version"], "1.1.0");
}

#[test]
fn package_as_the_backend_generates_it_is_content_and_installs_from_the_backend() {
    // platform/api update.service.ts generateUpdatePackage: AdmZip with exactly
    // version.json + exercises.json (deflated, no directory entries), checksum
    // "sha256:<hex>", requiredNodeVersion "1.0.0" by default.
    let sim = tls_sim();
    let rig = Node::updates(&sim);
    let v1 = base(&log_path(&rig));
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let vj = serde_json::to_vec_pretty(&json!({"version": "1.3.0", "changelog": "New exercises",
        "requiredNodeVersion": "1.0.0", "createdAt": "2026-11-30T10:00:00.000Z"}))
    .unwrap();
    let pkg = vec![
        E::Deflated("version.json".into(), vj),
        E::Deflated(
            "exercises.json".into(),
            b"{\"version\":\"1.3.0\",\"exercises\":[{\"topic\":\"Phishing\"}]}".to_vec(),
        ),
    ];
    sim.publish_update("1.3.0", zip(&pkg), "New exercises");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "1.3.0");
    assert_eq!(tree(&rig.slot("b")), applied(&v1, &pkg, &[]));
    // The application is all there: a full install would have left two files.
    assert!(rig.slot("b").join("bin/run").exists());
}

#[test]
fn content_package_on_an_empty_box_is_refused() {
    let rig = Node::offline();
    let o = rig.install(&zip(&content("1.0.0", "0.0.0", vec![])));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("content package"), "{}", text(&o));
    assert_eq!(rig.current(), None);
}

#[test]
fn kinds_said_explicitly_win_over_the_default_and_must_agree() {
    let rig = Node::offline();
    let v1 = base(&log_path(&rig));
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    // version.json but "kind": "full": the slot is exactly the package.
    let mut full = without(app("2.0.0"), "version.json");
    full.push(version_json(json!({"version": "2.0.0", "kind": "full"})));
    let o = rig.install(&zip(&full));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(tree(&rig.slot("b")), expected_tree(&full));
    // Manifest says content, version.json says full: refused.
    let mut e = vec![version_json(json!({"version": "2.1.0", "kind": "full"}))];
    e.push(file("x", b"1"));
    let pkg = with_manifest("2.1.0", Some("content"), e, &[]);
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("kind"), "{}", text(&o));
    // A manifest kind "content" without version.json: content.
    let pkg = with_manifest(
        "2.2.0",
        Some("content"),
        vec![file("extra.txt", b"e")],
        &["VERSION"],
    );
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mut want = expected_tree(&full);
    want.remove("VERSION");
    want.extend(expected_tree(&pkg));
    assert_eq!(tree(&rig.slot("a")), want);
}

#[test]
fn hooks_run_with_the_new_slot_and_a_failing_one_rolls_back() {
    let rig = Node::offline();
    let log = log_path(&rig);
    let v1 = base(&log);
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    std::fs::remove_file(rig.dir.path().join("hooks.log")).unwrap();
    let b = rig.slot("b").display().to_string();
    let a = rig.slot("a").display().to_string();

    // post-install fails: refused before the switch (21), slot b cleared.
    let pkg = content(
        "1.1.0",
        "1.0.0",
        vec![exe(
            "hooks/post-install",
            &format!("#!/bin/sh\necho \"install $1\" >> '{log}'\nexit 3\n"),
        )],
    );
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(
        text(&o).contains("hooks/post-install failed"),
        "{}",
        text(&o)
    );
    assert_eq!(hook_log(&rig), format!("install {b}\n"));
    assert_untouched(&rig, &v1, "post-install failure");

    // post-switch fails: rolled back (20), old services running again.
    let pkg = content(
        "1.1.0",
        "1.0.0",
        vec![exe(
            "hooks/post-switch",
            &format!("#!/bin/sh\necho \"switch $1 $CYBERSENSEI_OLD_SLOT_DIR $CYBERSENSEI_VERSION\" >> '{log}'\nexit 1\n"),
        )],
    );
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 20, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    assert!(
        hook_log(&rig).ends_with(&format!("switch {b} {a} 1.1.0\n")),
        "{}",
        hook_log(&rig)
    );
    assert!(
        rig.services_log().ends_with(&format!("start {a}\n")),
        "{}",
        rig.services_log()
    );
    let st = rig.status();
    assert_eq!(st["update"]["state"], "rolled-back");
    assert!(
        st["update"]["lastError"]
            .as_str()
            .unwrap()
            .contains("post-switch"),
        "{st}"
    );

    // A hook that hangs is killed at updates.hook_timeout.
    let mut rig = rig;
    rig.set("updates", "hook_timeout", json!(1));
    let pkg = content(
        "1.1.0",
        "1.0.0",
        vec![exe("hooks/post-install", "#!/bin/sh\nexec sleep 60\n")],
    );
    let t = std::time::Instant::now();
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("timed out"), "{}", text(&o));
    assert!(t.elapsed().as_secs() < 20);
    assert_untouched(&rig, &v1, "hook timeout");

    // A hook that is not executable is refused before anything is written.
    let pkg = content(
        "1.1.0",
        "1.0.0",
        vec![file("hooks/post-switch", b"#!/bin/sh\n")],
    );
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("executable"), "{}", text(&o));

    // Both hooks succeed: they ran in order, with the new slot, and it committed.
    std::fs::remove_file(rig.dir.path().join("hooks.log")).unwrap();
    let pkg = content(
        "1.1.0",
        "1.0.0",
        vec![
            exe(
                "hooks/post-install",
                &format!("#!/bin/sh\necho \"install $1\" >> '{log}'\n"),
            ),
            exe(
                "hooks/post-switch",
                &format!("#!/bin/sh\necho \"switch $1\" >> '{log}'\nenv > '{log}.env'\n"),
            ),
        ],
    );
    // The agent's environment (here the license key) never reaches package code.
    let p = rig.package("pkg.zip", &zip(&pkg));
    let o = rig
        .command(&["install", p.to_str().unwrap()])
        .env("CYBERSENSEI_LICENSE_KEY", "SECRET-KEY-4242")
        .env("HTTPS_PROXY", "http://user:pw@proxy:3128")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(hook_log(&rig), format!("install {b}\nswitch {b}\n"));
    let env = std::fs::read_to_string(format!("{log}.env")).unwrap();
    assert!(env.contains("CYBERSENSEI_HOOK=post-switch"), "{env}");
    assert!(
        env.contains(&format!("CYBERSENSEI_OLD_SLOT_DIR={a}")),
        "{env}"
    );
    assert!(!env.contains("SECRET") && !env.contains("proxy"), "{env}");
    assert_eq!(rig.status()["version"], "1.1.0");
}

#[test]
fn version_json_refusals_through_install_each_with_its_reason() {
    let rig = Node::offline();
    let v1 = base(&log_path(&rig));
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let other_arch = if cfg!(target_arch = "x86_64") {
        "arm64"
    } else {
        "x64"
    };
    let own_arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "armhf"
    };
    let vj = |v: serde_json::Value| vec![version_json(v), file("exercises.json", b"{}")];
    let cases: Vec<(&str, Vec<E>, &str)> = vec![
        (
            "architecture",
            vj(json!({"version": "1.1.0", "architecture": other_arch})),
            "architecture",
        ),
        (
            "platform",
            vj(json!({"version": "1.1.0", "platform": "windows"})),
            "platform \"windows\" is not linux",
        ),
        (
            "not semver",
            vj(json!({"version": "1.1"})),
            "not a semantic version",
        ),
        (
            "v prefix",
            vj(json!({"version": "v1.1.0"})),
            "not a semantic version",
        ),
        (
            "required above installed",
            vj(json!({"version": "1.1.0", "requiredNodeVersion": "1.0.5"})),
            "requires version 1.0.5",
        ),
        (
            "required not semver",
            vj(json!({"version": "1.1.0", "requiredNodeVersion": "latest"})),
            "requiredNodeVersion",
        ),
        (
            "manifest disagrees",
            with_manifest("1.2.0", None, vj(json!({"version": "1.1.0"})), &[]),
            "is not manifest.json (1.2.0)",
        ),
        (
            "breaking not a boolean",
            vj(json!({"version": "1.1.0", "breaking": "yes"})),
            "must be true or false",
        ),
    ];
    for (name, pkg, reason) in cases {
        let o = rig.install(&zip(&pkg));
        assert_eq!(code(&o), 21, "{name}: {}", text(&o));
        assert!(text(&o).contains(reason), "{name}: {}", text(&o));
        assert_untouched(&rig, &v1, name);
        assert_eq!(rig.status()["update"]["state"], "failed", "{name}");
    }
    // The box's own architecture in another spelling, and linux, are fine.
    let ok = vj(
        json!({"version": "1.1.0", "architecture": own_arch, "platform": "linux",
        "requiredNodeVersion": "1.0.0", "breaking": true, "securityUpdate": true}),
    );
    let o = rig.install(&zip(&ok));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = rig.status();
    assert_eq!(st["version"], "1.1.0");
    // An operator's install installs a breaking package.
    assert_eq!(st["update"]["state"], "idle");
}

#[test]
fn version_json_not_the_checks_latest_version_is_refused_on_update() {
    let sim = tls_sim();
    let rig = Node::updates(&sim);
    let v1 = base(&log_path(&rig));
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    let pkg = vec![
        version_json(json!({"version": "1.4.0", "changelog": "- mislabelled"})),
        file("exercises.json", b"{}"),
    ];
    if sim.profile() == cybersensei_sim::Profile::Central {
        // The real upload takes the version from version.json: a mislabelled package
        // cannot be announced there (the guide's backend can, tested below).
        assert!(sim.try_publish_update("1.5.0", zip(&pkg), "-").is_err());
        return;
    }
    sim.publish_update("1.5.0", zip(&pkg), "- mislabelled");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(
        text(&o).contains("version 1.4.0 is not the check's latestVersion (1.5.0)"),
        "{}",
        text(&o)
    );
    assert_untouched(&rig, &v1, "latestVersion");
    // The refused download is not kept.
    assert!(!rig.state_dir.join("update/package.zip").exists());
}

#[test]
fn one_pass_mismatch_clears_the_slot_and_leaves_no_copy() {
    let rig = Node::offline();
    let v1 = app("1.0.0");
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    // A big first file, then one whose content differs from its (correct-CRC) entry:
    // the mismatch is found while extracting, after the first file was written.
    let big = noise(2 << 20, 7);
    let good = vec![
        file("VERSION", b"2.0.0\n"),
        file("data/big.bin", &big),
        file("data/late.txt", b"expected"),
    ];
    let m = manifest_v2("2.0.0", None, &good, &[]);
    let mut bad = good.clone();
    bad[2] = file("data/late.txt", b"tampered");
    bad.push(file("manifest.json", &m));
    let o = rig.install(&zip(&bad));
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(
        text(&o).contains("data/late.txt: SHA-256 does not match"),
        "{}",
        text(&o)
    );
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert!(tree(&rig.slot("b")).is_empty(), "slot b not cleared");
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    // The agent's own copy of the package was never left in state_dir.
    let left: Vec<String> = tree(&rig.state_dir.join("update")).into_keys().collect();
    assert!(left.iter().all(|k| !k.ends_with(".zip")), "{left:?}");

    // v2 manifest: type, size and link disagreements are refused; its mode wins.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            serde_json::to_vec(&json!({"version": "2.0.0", "files": [
                {"path": "VERSION", "type": "dir"}]}))
            .unwrap(),
            "manifest.json says Dir, the package holds a File",
        ),
        (
            serde_json::to_vec(&json!({"version": "2.0.0", "files": [
                {"path": "VERSION", "size": 99, "sha256": sha256(b"2.0.0\n")}]}))
            .unwrap(),
            "says 99 bytes",
        ),
    ];
    for (m, reason) in cases {
        let o = rig.install(&zip(&[
            file("VERSION", b"2.0.0\n"),
            file("manifest.json", &m),
        ]));
        assert_eq!(code(&o), 21, "{}", text(&o));
        assert!(text(&o).contains(reason), "{}", text(&o));
    }
    let e = vec![
        file("VERSION", b"2.0.0\n"),
        E::File("bin/tool".into(), b"x".to_vec(), 0o644),
    ];
    let mut m: serde_json::Value =
        serde_json::from_slice(&manifest_v2("2.0.0", None, &e, &[])).unwrap();
    m["files"][1]["mode"] = json!("0750");
    let mut pkg = e;
    pkg.push(file("manifest.json", &serde_json::to_vec(&m).unwrap()));
    let o = rig.install(&zip(&pkg));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mode = std::fs::metadata(rig.slot("b").join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
}

/// A journal exactly as the previous release (0.1.0, before the state machine)
/// wrote it: same fields, same words, pretty-printed.
fn old_journal(step: &str, from: &str, target: &str, version: &str, attempts: u32) -> String {
    format!(
        r#"{{
  "step": "{step}",
  "kind": "update",
  "from": "{from}",
  "target": "{target}",
  "version": "{version}",
  "updateId": null,
  "attempts": {attempts},
  "reason": null,
  "startedAt": "2026-11-29T10:00:00.000Z"
}}"#
    )
}

#[test]
fn journal_written_by_the_previous_release_is_recovered() {
    let rig = Node::offline();
    let v1 = app("1.0.0");
    let v2 = app("2.0.0");
    assert_eq!(code(&rig.install(&zip(&v1))), 0);
    assert_eq!(code(&rig.install(&zip(&v2))), 0);
    let j = rig.state_dir.join("update/journal.json");

    // `switched` to b, one attempt: the restart health-checks and commits.
    std::fs::write(&j, old_journal("switched", "a", "b", "2.0.0", 1)).unwrap();
    restart(&rig);
    assert!(!j.exists());
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(rig.status()["update"]["state"], "idle");

    // `switching` to b: rolled back to a.
    std::fs::write(&j, old_journal("switching", "a", "b", "2.0.0", 0)).unwrap();
    restart(&rig);
    assert!(!j.exists());
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(rig.status()["update"]["state"], "rolled-back");
    assert_eq!(tree(&rig.slot("b")), expected_tree(&v2), "b stays complete");

    // `staging` of b: b cleared, a untouched.
    std::fs::write(&j, old_journal("staging", "a", "b", "3.0.0", 0)).unwrap();
    restart(&rig);
    assert!(!j.exists());
    assert!(tree(&rig.slot("b")).is_empty());
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    assert_eq!(rig.status()["update"]["state"], "failed");

    // And the new release's journal reads the same way back (no new field needed).
    let o = rig.install(&zip(&v2));
    assert_eq!(code(&o), 0, "{}", text(&o));
}
