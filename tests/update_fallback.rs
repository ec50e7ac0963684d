//! The init scripts' fallback flag (`CYBERSENSEI_AGENT_FALLBACK=1`) and the start
//! count (`state_dir/agent-starts`), through the real binary (issue 23, finding 6):
//! the flag must not survive the daemon's exec into an updated agent, and the flag
//! alone, without the init script's count for that slot, is no evidence of a failed
//! start.

use crate::harness::{self, code, Node, KEY};
use cybersensei_sim::Sim;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const FALLBACK: &str = "CYBERSENSEI_AGENT_FALLBACK";

/// A package 9.9.9 whose `bin/cybersensei-agent` is `script`.
fn package_with_agent(script: &str) -> Vec<u8> {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("VERSION", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"9.9.9\n").unwrap();
    w.start_file("version.json", SimpleFileOptions::default())
        .unwrap();
    w.write_all(cybersensei_sim::version_json("9.9.9", "- new agent", "0.0.0").as_bytes())
        .unwrap();
    w.start_file(
        "bin/cybersensei-agent",
        SimpleFileOptions::default().unix_permissions(0o755),
    )
    .unwrap();
    w.write_all(script.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

fn auto_update_node(sim: &Sim) -> Node {
    let mut node = Node::new(sim);
    node.set("schedule", "splay", false.into());
    node.set("updates", "auto_download", true.into());
    node.set("updates", "auto_install", true.into());
    node
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn update_state(node: &Node) -> String {
    std::fs::read(node.state_dir.join("status.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v["update"]["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn failed_id(node: &Node) -> Option<String> {
    std::fs::read_to_string(node.state_dir.join("update/failed-id")).ok()
}

/// A daemon the init script started in fallback mode (the factory agent after a
/// slot agent failed) installs an update that carries the real agent: it hands over
/// by exec, and the new agent must health-check and commit it, not take its own start
/// for a failed one. Before the fix the flag survived the exec: the new agent rolled
/// its own update back, marked the slot bad and wrote its id to `failed-id`.
#[test]
fn a_daemon_started_in_fallback_hands_over_to_an_agent_that_commits() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let node = auto_update_node(&sim);
    let script = format!(
        "#!/bin/sh\nexec {} \"$@\"\n",
        harness::agent::agent_shell_words()
    );
    sim.publish_update("9.9.9", package_with_agent(&script), "- new agent");
    let mut child = node
        .command(&["run"])
        .env(FALLBACK, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = node.state_dir.join("update/journal.json");
    wait_for("the update to settle", Duration::from_secs(60), || {
        let s = update_state(&node);
        (!journal.exists() && s == "idle" && node.status()["version"] == "9.9.9")
            || s == "rolled-back"
            || s == "failed"
    });
    let st = node.status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(st["update"]["state"], "idle", "{st}");
    assert_eq!(st["version"], "9.9.9", "{st}");
    assert_eq!(
        failed_id(&node),
        None,
        "the new agent marked its own update failed"
    );
}

/// A box whose daemon handed 9.9.9 over to its agent (journal at `switched`), that
/// agent killed before its recovery. Returns the node and the slot of 9.9.9.
fn handed_over(sim: &Sim) -> (Node, String) {
    let node = auto_update_node(sim);
    let marker = node.dir.path().join("new-agent-ran");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo cybersensei-agent 9.9.9; exit 0; }}\necho ran > '{}'\nexec sleep 30\n",
        marker.display()
    );
    sim.publish_update("9.9.9", package_with_agent(&script), "- new agent");
    let mut child = node
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the hand-over", Duration::from_secs(30), || marker.exists());
    let _ = child.kill();
    let _ = child.wait();
    let slot = slot_of(&node).expect("current names the new slot");
    (node, slot)
}

/// The slot `current` names ("a" or "b").
fn slot_of(node: &Node) -> Option<String> {
    let cur = node.current()?;
    Path::new(&cur)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn validate_as_fallback(node: &Node) {
    let o = node
        .command(&["validate"])
        .env(FALLBACK, "1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
}

fn write_starts(node: &Node, text: &str) {
    std::fs::write(Path::new(&node.state_dir).join("agent-starts"), text).unwrap();
}

/// The flag alone (inherited, set by hand) proves nothing: without the init script's
/// count of a start of that slot, the update is health-checked and committed. With the
/// count, the factory agent rolls the update back and marks the slot bad.
#[test]
fn the_fallback_flag_needs_the_init_scripts_count_for_that_slot() {
    let sim = harness::sim();
    sim.valid_license(KEY);

    let (node, _) = handed_over(&sim);
    validate_as_fallback(&node);
    let st = node.status();
    assert_eq!(st["version"], "9.9.9", "no count: committed: {st}");
    assert_eq!(st["update"]["state"], "idle", "{st}");
    assert_eq!(failed_id(&node), None);

    // A count for the other slot is no evidence either.
    let (node, slot2) = handed_over(&sim);
    let other = if slot2 == "a" { "b" } else { "a" };
    write_starts(&node, &format!("3 slots/{other}\n"));
    validate_as_fallback(&node);
    assert_eq!(node.status()["version"], "9.9.9");
    assert_eq!(failed_id(&node), None);

    // The script's count for this slot: the start failed, the update is undone.
    let (node, slot3) = handed_over(&sim);
    write_starts(
        &node,
        &format!("1 slots/{slot3} 00000000-0000-0000-0000-000000000000 0\n"),
    );
    validate_as_fallback(&node);
    let st = node.status();
    assert_eq!(st["update"]["state"], "rolled-back", "{st}");
    assert_ne!(slot_of(&node).as_deref(), Some(slot3.as_str()));
    assert!(failed_id(&node).is_some(), "the failed update's id is kept");
}

/// One start of the agent with `boot` as the kernel's boot id; `cut`: the power goes
/// right after the start counted its attempt (the journal's `switched` rewritten).
fn start_in_boot(node: &Node, boot: &str, cut: bool) -> std::process::Output {
    let mut c = node.command(&["validate"]);
    c.env("CYBERSENSEI_TEST_BOOT_ID", boot);
    if cut {
        c.env("CYBERSENSEI_TEST_CRASH_AT", "journal:switched");
    }
    c.output().unwrap()
}

/// Issue 26, item 4, the agent's side: starts of a freshly switched slot cut by a
/// power cut (the next start is in another boot) do not spend
/// `updates.max_boot_attempts` (3); crashes (restarts in the same boot) still do.
#[test]
fn starts_cut_by_a_reboot_are_not_failed_starts_crashes_are() {
    let sim = harness::sim();
    sim.valid_license(KEY);

    let (node, slot) = handed_over(&sim);
    for k in 1..=5 {
        let o = start_in_boot(&node, &format!("boot-{k}"), true);
        assert!(harness::killed(&o), "cut {k}: {}", harness::text(&o));
    }
    let o = start_in_boot(&node, "boot-6", false);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    let st = node.status();
    assert_eq!(st["version"], "9.9.9", "five cuts, then committed: {st}");
    assert_eq!(st["update"]["state"], "idle", "{st}");
    assert_eq!(slot_of(&node), Some(slot));
    assert_eq!(failed_id(&node), None);

    // The same boot every time: a crash loop. The first start is in another boot than
    // the hand-over's (forgiven); the next ones count, and the 4th attempt rolls back.
    let (node, slot) = handed_over(&sim);
    for k in 1..=3 {
        let j = std::fs::read_to_string(node.state_dir.join("update/journal.json"));
        let o = start_in_boot(&node, "one-boot", true);
        assert!(
            harness::killed(&o),
            "crash {k}: {j:?} {}",
            harness::text(&o)
        );
    }
    let o = start_in_boot(&node, "one-boot", false);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    let st = node.status();
    assert_eq!(st["update"]["state"], "rolled-back", "{st}");
    assert!(
        st["update"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("max_boot_attempts")),
        "{st}"
    );
    assert_ne!(slot_of(&node), Some(slot));
}
