//! PID 1's log: one `key=value` line per state change, to the console,
//! `/dev/kmsg` and an in-memory ring that survives a lost console.
//!
//! The console is written without blocking for long: a console that
//! takes no bytes for [`CONSOLE_WAIT_MS`] (a serial line held by XOFF, a
//! stuck UART) makes PID 1 drop console lines, counted and reported once
//! it drains, without waiting again meanwhile. `/dev/kmsg`, the ring and
//! `quilt events` still get every line.

use crate::ring::Ring;
use core::fmt::{self, Write as _};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// Size of init's own log ring.
const INIT_RING: usize = 16 * 1024;

struct Sinks {
    console: Option<OwnedFd>,
    kmsg: Option<OwnedFd>,
    ring: Ring<INIT_RING>,
    /// Lines kept for `quilt events` subscribers until the loop sends them.
    tap: Option<Vec<String>>,
    /// Lines the tap could not keep.
    tap_dropped: u64,
    /// Console writes dropped since the console last took one.
    console_dropped: u64,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    console: None,
    kmsg: None,
    ring: Ring::new(),
    tap: None,
    tap_dropped: 0,
    console_dropped: 0,
});

/// Most lines held for event subscribers between two loop turns.
const TAP_LINES: usize = 256;

/// Start or stop keeping lines for event subscribers.
pub fn tap(on: bool) {
    if let Ok(mut s) = SINKS.lock() {
        match (on, s.tap.is_some()) {
            (true, false) => s.tap = Some(Vec::new()),
            (false, true) => s.tap = None,
            _ => {}
        }
    }
}

/// The lines kept since the last call, and how many were dropped.
pub fn take_tapped() -> (Vec<String>, u64) {
    let Ok(mut s) = SINKS.lock() else {
        return (Vec::new(), 0);
    };
    let dropped = core::mem::take(&mut s.tap_dropped);
    let lines = s.tap.as_mut().map(core::mem::take).unwrap_or_default();
    (lines, dropped)
}

/// Start writing to the console (`/dev/console` once devtmpfs is up).
pub fn set_console(fd: OwnedFd) {
    if let Ok(mut s) = SINKS.lock() {
        s.console = Some(fd);
    }
}

/// Start copying every line to `/dev/kmsg`.
pub fn set_kmsg(fd: OwnedFd) {
    if let Ok(mut s) = SINKS.lock() {
        s.kmsg = Some(fd);
    }
}

/// A line buffer that never allocates; an overlong line ends in `…`.
#[derive(Default)]
pub struct Line {
    text: heapless::String<512>,
    cut: bool,
}

impl Line {
    /// An empty line.
    pub fn new() -> Line {
        Line::default()
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            // Leave room for the ellipsis (3 bytes).
            if self.cut || self.text.len() + c.len_utf8() > 509 {
                if !self.cut {
                    self.cut = true;
                    let _ = self.text.push('…');
                }
                return Ok(());
            }
            let _ = self.text.push(c);
        }
        Ok(())
    }
}

/// Longest PID 1 waits for the console to take a line before it drops
/// console output (a working UART drains its buffer far sooner).
const CONSOLE_WAIT_MS: u16 = 100;

/// What became of a write to a non-blocking fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    /// All of it.
    All,
    /// The fd would have blocked: the rest is dropped.
    Dropped,
}

/// Write `parts` to the non-blocking `fd`; when it would block, wait for
/// it at most `wait_ms` in all, then drop the rest.
fn write_or_drop(fd: BorrowedFd<'_>, parts: &[&[u8]], wait_ms: u16) -> Wrote {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(u64::from(wait_ms));
    for p in parts {
        let mut data = *p;
        while !data.is_empty() {
            match rustix::io::write(fd, data) {
                Ok(0) => return Wrote::Dropped,
                Ok(n) => data = data.get(n..).unwrap_or(&[]),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Wrote::Dropped;
                    }
                    let mut fds = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::OUT,
                    )];
                    let ts = rustix::time::Timespec {
                        tv_sec: 0,
                        tv_nsec: i64::try_from(left.as_nanos()).unwrap_or(0),
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&ts));
                }
                Err(_) => return Wrote::Dropped,
            }
        }
    }
    Wrote::All
}

