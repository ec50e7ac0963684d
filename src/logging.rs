//! Logs: simplelog to stderr and, when `log.file` is set, to a size-bounded file
//! (1 MiB, one rotated generation). Library chatter from ureq/rustls is filtered out:
//! it could carry request URLs, and the license key travels in one.

use log::LevelFilter;
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Size at which the log file is rotated to `<file>.1`.
pub const MAX_LOG_BYTES: u64 = 1 << 20;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A log file that rotates itself when it passes `limit` bytes.
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    limit: u64,
}

impl RotatingFile {
    /// Opens (appends to) the log file.
    pub fn open(path: &Path, limit: u64) -> io::Result<RotatingFile> {
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
pub fn level(name: &str) -> LevelFilter {
    match name {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        "off" => LevelFilter::Off,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger once; later calls only change the level (config reload).
pub fn init(level_name: &str, file: Option<&Path>) {
    let lvl = level(level_name);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        log::set_max_level(lvl);
        return;
    }
    let config = ConfigBuilder::new()
        .add_filter_ignore_str("ureq")
        .add_filter_ignore_str("rustls")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(
        LevelFilter::Trace,
        config.clone(),
        io::stderr(),
    )];
    if let Some(path) = file {
        match RotatingFile::open(path, MAX_LOG_BYTES) {
            Ok(f) => loggers.push(WriteLogger::new(LevelFilter::Trace, config, f)),
            Err(e) => eprintln!(
                "cannot open log file {}: {e}; logging to stderr only",
                path.display()
            ),
        }
    }
    let _ = CombinedLogger::init(loggers);
    log::set_max_level(lvl);
}

#[cfg(test)]
mod tests {
    use super::*;

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
