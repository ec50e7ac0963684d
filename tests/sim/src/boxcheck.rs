//! The power-cut test's box checker (`cybersensei-sim check-box`): reads an agent's
//! `state_dir` and `install.root` as a power cut left them and says whether the box
//! is whole. Runs inside the qemu guest (aarch64 build) before the agent starts, and
//! on the host against the files `debugfs` copies out of the disk image.
//!
//! Whole means: `current` resolves to a complete slot (its record parses, or it is a
//! hand-laid factory slot with a `VERSION`), every file its `manifest.json` lists is
//! there with that digest, the other slot is complete too when it has a record, and
//! every state file the agent owns parses (or is absent, which is allowed for all of
//! them). Temp files of an interrupted atomic write (`.NAME.tmp.PID`) are counted,
//! not refused: the rename never happened, so the state file itself is intact.

use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// What the checker found: a one-line summary and the problems (none = whole).
#[derive(Debug, Default)]
pub struct Report {
    /// `key=value` facts, e.g. `current=b`, `version=2.0.3`, `journal=switched`.
    pub facts: Vec<(String, String)>,
    /// Everything that makes the box not whole.
    pub problems: Vec<String>,
}

impl Report {
    fn fact(&mut self, k: &str, v: impl ToString) {
        self.facts.push((k.to_string(), v.to_string()));
    }
    fn bad(&mut self, p: String) {
        self.problems.push(p);
    }
    /// `BOX ok k=v ...` or `BOX FAIL k=v ... :: problem; problem`.
    pub fn line(&self) -> String {
        let mut s = String::from(if self.problems.is_empty() {
            "BOX ok"
        } else {
            "BOX FAIL"
        });
        for (k, v) in &self.facts {
            let _ = write!(s, " {k}={v}");
        }
        if !self.problems.is_empty() {
            let _ = write!(s, " :: {}", self.problems.join("; "));
        }
        s
    }
}

const MAX_STATE_FILE: u64 = 1024 * 1024;

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a small file; `Ok(None)` when absent.
fn read_small(p: &Path) -> Result<Option<Vec<u8>>, String> {
    match fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
        Ok(m) if m.len() > MAX_STATE_FILE => {
            return Err(format!("{}: {} bytes", p.display(), m.len()))
        }
        Ok(_) => {}
    }
    fs::read(p)
        .map(Some)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// A JSON state file: absent, or an object that parses.
fn json_file(r: &mut Report, p: &Path) -> Option<Value> {
    match read_small(p) {
        Ok(None) => None,
        Err(e) => {
            r.bad(e);
            None
        }
        Ok(Some(data)) => match serde_json::from_slice::<Value>(&data) {
            Ok(v) if v.is_object() => Some(v),
            Ok(_) => {
                r.bad(format!("{}: not a JSON object", p.display()));
                None
            }
            Err(e) => {
                r.bad(format!(
                    "{}: does not parse ({e}; {} bytes)",
                    p.display(),
                    data.len()
                ));
                None
            }
        },
    }
}

