//! The output of a command the agent runs (a health check), shown labelled: every
//! line goes to our stderr as `[health `cmd`] line`, so an operator watching `update`
//! (or the daemon's log) knows whose words they are.
//!
//! Bounded: lines are cut at `MAX_LINE` bytes and at most `MAX_LINES` per stream are
//! shown (the rest counted). Readers are detached threads: a grandchild that keeps the
//! pipe open must not hold the agent, so `finish` waits a bounded time only.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest line shown, in bytes.
pub(crate) const MAX_LINE: u64 = 1024;
/// Most lines shown per stream of one command.
pub(crate) const MAX_LINES: usize = 50;

/// The readers of one child's stdout and stderr.
pub(crate) struct Forwarders {
    readers: Vec<JoinHandle<()>>,
}

/// Starts forwarding the piped stdout/stderr of `child` (those not piped are skipped).
pub(crate) fn forward(child: &mut Child, label: &str) -> Forwarders {
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    let readers = streams
        .into_iter()
        .flatten()
        .map(|s| {
            let label = label.to_string();
            std::thread::spawn(move || copy_lines(s, &label, &mut std::io::stderr()))
        })
        .collect();
    Forwarders { readers }
}

impl Forwarders {
    /// Waits up to `wait` for both streams to end (they do when the child exits,
    /// unless it left a process behind holding them).
    pub(crate) fn finish(self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.readers.iter().all(|r| r.is_finished()) {
            if Instant::now() >= deadline {
                return; // left running, detached
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Copies `src` to `out` line by line with the label, bounded; write errors (a closed
/// stderr) are ignored: the health verdict does not depend on them.
pub(crate) fn copy_lines(src: impl Read, label: &str, out: &mut dyn Write) {
    let mut r = BufReader::new(src);
    let mut buf = Vec::new();
    let mut lines = 0usize;
    loop {
        buf.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line longer than MAX_LINE: drop the rest of it.
        if buf.last() != Some(&b'\n') && buf.len() as u64 == MAX_LINE {
            let mut rest = Vec::new();
            let _ = (&mut r).take(1 << 20).read_until(b'\n', &mut rest);
        }
        lines += 1;
        if lines <= MAX_LINES {
            let text = String::from_utf8_lossy(&buf);
            let _ = writeln!(
                out,
                "[{label}] {}",
                crate::redact::server_text(text.trim_end())
            );
        }
    }
    if lines > MAX_LINES {
        let _ = writeln!(
            out,
            "[{label}] … {} more line(s) not shown",
            lines - MAX_LINES
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_labelled_cut_and_counted() {
        let mut input = String::from("healthy\n\x1b[31mred\x1b[0m\n");
        input.push_str(&"x".repeat(5000));
        input.push('\n');
        for i in 0..60 {
            input.push_str(&format!("l{i}\n"));
        }
        let mut out = Vec::new();
        copy_lines(input.as_bytes(), "health `bin/health`", &mut out);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "[health `bin/health`] healthy");
        assert!(!lines[1].contains('\x1b'), "{}", lines[1]);
        assert!(lines[2].len() < 400, "long line cut");
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert!(lines[MAX_LINES].contains("13 more line(s)"), "{out}");
    }
}
