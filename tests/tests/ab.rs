//! A/B root slots with automatic fallback, end to end on one virtio disk
//! (GPT: 1 bootstate, 2 rootfs-a, 3 rootfs-b, 4 data): quilt-init in the
//! initramfs picks the slot and execs quilt-init from its squashfs; a
//! firmware bundle installed on the running board is written to the other
//! slot, checked there against its signed chunk ids and tried once; a
//! healthy trial is committed, an unhealthy one falls back by itself; and
//! QEMU killed at random points never leaves the board without a working
//! slot or loses an installed bundle.

use quilt_system_tests::{
    guest_binary, quilt_cli, signed_bundle, test_key, work_dir, ImageBuilder, Vm, VmOpts,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const MIB: u64 = 1 << 20;
/// Partition starts and sizes in MiB: bootstate, rootfs-a, rootfs-b, data.
const PARTS: [(u64, u64); 4] = [(1, 1), (2, 16), (18, 16), (34, 32)];
const DISK_MIB: u64 = 67;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = work_dir().unwrap().join("ab");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A number no other call in this process gets (tests run in parallel).
fn unique() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn slots_section() -> &'static str {
    r#"
[slots]
state = "/dev/vda1"
a = "/dev/vda2"
b = "/dev/vda3"
data = "/dev/vda4"
init = "/init"
firmware = ["firmware/qemu"]
"#
}

/// Stage 1: the initramfs, with only what choosing a slot needs.
fn initramfs() -> &'static Path {
    static I: OnceLock<PathBuf> = OnceLock::new();
    I.get_or_init(|| {
        let config = format!(
            "modules = [\"virtio_mmio\", \"virtio_blk\", \"squashfs\", \"dm_verity\"]\n[fatal]\naction = \"poweroff\"\ndelay_s = 0\n{}",
            slots_section()
        );
        ImageBuilder::new()
            .modules(&["virtio_mmio", "virtio_blk", "squashfs", "dm_verity"])
            .config_toml(&config)
            .build()
            .unwrap()
    })
}

/// The root filesystem of firmware `version`, as a squashfs image.
/// `health_ok = false` makes its health check fail.
fn slot_image(version: u32, health_ok: bool, probe: &str, files: &[(&str, &Path)]) -> PathBuf {
    let (_, trust) = test_key().unwrap();
    let config = format!(
        r#"modules = ["ext4", "crc32c_generic"]

[bundles]
store = "/data/quilt/store"
{}health = "health"
health_deadline_s = 60

[[service]]
name = "health"
exec = ["/bin/health.sh"]
restart = "never"

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
after = ["health"]
restart = "never"
on_exit = "poweroff"
"#,
        slots_section()
    );
    let health = if health_ok {
        "#!/bin/sh\n[ -d /data/quilt/store ] && quilt ping > /dev/null\n"
    } else {
        "#!/bin/sh\necho 'health: the new firmware is broken' > /dev/console\nexit 1\n"
    };
    let mut b = ImageBuilder::new()
        .busybox()
        .modules(&["ext4", "crc32c_generic"])
        .file("/bin/quilt", guest_binary("quilt", "quilt").unwrap(), 0o755)
        .config_toml(&config)
        .bytes("/etc/quilt-version", format!("{version}\n"), 0o644)
        .bytes("/bin/health.sh", health, 0o755)
        .bytes("/bin/probe.sh", probe, 0o755)
        .dir("/data")
        .dir("/mnt");
    for e in std::fs::read_dir(&trust).unwrap() {
        let e = e.unwrap();
        b = b.file(
            &format!("/etc/quilt/trust/{}", e.file_name().to_string_lossy()),
            e.path(),
            0o644,
        );
    }
    for (dst, src) in files {
        b = b.file(dst, src, 0o644);
    }
    let cpio = b.build().unwrap();
    let tree = cpio.with_file_name("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && cpio -idm --quiet < '{}'",
        tree.display(),
        cpio.display()
    )));
    let img = cpio.with_file_name(format!("rootfs-v{version}.squashfs"));
    run(Command::new("mksquashfs").arg(&tree).arg(&img).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
        "-comp",
        "gzip",
    ]));
    assert!(std::fs::metadata(&img).unwrap().len() < PARTS[1].1 * MIB);
    img
}

/// A signed firmware bundle carrying `rootfs` as version `version`.
fn firmware(version: u32, rootfs: &Path) -> PathBuf {
    firmware_with(version, rootfs, false)
}

