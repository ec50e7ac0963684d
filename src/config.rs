//! The configuration file: defaults, validation, and errors that name the field.
//!
//! Read from a `serde_json::Value` key by key rather than derived, so that every
//! error can say `backend.timeout: expected a number of seconds, got "abc"` and
//! unknown keys are refused by name. Every key is one line of the `config!` table
//! below: its field, type, default and the rule that reads it (and so its range).
//! Adding a key is adding its line (and a case to `tests::CASES`, which checks that
//! every key has one); a check across keys goes in `Config::validate`.

use crate::error::{Error, Result};
use crate::window::Window;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default location of the config file.
pub(crate) const DEFAULT_PATH: &str = "/etc/cybersensei/agent.json";
/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// One JSON object of the file.
type Obj = Map<String, Value>;

/// Declares the config structs from one table. A field line is
/// `name: Type = default => rule(arg)`, `rule` a reader of the `rule` module below
/// (called with the object, the struct's path, the key, the field and `arg`). For each
/// struct it generates the struct, its `Default`, its `Serialize` (what `config check`
/// prints), its list of known keys and `load`, which reads the keys in table order (so
/// the first error named does not depend on the file's order).
macro_rules! config {
    ($(
        $(#[$smeta:meta])*
        pub(crate) struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty = $default:expr => $rule:ident $(($arg:expr))? ),* $(,)?
        }
    )*) => {$(
        $(#[$smeta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut st = s.serialize_struct(stringify!($name), Self::KEYS.len())?;
                $( st.serialize_field(stringify!($field), &Shown(&self.$field))?; )*
                st.end()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl Section for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn load(&mut self, o: &Obj, path: &str) -> Result<()> {
                $( rule::$rule(o, path, stringify!($field), &mut self.$field $(, $arg)?)?; )*
                Ok(())
            }
        }

        impl Show for $name {
            fn show<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.serialize(s)
            }
        }
    )*};
}

