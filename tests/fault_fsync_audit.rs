//! fsync audit (issue 8, part 2): updates (fresh box, A→B with a resumed download,
//! rollback) and telemetry cycles (one queued, one flushed) run under
//! `strace -f -y`; the trace is parsed and every rename into state_dir or
//! install.root must be durable:
//! - the renamed file was fsynced (or fdatasynced) through a descriptor of that very
//!   path after it was last opened for writing and before the rename (a symlink,
//!   which cannot be fsynced, is exempt from this one);
//! - its directory was fsynced after the rename, before the process renamed
//!   anything else (so no later step can become durable before this one);
//! - a slot record (`slots/X.json`, "this slot is complete") comes after a
//!   `syncfs` that followed the last file created in that slot;
//! - the `current` switch (a symlink renamed over `current`) is among the renames.
//!
//! Needs strace (board/ci-setup.sh installs it). Without it, or without ptrace, the
//! test is skipped with a printed reason, except under `CI=true` where it fails.

use crate::harness::package::*;
use crate::harness::*;
use cybersensei_sim::Fault;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TRACE: &str =
    "trace=openat,?open,?rename,renameat,renameat2,fsync,fdatasync,?symlink,symlinkat,syncfs";

/// One traced system call that succeeded.
#[derive(Debug, Clone)]
enum Ev {
    /// A file opened; `write`: for writing or creating.
    Open {
        path: String,
        write: bool,
    },
    Fsync {
        path: String,
    },
    Syncfs {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Symlink {
        link: String,
    },
}

/// The strace binary, or why the audit cannot run here.
fn strace() -> Result<PathBuf, String> {
    for p in ["/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    Err("strace is not installed (apt-get install strace)".into())
}

/// Runs the agent command `cmd` under strace; returns its output and the trace.
fn traced(strace: &Path, cmd: &Command, out: &Path) -> (std::process::Output, String) {
    let mut c = Command::new(strace);
    c.args(["-f", "-y", "-qq", "-o"])
        .arg(out)
        .args(["-e", TRACE, "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(std::process::Stdio::null());
    let o = c.output().unwrap();
    let trace = std::fs::read_to_string(out).unwrap_or_default();
    (o, trace)
}

/// The content of every `"..."` string in `s`, unescaped (strace's C escapes).
fn quoted(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '"' {
            continue;
        }
        let mut v = String::new();
        while let Some(c) = it.next() {
            match c {
                '\\' => {
                    if let Some(n) = it.next() {
                        v.push(n);
                    }
                }
                '"' => break,
                c => v.push(c),
            }
        }
        out.push(v);
    }
    out
}

/// The path strace -y prints after a descriptor (`4</a/b>`), at `s`'s start.
fn fd_path(s: &str) -> Option<String> {
    let a = s.find('<')?;
    let b = s[a..].find('>')?;
    Some(s[a + 1..a + b].to_string())
}

/// Parses an `strace -f -y` log into each process's successful calls, in order.
fn parse(trace: &str) -> HashMap<u32, Vec<Ev>> {
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut out: HashMap<u32, Vec<Ev>> = HashMap::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        }
        let call = if rest.starts_with("<...") {
            let Some(i) = rest.find("resumed>") else {
                continue;
            };
            format!(
                "{}{}",
                pending.remove(&pid).unwrap_or_default(),
                &rest[i + 8..]
            )
        } else {
            rest.to_string()
        };
        let Some(open) = call.find('(') else { continue };
        let name = &call[..open];
        // `name(args) = ret`, strace pads short calls with spaces before the `=`.
        let Some(eq) = call.rfind(" = ") else {
            continue;
        };
        let Some(close) = call[..eq].rfind(')') else {
            continue;
        };
        let args = &call[open + 1..close];
        let ret = &call[eq + 3..];
        if ret.starts_with('-') || ret.starts_with('?') {
            continue; // failed calls change nothing
        }
        let q = quoted(args);
        // Relative names are resolved against the directory descriptor strace shows.
        let join = |dir_arg: &str, p: &str| -> String {
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("{}/{p}", fd_path(dir_arg).unwrap_or_default())
            }
        };
        let ev = match name {
            "openat" | "open" => {
                let Some(path) = fd_path(ret) else { continue };
                let write = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
                    .iter()
                    .any(|f| args.contains(f));
                Ev::Open { path, write }
            }
            "fsync" | "fdatasync" => match fd_path(args) {
                Some(path) => Ev::Fsync { path },
                None => continue,
            },
            "syncfs" => match fd_path(args) {
                Some(path) => Ev::Syncfs { path },
                None => continue,
            },
            "rename" if q.len() == 2 => Ev::Rename {
                from: q[0].clone(),
                to: q[1].clone(),
            },
            "renameat" | "renameat2" if q.len() == 2 => {
                let parts: Vec<&str> = args.split(", ").collect();
                Ev::Rename {
                    from: join(parts.first().copied().unwrap_or(""), &q[0]),
                    to: join(parts.get(2).copied().unwrap_or(""), &q[1]),
                }
            }
            "symlink" if q.len() == 2 => Ev::Symlink { link: q[1].clone() },
            "symlinkat" if q.len() == 2 => {
                let parts: Vec<&str> = args.split(", ").collect();
                Ev::Symlink {
                    link: join(parts.get(1).copied().unwrap_or(""), &q[1]),
                }
            }
            _ => continue,
        };
        out.entry(pid).or_default().push(ev);
    }
    out
}

fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].to_string(),
        None => ".".into(),
    }
}

/// Checks one process's calls; returns the problems and the renames audited.
fn audit(evs: &[Ev], roots: &[String]) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut audited = Vec::new();
    let inside = |p: &str| roots.iter().any(|r| p.starts_with(&format!("{r}/")));
    for (i, ev) in evs.iter().enumerate() {
        let Ev::Rename { from, to } = ev else {
            continue;
        };
        if !inside(to) {
            continue;
        }
        audited.push(to.clone());
        let before = &evs[..i];
        let is_link = before
            .iter()
            .any(|e| matches!(e, Ev::Symlink { link } if link == from));
        if !is_link {
            // The last open for writing of the temp file, then an fsync of it.
            let opened = before
                .iter()
                .rposition(|e| matches!(e, Ev::Open { path, write: true } if path == from));
            match opened {
                None => problems.push(format!("{to}: {from} never opened for writing")),
                Some(o) => {
                    if !before[o..]
                        .iter()
                        .any(|e| matches!(e, Ev::Fsync { path } if path == from))
                    {
                        problems.push(format!("{to}: {from} renamed without an fsync"));
                    }
                }
            }
        }
        // The directory, after the rename and before the next rename.
        let dir = parent(to);
        let after = &evs[i + 1..];
        let next_rename = after
            .iter()
            .position(|e| matches!(e, Ev::Rename { .. }))
            .unwrap_or(after.len());
        if !after[..next_rename]
            .iter()
            .any(|e| matches!(e, Ev::Fsync { path } if *path == dir))
        {
            problems.push(format!(
                "{to}: directory {dir} not fsynced after the rename (before the next one)"
            ));
        }
        // A slot record says "complete": the slot's files must be synced before it.
        if let Some(slot) = to
            .strip_suffix(".json")
            .filter(|s| parent(s).ends_with("/slots"))
        {
            let prefix = format!("{slot}/");
            let last_file = before.iter().rposition(
                |e| matches!(e, Ev::Open { path, write: true } if path.starts_with(&prefix)),
            );
            if let Some(f) = last_file {
                if !before[f..].iter().any(
                    |e| matches!(e, Ev::Syncfs { path } if path == slot || path.starts_with(&prefix)),
                ) {
                    problems.push(format!("{to}: written before the slot's files were synced"));
                }
            }
        }
    }
    (problems, audited)
}

