//! Signals arrive as readable data on a signalfd, in the event loop, never
//! in a handler. rustix has no signalfd or sigprocmask, so this module is
//! the one place that uses libc for them.

use rustix::fd::{FromRawFd, OwnedFd};

/// Signals PID 1 acts on.
pub const HANDLED: [i32; 7] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPWR,
    libc::SIGHUP,
];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in HANDLED {
        // SAFETY: as above; `s` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Block the handled signals and open a non-blocking signalfd for them.
pub fn open() -> std::io::Result<OwnedFd> {
    let set = handled_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: -1 asks for a new fd; `set` is initialised.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read the next pending signal number, if any.
pub fn next(fd: &OwnedFd) -> Option<i32> {
    let mut info = [0u8; core::mem::size_of::<libc::signalfd_siginfo>()];
    match rustix::io::read(fd, &mut info) {
        Ok(n) if n == info.len() => {
            // ssi_signo is the first u32 of signalfd_siginfo.
            let b: [u8; 4] = info.get(..4)?.try_into().ok()?;
            i32::try_from(u32::from_ne_bytes(b)).ok()
        }
        _ => None,
    }
}