/// A duration of `n` seconds (the unit of every duration in the file).
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// The keys, their defaults and accepted values: what docs/reference.md "Configuration" documents.
config! {
    /// `backend` section: where the backend is and how it is called.
    pub(crate) struct Backend {
        /// `https://host[:port][/prefix]`, without a trailing `/`.
        url: String = "https://central.cybersensei.com".into() => string,
        /// Bounds the connection and each JSON exchange (each read of a download).
        timeout: Duration = secs(30) => seconds(1..=3600),
        /// Attempts in all of a retried call.
        retry_attempts: u32 = 3 => whole(0..=20),
        /// First backoff delay, doubled at each attempt.
        retry_delay: Duration = secs(5) => seconds(0..=3600),
        /// Extra PEM trust anchor(s) besides the built-in roots.
        ca_file: Option<PathBuf> = None => opt_path,
        /// Accept a plain `http://` URL (development, tests).
        allow_http: bool = false => boolean,
        /// `http://[user:pass@]host:port` of an HTTP proxy (None: the environment's).
        proxy: Option<String> = None => opt_string,
    }

    /// `license` section.
    pub(crate) struct License {
        /// Where the key is read unless `$CYBERSENSEI_LICENSE_KEY` is set.
        key_file: PathBuf = "/etc/cybersensei/license.key".into() => path,
        /// Time between two validations by the daemon.
        revalidate_interval: Duration = secs(86400) => seconds(60..=365 * 86400),
        /// How long a cached validation stands in while the backend is unreachable.
        grace_period: Duration = secs(259200) => seconds(0..=365 * 86400),
        /// Warn this many days before the license expires.
        expiry_warning_days: u64 = 30 => whole(0..=3650),
    }

    /// `telemetry` section.
    pub(crate) struct Telemetry {
        /// Time between two samples sent by the daemon.
        interval: Duration = secs(300) => seconds(1..=7 * 86400),
        /// Whether the daemon sends telemetry at all.
        enabled: bool = true => boolean,
        /// Metrics written by the CyberSensei application.
        app_metrics_file: PathBuf = "/run/cybersensei/metrics.json".into() => path,
        /// Most samples kept while the backend is unreachable.
        queue_max: u32 = 288 => whole(0..=100_000),
        /// One argv (no shell) printing the application's metrics as the file holds
        /// them; takes the file's place when set (docs/telemetry.md).
        app_metrics_command: Vec<String> = vec![] => argv,
        /// `http://host:port/path` of the AI service's health route, timed for
        /// `aiLatency` (None: the latency comes from the application's metrics).
        ai_probe_url: Option<String> = None => opt_string,
    }

    /// `updates` section.
    pub(crate) struct Updates {
        /// Time between two update checks by the daemon.
        check_interval: Duration = secs(3600) => seconds(1..=30 * 86400),
        /// Download an available update without being asked.
        auto_download: bool = false => boolean,
        /// Install a downloaded update without being asked (within `install_window`).
        auto_install: bool = false => boolean,
        /// Trusted Ed25519 keys: each a key (base64, PEM), a key file or a directory of
        /// `*.pub` files. Empty: signatures not required (status warns). `null`, one
        /// string or an array in the file.
        public_key: Vec<String> = vec![] => string_list,
        /// Largest package (ZIP) accepted, in bytes.
        max_package_size: u64 = 1 << 30 => whole(1..=u64::MAX),
        /// Largest unpacked package accepted, in bytes.
        max_unpacked_size: u64 = 4 << 30 => whole(1..=u64::MAX),
        /// Most entries a package may hold (zip-bomb guard).
        max_entries: u64 = 100_000 => whole(1..=10_000_000),
        /// Boots in an uncommitted slot before the agent rolls back by itself.
        max_boot_attempts: u32 = 3 => whole(1..=100),
        /// A download slower than this (bytes/s) over `slow_download_window` is
        /// abandoned, its partial file kept for a later resume (0: never).
        min_download_rate: u64 = 1024 => whole(0..=1 << 30),
        /// Time over which `min_download_rate` is measured.
        slow_download_window: Duration = secs(120) => seconds(1..=86400),
        /// Local-time window `HH:MM-HH:MM` for automatic installs (None = any time).
        install_window: Option<Window> = None => window,
        /// A package marked `securityUpdate` installs automatically outside the window.
        security_outside_window: bool = false => boolean,
        /// How long a package's install hook may run before it is killed (and fails).
        hook_timeout: Duration = secs(300) => seconds(1..=86400),
    }

    /// `install` section.
    pub(crate) struct Install {
        /// Holds `slots/a`, `slots/b` and the `current` symlink.
        root: PathBuf = "/opt/cybersensei".into() => path,
    }

    /// `services` section: argv lists run without a shell.
    pub(crate) struct Services {
        /// Stop the application's services (before a switch).
        stop: Vec<Vec<String>> = vec![] => commands,
        /// Start them (after a switch).
        start: Vec<Vec<String>> = vec![] => commands,
        /// Health check: every command exits 0 (empty: started is healthy).
        health: Vec<Vec<String>> = vec![] => commands,
        /// How long the services may take to stop, start or become healthy.
        health_timeout: Duration = secs(120) => seconds(1..=3600),
    }

    /// `schedule` section (ours): how the daemon spreads its requests.
    pub(crate) struct Schedule {
        /// Spread the first telemetry and update check over their interval.
        splay: bool = true => boolean,
        /// Random jitter added to each interval, in percent of it (0 to 50).
        jitter_percent: u32 = 10 => whole(0..=50),
    }

    /// `admin_api` section (ours): the local admin API and status page (docs/admin-api.md).
    pub(crate) struct AdminApi {
        /// `"HOST:PORT"` (an IP address) or `"unix:/PATH"`; None: no listener.
        listen: Option<String> = None => listen,
        /// `"none"` (loopback or Unix socket only) or `"node"` (the node checks sessions).
        auth: String = "node".into() => auth_mode,
        /// The node API that answers `GET /api/user/me` (`http://HOST:PORT`).
        node_url: String = "http://127.0.0.1:8080".into() => node_url,
        /// With `auth: "none"`, the names (besides IP addresses, `localhost` and the
        /// box's hostname) a browser may call the box by: DNS-rebinding defence.
        hosts: Vec<String> = vec![] => host_names,
    }

    /// `log` section.
    pub(crate) struct Log {
        /// Log file besides stderr (None: stderr only).
        file: Option<PathBuf> = None => opt_path,
        /// `error`, `warn`, `info`, `debug`, `trace` or `off` (lowercased).
        level: String = "info".into() => log_level,
    }

    /// The whole, validated configuration.
    pub(crate) struct Config {
        /// `backend` section.
        backend: Backend = Backend::default() => section,
        /// `license` section.
        license: License = License::default() => section,
        /// `telemetry` section.
        telemetry: Telemetry = Telemetry::default() => section,
        /// `updates` section.
        updates: Updates = Updates::default() => section,
        /// `install` section.
        install: Install = Install::default() => section,
        /// `services` section.
        services: Services = Services::default() => section,
        /// `schedule` section.
        schedule: Schedule = Schedule::default() => section,
        /// The agent's own state (status, cache, queue, downloads).
        state_dir: PathBuf = "/var/lib/cybersensei-agent".into() => path,
        /// `log` section.
        log: Log = Log::default() => section,
        /// `admin_api` section.
        admin_api: AdminApi = AdminApi::default() => section,
    }
}

