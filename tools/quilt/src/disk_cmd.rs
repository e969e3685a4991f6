//! `quilt image disk`: a flashable GPT image for a board, from the same
//! inputs as `quilt image initramfs` plus the board's files under `board/`.
//!
//! What goes where (docs/images.md):
//! - root slot A: the root `quilt image initramfs` would build (quilt-init
//!   at /init, the boot config, trees, modules, Bun layer, trust store,
//!   bundles), as a squashfs; the config gets the board's `[slots]`;
//! - the boot partition: the boot loader, and per slot the kernel and a
//!   small stage-1 initramfs (quilt-init choosing the slot from the boot
//!   state, the modules to see the disk);
//! - slot B and the boot state: zeros; data: an empty ext4.

use crate::image_cmd::{add_modules, build_root, check_init, compile_config, RootArgs};
use anyhow::{bail, Context};
use clap::Args;
use quilt_imagekit::{genimage, Disk, FatImage, Filesystem, Initramfs};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Build a flashable GPT disk image for a board: boot loader, kernel and
/// stage-1 initramfs on the boot partition, root slot A (squashfs), an
/// empty slot B, the boot-state partition and an ext4 data partition.
///
/// The partition table is the board's genimage.cfg (board/<board>/, named by
/// its board.toml), the same file Buildroot's genimage reads. The boot config
/// gets the board's `[slots]` (device paths, data partition at
/// /var/lib/quilt) unless it has its own. No root needed: the file systems
/// are made on plain files (mkfs.vfat/mtools, mkfs.ext4, mksquashfs) and the
/// table by sfdisk. The same inputs give the same bytes. Example (x86_64
/// UEFI, booted by `qemu/run.sh --disk pc-x86_64`):
///
///   quilt image disk --board pc-x86_64 --kernel .cache/kernel/x86_64/vmlinuz \
///     --init target/x86_64-unknown-linux-gnu/release/quilt-init \
///     --config qemu/demo.toml --rootfs rootfs --modules .cache/kernel/x86_64/modules \
///     --busybox /bin/busybox --out disk.img
///
/// Boards: pc-x86_64 (UEFI: systemd-boot), qemu-aarch64-virt (UEFI via
/// AAVMF: systemd-boot, whose arm64 build qemu/fetch-bootloader.sh fetches
/// for --bootloader; or U-Boot: boot.scr), raspberrypi4-64 (structure only:
/// the Pi firmware is not included). Write it to a card or disk with
/// `quilt image flash`; docs/images.md has the details.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DiskArgs {
    /// Board name: a directory board/<name> (dashes or underscores) with a
    /// board.toml.
    #[arg(long)]
    pub board: String,
    /// Where the board directories are (default: ./board, run from the
    /// repository).
    #[arg(long, default_value = "board")]
    pub boards: PathBuf,
    /// The kernel the boot loader starts (an EFI-stub bzImage or arm64
    /// Image; qemu/fetch-kernel.sh leaves it in .cache/kernel/<arch>/vmlinuz).
    #[arg(long)]
    pub kernel: PathBuf,
    /// The boot loader's EFI binary (default for x86_64: Debian's
    /// systemd-boot-efi, /usr/lib/systemd/boot/efi/systemd-bootx64.efi).
    #[arg(long)]
    pub bootloader: Option<PathBuf>,
    /// Firmware version of slot A (the boot entry's `version`; updates must
    /// be newer).
    #[arg(long, default_value_t = 1)]
    pub firmware_version: u32,
    /// Stage slot B for a trial, as an update does: the same root as A at
    /// the next firmware version, this kernel under a counting boot entry
    /// (quilt-b+N-0.conf, N = --trial-tries) and the boot state saying
    /// so. For trying the fallbacks: a kernel here that never reaches
    /// quilt-init is left behind by systemd-boot's counting, and the next
    /// boot comes up from A.
    #[arg(long, value_name = "KERNEL")]
    pub trial_kernel: Option<PathBuf>,
    /// The trial's stage-1 initramfs instead of the one built here (a
    /// broken one shows the fallback when stage 1 never runs).
    #[arg(long, value_name = "FILE", requires = "trial_kernel")]
    pub trial_initrd: Option<PathBuf>,
    /// Boots the trial gets, from the boot loader and from quilt-init.
    #[arg(long, default_value_t = 3, requires = "trial_kernel")]
    pub trial_tries: u8,
    /// Mount the root slots unchecked: no dm-verity hash tree after each
    /// slot's squashfs and no root hash in the boot state. Only for a
    /// kernel without dm-verity; by default stage 1 mounts a slot through
    /// dm-verity, so a slot altered on the medium fails to mount and the
    /// board falls back to the other one.
    #[arg(long)]
    pub no_verity: bool,
    /// Where to write the image.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub root: RootArgs,
}

