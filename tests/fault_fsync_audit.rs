//! fsync audit: an update from the simulator and telemetry cycles (queued while the
//! backend is down, then delivered) run under `strace -f -y`; every file the agent
//! renames into place must have been fsynced before the rename, and its directory
//! fsynced after it; the `current` symlink switch likewise.

mod update_support;

use std::path::Path;
use std::process::Command;
use update_support::*;

fn strace_available() -> bool {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok() {
            panic!("strace is not installed (board/ci-setup.sh installs it)");
        }
        eprintln!("SKIPPED: strace not installed");
    }
    ok
}

/// One syscall of interest, with the paths strace resolved.
#[derive(Debug)]
enum Call {
    /// fsync/fdatasync of the file or directory at this path.
    Sync(String),
    /// rename of `from` to `to`.
    Rename { from: String, to: String },
    /// A symlink created at this path.
    Symlink(String),
}

/// The quoted strings and `<path>` fd annotations of a strace line, in order.
fn args_of(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    }
                    '"' => break,
                    _ => s.push(c),
                }
            }
            out.push(s);
        } else if c == '<' {
            let mut s = String::new();
            for c in chars.by_ref() {
                if c == '>' {
                    break;
                }
                s.push(c);
            }
            out.push(s);
        }
    }
    out
}

/// The successful calls of an strace -f -y log, in order.
fn parse(log: &str) -> Vec<Call> {
    let mut calls = vec![];
    for line in log.lines() {
        if !line.trim_end().ends_with("= 0") {
            continue;
        }
        // Drop the pid prefix of `strace -f -o`.
        let body = line
            .split_once(' ')
            .map(|(p, rest)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    rest
                } else {
                    line
                }
            })
            .unwrap_or(line)
            .trim_start();
        let name = body.split('(').next().unwrap_or("");
        let a = args_of(body);
        match name {
            "fsync" | "fdatasync" if !a.is_empty() => calls.push(Call::Sync(a[0].clone())),
            "rename" if a.len() >= 2 => calls.push(Call::Rename {
                from: a[0].clone(),
                to: a[1].clone(),
            }),
            // renameat(dirfd<dir>, "old", dirfd<dir>, "new"): AT_FDCWD has no <path>
            // annotation when the paths are absolute, which ours are.
            "renameat" | "renameat2" => {
                let quoted: Vec<&String> = a.iter().filter(|s| s.starts_with('/')).collect();
                if quoted.len() >= 2 {
                    calls.push(Call::Rename {
                        from: quoted[quoted.len() - 2].clone(),
                        to: quoted[quoted.len() - 1].clone(),
                    });
                }
            }
            "symlink" | "symlinkat" if !a.is_empty() => {
                calls.push(Call::Symlink(a.last().cloned().unwrap_or_default()))
            }
            _ => {}
        }
    }
    calls
}

/// Every rename into `under`: source fsynced before (unless it is a symlink), target
/// directory fsynced after. Returns the violations and the number of renames checked.
fn audit(calls: &[Call], under: &str) -> (Vec<String>, usize) {
    let mut bad = vec![];
    let mut checked = 0;
    for (i, c) in calls.iter().enumerate() {
        let Call::Rename { from, to } = c else {
            continue;
        };
        if !to.starts_with(under) {
            continue;
        }
        checked += 1;
        let is_link = calls[..i]
            .iter()
            .any(|c| matches!(c, Call::Symlink(p) if p == from));
        if !is_link
            && !calls[..i]
                .iter()
                .any(|c| matches!(c, Call::Sync(p) if p == from))
        {
            bad.push(format!("{from} renamed to {to} without an fsync first"));
        }
        let dir = Path::new(to)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !calls[i + 1..]
            .iter()
            .any(|c| matches!(c, Call::Sync(p) if *p == dir))
        {
            bad.push(format!(
                "{to}: directory {dir} not fsynced after the rename"
            ));
        }
    }
    (bad, checked)
}

/// Runs the agent under strace; returns the parsed calls.
fn traced(rig: &Rig, args: &[&str]) -> Vec<Call> {
    let out = rig
        .dir
        .path()
        .join(format!("strace-{}.log", args.join("-")));
    let agent = rig.cmd(args);
    let mut c = Command::new("strace");
    c.args(["-f", "-y", "-s", "512", "-o"]).arg(&out);
    c.args([
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2,symlink,symlinkat",
    ]);
    c.arg(agent.get_program()).args(agent.get_args());
    for (k, v) in agent.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c.output().unwrap();
    assert!(
        // 1: telemetry queued while the backend is down.
        matches!(code(&o), 0 | 1),
        "{args:?} under strace: {}",
        text(&o)
    );
    parse(&std::fs::read_to_string(&out).unwrap())
}

#[test]
fn checker_catches_a_missing_fsync() {
    let log = r#"101 fsync(3</box/state/a.json.tmp>) = 0
101 rename("/box/state/a.json.tmp", "/box/state/a.json") = 0
101 fsync(3</box/state>) = 0
101 rename("/box/state/b.json.tmp", "/box/state/b.json") = 0
101 fdatasync(4</box/state/c.tmp>) = 0
101 renameat2(AT_FDCWD, "/box/state/c.tmp", AT_FDCWD, "/box/state/c", 0) = 0
101 symlinkat("slots/b", AT_FDCWD</box/opt>, "/box/opt/current.tmp") = 0
101 rename("/box/opt/current.tmp", "/box/opt/current") = 0
"#;
    let (bad, n) = audit(&parse(log), "/box/");
    assert_eq!(n, 4);
    assert_eq!(
        bad,
        vec![
            "/box/state/b.json.tmp renamed to /box/state/b.json without an fsync first".to_string(),
            "/box/state/b.json: directory /box/state not fsynced after the rename".to_string(),
            "/box/state/c: directory /box/state not fsynced after the rename".to_string(),
            "/box/opt/current: directory /box/opt not fsynced after the rename".to_string(),
        ]
    );
}

#[test]
fn update_and_telemetry_fsync_before_and_after_every_rename() {
    if !strace_available() {
        return;
    }
    let sim = tls_sim();
    let rig = Rig::new(&sim.url(), sim.ca_pem().as_deref());
    let under = rig.dir.path().display().to_string();
    let mut report = vec![];

    assert_eq!(code(&rig.install(&zip(&app("1.0.0")))), 0);
    sim.publish_update("2.0.0", zip(&app("2.0.0")), "- audited");
    let calls = traced(&rig, &["update"]);
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Rename { to, .. } if to.ends_with("/current"))),
        "the update did not switch `current`"
    );
    report.push(("update", audit(&calls, &under)));

    // A telemetry sample queued while the backend is down, then delivered.
    sim.set_down(true);
    report.push((
        "telemetry (queued)",
        audit(&traced(&rig, &["telemetry", "--once"]), &under),
    ));
    sim.set_down(false);
    report.push((
        "telemetry (sent)",
        audit(&traced(&rig, &["telemetry", "--once"]), &under),
    ));
    report.push(("validate", audit(&traced(&rig, &["validate"]), &under)));

    let mut all_bad = vec![];
    for (what, (bad, n)) in &report {
        println!("{what}: {n} renames checked, {} violations", bad.len());
        all_bad.extend(bad.iter().map(|b| format!("{what}: {b}")));
    }
    assert!(report[0].1 .1 >= 4, "too few renames seen: {report:?}");
    assert!(all_bad.is_empty(), "{all_bad:#?}");
}
