//! Installs from a USB stick (`[usb]` in the boot config): quilt-init saw
//! the device appear and starts this job for it. The block device is made
//! read-only at the block layer, mounted read-only, nosuid, nodev and
//! noexec with the first configured filesystem type that takes it, and
//! every `*.qb` in its top directory (at most [`MAX_FILES`]) is offered to
//! the store, as `quilt install` would: trust store, signatures, version
//! and rollback checks. Each result is one event line; then the device is
//! unmounted (detached if busy).
//!
//! A device pulled mid-install fails that install with an I/O error; the
//! store's own crash safety leaves it as it was. A device that stops
//! answering inside one `mount` or `read` stalls this process only:
//! quilt-init kills it at its deadline.

use crate::board::{Board, Refusal};
use crate::{catalog, event, jobs, out};
use quilt_proto::installer::Report;
use rustix::fd::AsRawFd;
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::Path;
use std::time::Instant;

/// Most `*.qb` files installed from one device.
const MAX_FILES: usize = 64;
/// Longest file name considered, in bytes.
const MAX_NAME: usize = 128;
/// Most directory entries looked at in the top directory.
const MAX_ENTRIES: usize = 4096;
/// No new bundle is started this long after the device was mounted.
const BUDGET_MS: u128 = 120_000;
/// The device node is waited for this many times this long.
const NODE_TRIES: u32 = 25;
const NODE_WAIT_MS: u64 = 20;
/// `BLKROSET` (`_IO(0x12, 93)` in `<linux/fs.h>`).
const BLKROSET: libc::c_ulong = 0x125d;

/// What to do with a directory entry of the stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// A bundle to offer.
    Bundle,
    /// Ends in `.qb` but its name is over [`MAX_NAME`] bytes: skipped.
    TooLong,
    /// Not a bundle (or a hidden file: `._x.qb` is macOS metadata).
    Skip,
}

/// Pick by name: `*.qb` in any case, not hidden, at most [`MAX_NAME`] bytes.
pub fn pick(name: &[u8]) -> Pick {
    let is_qb = name.len() > 3
        && name
            .get(name.len() - 3..)
            .is_some_and(|e| e.eq_ignore_ascii_case(b".qb"));
    if !is_qb || name.first() == Some(&b'.') {
        Pick::Skip
    } else if name.len() > MAX_NAME {
        Pick::TooLong
    } else {
        Pick::Bundle
    }
}

/// A file name as a log field: `[A-Za-z0-9._+-]` kept, anything else
/// (spaces, quotes, `=`, non-ASCII) becomes `_`, at most [`MAX_NAME`].
pub fn shown(name: &[u8]) -> String {
    name.iter()
        .take(MAX_NAME)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect()
}

