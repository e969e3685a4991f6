//! `quilt image flash`: write a disk image to a card, a disk or a file,
//! then read it back and compare.
//!
//! A block device is refused while any of its partitions is mounted or
//! it holds the running system's root, and is written only with `--yes`.
//! Every byte is written to a device (zeros too: a reused card's old boot
//! state must not survive); a file target is written sparse.

use anyhow::{bail, Context};
use clap::Args;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const CHUNK: usize = 1 << 20;

/// Write a disk image (from `quilt image disk`) to a device or a file,
/// with progress, then read it back and check every byte.
///
/// A device (/dev/sdX, /dev/mmcblkN) is refused while one of its
/// partitions is mounted or it holds this system's root file system, and
/// is overwritten only with --yes (run as root, or with write access to the
/// device). A file target needs no root; it is written sparse and can be
/// booted in QEMU. Examples:
///
///   quilt image flash target/qemu/pc-x86_64.img --to /dev/sdb --yes
///   quilt image flash disk.img --to copy.img
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct FlashArgs {
    /// The image to write.
    pub image: PathBuf,
    /// The device or file to write it to (a file is created or replaced).
    #[arg(long)]
    pub to: PathBuf,
    /// Overwrite a block device (without it, flash says what is there).
    #[arg(long)]
    pub yes: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `major:minor` of a device number.
fn dev_id(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// The device numbers of `disk` and its partitions, from sysfs.
fn disk_and_partitions(disk: (u32, u32)) -> Vec<(u32, u32)> {
    let mut out = vec![disk];
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", disk.0, disk.1));
    if let Ok(dir) = std::fs::read_dir(&sys) {
        for e in dir.flatten() {
            let Ok(dev) = std::fs::read_to_string(e.path().join("dev")) else {
                continue;
            };
            if e.path().join("partition").exists() {
                if let Some((a, b)) = dev.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out
}

/// Mount points of file systems on these devices (`/proc/self/mountinfo`,
/// field 3 is the device number).
fn mounts_on(devs: &[(u32, u32)]) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.nth(2)?;
            let point = f.next().and_then(|_| f.next())?;
            let (a, b) = id.split_once(':')?;
            let d = (a.parse().ok()?, b.parse().ok()?);
            devs.contains(&d).then(|| point.to_owned())
        })
        .collect()
}

/// Refuse a device that is in use; describe it.
fn check_device(to: &Path, rdev: u64) -> anyhow::Result<String> {
    let id = dev_id(rdev);
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", id.0, id.1));
    if sys.join("partition").exists() {
        bail!(
            "{} is a partition; flash the whole disk it belongs to (the image has its own partition table)",
            to.display()
        );
    }
    let devs = disk_and_partitions(id);
    let mounted = mounts_on(&devs);
    if mounted.iter().any(|m| m == "/") {
        bail!(
            "{} holds this system's root file system; refusing to overwrite it",
            to.display()
        );
    }
    if !mounted.is_empty() {
        bail!(
            "{} is in use: mounted at {}; unmount it (umount) and run flash again",
            to.display(),
            mounted.join(", ")
        );
    }
    let model = std::fs::read_to_string(sys.join("device/model")).unwrap_or_default();
    Ok(model.trim().to_owned())
}

pub fn run(a: &FlashArgs) -> anyhow::Result<ExitCode> {
    let mut src = File::open(&a.image).with_context(|| format!("opening {}", a.image.display()))?;
    let len = src.metadata()?.len();
    let target = std::fs::metadata(&a.to).ok();
    let device = target
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    let mut dst = if device {
        let rdev = target.as_ref().map_or(0, MetadataExt::rdev);
        let model = check_device(&a.to, rdev)?;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&a.to)
            .with_context(|| {
                format!(
                    "opening {} for writing (run as root, or get write access to it)",
                    a.to.display()
                )
            })?;
        let size = f.seek(SeekFrom::End(0))?;
        if size < len {
            bail!(
                "{} holds {size} bytes, the image is {len}; use a bigger card or disk",
                a.to.display()
            );
        }
        if !a.yes {
            eprintln!(
                "quilt: {} ({}{} MiB) would be overwritten with {} ({} MiB); pass --yes to write it",
                a.to.display(),
                if model.is_empty() { String::new() } else { format!("{model}, ") },
                size >> 20,
                a.image.display(),
                len >> 20
            );
            return Ok(ExitCode::from(2));
        }
        f.seek(SeekFrom::Start(0))?;
        f
    } else {
        if target.as_ref().is_some_and(|m| !m.is_file()) {
            bail!("{} is neither a block device nor a file", a.to.display());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&a.to)
            .with_context(|| format!("creating {}", a.to.display()))?;
        f.set_len(len)?;
        f
    };

    let bar = |what: &str| bytes_bar(len, a.quiet, what);

    let started = std::time::Instant::now();
    let pb = bar("write");
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            bail!("{} ended early at byte {at}", a.image.display());
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if device || chunk.iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(at))?;
            dst.write_all(chunk)
                .with_context(|| format!("writing {} at byte {at}", a.to.display()))?;
        }
        at += n as u64;
        pb.set_position(at);
    }
    dst.sync_all()
        .with_context(|| format!("syncing {}", a.to.display()))?;
    pb.finish();
    let wrote = started.elapsed();

    // Read back from the medium, not the page cache.
    let _ = rustix::fs::fadvise(
        &dst,
        0,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
    let pb = bar("verify");
    src.seek(SeekFrom::Start(0))?;
    dst.seek(SeekFrom::Start(0))?;
    let mut back = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = read_full(&mut src, &mut buf)?;
        let m = read_full(&mut dst, back.get_mut(..n).unwrap_or_default())?;
        if m != n || buf.get(..n) != back.get(..n) {
            let off = buf
                .iter()
                .zip(&back)
                .take(n)
                .position(|(x, y)| x != y)
                .unwrap_or(m);
            bail!(
                "{} reads back wrong at byte {}: the medium may be failing or fake; try another",
                a.to.display(),
                at + off as u64
            );
        }
        at += n as u64;
        pb.set_position(at);
    }
    pb.finish();
    eprintln!(
        "quilt: wrote {} to {} ({} MiB, {:.1} s) and read it back: identical",
        a.image.display(),
        a.to.display(),
        len >> 20,
        wrote.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(buf.get_mut(n..).unwrap_or_default())? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A progress bar over `len` bytes labelled `what` (hidden when `quiet`),
/// as `quilt flash` and `quilt push` show it.
pub fn bytes_bar(len: u64, quiet: bool, what: &str) -> indicatif::ProgressBar {
    let pb = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len)
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:7} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_disk_and_mounted_disks_are_refused() {
        let root = std::fs::metadata("/").unwrap().dev();
        let id = dev_id(root);
        // The root file system's device is mounted at /.
        assert!(mounts_on(&[id]).iter().any(|m| m == "/"));
        assert!(mounts_on(&[(4095, 4095)]).is_empty());
    }

    #[test]
    fn a_file_target_is_written_and_verified_without_root() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("in.img");
        let mut data = vec![0u8; 3 * CHUNK + 123];
        for (i, b) in data.iter_mut().enumerate().skip(CHUNK) {
            *b = (i % 251) as u8;
        }
        std::fs::write(&img, &data).unwrap();
        let to = dir.path().join("out.img");
        std::fs::write(&to, b"old contents, longer than nothing").unwrap();
        let code = run(&FlashArgs {
            image: img,
            to: to.clone(),
            yes: false,
            quiet: true,
        })
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(std::fs::read(&to).unwrap(), data);
        // The leading zero megabyte stays a hole.
        assert!(std::fs::metadata(&to).unwrap().blocks() * 512 < data.len() as u64);
    }

    #[test]
    fn a_directory_is_not_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("in.img");
        std::fs::write(&img, b"x").unwrap();
        let e = run(&FlashArgs {
            image: img,
            to: dir.path().to_owned(),
            yes: true,
            quiet: true,
        })
        .unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
