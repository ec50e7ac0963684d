//! Shared test harness: a node (temp dirs + config) driven through the real binary
//! against the simulator.

pub mod proxy;

use cybersensei_sim::{Sim, SimOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A key with the characters that break naive URL building.
pub const KEY: &str = "A1B2C3D4-E5F6+G7H8/I9J0=K1L2";

pub use crate::common::{agent_command, range_start};

/// One simulated box: its config, state dir, install root and key file.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub key_file: PathBuf,
    pub log_file: PathBuf,
    pub cfg: Value,
}

/// A TLS simulator with defaults; its profile (guide or central) comes from
/// `CYBERSENSEI_SIM_PROFILE`, so `scripts/test.sh` runs these tests under both.
pub fn sim() -> Sim {
    Sim::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .expect("simulator starts")
}

impl Node {
    /// A node pointed at `sim` (TLS, its CA as `backend.ca_file`), fast retries.
    pub fn new(sim: &Sim) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let ca = base.join("ca.pem");
        if let Some(pem) = sim.ca_pem() {
            std::fs::write(&ca, pem).unwrap();
        }
        let key_file = base.join("etc/license.key");
        std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
        std::fs::write(&key_file, format!("  {KEY}\n")).unwrap();
        let state_dir = base.join("state");
        let root = base.join("opt");
        let log_file = base.join("agent.log");
        let url = sim.url();
        let cfg = json!({
            "backend": {"url": url, "timeout": 5, "retry_attempts": 3, "retry_delay": 0,
                        "ca_file": if sim.ca_pem().is_some() { Value::from(ca.to_str().unwrap()) } else { Value::Null },
                        "allow_http": url.starts_with("http://")},
            "license": {"key_file": key_file.to_str().unwrap()},
            "telemetry": {"interval": 300, "app_metrics_file": base.join("metrics.json").to_str().unwrap()},
            "install": {"root": root.to_str().unwrap()},
            "state_dir": state_dir.to_str().unwrap(),
            "log": {"file": log_file.to_str().unwrap(), "level": "info"}
        });
        let config = base.join("agent.json");
        let n = Node {
            dir,
            config,
            state_dir,
            root,
            key_file,
            log_file,
            cfg,
        };
        n.write_config();
        n
    }

    /// Rewrites the config file from `self.cfg`.
    pub fn write_config(&self) {
        std::fs::write(&self.config, serde_json::to_vec_pretty(&self.cfg).unwrap()).unwrap();
    }

    /// Sets `section.key` and rewrites the config.
    pub fn set(&mut self, section: &str, key: &str, v: Value) {
        self.cfg[section][key] = v;
        self.write_config();
    }

    /// A command for the real binary with this node's config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = agent_command();
        c.arg("-c").arg(&self.config).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("agent runs")
    }

    /// status.json as JSON.
    pub fn status(&self) -> Value {
        let data = std::fs::read(self.state_dir.join("status.json")).expect("status.json exists");
        serde_json::from_slice(&data).expect("status.json parses")
    }
}

/// Exit code, stdout and stderr of an output, for assertions and messages.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, recursively (for secret scans).
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
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

/// libfaketime's preload library, or None when it is not installed (CI installs it,
/// and there a missing one fails the test). Preloaded directly rather than through
/// the `faketime` wrapper, so that signals reach the agent itself.
pub fn faketime() -> Option<PathBuf> {
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
