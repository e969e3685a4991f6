//! quilt-init as PID 1 on a real kernel in QEMU: mounts, cgroup2, modules,
//! supervision, backoff, reaping, shutdown order, watchdog, fatal errors.
//!
//! Each test boots its own image. Guest services are busybox shell scripts;
//! they assert from the inside and report on `/dev/ttyS1`, while the test
//! reads init's `quilt: event=…` lines from the console.

use quilt_system_tests::{Event, GuestEnd, ImageBuilder, Vm, VmOpts};
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

fn events_named<'a>(events: &'a [Event], name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.name() == Some(name)).collect()
}

fn for_service<'a>(events: &'a [Event], name: &str, svc: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.name() == Some(name) && e.get("name") == Some(svc))
        .collect()
}

fn t(e: &Event) -> f64 {
    e.t().unwrap()
}

const CHECK: &str = r#"
out=/dev/ttyS1
echo "comm1=$(cat /proc/1/comm)" > $out
while read -r src dst fs opts rest; do echo "mount $dst $fs $opts" > $out; done < /proc/mounts
echo "hostname=$(hostname)" > $out
echo "mycgroup=$(cat /proc/self/cgroup)" > $out
echo "subtree=$(cat /sys/fs/cgroup/quilt/cgroup.subtree_control)" > $out
echo "memory.max=$(cat /sys/fs/cgroup/quilt/check/memory.max)" > $out
echo "pids.max=$(cat /sys/fs/cgroup/quilt/check/pids.max)" > $out
echo "cpu.max=$(cat /sys/fs/cgroup/quilt/check/cpu.max)" > $out
grep -q '^overlay ' /proc/modules && echo "module=overlay" > $out
echo "stdin=$(readlink /proc/self/fd/0)" > $out
echo "env=$(env | sort | tr '\n' ' ')" > $out
echo done > $out
"#;