/// Mount `dev` (a name under /dev; `disk`: a whole disk), install its
/// bundles, unmount it.
pub fn stick(board: &Board, dev: &str, disk: bool) -> Result<Vec<Report>, Refusal> {
    let Some(cfg) = board.cfg.usb.as_ref() else {
        return Err(Refusal::failed("this board has no [usb]"));
    };
    let (mut store, _lock) = board.store().inspect_err(|r| {
        event!(
            "event=usb-skipped dev={} reason=\"{}\"",
            dev,
            out::unquoted(&r.message)
        );
    })?;
    if disk && has_partitions(dev) {
        // Its partitions come as events of their own.
        event!("event=usb-skipped dev={} reason=partitioned", dev);
        return Ok(Vec::new());
    }
    let mountpoint = cfg.mountpoint.as_str();
    // A mount an earlier job could not undo (a device still busy).
    let _ = rustix::mount::unmount(mountpoint, UnmountFlags::DETACH);
    let node = format!("/dev/{dev}");
    let Some(fstype) = mount(&node, dev, mountpoint, &cfg.fstypes) else {
        return Ok(Vec::new());
    };
    let started = Instant::now();
    event!(
        "event=usb-mounted dev={} fstype={} mountpoint={}",
        dev,
        fstype,
        mountpoint
    );
    let (files, over) = match bundle_files(Path::new(mountpoint)) {
        // FAT reads a directory block it cannot get as the directory's
        // end: a stick pulled just after its mount lists as empty, with no
        // error. Gone by now, it is not an empty stick.
        Ok((files, _)) if files.is_empty() && !present(dev) => {
            event!(
                "event=usb-unreadable dev={} reason=\"the stick went away before its files were read; plug it in again\"",
                dev
            );
            (Vec::new(), 0)
        }
        Ok(listed) => listed,
        Err(e) => {
            // Pulled between the mount and the listing, or a filesystem
            // that fails to read: nothing was offered, and the user hears
            // why rather than seeing an empty stick.
            event!(
                "event=usb-unreadable dev={} reason=\"reading its top directory failed: {}; plug it in again, or check it on a computer\"",
                dev,
                out::unquoted(&e.to_string())
            );
            (Vec::new(), 0)
        }
    };
    let (mut new, mut refused, mut already) = (0u32, 0u32, 0u32);
    let mut reports = Vec::new();
    for (i, file) in files.iter().enumerate() {
        use std::os::unix::ffi::OsStrExt;
        let name = shown(file.as_bytes());
        if started.elapsed().as_millis() > BUDGET_MS {
            event!(
                "event=usb-stopped dev={} left={} reason=\"{} s budget spent; plug it again for the rest\"",
                dev,
                files.len() - i,
                BUDGET_MS / 1000
            );
            break;
        }
        let path = Path::new(mountpoint).join(file);
        let r = std::fs::File::open(&path)
            .map_err(|e| Refusal::failed(format!("cannot open {}: {e}", path.display())))
            .and_then(|f| jobs::install_from(board, &mut store, f, &path.display().to_string()));
        match r {
            Ok(Report::Installed {
                name: bundle,
                version,
                chunks,
                chunks_written,
                already_installed,
            }) => {
                event!(
                    "event=usb-install dev={} file={} name={} version={} already={} chunks_written={}",
                    dev,
                    name,
                    bundle,
                    version,
                    u8::from(already_installed),
                    chunks_written
                );
                if already_installed {
                    already += 1;
                } else {
                    new += 1;
                }
                reports.push(Report::Installed {
                    name: bundle,
                    version,
                    chunks,
                    chunks_written,
                    already_installed,
                });
            }
            Ok(_) => {}
            Err(why) => {
                refused += 1;
                event!(
                    "event=usb-refused dev={} file={} reason=\"{}\"",
                    dev,
                    name,
                    out::unquoted(&why.message)
                );
                // Counted by PID 1; a stick has no client to answer.
                reports.push(Report::Refused {
                    code: why.code,
                    reason: why.reason,
                    message: why.message,
                });
            }
        }
    }
    if over > 0 {
        event!(
            "event=usb-skipped dev={} files={} reason=\"only regular files, the first {} .qb by name with names of at most {} bytes, are read\"",
            dev,
            over,
            MAX_FILES,
            MAX_NAME
        );
    }
    catalog::write(&store);
    let unmount = match rustix::mount::unmount(mountpoint, UnmountFlags::empty()) {
        Ok(()) => "clean",
        Err(_) => match rustix::mount::unmount(mountpoint, UnmountFlags::DETACH) {
            Ok(()) => "detached",
            Err(_) => "failed",
        },
    };
    event!(
        "event=usb-done dev={} installed={} already={} refused={} unmount={} ms={}",
        dev,
        new,
        already,
        refused,
        unmount,
        started.elapsed().as_millis()
    );
    Ok(reports)
}

/// Whether the kernel still has block device `dev` (its sysfs entry goes
/// when the stick is pulled, mounted or not).
fn present(dev: &str) -> bool {
    Path::new("/sys/class/block").join(dev).exists()
}

/// Mount the node read-only with the first type that takes it.
fn mount<'a>(
    node: &str,
    dev: &str,
    mountpoint: &str,
    fstypes: &'a [quilt_config::FsType],
) -> Option<&'a str> {
    let mut tries = 0;
    while !Path::new(node).exists() {
        tries += 1;
        if tries > NODE_TRIES {
            event!(
                "event=usb-skipped dev={} reason=\"no {} after {} ms\"",
                dev,
                node,
                u64::from(NODE_TRIES) * NODE_WAIT_MS
            );
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(NODE_WAIT_MS));
    }
    read_only(node);
    let _ = std::fs::create_dir_all(mountpoint);
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mut last = rustix::io::Errno::NODEV;
    for t in fstypes {
        match rustix::mount::mount(node, mountpoint, t.as_str(), flags, Some(c"")) {
            Ok(()) => return Some(t.as_str()),
            Err(e) => last = e,
        }
        // ENODEV: this kernel has no such filesystem (its module is not
        // loaded); anything else: not this filesystem.
        if last == rustix::io::Errno::NODEV {
            event!("event=usb-fstype-missing dev={} fstype={}", dev, t);
        }
    }
    event!(
        "event=usb-skipped dev={} reason=\"no filesystem of the configured types (last error: {})\"",
        dev,
        last
    );
    None
}

