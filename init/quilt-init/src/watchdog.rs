//! The hardware watchdog: fed from the event loop at a third of its
//! timeout, so a wedged init stops feeding and the board resets. Feeding
//! stops for good only when init has chosen to reboot.

use crate::clock::Millis;
use crate::event;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

// From <linux/watchdog.h>: _IOWR('W', 6, int) and _IOR('W', 7, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// When to feed: pure logic, so it is tested without a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feeder {
    interval_ms: u64,
    next: Millis,
    stopped: bool,
}

impl Feeder {
    /// Feed every third of `timeout_s`, first at `now`.
    pub fn new(timeout_s: u32, now: Millis) -> Feeder {
        let interval_ms = (u64::from(timeout_s.max(1)) * 1000 / 3).max(100);
        Feeder {
            interval_ms,
            next: now,
            stopped: false,
        }
    }

    /// The deadline by which the loop must call [`Feeder::tick`] again.
    pub fn deadline(&self) -> Option<Millis> {
        (!self.stopped).then_some(self.next)
    }

    /// Called by the event loop whenever it wakes: feed if due.
    pub fn tick(&mut self, now: Millis) -> bool {
        if self.stopped || now < self.next {
            return false;
        }
        self.next = now.after(self.interval_ms);
        true
    }

    /// Deliberate reboot: never feed again, so a hang on the way down still
    /// ends in a reset.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// The feeding interval.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
}

/// An open watchdog device and its feeding schedule.
pub struct Watchdog {
    fd: OwnedFd,
    /// Public so the event loop can ask for the next deadline.
    pub feeder: Feeder,
}

impl Watchdog {
    /// Open the device if it exists; program `timeout_s` unless 0.
    pub fn open(device: &str, timeout_s: u32) -> Option<Watchdog> {
        let fd = match rustix::fs::open(device, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return None,
            Err(e) => {
                event!("event=watchdog-open-failed device={} error={}", device, e);
                return None;
            }
        };
        let raw = fd.as_raw_fd();
        if timeout_s > 0 {
            let mut t = libc::c_int::try_from(timeout_s).unwrap_or(libc::c_int::MAX);
            // SAFETY: `raw` is an open watchdog fd; the ioctl reads and writes one int at `&mut t`.
            if unsafe { libc::ioctl(raw, WDIOC_SETTIMEOUT as _, &mut t) } != 0 {
                event!(
                    "event=watchdog-settimeout-failed device={} timeout_s={}",
                    device,
                    timeout_s
                );
            }
        }
        let mut actual: libc::c_int = 0;
        // SAFETY: as above; the ioctl writes one int to `&mut actual`.
        let got = unsafe { libc::ioctl(raw, WDIOC_GETTIMEOUT as _, &mut actual) } == 0;
        let timeout_s = if got && actual > 0 {
            actual.unsigned_abs()
        } else {
            timeout_s.max(30)
        };
        let feeder = Feeder::new(timeout_s, Millis::now());
        event!(
            "event=watchdog-armed device={} timeout_s={} feed_ms={}",
            device,
            timeout_s,
            feeder.interval_ms()
        );
        Some(Watchdog { fd, feeder })
    }

    /// Feed if due.
    pub fn tick(&mut self, now: Millis) {
        if self.feeder.tick(now) {
            let _ = rustix::io::write(&self.fd, b"\0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_at_a_third_of_the_timeout() {
        let mut f = Feeder::new(30, Millis(0));
        assert!(f.tick(Millis(0)));
        assert!(!f.tick(Millis(9_999)));
        assert!(f.tick(Millis(10_000)));
        assert_eq!(f.deadline(), Some(Millis(20_000)));
    }

    #[test]
    fn a_loop_that_stops_ticking_stops_feeding() {
        // Feeding only ever happens inside tick(): a hung loop that never
        // calls it again leaves the last feed at t=0, and the device's
        // 3 s timeout expires at t=3000 with nothing having fed it.
        let mut f = Feeder::new(3, Millis(0));
        let mut fed_at = vec![];
        for now in (0..=2_500).step_by(100) {
            if f.tick(Millis(now)) {
                fed_at.push(now);
            }
        }
        assert_eq!(fed_at, vec![0, 1000, 2000]);
        // The loop hangs at t=2500: no tick, no feed, though one is due.
        assert!(f.deadline().is_some_and(|d| d <= Millis(3000)));
    }

    #[test]
    fn deliberate_reboot_stops_feeding_for_good() {
        let mut f = Feeder::new(3, Millis(0));
        assert!(f.tick(Millis(0)));
        f.stop();
        assert_eq!(f.deadline(), None);
        assert!(!f.tick(Millis(1_000_000)));
    }
}
