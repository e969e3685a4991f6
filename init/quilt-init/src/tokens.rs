//! Every epoll token PID 1's event loop uses, in one place. Each source of
//! events owns a disjoint range (checked below at compile time and in a
//! unit test), and [`source`] turns a token back into its owner and index,
//! so the loop dispatches on a [`Source`] rather than on range arithmetic
//! spread over the modules that register fds. It also sizes the tables
//! those ranges index (control clients, run slots, relay), so it depends
//! on none of the modules that use it.

use quilt_config::MAX_SERVICES;

/// The signalfd.
pub const SIGNAL: u64 = 1;
/// The loop's timerfd.
pub const TIMER: u64 = 2;
/// The control socket's listener.
pub const CONTROL_LISTEN: u64 = 3;
/// The kernel's uevents, for `[usb]` installs.
pub const USB: u64 = 5;
/// The install job's output and report pipes.
pub const JOB_OUT: u64 = 6;
pub const JOB_REP: u64 = 7;
/// The serial receiver's output and report pipes.
pub const SERIAL_OUT: u64 = 8;
pub const SERIAL_REP: u64 = 9;
/// Service `i`'s output pipe: `SERVICE_OUT + i`.
pub const SERVICE_OUT: u64 = 0x100;
/// Service `i`'s readiness pipe: `SERVICE_READY + i`.
pub const SERVICE_READY: u64 = 0x200;
/// Service `i`'s setup report (is it exec'd?): `SERVICE_SETUP + i`.
pub const SERVICE_SETUP: u64 = 0x300;
/// The control socket of service `i` (its `control` grant):
/// `CONTROL_GRANTED + i`.
pub const CONTROL_GRANTED: u64 = 0x380;
/// Control client `c`: `CONTROL_CLIENT + c`.
pub const CONTROL_CLIENT: u64 = 0x400;
/// Run slot `s`: stdout `RUN + 2s`, stderr `RUN + 2s + 1`.
pub const RUN: u64 = 0x800;
/// Run slot `s`'s setup report: `RUN_SETUP + s`.
pub const RUN_SETUP: u64 = 0x1000;
/// The relay (crate::net): listeners, then connections; up to `RELAY_END`.
pub const RELAY: u64 = 0x6000_0000;
/// Past the relay's last token.
pub const RELAY_END: u64 = RELAY + RELAY_TOKENS;

// The tables whose indices the ranges carry are sized here, so that this
// registry needs none of the modules that register fds (they size their
// tables from it).
/// Control clients at once (crate::control).
pub const CONTROL_CLIENTS: usize = 64;
/// Runs in flight at once (crate::runs).
pub const RUNS: usize = 16;
/// Tokens the relay may use (crate::net checks its layout fits).
pub const RELAY_TOKENS: u64 = 0x200;

// The per-index ranges are each wide enough for their table.
const _: () = assert!(SERVICE_OUT + MAX_SERVICES as u64 <= SERVICE_READY);
const _: () = assert!(SERVICE_READY + MAX_SERVICES as u64 <= SERVICE_SETUP);
const _: () = assert!(SERVICE_SETUP + MAX_SERVICES as u64 <= CONTROL_GRANTED);
const _: () = assert!(CONTROL_GRANTED + MAX_SERVICES as u64 <= CONTROL_CLIENT);
const _: () = assert!(CONTROL_CLIENT + CONTROL_CLIENTS as u64 <= RUN);
const _: () = assert!(RUN + 2 * RUNS as u64 <= RUN_SETUP);
const _: () = assert!(RUN_SETUP + RUNS as u64 <= RELAY);

/// Whose fd an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signal,
    Timer,
    ControlListen,
    Usb,
    /// An installer pipe (the token itself: [`JOB_OUT`] to [`SERIAL_REP`]).
    Installer(u64),
    ServiceOutput(usize),
    ServiceReady(usize),
    ServiceSetup(usize),
    /// Service `i`'s own control socket's listener.
    ControlGranted(usize),
    ControlClient(usize),
    /// A run's pipe (the token itself).
    Run(u64),
    /// Run slot `s`'s setup report.
    RunSetup(usize),
    /// The relay's listener or connection (the token itself).
    Relay(u64),
    /// No fd registers this token.
    Unknown,
}

