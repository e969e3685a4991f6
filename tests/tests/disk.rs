//! Flashable board images (`quilt image disk`, docs/images.md) booted the
//! way a board boots them: QEMU's UEFI firmware (OVMF, AAVMF from Debian)
//! runs Debian's systemd-boot from the image's ESP, which starts the kernel
//! and the stage-1 initramfs; quilt-init there picks root slot A from the
//! boot state, and quilt-init from the slot mounts the data partition and
//! runs a signed Bun tool in a container. No `-kernel`: everything comes
//! off the disk. Plus what needs no boot: the partition table matches the
//! board's genimage.cfg, the Raspberry Pi image has its boot files, and the
//! same inputs give the same bytes.
//!
//! The boot loader's layer of the A/B fallback (systemd-boot's boot
//! counting, quilt-init's bootcount.rs): a trial slot whose stage 1 never
//! runs is left behind by systemd-boot alone and the next boot comes up
//! from A, saying so; a healthy trial's counting entry is blessed by
//! quilt-init once it is committed.

use quilt_system_tests::{
    bun_binary_for, busybox_for, guest_binary_for, kernel_for, quilt_cli, quilt_init_binary_for,
    repo_root, signed_bundle, signed_example, sysroot_for, work_dir, Arch, Firmware, Vm, VmOpts,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Firmware, boot loader, kernel, two quilt-inits and Bun's first start,
/// all under TCG, on a busy 2-core machine.
const BOOT: Duration = Duration::from_secs(300);

/// One firmware boot at a time in this file: cargo runs its tests on two
/// threads, and two TCG guests (UEFI firmware is the slowest part) on a
/// 2-core machine would each take twice as long. Image builds still
/// overlap.
fn one_guest() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn scratch(name: &str) -> PathBuf {
    let d = work_dir().unwrap().join("disk");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// What the probe in the image does: run examples/hello through quilt-init
/// (a signed bundle installed at boot into the store on the data
/// partition), report, and power off.
const PROBE: &str = r#"#!/bin/sh
echo "slot=$(cat /etc/quilt-version) $(grep ' /var/lib/quilt ' /proc/mounts | cut -d' ' -f1,3)" > /dev/ttyS1
echo '{"n":1}' > /tmp/hello.json
out=$(quilt run examples/hello --input /tmp/hello.json --json)
echo "hello.status=$?" > /dev/ttyS1
echo "hello=$out" > /dev/ttyS1
if quilt bundles 2>/dev/null | grep -qw checker; then
    echo "root=$(awk '$5=="/"{print $(NF-2)}' /proc/self/mountinfo | tail -1)" > /dev/ttyS1
    echo "checker=$(quilt run checker --json)" > /dev/ttyS1
fi
"#;

const CONFIG: &str = r#"
[fatal]
action = "poweroff"
delay_s = 0

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;

/// `quilt image disk --board BOARD` with the demo's kind of inputs for
/// `arch`; `bun`: with the Bun runtime layer and examples/hello.
fn build_disk(board: &str, arch: Arch, out: &Path, bun: bool) -> PathBuf {
    build_disk_with(board, arch, out, bun, &[])
}

fn build_disk_with(
    board: &str,
    arch: Arch,
    out: &Path,
    bun: bool,
    extra: &[&std::ffi::OsStr],
) -> PathBuf {
    let k = kernel_for(arch).unwrap();
    let dir = out.with_extension("in");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("boot.toml"), CONFIG).unwrap();
    std::fs::write(dir.join("probe.sh"), PROBE).unwrap();
    let loader = Command::new(repo_root().join("qemu/fetch-bootloader.sh"))
        .arg(arch.name())
        .output()
        .unwrap();
    assert!(loader.status.success(), "{loader:?}");
    let loader = String::from_utf8(loader.stdout).unwrap().trim().to_owned();
    let mut cmd = Command::new(quilt_cli().unwrap());
    cmd.current_dir(repo_root())
        .args(["image", "disk", "--board", board, "--kernel"])
        .arg(&k.vmlinuz)
        .arg("--bootloader")
        .arg(&loader)
        .arg("--init")
        .arg(quilt_init_binary_for(arch).unwrap())
        .arg("--config")
        .arg(dir.join("boot.toml"))
        .arg("--modules")
        .arg(&k.modules_dir)
        .arg("--busybox")
        .arg(busybox_for(arch).unwrap())
        .arg("--add")
        .arg(format!("{}:/bin/probe.sh", dir.join("probe.sh").display()))
        .arg("--out")
        .arg(out)
        .args(extra);
    if bun {
        let (qb, trust) = signed_example("hello").unwrap();
        // The hostile-tool suite, run on the slot's squashfs root (a root
        // pivot_root works on, unlike an initramfs).
        let checker = signed_bundle(&repo_root().join("tests/fixtures/tools/checker")).unwrap();
        cmd.arg("--bundle").arg(&checker.qb);
        cmd.arg("--bun")
            .arg(bun_binary_for(arch).unwrap())
            .arg("--sysroot")
            .arg(sysroot_for(arch).unwrap())
            .arg("--trust")
            .arg(trust)
            .arg("--bundle")
            .arg(qb)
            .arg("--add")
            .arg(format!(
                "{}:/bin/quilt",
                guest_binary_for(arch, "quilt", "quilt").unwrap().display()
            ));
    }
    let started = Instant::now();
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    println!(
        "{board}: {} ({:.1} s)",
        String::from_utf8_lossy(&o.stderr).trim(),
        started.elapsed().as_secs_f64()
    );
    out.to_owned()
}

/// `sfdisk --json`: (name, start sector, sectors, type) per partition.
fn table(disk: &Path) -> Vec<(String, u64, u64, String)> {
    let o = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_ascii_lowercase(),
            )
        })
        .collect()
}