/// board/<name>/board.toml. Everything about a board except its partition
/// table, which stays in genimage.cfg.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardFile {
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// The genimage config holding the partition table (relative to the
    /// board directory).
    pub genimage: String,
    /// Which of its images is the disk.
    pub image: String,
    /// `systemd-boot` or `rpi-firmware`.
    pub boot: String,
    /// The GPT name of the partition the boot loader reads.
    pub boot_partition: String,
    /// The disk as the board's kernel names it (`/dev/vda`).
    pub disk: String,
    /// The kernel console (`ttyS0`).
    pub console: String,
    /// Modules stage 1 loads to see the root slots.
    pub stage1_modules: Vec<String>,
    /// A U-Boot boot script (relative to the board directory) compiled to
    /// `boot.scr` at the top of the boot partition (needs mkimage from
    /// u-boot-tools), for boards U-Boot may boot too.
    #[serde(default)]
    pub uboot_script: Option<String>,
    /// Modules the slot loads: the data partition's file system, and the
    /// ESP's when quilt-init marks boot entries good.
    pub slot_modules: Vec<String>,
}

/// A board: its files, its layout.
pub struct Board {
    pub name: String,
    pub dir: PathBuf,
    pub file: BoardFile,
    pub layout: genimage::Layout,
}

impl Board {
    /// Read board `name` from `boards/`.
    pub fn open(boards: &Path, name: &str) -> anyhow::Result<Board> {
        let dir = boards.join(name.replace('-', "_"));
        let path = dir.join("board.toml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {name:?} a board? they are the directories of {} with a board.toml; pass --boards if you are not in the repository)",
                path.display(),
                boards.display()
            )
        })?;
        let file: BoardFile =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let gi = dir.join(&file.genimage);
        let gtext =
            std::fs::read_to_string(&gi).with_context(|| format!("reading {}", gi.display()))?;
        let layout =
            genimage::layout(&gtext, &file.image).with_context(|| format!("{}", gi.display()))?;
        for p in [
            "bootstate",
            "rootfs-a",
            "rootfs-b",
            "data",
            &file.boot_partition,
        ] {
            if layout.partition(p).is_none() {
                bail!(
                    "{}: image {:?} has no partition {p:?}; every Quilt board has bootstate, rootfs-a, rootfs-b, data and its boot partition",
                    gi.display(),
                    file.image
                );
            }
        }
        Ok(Board {
            name: name.to_owned(),
            dir,
            file,
            layout,
        })
    }

    /// The device of partition `name` as the board sees it.
    pub fn device(&self, name: &str) -> String {
        let n = self.layout.number(name).unwrap_or(0);
        let sep = if self.file.disk.ends_with(|c: char| c.is_ascii_digit()) {
            "p"
        } else {
            ""
        };
        format!("{}{sep}{n}", self.file.disk)
    }

    /// The `[slots]` table the board's configs get.
    fn slots(&self) -> toml::Table {
        let mut t = toml::Table::new();
        for (k, p) in [
            ("state", "bootstate"),
            ("a", "rootfs-a"),
            ("b", "rootfs-b"),
            ("data", "data"),
        ] {
            t.insert(k.into(), self.device(p).into());
        }
        t.insert("data_mount".into(), "/var/lib/quilt".into());
        t.insert("init".into(), "/init".into());
        t
    }
}

