//! A process started inside a running container (the `exec:<target>`
//! token): it joins the target's namespaces through a pidfd (`setns`, one
//! call for all of them), takes the target's root (`/proc/<pid>/root`,
//! opened by PID 1 before the clone), then forks once more so that it is
//! inside the target's PID namespace too, with PID 1 as its parent
//! (`CLONE_PARENT`). The process then drops what a container drops:
//! capabilities, uid/gid 1000, `no_new_privs`, the seccomp filter.
//!
//! As in [`crate::spawn`], everything is prepared before the clone and the
//! children only make raw libc calls.

use crate::child::{reset_signals, Stage};
use crate::{clone3, Report, Spawned, Stdio};
use rustix::fd::{AsRawFd, BorrowedFd};
use std::ffi::CString;

/// What to run, where.
pub struct EnterPlan {
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    uid: u32,
    gid: u32,
    bpf: Vec<seccompiler::BpfProgram>,
}

impl EnterPlan {
    /// `argv` (argv[0] a path inside the target) with `env`, in `cwd`, as
    /// `uid`/`gid` (never 0).
    pub fn new(
        argv: &[&str],
        env: &[&str],
        cwd: &str,
        uid: u32,
        gid: u32,
    ) -> Result<EnterPlan, crate::PlanError> {
        use crate::PlanError;
        if uid == 0 || gid == 0 {
            return Err(PlanError::Root);
        }
        if argv.is_empty() {
            return Err(PlanError::EmptyArgv);
        }
        let cs = |s: &str, what| CString::new(s).map_err(|_| PlanError::Nul(what));
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cs(a, "argv"))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env.iter().map(|e| cs(e, "env")).collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(core::ptr::null());
        let mut env_ptrs: Vec<_> = env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(core::ptr::null());
        Ok(EnterPlan {
            argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            cwd: cs(cwd, "cwd")?,
            uid,
            gid,
            bpf: crate::seccomp::filters(false).map_err(|e| PlanError::Seccomp(e.to_string()))?,
        })
    }

    /// argv[0], for logs.
    pub fn program(&self) -> &str {
        self.argv
            .first()
            .and_then(|a| a.to_str().ok())
            .unwrap_or("?")
    }
}

/// Namespaces joined (user only when the target has its own).
const JOIN: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWPID;

/// Start `plan` inside the container whose first process is `target`, in
/// cgroup `cgroup` (e.g. a child of the target's). The returned pid is the
/// process that execs (a child of the caller); the intermediate process
/// exits at once and must be reaped too. Blocks until the process that
/// execs has reported (see [`start_enter`]).
pub fn enter(
    plan: &EnterPlan,
    target: i32,
    stdio: Stdio<'_>,
    cgroup: BorrowedFd<'_>,
) -> std::io::Result<Spawned> {
    let entering = start_enter(plan, target, stdio, cgroup)?;
    let EnterReport { pid, err, .. } = entering.report;
    let inner = pid.wait().failure().map(i32::from_ne_bytes);
    let failed = crate::decode_setup(err.wait());
    Ok(match inner {
        Some(p) if p > 0 => Spawned { pid: p, failed },
        // The middle process failed before it could fork: its report says
        // why, and it is the one to reap.
        _ => Spawned {
            pid: entering.middle,
            failed: failed.or(Some((Stage::Namespaces, 0))),
        },
    })
}

/// A process on its way into a container: the middle process that joins
/// its namespaces (the caller's child, which exits at once), and its
/// reports.
#[derive(Debug)]
pub struct Entering {
    /// The middle process.
    pub middle: i32,
    /// Which process execs, and how its setup went.
    pub report: EnterReport,
}

/// The reports of an [`Entering`] process, read without blocking.
#[derive(Debug)]
pub struct EnterReport {
    pid: Report<4>,
    err: Report<6>,
    inner: Option<Option<i32>>,
}

impl EnterReport {
    /// The setup report's pipe: it is readable once the process that
    /// execs has exec'd or failed, and the middle one is gone.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.err.fd()
    }

    /// The process that execs, once the middle one has said: `Some(None)`
    /// when it failed before it could fork one (then the middle is the one
    /// whose exit ends the run). Complete once the middle has exited.
    pub fn inner(&mut self) -> Option<Option<i32>> {
        if self.inner.is_none() {
            self.inner = self
                .pid
                .poll()
                .map(|o| o.failure().map(i32::from_ne_bytes).filter(|p| *p > 0));
        }
        self.inner
    }

    /// Without blocking: `None` while setup goes on, else where and why it
    /// failed (`Some(None)`: the program was exec'd).
    pub fn poll(&mut self) -> Option<Option<(Stage, i32)>> {
        let failed = crate::decode_setup(self.err.poll()?);
        // The middle's own failure before it forked has no stage report of
        // the inner process: say where.
        match self.inner() {
            Some(None) => Some(failed.or(Some((Stage::Namespaces, 0)))),
            _ => Some(failed),
        }
    }
}

