//! Installs run out of PID 1 (issue 15): `quilt-install` is a process of
//! its own per job, in a cgroup of its own. Killed mid-install (SIGKILL),
//! or killed by the kernel for running out of its memory, it is a failed
//! install with a reason; PID 1 keeps answering, what ran before still
//! runs, the store stays whole (`quilt fsck`), and the next install works.
//! Real kernel, real quilt-init, real Bun, real signatures.

use quilt_system_tests::{
    data_tool, guest_binary, noise, signed_bundle, signed_example, work_dir, ImageBuilder, Vm,
    VmOpts,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(420);

/// A signed tool carrying `mib` MiB of incompressible data: installing it
/// hashes and writes every chunk, seconds of work under emulation.
fn big(name: &str, mib: usize) -> PathBuf {
    let dir = work_dir().unwrap().join("installer-tools").join(name);
    data_tool(&dir, name, mib << 20, 0x5eed_0015 + mib as u64).unwrap();
    signed_bundle(&dir).unwrap().qb
}

/// Boot an image with Bun, the CLI, examples/hello installed at boot,
/// `big` at /root/big.qb, the probe, and `bundles` extra lines in
/// `[bundles]`; the channel text and the events once it powered off.
fn run(big: &Path, probe: &str, bundles: &str) -> (String, Vec<quilt_system_tests::Event>, String) {
    let cli = guest_binary("quilt", "quilt").unwrap();
    let (hello, trust) = signed_example("hello").unwrap();
    let config = format!(
        r#"
[bundles]
{bundles}

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#
    );
    let img = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .file("/bin/quilt", &cli, 0o755)
        .tree("/etc/quilt/trust", &trust)
        .file("/usr/share/quilt/bundles/hello.qb", &hello, 0o644)
        .file("/root/big.qb", big, 0o644)
        .bytes("/bin/probe.sh", probe, 0o755)
        .config_toml(&config)
        .build()
        .unwrap();
    let (vm, ch) = Vm::run_to_poweroff(&img, 1536, BOOT);
    (ch, vm.events(), vm.console_text())
}

/// What the probe said after `key`.
fn said<'a>(ch: &'a str, key: &str) -> &'a str {
    ch.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line:\n{ch}"))
}

/// After the failed install: PID 1 answers, hello still runs, the store is
/// whole, and (`again`) the same bundle then installs and runs.
const AFTER: &str = r#"
echo "ping=$(quilt ping 2>&1 | tr '\n' ' ')" > /dev/ttyS1
echo "hello=$(quilt run examples/hello --json 2>&1 | tr -d '\n')" > /dev/ttyS1
echo "listed=$(quilt bundles 2>&1 | tr '\n' '|')" > /dev/ttyS1
quilt fsck > /tmp/f 2>&1; echo "fsck=$? $(tr '\n' '|' < /tmp/f)" > /dev/ttyS1
"#;

