//! The daemon as a process: requests it makes, signals, reload, single instance.

mod harness;

use harness::{code, Node, KEY};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn(node: &Node) -> Child {
    node.command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fast_node(sim: &cybersensei_sim::Sim) -> Node {
    let mut node = Node::new(sim);
    node.set("telemetry", "interval", 1.into());
    node.set("updates", "check_interval", 1.into());
    node.set("schedule", "splay", false.into());
    node
}

#[test]
fn runs_steps_then_exits_0_on_sigterm_quickly() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let node = fast_node(&sim);
    let mut child = spawn(&node);
    wait_for("telemetry and checks", Duration::from_secs(20), || {
        sim.count("/telemetry") >= 2 && sim.count("/update/check") >= 2
    });
    assert_eq!(
        sim.count("/api/license/validate"),
        1,
        "validated once at boot"
    );
    let t = Instant::now();
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5));
    let st = node.status();
    assert_eq!(st["license"]["state"], "valid");
    assert!(st["telemetry"]["lastSentAt"].is_string());
}

#[test]
fn second_run_is_refused_while_one_runs() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let node = fast_node(&sim);
    let mut child = spawn(&node);
    wait_for("first validation", Duration::from_secs(10), || {
        sim.count("/api/license/validate") >= 1
    });
    let o = node.run(&["run"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already running"));
    signal(&child, libc::SIGINT);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
}

#[test]
fn sighup_reloads_and_a_broken_config_is_kept_out() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let mut node = fast_node(&sim);
    node.set("telemetry", "enabled", false.into());
    let mut child = spawn(&node);
    wait_for("first validation", Duration::from_secs(10), || {
        sim.count("/api/license/validate") >= 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sim.count("/telemetry"), 0, "telemetry disabled");
    // A broken file: reported, the old config kept, the daemon lives on.
    std::fs::write(&node.config, "{ broken").unwrap();
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(800));
    assert!(child.try_wait().unwrap().is_none(), "daemon still running");
    // A good file enabling telemetry takes effect.
    node.set("telemetry", "enabled", true.into());
    signal(&child, libc::SIGHUP);
    wait_for("telemetry after reload", Duration::from_secs(15), || {
        sim.count("/telemetry") >= 1
    });
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    let log = std::fs::read_to_string(&node.log_file).unwrap();
    assert!(log.contains("reload refused"), "{log}");
}

#[test]
fn refused_license_stops_services_and_keeps_running() {
    let sim = harness::sim();
    sim.set_license(KEY, cybersensei_sim::LicenseOutcome::Expired);
    let mut node = fast_node(&sim);
    let marker = node.dir.path().join("stopped");
    node.set(
        "services",
        "stop",
        serde_json::json!([
            "/bin/sh",
            "-c",
            format!("echo stopped > {}", marker.display())
        ]),
    );
    let mut child = spawn(&node);
    wait_for("services stopped", Duration::from_secs(10), || {
        marker.exists()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a refusal never ends run"
    );
    assert_eq!(
        sim.count("/api/license/validate"),
        1,
        "no tight revalidation loop"
    );
    assert_eq!(
        sim.count("/update/check"),
        0,
        "no update checks while refused"
    );
    let st = node.status();
    assert_eq!(st["license"]["state"], "expired");
    assert_eq!(st["services"]["running"], false);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
}
