//! The test fixture: a box (temp dirs + config) driven through the real binary against
//! the simulator, with what the tests read back from it.
//!
//! [`Node::new`] is a box as the license, telemetry and daemon tests want it;
//! [`Node::updates`] adds service commands that log what they are asked (the update
//! tests). Packages are built by [`package`], the agent started by [`agent`].

pub(crate) mod agent;
pub(crate) mod in_process;
pub(crate) mod measure;
pub(crate) mod package;
pub(crate) mod proxy;

pub(crate) use agent::agent_command;

use cybersensei_sim::{Sim, SimOptions};
use package::{expected_tree, tree, E};
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A key with the characters that break naive URL building ([`Node::new`]'s).
pub(crate) const KEY: &str = "A1B2C3D4-E5F6+G7H8/I9J0=K1L2";

/// The key of the boxes of [`Node::updates`] (valid on [`tls_sim`]).
pub(crate) const UPDATE_KEY: &str = "TEST-KEY-1234";

/// One simulated box: its config, state dir, install root, key file and logs.
pub(crate) struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub key_file: PathBuf,
    pub log_file: PathBuf,
    /// Where the services of [`Node::updates`] append `<verb> <slot dir>`.
    pub svc_log: PathBuf,
    pub cfg: Value,
}

/// A TLS simulator with defaults; its profile (guide or central) comes from
/// `CYBERSENSEI_SIM_PROFILE`, so `scripts/test.sh` runs these tests under both.
pub(crate) fn sim() -> Sim {
    Sim::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .expect("simulator starts")
}

/// [`sim`] with [`UPDATE_KEY`] (the update boxes' key) valid.
pub(crate) fn tls_sim() -> Sim {
    let sim = sim();
    sim.valid_license(UPDATE_KEY);
    sim
}

impl Node {
    /// A box pointed at `sim` (TLS, its CA as `backend.ca_file`): key [`KEY`] (with
    /// spaces around it in the file), 3 attempts without delay, telemetry every 300 s.
    pub(crate) fn new(sim: &Sim) -> Node {
        let mut n = Node::bare(
            &sim.url(),
            sim.ca_pem().as_deref(),
            "etc/license.key",
            &format!("  {KEY}\n"),
        );
        n.cfg["backend"]["retry_attempts"] = json!(3);
        n.cfg["telemetry"]["interval"] = json!(300);
        n.write_config();
        n
    }

    /// A box for the update tests pointed at `sim`: see [`Node::updates_at`].
    pub(crate) fn updates(sim: &Sim) -> Node {
        Node::updates_at(&sim.url(), sim.ca_pem().as_deref())
    }

    /// A box for the update tests whose backend is `url`, with `ca` trusted if given:
    /// key [`UPDATE_KEY`], 2 attempts without delay; its services are shell one-liners
    /// that append `<verb> <slot dir>` to `svc_log`, and its health check fails when
    /// the slot holds a file `unhealthy`.
    pub(crate) fn updates_at(url: &str, ca: Option<&str>) -> Node {
        let mut n = Node::bare(url, ca, "license.key", &format!("{UPDATE_KEY}\n"));
        let log = n.svc_log.to_str().unwrap().to_string();
        let verb = |v: &str| {
            json!([
                "/bin/sh",
                "-c",
                format!("echo \"{v} $CYBERSENSEI_SLOT_DIR\" >> '{log}'")
            ])
        };
        n.cfg["backend"]["retry_attempts"] = json!(2);
        n.cfg["services"] = json!({"stop": [verb("stop")], "start": [verb("start")],
            "health": [["/bin/sh", "-c", "test ! -e \"$CYBERSENSEI_SLOT_DIR/unhealthy\""]],
            "health_timeout": 2});
        n.write_config();
        n
    }

    /// An update box for `install` only (no backend).
    pub(crate) fn offline() -> Node {
        Node::updates_at("https://127.0.0.1:9", None)
    }

