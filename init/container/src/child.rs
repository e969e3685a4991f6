//! The container's first process between clone and exec. Only raw libc
//! calls over memory the parent prepared; any failure is reported as
//! (stage, step, errno) on the error pipe and ends in `_exit(127)`.

use crate::plan::{Op, Plan};
use crate::Stdio;
use rustix::fd::AsRawFd;
use std::ffi::CStr;

/// Where setup stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A filesystem step of the plan (its index says which).
    Mount(u8),
    /// `pivot_root` into the new root.
    Pivot,
    /// Hostname, loopback.
    Namespaces,
    /// rlimits.
    Limits,
    /// Wiring stdio.
    Fds,
    /// Dropping capabilities.
    Caps,
    /// Waiting for the parent to write the user namespace's id maps.
    UserNs,
    /// setgroups/setresgid/setresuid.
    Credentials,
    /// `no_new_privs` and the seccomp filter.
    Seccomp,
    /// Changing to the working directory.
    Chdir,
    /// execve.
    Exec,
}

impl Stage {
    pub(crate) fn code(self) -> [u8; 2] {
        match self {
            Stage::Mount(i) => [0, i],
            Stage::Pivot => [1, 0],
            Stage::Namespaces => [2, 0],
            Stage::Limits => [3, 0],
            Stage::Fds => [4, 0],
            Stage::Caps => [5, 0],
            Stage::Credentials => [6, 0],
            Stage::Seccomp => [7, 0],
            Stage::Chdir => [8, 0],
            Stage::Exec => [9, 0],
            Stage::UserNs => [10, 0],
        }
    }

    /// Decode the first report byte pair.
    pub(crate) fn from_code(a: u8, b: u8) -> Stage {
        match a {
            0 => Stage::Mount(b),
            1 => Stage::Pivot,
            2 => Stage::Namespaces,
            3 => Stage::Limits,
            4 => Stage::Fds,
            5 => Stage::Caps,
            6 => Stage::Credentials,
            7 => Stage::Seccomp,
            8 => Stage::Chdir,
            10 => Stage::UserNs,
            _ => Stage::Exec,
        }
    }

    /// Lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Mount(_) => "mount",
            Stage::Pivot => "pivot_root",
            Stage::Namespaces => "namespaces",
            Stage::Limits => "rlimits",
            Stage::Fds => "fds",
            Stage::Caps => "capabilities",
            Stage::Credentials => "credentials",
            Stage::Seccomp => "seccomp",
            Stage::Chdir => "chdir",
            Stage::Exec => "exec",
            Stage::UserNs => "user namespace",
        }
    }
}

/// Reset what a fork inherits from PID 1 that exec would keep: the blocked
/// signal mask and ignored dispositions (Rust ignores SIGPIPE).
///
/// # Safety
/// Only async-signal-safe calls; for the child of a fork/clone.
pub unsafe fn reset_signals() {
    // SAFETY: sigset_t is plain data, filled by sigemptyset before use.
    let mut empty: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointer to a local sigset_t; null old set allowed.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, core::ptr::null_mut());
    }
    for s in 1..32 {
        if s != libc::SIGKILL && s != libc::SIGSTOP {
            // SAFETY: SIG_DFL is always a valid disposition.
            unsafe { libc::signal(s, libc::SIG_DFL) };
        }
    }
}

fn opt(p: &Option<std::ffi::CString>) -> *const libc::c_char {
    p.as_ref().map_or(core::ptr::null(), |c| c.as_ptr())
}

/// Bind `src` over `dst` (`MS_BIND | extra`), then remount that bind
/// read-only, `nosuid` and `noexec`: both mounts must succeed.
///
/// # Safety
/// Only in the forked child, like the rest of this module's calls.
unsafe fn bind_read_only(src: &CStr, dst: &CStr, extra: libc::c_ulong) -> bool {
    // SAFETY: NUL-terminated paths that outlive the calls; null fstype
    // and data are allowed for a bind and its remount.
    unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            core::ptr::null(),
            libc::MS_BIND | extra,
            core::ptr::null(),
        ) == 0
            && libc::mount(
                core::ptr::null(),
                dst.as_ptr(),
                core::ptr::null(),
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NOEXEC,
                core::ptr::null(),
            ) == 0
    }
}

/// Bring `lo` up in the new network namespace.
///
/// # Safety
/// Async-signal-safe; child only.
unsafe fn loopback_up() -> bool {
    // SAFETY: plain socket/ioctl/close on a local ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return false;
        }
        let mut req: libc::ifreq = core::mem::zeroed();
        for (d, c) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *c as libc::c_char;
        }
        req.ifr_ifru.ifru_flags =
            (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        let ok = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &req) == 0;
        libc::close(s);
        ok
    }
}

