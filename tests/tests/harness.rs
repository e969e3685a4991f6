//! Self-test of the boot harness, independent of quilt-init: boot Debian's
//! kernel with a busybox shell script as `/init` that reports over the result
//! channel, loads kernel modules the way PID 1 will (in `modules.dep` order)
//! and powers off.

use std::time::Duration;

use quilt_system_tests::{quilt_events, GuestEnd, ImageBuilder, Pattern, Result, Vm, VmOpts};

/// Runs as PID 1. Kernel-started init gets no PATH; busybox sh's default
/// covers /bin.
const INIT: &str = r#"#!/bin/sh
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
read -r up _ < /proc/uptime
echo "harness: init-uptime=$up" > /dev/ttyS1
echo "quilt: t=$up event=script-start note=\"from busybox\""
dir=/lib/modules/$(uname -r)
while IFS=: read -r ko _; do
    insmod "$dir/$ko" || echo "harness: insmod-failed=$ko" > /dev/ttyS1
done < "$dir/modules.dep"
if grep -q '^i6300esb ' /proc/modules; then
    echo "harness: module=i6300esb loaded" > /dev/ttyS1
fi
ls /dev/watchdog0 > /dev/ttyS1 2>&1
echo "harness: done" > /dev/ttyS1
poweroff -f
"#;

#[test]
fn busybox_init_reports_over_channel_loads_modules_and_powers_off() -> Result<()> {
    let image = ImageBuilder::empty()
        .busybox()
        .modules(&["i6300esb"])
        .bytes("/init", INIT, 0o755)
        .build()?;

    // Three boots: the self-test doubles as the boot-time measurement.
    let mut walls = Vec::new();
    for run in 0..3 {
        let mut vm = Vm::boot(
            &image,
            VmOpts {
                pcie: true,
                timeout: Duration::from_secs(90),
                ..VmOpts::default()
            }
            .device("i6300esb"),
        )?;
        let line = vm.wait_for_channel(
            Pattern::regex(r"init-uptime=[0-9.]+")?,
            Duration::from_secs(60),
        )?;
        let wall_to_init = vm.elapsed();
        let guest: f64 = line
            .rsplit('=')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN);
        vm.wait_for_channel("module=i6300esb loaded", Duration::from_secs(30))?;
        vm.wait_for_channel("/dev/watchdog0", Duration::from_secs(5))?;
        vm.wait_for_channel("harness: done", Duration::from_secs(30))?;
        let exit = vm.wait_exit(Duration::from_secs(30))?;
        assert!(exit.powered_off(), "{exit:?}\n{}", vm.console_text());
        assert!(
            !vm.channel_text().contains("insmod-failed"),
            "{}",
            vm.channel_text()
        );

        let events = quilt_events(&vm.console_text());
        let ev = events
            .iter()
            .find(|e| e.name() == Some("script-start"))
            .ok_or_else(|| quilt_system_tests::HarnessError::Setup {
                what: "parsing quilt events".into(),
                detail: vm.console_text(),
            })?;
        assert_eq!(ev.get("note"), Some("from busybox"));
        assert!(ev.t().is_some_and(|t| (t - guest).abs() < 0.5));

        eprintln!(
            "boot {run} ({:?}): /init at guest t={guest:.2}s, wall {:.2}s; qemu exit after {:.2}s",
            vm.accel(),
            wall_to_init.as_secs_f64(),
            exit.wall.as_secs_f64()
        );
        if run == 0 {
            eprintln!("command: {}", vm.command_line());
        }
        walls.push(wall_to_init.as_secs_f64());
    }
    eprintln!(
        "wall time to /init: {:.2}s mean of {}",
        walls.iter().sum::<f64>() / walls.len() as f64,
        walls.len()
    );
    Ok(())
}

/// A guest that never finishes: the wait must time out, kill QEMU, and the
/// error must show the console so the failure is debuggable.
#[test]
fn timeout_kills_qemu_and_reports_console_tail() -> Result<()> {
    let image = ImageBuilder::empty()
        .busybox()
        .bytes(
            "/init",
            "#!/bin/sh\necho hanging-on-purpose\nexec sleep 1000\n",
            0o755,
        )
        .build()?;
    let mut vm = Vm::boot(&image, VmOpts::default())?;
    vm.wait_for_console("hanging-on-purpose", Duration::from_secs(60))?;
    let err = match vm.wait_exit(Duration::from_millis(500)) {
        Ok(exit) => panic!("guest was meant to hang, but qemu exited: {exit:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("hanging-on-purpose"), "{err}");
    assert!(err.contains("qemu-system-x86_64"), "{err}");
    // QEMU is gone: a second wait returns its (signal) exit at once.
    let exit = vm.wait_exit(Duration::from_secs(1))?;
    assert!(!exit.status.success());
    assert_eq!(exit.end, GuestEnd::Unknown);
    Ok(())
}

/// PID 1 exiting panics the kernel; with `panic=-1` and `-no-reboot` QEMU
/// exits 0, and the harness tells that apart from a power-off.
#[test]
fn init_exit_is_reported_as_panic() -> Result<()> {
    let image = ImageBuilder::empty()
        .busybox()
        .bytes("/init", "#!/bin/sh\necho bye > /dev/ttyS1\nexit 3\n", 0o755)
        .build()?;
    let mut vm = Vm::boot(&image, VmOpts::default())?;
    let exit = vm.wait_exit(Duration::from_secs(60))?;
    assert_eq!(exit.end, GuestEnd::Panic, "{}", vm.console_text());
    assert!(!exit.powered_off());
    Ok(())
}
