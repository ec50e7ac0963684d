//! The bounded on-disk store-and-forward queue of samples that could not be sent.
//!
//! Layout, all under `state_dir/telemetry/` (owned by this module):
//! - `queue/<seq, 20 digits>.sample`: one sample per file, written atomically (temp
//!   file, fsync, rename, fsync of the directory). The sequence number orders the
//!   samples across restarts; the next one is the largest on disk plus one.
//! - `dropped`: how many samples were lost (queue full, corrupt entry) and not yet
//!   reported to the backend in `additionalData.droppedSamples`.
//!
//! Each entry starts with a header line `CSQ1 <length> <sha256 hex>` over the JSON that
//! follows, so a torn or corrupted entry (a filesystem that does not honour the rename
//! ordering, a bad sector, a hand edit) is recognised, skipped and logged; the others
//! are untouched.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::protocol::TelemetryPayload;
use heapless::binary_heap::{BinaryHeap, Max};
use std::fs;
use std::path::{Path, PathBuf};

/// Most queued samples sent in one cycle, so a long outage does not make one cycle long.
pub const FLUSH_BATCH: usize = 50;
/// Largest entry file read back (a sample is ~400 bytes).
const MAX_ENTRY_BYTES: u64 = 64 * 1024;
const MAGIC: &str = "CSQ1";
const SUFFIX: &str = ".sample";

/// Why a queued entry could not be read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Corrupt {
    /// The file vanished or could not be read (a reason is given).
    Unreadable(String),
    /// Header, length, digest or JSON does not check out.
    Invalid(String),
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corrupt::Unreadable(m) => write!(f, "unreadable: {m}"),
            Corrupt::Invalid(m) => write!(f, "corrupt: {m}"),
        }
    }
}

/// The queue in `state_dir/telemetry/`.
pub struct Queue {
    dir: PathBuf,
    dropped_file: PathBuf,
    max: u32,
    next_seq: u64,
}

/// What one directory scan found: the count and the oldest `K` sequence numbers.
struct Scan<const K: usize> {
    count: usize,
    max_seq: Option<u64>,
    oldest: BinaryHeap<u64, Max, K>,
}

/// The queue directory under a state directory.
pub fn queue_dir(state_dir: &Path) -> PathBuf {
    crate::state_paths::StatePaths::new(state_dir).telemetry_queue()
}