    /// What every box has: the directories, the key file, the backend and log.
    fn bare(url: &str, ca: Option<&str>, key_file: &str, key_text: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let ca_path = base.join("ca.pem");
        if let Some(pem) = ca {
            std::fs::write(&ca_path, pem).unwrap();
        }
        let key_file = base.join(key_file);
        std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
        std::fs::write(&key_file, key_text).unwrap();
        let state_dir = base.join("state");
        let root = base.join("opt");
        let log_file = base.join("agent.log");
        let cfg = json!({
            "backend": {"url": url, "timeout": 5, "retry_delay": 0,
                        "ca_file": if ca.is_some() { Value::from(ca_path.to_str().unwrap()) } else { Value::Null },
                        "allow_http": url.starts_with("http://")},
            "license": {"key_file": key_file.to_str().unwrap()},
            "telemetry": {"app_metrics_file": base.join("metrics.json").to_str().unwrap()},
            "install": {"root": root.to_str().unwrap()},
            "state_dir": state_dir.to_str().unwrap(),
            "log": {"file": log_file.to_str().unwrap(), "level": "info"}
        });
        Node {
            config: base.join("agent.json"),
            svc_log: base.join("services.log"),
            dir,
            state_dir,
            root,
            key_file,
            log_file,
            cfg,
        }
    }

    /// Rewrites the config file from `self.cfg`.
    pub(crate) fn write_config(&self) {
        std::fs::write(&self.config, serde_json::to_vec_pretty(&self.cfg).unwrap()).unwrap();
    }

    /// Sets `section.key` and rewrites the config.
    pub(crate) fn set(&mut self, section: &str, key: &str, v: Value) {
        self.cfg[section][key] = v;
        self.write_config();
    }

    /// A command for the real binary with this box's config.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = agent_command();
        c.arg("-c").arg(&self.config).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// `run` (the daemon) with its output discarded, ready to spawn.
    pub(crate) fn daemon(&self) -> Command {
        let mut c = self.command(&["run"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    /// Runs the binary to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("agent runs")
    }

    /// Runs with `CYBERSENSEI_TEST_CRASH_AT=point`.
    pub(crate) fn run_crashing(&self, args: &[&str], point: &str) -> Output {
        self.command(args)
            .env("CYBERSENSEI_TEST_CRASH_AT", point)
            .output()
            .expect("agent runs")
    }

    /// status.json as JSON.
    pub(crate) fn status(&self) -> Value {
        let data = std::fs::read(self.state_dir.join("status.json")).expect("status.json exists");
        serde_json::from_slice(&data).expect("status.json parses")
    }

    /// Writes a package file in the box's directory; returns its path.
    pub(crate) fn package(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Installs a package through the real binary.
    pub(crate) fn install(&self, bytes: &[u8]) -> Output {
        let p = self.package("pkg.zip", bytes);
        self.run(&["install", p.to_str().unwrap()])
    }

    /// Where `current` points (None if absent).
    pub(crate) fn current(&self) -> Option<String> {
        std::fs::read_link(self.root.join("current"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The directory of slot `s` (`a` or `b`).
    pub(crate) fn slot(&self, s: &str) -> PathBuf {
        self.root.join("slots").join(s)
    }

    /// Every file of the box's directory outside install.root and state_dir (see
    /// `package::tree`), but for the agent's own log (it warns there about unsigned
    /// installs) and the package [`Node::install`] writes: what an install must not
    /// touch.
    pub(crate) fn files_outside(&self) -> BTreeMap<String, String> {
        tree(self.dir.path())
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("opt/")
                    && !k.starts_with("state/")
                    && k != "pkg.zip"
                    && k != "agent.log"
            })
            .collect()
    }

    /// What the services were asked so far (empty when never).
    pub(crate) fn services_log(&self) -> String {
        std::fs::read_to_string(&self.svc_log).unwrap_or_default()
    }
}

/// The exit code of an output (-1 when a signal ended it).
pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// stdout + stderr as text, for assertions and messages.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Sends `sig` to a child of this test (still running or not yet reaped).
pub(crate) fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of our own child, which cannot have been reused
    // before we reap it.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// `f` over `items` on `workers` threads, results in the items' order: for matrices
/// whose points each run their own simulator and box.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                done.lock().unwrap().insert(i, r);
            });
        }
    });
    done.into_inner().unwrap().into_values().collect()
}

/// True when the process was killed by SIGKILL.
pub(crate) fn killed(o: &Output) -> bool {
    o.status.signal() == Some(libc::SIGKILL)
}