/// Make the block device read-only, so nothing (an ext4 journal replay
/// included) ever writes to the stick. Best effort: the mount is
/// read-only anyway.
fn read_only(node: &str) {
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        node,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        return;
    };
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open block device; BLKROSET reads one int at `&one`.
    let _ = unsafe { libc::ioctl(fd.as_raw_fd(), BLKROSET as _, &one) };
}

/// Whether a whole disk has partitions
/// (`/sys/class/block/<disk>/<partition>/partition`).
fn has_partitions(dev: &str) -> bool {
    let dir = format!("/sys/class/block/{dev}");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return false;
    };
    rd.take(256).flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(dev) && e.path().join("partition").exists()
    })
}

/// The `*.qb` names of the top directory, the first [`MAX_FILES`] by
/// name (in order), and how many more were passed over: past the limit,
/// with names over [`MAX_NAME`] bytes, or not regular files (a symlink
/// is never followed off the stick). A directory that cannot be read,
/// at its opening or at any entry, is an error: a partial listing would
/// pass bundles over without a word.
fn bundle_files(dir: &Path) -> std::io::Result<(Vec<std::ffi::OsString>, usize)> {
    use std::os::unix::ffi::OsStrExt;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    let mut over = 0;
    for e in std::fs::read_dir(dir)?.take(MAX_ENTRIES) {
        let e = e?;
        let name = e.file_name();
        match pick(name.as_bytes()) {
            Pick::Skip => {}
            Pick::TooLong => over += 1,
            Pick::Bundle if !e.file_type().is_ok_and(|t| t.is_file()) => over += 1,
            Pick::Bundle => {
                // Sorted insertion keeps the first MAX_FILES by name.
                let at = names.partition_point(|n| n.as_bytes() < name.as_bytes());
                if at < MAX_FILES {
                    names.insert(at, name);
                }
                if names.len() > MAX_FILES || at >= MAX_FILES {
                    names.truncate(MAX_FILES);
                    over += 1;
                }
            }
        }
    }
    Ok((names, over))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_names() {
        assert_eq!(pick(b"tool.qb"), Pick::Bundle);
        assert_eq!(pick(b"TOOL.QB"), Pick::Bundle);
        assert_eq!(pick(b"my tool (2).qb"), Pick::Bundle);
        assert_eq!(pick(b".qb"), Pick::Skip);
        assert_eq!(pick(b"._tool.qb"), Pick::Skip);
        assert_eq!(pick(b"tool.qb.txt"), Pick::Skip);
        assert_eq!(pick(b"README"), Pick::Skip);
        let mut long = vec![b'x'; MAX_NAME - 3];
        long.extend_from_slice(b".qb");
        assert_eq!(pick(&long), Pick::Bundle);
        long.insert(0, b'x');
        assert_eq!(pick(&long), Pick::TooLong);
    }

    #[test]
    fn names_are_safe_in_log_fields() {
        assert_eq!(shown(b"good-1.2_x+y.qb").as_str(), "good-1.2_x+y.qb");
        assert_eq!(shown(b"a b\"c=d\n\xc3\xa9.qb").as_str(), "a_b_c_d___.qb");
        assert_eq!(shown(&[b'x'; 300]).len(), MAX_NAME);
        assert_eq!(out::unquoted("say \"no\""), "say 'no'");
    }

    #[test]
    fn the_top_directory_is_read_in_bounds() {
        let dir = std::env::temp_dir().join(format!("quilt-usb-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.qb")).unwrap();
        // Written in reverse so the listing has to sort.
        for i in (0..MAX_FILES + 3).rev() {
            std::fs::write(dir.join(format!("b{i:03}.qb")), b"x").unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.join(format!("{}.qb", "y".repeat(MAX_NAME))), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("a-link.qb")).unwrap();
        let (files, over) = bundle_files(&dir).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.to_string_lossy().into()).collect();
        let want: Vec<String> = (0..MAX_FILES).map(|i| format!("b{i:03}.qb")).collect();
        assert_eq!(names, want);
        // Three b06x past the limit, the directory, the symlink (never
        // followed; it would sort first) and the long name.
        assert_eq!(over, 6);
        std::fs::remove_dir_all(&dir).unwrap();
        // Gone (a stick pulled after its mount): an error, not an empty
        // stick.
        assert!(bundle_files(&dir).is_err());
    }
}
