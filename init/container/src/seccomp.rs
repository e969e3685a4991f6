//! The seccomp filters every container gets, built by `seccompiler` rather
//! than hand-assembled BPF. Default-deny, in two filters:
//!
//! 1. **The allow-list** ([`ALLOWED`], plus [`X86_64_ONLY`] there): what Bun,
//!    the runtime layer and the tools were seen to call (a trace of the
//!    examples, the bus demo, an npm-dependency tool and `bun test`; see
//!    docs/containers.md "Seccomp: the allow-list"), grouped by purpose and
//!    cross-read with Docker's default profile. Anything else returns
//!    `ENOSYS`, so a runtime that probes a newer call falls back as it would
//!    on an older kernel (this is how `clone3` looks absent: glibc and Bun
//!    then use `clone`, whose flags a filter can read). A syscall number of
//!    another ABI — x32 on x86_64 — is in no list and gets `ENOSYS` too; a
//!    foreign architecture kills the process (seccompiler's arch check).
//! 2. **The deny filter** ([`DENIED`] and the `clone`/`socket` argument rules):
//!    `EPERM` for the calls a tool has no business making. Installed second,
//!    so for a call both refuse, its `EPERM` is what the tool sees (the
//!    kernel returns the errno of the most recently installed filter among
//!    equal actions).
//!
//! Tokens widen the lists only where the token says so: `cap:net_raw` lifts
//! the raw-socket rule (packet sockets stay refused).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// Syscalls a tool may make, on every architecture. `clone` and `socket` are
/// narrowed by the deny filter's argument rules.
pub const ALLOWED: &[libc::c_long] = &[
    // Files and descriptors (the examples' fs use, Bun.file/Bun.write, node:fs, fs.watch).
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_readlinkat,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_ftruncate,
    libc::SYS_truncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_flock,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_ioctl,
    libc::SYS_utimensat,
    libc::SYS_copy_file_range,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_umask,
    libc::SYS_fadvise64,
    libc::SYS_readahead,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_memfd_create,
    // Memory (the JavaScriptCore heap and allocator; mlock is bounded by RLIMIT_MEMLOCK, or by memory.max under `cap:ipc_lock`).
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_membarrier,
    // Processes and threads (Workers, Bun.spawn; `clone` is narrowed by the deny filter; `seccomp` only adds filters, which only narrow).
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_clone,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getpgid,
    libc::SYS_setpgid,
    libc::SYS_getsid,
    libc::SYS_setsid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_set_tid_address,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_capget,
    libc::SYS_seccomp,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    // Signals.
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_restart_syscall,
    // Time and timers.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_times,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    // Sockets (fetch, Bun.serve, Bun.listen, the control socket's SCM_RIGHTS; `socket` is narrowed by the deny filter).
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    // System facts and limits (prlimit64 cannot raise a hard limit without CAP_SYS_RESOURCE).
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrandom,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    libc::SYS_getcpu,
    // SysV and POSIX IPC (a pod's members share an IPC namespace; a lone tool has one of its own).
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmdt,
    libc::SYS_shmctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semctl,
    libc::SYS_semtimedop,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_mq_open,
    libc::SYS_mq_unlink,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_notify,
    libc::SYS_mq_getsetattr,
];

/// x86_64's older spellings of the same operations (aarch64 never had them).
#[cfg(target_arch = "x86_64")]
pub const X86_64_ONLY: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_pipe,
    libc::SYS_dup2,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_epoll_create,
    libc::SYS_epoll_wait,
    libc::SYS_getdents,
    libc::SYS_readlink,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_alarm,
    libc::SYS_pause,
    libc::SYS_getpgrp,
    libc::SYS_arch_prctl,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
    libc::SYS_signalfd,
    libc::SYS_eventfd,
    libc::SYS_inotify_init,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_sync_file_range,
];
#[cfg(not(target_arch = "x86_64"))]
pub const X86_64_ONLY: &[libc::c_long] = &[];

/// Syscalls refused with `EPERM`: none of them is in [`ALLOWED`], so without
/// this list they would look absent instead.
pub const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_kcmp,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// The namespace flags `clone` may not carry (`CLONE_NEWTIME` is left
/// out: in `clone`'s flags that bit belongs to the exit signal).
const NEW_NAMESPACES: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// Every filter a container gets, in the order to install them: the
/// allow-list, then the deny filter. `raw_sockets`: the tool holds
/// `CAP_NET_RAW` by token.
pub fn filters(raw_sockets: bool) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let mut all = vec![allow_list()?, filter(raw_sockets)?];
    if tracing() {
        // Keep clone3 absent while tracing, so the trace shows the path
        // Bun takes on a board (and is not flooded by clone3 lines).
        let absent = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            ARCH,
        )?;
        all.push(absent.try_into()?);
    }
    Ok(all)
}