/// The boot config of the slot: the user's, with the board's `[slots]`
/// under the user's own keys, and the data partition's modules.
pub fn slot_config(board: &Board, user: &str) -> anyhow::Result<(String, toml::Table)> {
    let mut t: toml::Table = toml::from_str(user).context("parsing the boot config")?;
    let mut slots = board.slots();
    if let Some(toml::Value::Table(own)) = t.remove("slots") {
        slots.extend(own);
    }
    let mods = t
        .entry("modules")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    if let toml::Value::Array(list) = mods {
        for m in &board.file.slot_modules {
            if !list.iter().any(|v| v.as_str() == Some(m.as_str())) {
                list.push(m.clone().into());
            }
        }
    }
    t.insert("slots".into(), toml::Value::Table(slots.clone()));
    Ok((toml::to_string(&t)?, slots))
}

/// Stage 1's config: the board's modules, the user's `[fatal]`, `[slots]`.
fn stage1_config(board: &Board, user: &str, slots: &toml::Table) -> anyhow::Result<String> {
    let u: toml::Table = toml::from_str(user).context("parsing the boot config")?;
    let mut t = toml::Table::new();
    t.insert(
        "modules".into(),
        toml::Value::Array(
            board
                .file
                .stage1_modules
                .iter()
                .map(|m| m.clone().into())
                .collect(),
        ),
    );
    if let Some(f) = u.get("fatal") {
        t.insert("fatal".into(), f.clone());
    }
    t.insert("slots".into(), toml::Value::Table(slots.clone()));
    Ok(toml::to_string(&t)?)
}

/// The systemd-boot entry of `slot`. `tries`: boot counting
/// (`+N-0` in the file name: systemd-boot counts down each boot, quilt-init
/// renames it to the plain name once the slot is healthy).
pub fn boot_entry(slot: char, version: u32, console: &str, tries: Option<u8>) -> (String, String) {
    let name = match tries {
        Some(n) => format!("quilt-{slot}+{n}-0.conf"),
        None => format!("quilt-{slot}.conf"),
    };
    let upper = slot.to_ascii_uppercase();
    let text = format!(
        "title Quilt slot {upper}\nversion {version}\nlinux /quilt/{slot}/linux\ninitrd /quilt/{slot}/initrd\noptions console={console} quiet panic=-1 quilt.slot={slot}\n"
    );
    (format!("loader/entries/{name}"), text)
}

/// systemd-boot's loader.conf: the newest entry that is not marked bad
/// boots after a one-second menu (so the console shows the boot loader).
pub const LOADER_CONF: &str = "timeout 1\ndefault quilt-*\nconsole-mode keep\neditor no\n";

fn default_bootloader(arch: &str) -> anyhow::Result<PathBuf> {
    let name = match arch {
        "x86_64" => "systemd-bootx64.efi",
        "aarch64" => "systemd-bootaa64.efi",
        other => bail!("unknown arch {other:?} in board.toml"),
    };
    let p = Path::new("/usr/lib/systemd/boot/efi").join(name);
    if !p.exists() {
        bail!(
            "{} is missing: install systemd-boot-efi (tools/setup.sh), or for another architecture fetch it with qemu/fetch-bootloader.sh {arch} and pass --bootloader",
            p.display()
        );
    }
    Ok(p)
}

/// A slot image's dm-verity root for the boot state (`None`: unchecked).
fn verity_of(t: Option<quilt_imagekit::verity::VerityTree>) -> Option<quilt_slots::Verity> {
    t.map(|t| quilt_slots::Verity {
        data_blocks: t.data_blocks,
        root: t.root,
    })
}

/// Append slot `img`'s dm-verity hash tree unless `--no-verity`.
fn add_verity(
    img: &Path,
    no_verity: bool,
) -> anyhow::Result<Option<quilt_imagekit::verity::VerityTree>> {
    if no_verity {
        return Ok(None);
    }
    Ok(Some(quilt_imagekit::verity::append_hash_tree(img)?))
}