/// The owner of `token`.
pub fn source(token: u64) -> Source {
    let index = |base: u64| (token - base) as usize;
    match token {
        SIGNAL => Source::Signal,
        TIMER => Source::Timer,
        CONTROL_LISTEN => Source::ControlListen,
        USB => Source::Usb,
        JOB_OUT..=SERIAL_REP => Source::Installer(token),
        t if (SERVICE_OUT..SERVICE_OUT + MAX_SERVICES as u64).contains(&t) => {
            Source::ServiceOutput(index(SERVICE_OUT))
        }
        t if (SERVICE_READY..SERVICE_READY + MAX_SERVICES as u64).contains(&t) => {
            Source::ServiceReady(index(SERVICE_READY))
        }
        t if (SERVICE_SETUP..SERVICE_SETUP + MAX_SERVICES as u64).contains(&t) => {
            Source::ServiceSetup(index(SERVICE_SETUP))
        }
        t if (CONTROL_GRANTED..CONTROL_GRANTED + MAX_SERVICES as u64).contains(&t) => {
            Source::ControlGranted(index(CONTROL_GRANTED))
        }
        t if (CONTROL_CLIENT..CONTROL_CLIENT + CONTROL_CLIENTS as u64).contains(&t) => {
            Source::ControlClient(index(CONTROL_CLIENT))
        }
        t if (RUN..RUN + 2 * RUNS as u64).contains(&t) => Source::Run(t),
        t if (RUN_SETUP..RUN_SETUP + RUNS as u64).contains(&t) => {
            Source::RunSetup(index(RUN_SETUP))
        }
        t if (RELAY..RELAY_END).contains(&t) => Source::Relay(t),
        _ => Source::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_has_one_owner() {
        assert_eq!(source(SIGNAL), Source::Signal);
        assert_eq!(source(USB), Source::Usb);
        assert_eq!(source(JOB_REP), Source::Installer(JOB_REP));
        assert_eq!(source(4), Source::Unknown);
        assert_eq!(source(SERVICE_OUT + 3), Source::ServiceOutput(3));
        assert_eq!(
            source(SERVICE_OUT + MAX_SERVICES as u64 - 1),
            Source::ServiceOutput(MAX_SERVICES - 1)
        );
        assert_eq!(source(SERVICE_READY), Source::ServiceReady(0));
        assert_eq!(source(CONTROL_CLIENT + 63), Source::ControlClient(63));
        let last_run = RUN + 2 * RUNS as u64 - 1;
        assert_eq!(source(last_run), Source::Run(last_run));
        assert_eq!(source(last_run + 1), Source::Unknown);
        assert_eq!(source(SERVICE_SETUP + 2), Source::ServiceSetup(2));
        assert_eq!(source(CONTROL_GRANTED + 1), Source::ControlGranted(1));
        assert_eq!(source(RUN_SETUP), Source::RunSetup(0));
        let last_setup = RUN_SETUP + RUNS as u64 - 1;
        assert_eq!(source(last_setup), Source::RunSetup(RUNS - 1));
        assert_eq!(source(last_setup + 1), Source::Unknown);
        assert_eq!(source(RELAY), Source::Relay(RELAY));
        assert_eq!(source(RELAY_END - 1), Source::Relay(RELAY_END - 1));
        assert_eq!(source(RELAY_END), Source::Unknown);
        // Walk each range's edges: no token is claimed twice.
        let ranges = [
            (SERVICE_OUT, MAX_SERVICES as u64),
            (SERVICE_READY, MAX_SERVICES as u64),
            (SERVICE_SETUP, MAX_SERVICES as u64),
            (CONTROL_GRANTED, MAX_SERVICES as u64),
            (CONTROL_CLIENT, CONTROL_CLIENTS as u64),
            (RUN, 2 * RUNS as u64),
            (RUN_SETUP, RUNS as u64),
            (RELAY, RELAY_END - RELAY),
        ];
        for (i, &(a, n)) in ranges.iter().enumerate() {
            assert!(a > SERIAL_REP);
            for &(b, m) in ranges.iter().skip(i + 1) {
                assert!(a + n <= b || b + m <= a, "{a:#x}+{n} overlaps {b:#x}+{m}");
            }
        }
    }
}
