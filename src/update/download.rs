//! `GET /update/download/{updateId}` (docs/protocol.md §3): streamed through one fixed
//! buffer into `state_dir/update/download.part`, SHA-256 computed on the way,
//! resumed with `Range` after an interruption, renamed to `package.zip` when whole.
//!
//! `download.json` says which update the partial file belongs to, so a resume never
//! glues two different packages together.

use super::journal;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::percent::percent_encode;
use crate::protocol::UpdateCheck;
use crate::state_paths::StatePaths;
use crate::transport::Streaming;
use ring::digest;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of the one buffer the body goes through.
pub(crate) const BUF: usize = 64 * 1024;
/// Resumes within one run before giving up (the next run resumes again).
const MAX_RESUMES: u32 = 50;
/// Written bytes after which writeback of the partial file is started (see
/// [`start_writeback`]).
const WRITEBACK_EVERY: u64 = 4 << 20;
/// How long a parked stream (below) waits for the daemon to come back to it.
const PARKED_FOR: Duration = Duration::from_secs(120);

/// A download paused for the daemon's other steps on a server that cannot resume
/// (the real backend: always 200 and the whole file). Its connection stays open and
/// the next attempt for the same update reads on from it, instead of starting over
/// and, on a slow link, never finishing. Kept by the caller between attempts (the
/// daemon's `Updater`), in a [`Session`].
pub(crate) struct Parked {
    update_id: String,
    have: u64,
    header_digest: Option<String>,
    body: Box<dyn Read>,
    at: Duration,
}

/// What one download attempt shares with the caller: the stream a paused attempt
/// parked, and when to pause (the daemon's next other step, monotonic; None: never,
/// a one-shot command).
pub(crate) struct Session<'s> {
    pub(crate) parked: &'s mut Option<Parked>,
    pub(crate) pause_at: Option<Duration>,
}

impl Session<'_> {
    /// Keeps a paused download's connection for the next attempt (see `Parked`).
    fn park(
        &mut self,
        job_id: &str,
        header_digest: Option<String>,
        have: u64,
        body: Box<dyn Read>,
        now: Duration,
    ) {
        *self.parked = Some(Parked {
            update_id: job_id.to_string(),
            have,
            header_digest,
            body,
            at: now,
        });
    }

    /// The parked stream of `update_id` at `have` bytes, if one is still fresh.
    fn unpark(&mut self, update_id: &str, have: u64, now: Duration) -> Option<Parked> {
        self.parked
            .take()
            .filter(|p| p.update_id == update_id && p.have == have && now < p.at + PARKED_FOR)
    }
}
/// Headroom kept free on a filesystem besides what the update needs.
pub(crate) const SPACE_MARGIN: u64 = 1 << 20;

/// What the check promised about the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Want {
    pub(crate) update_id: String,
    pub(crate) size: Option<u64>,
    /// Expected SHA-256 (lowercase hex), when the backend gave one.
    pub(crate) sha256: Option<String>,
    pub(crate) version: Option<String>,
}

/// `download.json`: the update the files in the directory belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    want: Want,
    /// Set once `package.zip` is complete and its digest known.
    complete_sha256: Option<String>,
    size: Option<u64>,
}

