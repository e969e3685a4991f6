//! PID 1's log: one `key=value` line per state change, to the console,
//! `/dev/kmsg` and an in-memory ring that survives a lost console.

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
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    console: None,
    kmsg: None,
    ring: Ring::new(),
    tap: None,
    tap_dropped: 0,
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

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) | Err(_) => return,
            Ok(n) => data = data.get(n..).unwrap_or(&[]),
        }
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
    if let Some(fd) = s.console.as_ref() {
        write_all(fd.as_fd(), text.as_bytes());
        write_all(fd.as_fd(), b"\n");
    }
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
    let Ok(s) = SINKS.lock() else { return };
    if let Some(fd) = s.console.as_ref() {
        for p in parts {
            write_all(fd.as_fd(), p);
        }
    }
}

/// Log an init event with `format!`-style arguments.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => { $crate::log::event(format_args!($($arg)*)) };
}
