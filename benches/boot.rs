//! Boot figures of quilt-init under QEMU, side by side with busybox init on
//! the same kernel in the same run (medians of N boots, guest clock).
//!
//! Run: `cargo bench -p quilt-system-tests --bench boot` (N: QUILT_BOOTS, default 5).
//!
//! Columns, in guest seconds since the kernel started (CLOCK_BOOTTIME):
//! - pid1: PID 1's first instruction of its own (quilt: `entry_us`; busybox
//!   init logs nothing there, so it is left blank),
//! - first exec: the first service running (quilt: `first-exec`; busybox:
//!   the uptime its sysinit script reads first thing),
//! - power down: the kernel's own `reboot: Power down` timestamp,
//! - wall s: the wall time of the whole QEMU run.
//!
//! busybox init's shutdown sleeps between SIGTERM and SIGKILL by design,
//! which is most of its power-down figure.

use quilt_system_tests::bench::{boots, median, power_down_t};
use quilt_system_tests::{ImageBuilder, Vm, VmOpts};
use std::time::Duration;

const CONFIG: &str = r#"
[[service]]
name = "first"
exec = ["/bin/true"]
restart = "never"
on_exit = "poweroff"
"#;

/// busybox init doing the same: the same early mounts, one program, power off.
const INITTAB: &str = "::sysinit:/etc/rcS\n::once:/bin/poweroff\n";
const RCS: &str = r#"#!/bin/sh
read -r up _ < /proc/uptime 2>/dev/null || { mount -t proc proc /proc; read -r up _ < /proc/uptime; }
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "peer: first-exec t=$up" > /dev/console
"#;

#[derive(Default)]
struct Sample {
    pid1: Option<f64>,
    first_exec: f64,
    power_down: f64,
    wall: f64,
}

fn quilt_boot() -> Sample {
    let image = ImageBuilder::new()
        .busybox()
        .config_toml(CONFIG)
        .build()
        .unwrap();
    let mut vm = Vm::boot(
        &image,
        VmOpts {
            timeout: Duration::from_secs(120),
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ev = vm.events();
    let get = |name: &str| ev.iter().find(|e| e.name() == Some(name)).cloned();
    let entry: f64 = get("pid1-entry")
        .and_then(|e| e.get("entry_us")?.parse().ok())
        .unwrap();
    Sample {
        pid1: Some(entry / 1e6),
        first_exec: get("first-exec").and_then(|e| e.t()).unwrap(),
        power_down: power_down_t(&vm.console_text()).unwrap(),
        wall: exit.wall.as_secs_f64(),
    }
}

fn busybox_boot() -> Sample {
    let image = ImageBuilder::empty()
        .busybox()
        .symlink("/init", "/bin/busybox")
        .bytes("/etc/inittab", INITTAB, 0o644)
        .bytes("/etc/rcS", RCS, 0o755)
        .build()
        .unwrap();
    let mut vm = Vm::boot(
        &image,
        VmOpts {
            timeout: Duration::from_secs(120),
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let con = vm.console_text();
    let first = con
        .lines()
        .find_map(|l| l.split("peer: first-exec t=").nth(1)?.trim().parse().ok())
        .unwrap();
    Sample {
        pid1: None,
        first_exec: first,
        power_down: power_down_t(&con).unwrap(),
        wall: exit.wall.as_secs_f64(),
    }
}

fn main() {
    let n = boots();
    let mut quilt = Vec::new();
    let mut peer = Vec::new();
    // Interleaved, so drift on the host hits both alike.
    for i in 0..n {
        eprintln!("boot {}/{n}", i + 1);
        quilt.push(quilt_boot());
        peer.push(busybox_boot());
    }
    let col = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let kernel = quilt_system_tests::kernel()
        .map(|k| k.version)
        .unwrap_or_default();
    println!("boot under QEMU, kernel {kernel}, median of {n} (guest seconds since kernel start)");
    println!(
        "{:<14} {:>8} {:>11} {:>11} {:>9}",
        "init", "pid1", "first exec", "power down", "wall s"
    );
    let q = (
        col(&quilt, |s| s.pid1.unwrap_or(f64::NAN)),
        col(&quilt, |s| s.first_exec),
        col(&quilt, |s| s.power_down),
        col(&quilt, |s| s.wall),
    );
    let b = (
        col(&peer, |s| s.first_exec),
        col(&peer, |s| s.power_down),
        col(&peer, |s| s.wall),
    );
    println!(
        "{:<14} {:>8.3} {:>11.3} {:>11.3} {:>9.2}",
        "quilt-init", q.0, q.1, q.2, q.3
    );
    println!(
        "{:<14} {:>8} {:>11.3} {:>11.3} {:>9.2}",
        "busybox init", "-", b.0, b.1, b.2
    );
    println!(
        "quilt-init: first exec {:.1} ms after PID-1 entry; power down {:.1} ms after first exec",
        (q.1 - q.0) * 1000.0,
        (q.2 - q.1) * 1000.0
    );
    println!(
        "ratio quilt/busybox: first exec {:.3}, power down {:.3}",
        q.1 / b.0,
        q.2 / b.1
    );
}