/// A complete package file on disk.
#[derive(Debug, Clone)]
pub(crate) struct Downloaded {
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

fn load_meta(paths: &StatePaths) -> Option<Meta> {
    let data = fsutil::read_bounded(&paths.download_meta(), 64 * 1024).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The complete package for this update, if an earlier run left one.
pub(crate) fn ready(paths: &StatePaths, want: &Want) -> Option<Downloaded> {
    let m = load_meta(paths)?;
    if m.want.update_id != want.update_id {
        return None;
    }
    let sha = m.complete_sha256?;
    let size = fs::metadata(paths.package()).ok()?.len();
    if want.size.is_some_and(|s| s != size) || want.sha256.as_ref().is_some_and(|h| *h != sha) {
        return None;
    }
    Some(Downloaded {
        path: paths.package(),
        sha256: sha,
        size,
    })
}

/// Removes every download file (after an install, or for a package refused).
pub(crate) fn discard(paths: &StatePaths) {
    for p in [
        paths.download_part(),
        paths.package(),
        paths.download_meta(),
    ] {
        let _ = fs::remove_file(p);
    }
    let _ = fsutil::fsync_dir(&paths.update());
}

/// Bytes available to us on the filesystem holding `path` (or its nearest existing
/// ancestor), and that filesystem's id.
pub(crate) fn available(path: &Path) -> Option<(u64, u64)> {
    let s = fsutil::statvfs(&fsutil::nearest_existing(path)).ok()?;
    Some((
        (s.f_bavail as u64).saturating_mul(s.f_frsize as u64),
        s.f_fsid as u64,
    ))
}

/// Refuses with `Error::NoSpace` unless `state_need` bytes fit in `state_dir` and
/// `root_need` in `install.root` (together when they share a filesystem).
pub(crate) fn check_space(
    state_dir: &Path,
    state_need: u64,
    root: &Path,
    root_need: u64,
) -> Result<()> {
    let (Some((sa, sf)), Some((ra, rf))) = (available(state_dir), available(root)) else {
        log::warn!("cannot measure free space; going ahead");
        return Ok(());
    };
    let short = |what: String, need: u64, avail: u64| {
        Error::no_space(format!(
            "{what}: {} MiB needed, {} MiB free",
            need.div_ceil(1 << 20),
            avail / (1 << 20)
        ))
    };
    if sf == rf {
        let need = state_need
            .saturating_add(root_need)
            .saturating_add(SPACE_MARGIN);
        if need > sa {
            return Err(short(
                format!("{} and {}", state_dir.display(), root.display()),
                need,
                sa,
            ));
        }
        return Ok(());
    }
    if state_need.saturating_add(SPACE_MARGIN) > sa {
        return Err(short(state_dir.display().to_string(), state_need, sa));
    }
    if root_need.saturating_add(SPACE_MARGIN) > ra {
        return Err(short(root.display().to_string(), root_need, ra));
    }
    Ok(())
}

/// What the download step tells while it works (the pipeline hands it on to the
/// reporter).
pub(crate) enum Fetching {
    /// A download starts; its announced size (the check's `fileSize`).
    Started { size: Option<u64> },
    /// This many bytes of the package are on disk.
    Bytes(u64),
}

/// What the download step hands on: the package, opened.
pub(crate) struct Obtained {
    pub(crate) file: File,
    /// Its SHA-256 (lowercase hex).
    pub(crate) sha256: String,
    /// Its size when this step fetched it (None: an earlier run had).
    pub(crate) fetched: Option<u64>,
}

/// The download step: the package the check `c` announced, found complete on disk
/// or fetched (`on` is told the download's start and its bytes), then opened.
/// `Error::Interrupted`: paused, its work kept.
pub(crate) fn obtain(
    ctx: &Ctx,
    c: &UpdateCheck,
    session: Session,
    on: &dyn Fn(Fetching),
) -> Result<Obtained> {
    let want = Want {
        update_id: c.update_id.clone().unwrap_or_default(),
        size: c.file_size,
        sha256: super::checksum::expected_digest(c)?,
        version: c.latest_version.clone(),
    };
    let paths = StatePaths::new(&ctx.cfg.state_dir);
    let (pkg, fetched) = match ready(&paths, &want) {
        Some(p) => {
            log::info!("package {} already downloaded", want.update_id);
            (p, None)
        }
        None => {
            on(Fetching::Started { size: want.size });
            let started = ctx.clock.monotonic();
            let p = fetch(ctx, &paths, &want, session, &|n| on(Fetching::Bytes(n)))?;
            log::info!(
                "downloaded {} ({} bytes, sha256 {}) in {:.3} s",
                want.update_id,
                p.size,
                p.sha256,
                ctx.clock.monotonic().saturating_sub(started).as_secs_f64()
            );
            let size = p.size;
            (p, Some(size))
        }
    };
    let file = File::open(&pkg.path)
        .map_err(|e| Error::io(format!("opening {}", pkg.path.display()), e))?;
    Ok(Obtained {
        file,
        sha256: pkg.sha256,
        fetched,
    })
}

/// Downloads (or resumes) the package for `want` into `state_dir/update`, checking
/// size and digest; returns the complete file. Unfinished work stays for the next
/// run (and, paused on a server that cannot resume, its stream in `session`).
pub(crate) fn fetch(
    ctx: &Ctx,
    paths: &StatePaths,
    want: &Want,
    session: Session,
    on_progress: &dyn Fn(u64),
) -> Result<Downloaded> {
    let max = ctx.cfg.updates.max_package_size;
    if let Some(size) = want.size {
        if size > max {
            return Err(Error::PackageRejected(format!(
                "package of {size} bytes exceeds updates.max_package_size ({max})"
            )));
        }
    }
    fsutil::ensure_dir(&paths.update(), 0o700)?;
    if let Some(d) = ready(paths, want) {
        return Ok(d);
    }
    let meta = Meta {
        want: want.clone(),
        complete_sha256: None,
        size: None,
    };
    if load_meta(paths).map(|m| m.want) != Some(want.clone()) {
        // Another update's leftovers: start over.
        discard(paths);
        fsutil::atomic_write_json(&paths.download_meta(), &meta, 0o600)?;
    }
    let path = format!("/update/download/{}", percent_encode(&want.update_id));
    let mut job = Job {
        ctx,
        paths,
        want,
        session,
        header_digest: None,
        progress: Progress::new(ctx, want.size),
        on_progress,
    };
    let mut fails_without_progress = 0u32;
    for _ in 0..MAX_RESUMES {
        match attempt(&mut job, &path) {
            Ok(Some(done)) => {
                job.progress.finish();
                return Ok(done);
            }
            Ok(None) => fails_without_progress = 0,
            Err(Failure::Fatal(e)) => {
                job.progress.finish();
                return Err(e);
            }
            Err(Failure::Retry(why, progressed)) => {
                if progressed {
                    fails_without_progress = 0;
                } else {
                    fails_without_progress += 1;
                }
                log::warn!("download interrupted: {why}; resuming");
                if fails_without_progress >= ctx.cfg.backend.retry_attempts.max(1) {
                    job.progress.finish();
                    return Err(Error::unreachable(format!(
                        "download of {}: {why} (partial file kept; the next run resumes)",
                        want.update_id
                    )));
                }
                ctx.clock
                    .sleep(ctx.cfg.backend.retry_delay.min(Duration::from_secs(30)));
            }
        }
        if crate::signals::stop_requested() {
            job.progress.finish();
            return Err(Error::Interrupted);
        }
    }
    job.progress.finish();
    Err(Error::unreachable(format!(
        "download of {}: gave up after {MAX_RESUMES} resumes",
        want.update_id
    )))
}

enum Failure {
    /// Not worth retrying: a refusal, a local error, a signal.
    Fatal(Error),
    /// The connection broke; bool = some bytes arrived first.
    Retry(String, bool),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// What an attempt ends with: the complete package, None to start over at once, or
/// why it stopped.
type Attempted = std::result::Result<Option<Downloaded>, Failure>;

fn reject_and_discard(paths: &StatePaths, msg: String) -> Failure {
    discard(paths);
    Failure::Fatal(Error::PackageRejected(msg))
}

/// One download under way: what it is for, and what carries over between attempts.
struct Job<'a> {
    ctx: &'a Ctx<'a>,
    paths: &'a StatePaths,
    want: &'a Want,
    session: Session<'a>,
    /// The digest an answer's headers announced, checked at the end.
    header_digest: Option<String>,
    progress: Progress,
    on_progress: &'a dyn Fn(u64),
}

impl Job<'_> {
    /// The most bytes the package may have: its announced size, else the configured maximum.
    fn limit(&self) -> u64 {
        self.want
            .size
            .unwrap_or(self.ctx.cfg.updates.max_package_size)
    }
}

/// `download.part` as far as it goes: open for appending, its bytes already hashed.
struct Partial {
    file: File,
    hasher: digest::Context,
    have: u64,
}

impl Partial {
    /// Opens (or creates) the partial file, empties it if longer than `limit`, and
    /// hashes what an earlier run left: the digest covers the whole file.
    fn open(part: &Path, limit: u64) -> Result<Partial> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(part)
            .map_err(|e| Error::io(format!("opening {}", part.display()), e))?;
        let have = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", part.display()), e))?
            .len();
        let mut p = Partial {
            file,
            hasher: digest::Context::new(&digest::SHA256),
            have,
        };
        if have > limit {
            p.restart(part)?;
        }
        if p.have > 0 {
            let mut buf = vec![0u8; BUF];
            let mut prefix = (&p.file).take(p.have);
            loop {
                let k = prefix
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading {}", part.display()), e))?;
                if k == 0 {
                    break;
                }
                p.hasher.update(&buf[..k]);
            }
        }
        Ok(p)
    }

