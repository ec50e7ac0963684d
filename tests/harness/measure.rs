//! Running the agent while sampling its peak memory (the hostile-input tests).

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How a measured run ended.
pub(crate) struct Run {
    /// Exit code (-1 when a signal ended it).
    pub code: i32,
    /// stdout and stderr, interleaved as written.
    pub out: String,
    pub took: Duration,
    /// Peak resident set (VmHWM), KiB.
    pub rss_kib: i64,
}

/// Runs `cmd` to completion with its output in a file in `dir`, sampling the child's
/// high-water RSS (VmHWM of its own address space) every 2 ms until it exits.
/// (wait4's ru_maxrss is no use here: Linux carries the spawning test process's
/// RSS across exec into it.) VmHWM only grows, so an unbounded read is caught while
/// it grows, whenever the process ends. A run longer than 120 s fails the test.
pub(crate) fn run_measured(mut cmd: Command, dir: &Path) -> Run {
    let out_path = dir.join("run.out");
    let f = File::create(&out_path).unwrap();
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let t = Instant::now();
    let mut child = cmd.spawn().expect("agent starts");
    let status_file = format!("/proc/{}/status", child.id());
    let mut rss_kib = 0;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            rss_kib = rss_kib.max(hwm);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Run {
        code: status.code().unwrap_or(-1),
        out: std::fs::read_to_string(&out_path).unwrap_or_default(),
        took: t.elapsed(),
        rss_kib,
    }
}

/// True when the agent runs under an emulator (the ARM runs): the RSS measured is the
/// emulator's, so not checked.
pub(crate) fn under_emulator() -> bool {
    std::env::var("CYBERSENSEI_AGENT_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// The `VmHWM:` of a /proc/<pid>/status text, KiB.
fn vm_hwm_kib(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