#[test]
fn an_installer_killed_mid_install_fails_that_install_and_nothing_else() {
    let big = big("big-kill", 48);
    let probe = format!(
        r#"#!/bin/sh
quilt install /root/big.qb > /tmp/i 2>&1 &
inst=$!
n=0
while ! pidof quilt-install > /dev/null; do
    n=$((n + 1)); [ $n -gt 400 ] && break; sleep 0.05
done
sleep 1
echo "killed=$(pidof quilt-install)" > /dev/ttyS1
kill -9 $(pidof quilt-install)
wait $inst; echo "install=$? $(tr '\n' ' ' < /tmp/i)" > /dev/ttyS1
{AFTER}
quilt install /root/big.qb > /tmp/j 2>&1; echo "again=$? $(tr '\n' ' ' < /tmp/j)" > /dev/ttyS1
echo "big=$(quilt run big-kill --json 2>&1 | tr -d '\n')" > /dev/ttyS1
"#
    );
    let (ch, events, console) = run(&big, &probe, "");
    assert!(!said(&ch, "killed=").trim().is_empty(), "{ch}\n{console}");
    let install = said(&ch, "install=");
    assert!(
        install.starts_with("3 "),
        "refused is exit 3: {install}\n{console}"
    );
    assert!(
        install.contains("the installer died of signal 9"),
        "{install}\n{console}"
    );
    assert!(
        events.iter().any(|e| e.name() == Some("install-failed")),
        "{console}"
    );
    check_after(&ch, &console);
    let again = said(&ch, "again=");
    assert!(again.starts_with("0 "), "{again}\n{console}");
    assert!(said(&ch, "big=").contains(r#"\"big\":50331648"#), "{ch}");
}

#[test]
fn an_installer_out_of_memory_fails_that_install_and_nothing_else() {
    // The store and the trees are on tmpfs here, charged to the
    // installer's cgroup: 64 MiB of chunks cannot fit in 24 MiB.
    let big = big("big-oom", 64);
    let probe = format!(
        r#"#!/bin/sh
quilt install /root/big.qb > /tmp/i 2>&1; echo "install=$? $(tr '\n' ' ' < /tmp/i)" > /dev/ttyS1
{AFTER}
"#
    );
    let (ch, events, console) = run(&big, &probe, "installer_memory_mib = 24");
    let install = said(&ch, "install=");
    assert!(
        install.starts_with("3 "),
        "refused is exit 3: {install}\n{console}"
    );
    assert!(
        install.contains("the installer ran out of memory"),
        "{install}\n{console}"
    );
    assert!(
        events.iter().any(|e| e.name() == Some("install-failed")),
        "{console}"
    );
    check_after(&ch, &console);
    assert!(!said(&ch, "listed=").contains("big-oom"), "{ch}");
}

fn check_after(ch: &str, console: &str) {
    assert!(said(ch, "ping=").contains("quilt-init"), "{ch}\n{console}");
    let hello = said(ch, "hello=");
    let v: serde_json::Value =
        serde_json::from_str(hello).unwrap_or_else(|e| panic!("{e}: {hello}\n{console}"));
    assert_eq!(v["status"], 0, "{hello}");
    assert!(said(ch, "listed=").contains("examples/hello"), "{ch}");
    let fsck = said(ch, "fsck=");
    assert!(
        fsck.starts_with("0 "),
        "the store is not whole: {fsck}\n{console}"
    );
}

/// A board disk for staging: GPT with a boot state (one blank-board
/// record), a small slot A and an 80 MiB slot B.
fn slot_disk(name: &str) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let path = work_dir().unwrap().join(name);
    quilt_system_tests::gpt_disk(
        &path,
        96,
        &[("bootstate", 1, 1), ("rootfs-a", 2, 4), ("rootfs-b", 6, 80)],
    );
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let record = quilt_slots::State::initial().encode();
    f.write_all_at(&record, 1 << 20).unwrap();
    path
}

/// Issue 15: firmware staging runs in the installer, so PID 1 answers and
/// feeds a 2 s hardware watchdog all the while a 64 MiB root image is
/// verified, written to slot B, synced and read back.
#[test]
fn pid1_answers_and_feeds_the_watchdog_while_64_mib_of_firmware_is_staged() {
    let dir = work_dir().unwrap().join("installer-tools").join("fw64");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("quilt.toml"),
        "name = \"firmware/qemu\"\nversion = 2\nentry = \"rootfs.squashfs\"\nruntime = \"firmware\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("rootfs.squashfs"), noise(64 << 20, 0xf1f0)).unwrap();
    let fw = signed_bundle(&dir).unwrap().qb;
    let cli = guest_binary("quilt", "quilt").unwrap();
    let (_, trust) = signed_example("hello").unwrap();
    let config = r#"
modules = ["virtio_mmio", "virtio_blk", "i6300esb"]

[watchdog]
timeout_s = 2

[slots]
state = "/dev/vda1"
a = "/dev/vda2"
b = "/dev/vda3"
firmware = ["firmware/qemu"]
reboot_after_update = false

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;
    // Pings every 20 ms, in runs of 25, from before the install until
    // the slot is staged; each run's times as JSON on the channel.
    let probe = r#"#!/bin/sh
(while [ ! -f /tmp/stop ]; do
    echo "ping=$(quilt ping --count 25 --interval-ms 20 --json 2>&1 | tr -d '\n')" > /dev/ttyS1
done) &
pinger=$!
sleep 1
quilt install /root/fw.qb > /tmp/i 2>&1; echo "install=$? $(tr '\n' ' ' < /tmp/i)" > /dev/ttyS1
n=0
until quilt slots --json | tr -d ' \n' | grep -q '"trying":"b"'; do
    n=$((n + 1)); [ $n -gt 1200 ] && break; sleep 0.25
done
echo "slots=$(quilt slots --json | tr -d ' \n')" > /dev/ttyS1
touch /tmp/stop; wait $pinger
"#;
    let img = ImageBuilder::new()
        .busybox()
        .modules(&["virtio_mmio", "virtio_blk", "i6300esb"])
        .file("/bin/quilt", &cli, 0o755)
        .tree("/etc/quilt/trust", &trust)
        .file("/root/fw.qb", &fw, 0o644)
        .bytes("/bin/probe.sh", probe, 0o755)
        .config_toml(config)
        .build()
        .unwrap();
    let disk = slot_disk("fw64.img");
    let opts = VmOpts {
        mem_mb: 1536,
        pcie: true,
        timeout: BOOT,
        // Stage 2 as if stage 1 had booted slot A (the kernel hands
        // unknown `KEY=value` parameters to init as its environment).
        append: "QUILT_SLOT=a QUILT_TRIAL=0".into(),
        extra_args: vec![
            "-drive".into(),
            format!("id=d0,file={},format=raw,if=none", disk.display()),
            "-device".into(),
            "virtio-blk-device,drive=d0".into(),
        ],
        ..VmOpts::default()
    }
    .device("i6300esb");
    let mut vm = Vm::boot(&img, opts).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    let console = vm.console_text();
    assert!(
        exit.powered_off(),
        "the watchdog reset the board or it hung: {exit:?}\n{console}"
    );
    assert_eq!(
        console.matches("event=pid1-entry").count(),
        1,
        "PID 1 started more than once\n{console}"
    );
    let ch = vm.channel_text();
    let events = vm.events();
    assert!(said(&ch, "install=").starts_with("0 "), "{ch}\n{console}");
    let staged = events
        .iter()
        .find(|e| e.name() == Some("update-staged"))
        .unwrap_or_else(|| panic!("not staged:\n{console}"));
    assert_eq!(staged.get("slot"), Some("b"), "{}", staged.line);
    let bytes: u64 = staged.get("bytes").unwrap().parse().unwrap();
    assert!(bytes >= 64 << 20, "{}", staged.line);
    assert!(said(&ch, "slots=").contains(r#""trying":"b""#), "{ch}");
    // Every ping answered, across the install and the staging.
    let (mut sent, mut each) = (0u64, Vec::new());
    for line in ch.lines().filter_map(|l| l.strip_prefix("ping=")) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{ch}"));
        sent += v["pings"].as_u64().unwrap();
        each.extend(
            v["each_us"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap()),
        );
    }
    assert!(sent >= 50, "too few pings to say anything: {sent}\n{ch}");
    assert_eq!(each.len() as u64, sent, "pings went unanswered\n{ch}");
    each.sort_unstable();
    let q = |p: f64| each[((each.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    // Under TCG the guest's clocksource is sometimes jiffies: say so.
    let coarse = each.iter().all(|t| t % 4000 <= 1);
    println!(
        "staged {} MiB in {} ms (guest clock); {} pings meanwhile, all answered: p50 {} us, p99 {} us, max {} us (guest time, TCG{})",
        bytes >> 20,
        staged.get("ms").unwrap_or("?"),
        sent,
        q(0.50),
        q(0.99),
        each.last().unwrap(),
        if coarse {
            "; the guest clock ticked in 4 ms steps this run"
        } else {
            ""
        }
    );
}