    /// Empties the file: the package is fetched from its first byte.
    fn restart(&mut self, part: &Path) -> Result<()> {
        truncate(&self.file, part)?;
        self.have = 0;
        self.hasher = digest::Context::new(&digest::SHA256);
        Ok(())
    }
}

/// One request: resume from what is on disk. Ok(None) = restart requested.
fn attempt(job: &mut Job, url_path: &str) -> Attempted {
    let (ctx, want) = (job.ctx, job.want);
    let part = job.paths.download_part();
    let mut p = Partial::open(&part, job.limit())?;
    let remaining = want.size.map(|s| s.saturating_sub(p.have)).unwrap_or(0);
    check_space(
        &ctx.cfg.state_dir,
        remaining,
        &ctx.cfg.install.root,
        want.size.unwrap_or(0),
    )?;
    if want.size == Some(p.have) && p.have > 0 {
        return finish(job, p).map(Some);
    }
    let now = ctx.clock.monotonic();
    if let Some(parked) = job.session.unpark(&want.update_id, p.have, now) {
        log::info!("download of {} goes on at {} bytes", want.update_id, p.have);
        job.header_digest = parked.header_digest;
        return stream(job, p, parked.body, false);
    }
    let Some(resp) = request(ctx, url_path, &mut p, &part)? else {
        return Ok(None);
    };
    check_announced(job, &resp, p.have)?;
    // A pause for the daemon's other steps drops the connection and resumes with
    // Range; a server that cannot resume keeps its connection parked instead.
    let resumable = resp.status == 206
        || resp
            .header("accept-ranges")
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    stream(job, p, Box::new(resp.into_reader()), resumable)
}