/// Write to the console, or count the drop; after drops, say how many
/// first once it takes writes again.
fn to_console(s: &mut Sinks, parts: &[&[u8]]) {
    let Some(fd) = s.console.as_ref() else {
        return;
    };
    if s.console_dropped > 0 {
        let mut note: heapless::String<96> = heapless::String::new();
        let _ = writeln!(
            note,
            "quilt: console: {} writes dropped while it was blocked",
            s.console_dropped
        );
        // Dropping already: no waiting until it takes a write again.
        if write_or_drop(fd.as_fd(), &[note.as_bytes()], 0) == Wrote::Dropped {
            s.console_dropped += 1;
            return;
        }
        s.console_dropped = 0;
    }
    if write_or_drop(fd.as_fd(), parts, CONSOLE_WAIT_MS) == Wrote::Dropped {
        s.console_dropped += 1;
    }
}

/// Log one init event: `quilt: t=<boot seconds> <args>`.
pub fn event(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let t = crate::clock::boot_micros();
    let _ = write!(line, "quilt: t={}.{:06} ", t / 1_000_000, t % 1_000_000);
    let _ = line.write_fmt(args);
    emit(line.as_str());
}

/// Write a finished line to every sink.
pub fn emit(text: &str) {
    let Ok(mut s) = SINKS.lock() else { return };
    s.ring.write(text.as_bytes());
    s.ring.write(b"\n");
    let full = s.tap.as_ref().is_some_and(|t| t.len() >= TAP_LINES);
    if full {
        s.tap_dropped += 1;
    } else if let Some(t) = s.tap.as_mut() {
        t.push(text.to_owned());
    }
    to_console(&mut s, &[text.as_bytes(), b"\n"]);
    if let Some(fd) = s.kmsg.as_ref() {
        // One write is one kmsg record; <6> is KERN_INFO.
        let mut rec: heapless::Vec<u8, 520> = heapless::Vec::new();
        let _ = rec.extend_from_slice(b"<6>");
        let _ = rec.extend_from_slice(text.as_bytes().get(..512).unwrap_or(text.as_bytes()));
        let _ = rustix::io::write(fd.as_fd(), &rec);
    }
}

/// Write raw service output to the console only (kmsg would rate-limit it).
pub fn console_raw(parts: &[&[u8]]) {
    let Ok(mut s) = SINKS.lock() else { return };
    to_console(&mut s, parts);
}

/// Log an init event with `format!`-style arguments.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => { $crate::log::event(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pipe::{pipe_with, PipeFlags};

    #[test]
    fn a_full_console_drops_and_counts_instead_of_waiting() {
        let (r, w) = pipe_with(PipeFlags::NONBLOCK).unwrap();
        let mut s = Sinks {
            console: Some(w),
            kmsg: None,
            ring: Ring::new(),
            tap: None,
            tap_dropped: 0,
            console_dropped: 0,
        };
        // Fill the pipe as XOFF would leave a tty: no reader.
        let chunk = [b'x'; 4096];
        let mut filled = 0usize;
        while let Ok(n) = rustix::io::write(s.console.as_ref().unwrap(), &chunk) {
            filled += n;
        }
        assert!(filled > 0);
        let t0 = std::time::Instant::now();
        for _ in 0..100 {
            to_console(&mut s, &[b"event=x", b"\n"]);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "it waited"
        );
        assert_eq!(s.console_dropped, 100);
        // Drained: the next line says how many were dropped, then itself.
        let mut buf = vec![0u8; filled];
        let mut got = 0;
        while got < filled {
            got += rustix::io::read(&r, &mut buf[got..]).unwrap();
        }
        to_console(&mut s, &[b"event=y\n"]);
        assert_eq!(s.console_dropped, 0);
        let mut tail = [0u8; 128];
        let n = rustix::io::read(&r, &mut tail).unwrap();
        let text = core::str::from_utf8(&tail[..n]).unwrap();
        assert_eq!(
            text,
            "quilt: console: 100 writes dropped while it was blocked\nevent=y\n"
        );
    }
}