/// `.NAME.tmp.PID` files left in `dir` by an atomic write that a cut interrupted.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one slot; returns its version when it is complete.
fn check_slot(
    r: &mut Report,
    root: &Path,
    slot: &str,
    must: bool,
    sums_required: bool,
) -> Option<String> {
    let dir = root.join("slots").join(slot);
    let rec = root.join("slots").join(format!("{slot}.json"));
    let record = rec.exists();
    let version = match json_file(r, &rec) {
        Some(v) => match v.get("version").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                r.bad(format!("{}: no version", rec.display()));
                return None;
            }
        },
        None if rec.exists() => return None,
        None => match fs::read_to_string(dir.join("VERSION")) {
            // A hand-laid (factory) slot: complete by layout.
            Ok(s) if !s.trim().is_empty() && !dir.join("SHA256SUMS").exists() => {
                s.trim().to_string()
            }
            _ => {
                if must {
                    r.bad(format!("slot {slot} is current but has no record"));
                }
                return None;
            }
        },
    };
    if !dir.is_dir() {
        r.bad(format!("slot {slot} has a record but no directory"));
        return None;
    }
    let mpath = dir.join("manifest.json");
    let sums = dir.join("SHA256SUMS");
    let entries: Vec<(String, String)> = if mpath.exists() {
        let m = json_file(r, &mpath)?;
        match m.get("files") {
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter(|e| e.get("type").and_then(Value::as_str).unwrap_or("file") == "file")
                .map(|e| {
                    let s = |k| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("path"), s("sha256"))
                })
                .collect(),
            _ => {
                r.bad(format!("{}: no files", mpath.display()));
                return None;
            }
        }
    } else if sums.exists() {
        // `sha256sum` format: "<hex>  <path>" per line; a file cut to nothing (its
        // data never reached the disk) or garbled is a problem, not an empty list.
        let text = match fs::read_to_string(&sums) {
            Ok(t) => t,
            Err(e) => {
                r.bad(format!("slot {slot}: SHA256SUMS: {e}"));
                return None;
            }
        };
        let mut v = Vec::new();
        for l in text.lines().filter(|l| !l.is_empty()) {
            match l.split_once("  ") {
                Some((h, p)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    v.push((p.to_string(), h.to_string()))
                }
                _ => {
                    r.bad(format!("slot {slot}: SHA256SUMS: bad line {l:?}"));
                    return None;
                }
            }
        }
        if v.is_empty() {
            r.bad(format!(
                "slot {slot}: SHA256SUMS is empty ({} bytes)",
                text.len()
            ));
            return None;
        }
        v
    } else {
        if sums_required && record {
            r.bad(format!(
                "slot {slot} has a record but neither SHA256SUMS nor manifest.json"
            ));
        }
        Vec::new()
    };
    if !entries.is_empty() {
        let listed = entries.len();
        for (path, want) in entries {
            let f = dir.join(&path);
            match fs::read(&f) {
                Ok(data) if sha256_hex(&data) == want.to_ascii_lowercase() => {}
                Ok(data) => r.bad(format!(
                    "slot {slot}: {path} does not match its digest ({} bytes)",
                    data.len()
                )),
                Err(e) => r.bad(format!("slot {slot}: {path}: {e}")),
            }
        }
        r.fact(&format!("slot_{slot}_files"), listed);
    }
    r.fact(&format!("slot_{slot}"), &version);
    Some(version)
}