/// Asks for the package from the end of the partial file on, and matches the answer
/// to it: a 200 empties it, a 206 must start where it ends. None = ask again from
/// the first byte; any other status is the backend's refusal, a broken connection a
/// retry.
fn request(
    ctx: &Ctx,
    url_path: &str,
    p: &mut Partial,
    part: &Path,
) -> std::result::Result<Option<Streaming>, Failure> {
    let have = p.have;
    let mut headers = Vec::new();
    if have > 0 {
        headers.push(("Range", format!("bytes={have}-")));
    }
    let resp = match ctx.transport.get_streaming(ctx.clock, url_path, &headers) {
        Ok(r) => r,
        Err(Error::Unreachable { message, .. }) => return Err(Failure::Retry(message, false)),
        Err(e) => return Err(e.into()),
    };
    match resp.status {
        200 => {
            if have > 0 {
                log::info!("server ignored the range request; restarting the download");
                p.restart(part)?;
            }
        }
        206 if have > 0 => {
            let start = resp
                .header("content-range")
                .and_then(|v| v.strip_prefix("bytes ").map(str::to_string))
                .and_then(|v| {
                    v.split('-')
                        .next()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                });
            if start != Some(have) {
                let from = start.map_or_else(|| "?".to_string(), |s| s.to_string());
                log::warn!("206 for another range (from {from}, wanted {have}); restarting");
                p.restart(part)?;
                return Ok(None);
            }
        }
        416 => {
            log::warn!("range {have}- refused (416); restarting the download");
            p.restart(part)?;
            return Ok(None);
        }
        s => {
            // The backend's reason (`Cette mise à jour n'est plus active`), bounded.
            let mut body = Vec::new();
            let _ = resp.into_reader().take(16 * 1024).read_to_end(&mut body);
            return Err(Failure::Fatal(super::check::download_refusal(
                s, url_path, &body,
            )));
        }
    }
    Ok(Some(resp))
}

/// What the answer's headers announce, checked before a byte is written:
/// X-Checksum (the real backend), X-Checksum-SHA256 and X-Update-Version against
/// each other and the check, Content-Length against the expected size.
fn check_announced(job: &mut Job, resp: &Streaming, have: u64) -> std::result::Result<(), Failure> {
    let want = job.want;
    match super::checksum::check_download_headers(
        want.sha256.as_deref(),
        want.version.as_deref(),
        |name| resp.header(name),
    ) {
        Ok(Some(h)) => job.header_digest = Some(h),
        Ok(None) => {}
        Err(Error::PackageRejected(m)) => return Err(reject_and_discard(job.paths, m)),
        Err(e) => return Err(Failure::Fatal(e)),
    }
    let max = job.ctx.cfg.updates.max_package_size;
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let end = have.saturating_add(len);
        if want.size.is_some_and(|s| s != end) || end > max {
            return Err(reject_and_discard(
                job.paths,
                format!(
                    "server sends {end} bytes; expected {}",
                    want.size
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| format!("at most {max}"))
                ),
            ));
        }
    }
    Ok(())
}