impl Queue {
    /// Opens (creating) the queue, removes temp files a power cut left behind, and
    /// finds the next sequence number. `max` is `telemetry.queue_max`.
    pub fn open(state_dir: &Path, max: u32) -> Result<Queue> {
        let top = crate::state_paths::StatePaths::new(state_dir).telemetry();
        let dir = queue_dir(state_dir);
        fsutil::ensure_dir(&dir, 0o700)?;
        for d in [&top, &dir] {
            remove_temp_files(d);
        }
        let mut q = Queue {
            dir,
            dropped_file: top.join("dropped"),
            max,
            next_seq: 0,
        };
        let s: Scan<1> = q.scan()?;
        q.next_seq = s.max_seq.map(|m| m.saturating_add(1)).unwrap_or(0);
        Ok(q)
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of entries on disk.
    pub fn len(&self) -> Result<usize> {
        let s: Scan<1> = self.scan()?;
        Ok(s.count)
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The oldest entries (at most `FLUSH_BATCH`), oldest first.
    pub fn oldest(&self) -> Result<heapless::Vec<u64, FLUSH_BATCH>> {
        let s: Scan<FLUSH_BATCH> = self.scan()?;
        let mut v: heapless::Vec<u64, FLUSH_BATCH> = s.oldest.into_vec();
        v.sort_unstable();
        Ok(v)
    }

    /// Appends a sample, first dropping the oldest entries so the queue never holds
    /// more than `max`. Returns how many were dropped (also added to the `dropped`
    /// counter, which is persisted before any entry is deleted).
    pub fn push(&mut self, payload: &TelemetryPayload) -> Result<u64> {
        let mut dropped = 0u64;
        if self.max == 0 {
            self.add_dropped(1)?;
            return Ok(1);
        }
        loop {
            let s: Scan<FLUSH_BATCH> = self.scan()?;
            let excess = (s.count + 1).saturating_sub(self.max as usize);
            if excess == 0 {
                break;
            }
            let mut victims: heapless::Vec<u64, FLUSH_BATCH> = s.oldest.into_vec();
            victims.sort_unstable();
            victims.truncate(excess.min(FLUSH_BATCH));
            if victims.is_empty() {
                break;
            }
            // Count first: a power cut between the two steps over-reports by one at
            // worst, and never loses a kept sample.
            self.add_dropped(victims.len() as u64)?;
            for seq in &victims {
                self.remove(*seq)?;
                log::warn!(
                    "telemetry queue full ({} samples): dropped the oldest (#{seq})",
                    self.max
                );
            }
            dropped += victims.len() as u64;
        }
        let json = serde_json::to_vec(payload)
            .map_err(|e| Error::Other(format!("serializing a telemetry sample: {e}")))?;
        let seq = self.next_seq;
        fsutil::atomic_write(&self.path(seq), &encode(&json), 0o600)?;
        self.next_seq = seq.saturating_add(1);
        Ok(dropped)
    }

    /// Reads an entry back, checking its header, length, digest and JSON.
    pub fn read(&self, seq: u64) -> std::result::Result<TelemetryPayload, Corrupt> {
        let data = fsutil::read_bounded(&self.path(seq), MAX_ENTRY_BYTES)
            .map_err(|e| Corrupt::Unreadable(e.to_string()))?;
        decode(&data).map_err(Corrupt::Invalid)
    }

    /// Deletes an entry (after a 2xx, or when it can never be sent) and syncs the
    /// directory, so a delivered sample does not come back after a power cut.
    pub(crate) fn remove(&self, seq: u64) -> Result<()> {
        let p = self.path(seq);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
        fsutil::fsync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
    }

    /// Samples lost and not yet reported to the backend.
    pub fn pending_dropped(&self) -> u64 {
        match fsutil::read_bounded(&self.dropped_file, 64) {
            Ok(d) => String::from_utf8_lossy(&d)
                .trim()
                .parse()
                .unwrap_or_else(|_| {
                    log::warn!(
                        "{}: unreadable counter; counting from 0",
                        self.dropped_file.display()
                    );
                    0
                }),
            Err(_) => 0,
        }
    }

    /// Adds `n` lost samples to the unreported count.
    pub(crate) fn add_dropped(&self, n: u64) -> Result<()> {
        let v = self.pending_dropped().saturating_add(n);
        self.write_dropped(v)
    }

    /// Subtracts `n` samples once a 2xx confirmed they were reported.
    pub fn reported_dropped(&self, n: u64) -> Result<()> {
        let v = self.pending_dropped().saturating_sub(n);
        self.write_dropped(v)
    }

    fn write_dropped(&self, v: u64) -> Result<()> {
        if v == 0 && !self.dropped_file.exists() {
            return Ok(());
        }
        fsutil::atomic_write(&self.dropped_file, format!("{v}\n").as_bytes(), 0o600)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{SUFFIX}"))
    }

    /// One pass over the directory: O(K) memory whatever the queue's length.
    fn scan<const K: usize>(&self) -> Result<Scan<K>> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        let mut s = Scan {
            count: 0,
            max_seq: None,
            oldest: BinaryHeap::new(),
        };
        for e in rd {
            let e = e.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let name = e.file_name();
            let Some(seq) = name.to_str().and_then(parse_name) else {
                continue;
            };
            s.count += 1;
            s.max_seq = Some(s.max_seq.map_or(seq, |m| m.max(seq)));
            if s.oldest.len() < K {
                let _ = s.oldest.push(seq);
            } else if s.oldest.peek().is_some_and(|top| seq < *top) {
                let _ = s.oldest.pop();
                let _ = s.oldest.push(seq);
            }
        }
        Ok(s)
    }
}

/// `00000000000000000042.sample` → 42.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes `.<name>.tmp.<pid>` files of interrupted atomic writes. The state lock
/// guarantees no other writer is in the middle of one.
fn remove_temp_files(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.starts_with('.') && n.contains(".tmp.") {
            match fs::remove_file(e.path()) {
                Ok(()) => log::info!("telemetry queue: removed {n}, left by an interrupted write"),
                Err(err) => log::warn!("telemetry queue: cannot remove {n}: {err}"),
            }
        }
    }
}

use crate::hex::encode as hex;

/// Header line + JSON.
pub fn encode(json: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, json);
    let mut out = format!("{MAGIC} {} {}\n", json.len(), hex(digest.as_ref())).into_bytes();
    out.extend_from_slice(json);
    out
}

/// Checks and parses an entry.
pub fn decode(data: &[u8]) -> std::result::Result<TelemetryPayload, String> {
    let nl = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let (head, rest) = data.split_at(nl);
    let body = rest.get(1..).unwrap_or_default();
    let head = std::str::from_utf8(head).map_err(|_| "header is not text")?;
    let mut parts = head.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err("unknown header".into());
    }
    let len: usize = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad length in header")?;
    let want = parts.next().ok_or("no digest in header")?;
    if body.len() != len {
        return Err(format!(
            "truncated or extended: {} bytes, header says {len}",
            body.len()
        ));
    }
    let got = hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    if got != want {
        return Err("digest mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("not a telemetry sample: {e}"))
}
