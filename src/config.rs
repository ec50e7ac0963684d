//! The configuration file: defaults, validation, and errors that name the field.
//!
//! Parsed by hand from a `serde_json::Value` rather than derived, so that every
//! error can say `backend.timeout: expected a number of seconds, got "abc"` and
//! unknown keys are refused by name.

use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/cybersensei/agent.json";
/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// `backend` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backend {
    pub url: String,
    pub timeout: u64,
    pub retry_attempts: u32,
    pub retry_delay: u64,
    pub ca_file: Option<PathBuf>,
    pub allow_http: bool,
    pub proxy: Option<String>,
}

/// `license` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct License {
    pub key_file: PathBuf,
    pub revalidate_interval: u64,
    pub grace_period: u64,
    pub expiry_warning_days: u64,
}

/// `telemetry` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Telemetry {
    pub interval: u64,
    pub enabled: bool,
    pub app_metrics_file: PathBuf,
    pub queue_max: u32,
}

/// `updates` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Updates {
    pub check_interval: u64,
    pub auto_download: bool,
    pub auto_install: bool,
    pub public_key: Option<String>,
    pub max_package_size: u64,
    pub max_unpacked_size: u64,
    /// Most entries a package may hold (zip-bomb guard).
    pub max_entries: u64,
    /// Boots in an uncommitted slot before the agent rolls back by itself.
    pub max_boot_attempts: u32,
    /// Local-time window `HH:MM-HH:MM` for automatic installs (None = any time).
    pub install_window: Option<String>,
    /// A package marked `securityUpdate` installs automatically outside the window.
    pub security_outside_window: bool,
    /// Seconds a package's install hook may run before it is killed (and fails).
    pub hook_timeout: u64,
}

/// `install` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Install {
    pub root: PathBuf,
}

/// `services` section: argv lists run without a shell.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Services {
    pub stop: Vec<Vec<String>>,
    pub start: Vec<Vec<String>>,
    pub health: Vec<Vec<String>>,
    pub health_timeout: u64,
}

/// `log` section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Log {
    pub file: Option<PathBuf>,
    pub level: String,
}

/// `schedule` section (ours): how the daemon spreads its requests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    /// Spread the first telemetry and update check over their interval.
    pub splay: bool,
    /// Random jitter added to each interval, in percent of it (0 to 50).
    pub jitter_percent: u32,
}

/// The whole, validated configuration.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Config {
    pub backend: Backend,
    pub license: License,
    pub telemetry: Telemetry,
    pub updates: Updates,
    pub install: Install,
    pub services: Services,
    pub schedule: Schedule,
    pub state_dir: PathBuf,
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend {
                url: "https://central.cybersensei.com".into(),
                timeout: 30,
                retry_attempts: 3,
                retry_delay: 5,
                ca_file: None,
                allow_http: false,
                proxy: None,
            },
            license: License {
                key_file: "/etc/cybersensei/license.key".into(),
                revalidate_interval: 86400,
                grace_period: 259200,
                expiry_warning_days: 30,
            },
            telemetry: Telemetry {
                interval: 300,
                enabled: true,
                app_metrics_file: "/run/cybersensei/metrics.json".into(),
                queue_max: 288,
            },
            updates: Updates {
                check_interval: 3600,
                auto_download: false,
                auto_install: false,
                public_key: None,
                max_package_size: 1 << 30,
                max_unpacked_size: 4 << 30,
                max_entries: 100_000,
                max_boot_attempts: 3,
                install_window: None,
                security_outside_window: false,
                hook_timeout: 300,
            },
            install: Install {
                root: "/opt/cybersensei".into(),
            },
            services: Services {
                stop: vec![],
                start: vec![],
                health: vec![],
                health_timeout: 120,
            },
            schedule: Schedule {
                splay: true,
                jitter_percent: 10,
            },
            state_dir: "/var/lib/cybersensei-agent".into(),
            log: Log {
                file: None,
                level: "info".into(),
            },
        }
    }
}

/// Where the config comes from: `-c`, then `$CYBERSENSEI_AGENT_CONFIG`, then the default.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("CYBERSENSEI_AGENT_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

