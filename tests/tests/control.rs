//! quilt-init's control socket under abuse: a flood of malformed and
//! oversized frames from 64 concurrent clients while `ps` keeps working.

use quilt_system_tests::{guest_binary, ImageBuilder, Vm, VmOpts};
use std::time::Duration;

/// Boot `img` and wait until the guest powers itself off (its probe's
/// `on_exit = "poweroff"`), within `t`.
fn run_to_poweroff(img: &std::path::Path, opts: VmOpts, t: Duration) -> Vm {
    let mut vm = Vm::boot(img, VmOpts { timeout: t, ..opts }).unwrap();
    let exit = vm.wait_exit(t).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    vm
}

#[test]
fn malformed_floods_from_64_clients_leave_pid1_responsive() {
    let flood = guest_binary("quilt-system-tests", "quilt-flood").unwrap();
    let config = r#"
[[service]]
name = "flood"
exec = ["/bin/sh", "-c", "sleep 0.5; /bin/quilt-flood > /dev/ttyS1 2>&1"]
restart = "never"
on_exit = "poweroff"

[[service]]
name = "steady"
exec = ["/bin/sh", "-c", "while :; do sleep 0.2; done"]
"#;
    let img = ImageBuilder::new()
        .busybox()
        .file("/bin/quilt-flood", &flood, 0o755)
        .config_toml(config)
        .build()
        .unwrap();
    let vm = run_to_poweroff(
        &img,
        VmOpts::default().cmdline("clocksource=tsc tsc=reliable"),
        Duration::from_secs(300),
    );
    let ch = vm.channel_text();
    let line = ch
        .lines()
        .find(|l| l.starts_with("FLOOD "))
        .unwrap_or_else(|| panic!("no result:\n{ch}"));
    let get = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    eprintln!("{line}");
    // Every bad frame got an error reply; nothing else came back.
    assert_eq!(get("refused"), 10_000, "{line}");
    assert_eq!(get("other"), 0, "{line}");
    assert!(
        get("list_n") >= 5,
        "ps was barely answered during the flood: {line}"
    );
    let ev = vm.events();
    // PID 1 went on supervising: the steady service never restarted.
    assert_eq!(
        ev.iter()
            .filter(|e| e.name() == Some("service-start") && e.get("name") == Some("steady"))
            .count(),
        1
    );
}

#[test]
fn the_operator_stops_starts_restarts_and_follows_services() {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let config = r#"
[[service]]
name = "beat"
exec = ["/bin/sh", "-c", "n=0; while :; do n=$((n+1)); echo beat $n; sleep 0.1; done"]
restart = "always"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["beat"]
restart = "never"
on_exit = "poweroff"
"#;
    let probe = r#"#!/bin/sh
out=/dev/ttyS1
state() { quilt ps --json | tr -d ' \n' | sed 's/},{/}\n{/g' | grep '"name":"beat"' | sed 's/.*"state":"\([a-z]*\)".*/\1/'; }
pid() { quilt ps --json | tr -d ' \n' | sed 's/},{/}\n{/g' | grep '"name":"beat"' | sed 's/.*"pid":\([0-9]*\).*/\1/'; }
quilt events --json > /tmp/events &
ev=$!
sleep 0.5
echo "logs_has_beat=$(quilt logs beat | grep -c '^beat ')" > $out
quilt logs beat -f > /tmp/follow &
fol=$!
sleep 1
kill $fol
echo "follow_lines=$(grep -c '^beat ' /tmp/follow)" > $out
first=$(pid)
echo "stop=$(quilt stop beat)" > $out
for i in $(seq 1 50); do [ "$(state)" = stopped ] && break; sleep 0.1; done
echo "after_stop=$(state) populated=$(grep populated /sys/fs/cgroup/quilt/beat/cgroup.events)" > $out
sleep 0.5
echo "still_stopped=$(state)" > $out
echo "start=$(quilt start beat)" > $out
for i in $(seq 1 50); do [ "$(state)" = running ] && break; sleep 0.1; done
second=$(pid)
echo "after_start=$(state)" > $out
echo "restart=$(quilt restart beat)" > $out
for i in $(seq 1 50); do p=$(pid); [ "$(state)" = running ] && [ -n "$p" ] && [ "$p" != "$second" ] && break; sleep 0.1; done
third=$(pid)
echo "pids_distinct=$( [ "$first" != "$second" ] && [ "$second" != "$third" ] && echo yes)" > $out
quilt stop nope 2> /tmp/err
echo "unknown_status=$? msg=$(cat /tmp/err)" > $out
sleep 0.3
kill $ev
echo "ev_stopped=$(grep -c '"event":"service-stopped"' /tmp/events)" > $out
echo "ev_start=$(grep '"event":"service-start"' /tmp/events | grep -c '"name":"beat"')" > $out
"#;
    let img = ImageBuilder::new()
        .busybox()
        .file("/bin/quilt", &cli, 0o755)
        .bytes("/bin/probe.sh", probe, 0o755)
        .config_toml(config)
        .build()
        .unwrap();
    let vm = run_to_poweroff(&img, VmOpts::default(), Duration::from_secs(120));
    let ch = vm.channel_text();
    let get = |k: &str| -> String {
        ch.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= line:\n{ch}"))
            .to_owned()
    };
    assert!(get("logs_has_beat").parse::<u32>().unwrap() >= 1, "{ch}");
    assert!(get("follow_lines").parse::<u32>().unwrap() >= 3, "{ch}");
    assert_eq!(get("stop"), "beat: stopping", "{ch}");
    assert_eq!(get("after_stop"), "stopped populated=populated 0", "{ch}");
    // `restart = "always"` does not bring back what the operator stopped.
    assert_eq!(get("still_stopped"), "stopped", "{ch}");
    assert_eq!(get("start"), "beat: waiting", "{ch}");
    assert_eq!(get("after_start"), "running", "{ch}");
    assert_eq!(get("restart"), "beat: stopping", "{ch}");
    assert_eq!(get("pids_distinct"), "yes", "{ch}");
    let unknown = get("unknown_status");
    assert!(
        unknown.starts_with("3 msg=") && unknown.contains("no service named \"nope\""),
        "{unknown}"
    );
    // The subscriber saw the stops (stop, and restart's stop) and the starts.
    assert!(get("ev_stopped").parse::<u32>().unwrap() >= 2, "{ch}");
    assert!(get("ev_start").parse::<u32>().unwrap() >= 2, "{ch}");
}

