//! Deterministic newc ("SVR4 new ascii") cpio archives, the format the Linux
//! kernel unpacks as an initramfs.
//!
//! Header encoding, name and data padding and the trailer come from the
//! `cpio` crate; this module decides what goes in: a sorted tree of entries
//! with parents created implicitly, owned by root, mtime 0, inode numbers in
//! path order. Device nodes are left out on purpose: PID 1 mounts devtmpfs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};

/// Why an image could not be assembled or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The destination path is empty, relative to nothing sensible or climbs
    /// out of the root (`..`).
    #[error("invalid path in image: {0:?}")]
    InvalidPath(String),
    /// Something other than a directory is already at a path that needs to be
    /// a directory (or the other way round).
    #[error("{path} is already in the image as a {existing}")]
    Conflict {
        path: String,
        existing: &'static str,
    },
    /// A host file to copy in could not be read.
    #[error("reading {}", path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// newc stores sizes in 32 bits.
    #[error("{} is {size} bytes; newc cpio holds at most 4 GiB per file", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// A host file changed size while it was being copied.
    #[error("{} changed size while being copied (expected {expected} bytes, got {got})", path.display())]
    SourceChanged {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    /// The archive could not be written.
    #[error("writing cpio archive")]
    Write(#[source] io::Error),
    /// The output file could not be created.
    #[error("creating {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    HostFile(PathBuf),
}

#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Content },
    Symlink { target: String },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Dir { .. } => "directory",
            Node::File { .. } => "file",
            Node::Symlink { .. } => "symlink",
        }
    }
}

/// An initramfs being assembled. Paths are absolute-in-the-guest (`/init`,
/// `/etc/quilt/boot.bin`); a leading `/` is optional. Adding a path twice
/// replaces the earlier entry, so callers can override defaults.
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    // Key: path without the leading '/'. BTreeMap order puts every directory
    // before its contents ("a" < "a/b"), which the kernel's unpacker needs.
    entries: BTreeMap<String, Node>,
}

/// Directories get this mode unless given one.
const DIR_MODE: u32 = 0o755;
/// Permission bits (setuid/setgid/sticky included) taken from callers; the
/// file-type bits are ours.
const PERM_MASK: u32 = 0o7777;

fn normalize(path: &str) -> Result<String, ImageError> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(ImageError::InvalidPath(path.to_owned())),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(ImageError::InvalidPath(path.to_owned()));
    }
    Ok(parts.join("/"))
}

impl Initramfs {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Create the parent directories of `key` (already normalized).
    fn parents(&mut self, key: &str) -> Result<(), ImageError> {
        let mut end = 0;
        while let Some(off) = key.get(end..).and_then(|rest| rest.find('/')) {
            end += off;
            let dir = key.get(..end).unwrap_or(key);
            match self.entries.get(dir) {
                Some(Node::Dir { .. }) => {}
                Some(other) => {
                    return Err(ImageError::Conflict {
                        path: format!("/{dir}"),
                        existing: other.kind(),
                    })
                }
                None => {
                    self.entries
                        .insert(dir.to_owned(), Node::Dir { mode: DIR_MODE });
                }
            }
            end += 1;
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<&mut Self, ImageError> {
        let key = normalize(path)?;
        self.parents(&key)?;
        match (self.entries.get(&key), &node) {
            // Re-adding a directory only updates its mode.
            (Some(Node::Dir { .. }), Node::Dir { .. }) | (None, _) => {}
            (Some(Node::Dir { .. }), _) => {
                let has_children = self
                    .entries
                    .range(format!("{key}/")..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&format!("{key}/")));
                if has_children {
                    return Err(ImageError::Conflict {
                        path: format!("/{key}"),
                        existing: "directory",
                    });
                }
            }
            (Some(_), _) => {}
        }
        self.entries.insert(key, node);
        Ok(self)
    }

    /// A directory with mode 0755 (and its parents).
    pub fn dir(&mut self, path: &str) -> Result<&mut Self, ImageError> {
        self.dir_mode(path, DIR_MODE)
    }

    /// A directory with the given permission bits.
    pub fn dir_mode(&mut self, path: &str, mode: u32) -> Result<&mut Self, ImageError> {
        self.insert(
            path,
            Node::Dir {
                mode: mode & PERM_MASK,
            },
        )
    }

    /// A regular file with the given contents and permission bits.
    pub fn bytes(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<&mut Self, ImageError> {
        self.insert(
            path,
            Node::File {
                mode: mode & PERM_MASK,
                content: Content::Bytes(data.into()),
            },
        )
    }

    /// A regular file copied from the host when the archive is written (so
    /// large files are streamed, not held in memory).
    pub fn file(
        &mut self,
        path: &str,
        source: impl Into<PathBuf>,
        mode: u32,
    ) -> Result<&mut Self, ImageError> {
        self.insert(
            path,
            Node::File {
                mode: mode & PERM_MASK,
                content: Content::HostFile(source.into()),
            },
        )
    }

    /// A symbolic link; `target` is stored verbatim (relative or absolute).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, ImageError> {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// Whether something is at `path`.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|k| self.entries.contains_key(&k))
    }

    /// Guest paths in archive order, with a leading `/`.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.keys().map(|k| format!("/{k}"))
    }

