//! Downloads of update packages through the real binary against the simulator over
//! TLS: resume with Range after a cut (in the same run and after kill -9), a server
//! without Range support, lying sizes and checksums, size and free-space refusals.

mod update_support;

use cybersensei_sim::{Fault, Sim, SimOptions};
use update_support::*;

const KEY: &str = "TEST-KEY-1234";
const DL: &str = "/update/download/";

fn sim() -> Sim {
    let sim = Sim::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .unwrap();
    sim.valid_license(KEY);
    sim
}

/// Incompressible bytes (xorshift), so the package is as big as its content.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An app of about `kib` KiB, stored (not deflated).
fn big_app(version: &str, kib: usize) -> Vec<E> {
    let mut v = app(version);
    v.push(file("app/blob.bin", &noise(kib * 1024, kib as u64)));
    v
}

/// The byte offset of a `Range: bytes=N-` header.
fn range_start(r: &Option<String>) -> Option<u64> {
    r.as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Files left in the download directory (partial file, metadata, package).
fn download_leftovers(rig: &Rig) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![rig.state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(&rig.state).unwrap().display().to_string();
                if name.contains("download") || name.contains("package") {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[test]
fn cut_download_resumes_with_range_in_the_same_run() {
    let sim = sim();
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let v1 = big_app("1.0.0", 400);
    sim.publish_update("1.0.0", zip(&v1), "- one");
    sim.push_fault(
        DL,
        Fault::Truncate {
            after_bytes: 150_000,
        },
    );
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let start = range_start(&ranges[1]).expect("second request is a Range request");
    assert!(
        start > 0 && start <= 150_000,
        "resumed from {start}: {ranges:?}"
    );
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    assert_eq!(rig.status()["version"], "1.0.0");
    assert!(
        download_leftovers(&rig).is_empty(),
        "{:?}",
        download_leftovers(&rig)
    );
}

#[test]
fn server_without_range_support_restarts_from_zero() {
    let sim = sim();
    sim.set_range_support(false);
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let v1 = big_app("1.0.0", 300);
    sim.publish_update("1.0.0", zip(&v1), "- one");
    sim.push_fault(
        DL,
        Fault::Truncate {
            after_bytes: 100_000,
        },
    );
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    // We asked to resume; the server answered 200 with the whole file, and the agent
    // started over instead of appending it to what it had.
    assert!(range_start(&ranges[1]).is_some_and(|n| n > 0), "{ranges:?}");
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
}

#[test]
fn kill_inside_download_then_next_update_resumes() {
    let sim = sim();
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let v1 = app("1.0.0");
    sim.publish_update("1.0.0", zip(&v1), "- one");
    assert_eq!(code(&rig.run(&["update"])), 0);
    let v2 = big_app("2.0.0", 400);
    sim.publish_update("2.0.0", zip(&v2), "- two");

    let o = rig.run_crashing(&["update"], "download:200000");
    assert!(killed(&o), "not killed: {}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(
        tree(&rig.slot("a")),
        expected_tree(&v1),
        "active slot touched"
    );
    assert!(
        !download_leftovers(&rig).is_empty(),
        "the partial download was not kept"
    );

    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    let last = range_start(ranges.last().unwrap()).expect("resumed with Range");
    assert!(last >= 200_000, "resumed from {last}: {ranges:?}");
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(tree(&rig.slot("b")), expected_tree(&v2));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    assert!(download_leftovers(&rig).is_empty());
}

/// Runs `update` against a lying backend: 21, nothing touched, nothing resumed later.
/// Returns what the agent said when it refused.
fn rejected_then_clean(
    sim: &Sim,
    rig: &Rig,
    v1: &[E],
    lie: impl Fn(&Sim),
    undo: impl Fn(&Sim),
) -> String {
    lie(sim);
    let o = rig.run(&["update"]);
    let said = text(&o);
    assert_eq!(code(&o), 21, "{said}");
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(v1));
    assert_eq!(rig.status()["version"], "1.0.0");
    assert_eq!(rig.status()["update"]["state"], "failed");
    // The bad bytes are not resumed from: the next honest download starts at 0.
    undo(sim);
    let before = sim.download_ranges().len();
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), before + 1, "{ranges:?}");
    assert_eq!(ranges.last().unwrap(), &None, "{ranges:?}");
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    said
}

fn installed_v1(sim: &Sim) -> (Rig, Vec<E>) {
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let v1 = app("1.0.0");
    sim.publish_update("1.0.0", zip(&v1), "- one");
    assert_eq!(code(&rig.run(&["update"])), 0);
    sim.publish_update("2.0.0", zip(&big_app("2.0.0", 200)), "- two");
    (rig, v1)
}

#[test]
fn wrong_checksum_in_check_body_is_rejected() {
    let sim = sim();
    let (rig, v1) = installed_v1(&sim);
    rejected_then_clean(
        &sim,
        &rig,
        &v1,
        |s| s.set_checksum_override(Some("ab".repeat(32))),
        |s| s.set_checksum_override(None),
    );
}

#[test]
fn wrong_checksum_in_header_is_rejected() {
    let sim = sim();
    let (rig, v1) = installed_v1(&sim);
    let said = rejected_then_clean(
        &sim,
        &rig,
        &v1,
        |s| {
            s.set_checksum_in_check(false);
            s.set_checksum_header(true);
            s.set_checksum_override(Some("cd".repeat(32)));
        },
        |s| s.set_checksum_override(None),
    );
    // The check body carried no checksum: the refusal came from the header.
    assert!(said.contains(&"cd".repeat(32)), "{said}");
}

#[test]
fn file_size_smaller_than_the_package_is_rejected() {
    let sim = sim();
    let (rig, v1) = installed_v1(&sim);
    let real = zip(&big_app("2.0.0", 200)).len() as u64;
    rejected_then_clean(
        &sim,
        &rig,
        &v1,
        |s| s.set_file_size_override(Some(real - 1000)),
        |s| s.set_file_size_override(None),
    );
}

#[test]
fn file_size_larger_than_the_package_is_rejected() {
    let sim = sim();
    let (rig, v1) = installed_v1(&sim);
    let real = zip(&big_app("2.0.0", 200)).len() as u64;
    rejected_then_clean(
        &sim,
        &rig,
        &v1,
        |s| s.set_file_size_override(Some(real + 1000)),
        |s| s.set_file_size_override(None),
    );
}

#[test]
fn package_over_max_package_size_is_refused_before_downloading() {
    let sim = sim();
    let (mut rig, v1) = installed_v1(&sim);
    rig.set("updates", "max_package_size", 50_000.into());
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("max_package_size"), "{}", text(&o));
    assert_eq!(sim.count(DL), 1, "only the first update was downloaded");
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
}

#[test]
fn not_enough_space_is_22_before_downloading() {
    let sim = sim();
    let (mut rig, v1) = installed_v1(&sim);
    // A package that fits the size limit but not the disk (announced as 1 PiB).
    rig.set("updates", "max_package_size", (1u64 << 52).into());
    sim.set_file_size_override(Some(1 << 50));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 22, "{}", text(&o));
    assert!(text(&o).contains("MiB free"), "{}", text(&o));
    assert_eq!(
        sim.count(DL),
        1,
        "nothing downloaded for the refused update"
    );
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    let left = download_leftovers(&rig);
    assert!(
        left.iter().all(|f| !f.ends_with(".part")
            || std::fs::metadata(rig.state.join(f))
                .map(|m| m.len() == 0)
                .unwrap_or(true)),
        "{left:?}"
    );
}
