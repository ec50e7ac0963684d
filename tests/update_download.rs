//! The download half of `update` through the real binary against the simulator over
//! TLS: resume after a truncated body (same run and next run), a server without Range
//! support, kill -9 inside the download, lying fileSize / checksums, the package size
//! limit and the free-space check (exit codes of docs/reference.md: 21, 22, 14).
//!
//! Under the central profile (`CYBERSENSEI_SIM_PROFILE=central`) the server has no
//! Range support: where the guide's server resumes (206), the real backend sends the
//! whole file again (200) and the agent must start over; the same tests assert that.

use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::{ChecksumStyle, Fault, Profile, Sim, SimOptions};
use std::path::PathBuf;

const DL: &str = "/update/download/";

/// A package of `version` big enough to take many reads (about 1 MiB, stored).
fn big_app(version: &str) -> Vec<E> {
    let mut e = app(version);
    e.push(file(
        "app/blob.bin",
        &noise(1 << 20, 0x9e37_79b9_7f4a_7c15 ^ version.len() as u64),
    ));
    e
}

fn setup(range_support: bool) -> (Sim, Node) {
    let sim = Sim::start(SimOptions {
        tls: true,
        range_support,
        ..Default::default()
    })
    .unwrap();
    sim.valid_license(UPDATE_KEY);
    let rig = Node::updates(&sim);
    (sim, rig)
}

/// A box already running 1.0.0 from slot a (installed from the backend).
fn setup_on_v1(range_support: bool) -> (Sim, Node, Vec<E>) {
    let (sim, rig) = setup(range_support);
    let v1 = app("1.0.0");
    sim.publish_update("1.0.0", zip(&v1), "- first");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    sim.clear_requests();
    (sim, rig, v1)
}

/// Publishes the big 2.0.0; returns its entries and its package size.
fn publish_big_v2(sim: &Sim) -> (Vec<E>, u64) {
    let v2 = big_app("2.0.0");
    let bytes = zip(&v2);
    let real = bytes.len() as u64;
    sim.publish_update("2.0.0", bytes, "- big");
    (v2, real)
}

/// The next download stops after `n` bytes (once).
fn cut_once(sim: &Sim, n: u64) {
    sim.push_fault(DL, Fault::Truncate { after_bytes: n });
}

/// `update` asks the rest from `kept` in one request, and lands on `v2`.
fn update_resumes_at(sim: &Sim, rig: &Node, v2: &[E], kept: u64) {
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert_eq!(range_start(&ranges[0]), Some(kept), "{ranges:?}");
    assert_resume_answered(sim);
    assert_on_v2(rig, v2);
}

/// How the server answered the last download, which asked to resume: the guide's
/// server (started with Range support) sends the rest, 206; the central one has no
/// Range support and sends the whole file, 200, which the agent takes from zero.
fn assert_resume_answered(sim: &Sim) {
    let last = sim.requests_to(DL).pop().expect("a download request");
    assert!(last.header("range").is_some(), "the agent asked to resume");
    let want = match sim.profile() {
        Profile::Guide => 206,
        Profile::Central => 200,
    };
    assert_eq!(last.status, want, "{:?}", sim.profile());
}

fn part(rig: &Node) -> PathBuf {
    rig.state_dir.join("update/download.part")
}

fn part_len(rig: &Node) -> Option<u64> {
    std::fs::metadata(part(rig)).ok().map(|m| m.len())
}

/// Still on 1.0.0 in slot a, untouched.
fn assert_on_v1(rig: &Node, v1: &[E]) {
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(v1));
    assert_eq!(rig.status()["version"], "1.0.0");
}

fn assert_on_v2(rig: &Node, v2: &[E]) {
    assert_eq!(rig.current().as_deref(), Some("slots/b"));
    assert_eq!(tree(&rig.slot("b")), expected_tree(v2));
    assert_eq!(rig.status()["version"], "2.0.0");
    assert_eq!(part_len(rig), None, "no partial file left");
}

#[test]
fn truncated_download_resumes_with_range_in_the_same_run() {
    let (sim, rig, _v1) = setup_on_v1(true);
    let (v2, _) = publish_big_v2(&sim);
    cut_once(&sim, 300_000);
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let n = range_start(&ranges[1]).unwrap_or_else(|| panic!("{ranges:?}"));
    assert!(n > 0 && n <= 300_000, "{ranges:?}");
    assert_resume_answered(&sim);
    assert_on_v2(&rig, &v2);
}

