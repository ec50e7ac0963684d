//! The daemon as a process: requests it makes, signals, reload, single instance.

use crate::harness::{self, code, signal, Node, KEY};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn(node: &Node) -> Child {
    node.command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

/// Appends `<verb>` to `log` when the agent runs that services command.
fn services_logging_to(node: &mut Node, log: &std::path::Path) {
    for verb in ["start", "stop"] {
        node.set(
            "services",
            verb,
            serde_json::json!(["/bin/sh", "-c", format!("echo {verb} >> {}", log.display())]),
        );
    }
}

#[test]
fn license_expiring_mid_run_stops_services_and_valid_again_restarts_them() {
    let Some(lib) = harness::faketime() else {
        return;
    };
    let sim = harness::sim();
    sim.valid_license(KEY);
    let mut node = Node::new(&sim);
    let svc = node.dir.path().join("services.log");
    services_logging_to(&mut node, &svc);
    // The shortest revalidation the config allows (60 s), under libfaketime at 60x:
    // a minute of the agent's time is a second of the test's. Timeouts scale too, so
    // they are made long in the agent's time.
    node.set("license", "revalidate_interval", 60.into());
    node.set("backend", "timeout", 120.into());
    node.set("schedule", "splay", false.into());
    let mut child = node
        .daemon()
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", "+0 x60")
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&svc).unwrap_or_default();
    wait_for("services started", Duration::from_secs(10), || {
        log() == "start\n"
    });

    sim.set_license(KEY, cybersensei_sim::LicenseOutcome::Expired);
    let expired_at = sim.count("/api/license/validate");
    wait_for("services stopped", Duration::from_secs(15), || {
        log() == "start\nstop\n" && node.status()["services"]["running"] == false
    });
    // status.json is written once the stop command has returned: wait for it too.
    wait_for("status says stopped", Duration::from_secs(5), || {
        node.status()["services"]["running"] == false
    });
    assert_eq!(node.status()["license"]["state"], "expired");

    sim.valid_license(KEY);
    // The start command runs before the agent records it: wait for both.
    wait_for("services started again", Duration::from_secs(15), || {
        log() == "start\nstop\nstart\n" && node.status()["services"]["running"] == true
    });
    wait_for("status says running", Duration::from_secs(5), || {
        node.status()["services"]["running"] == true
    });
    let st = node.status();
    assert_eq!(st["license"]["state"], "valid");
    assert_eq!(st["services"]["running"], true);
    // Backed off, never a tight loop: a handful of validations for the episode.
    let during = sim.count("/api/license/validate") - expired_at;
    assert!((2..=4).contains(&during), "{during} validations");
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
}

#[test]
fn sigterm_during_a_slow_download_exits_0_and_the_next_update_resumes() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    // A 1 MiB package dripped at 8 KiB every 50 ms (~20 s in all).
    let mut blob = vec![0u8; 1 << 20];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let pkg = {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("VERSION", o).unwrap();
        w.write_all(b"2.0.0\n").unwrap();
        w.start_file("version.json", o).unwrap();
        w.write_all(cybersensei_sim::version_json("2.0.0", "- slow", "0.0.0").as_bytes())
            .unwrap();
        w.start_file("blob.bin", o).unwrap();
        w.write_all(&blob).unwrap();
        w.finish().unwrap().into_inner()
    };
    sim.publish_update("2.0.0", pkg, "- slow");
    sim.push_fault(
        "/update/download/",
        cybersensei_sim::Fault::SlowBody {
            chunk: 8192,
            delay_ms: 50,
        },
    );
    let mut node = Node::new(&sim);
    node.set("schedule", "splay", false.into());
    node.set("updates", "auto_download", true.into());
    let mut child = spawn(&node);
    let partial = || {
        harness::all_files(&node.state_dir)
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".part"))
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    wait_for("some bytes downloaded", Duration::from_secs(15), || {
        partial() > 64 * 1024
    });
    let t = Instant::now();
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    println!("exited {} ms after SIGTERM", t.elapsed().as_millis());
    let kept = partial();
    assert!(kept > 64 * 1024, "the partial file was not kept: {kept}");
    assert!(kept < 1 << 20, "the download had finished: {kept}");

    // The next run resumes where it stopped (the fault was one-shot: full speed now).
    let o = node.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    let ranges = sim.download_ranges();
    let start = harness::range_start(ranges.last().unwrap()).expect("a Range request");
    assert!(start >= 64 * 1024, "resumed from {start}: {ranges:?}");
    assert_eq!(node.status()["version"], "2.0.0");
}

