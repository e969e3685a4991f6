//! What an installer may not do, whatever a hostile bundle or stick makes
//! it try: a seccomp deny-list installed before any job starts. It keeps
//! what installs need (files, `mount` for sticks, block devices for
//! slots) and refuses, with EPERM, what no install needs and what would
//! reach past the board's trust: loading kernel code, tracing or reading
//! other processes, new namespaces, rebooting, BPF and perf.

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
use std::collections::BTreeMap;

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// Refused syscalls.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_userfaultfd,
];

fn program() -> Result<BpfProgram, seccompiler::Error> {
    SeccompFilter::new(
        DENIED
            .iter()
            .map(|&n| (n, Vec::new()))
            .collect::<BTreeMap<_, _>>(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?
    .try_into()
    .map_err(seccompiler::Error::Backend)
}

/// Install the filter on this process (no new privileges first, as the
/// kernel requires of an unprivileged filter and as is right anyway).
pub fn enter() -> Result<(), seccompiler::Error> {
    let p = program()?;
    seccompiler::apply_filter(&p)
}