#[test]
fn truncated_download_then_next_update_resumes_with_range() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, _) = publish_big_v2(&sim);
    // The body breaks, then the server is gone for the rest of this run.
    cut_once(&sim, 400_000);
    sim.set_sticky_fault(DL, Some(Fault::Reset));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    assert_on_v1(&rig, &v1);
    let kept = part_len(&rig).unwrap();
    assert!(kept > 0 && kept <= 400_000, "partial file of {kept} bytes");

    sim.clear_faults();
    sim.clear_requests();
    update_resumes_at(&sim, &rig, &v2, kept);
}

#[test]
fn server_without_range_support_restarts_from_zero() {
    let (sim, mut rig, _v1) = setup_on_v1(false);
    rig.set("log", "level", "debug".into());
    let (v2, _) = publish_big_v2(&sim);
    cut_once(&sim, 300_000);
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(range_start(&ranges[1]).is_some_and(|n| n > 0), "{ranges:?}");
    // Answered 200 with the whole file, which replaced the prefix (appending it
    // would have failed the digest: 21).
    assert!(
        text(&o).contains("ignored the range request"),
        "{}",
        text(&o)
    );
    assert_eq!(sim.requests_to(DL)[1].status, 200);
    assert_on_v2(&rig, &v2);
}

#[test]
fn kill_inside_download_then_restart_resumes() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, _) = publish_big_v2(&sim);
    let o = rig.run_crashing(&["update"], "download:500000");
    assert!(killed(&o), "{}", text(&o));
    assert_on_v1(&rig, &v1);
    let kept = part_len(&rig).unwrap();
    assert!(kept >= 500_000, "partial file of {kept} bytes");
    assert!(!rig.state_dir.join("update/journal.json").exists());

    sim.clear_requests();
    let o = rig.run(&["status"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_on_v1(&rig, &v1);
    update_resumes_at(&sim, &rig, &v2, kept);
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1), "old slot intact");
}

/// Runs `update` expecting 21 with the box untouched and no partial file kept, then
/// lifts the lie and checks the next download starts from byte 0 and installs.
fn refused_then_clean_start(sim: &Sim, rig: &Node, v1: &[E], v2: &[E], lift: impl Fn()) {
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("rejected"), "{}", text(&o));
    assert_on_v1(rig, v1);
    assert_eq!(part_len(rig), None, "refused bytes are not kept");
    assert!(!rig.state_dir.join("update/package.zip").exists());
    assert_eq!(rig.status()["update"]["state"], "failed");

    lift();
    sim.clear_requests();
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(
        ranges,
        vec![None],
        "nothing resumed from the refused download"
    );
    assert_on_v2(rig, v2);
}

/// A partial file of the right update, as a broken earlier run leaves it.
fn leave_partial(sim: &Sim, rig: &Node) -> u64 {
    cut_once(sim, 200_000);
    sim.set_sticky_fault(DL, Some(Fault::Reset));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    sim.clear_faults();
    let n = part_len(rig).unwrap();
    assert!(n > 0);
    n
}

#[test]
fn file_size_larger_than_the_body_is_refused() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, real) = publish_big_v2(&sim);
    sim.set_file_size_override(Some(real + 4096));
    refused_then_clean_start(&sim, &rig, &v1, &v2, || sim.set_file_size_override(None));
}

#[test]
fn file_size_smaller_than_the_body_is_refused() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, real) = publish_big_v2(&sim);
    sim.set_file_size_override(Some(real - 4096));
    refused_then_clean_start(&sim, &rig, &v1, &v2, || sim.set_file_size_override(None));
}

#[test]
fn file_size_lie_after_a_partial_download_is_refused_and_not_resumed() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, real) = publish_big_v2(&sim);
    let kept = leave_partial(&sim, &rig);
    sim.clear_requests();
    sim.set_file_size_override(Some(real - 1));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert_on_v1(&rig, &v1);
    assert_eq!(part_len(&rig), None, "the {kept}-byte prefix is gone");
    // A different promise (size) is a different download: the old prefix was not
    // resumed under it.
    assert_eq!(sim.download_ranges(), vec![None]);
    sim.set_file_size_override(None);
    sim.clear_requests();
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(sim.download_ranges(), vec![None]);
    assert_on_v2(&rig, &v2);
}

#[test]
fn wrong_checksum_in_the_check_body_is_refused() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, _) = publish_big_v2(&sim);
    sim.set_checksum_header(false);
    sim.set_checksum_style(ChecksumStyle::Prefixed);
    sim.set_checksum_override(Some("ab".repeat(32)));
    refused_then_clean_start(&sim, &rig, &v1, &v2, || sim.set_checksum_override(None));
}

