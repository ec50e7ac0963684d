//! The listener's one thread: `poll(2)` over the socket and at most `MAX_CONNS`
//! connections, each read without blocking and bounded in size and time, so one
//! slow client cannot hold the others up. One request per connection.

use super::http::{parse_request, Response, MAX_BODY, MAX_HEAD};
use super::routes::{Api, Outcome, Waiting};
use crate::http_target::Listen;
use crate::self_pipe;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Connections served at once (reading, or waiting for the loop); more get 503.
pub(crate) const MAX_CONNS: usize = 8;
/// Time a client has to send its whole request.
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// Time an answer may take to write.
const WRITE_TIME: Duration = Duration::from_secs(2);

/// The listening socket.
pub(crate) enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Socket {
    /// Binds `l`; a stale Unix socket file is replaced (never another kind of file).
    pub(crate) fn bind(l: &Listen) -> std::io::Result<Socket> {
        let s = match l {
            Listen::Tcp(a) => Socket::Tcp(TcpListener::bind(a)?),
            Listen::Unix(p) => {
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(p)?;
                }
                Socket::Unix(UnixListener::bind(p)?)
            }
        };
        match &s {
            Socket::Tcp(t) => t.set_nonblocking(true)?,
            Socket::Unix(u) => u.set_nonblocking(true)?,
        }
        Ok(s)
    }

    fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(t) => t.as_raw_fd(),
            Socket::Unix(u) => u.as_raw_fd(),
        }
    }

    fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Socket::Tcp(t) => Stream::Tcp(t.accept()?.0),
            Socket::Unix(u) => Stream::Unix(u.accept()?.0),
        })
    }
}

/// One client connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(t) => t.as_raw_fd(),
            Stream::Unix(u) => u.as_raw_fd(),
        }
    }

    fn blocking_for_write(&self) {
        let _ = match self {
            Stream::Tcp(t) => t
                .set_nonblocking(false)
                .and_then(|_| t.set_write_timeout(Some(WRITE_TIME))),
            Stream::Unix(u) => u
                .set_nonblocking(false)
                .and_then(|_| u.set_write_timeout(Some(WRITE_TIME))),
        };
    }

    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(t) => t.set_nonblocking(true),
            Stream::Unix(u) => u.set_nonblocking(true),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(t) => t.read(b),
            Stream::Unix(u) => u.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(t) => t.write(b),
            Stream::Unix(u) => u.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    deadline: Instant,
    /// Set once the request is read: its answer, or the loop's action it waits for.
    waiting: Option<Waiting>,
    /// The client went away.
    closed: bool,
}

/// Answers and closes.
fn answer(mut stream: Stream, r: &Response) {
    stream.blocking_for_write();
    let _ = r.write_to(&mut stream);
    if let Stream::Tcp(t) = &stream {
        let _ = t.shutdown(std::net::Shutdown::Write);
    }
}

/// The read end of a non-blocking pipe whose write end `shared::WAKE_FD` names (a job's
/// answer writes to it), or None if it cannot be made (answers then wait for the poll's
/// timeout).
fn wake_pipe() -> Option<RawFd> {
    match self_pipe::open() {
        Ok((r, w)) => {
            super::shared::WAKE_FD.store(w, std::sync::atomic::Ordering::Relaxed);
            Some(r)
        }
        Err(e) => {
            log::warn!("admin API: wake-up pipe: {e}");
            None
        }
    }
}

/// Puts this thread (the listener's) at nice 19: it must not take CPU from an
/// update, and a page polling once a second does not need it sooner. Linux's nice is
/// per thread, so the loop keeps its own; a failure only costs that preference.
fn lower_priority() {
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: setpriority on our own thread id; no memory is involved.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, 19) };
    if r != 0 {
        log::warn!(
            "admin API: lowering its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Serves until the process ends.
pub(crate) fn serve(sock: Socket, mut api: Api) {
    lower_priority();
    let mut conns: Vec<Conn> = Vec::new();
    let mut chunk = [0u8; 2048];
    let wake = wake_pipe();
    loop {
        let mut fds = vec![libc::pollfd {
            fd: sock.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for c in &conns {
            fds.push(libc::pollfd {
                fd: c.stream.fd(),
                // A waiting connection is only watched for its deadline and answer.
                events: if c.waiting.is_some() { 0 } else { libc::POLLIN },
                revents: 0,
            });
        }
        if let Some(w) = wake {
            fds.push(libc::pollfd {
                fd: w,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // With the wake-up pipe, the 100 ms only times out a job; without it, it also
        // finds its answer.
        let timeout = if conns.iter().any(|c| c.waiting.is_some()) {
            100
        } else if conns.is_empty() {
            -1
        } else {
            250
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                log::error!("admin API: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        if let (Some(w), Some(p)) = (wake, fds.get(conns.len() + 1)) {
            if p.revents != 0 {
                self_pipe::drain(w);
            }
        }
        let now = Instant::now();
        // Read what the clients sent (their pollfds follow the socket's, in order).
        for (i, c) in conns.iter_mut().enumerate() {
            if c.waiting.is_some() || fds[i + 1].revents == 0 {
                continue;
            }
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.buf.extend_from_slice(&chunk[..k]);
                        if c.buf.len() > MAX_HEAD + MAX_BODY {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
            if c.closed {
                continue;
            }
            c.waiting = match parse_request(&c.buf) {
                Ok(None) => None,
                Ok(Some(req)) => Some(match api.handle(&req) {
                    Outcome::Now(r) => Waiting::answered(r),
                    Outcome::Wait(w) => w,
                }),
                Err(e) => Some(Waiting::answered(Response::error(e.status, e.message))),
            };
        }
        // Answer what is ready, time out the rest.
        let mut i = 0;
        while i < conns.len() {
            let c = &mut conns[i];
            let ready = if c.closed {
                Some(None)
            } else if let Some(w) = c.waiting.as_mut() {
                w.poll(&mut api, now).map(Some)
            } else if now >= c.deadline {
                Some(Some(Response::error(408, "request not sent within 5 s")))
            } else {
                None
            };
            match ready {
                None => i += 1,
                Some(r) => {
                    let c = conns.swap_remove(i);
                    if let Some(r) = r {
                        answer(c.stream, &r);
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            loop {
                match sock.accept() {
                    Ok(s) => {
                        if conns.len() >= MAX_CONNS {
                            // Best effort: a client that does not read loses it.
                            let _ = s.set_nonblocking();
                            let mut s = s;
                            let _ = Response::error(503, "too many connections; try again")
                                .write_to(&mut s);
                            continue;
                        }
                        if s.set_nonblocking().is_err() {
                            continue;
                        }
                        conns.push(Conn {
                            stream: s,
                            buf: Vec::with_capacity(1024),
                            deadline: now + REQUEST_TIME,
                            waiting: None,
                            closed: false,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
}
