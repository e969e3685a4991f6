//! The shared-memory bus end to end: channels declared in the boot config,
//! made by quilt-init, handed to Bun containers by their bundles' signed
//! `bus:<topic>:pub|sub` tokens, used through the `quilt-bus` package
//! (`bun:ffi` over libquiltbus.so) — real kernel, real Bun, real
//! signatures.

use quilt_system_tests::{guest_binary, repo_root, ImageBuilder, Vm, VmOpts};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(400);

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures/tools").join(name)
}

fn boot(config: &str, probe: &str, examples: &[&str], fixtures: &[&str]) -> Vm {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let mut b = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .bus_client()
        .file("/bin/quilt", &cli, 0o755)
        .bytes("/bin/probe.sh", format!("#!/bin/sh\n{probe}"), 0o755)
        .config_toml(config);
    for e in examples {
        b = b.signed_example(e);
    }
    for f in fixtures {
        b = b.signed_tool(f, &fixture(f));
    }
    Vm::boot(
        &b.build().unwrap(),
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            ..VmOpts::default()
        },
    )
    .unwrap()
}

fn json_line(ch: &str, prefix: &str) -> serde_json::Value {
    let line = ch
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line on the channel:\n{ch}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{prefix}{line}: {e}"))
}

/// The tool's own JSON (its stdout) out of a `quilt run --json` line.
fn tool_json(ch: &str, prefix: &str) -> serde_json::Value {
    let run = json_line(ch, prefix);
    serde_json::from_str(run["stdout"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{prefix}: {e}: {run}"))
}

const CALC: &str = r#"
[[bus]]
topic = "calc.req"
slots = 64
slot_size = 4096
subscribers = 2

[[bus]]
topic = "calc.rep"
slots = 64
slot_size = 4096
subscribers = 2

[[service]]
name = "calc"
bundle = "examples/bus-server"
restart = "always"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["calc"]
restart = "never"
on_exit = "poweroff"
"#;

#[test]
fn two_bun_containers_exchange_ten_thousand_requests_and_tokens_fence_the_rest() {
    let probe = r#"
echo '{"requests":10000,"size":64}' > /tmp/in.json
echo "client=$(quilt run examples/bus-client measure --json --timeout-ms 400000 --input /tmp/in.json)" > /dev/ttyS1
echo "stats=$(quilt stats --json | tr -d '\n')" > /dev/ttyS1
echo "intruder=$(quilt run bus-intruder --json)" > /dev/ttyS1
echo "checker=$(quilt run checker --json)" > /dev/ttyS1
"#;
    let mut vm = boot(
        CALC,
        probe,
        &["bus-server", "bus-client"],
        &["bus-intruder", "checker"],
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    // bus-client is an SDK tool: its result, or an error envelope naming
    // what went wrong (a lost or wrong reply fails it).
    assert_eq!(json_line(&ch, "client=")["status"], 0, "{ch}");
    let envelope = tool_json(&ch, "client=");
    let client = envelope
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{envelope}\n{}", vm.console_text()));
    assert_eq!(client["sent"], 10_000, "{client}");
    assert_eq!(client["received"], 10_000, "{client}");
    assert_eq!(client["in_order"], true, "{client}");
    assert_eq!(client["mismatches"], 0, "{client}");
    // quilt-init's own counters saw the traffic: both channels carried
    // the 10,000 messages (`quilt stats`, what quiltd's /metrics serves).
    let stats = json_line(&ch, "stats=");
    for topic in ["calc.req", "calc.rep"] {
        let c = stats["bus"]
            .as_array()
            .and_then(|b| b.iter().find(|c| c["topic"] == topic))
            .unwrap_or_else(|| panic!("no {topic} in {stats}"));
        assert!(
            c["published"].as_u64().is_some_and(|n| n >= 10_000),
            "{stats}"
        );
    }
    assert!(
        stats["runs"]["ok"].as_u64().is_some_and(|n| n >= 1),
        "{stats}"
    );
    assert!(stats["init_fds"].as_u64().is_some_and(|n| n > 3), "{stats}");
    let intruder = tool_json(&ch, "intruder=");
    for (check, ok) in intruder["checks"].as_object().unwrap() {
        assert_eq!(ok, true, "intruder check {check} failed: {intruder}");
    }
    let checker = tool_json(&ch, "checker=");
    assert_eq!(checker["checks"]["no_control_socket"], true, "{checker}");
    let ev = vm.events();
    assert_eq!(
        ev.iter()
            .filter(|e| e.name() == Some("bus-channel"))
            .count(),
        2
    );
    eprintln!(
        "bus round trip in the guest: p50 {} us, p99 {} us over {} requests",
        client["p50_us"], client["p99_us"], client["sent"]
    );
}

const TELEMETRY: &str = r#"
[[bus]]
topic = "telemetry"
slots = 64
slot_size = 64
mode = "drop-oldest"
subscribers = 2

[[service]]
name = "tele"
bundle = "bus-pub"
restart = "always"
backoff_ms = 100

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["tele"]
restart = "never"
on_exit = "poweroff"
"#;

#[test]
fn a_publisher_killed_mid_stream_leaves_subscribers_working_and_the_channel_recoverable() {
    let probe = r#"
echo '{"seconds":120,"after":200}' > /tmp/in.json
quilt run bus-sub --json --timeout-ms 200000 --input /tmp/in.json > /tmp/sub1.out 2>&1 &
quilt run bus-sub --json --timeout-ms 200000 --input /tmp/in.json > /tmp/sub2.out 2>&1 &
# Kill the first publisher only once it publishes, and give the
# subscribers time to hear it: on a loaded machine Bun can take seconds
# to start, and a subscriber that never heard the first incarnation
# cannot tell the two apart.
for i in $(seq 1 300); do quilt logs tele | grep -q 'publishing as' && break; sleep 0.1; done
sleep 4
pids=$(cat /sys/fs/cgroup/quilt/tele/cgroup.procs)
echo "killed=$pids" > /dev/ttyS1
kill -9 $pids
wait
echo "sub1=$(cat /tmp/sub1.out)" > /dev/ttyS1
echo "sub2=$(cat /tmp/sub2.out)" > /dev/ttyS1
"#;
    let mut vm = boot(TELEMETRY, probe, &[], &["bus-pub", "bus-sub"]);
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}");
    let ch = vm.channel_text();
    for sub in ["sub1=", "sub2="] {
        let s = tool_json(&ch, sub);
        // Both incarnations seen: the restarted publisher took the channel
        // over and this subscriber kept reading through the kill.
        assert_eq!(s["publishers"], 2, "{sub}{s}\n{}", vm.console_text());
        assert!(s["after_second"].as_u64().unwrap() >= 200, "{s}");
        assert_eq!(s["torn"], 0, "a torn message reached a reader: {s}");
        assert_eq!(s["backwards"], 0, "{s}");
    }
    let restarts = vm
        .events()
        .iter()
        .filter(|e| e.name() == Some("service-start") && e.get("name") == Some("tele"))
        .count();
    assert!(restarts >= 2, "the publisher was not restarted");
}
