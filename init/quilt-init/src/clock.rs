//! Time as PID 1 sees it: monotonic instants for deadlines, boot time for logs.

use rustix::time::{clock_gettime, ClockId, Timespec};

/// Milliseconds since boot on `CLOCK_MONOTONIC`: deadlines and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Now.
    pub fn now() -> Millis {
        Millis(ts_millis(clock_gettime(ClockId::Monotonic)))
    }

    /// `self + ms`, saturating.
    pub fn after(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if negative.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// As a timespec for an absolute `CLOCK_MONOTONIC` timer.
    pub fn to_timespec(self) -> Timespec {
        Timespec {
            tv_sec: i64::try_from(self.0 / 1000).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from((self.0 % 1000) * 1_000_000).unwrap_or(0),
        }
    }
}

fn ts_millis(t: Timespec) -> u64 {
    let s = u64::try_from(t.tv_sec).unwrap_or(0);
    let ns = u64::try_from(t.tv_nsec).unwrap_or(0);
    s.saturating_mul(1000).saturating_add(ns / 1_000_000)
}

/// Microseconds since boot on `CLOCK_BOOTTIME`, the clock of the `t=` field
/// in every log line (it matches the kernel's own timestamps).
pub fn boot_micros() -> u64 {
    let t = clock_gettime(ClockId::Boottime);
    let s = u64::try_from(t.tv_sec).unwrap_or(0);
    let ns = u64::try_from(t.tv_nsec).unwrap_or(0);
    s.saturating_mul(1_000_000).saturating_add(ns / 1000)
}