    /// Write the archive (entries then the `TRAILER!!!`) and return the
    /// writer.
    pub fn write_to<W: Write>(&self, mut out: W) -> Result<W, ImageError> {
        for (ino, (name, node)) in (1u32..).zip(&self.entries) {
            let header = Builder::new(name).ino(ino).uid(0).gid(0).mtime(0).nlink(1);
            out = match node {
                Node::Dir { mode } => {
                    let h = header
                        .mode(*mode)
                        .nlink(2)
                        .set_mode_file_type(ModeFileType::Directory);
                    h.write(out, 0).finish().map_err(ImageError::Write)?
                }
                Node::Symlink { target } => {
                    let h = header.mode(0o777).set_mode_file_type(ModeFileType::Symlink);
                    write_data(h, out, target.as_bytes())?
                }
                Node::File { mode, content } => {
                    let h = header.mode(*mode).set_mode_file_type(ModeFileType::Regular);
                    match content {
                        Content::Bytes(data) => write_data(h, out, data)?,
                        Content::HostFile(path) => write_host_file(h, out, path)?,
                    }
                }
            };
        }
        cpio::newc::trailer(out).map_err(ImageError::Write)
    }

    /// Write the tree into the host directory `dir` (which must exist and
    /// be empty): directories, files with their modes, symlinks. For
    /// filesystem images made from the same description as the archive
    /// (`mksquashfs dir ... -all-root -all-time`); ownership and times are
    /// left to that tool.
    pub fn write_tree(&self, dir: &Path) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let create = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::Create { path, source }
        };
        for (name, node) in &self.entries {
            let at = dir.join(name);
            match node {
                Node::Dir { .. } => std::fs::create_dir_all(&at).map_err(create(&at))?,
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &at).map_err(create(&at))?
                }
                Node::File { mode, content } => {
                    match content {
                        Content::Bytes(data) => std::fs::write(&at, data).map_err(create(&at))?,
                        Content::HostFile(src) => {
                            std::fs::copy(src, &at).map_err(|source| ImageError::ReadSource {
                                path: src.clone(),
                                source,
                            })?;
                        }
                    }
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode))
                        .map_err(create(&at))?;
                }
            }
        }
        // Directory modes last (children first), so a read-only directory
        // is still filled.
        for (name, node) in self.entries.iter().rev() {
            if let Node::Dir { mode } = node {
                let at = dir.join(name);
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode))
                    .map_err(create(&at))?;
            }
        }
        Ok(())
    }

    /// Write the archive to a file at `path`.
    pub fn write_file(&self, path: &Path) -> Result<(), ImageError> {
        let file = File::create(path).map_err(|source| ImageError::Create {
            path: path.to_owned(),
            source,
        })?;
        let out = self.write_to(BufWriter::new(file))?;
        out.into_inner()
            .map_err(|e| ImageError::Write(e.into_error()))?
            .sync_all()
            .map_err(ImageError::Write)
    }
}

fn write_data<W: Write>(header: Builder, out: W, data: &[u8]) -> Result<W, ImageError> {
    let size = u32::try_from(data.len()).map_err(|_| ImageError::TooLarge {
        path: PathBuf::from("<in-memory>"),
        size: data.len() as u64,
    })?;
    let mut w = header.write(out, size);
    w.write_all(data).map_err(ImageError::Write)?;
    w.finish().map_err(ImageError::Write)
}