/// Extract partition `n` (1-based) of `disk` into a file of its own.
fn partition(disk: &Path, n: usize, out: &Path) -> PathBuf {
    let (_, start, size, _) = table(disk)[n - 1].clone();
    let status = Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=512", "status=none"])
        .arg(format!("skip={start}"))
        .arg(format!("count={size}"))
        .status()
        .unwrap();
    assert!(status.success());
    out.to_owned()
}

/// Files on a FAT image, recursively, as `mdir -/ -b` lists them.
fn fat_files(image: &Path) -> String {
    let o = Command::new("mdir")
        .args(["-/", "-b", "-i"])
        .arg(image)
        .arg("::/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// Boot `disk` through `firmware` until the probe powers the guest off;
/// checks the boot loader ran, slot A was chosen and the Bun tool ran from
/// its signed bundle. Returns the wall time to quilt-init's first line.
fn boot_and_run_hello(disk: &Path, firmware: Firmware) -> Duration {
    let _one = one_guest();
    let mut vm = Vm::boot_disk(
        disk,
        &firmware,
        VmOpts {
            mem_mb: 1024,
            timeout: BOOT,
            ..VmOpts::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    vm.wait_for_console("event=slot-selected slot=a trial=0", BOOT)
        .unwrap();
    let stage1 = started.elapsed();
    // systemd-boot's menu, drawn on the serial console before the kernel
    // (its line ends only with the kernel's first output).
    let console = vm.console_text();
    let menu = console.find("Quilt slot A").expect("no boot loader menu");
    let kernel = console.find("quilt: t=").unwrap_or(0);
    assert!(menu < kernel, "the menu comes before quilt-init");
    // Stage 1 mounted slot A through dm-verity, checked by its root hash.
    vm.wait_for_console("event=slot-verity slot=a dev=/dev/dm-", BOOT)
        .unwrap();
    vm.wait_for_console("event=slot-booted slot=a", BOOT)
        .unwrap();
    vm.wait_for_console("event=data-mounted dev=/dev/vda4 at=/var/lib/quilt", BOOT)
        .unwrap();
    vm.wait_for_channel("slot=1 /dev/vda4 ext4", BOOT).unwrap();
    vm.wait_for_channel("hello.status=0", BOOT).unwrap();
    let line = vm.wait_for_channel("hello=", BOOT).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim_start_matches("hello=")).unwrap();
    assert_eq!(v["status"], 0, "{line}");
    let out: serde_json::Value = serde_json::from_str(v["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(out["hello"], "quilt", "{line}");
    assert_eq!(out["input"]["n"], 1, "{line}");
    // The hostile-tool suite on the slot root: the container's root was
    // switched with pivot_root here (no initramfs under it), where a
    // chrooted process's refusals no longer hide a filter's holes.
    let root = vm.wait_for_channel("root=", BOOT).unwrap();
    assert_eq!(root.trim(), "root=squashfs", "PID 1's root is not the slot");
    let line = vm.wait_for_channel("checker=", BOOT).unwrap();
    let run: serde_json::Value = serde_json::from_str(line.trim_start_matches("checker=")).unwrap();
    let inner: serde_json::Value = serde_json::from_str(run["stdout"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {run}"));
    for (name, ok) in inner["checks"].as_object().unwrap() {
        assert_eq!(ok, true, "on the slot root, check {name} failed: {inner}");
    }
    println!(
        "{firmware:?}: hostile attempts and their errno: {}",
        inner["attempts"]
    );
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}\n{}", vm.console_text());
    let installed = vm
        .events()
        .iter()
        .any(|e| e.name() == Some("bundle-installed") && e.get("name") == Some("examples/hello"));
    assert!(installed, "{}", vm.console_text());
    println!(
        "{firmware:?}: stage 1 chose the slot at {:.1} s, powered off at {:.1} s",
        stage1.as_secs_f64(),
        exit.wall.as_secs_f64()
    );
    stage1
}

#[test]
fn pc_x86_64_boots_through_ovmf_and_systemd_boot_and_runs_a_signed_bun_tool() {
    let disk = build_disk("pc-x86_64", Arch::X86_64, &scratch("pc.img"), true);
    let t = table(&disk);
    let names: Vec<&str> = t.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["bootstate", "rootfs-a", "rootfs-b", "data", "esp"]);
    assert_eq!(t[4].3, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "ESP type");
    let esp = partition(&disk, 5, &scratch("pc.esp"));
    let files = fat_files(&esp);
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/loader/loader.conf",
        "::/loader/entries/quilt-a.conf",
        "::/quilt/a/linux",
        "::/quilt/a/initrd",
    ] {
        assert!(files.lines().any(|l| l.trim() == f), "{f} not in\n{files}");
    }
    boot_and_run_hello(&disk, Firmware::Ovmf { vars: None });
}

#[test]
fn qemu_aarch64_virt_boots_through_aavmf_and_systemd_boot_and_runs_a_signed_bun_tool() {
    let disk = build_disk(
        "qemu-aarch64-virt",
        Arch::Aarch64,
        &scratch("virt.img"),
        true,
    );
    let names: Vec<String> = table(&disk).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["bootstate", "rootfs-a", "rootfs-b", "data", "esp"]);
    boot_and_run_hello(&disk, Firmware::Aavmf { vars: None });
}

/// The same arm64 image started by U-Boot (u-boot-qemu's qemu_arm64)
/// instead: its distro boot runs boot.scr from the bootable ESP, which
/// loads slot A's kernel and stage 1 (no Bun here: the boot path is the
/// point, the Bun run is the AAVMF test's).
#[test]
fn qemu_aarch64_virt_boots_through_u_boot_and_its_boot_script() {
    let disk = build_disk(
        "qemu-aarch64-virt",
        Arch::Aarch64,
        &scratch("virt-uboot.img"),
        false,
    );
    let _one = one_guest();
    let mut vm = Vm::boot_disk(
        &disk,
        &Firmware::UBoot,
        VmOpts {
            timeout: BOOT,
            ..VmOpts::default()
        },
    )
    .unwrap();
    vm.wait_for_console("U-Boot 20", BOOT).unwrap();
    vm.wait_for_console("Found U-Boot script /boot.scr", BOOT)
        .unwrap();
    vm.wait_for_console("event=slot-selected slot=a trial=0", BOOT)
        .unwrap();
    vm.wait_for_console("event=slot-verity slot=a dev=/dev/dm-", BOOT)
        .unwrap();
    vm.wait_for_console("event=data-mounted dev=/dev/vda4 at=/var/lib/quilt", BOOT)
        .unwrap();
    vm.wait_for_channel("slot=1 /dev/vda4 ext4", BOOT).unwrap();
    let exit = vm.wait_exit(BOOT).unwrap();
    assert!(exit.powered_off(), "{exit:?}\n{}", vm.console_text());
    println!("U-Boot: powered off at {:.1} s", exit.wall.as_secs_f64());
}

#[test]
fn raspberrypi4_image_has_the_boards_layout_and_boot_files() {
    let disk = build_disk("raspberrypi4-64", Arch::Aarch64, &scratch("rpi.img"), false);
    let t = table(&disk);
    let names: Vec<&str> = t.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        ["boot", "bootstate", "rootfs-a", "rootfs-b", "data"],
        "the firmware's FAT partition first"
    );
    // Sizes as board/raspberrypi4_64/genimage.cfg says, 1 MiB aligned.
    let mib = |sectors: u64| sectors / 2048;
    assert_eq!(
        t.iter().map(|p| mib(p.2)).collect::<Vec<_>>(),
        [128, 1, 512, 512, 512]
    );
    assert!(t.iter().all(|p| p.1 % 2048 == 0));
    let boot = partition(&disk, 1, &scratch("rpi.boot"));
    let files = fat_files(&boot);
    for f in [
        "::/config.txt",
        "::/slot-a/Image",
        "::/slot-a/cmdline.txt",
        "::/slot-a/initrd",
    ] {
        assert!(files.lines().any(|l| l.trim() == f), "{f} not in\n{files}");
    }
    let o = Command::new("mtype")
        .arg("-i")
        .arg(&boot)
        .arg("::/config.txt")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("os_prefix=slot-a/"));
    // Slot A is a squashfs (magic "hsqs") with its dm-verity tree after
    // it; the boot state names A primary with that tree's root, which
    // cryptsetup's veritysetup accepts for the slot as written.
    let slot = partition(&disk, 3, &scratch("rpi.slot"));
    assert_eq!(&std::fs::read(&slot).unwrap()[..4], b"hsqs");
    let state = std::fs::read(partition(&disk, 2, &scratch("rpi.state"))).unwrap();
    let (s, _) = quilt_slots::current([
        &state[..quilt_slots::RECORD],
        &state[4096..4096 + quilt_slots::RECORD],
    ])
    .expect("a boot state record");
    assert_eq!((s.primary, s.trying), (quilt_slots::Slot::A, None));
    let v = s
        .verity(quilt_slots::Slot::A)
        .expect("slot A's verity root");
    let root = quilt_bundle::hex::encode(&v.root);
    let o = Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--salt=-"])
        .arg(format!("--data-blocks={}", v.data_blocks))
        .arg(format!("--hash-offset={}", v.data_blocks * 4096))
        .arg(&slot)
        .arg(&slot)
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn the_same_inputs_give_the_same_image() {
    let a = build_disk("pc-x86_64", Arch::X86_64, &scratch("repro-1.img"), false);
    let b = build_disk("pc-x86_64", Arch::X86_64, &scratch("repro-2.img"), false);
    // 1.6 GiB each (sparse): compared a MiB at a time.
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(&a).unwrap(),
        std::fs::File::open(&b).unwrap(),
    );
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            break;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        let first = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y);
        assert_eq!(
            first.map(|i| at + i as u64),
            None,
            "the images differ first at this byte"
        );
        at += n as u64;
    }
}

