//! quilt-init's control socket under abuse: a flood of malformed and
//! oversized frames from 64 concurrent clients while `ps` keeps working.

use quilt_system_tests::{guest_binary, ImageBuilder, Vm, VmOpts};
use std::time::Duration;

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
    let t = Duration::from_secs(300);
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            timeout: t,
            ..VmOpts::default()
        }
        .cmdline("clocksource=tsc tsc=reliable"),
    )
    .unwrap();
    let exit = vm.wait_exit(t).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
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