#[test]
fn early_mounts_cgroup2_hostname_modules_and_limits() {
    let config = r#"
hostname = "qtest"
modules = ["overlay"]

[[service]]
name = "check"
exec = ["/bin/check.sh"]
restart = "never"
on_exit = "poweroff"
env = ["GREETING=hi"]
limits = { memory_max = 67108864, pids_max = 64, cpu_quota_us = 50000 }
"#;
    let mut vm = boot_with(
        config,
        &[("/bin/check.sh", CHECK)],
        &["overlay"],
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(
        exit.powered_off(),
        "guest did not power off cleanly: {exit:?}"
    );
    let ch = vm.channel_text();
    let has = |needle: &str| assert!(ch.contains(needle), "channel lacks {needle:?}:\n{ch}");
    has("comm1=init");
    has("mount /proc proc ");
    has("mount /sys sysfs ");
    has("mount /dev devtmpfs ");
    has("mount /dev/pts devpts ");
    has("mount /dev/shm tmpfs ");
    has("mount /run tmpfs ");
    has("mount /tmp tmpfs ");
    assert!(
        ch.lines()
            .any(|l| l.starts_with("mount /sys/fs/cgroup cgroup2 ") && l.contains("nsdelegate")),
        "no cgroup2 with nsdelegate:\n{ch}"
    );
    has("hostname=qtest");
    has("mycgroup=0::/quilt/check");
    for c in ["cpu", "memory", "pids"] {
        assert!(
            ch.lines()
                .any(|l| l.starts_with("subtree=") && l.split_whitespace().any(|w| w.ends_with(c))),
            "controller {c} not delegated:\n{ch}"
        );
    }
    has("memory.max=67108864");
    has("pids.max=64");
    has("cpu.max=50000 100000");
    has("module=overlay");
    has("stdin=/dev/null");
    has("GREETING=hi");
    has("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    let ev = vm.events();
    assert_eq!(
        for_service(&ev, "service-start", "check")[0].get("placement"),
        Some("clone3")
    );
    assert_eq!(events_named(&ev, "module-loaded").len(), 1);
}

#[test]
fn crash_loop_backs_off_and_does_not_starve_others() {
    let config = r#"
[[service]]
name = "crasher"
exec = ["/bin/sh", "-c", "echo crashing; exit 3"]
backoff_ms = 100
backoff_max_ms = 800

[[service]]
name = "missing"
exec = ["/no/such/binary"]
backoff_ms = 200
backoff_max_ms = 400

[[service]]
name = "ticker"
exec = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i > /dev/ttyS1; sleep 0.2; done"]

[[service]]
name = "judge"
exec = ["/bin/sh", "-c", "sleep 6"]
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
    let ev = vm.events();

    // The crasher backs off: 100, 200, 400, 800, then stays at the cap.
    let delays: Vec<u64> = for_service(&ev, "service-backoff", "crasher")
        .iter()
        .map(|e| e.get("delay_ms").unwrap().parse().unwrap())
        .collect();
    assert!(
        delays.len() >= 5,
        "too few restarts to see the cap: {delays:?}"
    );
    assert_eq!(&delays[..5], &[100, 200, 400, 800, 800], "backoff sequence");
    assert!(delays.iter().all(|&d| d <= 800));
    // ...and the delays really separate its starts (guest clock).
    let starts: Vec<f64> = for_service(&ev, "service-start", "crasher")
        .iter()
        .map(|e| t(e))
        .collect();
    for (k, w) in starts.windows(2).enumerate().take(4) {
        let gap_ms = (w[1] - w[0]) * 1000.0;
        assert!(
            gap_ms >= delays[k] as f64 - 5.0,
            "start {k}: gap {gap_ms} ms < backoff {}",
            delays[k]
        );
    }
    // In ~6 s with a 0.8 s cap it cannot have started more than ~12 times.
    assert!(
        starts.len() <= 14,
        "crash loop not rate-limited: {} starts",
        starts.len()
    );

    // A binary that does not exist is reported with its stage and backs off.
    let failed = for_service(&ev, "service-exec-failed", "missing");
    assert!(!failed.is_empty());
    assert_eq!(failed[0].get("stage"), Some("exec"));
    assert!(
        failed[0].line.contains("No such file"),
        "{}",
        failed[0].line
    );
    assert!(for_service(&ev, "service-backoff", "missing").len() >= 2);

    // The neighbour ran undisturbed the whole time: started once, never
    // exited before shutdown, and kept ticking every 0.2 s.
    assert_eq!(for_service(&ev, "service-start", "ticker").len(), 1);
    let ticks = vm
        .channel_text()
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count();
    assert!(ticks >= 15, "ticker starved: only {ticks} ticks in ~6 s");
    let ticker_exit = for_service(&ev, "service-exit", "ticker");
    assert!(ticker_exit
        .iter()
        .all(|e| e.get("during") == Some("shutdown")));
}

const FORKER: &str = r#"
for i in $(seq 100); do (sleep 0.5 &) ; done
echo "orphans-started" > /dev/ttyS1
sleep 3
z=0
for f in /proc/[0-9]*/stat; do
  read -r pid comm state rest < "$f" 2>/dev/null || continue
  [ "$state" = Z ] && z=$((z+1))
done
echo "zombies=$z" > /dev/ttyS1
echo "sleepers=$(ps -o comm | grep -c '^sleep$')" > /dev/ttyS1
"#;

#[test]
fn orphans_are_reaped_leaving_no_zombies() {
    // Each subshell starts a sleep in the background and exits at once, so
    // the 100 sleeps are re-parented to PID 1, which must reap them.
    let config = r#"
[[service]]
name = "forker"
exec = ["/bin/forker.sh"]
restart = "never"
on_exit = "poweroff"
"#;
    let mut vm = boot_with(
        config,
        &[("/bin/forker.sh", FORKER)],
        &[],
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    );
    vm.wait_for_channel("orphans-started", BOOT).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    assert!(ch.contains("zombies=0"), "zombies left:\n{ch}");
    assert!(ch.contains("sleepers=0"), "orphans still running:\n{ch}");
    let ev = vm.events();
    let reaped: u64 = events_named(&ev, "shutdown-begin")[0]
        .get("orphans_reaped")
        .unwrap()
        .parse()
        .unwrap();
    assert!(reaped >= 100, "PID 1 reaped only {reaped} orphans");
}

/// Three services in a chain plus one that ignores SIGTERM; a trigger sends
/// `signal` to PID 1 after they are up.
fn shutdown_config(signal: &str) -> String {
    let svc = |name: &str, after: &str| {
        format!(
            r#"
[[service]]
name = "{name}"
exec = ["/bin/sh", "-c", "trap 'echo stopping {name} > /dev/ttyS1; exit 0' TERM; echo up {name} > /dev/ttyS1; while :; do sleep 0.1; done"]
after = [{after}]
"#
        )
    };
    format!(
        r#"
shutdown_grace_ms = 1500
{}{}{}
[[service]]
name = "stubborn"
exec = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]

[[service]]
name = "trigger"
exec = ["/bin/sh", "-c", "sleep 1; kill -{signal} 1"]
after = ["web", "stubborn"]
restart = "never"
"#,
        svc("db", ""),
        svc("api", "\"db\""),
        svc("web", "\"api\"")
    )
}

fn check_orderly_shutdown(vm: &Vm, action: &str) {
    let ev = vm.events();
    let begin = events_named(&ev, "shutdown-begin");
    assert_eq!(begin.len(), 1);
    assert_eq!(begin[0].get("action"), Some(action));
    // Reverse dependency order, seen from the inside...
    let ch = vm.channel_text();
    let pos = |s: &str| ch.find(s).unwrap_or_else(|| panic!("{s:?} missing:\n{ch}"));
    assert!(pos("stopping web") < pos("stopping api"), "{ch}");
    assert!(pos("stopping api") < pos("stopping db"), "{ch}");
    // ...and from init's log: each is signalled only after its dependent stopped.
    let stop_t = |n: &str| t(for_service(&ev, "service-stop", n)[0]);
    let stopped_t = |n: &str| t(for_service(&ev, "service-stopped", n)[0]);
    assert!(stopped_t("web") <= stop_t("api"));
    assert!(stopped_t("api") <= stop_t("db"));
    // The stubborn one was killed when the grace period ran out, not before.
    let kill = for_service(&ev, "service-kill", "stubborn");
    assert_eq!(kill.len(), 1, "stubborn service not killed");
    let waited = t(kill[0]) - stop_t("stubborn");
    assert!(
        (1.4..4.0).contains(&waited),
        "killed after {waited} s, grace is 1.5 s"
    );
    // Nobody else needed killing, and everything is down before the end.
    assert_eq!(events_named(&ev, "service-kill").len(), 1);
    let end = events_named(&ev, action)[0];
    for n in ["db", "api", "web", "stubborn"] {
        assert!(stopped_t(n) <= t(end), "{n} not stopped before {action}");
    }
    assert!(
        t(end) - t(begin[0]) < 4.0,
        "shutdown took {} s",
        t(end) - t(begin[0])
    );
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
    // verification, the store and the container runtime bring it to ~1.6 MB
    // (see README). This budget catches regressions.
    assert!(size <= 1_700_000, "quilt-init grew to {size} bytes");
}
