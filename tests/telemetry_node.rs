//! The application half of telemetry as a box has it: the metrics file the application
//! may (not) write, `telemetry.app_metrics_command`, `telemetry.ai_probe_url`, and
//! where `status` says each field came from. Through the real binary where process
//! behaviour matters (a FIFO that would block, SIGTERM).

use crate::harness::{self, signal, Node, KEY};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A daemon child killed (and reaped) however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(node: &Node) -> Running {
    Running(
        node.command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fast_node(sim: &cybersensei_sim::Sim) -> Node {
    let mut node = Node::new(sim);
    node.set("telemetry", "interval", 1.into());
    node.set("updates", "check_interval", 1.into());
    node.set("schedule", "splay", false.into());
    node
}

fn mkfifo(p: &std::path::Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path we own; the result is checked.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Issue 23 item 5: a FIFO at `telemetry.app_metrics_file` (its directory is the
/// application's) blocked the daemon in open() while it held agent.lock: no telemetry,
/// no revalidation, no update check, and SIGTERM ignored. Now the file is opened
/// non-blocking without following links, refused as not regular, and read outside the
/// state lock: the samples go out with the system half and the daemon stops on SIGTERM.
#[test]
fn a_fifo_as_metrics_file_does_not_block_the_daemon() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let mut node = fast_node(&sim);
    let fifo = node.dir.path().join("metrics.fifo");
    mkfifo(&fifo);
    node.set(
        "telemetry",
        "app_metrics_file",
        fifo.to_str().unwrap().into(),
    );
    let mut d = spawn(&node);
    let went_on = wait_for(Duration::from_secs(20), || {
        sim.count("/telemetry") >= 2 && sim.count("/update/check") >= 2
    });
    let t = Instant::now();
    signal(&d.0, libc::SIGTERM);
    let code = wait_exit(&mut d.0, Duration::from_secs(5));
    assert!(
        went_on,
        "the daemon stopped working: {} telemetry posts, {} update checks",
        sim.count("/telemetry"),
        sim.count("/update/check")
    );
    assert_eq!(code, Some(0), "SIGTERM obeyed within 5 s");
    assert!(t.elapsed() < Duration::from_secs(5));
    let body = sim.requests_to("/telemetry")[0].json().unwrap();
    assert_eq!(body["activeUsers"], 0, "{body}");
    assert!(body["additionalData"]["memoryUsage"].is_number(), "{body}");
    let log = std::fs::read_to_string(&node.log_file).unwrap();
    assert!(log.contains("not a regular file"), "{log}");
}
