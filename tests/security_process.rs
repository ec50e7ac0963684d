//! Issue 15, finding 9, through the real binary: a closed stdout does not panic the
//! agent, the process cannot dump core (the key would be in the dump), a key file
//! readable by others is reported, and a server echoing the key back does not get it
//! into the world-readable status.json.

use crate::harness::{code, signal, sim, skip_or_fail, text, Node, KEY};
use cybersensei_sim::Fault;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `status | head -1` with head already gone: the agent's stdout is a pipe whose
/// read end is closed before the agent writes anything.
#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    let s = sim();
    s.valid_license(KEY);
    let n = Node::new(&s);
    assert_eq!(code(&n.run(&["validate"])), 0);
    let mut fds = [0i32; 2];
    // Close-on-exec: the other tests of this process spawn children meanwhile, and one
    // that inherited the read end would keep the pipe readable (no SIGPIPE to test).
    // SAFETY: pipe2(2) fills two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the read end is ours to close; the write end goes to the child.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is a descriptor we own and nothing else closes it.
    let write_end = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    for args in [&["status"][..], &["status", "--json"], &["config", "check"]] {
        let out = n
            .command(args)
            .stdout(Stdio::from(write_end.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // Ended by SIGPIPE like any shell tool (or 0), never an abort (SIGABRT, core).
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

fn core_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "core" || n.starts_with("core."))
        .collect()
}

/// The daemon, SIGABRTed with an unlimited core size in a directory where cores
/// land: no core file. A plain shell treated the same way proves cores land there.
#[test]
fn the_agent_never_dumps_core() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim_start().starts_with('|') || pattern.trim().contains('/') {
        let why = format!("core_pattern {pattern:?} does not write cores into the cwd");
        return skip_or_fail("the_agent_never_dumps_core", &why);
    }
    let unlimited_core = || {
        let r = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit in the child before exec.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &r) };
        Ok(())
    };
    // Control: a dumpable process does leave a core here.
    let control = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new("/bin/sh");
    c.args(["-c", "kill -ABRT $$"]).current_dir(control.path());
    // SAFETY: the closure only calls setrlimit.
    unsafe { c.pre_exec(unlimited_core) };
    let st = c.status().unwrap();
    if core_files(control.path()).is_empty() {
        let why = format!("no core from a plain shell ({st:?}): cores disabled here");
        return skip_or_fail("the_agent_never_dumps_core", &why);
    }
    let s = sim();
    s.valid_license(KEY);
    let n = Node::new(&s);
    let mut cmd = n.command(&["run"]);
    cmd.current_dir(n.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: as above.
    unsafe { cmd.pre_exec(unlimited_core) };
    let mut child = cmd.spawn().unwrap();
    assert!(s.wait_for("/api/license/validate", 1, Duration::from_secs(20)));
    signal(&child, libc::SIGABRT);
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGABRT), "{st:?}");
    assert!(
        core_files(n.dir.path()).is_empty(),
        "the agent dumped core: {:?}",
        core_files(n.dir.path())
    );
}

#[test]
fn a_key_file_readable_by_others_is_reported() {
    let s = sim();
    let n = Node::new(&s);
    std::fs::set_permissions(&n.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = n.run(&["status", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warnings = v["security"]["warnings"].to_string();
    assert!(warnings.contains("readable by group or others"), "{v}");
    let o = n.run(&["status"]);
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
    // The daemon says so in its log and in status.json at start.
    let mut child = n.daemon().spawn().unwrap();
    assert!(s.wait_for("/api/license/validate", 1, Duration::from_secs(20)));
    signal(&child, libc::SIGTERM);
    child.wait().unwrap();
    let log = std::fs::read_to_string(&n.log_file).unwrap();
    assert!(log.contains("readable by group or others"), "{log}");
    assert!(n.status()["security"]["warnings"]
        .to_string()
        .contains("chmod 600"));
    // Fixed: the warning goes.
    std::fs::set_permissions(&n.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = n.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !v["security"]["warnings"].to_string().contains("chmod"),
        "{v}"
    );
}

#[test]
fn a_key_echoed_by_the_server_never_reaches_status_json() {
    let s = sim();
    let n = Node::new(&s);
    let echo = |status: u16| {
        Fault::Status(
            status,
            serde_json::json!({"statusCode": status,
                "message": format!("Clé de licence invalide: {KEY} (key={})", KEY.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"))})
            .to_string(),
        )
    };
    s.push_fault("/api/license/validate", echo(404));
    let o = n.run(&["validate"]);
    assert_eq!(code(&o), 10, "{}", text(&o));
    let raw = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert!(raw.contains("Clé de licence invalide"), "{raw}");
    assert!(!raw.contains(KEY), "key in status.json: {raw}");
    assert!(
        !raw.contains("A1B2C3D4-E5F6%2B"),
        "encoded key in status.json: {raw}"
    );
    let started = Instant::now();
    // The same for an error the update check reports.
    s.push_fault("/update/check", echo(400));
    let _ = n.run(&["check-update"]);
    let raw = std::fs::read_to_string(n.state_dir.join("status.json")).unwrap();
    assert!(!raw.contains(KEY), "key in status.json: {raw}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