#[test]
fn wrong_checksum_in_the_header_is_refused_after_a_resume() {
    let (sim, rig, v1) = setup_on_v1(true);
    let (v2, _) = publish_big_v2(&sim);
    // Only the header carries the digest, so the partial file belongs to the same
    // promise and is resumed; the digest of the whole file then fails.
    sim.set_checksum_in_check(false);
    let kept = leave_partial(&sim, &rig);
    sim.clear_requests();
    sim.set_checksum_override(Some("cd".repeat(32)));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("checksum"), "{}", text(&o));
    assert_eq!(sim.download_ranges(), vec![Some(format!("bytes={kept}-"))]);
    // Guide: the resumed rest fails the digest; central: the whole file sent again
    // fails it (the override lies about it).
    assert_resume_answered(&sim);
    assert_on_v1(&rig, &v1);
    assert_eq!(part_len(&rig), None, "the bad partial file is gone");

    sim.set_checksum_override(None);
    sim.clear_requests();
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(sim.download_ranges(), vec![None], "restarted from zero");
    assert_on_v2(&rig, &v2);
}

#[test]
fn package_over_max_package_size_is_refused_before_downloading() {
    let (sim, mut rig, v1) = setup_on_v1(true);
    let (_v2, real) = publish_big_v2(&sim);
    rig.set("updates", "max_package_size", (real - 1).into());
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("max_package_size"), "{}", text(&o));
    assert_eq!(sim.count(DL), 0, "no download request");
    assert_eq!(sim.count("/update/check"), 1);
    assert_eq!(part_len(&rig).unwrap_or(0), 0);
    assert_on_v1(&rig, &v1);
}

#[test]
fn free_space_short_is_exit_22_before_downloading() {
    let (sim, mut rig, v1) = setup_on_v1(true);
    publish_big_v2(&sim);
    // Announce more than the filesystem holds; the size limit allows it.
    let (free, _) = free_space(&rig.state_dir);
    let lie = free + (1 << 30);
    sim.set_file_size_override(Some(lie));
    rig.set("updates", "max_package_size", (lie * 4).into());
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 22, "{}", text(&o));
    assert!(text(&o).contains("disk space"), "{}", text(&o));
    assert_eq!(sim.count(DL), 0, "no download request");
    assert_eq!(part_len(&rig).unwrap_or(0), 0, "nothing downloaded");
    assert_on_v1(&rig, &v1);
}

/// statvfs of the filesystem holding `p`: (bytes available, fs id).
fn free_space(p: &std::path::Path) -> (u64, u64) {
    let s = cybersensei_agent::fsutil::statvfs(p).unwrap();
    (s.f_bavail as u64 * s.f_frsize as u64, s.f_fsid as u64)
}

/// A 200 with no Content-Length: the body ends when the server closes (cleanly, TLS
/// close_notify), so only the body's end can reveal a `fileSize` that is too big.
fn close_delimited(package: &[u8]) -> Fault {
    let mut raw =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend_from_slice(package);
    Fault::Raw(raw)
}

#[test]
fn file_size_larger_than_a_close_delimited_body_is_refused_without_looping() {
    let (sim, rig, v1) = setup_on_v1(true);
    let v2 = big_app("2.0.0");
    let bytes = zip(&v2);
    let real = bytes.len() as u64;
    sim.publish_update("2.0.0", bytes.clone(), "- big");
    sim.set_file_size_override(Some(real + 4096));
    sim.set_sticky_fault(DL, Some(close_delimited(&bytes)));
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 21, "{}", text(&o));
    assert!(text(&o).contains("fileSize"), "{}", text(&o));
    assert_eq!(
        sim.count(DL),
        1,
        "the whole body was not fetched again and again"
    );
    assert_on_v1(&rig, &v1);
    assert_eq!(part_len(&rig), None);

    // The same body with an honest fileSize is a valid download.
    sim.set_file_size_override(None);
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_on_v2(&rig, &v2);
}

#[test]
fn truncated_plain_http_body_is_resumed_not_refused() {
    // Without TLS a cut connection has no close_notify to miss: the Content-Length
    // still tells it from a complete body.
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.valid_license(UPDATE_KEY);
    let rig = Node::updates_at(&sim.url(), None);
    let (v2, _) = publish_big_v2(&sim);
    cut_once(&sim, 300_000);
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let ranges = sim.download_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(range_start(&ranges[1]).is_some_and(|n| n > 0), "{ranges:?}");
    assert_resume_answered(&sim);
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v2));
}
