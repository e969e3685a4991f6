//! What a job says: event lines on stdout (PID 1 logs each as its own,
//! with the boot time in front) and [`Report`]s as frames on fd 3 (PID 1
//! acts on them). Both are pipes PID 1 reads without blocking; a job that
//! writes faster than PID 1 reads waits here, never PID 1.

use quilt_proto::installer::{encode_report, Report, StoreUsage, REPORT_FD};
use std::io::Write;

/// Write one event line (`event=... key=value ...`).
pub fn event(args: core::fmt::Arguments<'_>) {
    let mut line = std::format!("{args}");
    // One line each, as PID 1 splits them.
    line.retain(|c| c != '\n');
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// Log an event with `format!`-style arguments.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => { $crate::out::event(format_args!($($arg)*)) };
}

/// Report what the store at `root` holds now (its chunk files' metadata
/// only), for PID 1's `Stats`; a store that cannot be measured is left
/// unreported, with a line saying why.
pub fn store_usage(root: &std::path::Path) {
    match quilt_store::usage(root) {
        Ok(u) => report(&Report::Store(StoreUsage {
            chunks: u.chunks,
            bytes: u.bytes,
        })),
        Err(e) => event!(
            "event=store-usage-unknown error=\"{}\"",
            unquoted(&e.to_string())
        ),
    }
}

/// Send a report to PID 1 (dropped, with a line saying so, if it would not
/// fit a frame).
pub fn report(r: &Report) {
    let Some(frame) = encode_report(r) else {
        event!("event=installer-report-dropped reason=\"too large for a frame\"");
        return;
    };
    // SAFETY: fd 3 is the report pipe PID 1 set up for this process (or
    // closed, and the write fails); it is borrowed only for this call.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(i32::from(REPORT_FD)) };
    let mut rest = frame.as_slice();
    while !rest.is_empty() {
        match rustix::io::write(fd, rest) {
            Ok(0) | Err(_) => return,
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
        }
    }
}

/// A reason for a `reason="…"` field: no double quotes inside.
pub fn unquoted(s: &str) -> String {
    s.replace('"', "'")
}