/// `linux/capability.h`: version 3 takes two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// After `setresuid` with KEEPCAPS: narrow the permitted, effective and
/// inheritable sets to `caps` and raise them as ambient, so they survive
/// exec of the (non-setuid, capability-less) runtime binary.
///
/// # Safety
/// Async-signal-safe; child only.
unsafe fn keep_caps(caps: u64) -> bool {
    let word = |shift: u32| -> CapData {
        let w = (caps >> shift) as u32;
        CapData {
            effective: w,
            permitted: w,
            inheritable: w,
        }
    };
    let hdr = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [word(0), word(32)];
    // SAFETY: header and two data words as capset(2) v3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } != 0 {
        return false;
    }
    for cap in 0..=63u32 {
        if caps & (1u64 << cap) != 0
            // SAFETY: plain prctl with integer arguments.
            && unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap,
                    0,
                    0,
                )
            } != 0
        {
            return false;
        }
    }
    true
}

/// Empty the bounding and ambient sets (but for `caps`, kept by token)
/// while CAP_SETPCAP is still held, then become `uid`/`gid` with no
/// supplementary groups, which clears every other capability.
///
/// # Safety
/// Async-signal-safe raw calls; for a child between clone and exec.
pub(crate) unsafe fn drop_privileges(caps: u64, uid: u32, gid: u32) -> Result<(), Stage> {
    // SAFETY: plain prctl/set*id calls with integer arguments.
    unsafe {
        for cap in 0..=63u32 {
            if caps & (1u64 << cap) != 0 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                return Err(Stage::Caps);
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if caps != 0 && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(Stage::Caps);
        }
        if libc::setgroups(0, core::ptr::null()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(Stage::Credentials);
        }
        if caps != 0 && !keep_caps(caps) {
            return Err(Stage::Caps);
        }
        Ok(())
    }
}

