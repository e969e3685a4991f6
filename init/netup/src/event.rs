//! What quilt-net says: one `event=... key=value` line per state change on
//! stdout, flushed at once (quilt-init reads the service's pipe and logs
//! each line with the boot time in front).

use std::io::Write;

/// Write one event line; newlines inside are dropped so it stays one line.
pub fn emit(args: core::fmt::Arguments<'_>) {
    let mut line = std::format!("{args}");
    line.retain(|c| c != '\n');
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// Log an event with `format!`-style arguments.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => { $crate::event::emit(format_args!($($arg)*)) };
}

/// A value for a `key="…"` field: no double quotes or newlines inside.
pub fn quoted(s: &str) -> String {
    s.replace(['"', '\n'], "'")
}
