//! Flashable disk images without root: a GPT written by `sfdisk` into a
//! sparse file, and partition images made by Debian's tools on plain files
//! (`mkfs.vfat` + `mcopy` from mtools, `mkfs.ext4`, `mksquashfs`), copied in
//! at the offsets of the board's [`Layout`]. No loop devices, no mounts.
//!
//! Everything that would otherwise be random or the current time is fixed
//! (disk and partition GUIDs derived from a seed, volume ids, ext4 UUID and
//! hash seed, file times), so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha3::{Digest, Sha3_256};

use crate::genimage::Layout;
use crate::Initramfs;

/// File times in every image: 2024-01-01 00:00:00 UTC (FAT cannot store
/// times before 1980, so not the epoch).
pub const IMAGE_TIME: u64 = 1_704_067_200;

/// Why a disk or partition image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A tool could not be started (not installed?).
    #[error("cannot run {program} (tools/setup.sh installs it)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// A file could not be read, written or created.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A partition's contents do not fit.
    #[error("{image} is {size} bytes but partition {partition:?} holds {capacity}; make the partition bigger in the board's genimage.cfg")]
    TooBig {
        partition: String,
        image: String,
        size: u64,
        capacity: u64,
    },
    /// Contents given for a partition the layout does not have.
    #[error("the layout has no partition {0:?}")]
    NoPartition(String),
    /// The tree for a squashfs could not be written.
    #[error("writing the root tree")]
    Tree(#[source] crate::ImageError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_owned();
    move |source| DiskError::Io { what, path, source }
}

/// Run a tool with the fixed image time in its environment; its stderr
/// goes into the error.
fn run(cmd: &mut Command) -> Result<(), DiskError> {
    cmd.env("SOURCE_DATE_EPOCH", IMAGE_TIME.to_string())
        .env("E2FSPROGS_FAKE_TIME", IMAGE_TIME.to_string())
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| DiskError::Spawn {
        program: program.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let command = std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    Err(DiskError::Tool {
        command,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// A GUID derived from `seed` and `what` (same inputs, same GUID), in the
/// RFC 9562 layout (version 8, variant 10).
pub fn derived_guid(seed: &str, what: &str) -> String {
    let mut h = Sha3_256::new();
    h.update(seed.as_bytes());
    h.update([0]);
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A FAT file system image (ESP, a Raspberry Pi boot partition) filled
/// with mtools.
#[derive(Debug, Clone)]
pub struct FatImage {
    label: String,
    size: u64,
    /// Guest path (no leading `/`) → contents; directories are implied.
    files: BTreeMap<String, FatFile>,
}

#[derive(Debug, Clone)]
enum FatFile {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

impl FatImage {
    /// An empty file system of `size` bytes labelled `label`.
    pub fn new(label: &str, size: u64) -> Self {
        Self {
            label: label.to_owned(),
            size,
            files: BTreeMap::new(),
        }
    }

    /// Copy a host file to `path` (e.g. `EFI/BOOT/BOOTX64.EFI`).
    pub fn file(&mut self, path: &str, host: impl Into<PathBuf>) -> &mut Self {
        self.files.insert(
            path.trim_start_matches('/').to_owned(),
            FatFile::Host(host.into()),
        );
        self
    }

    /// A file with these contents.
    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(
            path.trim_start_matches('/').to_owned(),
            FatFile::Bytes(data.into()),
        );
        self
    }

    /// The paths it will hold.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Make the image at `out`; `scratch` is a directory for staging
    /// in-memory files.
    pub fn write(&self, out: &Path, scratch: &Path) -> Result<(), DiskError> {
        let _ = std::fs::remove_file(out);
        let volid = &derived_guid(&self.label, "fat-volume-id")[..8];
        run(Command::new("mkfs.vfat")
            .args(["-C", "--invariant", "-n", &self.label, "-i", volid])
            .arg(out)
            .arg((self.size / 1024).to_string()))?;
        let mut dirs: Vec<String> = Vec::new();
        for path in self.files.keys() {
            let mut at = 0;
            while let Some(i) = path.get(at..).and_then(|r| r.find('/')) {
                at += i;
                let d = path.get(..at).unwrap_or_default().to_owned();
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
                at += 1;
            }
        }
        if !dirs.is_empty() {
            run(Command::new("mmd")
                .arg("-i")
                .arg(out)
                .args(dirs.iter().map(|d| format!("::/{d}"))))?;
        }
        std::fs::create_dir_all(scratch).map_err(io("creating", scratch))?;
        for (n, (path, content)) in self.files.iter().enumerate() {
            let src = match content {
                FatFile::Host(p) => p.clone(),
                FatFile::Bytes(b) => {
                    let p = scratch.join(format!("fat-{n}"));
                    std::fs::write(&p, b).map_err(io("writing", &p))?;
                    p
                }
            };
            run(Command::new("mcopy")
                .args(["-o", "-i"])
                .arg(out)
                .arg(&src)
                .arg(format!("::/{path}")))?;
        }
        Ok(())
    }
}

/// An empty ext4 file system of `size` bytes (4 KiB blocks), its UUID and
/// hash seed derived from `seed`.
pub fn ext4(out: &Path, size: u64, label: &str, seed: &str) -> Result<(), DiskError> {
    let _ = std::fs::remove_file(out);
    let uuid = derived_guid(seed, "ext4");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", label, "-U", &uuid, "-E"])
        .arg(format!("hash_seed={uuid},root_owner=0:0,nodiscard"))
        .arg(out)
        .arg(format!("{}k", size / 1024)))
}

/// A read-only root: `tree` as a zstd squashfs, everything owned by root
/// with the fixed image time. `scratch` is emptied and used for the tree.
pub fn squashfs(tree: &Initramfs, out: &Path, scratch: &Path) -> Result<(), DiskError> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(io("creating", scratch))?;
    tree.write_tree(scratch).map_err(DiskError::Tree)?;
    let _ = std::fs::remove_file(out);
    // The times come from SOURCE_DATE_EPOCH (set by `run`): mksquashfs
    // applies it to the file system and every file.
    let r = run(Command::new("mksquashfs").arg(scratch).arg(out).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
        "-no-xattrs",
        "-comp",
        "zstd",
        // Level 6, not mksquashfs's 15: Bun's 105 MB binary squashes in
        // 1.7 s instead of 37 s, for 5 % more (50.5 vs 47.9 MB).
        "-Xcompression-level",
        "6",
    ]));
    let _ = std::fs::remove_dir_all(scratch);
    r
}

/// A disk image being assembled: a [`Layout`] and what goes in each
/// partition (the rest stays zeros).
#[derive(Debug)]
pub struct Disk<'a> {
    layout: &'a Layout,
    seed: String,
    contents: BTreeMap<String, PathBuf>,
}