/// Boot `disk` once on OVMF with the variable store `vars` (kept across
/// boots, like a board's NVRAM); the console once QEMU has exited.
fn boot_once(disk: &Path, vars: &Path) -> (String, Vec<quilt_system_tests::Event>) {
    let _one = one_guest();
    let mut vm = Vm::boot_disk(
        disk,
        &Firmware::Ovmf {
            vars: Some(vars.to_owned()),
        },
        VmOpts {
            timeout: Duration::from_secs(180),
            ..VmOpts::default()
        },
    )
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(180));
    assert!(exit.is_ok(), "{exit:?}\n{}", vm.console_text());
    (vm.console_text(), vm.events())
}

fn has(events: &[quilt_system_tests::Event], name: &str, pairs: &[(&str, &str)]) -> bool {
    events
        .iter()
        .any(|e| e.name() == Some(name) && pairs.iter().all(|(k, v)| e.get(k) == Some(*v)))
}

/// The entry files on the disk's ESP (partition 5).
fn entries(disk: &Path, scratch_name: &str) -> String {
    let esp = partition(disk, 5, &scratch(scratch_name));
    fat_files(&esp)
}

#[test]
fn a_trial_whose_stage1_never_runs_falls_back_through_the_boot_loader() {
    let k = kernel_for(Arch::X86_64).unwrap();
    // Not an initramfs: the trial's kernel finds no /init and no root,
    // and panics before anything of Quilt runs.
    let broken = scratch("broken.initrd");
    std::fs::write(&broken, vec![0x5a; 4096]).unwrap();
    let out = scratch("fallback.img");
    let disk = build_disk_with(
        "pc-x86_64",
        Arch::X86_64,
        &out,
        false,
        &[
            "--trial-kernel".as_ref(),
            k.vmlinuz.as_os_str(),
            "--trial-initrd".as_ref(),
            broken.as_os_str(),
            "--trial-tries".as_ref(),
            "1".as_ref(),
        ],
    );
    let vars = scratch("fallback.efivars");
    let _ = std::fs::remove_file(&vars);
    assert!(entries(&disk, "fallback.esp0").contains("quilt-b+1-0.conf"));
    // Boot 1: systemd-boot starts the trial (the newer version) and counts
    // the try; its kernel panics.
    let (console, events) = boot_once(&disk, &vars);
    assert!(console.contains("Kernel panic"), "{console}");
    assert!(events.is_empty(), "quilt-init never ran: {events:?}");
    assert!(entries(&disk, "fallback.esp1").contains("quilt-b+0-1.conf"));
    // Boot 2: systemd-boot skips the bad entry and starts A; quilt-init
    // sees the boot loader gave up on B and records the fallback.
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(
            &events,
            "bootloader-fallback",
            &[("from", "b"), ("to", "a"), ("version", "2")]
        ),
        "{console}"
    );
    assert!(
        has(&events, "slot-fallback", &[("from", "b"), ("to", "a")]),
        "{console}"
    );
    assert!(
        has(&events, "slot-selected", &[("slot", "a"), ("trial", "0")]),
        "{console}"
    );
    assert!(has(&events, "slot-booted", &[("slot", "a")]), "{console}");
    // Boot 3: A again, with nothing left on trial.
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(
            &events,
            "slot-selected",
            &[("slot", "a"), ("trial", "0"), ("failed_version", "2")]
        ),
        "{console}"
    );
    assert!(!has(&events, "bootloader-fallback", &[]), "{console}");
}

