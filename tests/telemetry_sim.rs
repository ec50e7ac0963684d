//! Telemetry against the simulator over real TLS: a day offline with an injected
//! clock, store-and-forward, corrupt queue entries, refused samples, field names.

use crate::harness::in_process::wall_now;
use crate::harness::{self, Node, KEY};
use cybersensei_agent::clock::{iso8601, Clock, FakeClock};
use cybersensei_agent::config::Config;
use cybersensei_agent::context::Ctx;
use cybersensei_agent::telemetry::{self, queue::Queue, Collector};
use cybersensei_sim::{Fault, Sim};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const INTERVAL: u64 = 300;

/// Fixed /proc files so every sample is cheap and deterministic.
fn fixed_proc(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("proc");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("stat"), "cpu  100 0 100 700 100 0 0 0 0 0\n").unwrap();
    std::fs::write(
        p.join("meminfo"),
        "MemTotal: 1000 kB\nMemAvailable: 250 kB\n",
    )
    .unwrap();
    std::fs::write(p.join("uptime"), "1234.5 1.0\n").unwrap();
    p
}

fn node(sim: &Sim, queue_max: u32) -> Node {
    sim.valid_license(KEY);
    let mut n = Node::new(sim);
    n.cfg["telemetry"]["queue_max"] = json!(queue_max);
    n.cfg["backend"]["retry_attempts"] = json!(2);
    n.write_config();
    n
}

fn ctx<'a>(n: &Node, clock: &'a dyn Clock) -> Ctx<'a> {
    let cfg = Config::load(&n.config).unwrap();
    Ctx::new(cfg, clock, false).unwrap()
}

/// A collector reading fixed /proc files.
fn collector(n: &Node) -> Collector {
    Collector::with_proc_root(fixed_proc(n.dir.path()))
}

/// [`ctx`] after a validation (which gives the box its tenantId).
fn validated<'a>(n: &Node, clock: &'a dyn Clock) -> Ctx<'a> {
    let ctx = ctx(n, clock);
    cybersensei_agent::license::validate(&ctx).unwrap();
    ctx
}

/// `cycles` telemetry cycles one interval apart with the backend down, then the
/// backend back with no requests recorded; the time each sample was taken.
fn offline_cycles(
    sim: &Sim,
    ctx: &Ctx,
    col: &mut Collector,
    clock: &FakeClock,
    cycles: usize,
) -> Vec<String> {
    sim.set_down(true);
    let stamps = (0..cycles)
        .map(|_| {
            let at = iso8601(clock.now_unix());
            telemetry::send_once(ctx, col).unwrap();
            clock.advance(Duration::from_secs(INTERVAL));
            at
        })
        .collect();
    sim.set_down(false);
    sim.clear_requests();
    stamps
}

/// The `collectedAt` of each body.
fn collected_at(bodies: &[Value]) -> Vec<&str> {
    bodies
        .iter()
        .map(|b| b["additionalData"]["collectedAt"].as_str().unwrap())
        .collect()
}

/// The JSON bodies of the POST /telemetry the simulator received, in arrival order.
fn telemetry_bodies(sim: &Sim) -> Vec<Value> {
    sim.requests()
        .iter()
        .filter(|r| r.path == "/telemetry")
        .map(|r| serde_json::from_slice(r.body.as_slice()).unwrap())
        .collect()
}

fn queue_files(n: &Node) -> usize {
    std::fs::read_dir(telemetry::queue::queue_dir(&n.state_dir))
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".sample")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_day_offline_then_back_every_kept_sample_once_in_order() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let clock = FakeClock::new(wall_now());
    let ctx = validated(&n, &clock);
    let mut col = collector(&n);

    sim.set_down(true);
    let mut stamps = vec![];
    for i in 0..288 {
        stamps.push(iso8601(clock.now_unix()));
        let r = telemetry::send_once(&ctx, &mut col).unwrap();
        assert!(!r.delivered, "cycle {i}");
        assert!(
            r.queued <= 50 && queue_files(&n) <= 50,
            "cycle {i}: bound exceeded"
        );
        clock.advance(Duration::from_secs(INTERVAL));
    }
    assert_eq!(queue_files(&n), 50);
    let st = n.status();
    assert_eq!(st["telemetry"]["queued"], 50);
    assert_eq!(st["telemetry"]["dropped"], 238);
    assert!(st["telemetry"]["lastError"].as_str().is_some());
    assert!(st["telemetry"]["lastSentAt"].is_null());

    sim.set_down(false);
    sim.clear_requests();
    let now = iso8601(clock.now_unix());
    let r = telemetry::send_once(&ctx, &mut col).unwrap();
    assert!(r.delivered);
    assert_eq!((r.flushed, r.queued), (50, 0));
    let bodies = telemetry_bodies(&sim);
    assert_eq!(
        bodies.len(),
        51,
        "each kept sample once, then the fresh one"
    );
    let got = collected_at(&bodies);
    let mut want: Vec<&str> = stamps[238..].iter().map(String::as_str).collect();
    want.push(&now);
    assert_eq!(
        got, want,
        "oldest first, each with the time it was measured"
    );
    assert_eq!(bodies[0]["additionalData"]["droppedSamples"], 238);
    assert!(bodies[1..]
        .iter()
        .all(|b| b["additionalData"].get("droppedSamples").is_none()));
    assert_eq!(queue_files(&n), 0);
    let st = n.status();
    assert_eq!(st["telemetry"]["queued"], 0);
    assert!(st["telemetry"]["lastError"].is_null());
    assert_eq!(st["telemetry"]["lastSentAt"], now);

    // The count was cleared by the 2xx: the next sample does not repeat it.
    sim.clear_requests();
    clock.advance(Duration::from_secs(INTERVAL));
    assert!(telemetry::send_once(&ctx, &mut col).unwrap().delivered);
    let bodies = telemetry_bodies(&sim);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0]["additionalData"].get("droppedSamples").is_none());
}