/// What [`Disk::write`] wrote.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// Size of the image file (mostly sparse).
    pub size: u64,
    /// Bytes of partition contents copied in.
    pub written: u64,
}

impl<'a> Disk<'a> {
    /// `seed` (the board name, say) fixes the disk and partition GUIDs.
    pub fn new(layout: &'a Layout, seed: &str) -> Self {
        Self {
            layout,
            seed: seed.to_owned(),
            contents: BTreeMap::new(),
        }
    }

    /// Put the image file `image` at the start of partition `name`.
    pub fn fill(&mut self, name: &str, image: impl Into<PathBuf>) -> Result<&mut Self, DiskError> {
        if self.layout.partition(name).is_none() {
            return Err(DiskError::NoPartition(name.into()));
        }
        self.contents.insert(name.to_owned(), image.into());
        Ok(self)
    }

    /// The `sfdisk` script for the table.
    pub fn sfdisk_script(&self) -> String {
        let mut s = format!(
            "label: gpt\nlabel-id: {}\nunit: sectors\nfirst-lba: 2048\n",
            derived_guid(&self.seed, "disk")
        );
        for p in &self.layout.partitions {
            s.push_str(&format!(
                "start={}, size={}, type={}, name=\"{}\", uuid={}{}\n",
                p.offset / 512,
                p.size / 512,
                p.type_guid,
                p.name,
                derived_guid(&self.seed, &p.name),
                if p.bootable {
                    ", attrs=\"LegacyBIOSBootable\""
                } else {
                    ""
                }
            ));
        }
        s
    }

    /// Write the image to `out` (replaced): a sparse file of the layout's
    /// size, the GPT, then each partition's contents.
    pub fn write(&self, out: &Path) -> Result<DiskReport, DiskError> {
        for (name, image) in &self.contents {
            let Some(p) = self.layout.partition(name) else {
                return Err(DiskError::NoPartition(name.clone()));
            };
            let size = std::fs::metadata(image)
                .map_err(io("reading", image))?
                .len();
            if size > p.size {
                return Err(DiskError::TooBig {
                    partition: name.clone(),
                    image: image.display().to_string(),
                    size,
                    capacity: p.size,
                });
            }
        }
        let _ = std::fs::remove_file(out);
        let f = File::create(out).map_err(io("creating", out))?;
        f.set_len(self.layout.size).map_err(io("sizing", out))?;
        drop(f);
        let mut sf = Command::new("sfdisk")
            .args([
                "--quiet",
                "--no-reread",
                "--no-tell-kernel",
                "--wipe",
                "always",
            ])
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DiskError::Spawn {
                program: "sfdisk".into(),
                source,
            })?;
        if let Some(mut stdin) = sf.stdin.take() {
            stdin
                .write_all(self.sfdisk_script().as_bytes())
                .map_err(io("writing the table to sfdisk for", out))?;
        }
        let o = sf
            .wait_with_output()
            .map_err(io("waiting for sfdisk on", out))?;
        if !o.status.success() {
            return Err(DiskError::Tool {
                command: format!("sfdisk {}", out.display()),
                status: o.status,
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            });
        }
        let mut disk = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(io("opening", out))?;
        let mut written = 0;
        for (name, image) in &self.contents {
            let Some(p) = self.layout.partition(name) else {
                continue;
            };
            written += copy_sparse(image, &mut disk, p.offset)
                .map_err(io("copying into the disk image", image))?;
        }
        disk.sync_all().map_err(io("syncing", out))?;
        Ok(DiskReport {
            size: self.layout.size,
            written,
        })
    }
}

/// Copy `src` into `dst` at `offset`, leaving all-zero 64 KiB blocks as
/// holes (the destination is a fresh sparse file). Returns the bytes
/// actually written.
fn copy_sparse(src: &Path, dst: &mut File, offset: u64) -> std::io::Result<u64> {
    let mut f = File::open(src)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = offset;
    let mut written = 0;
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(written);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(at))?;
            dst.write_all(chunk)?;
            written += n as u64;
        }
        at += n as u64;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_guids_are_stable_and_distinct() {
        let a = derived_guid("pc-x86_64", "rootfs-a");
        assert_eq!(a, derived_guid("pc-x86_64", "rootfs-a"));
        assert_ne!(a, derived_guid("pc-x86_64", "rootfs-b"));
        assert_ne!(a, derived_guid("qemu-aarch64-virt", "rootfs-a"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'8', "version 8: {a}");
    }
}
