//! Shared by the update tests: ZIP packages built with the `zip` writer, Ed25519
//! signing with ring, and a box (temp install root, state dir, config, services that
//! log what they are asked) driven through the real binary.

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One entry of a test package.
#[derive(Clone, Debug)]
pub enum E {
    File(String, Vec<u8>, u32),
    Deflated(String, Vec<u8>),
    Dir(String),
    Link(String, String),
    /// Raw external attributes (e.g. a device node).
    Raw(String, Vec<u8>, u32),
}

/// A regular file, mode 0644.
pub fn file(name: &str, data: &[u8]) -> E {
    E::File(name.into(), data.to_vec(), 0o644)
}

/// Builds a ZIP from entries.
pub fn zip(entries: &[E]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for e in entries {
        match e {
            E::File(n, d, m) => {
                w.start_file(n.as_str(), stored.unix_permissions(*m))
                    .unwrap();
                w.write_all(d).unwrap();
            }
            E::Deflated(n, d) => {
                w.start_file(
                    n.as_str(),
                    SimpleFileOptions::default()
                        .compression_method(CompressionMethod::Deflated)
                        .unix_permissions(0o644),
                )
                .unwrap();
                w.write_all(d).unwrap();
            }
            E::Dir(n) => w
                .add_directory(n.as_str(), stored.unix_permissions(0o755))
                .unwrap(),
            E::Link(n, t) => w.add_symlink(n.as_str(), t.as_str(), stored).unwrap(),
            E::Raw(n, d, attrs) => {
                w.start_file(n.as_str(), stored.external_attributes(*attrs))
                    .unwrap();
                w.write_all(d).unwrap();
            }
        }
    }
    w.finish().unwrap().into_inner()
}

/// A normal application package of `version`: VERSION, app files, an executable.
pub fn app(version: &str) -> Vec<E> {
    vec![
        E::Dir("bin/".into()),
        E::File("bin/run".into(), b"#!/bin/sh\nexit 0\n".to_vec(), 0o755),
        file("VERSION", format!("{version}\n").as_bytes()),
        // What the real backend requires at a package's root (docs/protocol.md).
        file("version.json", &full_version_json(version)),
        file("app/config.txt", format!("app {version}\n").as_bytes()),
        E::Deflated("app/data.txt".into(), version.repeat(5000).into_bytes()),
        E::Link("app/current-config".into(), "config.txt".into()),
    ]
}

/// `version.json` for `version`, as the real backend's upload requires it, of a full
/// installation (`kind: full`); no minimum node version, so that any test box may
/// install it.
pub fn full_version_json(version: &str) -> Vec<u8> {
    cybersensei_sim::version_json(version, "- tests", "0.0.0").into_bytes()
}

/// A fresh Ed25519 key pair and its public key in base64.
pub fn keypair() -> (Ed25519KeyPair, String) {
    use base64::Engine;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pk = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
    (kp, pk)
}

/// Lowercase hex SHA-256.
pub fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest listing every file (and link target) of `entries`.
pub fn manifest(version: &str, entries: &[E]) -> Vec<u8> {
    let mut files = serde_json::Map::new();
    for e in entries {
        match e {
            E::File(n, d, _) | E::Deflated(n, d) | E::Raw(n, d, _) => {
                files.insert(n.clone(), Value::from(sha256(d)));
            }
            E::Link(n, t) => {
                files.insert(n.clone(), Value::from(sha256(t.as_bytes())));
            }
            E::Dir(_) => {}
        }
    }
    serde_json::to_vec_pretty(&json!({"version": version, "files": files})).unwrap()
}

/// `entries` plus a manifest and its base64 signature by `kp`.
pub fn signed(version: &str, entries: &[E], kp: &Ed25519KeyPair) -> Vec<E> {
    use base64::Engine;
    let m = manifest(version, entries);
    let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&m).as_ref());
    let mut out = entries.to_vec();
    out.push(file("manifest.json", &m));
    out.push(file("manifest.sig", sig.as_bytes()));
    out
}

use crate::common;
pub use crate::common::range_start;

/// The agent binary under test (an ARM build under qemu when `board/test-arm.sh` says so).
pub fn agent() -> Command {
    common::agent_command()
}

/// A box: install root, state dir, config; services are shell one-liners that append
/// `<verb> <slot dir>` to `services.log`; health fails when the slot holds `unhealthy`.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub svc_log: PathBuf,
    pub cfg: Value,
}