/// Checks a box: `state` is the agent's `state_dir`, `root` its `install.root`.
/// `sums_required`: every slot with a record must carry `SHA256SUMS` or a manifest
/// (the power-cut packages always do), so a slot whose files were lost is caught
/// even when its digest list was lost with them.
pub fn check_box(state: &Path, root: &Path, sums_required: bool) -> Report {
    let mut r = Report::default();
    // install.root: current -> a complete slot.
    let cur = root.join("current");
    match fs::read_link(&cur) {
        Err(e) => r.bad(format!("current: {e}")),
        Ok(t) => {
            let t = t.to_string_lossy().into_owned();
            match t.strip_prefix("slots/") {
                Some(s @ ("a" | "b")) => {
                    r.fact("current", s);
                    if let Some(v) = check_slot(&mut r, root, s, true, sums_required) {
                        r.fact("version", v);
                    }
                    let other = if s == "a" { "b" } else { "a" };
                    // The other slot is only checked when it claims to be complete.
                    if root.join("slots").join(format!("{other}.json")).exists() {
                        check_slot(&mut r, root, other, false, sums_required);
                    }
                }
                _ => r.bad(format!("current -> {t}: not slots/a or slots/b")),
            }
        }
    }
    if root.join(".current.tmp").symlink_metadata().is_ok() {
        r.fact("stray_current_tmp", 1);
    }
    // state_dir: every file the agent owns parses or is absent.
    if let Some(s) = json_file(&mut r, &state.join("status.json")) {
        let u = s.get("update").and_then(|u| u.get("state"));
        r.fact(
            "status",
            u.and_then(Value::as_str).unwrap_or("-").to_string(),
        );
    }
    if let Some(l) = json_file(&mut r, &state.join("license.json")) {
        if l.get("tenantId").or_else(|| l.get("tenant_id")).is_none() {
            r.bad("license.json: no tenant id".into());
        }
        r.fact("license", "cached");
    }
    let upd = state.join("update");
    match json_file(&mut r, &upd.join("journal.json")) {
        Some(j) => r.fact(
            "journal",
            j.get("step").and_then(Value::as_str).unwrap_or("?"),
        ),
        None => r.fact("journal", "none"),
    }
    if json_file(&mut r, &upd.join("download.json")).is_some() {
        r.fact("download", "recorded");
    }
    match read_small(&upd.join("failed-id")) {
        Ok(Some(d)) if d.is_empty() || d.len() > 256 || std::str::from_utf8(&d).is_err() => {
            r.bad(format!("update/failed-id: {} bytes, not an id", d.len()))
        }
        Err(e) => r.bad(e),
        _ => {}
    }
    let tel = state.join("telemetry");
    match read_small(&tel.join("dropped")) {
        Ok(Some(d)) => {
            if String::from_utf8_lossy(&d).trim().parse::<u64>().is_err() {
                r.bad("telemetry/dropped: not a number".into());
            }
        }
        Err(e) => r.bad(e),
        Ok(None) => {}
    }
    let qdir = tel.join("queue");
    let mut queued = 0usize;
    if let Ok(rd) = fs::read_dir(&qdir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sample") || name.starts_with('.') {
                continue;
            }
            queued += 1;
            match read_small(&e.path()) {
                Ok(Some(d)) => {
                    if let Err(why) = queue_entry_ok(&d) {
                        r.bad(format!("telemetry/queue/{name}: {why}"));
                    }
                }
                Ok(None) => {}
                Err(e) => r.bad(e),
            }
        }
    }
    r.fact("queued", queued);
    let mut tmp: Vec<String> = [
        state.to_path_buf(),
        upd.clone(),
        tel.clone(),
        qdir,
        root.join("slots"),
    ]
    .iter()
    .flat_map(|d| temp_files(d))
    .collect();
    tmp.sort();
    r.fact("tmp", tmp.len());
    if !tmp.is_empty() {
        r.fact("tmp_files", tmp.join(","));
    }
    r
}