#[test]
fn a_long_backlog_drains_a_batch_per_cycle_in_order() {
    let sim = harness::sim();
    let n = node(&sim, 288);
    let clock = FakeClock::new(wall_now());
    let ctx = validated(&n, &clock);
    let mut col = collector(&n);
    offline_cycles(&sim, &ctx, &mut col, &clock, 120);
    let mut cycles = 0;
    loop {
        cycles += 1;
        // The central profile's rate limit counts in the agent's (fake) time.
        sim.set_now_ms((clock.now_unix() * 1000.0) as u64);
        let r = telemetry::send_once(&ctx, &mut col).unwrap();
        assert!(r.flushed <= telemetry::queue::FLUSH_BATCH);
        clock.advance(Duration::from_secs(INTERVAL));
        if r.delivered {
            break;
        }
        assert!(cycles < 10);
    }
    // 120 + the fresh samples of the catching-up cycles, 50 per cycle.
    assert_eq!(cycles, 3);
    let bodies = telemetry_bodies(&sim);
    let got = collected_at(&bodies);
    assert_eq!(got.len(), 123);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(got, sorted, "in measurement order, no duplicates");
}

#[test]
fn corrupt_and_torn_queue_entries_are_skipped_the_others_sent() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let clock = FakeClock::new(wall_now());
    let ctx = validated(&n, &clock);
    let mut col = collector(&n);
    // The first sample spends a short CPU window; take it before stamping times.
    telemetry::payload(&ctx, &mut col).unwrap();
    let stamps = offline_cycles(&sim, &ctx, &mut col, &clock, 5);
    let dir = telemetry::queue::queue_dir(&n.state_dir);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let data = std::fs::read(&names[1]).unwrap();
    std::fs::write(&names[1], &data[..data.len() - 7]).unwrap(); // torn mid-entry
    std::fs::write(&names[3], b"garbage").unwrap();

    let r = telemetry::send_once(&ctx, &mut col).unwrap();
    assert!(r.delivered);
    assert_eq!((r.flushed, r.queued), (3, 0));
    let bodies = telemetry_bodies(&sim);
    let got = collected_at(&bodies);
    assert_eq!(got[..3], [&*stamps[0], &*stamps[2], &*stamps[4]]);
    // The two lost samples are reported by the samples sent after they were found.
    let reported: u64 = bodies
        .iter()
        .filter_map(|b| b["additionalData"]["droppedSamples"].as_u64())
        .sum();
    assert_eq!(reported, 2);
    assert_eq!(n.status()["telemetry"]["dropped"], 2);
}

#[test]
fn a_refused_queued_sample_is_dropped_not_blocking() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let clock = FakeClock::new(wall_now());
    let ctx = validated(&n, &clock);
    let mut col = collector(&n);
    offline_cycles(&sim, &ctx, &mut col, &clock, 3);
    sim.push_fault(
        "/telemetry",
        Fault::Status(
            400,
            r#"{"statusCode":400,"message":["uptime must be a number"]}"#.into(),
        ),
    );
    let r = telemetry::send_once(&ctx, &mut col).unwrap();
    assert!(r.delivered);
    assert_eq!((r.flushed, r.queued), (2, 0));
    // 1 refused (not retried) + 2 flushed + the fresh one.
    assert_eq!(sim.count("/telemetry"), 4);
    assert_eq!(n.status()["telemetry"]["dropped"], 1);
}

