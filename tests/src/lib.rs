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
//! Guests are x86_64 by default; [`Arch::Aarch64`] in
//! [`ImageBuilder::for_arch`] and [`VmOpts::arch`] boots the same kind of
//! image in `qemu-system-aarch64 -M virt` with everything cross-built
//! (`tools/setup.sh --arm64`, `qemu/fetch-busybox.sh`; docs/aarch64.md).
//!
//! ```no_run
//! use std::time::Duration;
//! use quilt_system_tests::{ImageBuilder, Result, Vm, VmOpts};
//!
//! fn boots_to_ready() -> Result<()> {
//!     let image = ImageBuilder::new() // quilt-init at /init
//!         .busybox()
//!         .modules(&["i6300esb"])
//!         .config_toml(r#"
//! [[service]]
//! name = "probe"
//! exec = ["/bin/sh", "-c", "echo ok > /dev/ttyS1"]
//! "#)
//!         .build()?;
//!     let mut vm = Vm::boot(&image, VmOpts { pcie: true, ..VmOpts::default() }.device("i6300esb"))?;
//!     vm.wait_for_console("event=pid1-entry", Duration::from_secs(30))?;
//!     vm.wait_for_channel("ok", Duration::from_secs(30))?;
//!     let t = vm.events().iter().find_map(|e| (e.name() == Some("boot-ready")).then(|| e.t()));
//!     println!("boot-ready at {t:?}");
//!     Ok(())
//! }
//! ```
//!
//! Errors print the tail of the console, so `.unwrap()` or `?` in a test is
//! enough to see why a boot went wrong; per-VM files stay in
//! `target/quilt-tests/<pid>/` for a look after the fact.

pub mod bench;
mod build;
mod bundles;
mod curl;
mod error;
mod events;
mod gateway;
mod gpt;
mod image;
mod mcp;
pub mod npm_tool;
mod vm;

pub use build::{
    built_kernel, busybox_for, guest_binary, guest_binary_for, host_binary, host_cdylib, kernel,
    kernel_for, quilt_init_binary, quilt_init_binary_for, repo_root, sysroot_for, work_dir, Arch,
    BuiltKernel, Kernel,
};
pub use bundles::{
    data_tool, example_dir, is_sdk_project, noise, pack_or_build, quilt, quilt_bun, quilt_cli,
    quilt_send, signed_bundle, signed_example, test_key, SignedBundle,
};
pub use curl::{unix_now, Curl, Signed, Signer};
pub use error::HarnessError;
pub use events::{quilt_events, Event};
pub use gateway::{
    client_key, client_keys, gateway_config, gateway_image, quilt_call, Gateway, GATEWAY_PORT,
};
pub use gpt::gpt_disk;
pub use image::{bun_binary, bun_binary_for, tool_sdk_dir, ImageBuilder};
pub use mcp::{
    assert_counted, assert_mcp_connected, count_call, mcp_client, mcp_client_script, mcp_listed,
};
pub use vm::{
    free_host_port, host_tsc_khz, kvm_usable, Accel, Exit, Firmware, GuestEnd, Pattern, Vm, VmOpts,
    UBOOT_QEMU_ARM64,
};

/// Result type of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
