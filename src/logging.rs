//! Logs: to stderr and, when `log.file` is set, to a size-bounded file (1 MiB, one
//! rotated generation). Library chatter from ureq/rustls is filtered out: it could
//! carry request URLs, and the license key travels in one.

use log::LevelFilter;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Size at which the log file is rotated to `<file>.1`.
pub(crate) const MAX_LOG_BYTES: u64 = 1 << 20;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A log file that rotates itself when it passes `limit` bytes.
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    limit: u64,
}

impl RotatingFile {
    /// Opens (appends to) the log file.
    pub(crate) fn open(path: &Path, limit: u64) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file: Some(file),
            written,
            limit,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit && self.written > 0 {
            // A failed rotation must not stop logging: keep appending.
            if self.rotate().is_err() && self.file.is_none() {
                self.file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
            }
        }
        let f = match self.file.as_mut() {
            Some(f) => f,
            None => return Ok(buf.len()),
        };
        let n = f.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Parses a level name from the config.
pub(crate) fn level(name: &str) -> LevelFilter {
    match name {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        "off" => LevelFilter::Off,
        _ => LevelFilter::Info,
    }
}

/// Library chatter we never log: it could carry request URLs, and the license key
/// travels in one.
const IGNORED_TARGETS: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

/// The agent's logger: one line per record, `<ISO-8601 UTC> [LEVEL] message`, to stderr
/// and the optional rotating file. Ours rather than simplelog's: simplelog pulls in the
/// `time` crate, ~32 kB of an armv7 build, for a timestamp `clock.rs` already formats.
struct Logger {
    file: Option<Mutex<RotatingFile>>,
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        let t = meta.target();
        !IGNORED_TARGETS.iter().any(|p| {
            t.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with("::"))
        })
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // One write per line, so lines from two writers never interleave mid-line;
        // scrubbed, since a message may quote what a server echoed.
        let line = crate::redact::scrub(&format!(
            "{} [{}] {}\n",
            crate::clock::iso8601(now),
            record.level(),
            record.args()
        ));
        let _ = io::stderr().write_all(line.as_bytes());
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.flush();
            }
        }
    }
}

/// Installs the logger once; later calls only change the level (config reload).
pub(crate) fn init(level_name: &str, file: Option<&Path>) {
    let lvl = level(level_name);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        log::set_max_level(lvl);
        return;
    }
    let file = file.and_then(|path| match RotatingFile::open(path, MAX_LOG_BYTES) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            eprintln!(
                "cannot open log file {}: {e}; logging to stderr only",
                path.display()
            );
            None
        }
    });
    // Installed once for the life of the process, hence leaked.
    let _ = log::set_logger(Box::leak(Box::new(Logger { file })));
    log::set_max_level(lvl);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_the_http_and_tls_libraries() {
        use log::Log;
        let l = Logger { file: None };
        let on = |t: &str| l.enabled(&log::Metadata::builder().target(t).build());
        assert!(!on("ureq"));
        assert!(!on("ureq::unversioned::transport"));
        assert!(!on("ureq_proto::client"));
        assert!(!on("rustls::client::hs"));
        assert!(on("ureqx"));
        assert!(on("cybersensei_agent::transport"));
    }

    #[test]
    fn rotates_at_limit() {
        let dir = std::env::temp_dir().join(format!("cs-log-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("agent.log");
        let _ = std::fs::remove_file(&p);
        let mut f = RotatingFile::open(&p, 100).unwrap();
        for _ in 0..30 {
            f.write_all(b"0123456789\n").unwrap();
        }
        let cur = std::fs::metadata(&p).unwrap().len();
        let old = std::fs::metadata(dir.join("agent.log.1")).unwrap().len();
        assert!(cur <= 100, "current log {cur} bytes");
        assert!(old <= 100 && old > 0, "rotated log {old} bytes");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