/// Built with `QUILT_SECCOMP_TRACE` set (and not `0`)?
fn tracing() -> bool {
    matches!(option_env!("QUILT_SECCOMP_TRACE"), Some(v) if !v.is_empty() && v != "0")
}

/// What is not in the allow-list returns `ENOSYS`; in a build made with
/// `QUILT_SECCOMP_TRACE=1` it is let through and logged by the kernel
/// (`audit: type=1326 … syscall=N`) instead: how the list is derived
/// (docs/containers.md). Never set for a firmware that ships.
fn allow_list() -> Result<BpfProgram, seccompiler::Error> {
    let unlisted = if tracing() {
        SeccompAction::Log
    } else {
        SeccompAction::Errno(libc::ENOSYS as u32)
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(X86_64_ONLY)
        .map(|&n| (n, Vec::new()))
        .collect();
    let f = SeccompFilter::new(rules, unlisted, SeccompAction::Allow, ARCH)?;
    Ok(f.try_into()?)
}

/// Build the deny-list filter; `raw_sockets` lifts the socket rule for a
/// tool that holds CAP_NET_RAW by token (packet sockets stay refused).
pub fn filter(raw_sockets: bool) -> Result<BpfProgram, seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&n| (n, Vec::new())).collect();
    // clone(flags, …) with any namespace flag: one rule per flag (rules OR).
    let clone_rules = NEW_NAMESPACES
        .iter()
        .map(|&flag| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // socket(domain, type, …): no AF_PACKET, and no SOCK_RAW of any family
    // (the low 4 bits of `type`; the rest are SOCK_NONBLOCK/CLOEXEC).
    let packet = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_PACKET as u64,
    )?])?;
    let raw = SeccompRule::new(vec![SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(0xf),
        libc::SOCK_RAW as u64,
    )?])?;
    let socket_rules = if raw_sockets {
        vec![packet]
    } else {
        vec![packet, raw]
    };
    rules.insert(libc::SYS_socket, socket_rules);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?;
    Ok(f.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_build() {
        let all = filters(false).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].len() > ALLOWED.len() && all[1].len() > DENIED.len());
        let with_raw = filter(true).unwrap();
        assert!(with_raw.len() < filter(false).unwrap().len());
    }

    #[test]
    fn the_lists_are_disjoint_and_hold_no_door_out() {
        let allowed: Vec<_> = ALLOWED.iter().chain(X86_64_ONLY).collect();
        for n in DENIED {
            assert!(
                !allowed.contains(&n),
                "syscall {n} is both allowed and denied"
            );
        }
        for n in [
            libc::SYS_clone3,
            libc::SYS_io_uring_setup,
            libc::SYS_pidfd_getfd,
            libc::SYS_unshare,
            libc::SYS_ptrace,
            libc::SYS_personality,
            libc::SYS_sched_setscheduler,
            libc::SYS_sched_setattr,
            libc::SYS_memfd_secret,
        ] {
            assert!(!allowed.contains(&&n), "syscall {n} must not be allowed");
        }
        let mut sorted = allowed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), allowed.len(), "a syscall is listed twice");
    }

    /// Install both filters in a forked child and see what each call
    /// returns: the kernel, not the list, is the judge.
    #[test]
    fn the_kernel_answers_as_the_lists_say() {
        let progs = filters(false).unwrap();
        // (syscall, args, the errno expected; 0 = allowed)
        let cases: [(libc::c_long, [libc::c_long; 3], i32); 6] = [
            (libc::SYS_getpid, [0, 0, 0], 0),
            (libc::SYS_clone3, [0, 0, 0], libc::ENOSYS),
            // Not in any list: looks absent.
            (libc::SYS_sched_setattr, [0, 0, 0], libc::ENOSYS),
            (libc::SYS_mount, [0, 0, 0], libc::EPERM),
            (libc::SYS_io_uring_setup, [1, 0, 0], libc::EPERM),
            (
                libc::SYS_socket,
                [libc::AF_PACKET as _, libc::SOCK_RAW as _, 0],
                libc::EPERM,
            ),
        ];
        for (nr, args, want) in cases {
            // SAFETY: the child only applies filters, makes one raw syscall
            // and leaves with _exit; it touches no lock the parent may hold.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let ok = progs.iter().all(|p| seccompiler::apply_filter(p).is_ok());
                // SAFETY: a raw syscall with integer arguments, then _exit.
                let code = unsafe {
                    let r = libc::syscall(nr, args[0], args[1], args[2]);
                    let errno = *libc::__errno_location();
                    match (ok, r) {
                        (false, _) => 250,
                        (true, -1) => errno,
                        (true, _) => 0,
                    }
                };
                // SAFETY: leaving the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            // SAFETY: waiting for the child forked above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status),
                "syscall {nr}: child killed ({status:#x})"
            );
            assert_eq!(libc::WEXITSTATUS(status), want, "syscall {nr}");
        }
    }
}
