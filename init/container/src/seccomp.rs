//! The seccomp filters every container gets, built by `seccompiler` rather
//! than hand-assembled BPF: a deny list (EPERM) of calls a tool has no
//! business making — mounts, modules, kexec, bpf, ptrace and its cousins
//! (`process_vm_*`, `pidfd_getfd`, `process_madvise`, `kcmp`), keyrings,
//! namespaces (`unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag),
//! `io_uring` (whose own socket operation would bypass the socket rule), raw
//! and packet sockets, clock and swap control — and a second filter that
//! makes `clone3` look absent (ENOSYS, as Docker's profile does): its flags
//! live in memory a filter cannot read, and glibc and Bun fall back to
//! `clone` on ENOSYS. Still a deny list; the allow-list is issue 14's.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// Syscalls refused outright.
const DENIED: &[libc::c_long] = &[
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

/// Every filter a container gets, in the order to install them: the one
/// that makes `clone3` look absent, then [`filter`].
pub fn filters(raw_sockets: bool) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let absent = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?;
    Ok(vec![absent.try_into()?, filter(raw_sockets)?])
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
    #[test]
    fn both_filters_build() {
        let all = super::filters(false).unwrap();
        assert_eq!(all.len(), 2);
        assert!(!all[0].is_empty() && all[1].len() > super::DENIED.len());
    }

    #[test]
    fn builds() {
        let prog = super::filter(false).unwrap();
        assert!(prog.len() > super::DENIED.len());
        let with_raw = super::filter(true).unwrap();
        assert!(with_raw.len() < prog.len());
    }
}