impl Rig {
    /// A box whose backend is `url` (unused by `install`), with `ca` trusted if given.
    pub fn new(url: &str, ca: Option<&str>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("opt");
        let state = base.join("state");
        let svc_log = base.join("services.log");
        let ca_path = base.join("ca.pem");
        if let Some(pem) = ca {
            std::fs::write(&ca_path, pem).unwrap();
        }
        let log = svc_log.to_str().unwrap().to_string();
        let verb = |v: &str| {
            json!([
                "/bin/sh",
                "-c",
                format!("echo \"{v} $CYBERSENSEI_SLOT_DIR\" >> '{log}'")
            ])
        };
        let key_file = base.join("license.key");
        std::fs::write(&key_file, "TEST-KEY-1234\n").unwrap();
        let cfg = json!({
            "backend": {"url": url, "timeout": 5, "retry_attempts": 2, "retry_delay": 0,
                        "ca_file": if ca.is_some() { Value::from(ca_path.to_str().unwrap()) } else { Value::Null },
                        "allow_http": url.starts_with("http://")},
            "license": {"key_file": key_file.to_str().unwrap()},
            "telemetry": {"app_metrics_file": base.join("metrics.json").to_str().unwrap()},
            "install": {"root": root.to_str().unwrap()},
            "services": {"stop": [verb("stop")], "start": [verb("start")],
                         "health": [["/bin/sh", "-c", "test ! -e \"$CYBERSENSEI_SLOT_DIR/unhealthy\""]],
                         "health_timeout": 2},
            "state_dir": state.to_str().unwrap(),
            "log": {"file": base.join("agent.log").to_str().unwrap(), "level": "info"}
        });
        let config = base.join("agent.json");
        let r = Rig {
            dir,
            root,
            state,
            config,
            svc_log,
            cfg,
        };
        r.write_config();
        r
    }

    /// A box for `install` only (no backend).
    pub fn offline() -> Rig {
        Rig::new("https://127.0.0.1:9", None)
    }

    pub fn write_config(&self) {
        std::fs::write(&self.config, serde_json::to_vec_pretty(&self.cfg).unwrap()).unwrap();
    }

    /// Sets `section.key` and rewrites the config.
    pub fn set(&mut self, section: &str, key: &str, v: Value) {
        self.cfg[section][key] = v;
        self.write_config();
    }

    /// The binary with this box's config.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = agent();
        c.arg("-c").arg(&self.config).args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs with `CYBERSENSEI_TEST_CRASH_AT=point`.
    pub fn run_crashing(&self, args: &[&str], point: &str) -> Output {
        self.cmd(args)
            .env("CYBERSENSEI_TEST_CRASH_AT", point)
            .output()
            .unwrap()
    }