/// A pc-x86_64 image with slot B staged for two tries, its kernel and
/// stage 1 the same good ones as A's.
fn healthy_trial_disk(name: &str) -> PathBuf {
    let k = kernel_for(Arch::X86_64).unwrap();
    build_disk_with(
        "pc-x86_64",
        Arch::X86_64,
        &scratch(name),
        false,
        &[
            "--trial-kernel".as_ref(),
            k.vmlinuz.as_os_str(),
            "--trial-tries".as_ref(),
            "2".as_ref(),
        ],
    )
}

#[test]
fn a_healthy_trial_is_committed_and_its_boot_entry_blessed() {
    let disk = healthy_trial_disk("blessed.img");
    let vars = scratch("blessed.efivars");
    let _ = std::fs::remove_file(&vars);
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(&events, "slot-selected", &[("slot", "b"), ("trial", "1")]),
        "{console}"
    );
    assert!(has(&events, "slot-verity", &[("slot", "b")]), "{console}");
    assert!(
        has(&events, "slot-committed", &[("slot", "b")]),
        "{console}"
    );
    assert!(
        has(
            &events,
            "bootloader-blessed",
            &[
                ("slot", "b"),
                ("entry", "quilt-b.conf"),
                ("was", "quilt-b+1-1.conf")
            ]
        ),
        "{console}"
    );
    let files = entries(&disk, "blessed.esp");
    assert!(files.contains("::/loader/entries/quilt-b.conf"), "{files}");
    assert!(!files.contains("quilt-b+"), "{files}");
    // The next boot: B, committed, no trial, from the boot loader's
    // uncounted entry.
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(&events, "slot-selected", &[("slot", "b"), ("trial", "0")]),
        "{console}"
    );
    assert!(!has(&events, "bootloader-blessed", &[]), "{console}");
}

