//! quilt-init as PID 1 on a real kernel in QEMU: mounts, cgroup2, modules,
//! supervision, backoff, reaping, shutdown order, watchdog, fatal errors.
//!
//! Each test boots its own image. Guest services are busybox shell scripts;
//! they assert from the inside and report on `/dev/ttyS1`, while the test
//! reads init's `quilt: event=…` lines from the console.

mod common;

use common::{
    check_crash_loop, check_early_mounts, check_orderly_shutdown, check_orphans, events_named,
    for_service, shutdown_config, t, CHECK, CRASH_LOOP_CONFIG, FORKER, MOUNTS_CONFIG,
    ORPHANS_CONFIG,
};
use quilt_system_tests::{GuestEnd, ImageBuilder, Vm, VmOpts};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

fn boot(config: &str, opts: VmOpts) -> Vm {
    boot_with(config, &[], &[], opts)
}

/// Boot with shell scripts installed (executable) at the given paths and
/// kernel modules (with their dependencies) in the image.
fn boot_with(config: &str, scripts: &[(&str, &str)], modules: &[&str], opts: VmOpts) -> Vm {
    let mut b = ImageBuilder::new()
        .busybox()
        .modules(modules)
        .config_toml(config);
    for (path, body) in scripts {
        b = b.bytes(path, format!("#!/bin/sh\n{body}"), 0o755);
    }
    Vm::boot(&b.build().unwrap(), opts).unwrap()
}

