//! Automatic installs and the install window, `breaking` and `securityUpdate`: the real
//! `Daemon` loop driven by a `FakeClock` (hours pass in milliseconds) against the
//! simulator over TLS, on a box installed by the real binary.

use crate::harness::in_process::{run_until, wall_now};
use crate::harness::package::*;
use crate::harness::*;
use cybersensei_agent::clock::FakeClock;
use cybersensei_agent::update::window::local_minute;
use serde_json::json;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DOWNLOAD: &str = "/update/download/";

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", (m / 60) % 24, m % 60)
}

/// Sets `updates.install_window` from `from` to `to` minutes after local minute `m0`
/// (the agent has this process's time zone); the window as written.
fn window_after(rig: &mut Node, m0: u32, from: u32, to: u32) -> String {
    let w = format!("{}-{}", hhmm((m0 + from) % 1440), hhmm((m0 + to) % 1440));
    rig.set("updates", "install_window", json!(w));
    w
}

/// A box on 1.0.0 whose daemon checks every hour on the hour (no splay, no jitter)
/// and installs automatically.
fn rig(sim: &cybersensei_sim::Sim) -> Node {
    let mut rig = Node::updates(sim);
    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    rig.set("telemetry", "enabled", json!(false));
    rig.set("schedule", "splay", json!(false));
    rig.set("schedule", "jitter_percent", json!(0));
    rig.set("updates", "check_interval", json!(3600));
    rig.set("updates", "auto_install", json!(true));
    rig
}

fn content(version: &str, flags: serde_json::Value) -> Vec<u8> {
    let mut v = json!({"version": version, "changelog": "x", "requiredNodeVersion": "1.0.0"});
    for (k, x) in flags.as_object().unwrap() {
        v[k] = x.clone();
    }
    zip(&[version_json(v), file("exercises.json", version.as_bytes())])
}

#[test]
fn automatic_install_waits_for_the_window_then_installs_inside_it() {
    let sim = tls_sim();
    let mut rig = rig(&sim);
    let t0 = wall_now();
    let m0 = local_minute(t0);
    // The window opens 3.5 h from now and lasts 1.5 h: the checks at 0, 1, 2 and 3 h
    // fall before it (a tick sleeps until its next step: the one started before 2 h
    // runs the check at 3 h), the one at 4 h inside.
    let w = window_after(&mut rig, m0, 210, 300);
    sim.publish_update("1.1.0", content("1.1.0", json!({})), "- content");
    let clock = FakeClock::new(t0);
    let mut d = rig.started_daemon(&clock);
    run_until(&mut d, &clock, 2 * HOUR + Duration::from_secs(60));
    assert_eq!(sim.count("/update/check"), 4);
    assert_eq!(
        rig.current().as_deref(),
        Some("slots/a"),
        "installed outside {w}"
    );
    let st = rig.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["update"]["state"], "available");
    assert!(
        st["update"]["deferred"]
            .as_str()
            .unwrap()
            .contains("install_window"),
        "{st}"
    );
    assert_eq!(st["update"]["breaking"], false);
    // Downloaded once and kept verified; not fetched again at each check.
    assert_eq!(sim.count(DOWNLOAD), 1);

    run_until(&mut d, &clock, 4 * HOUR + Duration::from_secs(60));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    let st = rig.status();
    assert_eq!(st["version"], "1.1.0");
    assert!(st["update"]["deferred"].is_null(), "{st}");
    let at =
        cybersensei_agent::clock::parse_iso8601(st["update"]["lastInstalledAt"].as_str().unwrap())
            .unwrap();
    let win = cybersensei_agent::update::window::Window::parse(&w).unwrap();
    assert!(
        win.contains(local_minute(at)),
        "installed at {} outside {w}",
        hhmm(local_minute(at))
    );
    assert_eq!(sim.count(DOWNLOAD), 1);
}

#[test]
fn a_security_update_skips_the_window_only_when_configured() {
    let sim = tls_sim();
    let mut rig = rig(&sim);
    let t0 = wall_now();
    let m0 = local_minute(t0);
    window_after(&mut rig, m0, 300, 360);
    sim.publish_update(
        "1.1.0",
        content("1.1.0", json!({"securityUpdate": true})),
        "- fix",
    );
    {
        let clock = FakeClock::new(t0);
        let mut d = rig.started_daemon(&clock);
        run_until(&mut d, &clock, Duration::from_secs(60));
        assert_eq!(rig.current().as_deref(), Some("slots/a"));
        let st = rig.status();
        assert_eq!(st["update"]["securityUpdate"], true);
        assert!(st["update"]["deferred"]
            .as_str()
            .unwrap()
            .contains("install_window"));
    }
    rig.set("updates", "security_outside_window", json!(true));
    let clock = FakeClock::new(t0 + 120.0);
    let mut d = rig.started_daemon(&clock);
    run_until(&mut d, &clock, Duration::from_secs(60));
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(rig.status()["version"], "1.1.0");
}