impl Config {
    /// Reads and validates the config file.
    pub fn load(path: &Path) -> Result<Config> {
        let data = crate::fsutil::read_bounded(path, MAX_CONFIG_BYTES)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let text = std::str::from_utf8(&data)
            .map_err(|_| Error::Config(format!("{}: not UTF-8 text", path.display())))?;
        Config::parse(text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let root: Value = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        let mut c = Config::default();
        let obj = as_object(&root, "")?;
        check_keys(
            obj,
            "",
            &[
                "backend",
                "license",
                "telemetry",
                "updates",
                "install",
                "services",
                "schedule",
                "state_dir",
                "log",
            ],
        )?;
        if let Some(v) = obj.get("backend") {
            let o = as_object(v, "backend")?;
            check_keys(
                o,
                "backend",
                &[
                    "url",
                    "timeout",
                    "retry_attempts",
                    "retry_delay",
                    "ca_file",
                    "allow_http",
                    "proxy",
                ],
            )?;
            let b = &mut c.backend;
            set_string(o, "backend", "url", &mut b.url)?;
            set_u64(o, "backend", "timeout", &mut b.timeout, 1, 3600, true)?;
            let mut r = b.retry_attempts as u64;
            set_u64(o, "backend", "retry_attempts", &mut r, 0, 20, false)?;
            b.retry_attempts = r as u32;
            set_u64(
                o,
                "backend",
                "retry_delay",
                &mut b.retry_delay,
                0,
                3600,
                true,
            )?;
            set_opt_path(o, "backend", "ca_file", &mut b.ca_file)?;
            set_bool(o, "backend", "allow_http", &mut b.allow_http)?;
            set_opt_string(o, "backend", "proxy", &mut b.proxy)?;
        }
        if let Some(v) = obj.get("license") {
            let o = as_object(v, "license")?;
            check_keys(
                o,
                "license",
                &[
                    "key_file",
                    "revalidate_interval",
                    "grace_period",
                    "expiry_warning_days",
                ],
            )?;
            let l = &mut c.license;
            set_path(o, "license", "key_file", &mut l.key_file)?;
            set_u64(
                o,
                "license",
                "revalidate_interval",
                &mut l.revalidate_interval,
                60,
                365 * 86400,
                true,
            )?;
            set_u64(
                o,
                "license",
                "grace_period",
                &mut l.grace_period,
                0,
                365 * 86400,
                true,
            )?;
            set_u64(
                o,
                "license",
                "expiry_warning_days",
                &mut l.expiry_warning_days,
                0,
                3650,
                false,
            )?;
        }
        if let Some(v) = obj.get("telemetry") {
            let o = as_object(v, "telemetry")?;
            check_keys(
                o,
                "telemetry",
                &["interval", "enabled", "app_metrics_file", "queue_max"],
            )?;
            let t = &mut c.telemetry;
            set_u64(
                o,
                "telemetry",
                "interval",
                &mut t.interval,
                1,
                7 * 86400,
                true,
            )?;
            set_bool(o, "telemetry", "enabled", &mut t.enabled)?;
            set_path(o, "telemetry", "app_metrics_file", &mut t.app_metrics_file)?;
            let mut q = t.queue_max as u64;
            set_u64(o, "telemetry", "queue_max", &mut q, 0, 100_000, false)?;
            t.queue_max = q as u32;
        }
        if let Some(v) = obj.get("updates") {
            let o = as_object(v, "updates")?;
            check_keys(
                o,
                "updates",
                &[
                    "check_interval",
                    "auto_download",
                    "auto_install",
                    "public_key",
                    "max_package_size",
                    "max_unpacked_size",
                    "max_entries",
                    "max_boot_attempts",
                    "install_window",
                    "security_outside_window",
                    "hook_timeout",
                ],
            )?;
            let u = &mut c.updates;
            set_u64(
                o,
                "updates",
                "check_interval",
                &mut u.check_interval,
                1,
                30 * 86400,
                true,
            )?;
            set_bool(o, "updates", "auto_download", &mut u.auto_download)?;
            set_bool(o, "updates", "auto_install", &mut u.auto_install)?;
            set_opt_string(o, "updates", "public_key", &mut u.public_key)?;
            set_u64(
                o,
                "updates",
                "max_package_size",
                &mut u.max_package_size,
                1,
                u64::MAX,
                false,
            )?;
            set_u64(
                o,
                "updates",
                "max_unpacked_size",
                &mut u.max_unpacked_size,
                1,
                u64::MAX,
                false,
            )?;
            set_u64(
                o,
                "updates",
                "max_entries",
                &mut u.max_entries,
                1,
                10_000_000,
                false,
            )?;
            let mut m = u.max_boot_attempts as u64;
            set_u64(o, "updates", "max_boot_attempts", &mut m, 1, 100, false)?;
            u.max_boot_attempts = m as u32;
            set_opt_string(o, "updates", "install_window", &mut u.install_window)?;
            if let Some(w) = &u.install_window {
                crate::update::window::Window::parse(w)
                    .map_err(|e| Error::Config(format!("updates.install_window: {e}")))?;
            }
            set_bool(
                o,
                "updates",
                "security_outside_window",
                &mut u.security_outside_window,
            )?;
            set_u64(
                o,
                "updates",
                "hook_timeout",
                &mut u.hook_timeout,
                1,
                86400,
                false,
            )?;
        }
        if let Some(v) = obj.get("install") {
            let o = as_object(v, "install")?;
            check_keys(o, "install", &["root"])?;
            set_path(o, "install", "root", &mut c.install.root)?;
        }
        if let Some(v) = obj.get("services") {
            let o = as_object(v, "services")?;
            check_keys(
                o,
                "services",
                &["stop", "start", "health", "health_timeout"],
            )?;
            let s = &mut c.services;
            set_commands(o, "services", "stop", &mut s.stop)?;
            set_commands(o, "services", "start", &mut s.start)?;
            set_commands(o, "services", "health", &mut s.health)?;
            set_u64(
                o,
                "services",
                "health_timeout",
                &mut s.health_timeout,
                1,
                3600,
                true,
            )?;
        }
        if let Some(v) = obj.get("schedule") {
            let o = as_object(v, "schedule")?;
            check_keys(o, "schedule", &["splay", "jitter_percent"])?;
            set_bool(o, "schedule", "splay", &mut c.schedule.splay)?;
            let mut j = c.schedule.jitter_percent as u64;
            set_u64(o, "schedule", "jitter_percent", &mut j, 0, 50, false)?;
            c.schedule.jitter_percent = j as u32;
        }
        set_path(obj, "", "state_dir", &mut c.state_dir)?;
        if let Some(v) = obj.get("log") {
            let o = as_object(v, "log")?;
            check_keys(o, "log", &["file", "level"])?;
            set_opt_path(o, "log", "file", &mut c.log.file)?;
            set_string(o, "log", "level", &mut c.log.level)?;
            let lvl = c.log.level.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace", "off"].contains(&lvl.as_str()) {
                return Err(Error::Config(format!(
                    "log.level: expected one of error, warn, info, debug, trace, off, got {:?}",
                    c.log.level
                )));
            }
            c.log.level = lvl;
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&mut self) -> Result<()> {
        let url = self.backend.url.trim_end_matches('/').to_string();
        let lower = url.to_ascii_lowercase();
        let rest = if let Some(r) = lower.strip_prefix("https://") {
            r
        } else if let Some(r) = lower.strip_prefix("http://") {
            if !self.backend.allow_http {
                return Err(Error::Config(format!(
                    "backend.url: plain http is refused ({url}); use https:// or set backend.allow_http to true for development"
                )));
            }
            r
        } else {
            return Err(Error::Config(format!(
                "backend.url: expected an https:// URL, got {url:?}"
            )));
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ', '@']) {
            return Err(Error::Config(format!(
                "backend.url: expected https://host[:port][/prefix], got {url:?}"
            )));
        }
        self.backend.url = url;
        if let Some(p) = &self.backend.proxy {
            let pl = p.to_ascii_lowercase();
            if !pl.starts_with("http://") {
                return Err(Error::Config(format!(
                    "backend.proxy: expected http://[user:pass@]host:port, got {:?}",
                    crate::redact::url_credentials(p)
                )));
            }
        }
        if self.updates.max_unpacked_size < 1 || self.updates.max_package_size < 1 {
            return Err(Error::Config("updates: sizes must be positive".into()));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(Error::Config("state_dir: must not be empty".into()));
        }
        Ok(())
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn field(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        let name = if path.is_empty() { "config" } else { path };
        Error::Config(format!("{name}: expected an object, got {}", type_name(v)))
    })
}

fn check_keys(o: &Map<String, Value>, section: &str, known: &[&str]) -> Result<()> {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            return Err(Error::Config(format!(
                "{}: unknown key (known keys here: {})",
                field(section, k),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn set_u64(
    o: &Map<String, Value>,
    section: &str,
    key: &str,
    out: &mut u64,
    min: u64,
    max: u64,
    seconds: bool,
) -> Result<()> {
    let Some(v) = o.get(key) else { return Ok(()) };
    let what = if seconds {
        "a number of seconds"
    } else {
        "a whole number"
    };
    let n = v.as_u64().ok_or_else(|| {
        Error::Config(format!(
            "{}: expected {what}, got {}",
            field(section, key),
            type_name(v)
        ))
    })?;
    if n < min || n > max {
        return Err(Error::Config(format!(
            "{}: {n} is out of range ({min} to {max})",
            field(section, key)
        )));
    }
    *out = n;
    Ok(())
}

fn set_bool(o: &Map<String, Value>, section: &str, key: &str, out: &mut bool) -> Result<()> {
    let Some(v) = o.get(key) else { return Ok(()) };
    *out = v.as_bool().ok_or_else(|| {
        Error::Config(format!(
            "{}: expected true or false, got {}",
            field(section, key),
            type_name(v)
        ))
    })?;
    Ok(())
}

fn set_string(o: &Map<String, Value>, section: &str, key: &str, out: &mut String) -> Result<()> {
    let Some(v) = o.get(key) else { return Ok(()) };
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => {
            *out = s.trim().to_string();
            Ok(())
        }
        _ => Err(Error::Config(format!(
            "{}: expected a non-empty string, got {}",
            field(section, key),
            type_name(v)
        ))),
    }
}

fn set_opt_string(
    o: &Map<String, Value>,
    section: &str,
    key: &str,
    out: &mut Option<String>,
) -> Result<()> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => {
            let mut s = String::new();
            set_string(o, section, key, &mut s)?;
            *out = Some(s);
            Ok(())
        }
    }
}

fn set_path(o: &Map<String, Value>, section: &str, key: &str, out: &mut PathBuf) -> Result<()> {
    let mut s = String::new();
    if o.contains_key(key) {
        set_string(o, section, key, &mut s)?;
        *out = PathBuf::from(s);
    }
    Ok(())
}

fn set_opt_path(
    o: &Map<String, Value>,
    section: &str,
    key: &str,
    out: &mut Option<PathBuf>,
) -> Result<()> {
    let mut s = None;
    set_opt_string(o, section, key, &mut s)?;
    if let Some(s) = s {
        *out = Some(PathBuf::from(s));
    }
    Ok(())
}

/// A command list is either one argv (`["systemctl", "stop", "x"]`) or a list of
/// argvs (`[["a"], ["b", "c"]]`); either way the result is a list of argvs.
fn set_commands(
    o: &Map<String, Value>,
    section: &str,
    key: &str,
    out: &mut Vec<Vec<String>>,
) -> Result<()> {
    let Some(v) = o.get(key) else { return Ok(()) };
    let name = field(section, key);
    let bad = |v: &Value| {
        Error::Config(format!(
            "{name}: expected an argv array of strings (or an array of them), got {}",
            type_name(v)
        ))
    };
    let arr = v.as_array().ok_or_else(|| bad(v))?;
    let argv = |a: &Value| -> Result<Vec<String>> {
        let items = a.as_array().ok_or_else(|| bad(a))?;
        let mut out = Vec::new();
        for i in items {
            out.push(i.as_str().ok_or_else(|| bad(i))?.to_string());
        }
        if out.is_empty() || out[0].is_empty() {
            return Err(Error::Config(format!("{name}: empty command")));
        }
        Ok(out)
    };
    *out = if arr.is_empty() {
        vec![]
    } else if arr.iter().all(|x| x.is_string()) {
        vec![argv(v)?]
    } else {
        arr.iter().map(argv).collect::<Result<_>>()?
    };
    Ok(())
}
