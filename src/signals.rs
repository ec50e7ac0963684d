//! SIGTERM/SIGINT/SIGHUP as flags the loop polls; sleeps that a signal cuts short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// Set by the admin listener's thread when it hands the loop an action.
static WAKE: AtomicBool = AtomicBool::new(false);

/// Cuts the daemon's sleep short (an admin action waits), within one sleep slice.
pub(crate) fn wake() {
    WAKE.store(true, Ordering::SeqCst);
}

/// True once per `wake`: reading it clears it.
pub(crate) fn take_wake() -> bool {
    WAKE.swap(false, Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// Installs the handlers (without SA_RESTART, so blocking sleeps return early). An
/// error names the signal: without its handler the daemon could not stop cleanly.
pub(crate) fn install() -> std::io::Result<()> {
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

/// Sleeps up to `d`, returning early when a stop or reload is requested.
pub(crate) fn sleep_interruptible(d: Duration) {
    let end = Instant::now() + d;
    loop {
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
        // Slices bound the latency of a signal that lands between the check and the
        // sleep; nanosleep itself returns at once (EINTR) on a signal.
        let slice = (end - now).min(Duration::from_millis(200));
        let ts = libc::timespec {
            // `as _`: the field's own type (libc deprecates naming `time_t` on musl); the
            // slice is at most 0.5 s, so nothing is truncated.
            tv_sec: slice.as_secs() as _,
            tv_nsec: slice.subsec_nanos() as libc::c_long,
        };
        // SAFETY: nanosleep with a valid timespec and no remainder pointer.
        unsafe {
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}