/// [`firmware`], with `verity`: the image made checkable by `quilt image
/// verity` (its hash tree appended, its root signed in
/// `rootfs.squashfs.verity`).
fn firmware_with(version: u32, rootfs: &Path, verity: bool) -> PathBuf {
    let dir = scratch(&format!("fw-src-{version}-{}", unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(rootfs, dir.join("rootfs.squashfs")).unwrap();
    if verity {
        run(Command::new(quilt_cli().unwrap())
            .args(["image", "verity"])
            .arg(dir.join("rootfs.squashfs")));
        let side = std::fs::read_to_string(dir.join("rootfs.squashfs.verity")).unwrap();
        assert!(side.contains("data_blocks = "), "{side}");
    }
    std::fs::write(
        dir.join("quilt.toml"),
        format!(
            "name = \"firmware/qemu\"\nversion = {version}\nentry = \"rootfs.squashfs\"\nruntime = \"firmware\"\n"
        ),
    )
    .unwrap();
    signed_bundle(&dir).unwrap().qb
}

/// `examples/hello` as version `version`.
fn app(version: u32) -> PathBuf {
    let src = quilt_system_tests::example_dir("hello");
    let dir = scratch(&format!("app-src-{version}-{}", unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let toml = std::fs::read_to_string(dir.join("quilt.toml")).unwrap();
    std::fs::write(
        dir.join("quilt.toml"),
        toml.replace("version = 1", &format!("version = {version}")),
    )
    .unwrap();
    signed_bundle(&dir).unwrap().qb
}

/// A fresh board disk: blank boot state, `slot_a` in A, B empty, an empty
/// ext4 data partition.
fn disk(name: &str, slot_a: &Path) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = scratch(name);
    let names = ["bootstate", "rootfs-a", "rootfs-b", "data"];
    let parts: Vec<(&str, u64, u64)> = names
        .iter()
        .zip(PARTS)
        .map(|(n, (start, size))| (*n, start, size))
        .collect();
    quilt_system_tests::gpt_disk(&path, DISK_MIB, &parts);
    let data = scratch(&format!("{name}.data"));
    let _ = std::fs::remove_file(&data);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data"])
        .arg(&data)
        .arg(format!("{}M", PARTS[3].1)));
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for (src, (start, _)) in [(slot_a, PARTS[1]), (data.as_path(), PARTS[3])] {
        f.seek(SeekFrom::Start(start * MIB)).unwrap();
        f.write_all(&std::fs::read(src).unwrap()).unwrap();
    }
    path
}

/// An ext4 image holding `files` (the update medium, /dev/vdb).
fn medium(name: &str, files: &[(String, PathBuf)]) -> PathBuf {
    let dir = scratch(&format!("{name}.d"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut total = 0;
    for (n, src) in files {
        std::fs::copy(src, dir.join(n)).unwrap();
        total += std::fs::metadata(src).unwrap().len();
    }
    let img = scratch(name);
    let _ = std::fs::remove_file(&img);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&dir)
        .arg(&img)
        .arg(format!("{}M", total / MIB + 16)));
    img
}

fn boot(disk: &Path, medium: Option<&Path>, timeout: Duration) -> Vm {
    let mut args = vec![
        "-drive".to_string(),
        format!("id=d0,file={},format=raw,if=none", disk.display()),
        "-device".into(),
        "virtio-blk-device,drive=d0".into(),
    ];
    if let Some(m) = medium {
        args.extend([
            "-drive".to_string(),
            format!("id=d1,file={},format=raw,if=none,readonly=on", m.display()),
            "-device".into(),
            "virtio-blk-device,drive=d1".into(),
        ]);
    }
    Vm::boot(
        initramfs(),
        VmOpts {
            mem_mb: 512,
            timeout,
            extra_args: args,
            ..VmOpts::default()
        },
    )
    .unwrap()
}

/// Boot until the guest ends by itself; its events and channel text.
fn boot_to_end(
    disk: &Path,
    medium: Option<&Path>,
) -> (Vec<quilt_system_tests::Event>, String, String) {
    let mut vm = boot(disk, medium, Duration::from_secs(240));
    let exit = vm.wait_exit(Duration::from_secs(240));
    let console = vm.console_text();
    assert!(exit.is_ok(), "{exit:?}\n{console}");
    (vm.events(), vm.channel_text(), console)
}

fn has(events: &[quilt_system_tests::Event], name: &str, pairs: &[(&str, &str)]) -> bool {
    events
        .iter()
        .any(|e| e.name() == Some(name) && pairs.iter().all(|(k, v)| e.get(k) == Some(*v)))
}

const PROBE_UPDATE: &str = r#"#!/bin/sh
echo "report v=$(cat /etc/quilt-version)" > /dev/ttyS1
echo "slots $(quilt slots --json | tr -d ' \n')" > /dev/ttyS1
if [ -f /root/fw.qb ]; then
    quilt install /root/fw.qb > /dev/ttyS1 2>&1
    sleep 60
fi
sleep 1
"#;

#[test]
fn a_healthy_update_is_tried_once_then_committed() {
    let _ = quilt_cli();
    let v2 = slot_image(2, true, PROBE_UPDATE, &[]);
    // Signed with its dm-verity root: the board mounts B only through it.
    let fw = firmware_with(2, &v2, true);
    let v1 = slot_image(1, true, PROBE_UPDATE, &[("/root/fw.qb", &fw)]);
    let disk = disk("healthy.img", &v1);
    // Boot 1: blank state → A; the update goes to B and the board reboots.
    let (ev, ch, con) = boot_to_end(&disk, None);
    assert!(
        has(&ev, "slot-selected", &[("slot", "a"), ("trial", "0")]),
        "{con}"
    );
    assert!(ch.contains("report v=1"), "{ch}\n{con}");
    assert!(
        ch.contains(
            r#"slots {"booted":"a","trial":false,"primary":"a","primary_version":0,"trying":null,"#
        ),
        "{ch}"
    );
    assert!(
        has(
            &ev,
            "update-staged",
            &[("slot", "b"), ("version", "2"), ("tries", "1")]
        ),
        "{con}"
    );
    assert!(has(&ev, "update-reboot", &[("version", "2")]), "{con}");
    let staged = ev
        .iter()
        .find(|e| e.name() == Some("update-staged"))
        .and_then(|e| e.get("verity"))
        .unwrap_or("");
    assert!(staged.len() == 16 && staged != "none", "{con}");
    // Boot 2: B on trial; its health check passes; committed.
    let (ev, ch, con) = boot_to_end(&disk, None);
    assert!(
        has(
            &ev,
            "slot-selected",
            &[("slot", "b"), ("trial", "1"), ("tries_left", "0")]
        ),
        "{con}"
    );
    assert!(
        has(&ev, "slot-booted", &[("slot", "b"), ("trial", "1")]),
        "{con}"
    );
    assert!(
        has(&ev, "slot-verity", &[("slot", "b"), ("root", staged)]),
        "{con}"
    );
    assert!(has(&ev, "slot-committed", &[("slot", "b")]), "{con}");
    assert!(ch.contains("report v=2"), "{ch}");
    // (The probe starts with the health check, so the trial may or may
    // not be committed yet when it asks.)
    assert!(ch.contains(r#"slots {"booted":"b","#), "{ch}");
    // Boot 3: B for good, still checked by its root.
    let (ev, ch, con) = boot_to_end(&disk, None);
    assert!(
        has(&ev, "slot-selected", &[("slot", "b"), ("trial", "0")]),
        "{con}"
    );
    assert!(
        has(&ev, "slot-verity", &[("slot", "b"), ("root", staged)]),
        "{con}"
    );
    assert!(!has(&ev, "slot-trial", &[]), "{con}");
    assert!(ch.contains("report v=2"), "{ch}");
    assert!(
        ch.contains(
            r#"slots {"booted":"b","trial":false,"primary":"b","primary_version":2,"trying":null,"#
        ),
        "{ch}"
    );
}

#[test]
fn an_unhealthy_update_falls_back_by_itself() {
    let _ = quilt_cli();
    let bad = slot_image(2, false, PROBE_UPDATE, &[]);
    let fw = firmware(2, &bad);
    let v1 = slot_image(1, true, PROBE_UPDATE, &[("/root/fw.qb", &fw)]);
    let disk = disk("unhealthy.img", &v1);
    let (ev, _, con) = boot_to_end(&disk, None);
    assert!(
        has(&ev, "update-staged", &[("slot", "b"), ("version", "2")]),
        "{con}"
    );
    // Boot 2: B's health check fails: it gives up and reboots.
    let (ev, ch, con) = boot_to_end(&disk, None);
    assert!(
        has(&ev, "slot-selected", &[("slot", "b"), ("trial", "1")]),
        "{con}"
    );
    assert!(
        has(
            &ev,
            "slot-unhealthy",
            &[("slot", "b"), ("reason", "the health service failed")]
        ),
        "{con}"
    );
    let _ = ch;
    assert!(!has(&ev, "slot-committed", &[]), "{con}");
    // Boot 3: back on A without anyone's help, and it stays there.
    let (ev, ch, con) = boot_to_end(&disk, None);
    assert!(
        has(
            &ev,
            "slot-fallback",
            &[
                ("from", "b"),
                ("to", "a"),
                ("version", "2"),
                ("fallbacks", "1")
            ]
        ),
        "{con}"
    );
    assert!(
        has(&ev, "slot-selected", &[("slot", "a"), ("trial", "0")]),
        "{con}"
    );
    assert!(ch.contains("report v=1"), "{ch}");
    assert!(
        ch.contains(r#""booted":"a","trial":false,"primary":"a","#)
            && ch.contains(r#""failed_version":2,"fallbacks":1}"#),
        "{ch}"
    );
    // A offers the same firmware again: it is staged again (the slot is
    // rewritten and checked), tried, and fails again.
    assert!(
        has(&ev, "update-staged", &[("slot", "b"), ("version", "2")]),
        "{con}"
    );
}

/// Report what this slot and the store hold, then install the next app
/// version and the next firmware (the board reboots into it) from the
/// update medium.
const PROBE_CUT: &str = r#"#!/bin/sh
out=/dev/ttyS1
v=$(cat /etc/quilt-version)
list=$(quilt bundles --json | tr -d ' \n')
ver() { echo "$list" | grep -o "\"name\":\"$1\"[^}]*" | grep -o '"version":[0-9]*' | grep -o '[0-9]*$'; }
app=$(ver examples/hello); app=${app:-0}
fw=$(ver firmware/qemu); fw=${fw:-1}
echo "report v=$v app=$app fw=$fw" > $out
mount -t ext4 -o ro /dev/vdb /mnt || exit 1
a=$((app + 1))
[ -f /mnt/app$a.qb ] && quilt install /mnt/app$a.qb > /dev/null 2>&1 && echo "app-installed $a" > $out
# Firmware in the store newer than this slot fell back (a stranded update
# is resumed at boot, before this runs): offer it again, as an operator
# would. Otherwise offer the next one.
if [ "$fw" -gt "$v" ]; then n=$fw; else n=$((v + 1)); fi
if [ -f /mnt/fw$n.qb ]; then
    quilt install /mnt/fw$n.qb > /dev/null 2>&1
    echo "fw-offered $n" > $out
    sleep 60
fi
echo "done v=$v app=$app" > $out
"#;

/// A small PRNG for kill times (seeded from the clock; the seed is printed
/// so a failing run can be replayed with QUILT_CUT_SEED).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

#[test]
fn power_cuts_during_installs_and_updates_leave_a_working_slot_and_every_bundle() {
    const TOP: u32 = 6;
    const KILLS: usize = 50;
    let _ = quilt_cli();
    let mut files = Vec::new();
    let mut slot_a = None;
    for v in 1..=TOP {
        let img = slot_image(v, true, PROBE_CUT, &[]);
        if v == 1 {
            slot_a = Some(img);
        } else {
            files.push((format!("fw{v}.qb"), firmware(v, &img)));
        }
        files.push((format!("app{v}.qb"), app(v)));
    }
    let medium = medium("cut-medium.img", &files);
    let slot_a = slot_a.unwrap();
    // A board that finished every update is replaced by a fresh one (a
    // new round), so cuts keep landing in installs and updates.
    let mut round = 0;
    let mut disk = disk("cut-0.img", &slot_a);
    let seed = std::env::var("QUILT_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    println!("power-cut seed {seed} (QUILT_CUT_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let (mut kills, mut boots, mut early, mut fallbacks) = (0usize, 0usize, 0usize, 0usize);
    let (mut last_app, mut last_fw) = (0u32, 1u32);
    let mut phases: std::collections::BTreeMap<&str, usize> = Default::default();
    let check = |vm: &Vm, boots: usize, last_app: &mut u32, last_fw: &mut u32| {
        let con = vm.console_text();
        let ev = vm.events();
        assert!(
            !has(&ev, "fatal", &[]),
            "boot {boots} found no slot:\n{con}"
        );
        assert!(
            !has(&ev, "bundle-unreadable", &[]) && !has(&ev, "bundle-refused", &[]),
            "a bundle was lost or damaged (boot {boots}):\n{con}"
        );
        let ch = vm.channel_text();
        if let Some(r) = ch.lines().find_map(|l| l.strip_prefix("report ")) {
            let get = |k: &str| -> u32 {
                r.split(' ')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("{r}"))
            };
            let (v, app, fw) = (get("v"), get("app"), get("fw"));
            assert!((1..=TOP).contains(&v), "{r}");
            assert!(
                app >= *last_app,
                "app went back from {last_app}: {r}\n{con}"
            );
            assert!(
                fw >= *last_fw,
                "firmware in the store went back from {last_fw}: {r}"
            );
            // Only a version that fell back stays in the store ahead of the
            // slot; any other would have been resumed before the probe ran.
            let failed = ev
                .iter()
                .filter(|e| matches!(e.name(), Some("slot-selected" | "slot-fallback")))
                .filter_map(|e| {
                    e.get("failed_version")
                        .or(e.get("version"))
                        .and_then(|x| x.parse::<u32>().ok())
                })
                .max();
            assert!(
                fw <= v || failed == Some(fw),
                "the store holds firmware {fw} but the slot runs {v} and {fw} did not fall back (failed {failed:?}): a stranded update was not resumed\n{con}"
            );
            *last_app = app;
            *last_fw = fw;
        }
    };
    while kills < KILLS {
        assert!(boots < 4 * KILLS, "{boots} boots for {kills} kill points");
        boots += 1;
        let mut vm = boot(&disk, Some(&medium), Duration::from_secs(120));
        // One boot in four is cut before it is up (stage 1's state write,
        // mounting, starting); the next one must then come up.
        let cut_early = early < KILLS / 4 && rng.next().is_multiple_of(4);
        if !cut_early {
            // A working slot: quilt-init from a slot up and running its
            // services (it may then reboot at once to resume an update).
            let r = vm.wait_for_console("event=boot-ready", Duration::from_secs(60));
            assert!(
                r.is_ok(),
                "boot {boots} after a power cut did not reach a working slot: {r:?}\n{}",
                vm.console_text()
            );
        }
        let delay = if cut_early {
            rng.ms(200, 2500)
        } else {
            // From the probe's report through the installs, the slot
            // write and the reboot into it.
            rng.ms(300, 3200)
        };
        let killed = vm.wait_exit(delay).is_err();
        if killed {
            kills += 1;
            early += usize::from(cut_early);
            let ch = vm.channel_text();
            let phase = if cut_early && !ch.contains("report") {
                "booting"
            } else if ch.contains("fw-offered") {
                "rebooting into the update"
            } else if ch.contains("app-installed") {
                "installing or staging firmware"
            } else {
                "installing a bundle"
            };
            *phases.entry(phase).or_default() += 1;
        }
        check(&vm, boots, &mut last_app, &mut last_fw);
        fallbacks += usize::from(has(&vm.events(), "slot-fallback", &[]));
        if vm
            .channel_text()
            .contains(&format!("done v={TOP} app={TOP}"))
        {
            round += 1;
            let _ = std::fs::remove_file(&disk);
            disk = self::disk(&format!("cut-{round}.img"), &slot_a);
            (last_app, last_fw) = (0, 1);
        }
    }
    // No more cuts: the board must finish every update by itself.
    let mut done = false;
    for _ in 0..(2 * TOP + 4) {
        let (ev, ch, con) = boot_to_end(&disk, Some(&medium));
        assert!(
            !has(&ev, "fatal", &[]) && !has(&ev, "bundle-unreadable", &[]),
            "{con}"
        );
        if ch.contains(&format!("done v={TOP} app={TOP}")) {
            done = true;
            break;
        }
    }
    assert!(done, "the board did not reach firmware {TOP} and app {TOP}");
    println!(
        "power cuts: {kills} kill points over {boots} boots on {} boards ({phases:?}); every next boot reached a working slot with every bundle intact; {fallbacks} cuts during a trial fell back and were offered again; the last board converged to v{TOP}",
        round + 1
    );
}