#[test]
fn a_breaking_update_is_never_installed_automatically_only_by_update() {
    let sim = tls_sim();
    let rig = rig(&sim);
    sim.publish_update(
        "2.0.0",
        content("2.0.0", json!({"breaking": true})),
        "- big",
    );
    let clock = FakeClock::new(wall_now());
    let mut d = rig.started_daemon(&clock);
    run_until(&mut d, &clock, 3 * HOUR);
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    let st = rig.status();
    assert_eq!(st["update"]["breaking"], true);
    assert_eq!(st["update"]["state"], "available");
    assert!(
        st["update"]["deferred"]
            .as_str()
            .unwrap()
            .contains("breaking"),
        "{st}"
    );
    drop(d);
    // The operator's `update` installs it (from the package already verified).
    let before = sim.count(DOWNLOAD);
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.status()["version"], "2.0.0");
    assert_eq!(sim.count(DOWNLOAD), before, "downloaded again");
}

/// The real binary's daemon (`run`): waits until its update check has downloaded and
/// verified the package (status `deferred` set), then SIGTERM; exit 0.
fn run_until_deferred(rig: &Node) -> serde_json::Value {
    let mut child = rig.daemon().spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st: Option<serde_json::Value> = std::fs::read(rig.state_dir.join("status.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        if let Some(st) = st.filter(|s| s["update"]["deferred"].is_string()) {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "never deferred");
        std::thread::sleep(Duration::from_millis(20));
    };
    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    st
}

#[test]
fn the_real_daemon_defers_breaking_and_out_of_window_installs() {
    let sim = tls_sim();
    let mut rig = rig(&sim);
    sim.publish_update(
        "2.0.0",
        content("2.0.0", json!({"breaking": true})),
        "- big",
    );
    let st = run_until_deferred(&rig);
    assert!(
        st["update"]["deferred"]
            .as_str()
            .unwrap()
            .contains("breaking"),
        "{st}"
    );
    assert_eq!(st["update"]["breaking"], true);
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(rig.status()["version"], "1.0.0");

    // A normal package, the window a few hours away (the agent has this process's
    // time zone): downloaded, verified, not installed.
    std::fs::remove_file(rig.state_dir.join("status.json")).unwrap();
    sim.publish_update("1.1.0", content("1.1.0", json!({})), "- content");
    window_after(&mut rig, local_minute(wall_now()), 180, 240);
    let st = run_until_deferred(&rig);
    assert!(
        st["update"]["deferred"]
            .as_str()
            .unwrap()
            .contains("install_window"),
        "{st}"
    );
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    // Without the window the same daemon installs it at its first check.
    let mut cfg = rig.cfg.clone();
    cfg["updates"]["install_window"] = serde_json::Value::Null;
    rig.cfg = cfg;
    rig.write_config();
    let o = rig.run(&["check-update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let clock = FakeClock::new(wall_now());
    let mut d = rig.started_daemon(&clock);
    run_until(&mut d, &clock, Duration::from_secs(60));
    assert_eq!(rig.status()["version"], "1.1.0");
}

#[test]
fn a_check_finding_nothing_on_offer_clears_what_described_the_package() {
    let sim = tls_sim();
    let mut rig = rig(&sim);
    rig.set("updates", "auto_install", json!(false));
    rig.set("updates", "auto_download", json!(true));
    sim.publish_update(
        "1.1.0",
        content("1.1.0", json!({"breaking": true})),
        "- big",
    );
    {
        let clock = FakeClock::new(wall_now());
        let mut d = rig.started_daemon(&clock);
        run_until(&mut d, &clock, Duration::from_secs(60));
    }
    let st = rig.status();
    assert_eq!(st["update"]["packageKind"], "content", "{st}");
    assert_eq!(st["update"]["breaking"], true, "{st}");
    // The update is withdrawn: the next check finds nothing, and status.json no
    // longer describes the package that was on offer.
    sim.clear_update();
    let o = rig.run(&["check-update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = rig.status();
    assert_eq!(st["update"]["state"], "idle", "{st}");
    assert_eq!(st["update"]["available"], false, "{st}");
    assert!(st["update"]["packageKind"].is_null(), "{st}");
    assert!(st["update"]["breaking"].is_null(), "{st}");
    assert!(st["update"]["deferred"].is_null(), "{st}");
}