/// Reads the body into the partial file, hashing it, until its end, a break, a stop,
/// a pause or a slow-rate abandonment.
fn stream(job: &mut Job, mut p: Partial, mut body: Box<dyn Read>, resumable: bool) -> Attempted {
    let (ctx, paths, want) = (job.ctx, job.paths, job.want);
    let max = ctx.cfg.updates.max_package_size;
    let limit = job.limit();
    let part = paths.download_part();
    let mut buf = vec![0u8; BUF];
    let started = p.have;
    let mut queued = p.have;
    let mut pace = Pace::new(ctx, p.have, job.session.pause_at);
    loop {
        if crate::signals::stop_requested() {
            let _ = p.file.sync_data();
            return Err(Error::Interrupted.into());
        }
        let (k, broken, early) = fill(&mut body, &mut buf, ctx.clock, pace.next_check());
        let at_end = k < buf.len() && broken.is_none() && !early;
        if k == 0 && at_end {
            break;
        }
        if p.have + k as u64 > limit {
            let why = match want.size {
                Some(s) => format!("package larger than its announced fileSize ({s} bytes)"),
                None => format!("package larger than updates.max_package_size ({max} bytes)"),
            };
            return Err(reject_and_discard(paths, why));
        }
        p.file
            .write_all(&buf[..k])
            .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
        p.hasher.update(&buf[..k]);
        p.have += k as u64;
        let have = p.have;
        if have - queued >= WRITEBACK_EVERY {
            start_writeback(&p.file, queued, have);
            queued = have;
        }
        job.progress.show(ctx, have);
        (job.on_progress)(have);
        journal::crash_after("download", have);
        if let Some(e) = broken {
            let _ = p.file.sync_data();
            return Err(Failure::Retry(
                format!("reading the body at byte {have}: {e}"),
                have > started,
            ));
        }
        if at_end {
            break;
        }
        if let Err(e) = pace.check(ctx, have, &want.update_id) {
            let _ = p.file.sync_data();
            if matches!(e, Error::Interrupted) && !resumable {
                let digest = job.header_digest.clone();
                let now = ctx.clock.monotonic();
                job.session.park(&want.update_id, digest, have, body, now);
            }
            return Err(Failure::Fatal(e));
        }
    }
    // The body ended by its own framing (Content-Length reached, last chunk, or a
    // close-delimited body closed cleanly: a cut connection is a read error, handled
    // above), so a short body is the server's whole package. Resuming would fetch it
    // again and again (a Range past its end, answered 200 or 416).
    if let Some(s) = want.size {
        if p.have < s {
            return Err(reject_and_discard(
                paths,
                format!(
                    "package smaller than its announced fileSize: the body ended at {} of {s} bytes",
                    p.have
                ),
            ));
        }
    }
    finish(job, p).map(Some)
}

/// Slow retrieval (TUF's "slow retrieval attack", or just a bad link): a download
/// that brings less than `updates.min_download_rate` bytes/s over a window of
/// `updates.slow_download_window` seconds is abandoned, its partial file kept; and
/// in the daemon it pauses at the session's `pause_at` so telemetry and revalidation run on
/// time, resuming (with `Range`) right after them.
struct Pace {
    window: Duration,
    min_bytes: u64,
    window_start: Duration,
    bytes_at_start: u64,
    pause_at: Option<Duration>,
}

impl Pace {
    fn new(ctx: &Ctx, have: u64, pause_at: Option<Duration>) -> Pace {
        let u = &ctx.cfg.updates;
        Pace {
            window: u.slow_download_window.max(Duration::from_secs(1)),
            min_bytes: u
                .min_download_rate
                .saturating_mul(u.slow_download_window.as_secs()),
            window_start: ctx.clock.monotonic(),
            bytes_at_start: have,
            pause_at,
        }
    }