fn write_host_file<W: Write>(header: Builder, out: W, path: &Path) -> Result<W, ImageError> {
    let read_err = |source| ImageError::ReadSource {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let size = u32::try_from(len).map_err(|_| ImageError::TooLarge {
        path: path.to_owned(),
        size: len,
    })?;
    let mut w = header.write(out, size);
    // `take` guards against a file that grew; a short copy is caught below
    // (the cpio crate would otherwise silently skip the padding).
    let copied = io::copy(&mut file.take(len), &mut w).map_err(ImageError::Write)?;
    if copied != len {
        return Err(ImageError::SourceChanged {
            path: path.to_owned(),
            expected: len,
            got: copied,
        });
    }
    w.finish().map_err(ImageError::Write)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};

    /// A fresh directory per call: tests run in parallel in one process,
    /// and a name shared between them let one test delete another's files.
    fn scratch(name: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("quilt-imagekit-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> (Initramfs, PathBuf) {
        let dir = scratch("src");
        let host = dir.join("host.bin");
        // Odd sizes exercise data padding.
        std::fs::write(&host, vec![0xa5u8; 4099]).unwrap();
        let mut img = Initramfs::new();
        img.dir("/dev")
            .unwrap()
            .dir_mode("/tmp", 0o1777)
            .unwrap()
            .bytes("/init", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)
            .unwrap()
            .bytes("/etc/quilt/boot.bin", vec![1u8, 2, 3], 0o644)
            .unwrap()
            .bytes("/empty", Vec::new(), 0o600)
            .unwrap()
            .file("/usr/lib/x", &host, 0o640)
            .unwrap()
            .symlink("/bin/sh", "busybox")
            .unwrap();
        (img, host)
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let (img, _) = sample();
        let paths: Vec<_> = img.paths().collect();
        assert_eq!(
            paths,
            [
                "/bin",
                "/bin/sh",
                "/dev",
                "/empty",
                "/etc",
                "/etc/quilt",
                "/etc/quilt/boot.bin",
                "/init",
                "/tmp",
                "/usr",
                "/usr/lib",
                "/usr/lib/x"
            ]
        );
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() {
        let mut img = Initramfs::new();
        assert!(matches!(img.dir("/"), Err(ImageError::InvalidPath(_))));
        assert!(matches!(
            img.dir("/a/../b"),
            Err(ImageError::InvalidPath(_))
        ));
        img.bytes("/f", b"x".to_vec(), 0o644).unwrap();
        assert!(matches!(
            img.bytes("/f/g", b"x".to_vec(), 0o644),
            Err(ImageError::Conflict { .. })
        ));
        img.bytes("/d/g", b"x".to_vec(), 0o644).unwrap();
        assert!(matches!(
            img.symlink("/d", "x"),
            Err(ImageError::Conflict { .. })
        ));
        // Replacing a file is allowed (override a default).
        img.bytes("/f", b"y".to_vec(), 0o600).unwrap();
    }

    #[test]
    fn output_is_deterministic_and_4_byte_aligned() {
        let (img, _) = sample();
        let a = img.write_to(Vec::new()).unwrap();
        let b = img.clone().write_to(Vec::new()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"070701"));
    }

    #[test]
    fn round_trips_through_the_cpio_crate_reader() {
        let (img, _) = sample();
        let mut data = std::io::Cursor::new(img.write_to(Vec::new()).unwrap());
        let mut seen = Vec::new();
        loop {
            let r = cpio::NewcReader::new(data).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            seen.push((e.name().to_owned(), e.mode(), e.ino(), e.mtime()));
            data = r.skip().unwrap();
        }
        assert!(seen.contains(&("init".into(), 0o100755, 8, 0)));
        assert!(seen.contains(&("tmp".into(), 0o41777, 9, 0)));
        assert!(seen.contains(&("bin/sh".into(), 0o120777, 2, 0)));
    }

    /// GNU cpio, the reference implementation, lists and unpacks it with the
    /// same contents and modes.
    #[test]
    fn gnu_cpio_extracts_contents_and_modes() {
        if Command::new("cpio").arg("--version").output().is_err() {
            eprintln!("SKIPPED: gnu cpio not installed (run tools/setup.sh)");
            return;
        }
        let (img, host) = sample();
        let dir = scratch("extract");
        let archive = dir.join("a.cpio");
        img.write_file(&archive).unwrap();

        let list = Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(list.status.success());
        let listed: Vec<_> = String::from_utf8(list.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(listed.len(), 12, "{listed:?}");

        let out = dir.join("root");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .current_dir(&out)
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success());

        let mode = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap().mode();
        assert_eq!(
            std::fs::read(out.join("init")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(mode("init") & 0o7777, 0o755);
        assert_eq!(mode("etc/quilt/boot.bin") & 0o7777, 0o644);
        assert_eq!(mode("usr/lib/x") & 0o7777, 0o640);
        assert_eq!(mode("tmp") & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read(out.join("usr/lib/x")).unwrap(),
            std::fs::read(&host).unwrap()
        );
        assert_eq!(std::fs::read(out.join("empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert!(std::fs::metadata(out.join("dev")).unwrap().is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
