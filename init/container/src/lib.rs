//! Containers as quilt-init starts them: one `clone3` into new PID, mount,
//! UTS, IPC, network and cgroup namespaces, born inside its cgroup
//! (`CLONE_INTO_CGROUP`), then in the child: a read-only root built from a
//! runtime layer and bind mounts, a size-limited `/tmp`, a minimal `/dev`,
//! `/proc`, `pivot_root`, loopback up, rlimits, every capability dropped,
//! `no_new_privs`, a seccomp filter, exec.
//!
//! Everything the child needs (paths, argv, the BPF program) is prepared in
//! the parent by [`Plan::new`]; between clone and exec the child only makes
//! raw libc calls over that prepared memory, and reports a failure as
//! (stage, errno) over a close-on-exec pipe, like `std::process` does.
//!
//! No runc, crun or containerd: this crate is the runtime.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod child;
mod enter;
pub mod netns;
mod plan;
mod report;
pub mod seccomp;

pub use child::{reset_signals, Stage};
pub use enter::{enter, start_enter, EnterPlan, EnterReport, Entering};
pub use plan::{Bind, IdMap, Identity, Overlay, Plan, PlanError, Spec, Volume};
pub use report::{Outcome, Report};

use rustix::fd::{AsFd, AsRawFd, BorrowedFd};

