//! Starting a service process: `clone3(CLONE_INTO_CGROUP)` so the child is
//! born inside its cgroup (no window where it runs unlimited), then exec.
//!
//! The child runs only async-signal-safe libc calls between clone and exec,
//! and reports a failure through a close-on-exec pipe: EOF means the exec
//! happened, five bytes mean it did not (stage, errno).

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ffi::{CStr, CString};

/// What a child needs; every string is built before the clone.
pub struct Spec<'a> {
    /// argv; `argv[0]` is the program path.
    pub argv: &'a [CString],
    /// `KEY=value` environment.
    pub envp: &'a [CString],
    /// Working directory.
    pub cwd: &'a CStr,
    /// Credentials; 0/0 keeps root.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Where stdout and stderr go.
    pub output: BorrowedFd<'a>,
    /// stdin source (normally /dev/null).
    pub input: BorrowedFd<'a>,
    /// Readiness pipe write end, and the fd number the service expects it at.
    pub ready: Option<(BorrowedFd<'a>, u8)>,
    /// The service cgroup directory.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// `cgroup.procs` of that cgroup, for kernels without `CLONE_INTO_CGROUP`.
    pub cgroup_procs: &'a CStr,
}

/// Where in the child a start failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Joining the cgroup (fallback path).
    Cgroup,
    /// Wiring stdio and the readiness fd.
    Fds,
    /// Dropping to the service's uid/gid.
    Credentials,
    /// Changing directory.
    Chdir,
    /// execve itself.
    Exec,
}

impl Stage {
    fn from_u8(b: u8) -> Stage {
        match b {
            0 => Stage::Cgroup,
            1 => Stage::Fds,
            2 => Stage::Credentials,
            3 => Stage::Chdir,
            _ => Stage::Exec,
        }
    }

    /// Lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Cgroup => "cgroup",
            Stage::Fds => "fds",
            Stage::Credentials => "credentials",
            Stage::Chdir => "chdir",
            Stage::Exec => "exec",
        }
    }
}

/// A started child, its exec perhaps still to come: its report says
/// whether it got there. A child that did not still has to be reaped (it
/// exits 127).
pub struct Spawned {
    /// The child's pid.
    pub pid: i32,
    /// Whether and where it failed before exec.
    pub report: ExecReport,
    /// Whether `CLONE_INTO_CGROUP` placed it (else the fallback did).
    pub into_cgroup: bool,
}

/// Start a child per `spec`.
pub fn spawn(spec: &Spec<'_>) -> std::io::Result<Spawned> {
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut argv: heapless::Vec<*const libc::c_char, 17> = heapless::Vec::new();
    for a in spec.argv {
        argv.push(a.as_ptr())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    }
    argv.push(core::ptr::null())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut envp: heapless::Vec<*const libc::c_char, 18> = heapless::Vec::new();
    for e in spec.envp {
        envp.push(e.as_ptr())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    }
    envp.push(core::ptr::null())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;

    let mut into_cgroup = false;
    let mut pid = -1;
    if let Some(cg) = spec.cgroup {
        // SAFETY: PID 1 is single-threaded; the child branch never returns.
        match unsafe { quilt_container::clone3(0, Some(cg)) } {
            Ok(0) => {
                // SAFETY: we are the freshly cloned, single-threaded child.
                unsafe { child(spec, &argv, &envp, err_w.as_raw_fd(), false) }
            }
            Ok(p) => {
                pid = p;
                into_cgroup = true;
            }
            // Old kernel (ENOSYS/E2BIG) or no cgroup2: fall back to fork.
            Err(_) => {}
        }
    }
    if pid < 0 {
        // SAFETY: PID 1 is single-threaded, so fork is sound; the child
        // branch never returns.
        let ret = unsafe { libc::fork() };
        if ret == 0 {
            // SAFETY: we are the freshly forked child.
            unsafe { child(spec, &argv, &envp, err_w.as_raw_fd(), spec.cgroup.is_some()) }
        }
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        pid = ret;
    }
    drop(err_w);
    Ok(Spawned {
        pid,
        report: ExecReport(quilt_container::Report::new(err_r)?),
        into_cgroup,
    })
}

/// A child's report of its way to exec (see the module doc).
pub struct ExecReport(quilt_container::Report<5>);

impl ExecReport {
    /// The pipe to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }

    /// Without blocking: `None` while the child is on its way, else where
    /// and why it failed (`Some(None)`: it exec'd).
    pub fn poll(&mut self) -> Option<Option<(Stage, i32)>> {
        Some(self.0.poll()?.failure().map(decode))
    }
}

fn decode([stage, a, b, c, d]: [u8; 5]) -> (Stage, i32) {
    (Stage::from_u8(stage), i32::from_ne_bytes([a, b, c, d]))
}

/// The child between clone and exec. Never returns.
///
/// # Safety
/// Call only in the child of a fork/clone of a single-threaded process.
unsafe fn child(
    spec: &Spec<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err_w: i32,
    join_cgroup: bool,
) -> ! {
    // SAFETY: every call below is an async-signal-safe libc call on fds and
    // C strings that stay valid (they belong to the parent's copied memory).
    unsafe {
        quilt_container::reset_signals();
        // Keep the error pipe clear of the fd numbers about to be filled (0..=9).
        let err_w = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, 10);
        if err_w < 0 {
            libc::_exit(127);
        }
        let fail = |stage: u8| -> ! {
            let e = (*libc::__errno_location()).to_ne_bytes();
            let msg = [stage, e[0], e[1], e[2], e[3]];
            libc::write(err_w, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        };
        if join_cgroup {
            let fd = libc::open(spec.cgroup_procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(0);
            }
            libc::close(fd);
        }
        libc::setsid();
        let ready = match spec.ready {
            Some((fd, n)) => {
                let tmp = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
                if tmp < 0 {
                    fail(1);
                }
                Some((tmp, i32::from(n)))
            }
            None => None,
        };
        if libc::dup2(spec.input.as_raw_fd(), 0) < 0
            || libc::dup2(spec.output.as_raw_fd(), 1) < 0
            || libc::dup2(spec.output.as_raw_fd(), 2) < 0
        {
            fail(1);
        }
        if let Some((tmp, n)) = ready {
            if libc::dup2(tmp, n) < 0 {
                fail(1);
            }
        }
        if (spec.uid != 0 || spec.gid != 0)
            && (libc::setgroups(0, core::ptr::null()) != 0
                || libc::setgid(spec.gid) != 0
                || libc::setuid(spec.uid) != 0)
        {
            fail(2);
        }
        if libc::chdir(spec.cwd.as_ptr()) != 0 {
            fail(3);
        }
        let path = argv.first().copied().unwrap_or(core::ptr::null());
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        fail(4)
    }
}

/// Open /dev/null for a child's stdin.
pub fn dev_null() -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        "/dev/null",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}