/// Where the config comes from: `-c`, then `$CYBERSENSEI_AGENT_CONFIG`, then the default.
pub(crate) fn resolve_path(cli: Option<&Path>) -> PathBuf {
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
        read_object(&root, "", &mut c)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks that involve more than one key, and normalizes the URL.
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
        let a = &self.admin_api;
        if a.auth == "none" {
            if let Some(l) = a
                .listen
                .as_deref()
                .and_then(crate::http_target::Listen::parse)
            {
                if !l.is_local() {
                    return Err(Error::Config(format!(
                        "admin_api.auth: \"none\" is refused on {} (not loopback nor a Unix socket); use \"node\"",
                        a.listen.as_deref().unwrap_or("")
                    )));
                }
            }
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(Error::Config("state_dir: must not be empty".into()));
        }
        if let Some(u) = &self.telemetry.ai_probe_url {
            crate::http_target::HttpTarget::parse(u)
                .map_err(|e| Error::Config(format!("telemetry.ai_probe_url: {e}, got {u:?}")))?;
        }
        Ok(())
    }
}

/// A struct of the file read key by key (implemented by `config!`).
trait Section {
    /// Its keys, in table order (listed so in the unknown-key error).
    const KEYS: &'static [&'static str];
    /// Reads the keys present in `o`; `path` names `o` in errors (`""` for the root).
    fn load(&mut self, o: &Obj, path: &str) -> Result<()>;
}

/// Reads the object `v` (named `path` in errors) into `out`, refusing unknown keys.
fn read_object<T: Section>(v: &Value, path: &str, out: &mut T) -> Result<()> {
    out.load(object(v, path, T::KEYS)?, path)
}

/// `v` as an object whose keys are all `known` (not generic: one copy of the errors).
fn object<'a>(v: &'a Value, path: &str, known: &[&str]) -> Result<&'a Obj> {
    let o = v.as_object().ok_or_else(|| {
        let name = if path.is_empty() { "config" } else { path };
        Error::Config(format!("{name}: expected an object, got {}", type_name(v)))
    })?;
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            return Err(Error::Config(format!(
                "{}: unknown key (known keys here: {})",
                field(path, k),
                known.join(", ")
            )));
        }
    }
    Ok(o)
}

/// How a value appears in `config check`: durations as whole seconds (as in the file),
/// everything else as serde writes it.
trait Show {
    /// Serializes the value for display.
    fn show<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error>;
}

impl Show for Duration {
    fn show<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.as_secs())
    }
}

macro_rules! show_as_serde {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.serialize(s)
            }
        }
    )*};
}
show_as_serde!(
    bool,
    u32,
    u64,
    String,
    PathBuf,
    Option<String>,
    Option<PathBuf>,
    Vec<String>,
    Vec<Vec<String>>
);

impl Show for Option<Window> {
    fn show<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Some(w) => s.collect_str(w),
            None => s.serialize_none(),
        }
    }
}

/// A config field as `config check` shows it.
struct Shown<'a, T>(&'a T);

impl<T: Show> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.show(s)
    }
}

/// How a JSON value is quoted in an error: `"abc"`, `-5`, `an array`.
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

