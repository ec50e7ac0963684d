//! Crash-safe file primitives: atomic writes, directory fsync, the state lock.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// fsyncs a directory so that a rename or create inside it survives power loss.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Parent directory of `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `data` to `path` atomically: temp file in the same directory, fsync,
/// rename over the target, fsync of the directory. `mode` applies to the new file.
pub(crate) fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    atomic_write_io(path, data, mode)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn atomic_write_io(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub(crate) fn atomic_write_json<T: serde::Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
) -> Result<()> {
    let mut data = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::io(format!("serializing {}", path.display()), e.into()))?;
    data.push(b'\n');
    atomic_write(path, &data, mode)
}

/// Reads a file of at most `limit` bytes; larger files are an error, not a truncation.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// Creates a directory (and parents) with the given mode if it does not exist.
pub(crate) fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    // The directories this call creates, outermost first: each new entry is made
    // durable in its parent, so a file later fsynced inside is reachable after a
    // power cut.
    let mut created: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    created.reverse();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io(format!("creating directory {}", path.display()), e))?;
    for dir in created {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent).map_err(|e| Error::io(format!("syncing {}", parent.display()), e))?;
        }
    }
    Ok(())
}

/// The exclusive state lock (`state_dir/agent.lock`), held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock, waiting at most `wait` for another holder to let go.
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<StateLock> {
        ensure_dir(state_dir, 0o755)?;
        StateLock::acquire_file(
            &crate::state_paths::StatePaths::new(state_dir).agent_lock(),
            wait,
        )
    }

    /// Takes an exclusive lock on any lock file (e.g. the daemon's `run.lock`).
    pub(crate) fn acquire_file(path: &Path, wait: Duration) -> Result<StateLock> {
        let path = path.to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(format!("locking {}", path.display()), err));
            }
            if Instant::now() >= deadline {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(Error::Busy(format!(
                    "{} is held by {who} (another cybersensei-agent command or the daemon); waited {}s",
                    path.display(),
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Record who holds it, for the message a waiting command prints.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(StateLock { _file: file })
    }
}

/// `path` if it exists, else its nearest existing ancestor (install.root may not be
/// created yet on a fresh box), else `/`.
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path;
    loop {
        if p.exists() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => return PathBuf::from("/"),
        }
    }
}

/// statvfs(2) of the filesystem holding `path` (which must exist).
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the return value is checked.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ensure_dir_creates_every_missing_level_with_its_mode_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        ensure_dir(&deep, 0o700).unwrap();
        for p in [t.path().join("a"), t.path().join("a/b"), deep.clone()] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert!(p.is_dir(), "{}", p.display());
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", p.display());
        }
        ensure_dir(&deep, 0o700).unwrap();
        // A file in the way is an error naming the path, not a panic.
        let f = t.path().join("file");
        fs::write(&f, b"x").unwrap();
        let e = ensure_dir(&f.join("sub"), 0o700).unwrap_err().to_string();
        assert!(e.contains("file/sub"), "{e}");
    }
}