#[test]
fn a_slot_altered_after_it_was_written_is_refused_by_dm_verity() {
    let disk = healthy_trial_disk("verity.img");
    // One byte of slot B's first block (read by every mount), flipped on
    // the medium after the image was written: the partition still holds
    // a squashfs, but not the one whose root hash the boot state names.
    let (name, start, _, _) = table(&disk)[2].clone();
    assert_eq!(name, "rootfs-b");
    let at = start * 512 + 1000;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, at).unwrap();
    b[0] ^= 0x10;
    std::os::unix::fs::FileExt::write_all_at(&f, &b, at).unwrap();
    drop(f);
    let vars = scratch("verity.efivars");
    let _ = std::fs::remove_file(&vars);
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(&events, "slot-selected", &[("slot", "b"), ("trial", "1")]),
        "{console}"
    );
    let refused = events.iter().find(|e| {
        e.name() == Some("slot-fallback") && e.get("from") == Some("b") && e.get("to") == Some("a")
    });
    let reason = refused
        .and_then(|e| e.get("reason"))
        .unwrap_or_else(|| panic!("no fallback from b to a:\n{console}"));
    assert!(
        reason.contains("dm-verity: its data does not match the root hash"),
        "{reason}\n{console}"
    );
    assert!(has(&events, "slot-verity", &[("slot", "a")]), "{console}");
    assert!(has(&events, "slot-booted", &[("slot", "a")]), "{console}");
    assert!(!has(&events, "slot-committed", &[]), "{console}");
    // The fallback is recorded: the next boot is A with nothing on trial.
    let (console, events) = boot_once(&disk, &vars);
    assert!(
        has(
            &events,
            "slot-selected",
            &[("slot", "a"), ("trial", "0"), ("failed_version", "2")]
        ),
        "{console}"
    );
}

