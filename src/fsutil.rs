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

/// How many atomic writes this process has made: a reader that caches a state file
/// (the admin listener) re-reads it when this moved, whatever the file's timestamps say.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See `WRITES`.
pub(crate) fn writes() -> u64 {
    WRITES.load(std::sync::atomic::Ordering::SeqCst)
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
    // A leftover of a crashed write under this pid (or a link planted there) is
    // removed, never written through: the temp file is created anew (O_EXCL), and
    // O_NOFOLLOW refuses a link put back in between.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly, on the
        // descriptor (fchmod), not by path.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        fsync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The `struct open_how` of openat2(2) (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `rel` (`/`-separated, relative, without `.` or `..`) under the directory
/// `dir` without following any link on the way, the last component included, and
/// without leaving `dir`: openat2(2) with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`;
/// where the kernel (or qemu-user) lacks openat2, a walk of `openat(O_NOFOLLOW)`
/// from `dir`'s descriptor, one component at a time. A link anywhere is `ELOOP` (or
/// `ENOTDIR`). `flags`: `O_RDONLY`, `O_DIRECTORY`, … (`O_CLOEXEC | O_NOFOLLOW` added).
pub(crate) fn open_beneath(dir: &Path, rel: &str, flags: i32) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::unix::io::FromRawFd;
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() || comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?}: not a plain relative path"),
        ));
    }
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    let base = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let path = CString::new(comps.join("/")).map_err(nul)?;
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: openat2 reads the C string and `how` (of the size given), both alive
    // for the call; the result is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            base.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor the kernel just returned, owned by nothing else.
        return Ok(unsafe { File::from_raw_fd(fd as i32) });
    }
    let e = io::Error::last_os_error();
    // ENOSYS: kernel < 5.6 or qemu-user; EPERM: a seccomp filter; E2BIG: a kernel
    // that knows another size of `open_how`.
    if !matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::E2BIG)
    ) {
        return Err(e);
    }
    open_walk(base, &comps, flags)
}

/// openat2's stand-in: one `openat(O_NOFOLLOW)` per component from `base`.
fn open_walk(base: File, comps: &[&str], flags: i32) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::unix::io::FromRawFd;
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    let mut cur = base;
    for (i, c) in comps.iter().enumerate() {
        let f = if i + 1 == comps.len() {
            flags
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        let name = CString::new(*c).map_err(nul)?;
        // SAFETY: openat on a descriptor we own, with a valid C string.
        let fd = unsafe { libc::openat(cur.as_raw_fd(), name.as_ptr(), f) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        cur = unsafe { File::from_raw_fd(fd) };
    }
    Ok(cur)
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
    fn atomic_write_never_writes_through_a_link_at_its_temp_name() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"root's file").unwrap();
        let target = t.path().join("state.json");
        let tmp = t
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        atomic_write(&target, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"root's file");
        let m = fs::symlink_metadata(&target).unwrap();
        assert!(m.is_file(), "{m:?}");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(fs::symlink_metadata(&tmp).is_err());
    }

    #[test]
    fn open_beneath_refuses_every_link_and_dot_dot() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("b", d.join("a/l")).unwrap();
        std::os::unix::fs::symlink("f", d.join("a/b/lf")).unwrap();
        assert!(open_beneath(d, "a/b/f", libc::O_RDONLY).is_ok());
        // The walk used where openat2 is missing (qemu-user, kernels < 5.6).
        let walk = |rel: &str| {
            let comps: Vec<&str> = rel.split('/').collect();
            open_walk(
                File::open(d).unwrap(),
                &comps,
                libc::O_RDONLY | libc::O_NOFOLLOW,
            )
        };
        assert!(walk("a/b/f").is_ok());
        assert!(walk("a/l/f").is_err());
        assert!(walk("a/b/lf").is_err());
        for bad in ["a/l/f", "a/b/lf", "a/../a/b/f", "", "/etc/passwd"] {
            if bad == "/etc/passwd" {
                // Leading slashes are dropped: relative to `d`, not the root.
                assert!(open_beneath(d, bad, libc::O_RDONLY).is_err());
                continue;
            }
            assert!(open_beneath(d, bad, libc::O_RDONLY).is_err(), "{bad}");
        }
    }

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
