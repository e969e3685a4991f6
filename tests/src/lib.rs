//! QEMU boot harness for the system tests.
//!
//! A test assembles an initramfs with [`ImageBuilder`] (quilt-init at `/init`
//! by default, plus config, files, busybox, kernel modules), boots it on
//! Debian's stock kernel with [`Vm::boot`], and reads two channels out of the
//! guest: the console (`ttyS0`, kernel and init logs) and a result channel
//! (`/dev/ttyS1` in the guest), both captured to files that the `wait_for_*`
//! helpers poll. [`quilt_events`] parses the `quilt: key=value` lines init
//! prints.
//!
//! Everything a test needs from outside comes through scripts the README
//! documents too: `qemu/fetch-kernel.sh` (kernel and modules, cached in
//! `.cache/kernel/`), `tools/build-init.sh` (static PID 1), and
//! `tools/setup.sh` (QEMU, cpio, busybox-static, ...).
//!
//! Errors print the tail of the console, so `.unwrap()` or `?` in a test is
//! enough to see why a boot went wrong; per-VM files stay in
//! `target/quilt-tests/<pid>/` for a look after the fact.

mod build;
mod error;
mod events;
mod image;
mod vm;

pub use build::{
    guest_binary, host_binary, kernel, quilt_init_binary, repo_root, work_dir, Kernel,
};
pub use error::HarnessError;
pub use events::{quilt_events, Event};
pub use image::ImageBuilder;
pub use vm::{host_tsc_khz, kvm_usable, Accel, Exit, GuestEnd, Pattern, Vm, VmOpts};

/// Result type of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
