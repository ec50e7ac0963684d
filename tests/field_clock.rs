//! A box whose clock is not set yet (1970, before NTP): the real binary under
//! libfaketime against the simulator over TLS.

use crate::harness::{self, code, faketime, signal, text, Node, KEY};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn at_1970(node: &Node, args: &[&str]) -> std::process::Output {
    command_1970(node, args).output().unwrap()
}

fn command_1970(node: &Node, args: &[&str]) -> Command {
    command_at(node, args, "@1970-01-02 00:00:00")
}

/// The agent under libfaketime with `spec` (e.g. `@1970-01-02 00:00:00 x50`: the
/// clocks and sleeps run 50 times faster, so minutes of retries pass in seconds).
fn command_at(node: &Node, args: &[&str], spec: &str) -> Command {
    let mut c = node.command(args);
    if let Some(lib) = faketime() {
        c.env("LD_PRELOAD", lib).env("FAKETIME", spec);
    }
    c
}

/// A simulator with a valid license and a node pointed at it, when libfaketime exists.
fn setup() -> Option<(cybersensei_sim::Sim, Node)> {
    faketime()?;
    let sim = harness::sim();
    sim.valid_license(KEY);
    let node = Node::new(&sim);
    Some((sim, node))
}

/// status.json's license state, checking that its message blames the clock.
fn state_blaming_clock(node: &Node) -> String {
    let st = node.status();
    let msg = st["license"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("clock not set"), "{st}");
    st["license"]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn never_validated_box_in_1970_says_clock_not_set() {
    let Some((sim, node)) = setup() else { return };
    let o = at_1970(&node, &["validate"]);
    let out = text(&o);
    println!("{out}");
    assert_eq!(code(&o), 14, "{out}");
    assert!(out.contains("clock not set"), "{out}");
    // No request burned on a TLS handshake that cannot succeed.
    assert_eq!(sim.count("/api/license/validate"), 0);
    assert_eq!(state_blaming_clock(&node), "unknown");
}

#[test]
fn validated_box_in_1970_runs_in_grace_not_expired_nor_forever() {
    let Some((sim, node)) = setup() else { return };
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let cache_before = std::fs::read(node.state_dir.join("license.json")).unwrap();

    let o = at_1970(&node, &["validate"]);
    let out = text(&o);
    assert_eq!(code(&o), 0, "grace runs the box: {out}");
    assert_eq!(state_blaming_clock(&node), "grace");
    let st = node.status();
    assert!(
        st["license"]["daysLeft"].is_null(),
        "no expiry arithmetic in 1970: {st}"
    );
    // The 1970 run did not rewrite the last validation (no 1970 validatedAt that
    // would later make the grace period look expired or endless).
    let cache_after = std::fs::read(node.state_dir.join("license.json")).unwrap();
    assert_eq!(cache_before, cache_after);
    assert_eq!(sim.count("/api/license/validate"), 1);

    // Back to a set clock: the backend decides again.
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(node.status()["license"]["state"], "valid");
}

#[test]
fn daemon_in_1970_says_it_once_and_keeps_running() {
    let Some((sim, mut node)) = setup() else {
        return;
    };
    node.set("schedule", "splay", false.into());
    node.set("log", "level", "debug".into());
    // 50x: the 60 s clock retry comes back every 1.2 s of real time.
    let mut child = command_at(&node, &["run"], "@1970-01-02 00:00:00 x50")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !node.state_dir.join("status.json").exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    signal(&child, libc::SIGTERM);
    let mut rc = None;
    let t = Instant::now();
    while rc.is_none() && t.elapsed() < Duration::from_secs(5) {
        rc = child.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(rc) = rc else {
        let _ = child.kill();
        panic!("no exit within 5 s of SIGTERM");
    };
    let log = std::fs::read_to_string(&node.log_file).unwrap();
    assert_eq!(rc.code(), Some(0), "{rc:?}\n{log}");
    let tries = log.matches("license unknown: ").count();
    assert!(tries >= 2, "the clock was not retried: {tries}\n{log}");
    assert!(tries <= 6, "retried faster than every 60 s: {tries}\n{log}");
    assert_eq!(
        log.matches("WARN] system clock not set").count(),
        1,
        "said once, not on every retry:\n{log}"
    );
    assert_eq!(sim.count("/api/license/validate"), 0, "{log}");
    let st = node.status();
    assert_eq!(st["license"]["state"], "unknown", "{st}");
    // Nothing was counted as a refusal.
    assert!(!log.contains("refused"), "{log}");
}
