//! Issue 15, finding 6, through the real binary: hostile ZIP directories are refused
//! from their end record, before the central directory is parsed (ZIP64 included,
//! with the entry-count limit), and every one costs the agent under 16 MiB of peak
//! RSS (VmHWM sampled every 2 ms by `harness::measure`, as for tests/fault_servers.rs). `--nocapture`
//! prints the table.

use crate::harness::measure::{run_measured, under_emulator, Run};
use crate::harness::package::*;
use crate::harness::*;

const MAX_RSS_KIB: i64 = 16 * 1024;

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Empty stored entries `f<i>`, each central header carrying `extra` bytes of an
/// unknown extra field; the end record says `count` entries (None: the real count).
fn archive(n: usize, extra: usize, zip64_count: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::with_capacity(n);
    for i in 0..n {
        offsets.push(out.len() as u32);
        let name = format!("f{i}");
        le32(&mut out, 0x0403_4b50);
        le16(&mut out, 20);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le16(&mut out, name.len() as u16);
        le16(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
    }
    let cd_start = out.len();
    for (i, off) in offsets.iter().enumerate() {
        let name = format!("f{i}");
        le32(&mut out, 0x0201_4b50);
        le16(&mut out, 0x031e);
        le16(&mut out, 20);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le16(&mut out, name.len() as u16);
        le16(&mut out, extra as u16);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le32(&mut out, 0o100644 << 16);
        le32(&mut out, *off);
        out.extend_from_slice(name.as_bytes());
        if extra >= 4 {
            le16(&mut out, 0xcafe);
            le16(&mut out, (extra - 4) as u16);
            out.resize(out.len() + extra - 4, 0x41);
        }
    }
    let cd_size = (out.len() - cd_start) as u64;
    match zip64_count {
        None => {
            le32(&mut out, 0x0605_4b50);
            le16(&mut out, 0);
            le16(&mut out, 0);
            le16(&mut out, n.min(0xFFFF) as u16);
            le16(&mut out, n.min(0xFFFF) as u16);
            le32(&mut out, cd_size as u32);
            le32(&mut out, cd_start as u32);
            le16(&mut out, 0);
        }
        Some(count) => {
            let z64 = out.len() as u64;
            le32(&mut out, 0x0606_4b50);
            le64(&mut out, 44);
            le16(&mut out, 45);
            le16(&mut out, 45);
            le32(&mut out, 0);
            le32(&mut out, 0);
            le64(&mut out, count);
            le64(&mut out, count);
            le64(&mut out, cd_size);
            le64(&mut out, cd_start as u64);
            le32(&mut out, 0x0706_4b50);
            le32(&mut out, 0);
            le64(&mut out, z64);
            le32(&mut out, 1);
            le32(&mut out, 0x0605_4b50);
            le16(&mut out, 0);
            le16(&mut out, 0);
            le16(&mut out, 0xFFFF);
            le16(&mut out, 0xFFFF);
            le32(&mut out, 0xFFFF_FFFF);
            le32(&mut out, 0xFFFF_FFFF);
            le16(&mut out, 0);
        }
    }
    out
}

/// A valid package whose end record lies about the entry count (plain record).
fn lying_count(count: u16) -> Vec<u8> {
    let mut z = zip(&app("2.0.0"));
    let eocd = z.len() - 22;
    z[eocd + 8..eocd + 10].copy_from_slice(&count.to_le_bytes());
    z[eocd + 10..eocd + 12].copy_from_slice(&count.to_le_bytes());
    z
}

#[test]
fn hostile_central_directories_are_refused_within_16_mib() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "1000 entries x 60 KB extra fields",
            archive(1000, 60_000, None),
            "central directory",
        ),
        (
            "ZIP64 end record: 200 000 real entries (max_entries 100 000)",
            archive(200_000, 0, Some(200_000)),
            "more than updates.max_entries",
        ),
        (
            "ZIP64 end record claiming 10^12 entries",
            archive(10, 0, Some(1_000_000_000_000)),
            "more than updates.max_entries",
        ),
        (
            "plain end record claiming 65 000 entries in a 7-entry directory",
            lying_count(65_000),
            "central directory",
        ),
    ];
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, bytes, why) in cases {
        let rig = Node::offline();
        let p = rig.package("hostile.zip", &bytes);
        let Run {
            code,
            out,
            rss_kib: kib,
            ..
        } = run_measured(
            rig.command(&["install", p.to_str().unwrap()]),
            rig.dir.path(),
        );
        rows.push(format!(
            "| {name} | {:.1} MB | exit {code} | {:.1} MiB |",
            bytes.len() as f64 / 1e6,
            kib as f64 / 1024.0
        ));
        if code != 21 || !out.contains(why) || out.contains("panicked") {
            failures.push(format!("{name}: exit {code}, want 21 and {why:?}: {out}"));
        }
        if rig.current().is_some() {
            failures.push(format!("{name}: installed"));
        }
        if !under_emulator() && kib >= MAX_RSS_KIB {
            failures.push(format!("{name}: peak RSS {kib} KiB"));
        }
    }
    println!("| package | size | agent | peak RSS |\n|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        rows.join("\n")
    );
}