/// The dotted path of `key` in `section` (`""` for the root).
fn field(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// The readers named in the `config!` table. Each reads `o[key]` into `out` when the
/// key is present (absent: the default stays) and names `section.key` in its errors.
mod rule {
    use super::{field, read_object, type_name, Obj, Section};
    use crate::error::{Error, Result};
    use serde_json::Value;
    use std::ops::RangeInclusive;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A section: only at the root, so its key is its path.
    pub(super) fn section<T: Section>(o: &Obj, root: &str, key: &str, out: &mut T) -> Result<()> {
        debug_assert!(root.is_empty(), "sections nest one level only");
        match o.get(key) {
            Some(v) => read_object(v, key, out),
            None => Ok(()),
        }
    }

    /// A whole number in `range`; `what` says what is expected.
    fn number(
        o: &Obj,
        section: &str,
        key: &str,
        range: RangeInclusive<u64>,
        what: &str,
    ) -> Result<Option<u64>> {
        let Some(v) = o.get(key) else { return Ok(None) };
        let n = v.as_u64().ok_or_else(|| {
            Error::Config(format!(
                "{}: expected {what}, got {}",
                field(section, key),
                type_name(v)
            ))
        })?;
        if !range.contains(&n) {
            return Err(Error::Config(format!(
                "{}: {n} is out of range ({} to {})",
                field(section, key),
                range.start(),
                range.end()
            )));
        }
        Ok(Some(n))
    }

    /// A duration: a whole number of seconds in `range`.
    pub(super) fn seconds(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Duration,
        range: RangeInclusive<u64>,
    ) -> Result<()> {
        if let Some(n) = number(o, section, key, range, "a number of seconds")? {
            *out = Duration::from_secs(n);
        }
        Ok(())
    }

    /// A count or a size in `range`.
    pub(super) fn whole<T: Whole>(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut T,
        range: RangeInclusive<u64>,
    ) -> Result<()> {
        if let Some(n) = number(o, section, key, range, "a whole number")? {
            *out = T::from_u64(n);
        }
        Ok(())
    }

    /// The integer types of whole-number keys.
    pub(super) trait Whole {
        /// `n`, which its key's range keeps within the type (saturated otherwise).
        fn from_u64(n: u64) -> Self;
    }

    impl Whole for u64 {
        fn from_u64(n: u64) -> u64 {
            n
        }
    }

    impl Whole for u32 {
        fn from_u64(n: u64) -> u32 {
            u32::try_from(n).unwrap_or(u32::MAX)
        }
    }

    /// `true` or `false`.
    pub(super) fn boolean(o: &Obj, section: &str, key: &str, out: &mut bool) -> Result<()> {
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

    /// A non-empty string, surrounding whitespace trimmed.
    pub(super) fn string(o: &Obj, section: &str, key: &str, out: &mut String) -> Result<()> {
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

    /// `null` or a non-empty string.
    pub(super) fn opt_string(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Option<String>,
    ) -> Result<()> {
        if o.get(key).is_some_and(|v| !v.is_null()) {
            let mut s = String::new();
            string(o, section, key, &mut s)?;
            *out = Some(s);
        }
        Ok(())
    }

    /// A path: a non-empty string.
    pub(super) fn path(o: &Obj, section: &str, key: &str, out: &mut PathBuf) -> Result<()> {
        let mut s = String::new();
        string(o, section, key, &mut s)?;
        if !s.is_empty() {
            *out = PathBuf::from(s);
        }
        Ok(())
    }

    /// `null` or a path.
    pub(super) fn opt_path(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Option<PathBuf>,
    ) -> Result<()> {
        let mut s = None;
        opt_string(o, section, key, &mut s)?;
        if let Some(s) = s {
            *out = Some(PathBuf::from(s));
        }
        Ok(())
    }

    /// `null`, one non-empty string, or an array of them.
    pub(super) fn string_list(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let items: Vec<&Value> = match o.get(key) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
        };
        let mut list = Vec::new();
        for v in items {
            let s = v.as_str().map(str::trim).ok_or_else(|| {
                Error::Config(format!(
                    "{}: expected a string or an array of strings, got {}",
                    field(section, key),
                    type_name(v)
                ))
            })?;
            if s.is_empty() {
                return Err(Error::Config(format!(
                    "{}: empty entry",
                    field(section, key)
                )));
            }
            list.push(s.to_string());
        }
        *out = list;
        Ok(())
    }

    /// Like `string_list`, each entry a DNS name (no port), lowercased, without a
    /// trailing dot.
    pub(super) fn host_names(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let mut list = Vec::new();
        string_list(o, section, key, &mut list)?;
        for h in &mut list {
            let name = h.trim_end_matches('.').to_ascii_lowercase();
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !name.starts_with(['-', '.']);
            if !ok {
                return Err(Error::Config(format!(
                    "{}: expected a host name (letters, digits, '-' and '.', no port), got {h:?}",
                    field(section, key)
                )));
            }
            *h = name;
        }
        if list.len() > 16 {
            return Err(Error::Config(format!(
                "{}: at most 16 names, got {}",
                field(section, key),
                list.len()
            )));
        }
        *out = list;
        Ok(())
    }

    /// One argv (`["systemctl", "stop", "x"]`) or a list of argvs (`[["a"], ["b",
    /// "c"]]`); either way the result is a list of argvs.
    pub(super) fn commands(
        o: &Obj,
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

    /// One argv (an array of strings, the program first); `null` or `[]`: none.
    pub(super) fn argv(o: &Obj, section: &str, key: &str, out: &mut Vec<String>) -> Result<()> {
        let mut all = Vec::new();
        commands(o, section, key, &mut all)?;
        if all.len() > 1 {
            return Err(Error::Config(format!(
                "{}: expected one argv array of strings, got {} commands",
                field(section, key),
                all.len()
            )));
        }
        *out = all.pop().unwrap_or_default();
        Ok(())
    }

    /// A log level, case-insensitive, stored lowercased.
    pub(super) fn log_level(o: &Obj, section: &str, key: &str, out: &mut String) -> Result<()> {
        string(o, section, key, out)?;
        let lvl = out.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace", "off"].contains(&lvl.as_str()) {
            return Err(Error::Config(format!(
                "{}: expected one of error, warn, info, debug, trace, off, got {out:?}",
                field(section, key)
            )));
        }
        *out = lvl;
        Ok(())
    }

    /// `null`, `"HOST:PORT"` (an IP address) or `"unix:/ABSOLUTE/PATH"`.
    pub(super) fn listen(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Option<String>,
    ) -> Result<()> {
        opt_string(o, section, key, out)?;
        if let Some(l) = out {
            if crate::http_target::Listen::parse(l).is_none() {
                return Err(Error::Config(format!(
                    "{}: expected \"IP:PORT\" or \"unix:/PATH\", got {l:?}",
                    field(section, key)
                )));
            }
        }
        Ok(())
    }

    /// `"none"` or `"node"`.
    pub(super) fn auth_mode(o: &Obj, section: &str, key: &str, out: &mut String) -> Result<()> {
        string(o, section, key, out)?;
        if out != "none" && out != "node" {
            return Err(Error::Config(format!(
                "{}: expected \"none\" or \"node\", got {out:?}",
                field(section, key)
            )));
        }
        Ok(())
    }

    /// `http://HOST:PORT[/prefix]` of the node API, stored without a trailing `/`.
    pub(super) fn node_url(o: &Obj, section: &str, key: &str, out: &mut String) -> Result<()> {
        string(o, section, key, out)?;
        let u = out.trim_end_matches('/').to_string();
        if crate::http_target::NodeUrl::parse(&u).is_none() {
            return Err(Error::Config(format!(
                "{}: expected http://HOST:PORT, got {u:?}",
                field(section, key)
            )));
        }
        *out = u;
        Ok(())
    }

    /// `null` or a local-time window `HH:MM-HH:MM`, parsed here once.
    pub(super) fn window(
        o: &Obj,
        section: &str,
        key: &str,
        out: &mut Option<crate::window::Window>,
    ) -> Result<()> {
        let mut text = None;
        opt_string(o, section, key, &mut text)?;
        *out = match text {
            Some(w) => Some(
                crate::window::Window::parse(&w)
                    .map_err(|e| Error::Config(format!("{}: {e}", field(section, key))))?,
            ),
            None => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of the config error `text` gives (it must give one).
    fn refused(text: &str) -> String {
        match Config::parse(text) {
            Err(Error::Config(m)) => m,
            other => panic!("{text}: expected a config error, got {other:?}"),
        }
    }

    /// `{"a": {"b": v}}` for `a.b`, `{"a": v}` for `a`.
    fn doc(path: &str, v: &str) -> String {
        match path.split_once('.') {
            Some((s, k)) => format!(r#"{{"{s}": {{"{k}": {v}}}}}"#),
            None => format!(r#"{{"{path}": {v}}}"#),
        }
    }

    /// Key, valid value, how it is shown, wrong type, its message, a refused value and
    /// its message.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );

    /// Every key: a valid value and how `config check` then shows it; a value of the
    /// wrong type; a value out of range (or otherwise refused) when there is one. Each
    /// refusal with its exact message.
    #[rustfmt::skip]
    const CASES: &[Case] = &[
        ("backend.url", r#""https://x.example/p/""#, r#""https://x.example/p""#,
            "5", "expected a non-empty string, got 5", Some((r#""ftp://x""#, r#"expected an https:// URL, got "ftp://x""#))),
        ("backend.timeout", "10", "10", r#""abc""#, r#"expected a number of seconds, got "abc""#,
            Some(("3601", "3601 is out of range (1 to 3600)"))),
        ("backend.retry_attempts", "0", "0", "1.5", "expected a whole number, got 1.5",
            Some(("21", "21 is out of range (0 to 20)"))),
        ("backend.retry_delay", "0", "0", "true", "expected a number of seconds, got true",
            Some(("3601", "3601 is out of range (0 to 3600)"))),
        ("backend.ca_file", r#""/etc/ca.pem""#, r#""/etc/ca.pem""#, "1", "expected a non-empty string, got 1",
            Some((r#""""#, r#"expected a non-empty string, got """#))),
        ("backend.allow_http", "true", "true", r#""yes""#, r#"expected true or false, got "yes""#, None),
        ("backend.proxy", r#""http://p:3128""#, r#""http://p:3128""#, "[]", "expected a non-empty string, got an array",
            Some((r#""https://u:pw@p""#, r#"expected http://[user:pass@]host:port, got "https://***@p""#))),
        ("license.key_file", r#"" /k ""#, r#""/k""#, "null", "expected a non-empty string, got null", None),
        ("license.revalidate_interval", "60", "60", "-1", "expected a number of seconds, got -1",
            Some(("59", "59 is out of range (60 to 31536000)"))),
        ("license.grace_period", "0", "0", r#""3d""#, r#"expected a number of seconds, got "3d""#,
            Some(("31536001", "31536001 is out of range (0 to 31536000)"))),
        ("license.expiry_warning_days", "7", "7", "{}", "expected a whole number, got an object",
            Some(("3651", "3651 is out of range (0 to 3650)"))),
        ("telemetry.interval", "60", "60", r#""5m""#, r#"expected a number of seconds, got "5m""#,
            Some(("604801", "604801 is out of range (1 to 604800)"))),
        ("telemetry.enabled", "false", "false", "0", "expected true or false, got 0", None),
        ("telemetry.app_metrics_file", r#""/m.json""#, r#""/m.json""#, r#""  ""#, r#"expected a non-empty string, got "  ""#, None),
        ("telemetry.queue_max", "0", "0", r#""288""#, r#"expected a whole number, got "288""#,
            Some(("100001", "100001 is out of range (0 to 100000)"))),
        ("telemetry.app_metrics_command", r#"["/bin/m", "-x"]"#, r#"["/bin/m","-x"]"#, r#""/bin/m""#,
            r#"expected an argv array of strings (or an array of them), got "/bin/m""#,
            Some((r#"[["a"], ["b"]]"#, "expected one argv array of strings, got 2 commands"))),
        ("telemetry.ai_probe_url", r#""http://127.0.0.1:8000/health""#, r#""http://127.0.0.1:8000/health""#, "1",
            "expected a non-empty string, got 1",
            Some((r#""https://ai/health""#, r#"expected http://host[:port][/path], got "https://ai/health""#))),
        ("updates.check_interval", "1", "1", "null", "expected a number of seconds, got null",
            Some(("2592001", "2592001 is out of range (1 to 2592000)"))),
        ("updates.auto_download", "true", "true", r#""true""#, r#"expected true or false, got "true""#, None),
        ("updates.auto_install", "true", "true", "1", "expected true or false, got 1", None),
        ("updates.public_key", r#"" k1 ""#, r#"["k1"]"#, "5", "expected a string or an array of strings, got 5",
            Some((r#"["k1", " "]"#, "empty entry"))),
        ("updates.max_package_size", "1", "1", r#""1G""#, r#"expected a whole number, got "1G""#,
            Some(("0", "0 is out of range (1 to 18446744073709551615)"))),
        ("updates.max_unpacked_size", "18446744073709551615", "18446744073709551615", "1e9", "expected a whole number, got 1000000000.0",
            Some(("0", "0 is out of range (1 to 18446744073709551615)"))),
        ("updates.max_entries", "10", "10", "[1]", "expected a whole number, got an array",
            Some(("10000001", "10000001 is out of range (1 to 10000000)"))),
        ("updates.max_boot_attempts", "100", "100", "false", "expected a whole number, got false",
            Some(("0", "0 is out of range (1 to 100)"))),
        ("updates.min_download_rate", "0", "0", "-5", "expected a whole number, got -5",
            Some(("1073741825", "1073741825 is out of range (0 to 1073741824)"))),
        ("updates.slow_download_window", "86400", "86400", r#""2m""#, r#"expected a number of seconds, got "2m""#,
            Some(("0", "0 is out of range (1 to 86400)"))),
        ("updates.install_window", r#""22:00-06:00""#, r#""22:00-06:00""#, "2200", "expected a non-empty string, got 2200",
            Some((r#""night""#, r#""night" is not "HH:MM-HH:MM" (24-hour local time)"#))),
        ("updates.security_outside_window", "true", "true", r#""no""#, r#"expected true or false, got "no""#, None),
        ("updates.hook_timeout", "60", "60", r#""1m""#, r#"expected a number of seconds, got "1m""#,
            Some(("86401", "86401 is out of range (1 to 86400)"))),
        ("install.root", r#""/opt/x""#, r#""/opt/x""#, "false", "expected a non-empty string, got false", None),
        ("services.stop", r#"["systemctl", "stop", "x"]"#, r#"[["systemctl", "stop", "x"]]"#,
            r#""systemctl stop x""#, r#"expected an argv array of strings (or an array of them), got "systemctl stop x""#,
            Some((r#"[[]]"#, "empty command"))),
        ("services.start", r#"[["a", "1"], ["b"]]"#, r#"[["a", "1"], ["b"]]"#,
            r#"[["a"], "b"]"#, r#"expected an argv array of strings (or an array of them), got "b""#,
            Some((r#"["", "x"]"#, "empty command"))),
        ("services.health", "[]", "[]", r#"{"cmd": "x"}"#, "expected an argv array of strings (or an array of them), got an object",
            Some((r#"[["a", 1]]"#, "expected an argv array of strings (or an array of them), got 1"))),
        ("services.health_timeout", "1", "1", "1.0", "expected a number of seconds, got 1.0",
            Some(("3601", "3601 is out of range (1 to 3600)"))),
        ("schedule.splay", "false", "false", r#""off""#, r#"expected true or false, got "off""#, None),
        ("schedule.jitter_percent", "50", "50", "null", "expected a whole number, got null",
            Some(("51", "51 is out of range (0 to 50)"))),
        ("state_dir", r#""/s""#, r#""/s""#, r#""""#, r#"expected a non-empty string, got """#, None),
        ("log.file", r#""/var/log/a.log""#, r#""/var/log/a.log""#, "3", "expected a non-empty string, got 3", None),
        ("log.level", r#"" DEBUG ""#, r#""debug""#, "3", "expected a non-empty string, got 3",
            Some((r#""loud""#, r#"expected one of error, warn, info, debug, trace, off, got "loud""#))),
        ("admin_api.listen", r#""127.0.0.1:8091""#, r#""127.0.0.1:8091""#, "8091", "expected a non-empty string, got 8091",
            Some((r#""localhost:8091""#, r#"expected "IP:PORT" or "unix:/PATH", got "localhost:8091""#))),
        ("admin_api.auth", r#""none""#, r#""none""#, "true", "expected a non-empty string, got true",
            Some((r#""jwt""#, r#"expected "none" or "node", got "jwt""#))),
        ("admin_api.node_url", r#""http://10.0.0.2:8080/""#, r#""http://10.0.0.2:8080""#, "1", "expected a non-empty string, got 1",
            Some((r#""https://n""#, r#"expected http://HOST:PORT, got "https://n""#))),
        ("admin_api.hosts", r#"" Box.Acme.LAN. ""#, r#"["box.acme.lan"]"#, "1", "expected a string or an array of strings, got 1",
            Some((r#"["box:8080"]"#, r#"expected a host name (letters, digits, '-' and '.', no port), got "box:8080""#))),
    ];

    /// Every key of the table, as `section.key`.
    fn all_keys() -> Vec<String> {
        let sections: [(&str, &[&str]); 9] = [
            ("backend", Backend::KEYS),
            ("license", License::KEYS),
            ("telemetry", Telemetry::KEYS),
            ("updates", Updates::KEYS),
            ("install", Install::KEYS),
            ("services", Services::KEYS),
            ("schedule", Schedule::KEYS),
            ("log", Log::KEYS),
            ("admin_api", AdminApi::KEYS),
        ];
        let mut keys = vec![];
        for k in Config::KEYS {
            match sections.iter().find(|(s, _)| s == k) {
                Some((s, inner)) => keys.extend(inner.iter().map(|i| format!("{s}.{i}"))),
                None => keys.push(k.to_string()),
            }
        }
        keys
    }

    #[test]
    fn every_key_has_its_cases() {
        let cased: Vec<&str> = CASES.iter().map(|c| c.0).collect();
        assert_eq!(all_keys(), cased);
    }

    #[test]
    fn every_key_valid_wrong_type_out_of_range() {
        for (path, valid, shown, wrong, wrong_msg, range) in CASES {
            // proxy and url need each other's defaults to be valid together.
            let c = Config::parse(&doc(path, valid)).unwrap_or_else(|e| panic!("{path}: {e}"));
            let got = serde_json::to_value(&c).unwrap();
            let at = format!("/{}", path.replace('.', "/"));
            let want: Value = serde_json::from_str(shown).unwrap();
            assert_eq!(got.pointer(&at), Some(&want), "{path}");
            assert_eq!(refused(&doc(path, wrong)), format!("{path}: {wrong_msg}"));
            if let Some((bad, msg)) = range {
                assert_eq!(refused(&doc(path, bad)), format!("{path}: {msg}"));
            }
        }
    }

    #[test]
    fn durations_are_held_as_durations_and_shown_in_seconds() {
        let d = Config::default();
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(d.backend.timeout), 30);
        assert_eq!(secs(d.backend.retry_delay), 5);
        assert_eq!(secs(d.license.revalidate_interval), 86400);
        assert_eq!(secs(d.license.grace_period), 259200);
        assert_eq!(secs(d.telemetry.interval), 300);
        assert_eq!(secs(d.updates.check_interval), 3600);
        assert_eq!(secs(d.updates.slow_download_window), 120);
        assert_eq!(secs(d.updates.hook_timeout), 300);
        assert_eq!(secs(d.services.health_timeout), 120);
        let c = Config::parse(r#"{"license": {"grace_period": 7200}}"#).unwrap();
        assert_eq!(c.license.grace_period, Duration::from_secs(7200));
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["license"]["grace_period"], 7200);
        assert_eq!(shown["backend"]["timeout"], 30);
    }

    #[test]
    fn sections_and_unknown_keys() {
        assert_eq!(refused("[]"), "config: expected an object, got an array");
        assert_eq!(
            refused(r#"{"backend": 3}"#),
            "backend: expected an object, got 3"
        );
        assert_eq!(
            refused(r#"{"log": null}"#),
            "log: expected an object, got null"
        );
        assert_eq!(
            refused(r#"{"backend": {"timeuot": 3}}"#),
            "backend.timeuot: unknown key (known keys here: url, timeout, retry_attempts, \
             retry_delay, ca_file, allow_http, proxy)"
        );
        assert_eq!(
            refused(r#"{"telemetri": {}}"#),
            "telemetri: unknown key (known keys here: backend, license, telemetry, updates, \
             install, services, schedule, state_dir, log, admin_api)"
        );
        // Keys are read in table order: the first bad one is named, whatever the file's order.
        assert_eq!(
            refused(r#"{"backend": {"retry_delay": "x", "timeout": "y"}}"#),
            r#"backend.timeout: expected a number of seconds, got "y""#
        );
        // `null` keeps the default of an optional key.
        let c = Config::parse(r#"{"backend": {"proxy": null}, "updates": {"public_key": null}}"#)
            .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn json_errors_say_where() {
        assert!(refused("{\n  \"a\": {,}\n}").starts_with("invalid JSON at line 2 column"));
    }
}
