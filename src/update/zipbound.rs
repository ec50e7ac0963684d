//! The ZIP's central directory bounded from its end record, before the archive
//! reader parses it (it keeps every record, extra fields included, in memory). A
//! package is refused when its end record (or ZIP64 end record) declares more entries
//! than `updates.max_entries`, a directory larger than its entries can honestly need
//! (huge extra fields or comments: 1 000 entries with 60 KB each took 66 MiB), a
//! directory too small for the count it declares, or one that does not fit in the
//! file. Reads at most 64 KiB + 98 bytes from the end of the file.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Fixed part of a central directory header.
const CD_HEADER: u64 = 46;
/// Most a central header may honestly take: fixed part, a name (`verify::MAX_NAME`),
/// and 1 KiB of extra fields and comment (real ones are tens of bytes).
pub(crate) const MAX_PER_ENTRY: u64 = CD_HEADER + 1024 + 1024;
/// Absolute bound on the central directory (100 000 entries of ordinary names take
/// ~10 MB).
pub(crate) const MAX_DIRECTORY: u64 = 32 << 20;
const EOCD_LEN: u64 = 22;
const LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_LEN: u64 = 56;

fn reject(msg: String) -> Error {
    Error::PackageRejected(msg)
}

fn u16_at(b: &[u8], i: usize) -> u64 {
    u16::from_le_bytes([b[i], b[i + 1]]) as u64
}
fn u32_at(b: &[u8], i: usize) -> u64 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

/// What the end of the file says about the central directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Directory {
    pub(crate) entries: u64,
    pub(crate) size: u64,
    pub(crate) offset: u64,
    /// Where the directory must end (the ZIP64 end record, else the end record).
    pub(crate) end: u64,
}

/// Reads the end record (and the ZIP64 one it points to). None: no end record, which
/// the archive reader then refuses with its own message.
pub(crate) fn read(f: &File) -> Result<Option<Directory>> {
    let len = f
        .metadata()
        .map_err(|e| Error::io("reading the package", e))?
        .len();
    let tail = len.min(EOCD_LEN + 65535);
    let mut buf = vec![0u8; tail as usize];
    f.read_exact_at(&mut buf, len - tail)
        .map_err(|e| Error::io("reading the package", e))?;
    // The last end record whose comment reaches exactly the end of the file, else
    // the last one at all (what readers do).
    let sig = [0x50, 0x4b, 0x05, 0x06];
    let positions: Vec<usize> = buf
        .windows(4)
        .enumerate()
        .filter(|(i, w)| *w == sig && i + EOCD_LEN as usize <= buf.len())
        .map(|(i, _)| i)
        .collect();
    let exact = positions
        .iter()
        .rev()
        .find(|&&p| p + EOCD_LEN as usize + u16_at(&buf, p + 20) as usize == buf.len());
    let Some(&pos) = exact.or(positions.last()) else {
        return Ok(None);
    };
    let eocd_at = len - tail + pos as u64;
    let b = &buf[pos..];
    let mut d = Directory {
        entries: u16_at(b, 10).max(u16_at(b, 8)),
        size: u32_at(b, 12),
        offset: u32_at(b, 16),
        end: eocd_at,
    };
    // A ZIP64 end-record locator right before: its record's values are the real ones
    // (whatever the plain record says), so they are bounded too.
    if eocd_at >= LOCATOR_LEN {
        let mut loc = [0u8; LOCATOR_LEN as usize];
        f.read_exact_at(&mut loc, eocd_at - LOCATOR_LEN)
            .map_err(|e| Error::io("reading the package", e))?;
        if loc[..4] == [0x50, 0x4b, 0x06, 0x07] {
            let at = u64_at(&loc, 8);
            if at.saturating_add(ZIP64_EOCD_LEN) > eocd_at - LOCATOR_LEN {
                return Err(reject(format!(
                    "ZIP64 end record at {at} lies beyond the end of the archive"
                )));
            }
            let mut r = [0u8; ZIP64_EOCD_LEN as usize];
            f.read_exact_at(&mut r, at)
                .map_err(|e| Error::io("reading the package", e))?;
            if r[..4] != [0x50, 0x4b, 0x06, 0x06] {
                return Err(reject("ZIP64 end record not where its locator says".into()));
            }
            d = Directory {
                entries: u64_at(&r, 24).max(u64_at(&r, 32)),
                size: u64_at(&r, 40),
                offset: u64_at(&r, 48),
                end: at,
            };
        }
    }
    Ok(Some(d))
}

/// Refuses a directory the reader should not be allowed to load (module doc).
pub(crate) fn check(f: &File, max_entries: u64) -> Result<()> {
    let Some(d) = read(f)? else {
        return Ok(());
    };
    if d.entries > max_entries {
        return Err(reject(format!(
            "{} entries, more than updates.max_entries ({max_entries})",
            d.entries
        )));
    }
    if d.size > MAX_DIRECTORY || d.size > d.entries.saturating_mul(MAX_PER_ENTRY) {
        return Err(reject(format!(
            "central directory of {} bytes for {} entries: oversized extra fields or comments (at most {MAX_PER_ENTRY} bytes an entry, {MAX_DIRECTORY} in all)",
            d.size, d.entries
        )));
    }
    if d.size < d.entries.saturating_mul(CD_HEADER) {
        return Err(reject(format!(
            "central directory of {} bytes cannot hold the {} entries its end record declares",
            d.size, d.entries
        )));
    }
    if d.offset.saturating_add(d.size) > d.end {
        return Err(reject(format!(
            "central directory ({} bytes at {}) runs past its end record at {}",
            d.size, d.offset, d.end
        )));
    }
    Ok(())
}
