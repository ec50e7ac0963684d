//! The on-disk telemetry queue: bound, order across restarts, torn and corrupt entries.

use cybersensei_agent::protocol::TelemetryPayload;
use cybersensei_agent::telemetry::queue::{self, Corrupt, Queue};
use serde_json::{json, Map, Value};
use std::path::Path;

fn sample(n: u64) -> TelemetryPayload {
    let mut extra = Map::new();
    extra.insert("cpuUsage".into(), json!(12.5));
    extra.insert(
        "collectedAt".into(),
        json!(format!("2026-03-01T00:{:02}:00.000Z", n % 60)),
    );
    extra.insert("n".into(), json!(n));
    TelemetryPayload {
        tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
        uptime: n,
        active_users: 1,
        exercises_completed_today: 2,
        ai_latency: Some(10.0),
        version: Some("1.2.0".into()),
        additional_data: Some(extra),
    }
}

fn n_of(p: &TelemetryPayload) -> u64 {
    p.additional_data.as_ref().unwrap()["n"].as_u64().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn bounded_oldest_dropped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 5).unwrap();
    let mut dropped = 0;
    for n in 0..12 {
        dropped += q.push(&sample(n)).unwrap();
        assert!(q.len().unwrap() <= 5, "bound exceeded after push {n}");
    }
    assert_eq!(dropped, 7);
    assert_eq!(q.pending_dropped(), 7);
    let kept: Vec<u64> = q
        .oldest()
        .unwrap()
        .iter()
        .map(|s| n_of(&q.read(*s).unwrap()))
        .collect();
    assert_eq!(kept, vec![7, 8, 9, 10, 11]);
    q.reported_dropped(7).unwrap();
    assert_eq!(q.pending_dropped(), 0);
}

#[test]
fn order_and_counter_survive_a_restart() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(d.path(), 3).unwrap();
        for n in 0..4 {
            q.push(&sample(n)).unwrap();
        }
    }
    let mut q = Queue::open(d.path(), 3).unwrap();
    assert_eq!(q.pending_dropped(), 1);
    q.push(&sample(4)).unwrap();
    let order: Vec<u64> = q
        .oldest()
        .unwrap()
        .iter()
        .map(|s| n_of(&q.read(*s).unwrap()))
        .collect();
    assert_eq!(order, vec![2, 3, 4]);
    assert_eq!(q.pending_dropped(), 2);
}

#[test]
fn lowering_the_bound_trims_at_the_next_push() {
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 100).unwrap();
    for n in 0..80 {
        q.push(&sample(n)).unwrap();
    }
    let mut q = Queue::open(d.path(), 10).unwrap();
    assert_eq!(q.push(&sample(80)).unwrap(), 71);
    assert_eq!(q.len().unwrap(), 10);
    let first = q.oldest().unwrap()[0];
    assert_eq!(n_of(&q.read(first).unwrap()), 71);
}

#[test]
fn zero_bound_keeps_nothing_but_counts() {
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 0).unwrap();
    assert_eq!(q.push(&sample(1)).unwrap(), 1);
    assert_eq!(q.len().unwrap(), 0);
    assert_eq!(q.pending_dropped(), 1);
}

#[test]
fn oldest_returns_at_most_one_batch_in_order() {
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 1000).unwrap();
    for n in 0..(queue::FLUSH_BATCH as u64 + 20) {
        q.push(&sample(n)).unwrap();
    }
    let b = q.oldest().unwrap();
    assert_eq!(b.len(), queue::FLUSH_BATCH);
    let ns: Vec<u64> = b.iter().map(|s| n_of(&q.read(*s).unwrap())).collect();
    assert_eq!(ns, (0..queue::FLUSH_BATCH as u64).collect::<Vec<_>>());
}

#[test]
fn torn_and_corrupt_entries_are_detected_others_intact() {
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 10).unwrap();
    for n in 0..5 {
        q.push(&sample(n)).unwrap();
    }
    let dir = q.dir().to_path_buf();
    let names = entries(&dir);
    assert_eq!(names.len(), 5);
    // Torn mid-entry.
    let p1 = dir.join(&names[1]);
    let data = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &data[..data.len() / 2]).unwrap();
    // One flipped digit inside an otherwise valid JSON body.
    let p2 = dir.join(&names[2]);
    let mut data = std::fs::read(&p2).unwrap();
    let i = data.iter().rposition(|b| *b == b'2').unwrap();
    data[i] = b'3';
    std::fs::write(&p2, &data).unwrap();
    // Garbage.
    std::fs::write(dir.join(&names[3]), b"\x00\xff garbage").unwrap();
    let seqs = q.oldest().unwrap();
    let results: Vec<Result<u64, Corrupt>> =
        seqs.iter().map(|s| q.read(*s).map(|p| n_of(&p))).collect();
    assert_eq!(results[0], Ok(0));
    assert!(
        matches!(&results[1], Err(Corrupt::Invalid(m)) if m.contains("truncated")),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Err(Corrupt::Invalid(m)) if m.contains("digest")),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(Corrupt::Invalid(_))),
        "{:?}",
        results[3]
    );
    assert_eq!(results[4], Ok(4));
}

#[test]
fn entries_are_private_and_leftovers_of_interrupted_writes_are_removed() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let mut q = Queue::open(d.path(), 10).unwrap();
    q.push(&sample(0)).unwrap();
    let dir = q.dir().to_path_buf();
    let name = entries(&dir).remove(0);
    let mode = std::fs::metadata(dir.join(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A power cut during an atomic write leaves its temp file; an unrelated file stays.
    std::fs::write(
        dir.join(format!(".{}.tmp.4242", "00000000000000000001.sample")),
        b"CSQ1 9",
    )
    .unwrap();
    std::fs::write(dir.join("README"), b"not an entry").unwrap();
    let q = Queue::open(d.path(), 10).unwrap();
    assert_eq!(
        entries(&dir),
        vec!["00000000000000000000.sample".to_string(), "README".into()]
    );
    assert_eq!(q.len().unwrap(), 1);
}

#[test]
fn entry_round_trip_keeps_every_field() {
    let s = sample(3);
    let enc = queue::encode(&serde_json::to_vec(&s).unwrap());
    assert!(enc.starts_with(b"CSQ1 "));
    assert_eq!(queue::decode(&enc).unwrap(), s);
    let v: Value =
        serde_json::from_slice(&enc[enc.iter().position(|b| *b == b'\n').unwrap() + 1..]).unwrap();
    assert_eq!(
        v["additionalData"]["collectedAt"],
        "2026-03-01T00:03:00.000Z"
    );
}