#[test]
fn a_5xx_keeps_the_queue_and_stops_the_flush() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let clock = FakeClock::new(wall_now());
    let ctx = validated(&n, &clock);
    let mut col = collector(&n);
    sim.set_sticky_fault("/telemetry", Some(Fault::Status(503, "{}".into())));
    for _ in 0..3 {
        let r = telemetry::send_once(&ctx, &mut col).unwrap();
        assert!(!r.delivered);
        clock.advance(Duration::from_secs(INTERVAL));
    }
    // First cycle: the fresh sample, 2 attempts. Later cycles: the oldest queued
    // sample fails (2 attempts) and the fresh one is queued without trying.
    assert_eq!(sim.count("/telemetry"), 6);
    assert_eq!(queue_files(&n), 3);
    let err = n.status()["telemetry"]["lastError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("503"), "{err}");
    // Nothing is ever deleted without a 2xx: the queue is intact.
    let q = Queue::open(&n.state_dir, 50).unwrap();
    for s in q.oldest().unwrap() {
        q.read(s).unwrap();
    }
}

#[test]
fn no_tenant_id_sends_nothing_and_queues_nothing() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let clock = FakeClock::new(wall_now());
    let ctx = ctx(&n, &clock);
    let mut col = collector(&n);
    let e = telemetry::send_once(&ctx, &mut col).unwrap_err();
    assert!(e.to_string().contains("no tenantId yet"), "{e}");
    assert_eq!(sim.count("/telemetry"), 0);
    assert_eq!(queue_files(&n), 0);
    assert!(n.status()["telemetry"]["lastError"]
        .as_str()
        .unwrap()
        .contains("never been validated"));
}

// ---- the real binary ----

fn write_metrics(n: &Node) {
    std::fs::write(
        n.dir.path().join("metrics.json"),
        r#"{"activeUsers": 3, "exercisesCompletedToday": 12, "aiLatency": 240.5}"#,
    )
    .unwrap();
}

#[test]
fn once_delivers_with_protocol_field_names() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    write_metrics(&n);
    let o = n.run(&["validate"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let o = n.run(&["telemetry", "--once"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let bodies = telemetry_bodies(&sim);
    assert_eq!(bodies.len(), 1);
    let b = &bodies[0];
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "activeUsers",
            "additionalData",
            "aiLatency",
            "exercisesCompletedToday",
            "tenantId",
            "uptime",
            "version"
        ]
    );
    let mut extra: Vec<&str> = b["additionalData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        ["collectedAt", "cpuUsage", "diskUsage", "memoryUsage"]
    );
    assert_eq!(b["tenantId"], "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(
        (
            b["activeUsers"].as_u64(),
            b["exercisesCompletedToday"].as_u64()
        ),
        (Some(3), Some(12))
    );
    assert_eq!(b["aiLatency"], 240.5);
    assert_eq!(b["version"], "0.0.0");
    for k in ["cpuUsage", "memoryUsage", "diskUsage"] {
        let v = b["additionalData"][k].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&v), "{k} = {v}");
        assert_eq!((v * 10.0).round() / 10.0, v, "{k} has one decimal");
    }
    // uptime is the box's, not the agent's.
    let kernel: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let up = b["uptime"].as_f64().unwrap();
    assert!(up <= kernel && up >= kernel - 30.0, "{up} vs {kernel}");
    let st = n.status();
    assert!(st["telemetry"]["lastSentAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(st["telemetry"]["queued"], 0);
}

#[test]
fn once_on_503_exits_non_zero_and_queues_then_delivers_in_order() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    assert_eq!(harness::code(&n.run(&["validate"])), 0);
    sim.set_sticky_fault("/telemetry", Some(Fault::Status(503, "{}".into())));
    let o = n.run(&["telemetry", "--once"]);
    assert_ne!(harness::code(&o), 0, "{}", harness::text(&o));
    assert!(
        harness::text(&o).contains("queued"),
        "{}",
        harness::text(&o)
    );
    assert_eq!(queue_files(&n), 1);
    assert_eq!(n.status()["telemetry"]["queued"], 1);
    sim.set_sticky_fault("/telemetry", None);
    sim.clear_requests();
    let o = n.run(&["telemetry", "--once"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let b = telemetry_bodies(&sim);
    assert_eq!(b.len(), 2, "the queued sample, then the fresh one");
    let at = collected_at(&b);
    assert!(at[0] < at[1], "{at:?}: the queued sample first");
    assert_eq!(queue_files(&n), 0);
}

#[test]
fn print_shows_the_payload_and_sends_nothing() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    write_metrics(&n);
    assert_eq!(harness::code(&n.run(&["validate"])), 0);
    sim.clear_requests();
    let o = n.run(&["telemetry", "--print"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tenantId"], "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(v["activeUsers"], 3);
    assert!(v["additionalData"]["memoryUsage"].as_f64().is_some());
    assert_eq!(sim.requests().len(), 0);
    assert_eq!(queue_files(&n), 0);
}

#[test]
fn once_without_validation_says_why() {
    let sim = harness::sim();
    let n = node(&sim, 50);
    let o = n.run(&["telemetry", "--once"]);
    assert_ne!(harness::code(&o), 0);
    assert!(
        harness::text(&o).contains("no tenantId yet"),
        "{}",
        harness::text(&o)
    );
    assert_eq!(sim.count("/telemetry"), 0);
}
