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

/// A throwaway PostgreSQL cluster (Debian's postgresql package, as board/ci-setup.sh
/// installs it) in a temp dir, listening on a Unix socket only; stopped on drop.
/// initdb refuses root: as root the cluster belongs to `nobody` (runuser).
struct Pg {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    sock: std::path::PathBuf,
    bin: std::path::PathBuf,
    as_root: bool,
}

impl Pg {
    fn bin_dir() -> Option<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
            .collect();
        dirs.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        dirs.pop()
    }

    /// `prog args` as the cluster's owner.
    fn cmd(&self, prog: &str, args: &[&str]) -> std::process::Command {
        let exe = self.bin.join(prog);
        let mut c = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        c.args(args).stdin(Stdio::null()).current_dir("/");
        c
    }

    fn start() -> Option<Pg> {
        let bin = Pg::bin_dir()?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (data, sock) = (dir.path().join("data"), dir.path().join("sock"));
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
            if as_root {
                let ok = std::process::Command::new("chown")
                    .args(["nobody"])
                    .arg(d)
                    .status()
                    .unwrap();
                assert!(ok.success(), "chown nobody {}", d.display());
            }
        }
        let pg = Pg {
            _dir: dir,
            data,
            sock,
            bin,
            as_root,
        };
        let d = pg.data.to_str().unwrap().to_string();
        let o = pg
            .cmd(
                "initdb",
                &[
                    "-D",
                    &d,
                    "-U",
                    "cybersensei",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let opts = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c timezone=UTC",
            pg.sock.display()
        );
        let log = format!("{}/log", pg.sock.display());
        let o = pg
            .cmd(
                "pg_ctl",
                &["-D", &d, "-o", &opts, "-l", &log, "-w", "-t", "30", "start"],
            )
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&o.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(pg)
    }

    /// Runs SQL as the superuser `cybersensei` in `db`.
    fn sql(&self, db: &str, sql: &str) {
        let o = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args(["-U", "cybersensei", "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let d = self.data.to_str().unwrap().to_string();
        let _ = self
            .cmd("pg_ctl", &["-D", &d, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn node_metrics_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("board/node-metrics.sh")
}

/// The node's tables with NODE.md §4's columns; 4 users (one disabled, one whose
/// `active` is null), results dated today (5) and yesterday (3).
fn node_database(pg: &Pg) {
    pg.sql("postgres", "CREATE DATABASE cybersensei_db");
    pg.sql(
        "cybersensei_db",
        "CREATE TABLE users (id bigserial PRIMARY KEY, name varchar(255), email varchar(255),
             role varchar(32), department varchar(255), created_at timestamp, active boolean);
         CREATE TABLE user_exercise_results (id bigserial PRIMARY KEY, user_id bigint,
             exercise_id bigint, score integer, success boolean, duration integer,
             details_json text, \"date\" timestamp);
         INSERT INTO users (name, email, role, department, created_at, active) VALUES
             ('a', 'a@x', 'EMPLOYEE', 'IT', now(), true),
             ('b', 'b@x', 'MANAGER', 'IT', now(), true),
             ('c', 'c@x', 'EMPLOYEE', 'HR', now(), false),
             ('d', 'd@x', 'ADMIN', 'HR', now(), null);
         INSERT INTO user_exercise_results (user_id, exercise_id, score, success, duration, details_json, \"date\")
         SELECT 1 + k % 2, k, 80, k % 3 <> 0, 60, '{}', current_date + make_interval(secs => k)
             FROM generate_series(1, 5) k
         UNION ALL
         SELECT 2, k, 50, true, 60, '{}', current_date - make_interval(secs => 3600 * k)
             FROM generate_series(1, 3) k;",
    );
}

/// Issue 25 item 1: board/node-metrics.sh against a real PostgreSQL, then the agent
/// running it as `telemetry.app_metrics_command` (through the real binary): the
/// sample carries the database's counts and status.json says they came from the
/// command. Then a database that is gone: the failure is logged, the sample goes out
/// with the system half and zeros, and status says why.
#[test]
fn node_metrics_from_postgresql_through_the_agent() {
    let Some(pg) = Pg::start() else {
        harness::skip_or_fail(
            "node_metrics_from_postgresql_through_the_agent",
            "no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)",
        );
        return;
    };
    node_database(&pg);
    let sock = pg.sock.to_str().unwrap().to_string();
    let script = node_metrics_script();
    let o = std::process::Command::new(&script)
        .args(["--host", &sock])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"activeUsers": 3, "exercisesCompletedToday": 5})
    );

    let sim = harness::sim();
    sim.valid_license(KEY);
    let mut node = Node::new(&sim);
    node.set(
        "telemetry",
        "app_metrics_command",
        serde_json::json!([script.to_str().unwrap(), "--host", sock]),
    );
    assert_eq!(harness::code(&node.run(&["validate"])), 0);
    let o = node.run(&["telemetry", "--once"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let body = sim.requests_to("/telemetry")[0].json().unwrap();
    assert_eq!(body["activeUsers"], 3, "{body}");
    assert_eq!(body["exercisesCompletedToday"], 5, "{body}");
    let st = node.status();
    assert_eq!(st["telemetry"]["sources"]["activeUsers"], "command", "{st}");
    assert_eq!(st["telemetry"]["sources"]["cpuUsage"], "measured", "{st}");
    let shown = harness::text(&node.run(&["status"]));
    assert!(shown.contains("activeUsers command"), "{shown}");

    // The database is gone: logged, zeros and the system half still sent.
    drop(pg);
    let o = node.run(&["telemetry", "--once"]);
    assert_eq!(harness::code(&o), 0, "{}", harness::text(&o));
    let body = sim.requests_to("/telemetry")[1].json().unwrap();
    assert_eq!(body["activeUsers"], 0, "{body}");
    assert!(body["additionalData"]["memoryUsage"].is_number(), "{body}");
    let st = node.status();
    let why = st["telemetry"]["sources"]["activeUsers"].as_str().unwrap();
    assert!(
        why.starts_with("0, command failed: exit status: 2"),
        "{why}"
    );
    let log = std::fs::read_to_string(&node.log_file).unwrap();
    assert!(log.contains("app_metrics_command"), "{log}");
}

/// A stand-in AI service on loopback: every `GET` answered `status` after `delay`;
/// stops with the value.
struct Ai {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Ai {
    fn start(delay: Duration, status: u16) -> Ai {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s2, h2) = (stop.clone(), hits.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        h2.fetch_add(1, Ordering::SeqCst);
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = c.read(&mut buf);
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let body = "{\"status\":\"healthy\"}";
                            let _ = write!(
                                c,
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ai { port, stop, hits }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }
}

impl Drop for Ai {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A port nothing listens on (bound, then released).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/health")
}

/// Issue 25 item 2, through the real binary (`telemetry --once`): a healthy AI
/// service's latency is measured (not the node's constant 250 ms); a slow one (past
/// the 5 s deadline), a dead one and one answering 500 give no `aiLatency` at all,
/// and the sample still goes out, within the deadline.
#[test]
fn ai_latency_is_timed_and_left_out_without_an_answer() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let mut node = Node::new(&sim);
    // The application's file says 250: the probe, when set, is the only source.
    let metrics = node.dir.path().join("metrics.json");
    std::fs::write(
        &metrics,
        r#"{"activeUsers": 2, "exercisesCompletedToday": 1, "aiLatency": 250}"#,
    )
    .unwrap();
    assert_eq!(harness::code(&node.run(&["validate"])), 0);
    let healthy = Ai::start(Duration::from_millis(120), 200);
    let slow = Ai::start(Duration::from_secs(8), 200);
    let failing = Ai::start(Duration::ZERO, 500);
    // (name, url, the latency range expected in ms or none at all)
    type Case<'a> = (&'a str, String, Option<(f64, f64)>);
    let cases: [Case; 4] = [
        ("healthy", healthy.url(), Some((120.0, 2000.0))),
        ("slow", slow.url(), None),
        ("dead", dead_url(), None),
        ("500", failing.url(), None),
    ];
    for (i, (name, url, want)) in cases.iter().enumerate() {
        node.set("telemetry", "ai_probe_url", url.as_str().into());
        let t = Instant::now();
        let o = node.run(&["telemetry", "--once"]);
        let took = t.elapsed();
        assert_eq!(harness::code(&o), 0, "{name}: {}", harness::text(&o));
        assert!(took < Duration::from_secs(7), "{name}: took {took:?}");
        let body = sim.requests_to("/telemetry")[i].json().unwrap();
        assert_eq!(body["activeUsers"], 2, "{name}: {body}");
        let st = node.status();
        let src = st["telemetry"]["sources"]["aiLatency"]
            .as_str()
            .unwrap()
            .to_string();
        match want {
            Some((lo, hi)) => {
                let ms = body["aiLatency"].as_f64().unwrap_or(-1.0);
                assert!(ms >= *lo && ms < *hi, "{name}: aiLatency {ms} ms: {body}");
                assert_eq!(src, "probe", "{name}");
            }
            None => {
                assert!(body.get("aiLatency").is_none(), "{name}: {body}");
                assert!(src.starts_with("absent, probe"), "{name}: {src}");
            }
        }
    }
    assert!(healthy.hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let log = std::fs::read_to_string(&node.log_file).unwrap();
    assert!(log.contains("no answer within 5 s"), "{log}");
    assert!(log.contains("answered 500"), "{log}");
}