/// The canonical form of a path the agent was given (strace -y prints canonical ones).
fn canon(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_rename_into_state_and_install_root_is_fsynced_and_so_is_its_directory() {
    let strace = match strace() {
        Ok(s) => s,
        Err(why) => return skip_or_fail("fault_fsync_audit", &why),
    };
    let sim = tls_sim();
    let rig = Node::updates(&sim);
    std::fs::create_dir_all(&rig.state_dir).unwrap();
    std::fs::create_dir_all(&rig.root).unwrap();
    let base = rig.dir.path().to_path_buf();
    let roots = vec![canon(&rig.state_dir), canon(&rig.root)];
    // rename() arguments are printed as given: map the temp dir to its canonical form.
    let given = base.to_string_lossy().into_owned();
    let canonical = canon(&base);
    let norm = |s: &str| s.replacen(&given, &canonical, 1);

    // Probe: can strace trace at all here (ptrace may be forbidden in a container)?
    let probe = Command::new(&strace)
        .args(["-qq", "-o", "/dev/null", "-e", TRACE, "--", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip_or_fail(
                "fault_fsync_audit",
                &format!(
                    "strace cannot trace here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            )
        }
        Err(e) => return skip_or_fail("fault_fsync_audit", &format!("strace: {e}")),
    }

    let mut big = app("2.0.0");
    big.push(E::File(
        "data.bin".into(),
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        0o644,
    ));
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("update (fresh box)", vec!["update"]),
        ("update A->B, download resumed", vec!["update"]),
        ("rollback", vec!["rollback"]),
        (
            "telemetry, backend failing (queued)",
            vec!["telemetry", "--once"],
        ),
        (
            "telemetry, backend back (flushed)",
            vec!["telemetry", "--once"],
        ),
    ];
    let mut problems = Vec::new();
    let mut audited: Vec<String> = Vec::new();
    for (i, (what, args)) in steps.iter().enumerate() {
        match i {
            0 => {
                sim.publish_update("1.0.0", zip(&app("1.0.0")), "- first");
            }
            1 => {
                sim.publish_update("2.0.0", zip(&big), "- second");
                sim.push_fault(
                    "/update/download",
                    Fault::Truncate {
                        after_bytes: 70_000,
                    },
                );
            }
            3 => sim.set_sticky_fault("/telemetry", Some(Fault::Status(503, "{}".into()))),
            4 => sim.clear_faults(),
            _ => {}
        }
        let out = base.join(format!("trace{i}.txt"));
        let (o, trace) = traced(&strace, &rig.command(args), &out);
        let want = if i == 3 { 1 } else { 0 };
        assert_eq!(code(&o), want, "{what}: {}", text(&o));
        let trace = trace.lines().map(norm).collect::<Vec<_>>().join("\n");
        let procs = parse(&trace);
        assert!(!procs.is_empty(), "{what}: empty trace");
        for evs in procs.values() {
            let (p, a) = audit(evs, &roots);
            problems.extend(p.into_iter().map(|p| format!("{what}: {p}")));
            audited.extend(a);
        }
    }
    assert_eq!(
        sim.download_ranges().iter().filter(|r| r.is_some()).count(),
        1,
        "the second download was resumed once"
    );
    // The audit must have seen every kind of state file, or it proves nothing.
    let st = &roots[0];
    let rt = &roots[1];
    for (what, hit) in [
        ("status.json", format!("{st}/status.json")),
        ("the journal", format!("{st}/update/journal.json")),
        ("the package", format!("{st}/update/package.zip")),
        ("download.json", format!("{st}/update/download.json")),
        ("slot record", format!("{rt}/slots/b.json")),
        ("current", format!("{rt}/current")),
        ("a telemetry sample", format!("{st}/telemetry/queue/")),
    ] {
        assert!(
            audited.iter().any(|a| a.starts_with(&hit)),
            "no rename of {what} ({hit}) seen; audited: {audited:#?}"
        );
    }
    println!(
        "fsync audit: {} renames into state_dir/install.root checked, {} problems",
        audited.len(),
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_audit_catches_a_rename_without_fsync() {
    // The checker itself, on hand-written traces: it must be able to fail.
    let good = r#"7 openat(AT_FDCWD</w>, "/s/.x.tmp.7", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 4</s/.x.tmp.7>
7 fsync(4</s/.x.tmp.7>) = 0
7 rename("/s/.x.tmp.7", "/s/x") = 0
7 openat(AT_FDCWD</w>, "/s", O_RDONLY|O_CLOEXEC) = 4</s>
7 fsync(4</s>)          = 0
7 symlink("slots/a", "/r/.current.tmp") = 0
7 rename("/r/.current.tmp", "/r/current") = 0
7 openat(AT_FDCWD</w>, "/r", O_RDONLY|O_CLOEXEC) = 4</r>
7 fsync(4</r>) = 0"#;
    let roots = vec!["/s".to_string(), "/r".to_string()];
    let p = parse(good);
    let (problems, audited) = audit(&p[&7], &roots);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(audited, ["/s/x", "/r/current"]);

    let no_file_sync = good.replace("7 fsync(4</s/.x.tmp.7>) = 0\n", "");
    let (problems, _) = audit(&parse(&no_file_sync)[&7], &roots);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("without an fsync"));

    let no_dir_sync = good.replace("7 fsync(4</r>) = 0", "");
    let (problems, _) = audit(&parse(&no_dir_sync)[&7], &roots);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("/r not fsynced"));

    // A failed fsync does not count; a split (unfinished/resumed) one does.
    let failed = good.replace(
        "7 fsync(4</s>)          = 0",
        "7 fsync(4</s>) = -1 EIO (Input/output error)",
    );
    assert_eq!(audit(&parse(&failed)[&7], &roots).0.len(), 1);
    let split = good.replace(
        "7 fsync(4</s>)          = 0",
        "7 fsync(4</s> <unfinished ...>\n8 openat(AT_FDCWD</w>, \"/x\", O_RDONLY) = 3</x>\n7 <... fsync resumed>) = 0",
    );
    assert!(audit(&parse(&split)[&7], &roots).0.is_empty());

    // A slot record before its files were synced.
    let record = r#"7 openat(AT_FDCWD</w>, "/r/slots/b/f", O_WRONLY|O_CREAT|O_EXCL, 0600) = 5</r/slots/b/f>
7 openat(AT_FDCWD</w>, "/r/slots/.b.json.tmp.7", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 5</r/slots/.b.json.tmp.7>
7 fsync(5</r/slots/.b.json.tmp.7>) = 0
7 rename("/r/slots/.b.json.tmp.7", "/r/slots/b.json") = 0
7 openat(AT_FDCWD</w>, "/r/slots", O_RDONLY) = 5</r/slots>
7 fsync(5</r/slots>) = 0"#;
    let (problems, _) = audit(&parse(record)[&7], &roots);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("synced"));
    let synced = record.replace(
        "7 openat(AT_FDCWD</w>, \"/r/slots/.b.json",
        "7 syncfs(6</r/slots/b>) = 0\n7 openat(AT_FDCWD</w>, \"/r/slots/.b.json",
    );
    assert!(audit(&parse(&synced)[&7], &roots).0.is_empty());
}