/// The boot-state partition's first 8 KiB: slot A primary with its
/// verity root; with `trial` (version, tries, B's verity root), slot B
/// staged for that many boots (both record copies, as quilt-init writes
/// them: the newer wins).
fn boot_state(
    primary: u32,
    verity_a: Option<quilt_slots::Verity>,
    trial: Option<(u32, u8, Option<quilt_slots::Verity>)>,
) -> anyhow::Result<Vec<u8>> {
    use quilt_slots::{Slot, State, COPY_OFFSETS, RECORD};
    let mut records = Vec::new();
    match trial {
        None => records.push(State::initial().with_verity(Slot::A, verity_a)),
        Some((version, tries, verity_b)) => {
            let base = State {
                primary_version: u64::from(primary),
                ..State::initial()
            }
            .with_verity(Slot::A, verity_a);
            let Some(staged) = quilt_slots::stage(base, Slot::B, u64::from(version), tries) else {
                bail!("cannot stage version {version} over {primary} with {tries} tries");
            };
            records.push(base);
            records.push(staged.with_verity(Slot::B, verity_b));
        }
    }
    let mut out = vec![0u8; 8192];
    for (s, off) in records.iter().zip(COPY_OFFSETS) {
        let at = usize::try_from(off)?;
        if let Some(dst) = out.get_mut(at..at + RECORD) {
            dst.copy_from_slice(&s.encode());
        }
    }
    Ok(out)
}

