//! A self-pipe: a doorbell that ends a `poll` on its read end from another thread or
//! a signal handler. The signals' sleep and the admin listener each own one; what
//! happened is in their own flags or queues, the byte only wakes the poller.

use std::os::fd::RawFd;

/// Makes a non-blocking, close-on-exec pipe: `(read end, write end)`.
pub(crate) fn open() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Rings: one byte to the write end `fd` (a full pipe already rings; -1: no pipe).
/// Async-signal-safe: one write(2) on a non-blocking pipe.
pub(crate) fn ring(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: one byte from a valid buffer to a non-blocking pipe we made.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Empties the read end `fd`.
pub(crate) fn drain(fd: RawFd) {
    let mut b = [0u8; 64];
    // SAFETY: reads into a valid 64-byte buffer from a non-blocking pipe we made.
    while unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) } > 0 {}
}