/// A number from the seed (xorshift64*): the cut points, replayable with
/// `QUILT_CUT_SEED`.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn power_cuts_while_counting_and_blessing_leave_a_bootable_disk() {
    let k = kernel_for(Arch::X86_64).unwrap();
    let disk = build_disk_with(
        "pc-x86_64",
        Arch::X86_64,
        &scratch("cuts.img"),
        false,
        &[
            "--trial-kernel".as_ref(),
            k.vmlinuz.as_os_str(),
            "--trial-tries".as_ref(),
            "3".as_ref(),
        ],
    );
    let vars = scratch("cuts.efivars");
    let _ = std::fs::remove_file(&vars);
    let mut seed = std::env::var("QUILT_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("QUILT_CUT_SEED={seed}");
    // QEMU killed at a random point of the boot: in the firmware while
    // systemd-boot renames the counting entry, in stage 1 while quilt-init
    // writes the boot state, in stage 2 while it commits and renames the
    // entry back.
    let mut cuts = Vec::new();
    for _ in 0..5 {
        let _one = one_guest();
        let mut vm = Vm::boot_disk(
            &disk,
            &Firmware::Ovmf {
                vars: Some(vars.clone()),
            },
            VmOpts {
                timeout: Duration::from_secs(120),
                ..VmOpts::default()
            },
        )
        .unwrap();
        // Where to cut: a random time into the firmware and systemd-boot
        // (its rename of the counting entry), or just after a milestone of
        // quilt-init (the boot state written, the slot committed, the
        // entry blessed) plus a few random milliseconds.
        let milestones = [
            None,
            Some("event=slot-selected"),
            Some("event=slot-committed"),
            Some("event=bootloader-blessed"),
        ];
        let pick = milestones[(next(&mut seed) % 4) as usize];
        let extra = Duration::from_millis(next(&mut seed) % 40);
        let started = Instant::now();
        match pick {
            None => {
                let at = Duration::from_millis(500 + next(&mut seed) % 15_000);
                let _ = vm.wait_for_console("never printed", at);
            }
            Some(m) => {
                let _ = vm.wait_for_console(m, Duration::from_secs(100));
                std::thread::sleep(extra);
            }
        }
        vm.kill();
        let at = started.elapsed();
        let events: Vec<String> = vm
            .events()
            .iter()
            .filter_map(|e| e.name().map(str::to_owned))
            .collect();
        let pick = pick.unwrap_or("a random time");
        cuts.push(format!(
            "after {pick} ({:.1} s): {}",
            at.as_secs_f64(),
            events.join(" ")
        ));
    }
    println!("cuts:\n{}", cuts.join("\n"));
    // Whatever was cut, the disk boots to a slot, twice in a row, and the
    // ESP has at most one entry per slot.
    for round in 0..2 {
        let (console, events) = boot_once(&disk, &vars);
        assert!(
            has(&events, "slot-booted", &[]) && has(&events, "boot-ready", &[]),
            "round {round}, cuts {cuts:?}:\n{console}"
        );
    }
    let files = entries(&disk, "cuts.esp");
    for slot in ["a", "b"] {
        let n = files
            .lines()
            .filter(|l| l.contains(&format!("/quilt-{slot}")))
            .count();
        assert!(n <= 1, "{files}");
    }
}
