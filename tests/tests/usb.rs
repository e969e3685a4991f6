//! Air-gapped installs from USB sticks, end to end: disk images made here
//! (a FAT partition behind an MBR, and an ext4 filesystem on the whole
//! disk), hot-plugged into a running guest as `usb-storage` devices on
//! QEMU's xHCI controller through the QMP monitor, Debian's stock USB,
//! SCSI and filesystem modules, and quilt-init's uevent listener, mount and
//! store. A probe service in the guest lists, runs and pings over the
//! control socket and reports to the result channel.

use quilt_system_tests::{
    example_dir, guest_binary, noise, quilt, repo_root, signed_bundle, work_dir, Event,
    ImageBuilder, Vm, VmOpts,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_secs(120);

/// What the guest needs for USB sticks on QEMU's xHCI controller, with a
/// FAT or ext4 filesystem, beyond Debian's built-ins (dependencies come
/// from `modules.dep`; the softdeps do not, so they are listed).
const MODULES: &[&str] = &[
    "xhci_pci",       // xhci_hcd, usbcore, usb_common
    "usb_storage",    // scsi_mod, scsi_common
    "sd_mod",         // t10_pi, crc64_rocksoft, crc_t10dif, ...
    "vfat",           // fat
    "nls_cp437",      // FAT's default codepage
    "nls_ascii",      // FAT's default iocharset in Debian's kernel
    "ext4",           // jbd2, mbcache, crc16
    "crc32c_generic", // ext4's softdep (crypto-crc32c): no mount without it
];

/// A host tool from Debian's packages, also where root's PATH finds it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found; run tools/setup.sh (dosfstools, mtools, e2fsprogs)")
        })
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A disk with an MBR whose one partition (type 0x0c, from 1 MiB, at least
/// 16 MiB) is a FAT filesystem carrying `files`, made by mkfs.vfat and
/// mcopy (no root, no loop device).
fn fat_stick(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = work_dir().unwrap().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join("part.img");
    let content: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let part_kib = (content / 1024 * 5 / 4 + 4096).max(16 * 1024);
    run(Command::new(tool("mkfs.vfat"))
        .args(["-n", "QUILTUSB", "-C"])
        .arg(&part)
        .arg(part_kib.to_string()));
    for (name, data) in files {
        let src = dir.join("src");
        std::fs::write(&src, data).unwrap();
        run(Command::new(tool("mcopy"))
            .arg("-i")
            .arg(&part)
            .arg(&src)
            .arg(format!("::/{name}")));
    }
    let mut disk = vec![0u8; 1 << 20];
    let sectors = (part_kib * 2) as u32;
    let entry = &mut disk[446..462];
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x0c;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(&std::fs::read(&part).unwrap());
    let img = dir.join("stick.img");
    std::fs::write(&img, disk).unwrap();
    img
}

/// An 8 MiB ext4 filesystem on the whole disk (no partition table),
/// populated by `mkfs.ext4 -d`.
fn ext4_stick(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = work_dir().unwrap().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    for (name, data) in files {
        std::fs::write(content.join(name), data).unwrap();
    }
    let img = dir.join("stick.img");
    run(Command::new(tool("mkfs.ext4"))
        .args(["-q", "-F", "-L", "QUILTUSB", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("8M"));
    img
}

/// Plug `img` into the xHCI controller as USB stick `id`.
fn plug(vm: &mut Vm, img: &Path, id: &str) {
    vm.monitor(&format!(
        "drive_add 0 if=none,id={id},file={},format=raw",
        img.display()
    ))
    .unwrap();
    vm.monitor(&format!(
        "device_add usb-storage,bus=xhci.0,drive={id},id={id}-dev"
    ))
    .unwrap();
}

/// Pull stick `id` out, and wait until QEMU has let go of its image (a
/// drive made by `drive_add` goes with its device), so it can be plugged
/// again.
fn unplug(vm: &mut Vm, id: &str) {
    vm.monitor(&format!("device_del {id}-dev")).unwrap();
    let until = Instant::now() + STEP;
    loop {
        let block = vm.monitor("info block").unwrap();
        if !block.lines().any(|l| l.starts_with(&format!("{id} "))) {
            return;
        }
        assert!(Instant::now() < until, "drive {id} still there:\n{block}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The next `usb-done` event, with everything quilt-init said since the
/// previous one.
fn next_done(vm: &mut Vm, seen: &mut usize) -> (Event, Vec<Event>) {
    vm.wait_for_console("event=usb-done", STEP).unwrap();
    let all: Vec<Event> = vm
        .events()
        .into_iter()
        .filter(|e| e.name().is_some_and(|n| n.starts_with("usb-")))
        .collect();
    let at = all
        .iter()
        .enumerate()
        .skip(*seen)
        .find(|(_, e)| e.name() == Some("usb-done"))
        .map(|(i, _)| i)
        .expect("a usb-done event");
    let batch = all[*seen..at].to_vec();
    *seen = at + 1;
    (all[at].clone(), batch)
}

/// How many `name` events quilt-init has logged so far.
fn count(vm: &Vm, name: &str) -> usize {
    vm.events()
        .iter()
        .filter(|e| e.name() == Some(name))
        .count()
}

/// Wait until quilt-init has logged `n` `name` events.
fn wait_count(vm: &Vm, name: &str, n: usize) {
    let until = Instant::now() + STEP;
    while count(vm, name) < n {
        assert!(Instant::now() < until, "fewer than {n} {name} events");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first probe line written from now on that says all of `want`
/// (a line may have been gathered just before the state it waits for).
fn tick_with(vm: &Vm, want: &[&str]) -> String {
    let from = vm.channel_text().len();
    let until = Instant::now() + STEP;
    let mut last = String::new();
    while Instant::now() < until {
        let text = vm.channel_text();
        for line in text
            .get(from..)
            .unwrap_or("")
            .split_inclusive('\n')
            .filter(|l| l.starts_with("tick ") && l.ends_with('\n'))
        {
            if want.iter().all(|w| line.contains(w)) {
                return line.trim_end().to_owned();
            }
            last = line.trim_end().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no probe tick with {want:?} for {STEP:?}; last: {last:?}\n{}",
        vm.console_text()
    );
}

/// A tool with 16 MiB of incompressible data: an install long enough to
/// pull the stick out in the middle of it.
fn big_tool() -> PathBuf {
    let dir = work_dir().unwrap().join("usb-bigtool");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(example_dir("hello").join("hello.ts"), dir.join("hello.ts")).unwrap();
    std::fs::write(
        dir.join("quilt.toml"),
        "name = \"bigtool\"\nversion = 1\nentry = \"hello.ts\"\n",
    )
    .unwrap();
    let data = noise(16 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(dir.join("data.bin"), data).unwrap();
    dir
}

fn field<'a>(ev: &'a Event, key: &str) -> &'a str {
    ev.get(key)
        .unwrap_or_else(|| panic!("no {key}= in {}", ev.line))
}

#[test]
fn usb_sticks_install_what_the_trust_store_accepts() {
    let good = signed_bundle(&example_dir("hello")).unwrap();
    let hello = std::fs::read(&good.qb).unwrap();
    let ticker = std::fs::read(
        signed_bundle(&repo_root().join("tests/fixtures/tools/ticker"))
            .unwrap()
            .qb,
    )
    .unwrap();
    let mut tampered =
        std::fs::read(signed_bundle(&example_dir("json-transform")).unwrap().qb).unwrap();
    let at = tampered.len() - 40;
    tampered[at] ^= 0x01;
    let unsigned = work_dir().unwrap().join("usb-unsigned.qb");
    quilt(&[
        "bundle".as_ref(),
        "pack".as_ref(),
        repo_root().join("tests/fixtures/tools/checker").as_os_str(),
        "--out".as_ref(),
        unsigned.as_os_str(),
    ])
    .unwrap();
    let unsigned = std::fs::read(&unsigned).unwrap();

    let fat = fat_stick(
        "usb-fat",
        &[
            ("hello.qb", &hello),
            ("tampered.qb", &tampered),
            ("unsigned.qb", &unsigned),
            ("README.txt", b"not a bundle\n"),
            // macOS metadata next to a bundle: hidden, never read.
            ("._hello.qb", b"\x00\x05\x16\x07junk"),
        ],
    );
    let ext4 = ext4_stick("usb-ext4", &[("ticker.qb", &ticker), ("hello.qb", &hello)]);
    let bigtool = std::fs::read(signed_bundle(&big_tool()).unwrap().qb).unwrap();
    let big = fat_stick("usb-big", &[("big.qb", &bigtool)]);
    let fat_before = std::fs::read(&fat).unwrap();
    let ext4_before = std::fs::read(&ext4).unwrap();

    let config = format!(
        r#"
modules = {MODULES:?}

[usb]
fstypes = ["vfat", "ext4"]

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
"#
    );
    // Runs the tool once it is installed, then reports every half second:
    // what is mounted at the USB mountpoint, the installed bundles, whether
    // PID 1 answers, and what `quilt events` (the event stream) said.
    let probe = r#"#!/bin/sh
quilt events > /tmp/events &
ran=0
while :; do
    list=$(quilt bundles | awk 'NR > 1 && NF >= 4 && $2 ~ /^[0-9]+$/ { printf "%s,", $1 }')
    if [ $ran = 0 ] && echo "$list" | grep -q 'examples/hello,'; then
        echo "run=$(quilt run examples/hello --json)" > /dev/ttyS1
        ran=1
    fi
    stream="done=$(grep -c event=usb-done /tmp/events),refused=$(grep -c event=usb-refused /tmp/events)"
    echo "tick mounts=$(grep -c ' /run/quilt/usb ' /proc/mounts) bundles=$list ping=$(quilt ping) stream=$stream" > /dev/ttyS1
    sleep 0.5
done
"#;
    let cli = guest_binary("quilt", "quilt").unwrap();
    let img = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .modules(MODULES)
        .file("/bin/quilt", &cli, 0o755)
        .bytes("/bin/probe.sh", probe, 0o755)
        .tree("/etc/quilt/trust", &good.trust)
        .config_toml(&config)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            mem_mb: 1024,
            pcie: true,
            monitor: true,
            timeout: BOOT,
            ..VmOpts::default()
        }
        .device("qemu-xhci,id=xhci"),
    )
    .unwrap();
    vm.wait_for_console("event=usb-listening", STEP).unwrap();
    tick_with(&vm, &["mounts=0 bundles= ping=quilt-init"]);
    let mut seen = 0;

    // The FAT stick: its partition is mounted (the partitioned disk is
    // passed over), the signed bundle installed, the other two refused.
    plug(&mut vm, &fat, "fat1");
    let (done, batch) = next_done(&mut vm, &mut seen);
    let names: Vec<&str> = batch.iter().filter_map(Event::name).collect();
    eprintln!("first plug: {names:?}\n{}", done.line);
    assert!(
        batch
            .iter()
            .any(|e| e.name() == Some("usb-skipped") && e.get("reason") == Some("partitioned")),
        "{names:?}"
    );
    let mounted = batch
        .iter()
        .find(|e| e.name() == Some("usb-mounted"))
        .expect("usb-mounted");
    assert_eq!(field(mounted, "fstype"), "vfat");
    let dev = field(mounted, "dev").to_owned();
    assert!(dev.ends_with('1'), "not the partition: {}", mounted.line);
    let install: Vec<&Event> = batch
        .iter()
        .filter(|e| e.name() == Some("usb-install"))
        .collect();
    assert_eq!(install.len(), 1, "{names:?}");
    assert_eq!(field(install[0], "file"), "hello.qb");
    assert_eq!(field(install[0], "name"), "examples/hello");
    assert_eq!(field(install[0], "version"), "1");
    assert_eq!(field(install[0], "already"), "0");
    let why = |file: &str| {
        batch
            .iter()
            .find(|e| e.name() == Some("usb-refused") && e.get("file") == Some(file))
            .map(|e| field(e, "reason").to_lowercase())
            .unwrap_or_else(|| panic!("{file} not refused: {names:?}"))
    };
    assert!(
        why("tampered.qb").contains("modified or corrupted"),
        "{}",
        why("tampered.qb")
    );
    assert!(
        why("unsigned.qb").contains("not signed"),
        "{}",
        why("unsigned.qb")
    );
    assert_eq!(field(&done, "dev"), dev);
    assert_eq!(
        (
            field(&done, "installed"),
            field(&done, "already"),
            field(&done, "refused"),
            field(&done, "unmount"),
        ),
        ("1", "0", "2", "clean"),
        "{}",
        done.line
    );
    // The installed tool runs, and PID 1 answers with nothing left mounted.
    let run = vm.wait_for_channel("run=", STEP).unwrap();
    let run: serde_json::Value = serde_json::from_str(run.trim_start_matches("run=")).unwrap();
    assert_eq!(run["status"], 0, "{run}");
    assert!(
        run["stdout"]
            .as_str()
            .unwrap()
            .contains("\"hello\":\"quilt\""),
        "{run}"
    );
    tick_with(&vm, &["mounts=0 bundles=examples/hello, ping=quilt-init"]);

    unplug(&mut vm, "fat1");
    vm.wait_for_console(format!("event=usb-removed dev={dev}"), STEP)
        .unwrap();

    // The same stick again: already installed, the same two refusals.
    plug(&mut vm, &fat, "fat2");
    let (done, batch) = next_done(&mut vm, &mut seen);
    eprintln!("second plug: {}", done.line);
    assert_eq!(
        (
            field(&done, "installed"),
            field(&done, "already"),
            field(&done, "refused"),
            field(&done, "unmount"),
        ),
        ("0", "1", "2", "clean"),
        "{}",
        done.line
    );
    let again = batch
        .iter()
        .find(|e| e.name() == Some("usb-install"))
        .expect("usb-install");
    assert_eq!(
        (field(again, "name"), field(again, "already")),
        ("examples/hello", "1")
    );
    tick_with(&vm, &["mounts=0 bundles=examples/hello, ping=quilt-init"]);
    unplug(&mut vm, "fat2");
    vm.wait_for_console("event=usb-removed", STEP).unwrap();

    // An ext4 filesystem on the whole disk: vfat does not take it, ext4
    // does; one new bundle, one already there.
    plug(&mut vm, &ext4, "ext4");
    let (done, batch) = next_done(&mut vm, &mut seen);
    eprintln!("ext4 plug: {}", done.line);
    let mounted = batch
        .iter()
        .find(|e| e.name() == Some("usb-mounted"))
        .expect("usb-mounted");
    assert_eq!(field(mounted, "fstype"), "ext4");
    assert!(
        !field(mounted, "dev").ends_with(|c: char| c.is_ascii_digit()),
        "not the whole disk: {}",
        mounted.line
    );
    assert_eq!(
        (
            field(&done, "installed"),
            field(&done, "already"),
            field(&done, "refused"),
            field(&done, "unmount"),
        ),
        ("1", "1", "0", "clean"),
        "{}",
        done.line
    );
    tick_with(
        &vm,
        &[
            "mounts=0",
            "examples/hello,",
            "ticker,",
            "ping=quilt-init",
            "stream=done=3,refused=4",
        ],
    );
    unplug(&mut vm, "ext4");
    vm.wait_for_console("event=usb-removed", STEP).unwrap();

    // Pulled out as soon as it is mounted, in the middle of a 16 MiB
    // install (or before its directory was read, or, if the install won
    // the race, just after it): PID 1
    // goes on, the store keeps what it had, and the same stick plugged
    // again installs the bundle whole.
    let removed = count(&vm, "usb-removed");
    plug(&mut vm, &big, "big1");
    vm.wait_for_console("event=usb-mounted", STEP).unwrap();
    unplug(&mut vm, "big1");
    let (done, batch) = next_done(&mut vm, &mut seen);
    let names: Vec<&str> = batch.iter().filter_map(Event::name).collect();
    eprintln!("pulled mid-install: {names:?}\n{}", done.line);
    let finished = batch
        .iter()
        .any(|e| e.name() == Some("usb-install") && e.get("name") == Some("bigtool"));
    if !finished {
        // Refused mid-stream, or, pulled before the listing, unreadable:
        // either way the user is told why.
        let refused = batch
            .iter()
            .find(|e| matches!(e.name(), Some("usb-refused" | "usb-unreadable")))
            .unwrap_or_else(|| panic!("neither installed nor refused: {names:?}"));
        eprintln!("refused: {}", refused.line);
    }
    let listed = tick_with(&vm, &["mounts=0", "ticker,", "ping=quilt-init"]);
    assert_eq!(listed.contains("bigtool,"), finished, "{listed}");
    // PID 1 hears of the removal while the installer still works on the
    // stick (before its usb-done), or after it if the install won.
    wait_count(&vm, "usb-removed", removed + 1);
    plug(&mut vm, &big, "big2");
    let (done, _) = next_done(&mut vm, &mut seen);
    eprintln!("plugged again: {}", done.line);
    let want = if finished { ("0", "1") } else { ("1", "0") };
    assert_eq!(
        (
            field(&done, "installed"),
            field(&done, "already"),
            field(&done, "refused")
        ),
        (want.0, want.1, "0"),
        "{}",
        done.line
    );
    tick_with(
        &vm,
        &[
            "mounts=0",
            "examples/hello,",
            "ticker,",
            "bigtool,",
            "ping=quilt-init",
        ],
    );
    unplug(&mut vm, "big2");

    // Read-only at every level: not one byte of either stick changed.
    vm.kill();
    assert!(
        std::fs::read(&fat).unwrap() == fat_before,
        "the FAT stick was written to"
    );
    assert!(
        std::fs::read(&ext4).unwrap() == ext4_before,
        "the ext4 stick was written to"
    );
    eprintln!("usb test: {:.1} s", started.elapsed().as_secs_f64());
}