/// `mkimage -T script`: U-Boot's legacy image around a boot script (its
/// timestamp from SOURCE_DATE_EPOCH, so reproducible).
fn uboot_script(src: &Path, out: &Path) -> anyhow::Result<()> {
    let o = std::process::Command::new("mkimage")
        .args([
            "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n",
        ])
        .arg("quilt boot script")
        .arg("-d")
        .arg(src)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", quilt_imagekit::IMAGE_TIME.to_string())
        .output()
        .context("running mkimage (install u-boot-tools: tools/setup.sh --arm64)")?;
    if !o.status.success() {
        bail!(
            "mkimage on {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

pub fn run(a: &DiskArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let board = Board::open(&a.boards, &a.board)?;
    check_init(&a.root.init)?;
    if !a.kernel.is_file() {
        bail!(
            "--kernel {}: no such file (qemu/fetch-kernel.sh {} fetches Debian's)",
            a.kernel.display(),
            board.file.arch
        );
    }
    let user = std::fs::read_to_string(&a.root.config)
        .with_context(|| format!("reading {}", a.root.config.display()))?;
    let (slot_text, slots) = slot_config(&board, &user)?;

    let work = a.out.with_extension("parts");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    // Root slot A.
    let (mut root, cfg) = build_root(&a.root, &slot_text)?;
    root.bytes(
        "/etc/quilt-version",
        format!("{}\n", a.firmware_version),
        0o644,
    )?;
    let slot_a = work.join("rootfs-a.squashfs");
    quilt_imagekit::squashfs(&root, &slot_a, &work.join("tree"))?;
    let slot_size = std::fs::metadata(&slot_a).map(|m| m.len()).unwrap_or(0);
    let verity_a = add_verity(&slot_a, a.no_verity)?;
    let trial_version = a.firmware_version + 1;
    let slot_b = work.join("rootfs-b.squashfs");
    let mut verity_b = None;
    if a.trial_kernel.is_some() {
        root.bytes("/etc/quilt-version", format!("{trial_version}\n"), 0o644)?;
        quilt_imagekit::squashfs(&root, &slot_b, &work.join("tree"))?;
        verity_b = add_verity(&slot_b, a.no_verity)?;
    }

    // Stage 1.
    let s1_text = stage1_config(&board, &user, &slots)?;
    let (s1_bin, s1_cfg) = compile_config(&s1_text, &a.root.config)?;
    let mut s1 = Initramfs::new();
    for d in ["/dev", "/proc", "/sys", "/run", "/etc/quilt"] {
        s1.dir(d)?;
    }
    s1.file("/init", &a.root.init, 0o755)?;
    s1.bytes("/etc/quilt/boot.bin", s1_bin, 0o644)?;
    let names: Vec<&str> = s1_cfg.modules.iter().map(String::as_str).collect();
    add_modules(
        &mut s1,
        &names,
        a.root.modules.as_deref(),
        a.root.kernel_version.as_deref(),
    )?;
    let initrd = work.join("initrd");
    s1.write_file(&initrd)?;

    // The boot partition.
    let Some(bp) = board.layout.partition(&board.file.boot_partition) else {
        bail!("no boot partition {:?}", board.file.boot_partition);
    };
    let label = match &bp.fs {
        Some(Filesystem::Vfat { label }) => label.clone().unwrap_or_else(|| "BOOT".into()),
        _ => bail!(
            "partition {:?} is not vfat in {}",
            bp.name,
            board.file.genimage
        ),
    };
    let mut fat = FatImage::new(&label, bp.size);
    match board.file.boot.as_str() {
        "systemd-boot" => {
            let loader = match &a.bootloader {
                Some(p) => p.clone(),
                None => default_bootloader(&board.file.arch)?,
            };
            let efi_name = match board.file.arch.as_str() {
                "x86_64" => "BOOTX64.EFI",
                _ => "BOOTAA64.EFI",
            };
            fat.file(&format!("EFI/BOOT/{efi_name}"), &loader);
            fat.bytes("loader/loader.conf", LOADER_CONF);
            if let Some(script) = &board.file.uboot_script {
                let scr = work.join("boot.scr");
                uboot_script(&board.dir.join(script), &scr)?;
                fat.file("boot.scr", &scr);
            }
            let (path, text) = boot_entry('a', a.firmware_version, &board.file.console, None);
            fat.bytes(&path, text);
            fat.file("quilt/a/linux", &a.kernel);
            fat.file("quilt/a/initrd", &initrd);
            if let Some(k) = &a.trial_kernel {
                let (path, text) =
                    boot_entry('b', trial_version, &board.file.console, Some(a.trial_tries));
                fat.bytes(&path, text);
                fat.file("quilt/b/linux", k);
                fat.file("quilt/b/initrd", a.trial_initrd.as_ref().unwrap_or(&initrd));
            }
        }
        "rpi-firmware" if a.trial_kernel.is_some() => {
            bail!("--trial-kernel needs a systemd-boot board (the Pi's tryboot is not done here)")
        }
        "rpi-firmware" => {
            fat.file("config.txt", board.dir.join("config.txt"));
            fat.file("slot-a/Image", &a.kernel);
            fat.file("slot-a/cmdline.txt", board.dir.join("cmdline.txt"));
            fat.file("slot-a/initrd", &initrd);
        }
        other => bail!("board.toml: unknown boot {other:?} (systemd-boot, rpi-firmware)"),
    }
    let boot_img = work.join("boot.vfat");
    fat.write(&boot_img, &work.join("fat"))?;

    // Data.
    let Some(dp) = board.layout.partition("data") else {
        bail!("no data partition");
    };
    let data_label = match &dp.fs {
        Some(Filesystem::Ext4 { label }) => label.clone().unwrap_or_else(|| "data".into()),
        _ => "data".into(),
    };
    let data = work.join("data.ext4");
    quilt_imagekit::ext4(&data, dp.size, &data_label, &board.name)?;

    let mut disk = Disk::new(&board.layout, &board.name);
    disk.fill("rootfs-a", &slot_a)?
        .fill(&board.file.boot_partition, &boot_img)?
        .fill("data", &data)?;
    let trial =
        a.trial_kernel
            .is_some()
            .then_some((trial_version, a.trial_tries, verity_of(verity_b)));
    let state = boot_state(a.firmware_version, verity_of(verity_a), trial)?;
    let state_path = work.join("bootstate");
    std::fs::write(&state_path, state)
        .with_context(|| format!("writing {}", state_path.display()))?;
    disk.fill("bootstate", &state_path)?;
    if a.trial_kernel.is_some() {
        disk.fill("rootfs-b", &slot_b)?;
    }
    let report = disk.write(&a.out)?;
    let _ = std::fs::remove_dir_all(&work);
    let verity = match verity_a {
        Some(t) => format!(
            "dm-verity root {} over {} blocks (+{} hash blocks)",
            quilt_bundle::hex::encode(&t.root),
            t.data_blocks,
            t.hash_blocks
        ),
        None => "no dm-verity (--no-verity)".into(),
    };
    eprintln!(
        "wrote {} for {}: {} MiB disk, slot A {:.1} MiB squashfs, {verity} ({} services, {} modules), {:.1} MiB of data written, in {:.1} s",
        a.out.display(),
        board.name,
        report.size >> 20,
        slot_size as f64 / 1048576.0,
        cfg.services,
        cfg.modules.len(),
        report.written as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boards() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board")
    }

    #[test]
    fn every_board_file_reads_with_its_layout() {
        for name in ["pc-x86_64", "qemu-aarch64-virt", "raspberrypi4-64"] {
            let b = Board::open(&boards(), name).unwrap();
            assert!(b.layout.partition(&b.file.boot_partition).is_some());
        }
        let pc = Board::open(&boards(), "pc-x86_64").unwrap();
        assert_eq!(pc.device("bootstate"), "/dev/vda1");
        assert_eq!(pc.device("esp"), "/dev/vda5");
        let pi = Board::open(&boards(), "raspberrypi4-64").unwrap();
        assert_eq!(pi.device("bootstate"), "/dev/mmcblk0p2");
        let e = Board::open(&boards(), "no-such-board").err().unwrap();
        assert!(format!("{e:#}").contains("--boards"), "{e:#}");
    }

    #[test]
    fn the_slot_config_gets_the_boards_slots_under_the_users_own() {
        let pc = Board::open(&boards(), "pc-x86_64").unwrap();
        let (text, slots) =
            slot_config(&pc, "modules = [\"overlay\"]\n[slots]\ntries = 3\n").unwrap();
        assert_eq!(slots["a"].as_str(), Some("/dev/vda2"));
        assert_eq!(slots["tries"].as_integer(), Some(3));
        let bin = quilt_config::compile(&text).unwrap();
        let cfg = quilt_config::decode(&bin).unwrap();
        let mods: Vec<&str> = cfg.modules.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            mods,
            [
                "overlay",
                "ext4",
                "crc32c_generic",
                "vfat",
                "nls_cp437",
                "nls_ascii"
            ]
        );
        let s = cfg.slots.unwrap();
        assert_eq!(s.data_mount.as_str(), "/var/lib/quilt");
        assert_eq!(s.tries, 3);
        let s1 = stage1_config(&pc, "[fatal]\naction = \"poweroff\"\n", &slots).unwrap();
        assert!(quilt_config::compile(&s1).is_ok(), "{s1}");
    }

    #[test]
    fn a_staged_trial_is_what_quilt_init_decides_to_boot() {
        use quilt_slots::{Slot, Verity, RECORD};
        let (va, vb) = (
            Verity {
                data_blocks: 3,
                root: [1; 32],
            },
            Verity {
                data_blocks: 4,
                root: [2; 32],
            },
        );
        let bytes = boot_state(1, Some(va), Some((2, 3, Some(vb)))).unwrap();
        let copies = [&bytes[0..RECORD], &bytes[4096..4096 + RECORD]];
        let (s, _) = quilt_slots::current(copies).unwrap();
        let d = quilt_slots::decide(Some(s));
        assert_eq!(d.slot, Slot::B);
        assert!(d.trial);
        assert_eq!(s.trying_version, 2);
        assert_eq!((s.verity(Slot::A), s.verity(Slot::B)), (Some(va), Some(vb)));
        // Without a trial: A, checked by its root, and nothing to decide.
        let bytes = boot_state(1, Some(va), None).unwrap();
        let (s, _) =
            quilt_slots::current([&bytes[0..RECORD], &bytes[4096..4096 + RECORD]]).unwrap();
        let d = quilt_slots::decide(Some(s));
        assert_eq!((d.slot, d.trial, d.write), (Slot::A, false, None));
        assert_eq!(s.verity(Slot::A), Some(va));
    }

    #[test]
    fn boot_entries_count_only_on_trial() {
        let (p, t) = boot_entry('b', 2, "ttyS0", Some(3));
        assert_eq!(p, "loader/entries/quilt-b+3-0.conf");
        assert!(t.contains("version 2\n") && t.contains("linux /quilt/b/linux"));
        assert!(t.contains(" quilt.slot=b\n"), "{t}");
        assert_eq!(
            boot_entry('a', 1, "ttyS0", None).0,
            "loader/entries/quilt-a.conf"
        );
    }
}