/// A node whose daemon checks at once and downloads and installs by itself.
fn auto_installing(sim: &cybersensei_sim::Sim) -> Node {
    sim.valid_license(KEY);
    let mut node = Node::new(sim);
    node.set("schedule", "splay", false.into());
    node.set("updates", "auto_download", true.into());
    node.set("updates", "auto_install", true.into());
    node
}

#[test]
fn an_update_carrying_an_agent_is_handed_to_it_and_committed_by_it() {
    let sim = harness::sim();
    let node = auto_installing(&sim);
    // The "new agent": answers the --version probe, then records how it was started.
    let marker = node.dir.path().join("new-agent-ran");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo cybersensei-agent 9.9.9; exit 0; }}\necho \"$$ $*\" > '{}'\nexec sleep 30\n",
        marker.display()
    );
    let pkg = {
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
    };
    sim.publish_update("9.9.9", pkg, "- new agent");
    let mut child = spawn(&node);
    wait_for("the new agent to run", Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
    });
    let ran = std::fs::read_to_string(&marker).unwrap();
    let (pid, args) = ran.trim().split_once(' ').unwrap();
    // Same process (exec, not a child): the init system's pidfile stays right.
    assert_eq!(pid, child.id().to_string(), "{ran}");
    assert_eq!(
        args,
        format!("-c {} run", node.config.display()),
        "same arguments"
    );
    // Not committed by the old agent: the new one must prove it runs first.
    let journal = node.state_dir.join("update/journal.json");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    assert_eq!(j["step"], "switched", "{j}");
    let _ = child.kill();
    let _ = child.wait();
    // What the real new agent does at start: recovery health-checks and commits.
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    assert!(!journal.exists(), "not committed");
    let st = node.status();
    assert_eq!(st["version"], "9.9.9");
    assert_eq!(st["update"]["state"], "idle", "{st}");
}

/// An operator's `rollback` sticks: a daemon that installs automatically does not
/// install again the update the box was rolled back from (the arm64 boot test met
/// it: the factory agent reinstalled 1.1.0 two seconds after `rollback`). A person's
/// `update` still brings it back.
#[test]
fn an_update_the_operator_rolled_back_is_not_installed_again_by_the_daemon() {
    use crate::harness::package::{app, zip};
    let sim = harness::sim();
    let node = auto_installing(&sim);
    assert_eq!(code(&node.install(&zip(&app("1.0.0")))), 0);
    sim.publish_update("2.0.0", zip(&app("2.0.0")), "- two");
    let o = node.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    assert_eq!(node.status()["version"], "2.0.0");
    let o = node.run(&["rollback"]);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    assert_eq!(node.status()["version"], "1.0.0");
    let downloads = sim.count("/update/download");
    let checks = sim.count("/update/check");
    let mut child = spawn(&node);
    wait_for("the daemon's update check", Duration::from_secs(20), || {
        sim.count("/update/check") > checks
    });
    // The step after the check (download, install) would have begun by now.
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGTERM);
    let _ = child.wait();
    assert_eq!(sim.count("/update/download"), downloads, "downloaded again");
    assert_eq!(node.status()["version"], "1.0.0", "installed again");
    let o = node.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", harness::text(&o));
    assert_eq!(node.status()["version"], "2.0.0");
}