/// A queue entry: `CSQ1 <len> <sha256>\n` then that many bytes of JSON.
fn queue_entry_ok(d: &[u8]) -> Result<(), String> {
    let nl = d.iter().position(|&b| b == b'\n').ok_or("no header line")?;
    let header = std::str::from_utf8(&d[..nl]).map_err(|_| "header not UTF-8")?;
    let mut it = header.split(' ');
    if it.next() != Some("CSQ1") {
        return Err("bad magic".into());
    }
    let len: usize = it.next().and_then(|s| s.parse().ok()).ok_or("bad length")?;
    let digest = it.next().ok_or("no digest")?;
    let body = &d[nl + 1..];
    if body.len() != len {
        return Err(format!("{} bytes, header says {len}", body.len()));
    }
    if sha256_hex(body) != digest {
        return Err("digest mismatch".into());
    }
    serde_json::from_slice::<Value>(body).map_err(|e| format!("JSON: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("boxcheck-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn slot_with_manifest(root: &Path, slot: &str, content: &[u8]) {
        let d = root.join("slots").join(slot);
        fs::create_dir_all(d.join("app")).unwrap();
        fs::write(d.join("app/x"), content).unwrap();
        let m = format!(
            r#"{{"files":[{{"path":"app/x","sha256":"{}"}}]}}"#,
            sha256_hex(b"good")
        );
        fs::write(d.join("manifest.json"), m).unwrap();
        fs::write(
            root.join("slots").join(format!("{slot}.json")),
            r#"{"version":"2.0.1","installedAt":"x"}"#,
        )
        .unwrap();
    }

    #[test]
    fn a_whole_box_passes_and_each_kind_of_damage_is_named() {
        let t = tmp("whole");
        let (state, root) = (t.join("state"), t.join("opt"));
        fs::create_dir_all(state.join("update")).unwrap();
        fs::create_dir_all(state.join("telemetry/queue")).unwrap();
        slot_with_manifest(&root, "b", b"good");
        std::os::unix::fs::symlink("slots/b", root.join("current")).unwrap();
        fs::write(state.join("status.json"), r#"{"update":{"state":"idle"}}"#).unwrap();
        let body = br#"{"a":1}"#;
        let entry = [
            format!("CSQ1 {} {}\n", body.len(), sha256_hex(body)).as_bytes(),
            body,
        ]
        .concat();
        fs::write(
            state.join("telemetry/queue/00000000000000000001.sample"),
            &entry,
        )
        .unwrap();
        let r = check_box(&state, &root, true);
        assert!(r.problems.is_empty(), "{}", r.line());
        assert!(r.line().contains(" current=b "), "{}", r.line());
        assert!(r.line().contains(" version=2.0.1 "), "{}", r.line());
        assert!(r.line().contains("queued=1"), "{}", r.line());

        // A file of the current slot that does not match the manifest.
        fs::write(root.join("slots/b/app/x"), b"torn").unwrap();
        // A journal cut in the middle, a torn queue entry.
        fs::write(state.join("update/journal.json"), b"{\"step\": \"sta").unwrap();
        fs::write(
            state.join("telemetry/queue/00000000000000000002.sample"),
            &entry[..entry.len() - 2],
        )
        .unwrap();
        let r = check_box(&state, &root, true);
        let line = r.line();
        assert_eq!(r.problems.len(), 3, "{line}");
        assert!(line.contains("app/x does not match its digest"), "{line}");
        assert!(line.contains("journal.json: does not parse"), "{line}");
        assert!(line.contains("00000000000000000002.sample"), "{line}");

        // The slot's files and its SHA256SUMS cut to nothing (data never flushed).
        let t2 = tmp("lost");
        let (st2, root2) = (t2.join("state"), t2.join("opt"));
        fs::create_dir_all(root2.join("slots/a/bin")).unwrap();
        fs::write(root2.join("slots/a/bin/agent"), b"").unwrap();
        fs::write(root2.join("slots/a/SHA256SUMS"), b"").unwrap();
        fs::write(root2.join("slots/a.json"), r#"{"version":"2.0.2"}"#).unwrap();
        std::os::unix::fs::symlink("slots/a", root2.join("current")).unwrap();
        let r = check_box(&st2, &root2, true);
        assert!(r.line().contains("SHA256SUMS is empty"), "{}", r.line());
        fs::remove_file(root2.join("slots/a/SHA256SUMS")).unwrap();
        let r = check_box(&st2, &root2, true);
        assert!(
            r.line().contains("neither SHA256SUMS nor manifest"),
            "{}",
            r.line()
        );
        assert!(check_box(&st2, &root2, false).problems.is_empty());
        let _ = fs::remove_dir_all(&t2);

        // current pointing at a slot without record (half-staged).
        let _ = fs::remove_file(root.join("current"));
        fs::create_dir_all(root.join("slots/a")).unwrap();
        std::os::unix::fs::symlink("slots/a", root.join("current")).unwrap();
        let r = check_box(&state, &root, true);
        assert!(
            r.line().contains("slot a is current but has no record"),
            "{}",
            r.line()
        );
        let _ = fs::remove_dir_all(&t);
    }
}
