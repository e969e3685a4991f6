//! The kernel `tools/build-kernel.sh x86_64` builds from Debian's
//! linux-source-6.1 and the `kernel-config/` fragments boots a quilt image
//! that carries no modules and whose boot config lists none: everything
//! quilt-init needs is built in (issue 8). `tests/kernel-config.sh` proves
//! the fragments survive olddefconfig; this proves the result boots.
//!
//! The kernel is not built here (it takes tens of minutes): the test takes
//! `QUILT_BUILT_KERNEL`, else `target/kernel/x86_64/vmlinux`, and fails
//! saying to run `tools/build-kernel.sh x86_64` when neither exists. Boot
//! times against the stock Debian kernel: `cargo bench -p
//! quilt-system-tests --bench kernel`.

// Only the mount-check script, its config and the event helpers are used.
#[allow(dead_code)]
mod common;

use common::{assert_early_mounts, events_named, CHECK, MOUNTS_CONFIG};
use quilt_system_tests::{built_kernel, ImageBuilder, Vm, VmOpts};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

/// What the kernel itself must offer, reported on the result channel after
/// the early-mount checks of [`CHECK`].
const KERNEL_CHECK: &str = r#"
out=/dev/ttyS1
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)" > $out
# "nodev<TAB>proc" or "<TAB>ext4": the name is the last word.
while read -r a b; do echo "fs ${b:-$a}" > $out; done < /proc/filesystems
if [ -e /proc/modules ]; then
  echo "proc-modules-lines=$(wc -l < /proc/modules)" > $out
else
  echo "proc-modules-lines=0 (absent)" > $out
fi
echo "lib-modules=$(ls -A /lib/modules 2>/dev/null | wc -l)" > $out
echo "release=$(uname -r)" > $out
echo kernel-done > $out
"#;

#[test]
fn built_kernel_boots_the_image_with_no_modules() {
    let kernel = built_kernel().unwrap();
    // The same service and limits as pid1.rs's early-mount test, minus its
    // `modules = ["overlay"]`: overlay is built in here.
    let config = MOUNTS_CONFIG.replace("modules = [\"overlay\"]\n", "");
    assert!(!config.contains("modules"), "{config}");
    let image = ImageBuilder::new()
        .busybox()
        .config_toml(&config)
        .bytes(
            "/bin/check.sh",
            format!("#!/bin/sh\n{CHECK}{KERNEL_CHECK}"),
            0o755,
        )
        .build()
        .unwrap();
    let mut vm = Vm::boot(
        &image,
        VmOpts {
            kernel: Some(kernel.vmlinux.clone()),
            timeout: BOOT,
            ..VmOpts::default()
        },
    )
    .unwrap();
    vm.wait_for_console("event=boot-ready", BOOT).unwrap();
    vm.wait_for_channel("kernel-done", BOOT).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(
        exit.powered_off(),
        "guest did not power off cleanly: {exit:?}"
    );
    let ch = vm.channel_text();
    let has = |needle: &str| assert!(ch.contains(needle), "channel lacks {needle:?}:\n{ch}");

    // It is the built kernel that ran.
    if let Some(release) = &kernel.release {
        has(&format!("release={release}\n"));
    }

    // No module anywhere: none in the image, none loaded, none asked for.
    has("lib-modules=0\n");
    assert!(
        ch.lines().any(|l| l.starts_with("proc-modules-lines=0")),
        "/proc/modules is not empty:\n{ch}"
    );
    let ev = vm.events();
    assert!(
        !ev.iter()
            .any(|e| e.name().is_some_and(|n| n.starts_with("module"))),
        "module events on a modules-free boot:\n{}",
        vm.console_text()
    );

    // cgroup2 with every controller quilt sets limits with.
    let controllers = ch
        .lines()
        .find_map(|l| l.strip_prefix("controllers="))
        .unwrap_or_else(|| panic!("no cgroup.controllers:\n{ch}"));
    for c in ["cpu", "memory", "pids", "io"] {
        assert!(
            controllers.split_whitespace().any(|w| w == c),
            "cgroup2 controller {c} missing: {controllers:?}"
        );
    }

    // The file systems of root slots, runtime layers, the data partition
    // and USB sticks.
    for fs in ["overlay", "squashfs", "ext4", "erofs", "vfat"] {
        has(&format!("fs {fs}\n"));
    }

    // PID 1's early mounts, cgroup placement and limits, as on the stock
    // kernel (the module asserts of common::check_early_mounts do not apply).
    assert_early_mounts(&ch, &ev);

    let entry_us: f64 = events_named(&ev, "pid1-entry")[0]
        .get("entry_us")
        .and_then(|v| v.parse().ok())
        .unwrap();
    let ready = events_named(&ev, "boot-ready")[0].t().unwrap();
    println!(
        "built kernel {}: pid1-entry {:.3} s, boot-ready {ready:.3} s, wall {:.2} s",
        kernel.release.as_deref().unwrap_or("?"),
        entry_us / 1e6,
        exit.wall.as_secs_f64()
    );
}
