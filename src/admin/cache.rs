//! status.json and the history, parsed once per change rather than once per request:
//! the page polls every second, and parsing them was most of the listener's CPU
//! (scripts/bench_admin_load.sh).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// What says a file changed: this process's atomic-write count (exact for the
/// daemon's own writes), and the file's inode, size and mtime (another process's:
/// an atomic write makes a new inode).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    writes: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

fn key(p: &Path) -> Key {
    let writes = crate::fsutil::writes();
    match std::fs::metadata(p) {
        Ok(m) => Key {
            writes,
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        },
        // Missing or unreadable: read again at the next change of the count.
        Err(_) => Key {
            writes,
            ino: 0,
            len: 0,
            mtime: (0, 0),
        },
    }
}

/// One file's parsed content and the key it was read under.
pub(crate) struct Cached<T> {
    key: Option<Key>,
    val: Arc<T>,
}

impl<T: Default> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            key: None,
            val: Arc::default(),
        }
    }
}

impl<T> Cached<T> {
    /// The content of `p`, loaded again only when it changed. The key is taken
    /// before the load, so a change during the load is seen at the next call.
    pub(crate) fn get(&mut self, p: &Path, load: impl FnOnce() -> T) -> Arc<T> {
        let k = key(p);
        if self.key != Some(k) {
            self.val = Arc::new(load());
            self.key = Some(k);
        }
        self.val.clone()
    }
}
