//! The early filesystems every board needs, and taking them down again.

use crate::event;
use rustix::fs::Mode;
use rustix::mount::{mount, mount_remount, unmount, MountFlags, UnmountFlags};

/// One early mount: source, target, type, flags, data.
struct Early {
    src: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static core::ffi::CStr,
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// In mount order: /dev before /dev/pts, /sys before its cgroup2.
const EARLY: &[Early] = &[
    Early {
        src: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: c"",
    },
    Early {
        src: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: c"",
    },
    // Debian's kernel has DEVTMPFS_MOUNT off: init mounts it.
    Early {
        src: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: c"mode=0755",
    },
    Early {
        src: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: c"gid=5,mode=0620,ptmxmode=0666",
    },
    Early {
        src: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: c"mode=1777",
    },
    Early {
        src: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: c"mode=0755",
    },
    Early {
        src: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: c"mode=1777",
    },
    // nsdelegate: a container's cgroup namespace is a delegation boundary.
    Early {
        src: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: c"nsdelegate",
    },
];

/// Mount the early filesystems. A failure is logged and boot goes on: a
/// board with no /dev/pts is degraded, not dead. Returns how many failed.
pub fn mount_early() -> usize {
    let mut failed = 0;
    for m in EARLY {
        let _ = rustix::fs::mkdir(m.target, Mode::from_raw_mode(0o755));
        match mount(m.src, m.target, m.fstype, m.flags, Some(m.data)) {
            Ok(()) => {}
            // Already there (e.g. the kernel mounted devtmpfs itself).
            Err(rustix::io::Errno::BUSY) => {}
            Err(e) => {
                failed += 1;
                event!(
                    "event=mount-failed target={} fstype={} error={}",
                    m.target,
                    m.fstype,
                    e
                );
            }
        }
    }
    failed
}

/// Most mounts unwound at shutdown.
const MAX_MOUNTS: usize = 64;

/// Unmount everything but the root, deepest first, then make the root
/// read-only. Busy mounts are detached so the kernel finishes them lazily;
/// the `sync` before this has already made the data durable.
pub fn unmount_all() {
    let mut targets: heapless::Vec<heapless::String<128>, MAX_MOUNTS> = heapless::Vec::new();
    if let Ok(text) = read_bounded("/proc/self/mounts") {
        for line in text.lines() {
            let Some(target) = line.split_ascii_whitespace().nth(1) else {
                continue;
            };
            if target == "/" {
                continue;
            }
            let mut t = heapless::String::new();
            if t.push_str(target).is_ok() {
                let _ = targets.push(t);
            }
        }
    }
    for t in targets.iter().rev() {
        // /proc, /sys and /dev are pseudo filesystems; unmounting them only
        // costs time, and /dev holds the console we are still writing to.
        if matches!(t.as_str(), "/proc" | "/sys" | "/dev") {
            continue;
        }
        if unmount(t.as_str(), UnmountFlags::empty()).is_err() {
            let _ = unmount(t.as_str(), UnmountFlags::DETACH);
        }
    }
    // An initramfs root cannot be remounted read-only; that is fine.
    let _ = mount_remount("/", MountFlags::RDONLY, "");
}

/// Read a small kernel file into a fixed buffer (never grows).
pub fn read_bounded(path: &str) -> std::io::Result<heapless::String<8192>> {
    let mut buf = [0u8; 8192];
    let n = read_into(path, &mut buf)?;
    let mut s = heapless::String::new();
    let text = core::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("");
    let _ = s.push_str(text);
    Ok(s)
}

/// Read up to `buf.len()` bytes of a file.
pub fn read_into(path: &str, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(buf.get_mut(n..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
