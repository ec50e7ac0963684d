//! SIGTERM/SIGINT/SIGHUP as flags the loop polls; sleeps that a signal cuts short.
//!
//! The flags are the truth; a self-pipe is only the doorbell: the handler and `wake`
//! write a byte to it after setting their flag, and the sleep polls its read end, so
//! a signal (on whichever thread it lands) or an admin action ends the sleep at once.

use crate::self_pipe;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// Set by the admin listener's thread when it hands the loop an action.
static WAKE: AtomicBool = AtomicBool::new(false);
/// The self-pipe's ends (non-blocking), -1 until `install` made it.
static PIPE_R: AtomicI32 = AtomicI32::new(-1);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

/// Rings the doorbell: one byte to the self-pipe (a full pipe already rings).
/// Async-signal-safe: one write(2) on a non-blocking pipe.
fn ring() {
    self_pipe::ring(PIPE_W.load(Ordering::SeqCst));
}

/// Ends the daemon's sleep at once (an admin action waits).
pub(crate) fn wake() {
    WAKE.store(true, Ordering::SeqCst);
    ring();
}

/// True once per `wake`: reading it clears it.
pub(crate) fn take_wake() -> bool {
    WAKE.swap(false, Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: atomic stores and one write(2), with errno
    // kept for the code the signal interrupted.
    // SAFETY: errno is thread-local; reading and restoring it is what handlers do.
    let errno = unsafe { *libc::__errno_location() };
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
    ring();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the handlers (without SA_RESTART, so blocking sleeps return early). An
/// error names the signal: without its handler the daemon could not stop cleanly.
/// An error making the self-pipe is logged: sleeps then end within 200 ms slices.
pub(crate) fn install() -> std::io::Result<()> {
    if PIPE_W.load(Ordering::SeqCst) < 0 {
        match self_pipe::open() {
            Ok((r, w)) => {
                PIPE_R.store(r, Ordering::SeqCst);
                PIPE_W.store(w, Ordering::SeqCst);
            }
            Err(e) => log::warn!("signals: self-pipe: {e}"),
        }
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a plain handler is valid; the handler only
        // touches atomics.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(e.kind(), format!("signal {sig}: {e}")));
        }
    }
    Ok(())
}

/// True once SIGTERM or SIGINT arrived.
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// True once per SIGHUP: reading it clears it.
pub(crate) fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// Sleeps up to `d`, returning early when a stop, a reload or a wake is requested.
pub(crate) fn sleep_interruptible(d: Duration) {
    let end = Instant::now() + d;
    let pipe = PIPE_R.load(Ordering::SeqCst);
    loop {
        // Drained before the flags are read: a ring after this point stays in the
        // pipe and ends the poll below at once.
        if pipe >= 0 {
            self_pipe::drain(pipe);
        }
        if STOP.load(Ordering::SeqCst)
            || RELOAD.load(Ordering::SeqCst)
            || WAKE.load(Ordering::SeqCst)
        {
            return;
        }
        let now = Instant::now();
        if now >= end {
            return;
        }
        if pipe >= 0 {
            // The doorbell closes the race between the check and the sleep, so no
            // slices: one poll (an int of ms: no time_t anywhere), rounded up so that
            // a sub-millisecond rest does not spin.
            let ms = (end - now).as_micros().div_ceil(1000).min(3_600_000) as libc::c_int;
            let mut p = libc::pollfd {
                fd: pipe,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            unsafe { libc::poll(&mut p, 1, ms) };
            continue;
        }
        // Without the pipe, slices bound the latency of a signal that lands between
        // the check and the sleep (or on another thread); nanosleep itself returns at
        // once (EINTR) on a signal to this thread.
        let slice = (end - now).min(Duration::from_millis(200));
        let ts = libc::timespec {
            // `as _`: the field's own type (libc deprecates naming `time_t` on musl); the
            // slice is at most 0.2 s, so nothing is truncated.
            tv_sec: slice.as_secs() as _,
            tv_nsec: slice.subsec_nanos() as libc::c_long,
        };
        // SAFETY: nanosleep with a valid timespec and no remainder pointer.
        unsafe {
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}