    /// When the reader must come back even if its buffer is not full.
    fn next_check(&self) -> Option<Duration> {
        let w = (self.min_bytes > 0).then_some(self.window_start + self.window);
        match (w, self.pause_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check(&mut self, ctx: &Ctx, have: u64, id: &str) -> Result<()> {
        let now = ctx.clock.monotonic();
        if self.pause_at.is_some_and(|y| now >= y) {
            log::info!("download of {id} paused at {have} bytes for the daemon's other steps");
            return Err(Error::Interrupted);
        }
        if self.min_bytes > 0 && now >= self.window_start + self.window {
            let got = have.saturating_sub(self.bytes_at_start);
            if got < self.min_bytes {
                return Err(Error::unreachable(format!(
                    "download of {id} too slow: {got} bytes in {}s, under updates.min_download_rate ({} bytes/s); partial file kept, resumed at the next attempt",
                    self.window.as_secs(),
                    self.min_bytes / self.window.as_secs().max(1)
                )));
            }
            self.window_start = now;
            self.bytes_at_start = have;
        }
        Ok(())
    }
}

/// Reads until `buf` is full, the body ends (a short count) or breaks (the error,
/// with what arrived before it), a stop is requested, or `until` passes (the third
/// value is then true: not the end of the body): one write and one digest update
/// per buffer instead of one per TLS record (16 KiB).
fn fill(
    body: &mut impl Read,
    buf: &mut [u8],
    clock: &dyn crate::clock::Clock,
    until: Option<Duration>,
) -> (usize, Option<std::io::Error>, bool) {
    let mut n = 0;
    while n < buf.len() {
        match body.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e), false),
        }
        if crate::signals::stop_requested() {
            // Not the end of the body: the loop sees the stop before reading on.
            return (n, None, true);
        }
        if until.is_some_and(|u| clock.monotonic() >= u) {
            return (n, None, true);
        }
    }
    (n, None, false)
}

/// Asks the kernel to start writing `[from, to)` of the partial file to disk now,
/// without waiting: the disk works while the network does, so the fsync before the
/// rename finds little left to write (it took ~45 ms of a 50 MB download, now ~3 ms),
/// and dirty pages do not pile up in RAM. A hint only: errors are ignored, the fsync
/// decides.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its scalar arguments; the fd is open.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            off as _,
            len as _,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

fn truncate(file: &File, part: &Path) -> Result<()> {
    file.set_len(0)
        .map_err(|e| Error::io(format!("truncating {}", part.display()), e))
}

/// Digest check, fsync, rename to `package.zip`, record completion.
fn finish(job: &Job, p: Partial) -> std::result::Result<Downloaded, Failure> {
    let (paths, want) = (job.paths, job.want);
    let got = crate::hex::encode(p.hasher.finish().as_ref());
    for expected in [&want.sha256, &job.header_digest].into_iter().flatten() {
        if *expected != got {
            return Err(reject_and_discard(
                paths,
                format!("checksum mismatch: got sha256 {got}, expected {expected}"),
            ));
        }
    }
    p.file
        .sync_all()
        .map_err(|e| Error::io("syncing the download", e))?;
    drop(p.file);
    let dest = paths.package();
    fs::rename(paths.download_part(), &dest)
        .map_err(|e| Error::io(format!("renaming to {}", dest.display()), e))?;
    let dir = paths.update();
    fsutil::fsync_dir(&dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    let meta = Meta {
        want: want.clone(),
        complete_sha256: Some(got.clone()),
        size: Some(p.have),
    };
    fsutil::atomic_write_json(&paths.download_meta(), &meta, 0o600)?;
    Ok(Downloaded {
        path: dest,
        sha256: got,
        size: p.have,
    })
}

/// Progress on the terminal for a person (never in the daemon's log).
struct Progress {
    enabled: bool,
    total: Option<u64>,
    last: Option<Duration>,
    shown: bool,
}

impl Progress {
    fn new(ctx: &Ctx, total: Option<u64>) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress {
            enabled: ctx.interactive && tty,
            total,
            last: None,
            shown: false,
        }
    }
    fn show(&mut self, ctx: &Ctx, have: u64) {
        if !self.enabled {
            return;
        }
        let now = ctx.clock.monotonic();
        if self
            .last
            .is_some_and(|l| now.saturating_sub(l) < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        // The same line as the admin API's progress (phase, bytes, percent, ETA).
        crate::progress::bytes(have, self.total);
        eprint!(
            "\r{}\x1b[K",
            crate::progress::line(&crate::progress::snapshot())
        );
    }
    fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}