/// Set up and exec. Never returns.
///
/// # Safety
/// Call only in the child of `clone3` from a single-threaded parent.
pub(crate) unsafe fn run(
    plan: &Plan,
    stdio: Stdio<'_>,
    err_w: i32,
    userns_sync: Option<(i32, i32)>,
    join: [(Option<i32>, libc::c_int); 2],
) -> ! {
    // SAFETY: every call below is a raw libc call over memory the parent
    // prepared and still owns in our copy of its address space.
    unsafe {
        reset_signals();
        // Keep the error pipe clear of stdio and the extra fds' targets.
        let err_w = libc::fcntl(
            err_w,
            libc::F_DUPFD_CLOEXEC,
            3 + crate::MAX_EXTRA_FDS as i32,
        );
        if err_w < 0 {
            libc::_exit(127);
        }
        let fail = |stage: Stage| -> ! {
            let e = (*libc::__errno_location()).to_ne_bytes();
            let [a, b] = stage.code();
            let msg = [a, b, e[0], e[1], e[2], e[3]];
            libc::write(err_w, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        };
        // In a new user namespace we hold no id until the parent has
        // written the maps: wait for its one byte (EOF means it gave up).
        if let Some((r, w)) = userns_sync {
            libc::close(w);
            let mut b = 0u8;
            let n = loop {
                let n = libc::read(r, (&mut b as *mut u8).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            libc::close(r);
            // Still the host's root (unmapped here, so files we create
            // would have no owner: EOVERFLOW): become the namespace's root.
            if n != 1 || libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                fail(Stage::UserNs);
            }
        }
        libc::setsid();
        // Namespaces PID 1 holds for us (a pod's, a prepared network).
        for (fd, kind) in join {
            if let Some(fd) = fd {
                if libc::setns(fd, kind) != 0 {
                    fail(Stage::Namespaces);
                }
            }
        }
        // Device nodes and directories get exactly the planned modes
        // (0666 for /dev/null and friends), not PID 1's umask-filtered ones.
        libc::umask(0);
        for (i, op) in plan.ops.iter().enumerate() {
            let ok = match op {
                Op::Mount {
                    src,
                    dst,
                    fstype,
                    flags,
                    data,
                } => {
                    libc::mount(
                        opt(src),
                        dst.as_ptr(),
                        opt(fstype),
                        *flags,
                        opt(data).cast(),
                    ) == 0
                }
                Op::Mknod { path, mode, dev } => libc::mknod(path.as_ptr(), *mode, *dev) == 0,
                Op::Mkdir { path, mode } => libc::mkdir(path.as_ptr(), *mode) == 0,
                Op::Symlink { target, path } => libc::symlink(target.as_ptr(), path.as_ptr()) == 0,
                Op::Touch { path } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o666,
                    );
                    fd >= 0 && libc::close(fd) == 0
                }
                Op::Chown { path, uid, gid } => libc::chown(path.as_ptr(), *uid, *gid) == 0,
                Op::Mask { path, empty } => {
                    let mut st: libc::stat = core::mem::zeroed();
                    if libc::stat(path.as_ptr(), &mut st) != 0 {
                        // This kernel has no such interface: nothing to hide.
                        true
                    } else if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        libc::mount(
                            c"tmpfs".as_ptr(),
                            path.as_ptr(),
                            c"tmpfs".as_ptr(),
                            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            core::ptr::null(),
                        ) == 0
                    } else {
                        // `empty` bound over it, then made read-only: a
                        // write is refused (EACCES, or EROFS for root),
                        // not swallowed.
                        bind_read_only(empty, path, 0)
                    }
                }
                Op::ReadOnly { path } => {
                    let mut st: libc::stat = core::mem::zeroed();
                    libc::stat(path.as_ptr(), &mut st) != 0
                        || bind_read_only(path, path, libc::MS_REC)
                }
            };
            if !ok {
                fail(Stage::Mount(u8::try_from(i).unwrap_or(u8::MAX)));
            }
        }
        // pivot_root(".", "."): the old root ends up stacked under the new
        // one and is detached at once; no directory for it is needed.
        // pivot_root refuses (EINVAL) when the old root is the initramfs
        // rootfs, as in QEMU images; then do what runc's no-pivot mode
        // does: move the new root over / and chroot into it. That is
        // sound here because the process keeps no capability (so no
        // second chroot) and seccomp denies chroot and mount anyway.
        if libc::chdir(plan.staging.as_ptr()) != 0 {
            fail(Stage::Pivot);
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) == 0 {
            if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
                fail(Stage::Pivot);
            }
        } else if *libc::__errno_location() != libc::EINVAL
            || libc::mount(
                c".".as_ptr(),
                c"/".as_ptr(),
                core::ptr::null(),
                libc::MS_MOVE,
                core::ptr::null(),
            ) != 0
            || libc::chroot(c".".as_ptr()) != 0
        {
            fail(Stage::Pivot);
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            fail(Stage::Pivot);
        }
        let host = plan.hostname.as_bytes();
        if libc::sethostname(host.as_ptr().cast(), host.len()) != 0 {
            fail(Stage::Namespaces);
        }
        if plan.new_net && join[0].0.is_none() && !loopback_up() {
            fail(Stage::Namespaces);
        }
        let nofile = libc::rlimit {
            rlim_cur: plan.nofile,
            rlim_max: plan.nofile,
        };
        let core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0
            || libc::setrlimit(libc::RLIMIT_CORE, &core) != 0
        {
            fail(Stage::Limits);
        }
        // Extra fds go to 3, 4, ...: first lift each above the target
        // range (so a later dup2 cannot clobber a source), then place them;
        // dup2 clears close-on-exec on the copies.
        let mut lifted = [-1i32; crate::MAX_EXTRA_FDS];
        let floor = 3 + crate::MAX_EXTRA_FDS as i32;
        for (slot, fd) in lifted.iter_mut().zip(stdio.extra) {
            *slot = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor);
            if *slot < 0 {
                fail(Stage::Fds);
            }
        }
        if libc::dup2(stdio.stdin.as_raw_fd(), 0) < 0
            || libc::dup2(stdio.stdout.as_raw_fd(), 1) < 0
            || libc::dup2(stdio.stderr.as_raw_fd(), 2) < 0
        {
            fail(Stage::Fds);
        }
        for (i, &fd) in lifted.iter().take(stdio.extra.len()).enumerate() {
            if libc::dup2(fd, 3 + i as i32) < 0 {
                fail(Stage::Fds);
            }
            libc::close(fd);
        }
        if let Err(stage) = drop_privileges(plan.caps, plan.uid, plan.gid) {
            fail(stage);
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(Stage::Chdir);
        }
        libc::umask(0o022);
        // apply_filter sets no_new_privs first, then installs the program.
        if plan
            .bpf
            .iter()
            .any(|f| seccompiler::apply_filter(f).is_err())
        {
            fail(Stage::Seccomp);
        }
        let path = plan.argv_ptrs.first().copied().unwrap_or(core::ptr::null());
        libc::execve(path, plan.argv_ptrs.as_ptr(), plan.env_ptrs.as_ptr());
        fail(Stage::Exec)
    }
}