/// A plain service that is not root (a gateway such as quiltd) drives
/// the board through a socket of its own, for the verbs its boot config
/// grants and no others; nobody else can use that socket, and the root
/// socket stays root's.
#[test]
fn a_service_granted_verbs_gets_its_own_socket_and_only_those_verbs() {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let config = r#"
[[service]]
name = "gw"
exec = ["/bin/gw.sh"]
uid = 1000
gid = 1000
control = ["list", "run"]
restart = "never"
on_exit = "poweroff"

[[service]]
name = "other"
exec = ["/bin/sh", "-c", "sleep 0.2; /bin/quilt ping --socket /run/quilt/control.d/gw.sock > /dev/null 2>&1 && echo OTHER=ok || echo OTHER=refused"]
uid = 2000
gid = 2000
restart = "never"
"#;
    let gw = r#"#!/bin/sh
S=/run/quilt/control.d/gw.sock
sleep 0.5
echo "GW-ID=$(id -u)"
/bin/quilt ping --socket $S > /dev/null 2>&1 && echo GW-PING=ok || echo GW-PING=fail
echo "GW-PS=$(/bin/quilt ps --socket $S 2>&1 | grep -c -E '^(gw|other) ')"
echo "GW-PODS=$(/bin/quilt pods --socket $S > /dev/null 2>&1; echo $?)"
echo "GW-SLOTS=$(/bin/quilt slots --socket $S 2>&1 | head -n 1)"
echo "GW-STOP=$(/bin/quilt stop other --socket $S 2>&1 | head -n 1)"
/bin/quilt ping > /dev/null 2>&1 && echo GW-ROOT=ok || echo GW-ROOT=refused
"#;
    let img = ImageBuilder::new()
        .busybox()
        .file("/bin/quilt", &cli, 0o755)
        .bytes("/bin/gw.sh", gw, 0o755)
        .config_toml(config)
        .build()
        .unwrap();
    let vm = run_to_poweroff(&img, VmOpts::default(), Duration::from_secs(120));
    let console = vm.console_text();
    let get = |k: &str| -> String {
        console
            .lines()
            .find_map(|l| l.split_once(&format!("{k}=")).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no {k}= line:\n{console}"))
            .to_owned()
    };
    assert_eq!(get("GW-ID"), "1000", "it runs as its own uid, not root");
    assert_eq!(get("GW-PING"), "ok");
    assert_eq!(get("GW-PS"), "2", "`list` lists the services");
    assert_eq!(get("GW-PODS"), "0", "pods come with `list`");
    let slots = get("GW-SLOTS");
    assert!(
        slots.contains("service \"gw\" may not `slots` here"),
        "{slots}"
    );
    let stop = get("GW-STOP");
    assert!(stop.contains("may not `services` here"), "{stop}");
    assert_eq!(get("GW-ROOT"), "refused", "the root socket stays root's");
    assert_eq!(
        get("OTHER"),
        "refused",
        "another uid cannot use gw's socket"
    );
    let ev = vm.events();
    let granted = ev
        .iter()
        .find(|e| e.name() == Some("control-granted"))
        .unwrap_or_else(|| panic!("no control-granted event:\n{console}"));
    assert_eq!(granted.get("name"), Some("gw"));
    assert_eq!(granted.get("verbs"), Some("list,run"));
    assert_eq!(granted.get("uid"), Some("1000"));
    let denied: Vec<_> = ev
        .iter()
        .filter(|e| e.name() == Some("control-denied"))
        .filter_map(|e| e.get("verb"))
        .collect();
    assert_eq!(denied, ["slots", "services"]);
}