#[test]
fn early_mounts_cgroup2_hostname_modules_and_limits() {
    let mut vm = boot_with(
        MOUNTS_CONFIG,
        &[("/bin/check.sh", CHECK)],
        &["overlay"],
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    check_early_mounts(&mut vm, BOOT);
}

#[test]
fn crash_loop_backs_off_and_does_not_starve_others() {
    let mut vm = boot(
        CRASH_LOOP_CONFIG,
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    check_crash_loop(&mut vm, BOOT);
}

#[test]
fn orphans_are_reaped_leaving_no_zombies() {
    let mut vm = boot_with(
        ORPHANS_CONFIG,
        &[("/bin/forker.sh", FORKER)],
        &[],
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    check_orphans(&mut vm, BOOT);
}

#[test]
fn sigusr2_powers_off_stopping_services_in_reverse_order() {
    let mut vm = boot(
        &shutdown_config("USR2"),
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    check_orderly_shutdown(&vm, "poweroff");
}

#[test]
fn sigterm_reboots_after_the_same_orderly_stop() {
    let mut vm = boot(
        &shutdown_config("TERM"),
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert_eq!(exit.end, GuestEnd::Reboot, "{exit:?}");
    check_orderly_shutdown(&vm, "reboot");
}

#[test]
fn readiness_gates_dependents() {
    let config = r#"
[[service]]
name = "slowfd"
exec = ["/bin/sh", "-c", "sleep 1; echo ready >&3; exec sleep 100"]
ready = { fd = 3 }

[[service]]
name = "slowfile"
exec = ["/bin/sh", "-c", "sleep 1; touch /run/slowfile.ready; exec sleep 100"]
ready = { file = "/run/slowfile.ready" }

[[service]]
name = "dependent"
exec = ["/bin/sh", "-c", "echo dependent-ran > /dev/ttyS1"]
after = ["slowfd", "slowfile"]
restart = "never"
on_exit = "poweroff"
"#;
    let mut vm = boot(
        config,
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    assert!(vm.channel_text().contains("dependent-ran"));
    let ev = vm.events();
    for svc in ["slowfd", "slowfile"] {
        let start = t(for_service(&ev, "service-start", svc)[0]);
        let ready = t(for_service(&ev, "service-ready", svc)[0]);
        assert!(
            ready - start >= 0.9,
            "{svc} marked ready after {} s, it sleeps 1 s first",
            ready - start
        );
        let dep = t(for_service(&ev, "service-start", "dependent")[0]);
        assert!(dep >= ready, "dependent started before {svc} was ready");
    }
}

#[test]
fn watchdog_is_fed_for_three_timeouts() {
    let config = r#"
modules = ["i6300esb"]
[watchdog]
timeout_s = 3

[[service]]
name = "wait"
exec = ["/bin/sh", "-c", "sleep 10; echo survived > /dev/ttyS1"]
restart = "never"
on_exit = "poweroff"
"#;
    let image = ImageBuilder::new()
        .busybox()
        .modules(&["i6300esb"])
        .config_toml(config)
        .build()
        .unwrap();
    let opts = VmOpts {
        pcie: true,
        timeout: BOOT,
        ..VmOpts::default()
    }
    .device("i6300esb");
    let mut vm = Vm::boot(&image, opts).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(
        exit.powered_off(),
        "watchdog reset the guest or it hung: {exit:?}"
    );
    let ev = vm.events();
    let armed = events_named(&ev, "watchdog-armed");
    assert_eq!(armed.len(), 1, "watchdog not armed");
    assert_eq!(armed[0].get("timeout_s"), Some("3"));
    assert!(vm.channel_text().contains("survived"));
    let span = t(events_named(&ev, "poweroff")[0]) - t(armed[0]);
    assert!(
        span >= 9.0,
        "guest only lived {span} s past arming (3 × 3 s needed)"
    );
}

#[test]
fn a_hung_init_is_reset_by_the_watchdog() {
    let config = r#"
modules = ["i6300esb"]
[watchdog]
timeout_s = 2

[[service]]
name = "wait"
exec = ["/bin/sh", "-c", "sleep 30; echo survived > /dev/ttyS1"]
restart = "never"
on_exit = "poweroff"
"#;
    let image = ImageBuilder::new()
        .busybox()
        .modules(&["i6300esb"])
        .config_toml(config)
        .build()
        .unwrap();
    let opts = VmOpts {
        pcie: true,
        timeout: BOOT,
        ..VmOpts::default()
    }
    .device("i6300esb")
    .cmdline("quilt.debug.hang_after=2");
    let mut vm = Vm::boot(&image, opts).unwrap();
    vm.wait_for_console("event=debug-hang", BOOT).unwrap();
    // The device resets the board; with -no-reboot QEMU then exits. Nothing
    // powered off in order, and the 30 s service never finished.
    let exit = vm.wait_exit(Duration::from_secs(60)).unwrap();
    assert_ne!(exit.end, GuestEnd::PowerOff, "{exit:?}");
    assert!(events_named(&vm.events(), "poweroff").is_empty());
    assert!(!vm.channel_text().contains("survived"));
}

#[test]
fn a_corrupt_boot_config_is_a_clear_fatal_error() {
    let image = ImageBuilder::new()
        .busybox()
        .bytes(
            "/etc/quilt/boot.bin",
            b"QCFG\x01\x00garbage".to_vec(),
            0o644,
        )
        .build()
        .unwrap();
    let opts = VmOpts {
        timeout: BOOT,
        ..VmOpts::default()
    }
    .cmdline("quilt.fatal=poweroff quilt.fatal_delay=1");
    let mut vm = Vm::boot(&image, opts).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let con = vm.console_text();
    assert!(con.contains("FATAL BOOT ERROR"), "{con}");
    assert!(
        con.contains("boot config /etc/quilt/boot.bin refused"),
        "{con}"
    );
    assert!(
        con.contains("quilt config check"),
        "no hint of what to do next:\n{con}"
    );
    let ev = vm.events();
    assert_eq!(
        events_named(&ev, "fatal-action")[0].get("action"),
        Some("poweroff")
    );
    assert!(events_named(&ev, "service-start").is_empty());
}

#[test]
fn a_missing_boot_config_says_how_to_make_one() {
    let image = ImageBuilder::new().build().unwrap();
    let opts = VmOpts {
        timeout: BOOT,
        ..VmOpts::default()
    }
    .cmdline("quilt.fatal=poweroff quilt.fatal_delay=0 quilt.bogus=1");
    let mut vm = Vm::boot(&image, opts).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let con = vm.console_text();
    assert!(
        con.contains("cannot read boot config /etc/quilt/boot.bin"),
        "{con}"
    );
    assert!(con.contains("quilt config compile"), "{con}");
    assert!(
        con.contains("event=cmdline-unknown param=quilt.bogus=1"),
        "{con}"
    );
}

#[test]
fn pid1_binary_is_static_and_within_budget() {
    let bin = quilt_system_tests::quilt_init_binary().unwrap();
    let out = std::process::Command::new("file")
        .arg(&bin)
        .output()
        .unwrap();
    let desc = String::from_utf8_lossy(&out.stdout);
    assert!(
        desc.contains("statically linked") || desc.contains("static-pie linked"),
        "{desc}"
    );
    let size = std::fs::metadata(&bin).unwrap().len();
    println!(
        "quilt-init size: {size} bytes ({:.2} MiB)",
        size as f64 / 1048576.0
    );
    // Goal is 1 MiB; glibc-static + std alone is ~1.09 MB here, and bundle
    // verification, the store and the container runtime bring it to ~1.6 MB,
    // the bus owner side, the control verbs, the ledger and exec to ~1.78 MB,
    // the serial update receiver to ~1.85 MB, USB installs to 1,898,464
    // bytes, the TCP relay for net: tokens and fd-passed installs to
    // 1,939,488, A/B slots (stage 1, health, firmware staging, resume) and
    // the pod PID-namespace holder to 1,991,424 (opt-level "s" on the cold
    // crates made it larger, 1.95 MB before the last three), the trust
    // boundary fixes and the second seccomp filter (+10 KB), the manifest's
    // tool list (+4 KB) and systemd-boot boot counting (+17 KB) to
    // 2,027,360, dm-verity for root slots to 2,050,912. Moving installs,
    // sticks, the serial receiver and firmware staging into quilt-install
    // (issue 15; no SHA3, ed25519, store or link left in PID 1) brought it
    // down to 1,802,176 (aarch64: 1,667,600 to 1,471,008). The API module,
    // the supervisor state machine and reading exec reports without
    // blocking brought it to 1,825,408, services' own control sockets
    // (issue 17) to 1,834,432. This budget, that figure plus 0.8 %, catches
    // regressions.
    assert!(size <= 1_850_000, "quilt-init grew to {size} bytes");
}