const CLONE_NEWNS: u64 = libc::CLONE_NEWNS as u64;
const CLONE_NEWUTS: u64 = libc::CLONE_NEWUTS as u64;
const CLONE_NEWIPC: u64 = libc::CLONE_NEWIPC as u64;
const CLONE_NEWPID: u64 = libc::CLONE_NEWPID as u64;
const CLONE_NEWNET: u64 = libc::CLONE_NEWNET as u64;
const CLONE_NEWCGROUP: u64 = libc::CLONE_NEWCGROUP as u64;
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(flags)` with `SIGCHLD` as exit signal, born inside `cgroup`
/// (`CLONE_INTO_CGROUP`) when one is given. Returns 0 in the child and the
/// child's pid in the parent; quilt-init's service spawner and the
/// container spawner both start processes through this one call.
///
/// # Safety
/// Like `fork`: call only from a single-threaded process, and in the child
/// make only async-signal-safe calls until `execve` or `_exit`.
pub unsafe fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> std::io::Result<i32> {
    let args = CloneArgs {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        // With CLONE_PARENT the child takes its exit signal from the
        // parent's; clone3 refuses any other (EINVAL).
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        cgroup: cgroup.map_or(0, |c| c.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack
    // given, clone3 behaves like fork and returns twice (the caller's
    // contract covers the child).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            core::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// The stdio of the container's first process.
#[derive(Clone, Copy)]
pub struct Stdio<'a> {
    /// fd 0.
    pub stdin: BorrowedFd<'a>,
    /// fd 1.
    pub stdout: BorrowedFd<'a>,
    /// fd 2.
    pub stderr: BorrowedFd<'a>,
    /// Passed on as fds 3, 4, ... in this order (bus channels); at most
    /// [`MAX_EXTRA_FDS`].
    pub extra: &'a [BorrowedFd<'a>],
}

/// Most fds handed to a container beyond stdio.
pub const MAX_EXTRA_FDS: usize = 32;

/// A started container. `failed` is set when setup stopped before exec;
/// the pid must still be reaped (it exits 127).
#[derive(Debug)]
pub struct Spawned {
    /// Pid of the container's PID 1, as seen from the host.
    pub pid: i32,
    /// Where and why setup failed.
    pub failed: Option<(Stage, i32)>,
}

/// Start a container from a prepared plan, inside the cgroup `cgroup` (an
/// open cgroup v2 directory).
pub fn spawn(plan: &Plan, stdio: Stdio<'_>, cgroup: BorrowedFd<'_>) -> std::io::Result<Spawned> {
    spawn_in(plan, stdio, cgroup, Join::default())
}

/// Namespaces a container joins instead of making its own (held by PID 1,
/// see [`netns`]).
#[derive(Clone, Copy, Default)]
pub struct Join<'a> {
    /// A network namespace: its pod's, or one prepared with listeners.
    pub net: Option<BorrowedFd<'a>>,
    /// Its pod's IPC namespace.
    pub ipc: Option<BorrowedFd<'a>>,
    /// Its pod's PID namespace (see [`netns::pid_holder`]).
    pub pid: Option<BorrowedFd<'a>>,
}

/// [`spawn`], joining the namespaces in `join`. A user namespace cannot
/// join namespaces owned by the host's, so such a plan is refused.
/// Blocks until the container's setup reports (see [`start_in`]).
pub fn spawn_in(
    plan: &Plan,
    stdio: Stdio<'_>,
    cgroup: BorrowedFd<'_>,
    join: Join<'_>,
) -> std::io::Result<Spawned> {
    let started = start_in(plan, stdio, cgroup, join)?;
    Ok(Spawned {
        pid: started.pid,
        failed: started.report.wait(),
    })
}

/// A container whose setup may still be going on.
#[derive(Debug)]
pub struct Started {
    /// Pid of the container's PID 1, as seen from the host.
    pub pid: i32,
    /// How its setup ends, to read when [`SetupReport::fd`] is readable.
    pub report: SetupReport,
}

/// A container's setup report: where and why setup failed, or that its
/// program was exec'd.
#[derive(Debug)]
pub struct SetupReport {
    report: Report<6>,
    /// A failure the parent saw itself (writing the id maps).
    early: Option<(Stage, i32)>,
}

impl SetupReport {
    /// The pipe to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.report.fd()
    }

    /// Without blocking: `None` while setup goes on, else where and why it
    /// failed (`Some(None)`: the program was exec'd).
    pub fn poll(&mut self) -> Option<Option<(Stage, i32)>> {
        let outcome = self.report.poll()?;
        Some(self.early.or_else(|| decode_setup(outcome)))
    }

    /// Block until setup has ended: where and why it failed, if it did.
    pub fn wait(self) -> Option<(Stage, i32)> {
        let early = self.early;
        early.or_else(|| decode_setup(self.report.wait()))
    }
}

/// A setup report's failure: where and why (`None`: it exec'd, or the
/// report broke off).
pub(crate) fn decode_setup(outcome: Outcome<6>) -> Option<(Stage, i32)> {
    outcome
        .failure()
        .map(|[s, i, a, b, c, d]| (Stage::from_code(s, i), i32::from_ne_bytes([a, b, c, d])))
}

/// Start a container as [`spawn_in`] does, without waiting for its setup
/// to report: for an event loop that must not block (PID 1).
pub fn start_in(
    plan: &Plan,
    stdio: Stdio<'_>,
    cgroup: BorrowedFd<'_>,
    join: Join<'_>,
) -> std::io::Result<Started> {
    if plan.userns.is_some() && (join.net.is_some() || join.ipc.is_some() || join.pid.is_some()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a container with its own user namespace cannot join a pod's or a prepared network namespace",
        ));
    }
    if stdio.extra.len() > MAX_EXTRA_FDS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("more than {MAX_EXTRA_FDS} fds for one container"),
        ));
    }
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWCGROUP;
    if join.pid.is_none() {
        flags |= CLONE_NEWPID;
    }
    if join.ipc.is_none() {
        flags |= CLONE_NEWIPC;
    }
    if plan.new_net && join.net.is_none() {
        flags |= CLONE_NEWNET;
    }
    let sync = match plan.userns {
        Some(_) => {
            flags |= CLONE_NEWUSER;
            Some(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
        }
        None => None,
    };
    // A PID namespace cannot be entered by the process itself, only by its
    // children: point ours at the pod's for this one clone, then back.
    let home_pid = match join.pid {
        Some(ns) => {
            let home = netns::open_ns("/proc/self/ns/pid")?;
            netns::setns(ns, libc::CLONE_NEWPID)?;
            Some(home)
        }
        None => None,
    };
    // SAFETY: quilt-init and the benchmark driver are single-threaded; the
    // child branch runs only raw libc calls and never returns.
    let cloned = unsafe { clone3(flags, Some(cgroup)) };
    // The child goes straight to its setup: nothing after clone3 in this
    // function is for it (it must never return into the caller).
    if let Ok(0) = cloned {
        let raw = sync.as_ref().map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()));
        let join = [
            (join.net.map(|fd| fd.as_raw_fd()), libc::CLONE_NEWNET),
            (join.ipc.map(|fd| fd.as_raw_fd()), libc::CLONE_NEWIPC),
        ];
        // SAFETY: we are the freshly cloned child of a single-threaded parent.
        unsafe { child::run(plan, stdio, err_w.as_raw_fd(), raw, join) }
    }
    if let Some(home) = &home_pid {
        // Only our children's namespace changed; ours is where we began.
        netns::setns(home.as_fd(), libc::CLONE_NEWPID)?;
    }
    let pid = cloned?;
    drop(err_w);
    let mut map_error = None;
    if let (Some(map), Some((r, w))) = (plan.userns, sync) {
        drop(r);
        // On failure the child reads EOF and exits before doing anything.
        match write_id_maps(pid, map) {
            Ok(()) => {
                let _ = rustix::io::write(&w, &[1]);
            }
            Err(e) => map_error = Some((Stage::UserNs, e.raw_os_error().unwrap_or(0))),
        }
        drop(w);
    }
    Ok(Started {
        pid,
        report: SetupReport {
            report: Report::new(err_r)?,
            early: map_error,
        },
    })
}

/// Map ids `0..count` of the child's new user namespace to the host range.
/// PID 1 is root in the initial namespace, so a multi-id map needs no
/// helper (`newuidmap`) and `setgroups` can stay allowed.
fn write_id_maps(pid: i32, map: IdMap) -> std::io::Result<()> {
    use std::io::Write;
    let line = format!("0 {} {}\n", map.host, map.count);
    for file in ["uid_map", "gid_map"] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/{file}"))?
            .write_all(line.as_bytes())?;
    }
    Ok(())
}
