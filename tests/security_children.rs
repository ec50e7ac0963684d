//! Issue 15, finding 8, through the real binary: service commands get no secret in
//! their environment, a command that times out is killed with its whole process
//! group, and SIGTERM during a health check stops the agent promptly (the update
//! stays to be health-checked at the next start, not rolled back).

use crate::harness::package::*;
use crate::harness::*;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SECRET: &str = "SECRET-LICENSE-KEY-0123456789";

#[test]
fn service_commands_never_see_the_license_key() {
    let mut rig = Node::offline();
    let env_out = rig.dir.path().join("start.env");
    rig.set(
        "services",
        "start",
        json!([["/bin/sh", "-c", format!("env > '{}'", env_out.display())]]),
    );
    let pkg = rig.package("v1.zip", &zip(&app("1.0.0")));
    let o = rig
        .command(&["install", pkg.to_str().unwrap()])
        .env("CYBERSENSEI_LICENSE_KEY", SECRET)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let env = std::fs::read_to_string(&env_out).unwrap();
    assert!(env.contains("CYBERSENSEI_SLOT_DIR="), "{env}");
    assert!(
        !env.contains(SECRET),
        "the key reached a service command:\n{env}"
    );
    assert!(!env.contains("CYBERSENSEI_LICENSE_KEY"), "{env}");
}

fn alive(pid: i32) -> bool {
    // A zombie waiting for its reaper is dead for our purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_timed_out_health_command_dies_with_its_children() {
    let mut rig = Node::offline();
    install_v1(&mut rig, None, "v1");
    let pidfile = rig.dir.path().join("grandchild.pid");
    // The health command starts a child of its own and waits for it: at the deadline
    // the agent must kill both, or the grandchild lives on (holding our stdout).
    rig.set(
        "services",
        "health",
        json!([[
            "/bin/sh",
            "-c",
            format!("sleep 30 & echo $! > '{}'; wait", pidfile.display())
        ]]),
    );
    rig.set("services", "health_timeout", json!(1));
    let t = Instant::now();
    let pkg = rig.package("v2.zip", &zip(&app("2.0.0")));
    let st = rig
        .command(&["install", pkg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(20), "health fails: rolled back");
    let gpid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let survived = alive(gpid);
    if survived {
        // SAFETY: the sleep this test's health command started, by its pid.
        unsafe { libc::kill(gpid, libc::SIGKILL) };
    }
    assert!(
        !survived,
        "the health command's child {gpid} outlived the timeout"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn sigterm_during_a_health_check_stops_at_once_without_rollback() {
    let mut rig = Node::offline();
    install_v1(&mut rig, None, "v1");
    // 2.0.0 switched, not yet health-checked (the journal says `switched`).
    let pkg = rig.package("v2.zip", &zip(&app("2.0.0")));
    let o = rig.run_crashing(&["install", pkg.to_str().unwrap()], "journal:switched");
    assert!(killed(&o), "{}", text(&o));
    let marker = rig.dir.path().join("health.started");
    rig.set(
        "services",
        "health",
        json!([[
            "/bin/sh",
            "-c",
            format!("touch '{}'; exec sleep 100", marker.display())
        ]]),
    );
    rig.set("services", "health_timeout", json!(60));
    let mut child = rig.daemon().spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !marker.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !marker.exists() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the start-up health check never ran");
    }
    let t = Instant::now();
    signal(&child, libc::SIGTERM);
    let mut status = None;
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(st) = child.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(status.is_some(), "still running {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    // Not a failed health check: still on 2.0.0, to be checked at the next start.
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert!(rig.state_dir.join("update/journal.json").exists());
    assert_ne!(rig.status()["update"]["state"], "rolled-back");
}

/// Issue 23, item 7: the staged agent's `--version` probe runs with the same
/// cleared environment as hooks (no proxy credentials, no fallback flag, no key).
#[test]
fn the_staged_agents_version_probe_gets_a_cleared_environment() {
    let rig = Node::offline();
    let env_out = rig.dir.path().join("probe.env");
    let mut e = app("1.0.0");
    e.push(exe(
        "bin/cybersensei-agent",
        &format!(
            "#!/bin/sh\nenv > '{}'\necho cybersensei-agent 1.0.0\n",
            env_out.display()
        ),
    ));
    let pkg = rig.package("v1.zip", &zip(&e));
    let o = rig
        .command(&["install", pkg.to_str().unwrap()])
        .env("CYBERSENSEI_LICENSE_KEY", SECRET)
        .env("HTTPS_PROXY", "http://operator:PROXY-PASSWORD@127.0.0.1:9")
        .env("CYBERSENSEI_AGENT_FALLBACK", "1")
        .env("SOME_OPERATOR_VARIABLE", "x")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let env = std::fs::read_to_string(&env_out).expect("the probe ran");
    for bad in [
        SECRET,
        "PROXY-PASSWORD",
        "CYBERSENSEI_AGENT_FALLBACK",
        "SOME_OPERATOR_VARIABLE",
    ] {
        assert!(!env.contains(bad), "{bad} reached the probe:\n{env}");
    }
    assert!(env.contains("PATH="), "{env}");
}

/// Issue 23, item 9: a hook that leaves the agent's process group (`setsid`) is
/// still killed when the hook times out.
#[test]
fn a_hook_that_calls_setsid_dies_at_its_timeout() {
    let mut rig = Node::offline();
    rig.set("updates", "hook_timeout", json!(1));
    let pidfile = rig.dir.path().join("escaped.pid");
    let mut e = app("1.0.0");
    e.push(exe(
        "hooks/post-install",
        &format!(
            "#!/bin/sh\nsetsid sh -c 'echo $$ > \"{}\"; exec sleep 1000' &\nsleep 30\n",
            pidfile.display()
        ),
    ));
    let p = rig.package("hook.zip", &zip(&e));
    let t = Instant::now();
    // Not `output()`: an escaped child holds the agent's stdout open.
    let st = rig
        .command(&["install", p.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(21), "{st}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the hook started its escapee")
        .trim()
        .parse()
        .unwrap();
    let escaped = alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("1000"));
    if escaped {
        // SAFETY: kill(2) with scalar arguments: the leftover goes before failing.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        !escaped,
        "the setsid child of the hook outlived its timeout"
    );
}
