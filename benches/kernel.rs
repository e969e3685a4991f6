//! Boot time of the kernel built from `kernel-config/` (`tools/build-kernel.sh
//! x86_64`, everything built in, no modules) against the stock Debian kernel
//! the other tests boot: the same initramfs, the same command line, QEMU
//! microvm under TCG, one CPU, 512 MiB, boots interleaved (medians of N).
//!
//! Run: `cargo bench -p quilt-system-tests --bench kernel` (N: QUILT_BOOTS,
//! default 5). The built kernel is `QUILT_BUILT_KERNEL`, else
//! `target/kernel/x86_64/vmlinux`; the bench fails when it is missing.
//!
//! Columns, in guest seconds since the kernel's clock started
//! (CLOCK_BOOTTIME; QEMU loading the ELF and the kernel's earliest setup
//! come before zero, and count only in wall s):
//! - pid1: quilt-init's first instruction (`pid1-entry`'s `entry_us`),
//! - boot-ready: quilt-init's `boot-ready` event (mounts, cgroups, config,
//!   event loop up, services about to start),
//! - power down: the kernel's `reboot: Power down` after the one service
//!   ran `/bin/true`,
//! - wall s: the whole QEMU run on the host.

use quilt_system_tests::bench::{boots, median, power_down_t};
use quilt_system_tests::{built_kernel, kernel, Accel, ImageBuilder, Vm, VmOpts};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONFIG: &str = r#"
[[service]]
name = "first"
exec = ["/bin/true"]
restart = "never"
on_exit = "poweroff"
"#;

const TIMEOUT: Duration = Duration::from_secs(120);

struct Sample {
    pid1: f64,
    ready: f64,
    power_down: f64,
    wall: f64,
}

fn boot(image: &Path, vmlinux: &Path) -> Sample {
    let mut vm = Vm::boot(
        image,
        VmOpts {
            kernel: Some(vmlinux.to_path_buf()),
            accel: Accel::Tcg,
            timeout: TIMEOUT,
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(TIMEOUT).unwrap();
    assert!(exit.powered_off(), "{}: {exit:?}", vmlinux.display());
    let ev = vm.events();
    let get = |name: &str| ev.iter().find(|e| e.name() == Some(name)).cloned();
    let entry_us: f64 = get("pid1-entry")
        .and_then(|e| e.get("entry_us")?.parse().ok())
        .unwrap();
    Sample {
        pid1: entry_us / 1e6,
        ready: get("boot-ready").and_then(|e| e.t()).unwrap(),
        power_down: power_down_t(&vm.console_text()).unwrap(),
        wall: exit.wall.as_secs_f64(),
    }
}

fn main() {
    let n = boots();
    let stock = kernel().unwrap();
    let built = built_kernel().unwrap();
    let image = ImageBuilder::new()
        .busybox()
        .config_toml(CONFIG)
        .build()
        .unwrap();
    let kernels: [(String, PathBuf); 2] = [
        (format!("debian {}", stock.version), stock.vmlinux),
        (
            format!("built {}", built.release.as_deref().unwrap_or("?")),
            built.vmlinux,
        ),
    ];
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    // Interleaved, and each kernel goes first every other round, so drift
    // and load on the host hit both alike.
    for i in 0..n {
        eprintln!("boot {}/{n}", i + 1);
        for k in [i % 2, 1 - i % 2] {
            samples[k].push(boot(&image, &kernels[k].1));
        }
    }
    let col = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let rows: Vec<[f64; 4]> = samples
        .iter()
        .map(|s| {
            [
                col(s, |x| x.pid1),
                col(s, |x| x.ready),
                col(s, |x| x.power_down),
                col(s, |x| x.wall),
            ]
        })
        .collect();
    println!(
        "kernel boot under QEMU microvm (TCG, 1 CPU), median of {n} \
         (guest seconds since kernel start; wall: whole QEMU run)"
    );
    println!(
        "{:<22} {:>8} {:>11} {:>11} {:>9}",
        "kernel", "pid1", "boot-ready", "power down", "wall s"
    );
    for ((name, _), r) in kernels.iter().zip(&rows) {
        println!(
            "{name:<22} {:>8.3} {:>11.3} {:>11.3} {:>9.2}",
            r[0], r[1], r[2], r[3]
        );
    }
    let (d, b) = (rows[0], rows[1]);
    println!(
        "built - debian: pid1 {:+.0} ms, boot-ready {:+.0} ms, wall {:+.0} ms",
        (b[0] - d[0]) * 1000.0,
        (b[1] - d[1]) * 1000.0,
        (b[3] - d[3]) * 1000.0
    );
    println!(
        "ratio built/debian: pid1 {:.3}, boot-ready {:.3}, wall {:.3}",
        b[0] / d[0],
        b[1] / d[1],
        b[3] / d[3]
    );
}