/// [`enter`] without waiting for the reports: for an event loop that must
/// not block (PID 1).
pub fn start_enter(
    plan: &EnterPlan,
    target: i32,
    stdio: Stdio<'_>,
    cgroup: BorrowedFd<'_>,
) -> std::io::Result<Entering> {
    let pid = rustix::process::Pid::from_raw(target)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    let root = rustix::fs::open(
        format!("/proc/{target}/root"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let own_user = std::fs::metadata("/proc/self/ns/user").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    })?;
    let their_user = std::fs::metadata(format!("/proc/{target}/ns/user")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    })?;
    let flags = if own_user == their_user {
        JOIN
    } else {
        JOIN | libc::CLONE_NEWUSER
    };
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (pid_r, pid_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the caller is single-threaded (PID 1); the child branch only
    // makes raw libc calls over prepared memory and never returns.
    let mid = unsafe { clone3(0, Some(cgroup))? };
    if mid == 0 {
        // SAFETY: freshly cloned child of a single-threaded parent.
        unsafe {
            middle(
                plan,
                stdio,
                flags,
                (pidfd.as_raw_fd(), root.as_raw_fd()),
                (err_w.as_raw_fd(), pid_w.as_raw_fd()),
            )
        }
    }
    drop((err_w, pid_w, pidfd, root));
    Ok(Entering {
        middle: mid,
        report: EnterReport {
            pid: Report::new(pid_r)?,
            err: Report::new(err_r)?,
            inner: None,
        },
    })
}

fn report(err_w: i32, stage: Stage) -> ! {
    // SAFETY: raw write/_exit of a local buffer; async-signal-safe.
    unsafe {
        let e = (*libc::__errno_location()).to_ne_bytes();
        let [a, b] = stage.code();
        let msg = [a, b, e[0], e[1], e[2], e[3]];
        libc::write(err_w, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The middle process: join, take the root, fork the real one, exit.
///
/// # Safety
/// Child of clone3 from a single-threaded parent.
unsafe fn middle(
    plan: &EnterPlan,
    stdio: Stdio<'_>,
    flags: libc::c_int,
    (pidfd, root): (i32, i32),
    (err_w, pid_w): (i32, i32),
) -> ! {
    // SAFETY: raw libc calls over prepared memory.
    unsafe {
        reset_signals();
        if libc::setns(pidfd, flags) != 0 {
            report(err_w, Stage::Namespaces);
        }
        if libc::fchdir(root) != 0 || libc::chroot(c".".as_ptr()) != 0 {
            report(err_w, Stage::Pivot);
        }
        // A sibling, not a child: PID 1 reaps it; in the target's PID
        // namespace since setns set it for our children.
        let inner = match clone3(libc::CLONE_PARENT as u64, None) {
            Ok(p) => p,
            Err(_) => report(err_w, Stage::Namespaces),
        };
        if inner == 0 {
            last(plan, stdio, err_w);
        }
        let b = inner.to_ne_bytes();
        libc::write(pid_w, b.as_ptr().cast(), b.len());
        libc::_exit(0)
    }
}

/// The process that execs: stdio, privileges, seccomp, exec.
///
/// # Safety
/// Child of clone3; raw libc calls only.
unsafe fn last(plan: &EnterPlan, stdio: Stdio<'_>, err_w: i32) -> ! {
    // SAFETY: raw libc calls over prepared memory.
    unsafe {
        libc::setsid();
        if libc::dup2(stdio.stdin.as_raw_fd(), 0) < 0
            || libc::dup2(stdio.stdout.as_raw_fd(), 1) < 0
            || libc::dup2(stdio.stderr.as_raw_fd(), 2) < 0
        {
            report(err_w, Stage::Fds);
        }
        if let Err(stage) = crate::child::drop_privileges(0, plan.uid, plan.gid) {
            report(err_w, stage);
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            report(err_w, Stage::Chdir);
        }
        if plan
            .bpf
            .iter()
            .any(|f| seccompiler::apply_filter(f).is_err())
        {
            report(err_w, Stage::Seccomp);
        }
        let path = plan.argv_ptrs.first().copied().unwrap_or(core::ptr::null());
        libc::execve(path, plan.argv_ptrs.as_ptr(), plan.env_ptrs.as_ptr());
        report(err_w, Stage::Exec)
    }
}