/// The N of a `Range: bytes=N-` header the simulator recorded.
pub(crate) fn range_start(h: &Option<String>) -> Option<u64> {
    h.as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Every file under `dir`, recursively (for secret scans).
pub(crate) fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(all_files(&p));
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// A test that cannot run here: fails under `CI=true` (CI has what it needs), else
/// says SKIPPED with the reason (the caller then returns).
pub(crate) fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} cannot run under CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The JSON of file `p`, or why not.
pub(crate) fn read_json(p: &Path) -> Result<Value, String> {
    let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
}

/// The permission bits of `p` (not following a link).
pub(crate) fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// libfaketime's preload library, or None when it is not installed (CI installs it,
/// and there a missing one fails the test). Preloaded directly rather than through
/// the `faketime` wrapper, so that signals reach the agent itself.
pub(crate) fn faketime() -> Option<PathBuf> {
    if std::env::var_os("CYBERSENSEI_AGENT_RUNNER").is_some() {
        // An emulated agent (qemu-user): the preload would fake the emulator's clock
        // calls, not the guest's.
        eprintln!("SKIPPED: libfaketime does not reach an agent run under an emulator");
        return None;
    }
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        let p = Path::new(dir).join("faketime/libfaketime.so.1");
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok() {
        panic!("libfaketime is not installed (board/ci-setup.sh installs it)");
    }
    eprintln!("SKIPPED: libfaketime not installed (apt install faketime)");
    None
}

/// Installs `1.0.0` (`package::app`) into slot a through the binary, signed by `key`'s
/// pair when given (its public key then configured), and asserts it worked.
pub(crate) fn install_v1(node: &mut Node, key: Option<(&Ed25519KeyPair, &str)>, ctx: &str) {
    let v1 = package::app("1.0.0");
    let o = match key {
        Some((kp, pk)) => {
            node.set("updates", "public_key", json!(pk));
            node.install(&package::zip(&package::signed("1.0.0", &v1, kp)))
        }
        None => node.install(&package::zip(&v1)),
    };
    assert_eq!(code(&o), 0, "{ctx}: v1: {}", text(&o));
}

/// The restart: any locked command runs recovery first (as `run` does at boot).
pub(crate) fn restart(node: &Node) {
    let o = node.run(&["validate"]);
    assert!(!killed(&o), "{}", text(&o));
}

/// `current` names a recorded slot whose tree is exactly one of the packages.
pub(crate) fn assert_complete(node: &Node, want: &[(&str, &[E])], ctx: &str) -> String {
    let cur = node
        .current()
        .unwrap_or_else(|| panic!("{ctx}: no current"));
    let slot = cur.strip_prefix("slots/").unwrap();
    let rec: Value = serde_json::from_slice(
        &std::fs::read(node.root.join(format!("slots/{slot}.json")))
            .unwrap_or_else(|_| panic!("{ctx}: slot {slot} has no record")),
    )
    .unwrap();
    let version = rec["version"].as_str().unwrap().to_string();
    let entries = want
        .iter()
        .find(|(v, _)| *v == version)
        .unwrap_or_else(|| panic!("{ctx}: unexpected version {version}"))
        .1;
    assert_eq!(
        tree(&node.slot(slot)),
        expected_tree(entries),
        "{ctx}: slot {slot} damaged"
    );
    let st = node.status();
    assert_eq!(st["version"], version.as_str(), "{ctx}: status disagrees");
    assert!(
        !node.state_dir.join("update/journal.json").exists(),
        "{ctx}: journal left"
    );
    version
}

/// Restart as the init script does: `run` in the background; its start recovers the
/// journal before its license step: a boot validation, or (validations are counted by
/// the real backend) the reuse of the recent cached one, which it logs. Once either
/// happened the recovery is over. Then SIGTERM, which must end it with 0.
pub(crate) fn restart_run(node: &Node, sim: &Sim) -> Result<(), String> {
    let before = sim.count("/api/license/validate");
    let log = &node.log_file;
    let log_before = std::fs::read_to_string(log).unwrap_or_default().len();
    let mut child = node
        .daemon()
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn run: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let reused = std::fs::read_to_string(log)
            .ok()
            .and_then(|t| t.get(log_before..).map(|new| new.contains("reused")))
            .unwrap_or(false);
        if reused || sim.count("/api/license/validate") > before {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    signal(&child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("run did not stop on SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    if !seen {
        return Err(format!("run never reached its license step: {err}"));
    }
    if status.code() != Some(0) {
        return Err(format!("run exited {status}: {err}"));
    }
    Ok(())
}