    /// Writes a package file in the box's directory; returns its path.
    pub fn package(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Installs a package through the real binary.
    pub fn install(&self, bytes: &[u8]) -> Output {
        let p = self.package("pkg.zip", bytes);
        self.run(&["install", p.to_str().unwrap()])
    }

    /// Where `current` points (None if absent).
    pub fn current(&self) -> Option<String> {
        std::fs::read_link(self.root.join("current"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    pub fn slot(&self, s: &str) -> PathBuf {
        self.root.join("slots").join(s)
    }

    pub fn status(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.state.join("status.json")).unwrap()).unwrap()
    }

    pub fn services_log(&self) -> String {
        std::fs::read_to_string(&self.svc_log).unwrap_or_default()
    }
}

/// Every path under `dir` (relative) with its content: file bytes, `-> target` for
/// links, nothing for directories.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(base, &path, out);
            } else {
                out.insert(rel, sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What `tree` should show for a slot holding exactly `entries`.
pub fn expected_tree(entries: &[E]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in entries {
        let (name, val) = match e {
            E::File(n, d, _) | E::Deflated(n, d) | E::Raw(n, d, _) => (n.clone(), sha256(d)),
            E::Link(n, t) => (n.clone(), format!("-> {t}")),
            E::Dir(n) => (n.clone(), String::new()),
        };
        let parts: Vec<&str> = name.trim_end_matches('/').split('/').collect();
        for i in 1..parts.len() {
            out.insert(format!("{}/", parts[..i].join("/")), String::new());
        }
        out.insert(name, val);
    }
    out
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// True when the process was killed by SIGKILL.
pub fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(9)
}

/// The restart: any locked command runs recovery first (as `run` does at boot).
pub fn restart(rig: &Rig) {
    let o = rig.run(&["validate"]);
    assert!(!killed(&o), "{}", text(&o));
}

/// `current` names a recorded slot whose tree is exactly one of the packages.
pub fn assert_complete(rig: &Rig, want: &[(&str, &[E])], ctx: &str) -> String {
    let cur = rig.current().unwrap_or_else(|| panic!("{ctx}: no current"));
    let slot = cur.strip_prefix("slots/").unwrap();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rig.root.join(format!("slots/{slot}.json")))
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
        tree(&rig.slot(slot)),
        expected_tree(entries),
        "{ctx}: slot {slot} damaged"
    );
    let st = rig.status();
    assert_eq!(st["version"], version.as_str(), "{ctx}: status disagrees");
    assert!(
        !rig.state.join("update/journal.json").exists(),
        "{ctx}: journal left"
    );
    version
}

/// Incompressible bytes (xorshift from `seed`): a package as big as its content.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The simulator over TLS, with `TEST-KEY-1234` (the rigs' key) valid; profile from
/// `CYBERSENSEI_SIM_PROFILE` like every simulator of the tests.
pub fn tls_sim() -> cybersensei_sim::Sim {
    let sim = cybersensei_sim::Sim::start(cybersensei_sim::SimOptions {
        tls: true,
        ..Default::default()
    })
    .unwrap();
    sim.valid_license("TEST-KEY-1234");
    sim
}

/// An executable (mode 0755): hooks, scripts.
pub fn exe(name: &str, body: &str) -> E {
    E::File(name.into(), body.as_bytes().to_vec(), 0o755)
}

/// `version.json` as the real backend writes it (pretty JSON), from `v`.
pub fn version_json(v: Value) -> E {
    file("version.json", &serde_json::to_vec_pretty(&v).unwrap())
}

/// A manifest v2 listing every file and link of `entries` with type, size and mode,
/// plus `kind` and `delete` when given.
pub fn manifest_v2(version: &str, kind: Option<&str>, entries: &[E], delete: &[&str]) -> Vec<u8> {
    let mut files = Vec::new();
    for e in entries {
        match e {
            E::File(n, d, m) | E::Raw(n, d, m) => files.push(json!({"path": n, "type": "file",
                "size": d.len(), "mode": format!("{:04o}", m & 0o7777), "sha256": sha256(d)})),
            E::Deflated(n, d) => files.push(json!({"path": n, "type": "file",
                "size": d.len(), "sha256": sha256(d)})),
            E::Link(n, t) => files.push(json!({"path": n, "type": "symlink", "target": t,
                "sha256": sha256(t.as_bytes())})),
            E::Dir(n) => {
                files.push(json!({"path": n.trim_end_matches('/'), "type": "dir", "mode": "0755"}))
            }
        }
    }
    let mut m = json!({"version": version, "files": files});
    if let Some(k) = kind {
        m["kind"] = json!(k);
    }
    if !delete.is_empty() {
        m["delete"] = json!(delete);
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// Restart as the init script does: `run` in the background; its start recovers the
/// journal before its license step: a boot validation, or (validations are counted by
/// the real backend) the reuse of the recent cached one, which it logs. Once either
/// happened the recovery is over. Then SIGTERM, which must end it with 0.
pub fn restart_run(rig: &Rig, sim: &cybersensei_sim::Sim) -> Result<(), String> {
    let before = sim.count("/api/license/validate");
    let log = rig.dir.path().join("agent.log");
    let log_before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let mut child = rig
        .cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn run: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let seen = loop {
        let reused = std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| t.get(log_before..).map(|new| new.contains("reused")))
            .unwrap_or(false);
        if reused || sim.count("/api/license/validate") > before {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("run did not stop on SIGTERM".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
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

/// `entries` without the one named `name` (to replace what `app()` carries).
pub fn without(mut entries: Vec<E>, name: &str) -> Vec<E> {
    entries.retain(|e| match e {
        E::File(n, ..) | E::Raw(n, ..) | E::Deflated(n, _) | E::Link(n, _) => n != name,
        _ => true,
    });
    entries
}
