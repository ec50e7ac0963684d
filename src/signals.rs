//! SIGTERM/SIGINT/SIGHUP as flags the loop polls; sleeps that a signal cuts short.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// Set (1) by the admin listener's thread when it hands the loop an action; a futex
/// word on Linux, so that setting it also ends the loop's sleep at once.
static WAKE: AtomicU32 = AtomicU32::new(0);

/// Cuts the daemon's sleep short (an admin action waits): at once on Linux, else
/// within one sleep slice.
pub(crate) fn wake() {
    WAKE.store(1, Ordering::SeqCst);
    #[cfg(target_os = "linux")]
    // SAFETY: FUTEX_WAKE on a valid, static 32-bit atomic; no other pointer is read.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// True once per `wake`: reading it clears it.
pub(crate) fn take_wake() -> bool {
    WAKE.swap(0, Ordering::SeqCst) != 0
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
            || WAKE.load(Ordering::SeqCst) != 0
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
        // A futex wait rather than nanosleep so that `wake` ends it (an admin apply
        // starts at once instead of up to 200 ms later: scripts/bench_admin_load.sh);
        // it returns at once if WAKE is already set, and on a signal (EINTR) as well.
        #[cfg(target_os = "linux")]
        // SAFETY: FUTEX_WAIT on a valid, static 32-bit atomic with a valid timespec.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                0u32,
                &ts as *const libc::timespec,
            );
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: nanosleep with a valid timespec and no remainder pointer.
        unsafe {
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}
