//! Issue 15, finding 7 (slow retrieval), through the real daemon against the
//! simulator over TLS: a download that drips is abandoned after the window and
//! retried later (resumed), and while any download runs telemetry keeps its schedule
//! (the download pauses, keeps its partial file, and resumes after the post).

use crate::harness::{self, range_start, signal, Node, KEY};
use cybersensei_sim::{Fault, Sim};
use serde_json::json;
use std::process::Child;
use std::time::{Duration, Instant};

fn node(sim: &Sim) -> Node {
    sim.valid_license(KEY);
    let mut n = Node::new(sim);
    n.cfg["schedule"] = json!({"splay": false, "jitter_percent": 0});
    n.set("updates", "auto_download", json!(true));
    n
}

fn package(size: usize) -> Vec<u8> {
    let mut e = harness::package::app("2.0.0");
    e.push(harness::package::E::File(
        "app/blob.bin".into(),
        harness::package::noise(size, 7),
        0o644,
    ));
    harness::package::zip(&e)
}

fn start(n: &Node) -> Child {
    n.daemon().spawn().unwrap()
}

/// SIGTERM, then the time the daemon took to exit (killed past 10 s).
fn stop(mut c: Child) -> Duration {
    signal(&c, libc::SIGTERM);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if c.try_wait().unwrap().is_some() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    t.elapsed()
}

fn log(n: &Node) -> String {
    std::fs::read_to_string(&n.log_file).unwrap_or_default()
}

#[test]
fn a_dripping_download_is_abandoned_and_telemetry_keeps_its_schedule() {
    let sim = harness::sim();
    sim.publish_update("2.0.0", package(300_000), "big");
    // One byte every 200 ms: 5 B/s, for ever as far as the agent is concerned.
    sim.set_sticky_fault(
        "/update/download",
        Some(Fault::SlowBody {
            chunk: 1,
            delay_ms: 200,
        }),
    );
    let mut n = node(&sim);
    n.set("telemetry", "interval", json!(2));
    n.cfg["updates"]["check_interval"] = json!(3);
    n.cfg["updates"]["min_download_rate"] = json!(1000);
    n.set("updates", "slow_download_window", json!(1));
    let child = start(&n);
    let t = Instant::now();
    // Five posts at a 2 s interval need ~8 s; stuck behind the drip there is one.
    let posted = sim.wait_for("/telemetry", 5, Duration::from_secs(20));
    let took = t.elapsed();
    let downloads = sim.requests_to("/update/download");
    let stopped = stop(child);
    let log = log(&n);
    assert!(
        posted,
        "telemetry stalled: {} posts in {took:?}\n{log}",
        sim.count("/telemetry")
    );
    assert!(log.contains("too slow"), "{log}");
    assert!(
        downloads.len() >= 2,
        "abandoned downloads are retried: {}",
        downloads.len()
    );
    // The retry resumes what the abandoned one kept.
    assert!(
        downloads
            .iter()
            .skip(1)
            .any(|r| range_start(&r.header("range").map(String::from)).is_some_and(|s| s > 0)),
        "no resume: {:?}",
        downloads
            .iter()
            .map(|r| r.header("range"))
            .collect::<Vec<_>>()
    );
    assert!(stopped < Duration::from_secs(5), "SIGTERM took {stopped:?}");
}

#[test]
fn a_slow_but_steady_download_pauses_for_telemetry_and_completes() {
    let sim = harness::sim();
    sim.publish_update("2.0.0", package(120_000), "steady");
    // ~20 KB/s: above the minimum rate, but the whole package takes ~6 s.
    sim.set_sticky_fault(
        "/update/download",
        Some(Fault::SlowBody {
            chunk: 2000,
            delay_ms: 100,
        }),
    );
    let mut n = node(&sim);
    n.set("telemetry", "interval", json!(1));
    n.cfg["updates"]["min_download_rate"] = json!(1000);
    n.set("updates", "slow_download_window", json!(2));
    let child = start(&n);
    let until = Instant::now() + Duration::from_secs(30);
    while !log(&n).contains("downloaded and verified") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let posts = sim.count("/telemetry");
    let downloads = sim.requests_to("/update/download");
    stop(child);
    let log = log(&n);
    assert!(log.contains("downloaded and verified"), "{log}");
    assert!(log.contains("paused"), "{log}");
    if sim.profile() == cybersensei_sim::Profile::Central {
        // The real backend cannot resume (always 200, the whole file): the pauses keep
        // the one connection open and read on from it, never starting over.
        assert!(log.contains("goes on at"), "{log}");
        assert!(posts >= 4, "{posts} telemetry posts\n{log}");
        assert_eq!(downloads.len(), 1, "{log}");
        assert!(n.state_dir.join("update/package.zip").exists());
        return;
    }
    // One post a second while the package came in pieces, each resumed.
    assert!(posts >= 4, "{posts} telemetry posts\n{log}");
    assert!(
        downloads.len() >= 3,
        "{} download requests",
        downloads.len()
    );
    assert!(downloads
        .iter()
        .skip(1)
        .all(|r| range_start(&r.header("range").map(String::from)).is_some_and(|s| s > 0)));
    assert!(n.state_dir.join("update/package.zip").exists());
}

/// Revalidation keeps its schedule during an endless download. The shortest
/// revalidation interval is 60 s, so the agent runs under libfaketime at 60x: a
/// minute of its time is a second of the test's (the drip slows down with it).
#[test]
fn revalidation_keeps_its_schedule_during_an_endless_download() {
    let Some(lib) = harness::faketime() else {
        return;
    };
    let sim = harness::sim();
    sim.publish_update("2.0.0", package(300_000), "big");
    sim.set_sticky_fault(
        "/update/download",
        Some(Fault::SlowBody {
            chunk: 64,
            delay_ms: 50,
        }),
    );
    let mut n = node(&sim);
    n.cfg["telemetry"]["enabled"] = json!(false);
    n.cfg["license"]["revalidate_interval"] = json!(60);
    n.cfg["backend"]["timeout"] = json!(600);
    // Never abandoned: only the pause lets the revalidation through.
    n.set("updates", "min_download_rate", json!(0));
    let child = n
        .daemon()
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", "+0 x60")
        .spawn()
        .unwrap();
    // The boot validation, then one a minute of agent time (a second here; slower on
    // a loaded machine): stuck behind the download there is only the first.
    let revalidated = sim.wait_for("/api/license/validate", 4, Duration::from_secs(30));
    let validations = sim.count("/api/license/validate");
    let downloads = sim.count("/update/download");
    stop(child);
    let log = log(&n);
    assert!(revalidated, "{validations} validations\n{log}");
    if sim.profile() == cybersensei_sim::Profile::Central {
        // No Range there: one request, its connection parked during each pause.
        assert_eq!(downloads, 1, "{log}");
        assert!(log.contains("goes on at"), "{log}");
        return;
    }
    assert!(
        downloads >= 2,
        "the download resumed after each pause: {downloads}\n{log}"
    );
}
