//! Air-gapped installs from USB sticks (`[usb]` in the boot config).
//!
//! PID 1 listens for the kernel's uevents on a non-blocking netlink socket
//! in its event loop. When a block device on a USB bus appears (a
//! partition, or a whole disk without partitions), it is made read-only at
//! the block layer, mounted read-only, nosuid, nodev and noexec with the
//! first configured filesystem type that takes it, and every `*.qb` in its
//! top directory (at most [`MAX_FILES`]) is offered to the store through
//! [`Tools::install`], the path `quilt install` takes: trust store,
//! signatures, version and rollback checks. Each result is one log line;
//! then the device is unmounted (detached if busy).
//!
//! The work is done synchronously in the loop turn that saw the device, as
//! the serial receiver does, with bounds on what a stick can make PID 1 do:
//! files, name lengths, directory entries and a time budget, with the
//! watchdog fed between bundles. A device pulled mid-install fails that
//! install with an I/O error; the store's own crash safety leaves it as it
//! was. What no bound here covers is a device that stops answering inside
//! one `mount` or `read`: that waits for the kernel's SCSI timeouts.

use crate::bundles::Tools;
use crate::clock::Millis;
use crate::event;
use crate::uevent::{self, Action, Uevent};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::net::{netlink, AddressFamily, RecvFlags, SocketFlags, SocketType};
use std::path::Path;

/// Most `*.qb` files installed from one device.
const MAX_FILES: usize = 64;
/// Longest file name considered, in bytes.
const MAX_NAME: usize = 128;
/// Most directory entries looked at in the top directory.
const MAX_ENTRIES: usize = 4096;
/// Most devices queued from one wake-up (a stick has a disk and a few
/// partitions).
const MAX_QUEUE: usize = 8;
/// Most messages read per wake-up; the rest wait for the next turn.
const MAX_MESSAGES: usize = 128;
/// No new bundle is started this long after the device was mounted.
const BUDGET_MS: u64 = 120_000;
/// The device node is waited for this many times this long.
const NODE_TRIES: u32 = 25;
const NODE_WAIT_MS: u64 = 20;
/// Socket receive buffer: a hot-plug burst while a stick is being read.
const RCVBUF: usize = 1 << 20;
/// `BLKROSET` (`_IO(0x12, 93)` in `<linux/fs.h>`).
const BLKROSET: libc::c_ulong = 0x125d;

type DevName = heapless::String<32>;

/// A block device worth a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Below `/dev` (and `/sys/class/block`).
    pub name: DevName,
    /// A whole disk (it may carry partitions instead of a filesystem).
    pub disk: bool,
}

/// A block device on a USB bus with a safe node name, from an event.
pub fn candidate(ev: &Uevent<'_>) -> Option<Device> {
    if ev.subsystem != Some("block") || !uevent::on_usb(ev.devpath) {
        return None;
    }
    let disk = match ev.devtype {
        Some("disk") => true,
        Some("partition") => false,
        _ => return None,
    };
    let name = ev.devname.filter(|n| uevent::safe_devname(n))?;
    Some(Device {
        name: DevName::try_from(name).ok()?,
        disk,
    })
}

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
pub fn shown(name: &[u8]) -> heapless::String<MAX_NAME> {
    let mut s = heapless::String::new();
    for &b in name.iter().take(MAX_NAME) {
        let c = if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-') {
            char::from(b)
        } else {
            '_'
        };
        let _ = s.push(c);
    }
    s
}

/// A reason for a `reason="…"` field: no double quotes inside.
fn unquoted(s: &str) -> String {
    s.replace('"', "'")
}

/// The uevent socket and what the config asks.
pub struct Usb {
    sock: OwnedFd,
    fstypes: heapless::Vec<quilt_config::FsType, { quilt_config::MAX_FSTYPES }>,
    mountpoint: quilt_config::Path,
    /// A device whose mount could be neither unmounted nor detached.
    held: Option<DevName>,
}

impl Usb {
    /// Open the kernel's uevent multicast group, non-blocking.
    pub fn open(cfg: &quilt_config::Usb) -> std::io::Result<Usb> {
        let sock = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Group 1: the kernel's own events (udev re-broadcasts on 2).
        rustix::net::bind(&sock, &netlink::SocketAddrNetlink::new(0, 1))?;
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, RCVBUF).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, RCVBUF);
        }
        let mut types = heapless::String::<80>::new();
        for t in &cfg.fstypes {
            if !types.is_empty() {
                let _ = types.push(',');
            }
            let _ = types.push_str(t);
        }
        event!(
            "event=usb-listening fstypes={} mountpoint={}",
            types,
            cfg.mountpoint
        );
        Ok(Usb {
            sock,
            fstypes: cfg.fstypes.clone(),
            mountpoint: cfg.mountpoint.clone(),
            held: None,
        })
    }

    /// The fd the loop watches.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The socket is readable: read what the kernel said, then mount and
    /// install from each new device. `feed` is called between bundles (the
    /// watchdog). Returns the names of bundles newly installed.
    #[inline(never)]
    pub fn on_readable(
        &mut self,
        mut tools: Option<&mut Tools>,
        feed: &mut dyn FnMut(),
    ) -> Vec<String> {
        let mut queue: heapless::Vec<Device, MAX_QUEUE> = heapless::Vec::new();
        let mut buf = [0u8; uevent::MAX_MESSAGE];
        for _ in 0..MAX_MESSAGES {
            // TRUNC: `n` is the datagram's real length, so a cut one is seen.
            let (n, from) = match rustix::net::recvfrom(&self.sock, &mut buf, RecvFlags::TRUNC) {
                Ok((_, n, from)) => (n, from),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::NOBUFS) => {
                    event!("event=usb-uevents-lost reason=\"socket buffer overrun\"");
                    continue;
                }
                Err(_) => break,
            };
            // Only the kernel (port 0) speaks for devices.
            let kernel = from
                .and_then(|a| netlink::SocketAddrNetlink::try_from(a).ok())
                .is_some_and(|a| a.pid() == 0);
            let Some(msg) = buf.get(..n).filter(|_| kernel && n <= buf.len()) else {
                continue;
            };
            let Some(ev) = uevent::parse(msg) else {
                continue;
            };
            let Some(dev) = candidate(&ev) else {
                continue;
            };
            match ev.action {
                Action::Add => {
                    if queue.iter().all(|d| d.name != dev.name) {
                        if let Err(d) = queue.push(dev) {
                            event!("event=usb-skipped dev={} reason=\"too many devices at once; plug it again\"", d.name);
                        }
                    }
                }
                Action::Remove => {
                    queue.retain(|d| d.name != dev.name);
                    self.removed(&dev.name);
                }
                Action::Other => {}
            }
        }
        let mut installed = Vec::new();
        for dev in &queue {
            self.install_from(dev, tools.as_deref_mut(), feed, &mut installed);
        }
        installed
    }

    fn removed(&mut self, name: &str) {
        event!("event=usb-removed dev={}", name);
        if self.held.as_deref() == Some(name) {
            let _ = rustix::mount::unmount(self.mountpoint.as_str(), UnmountFlags::DETACH);
            self.held = None;
        }
    }

    /// Mount `dev`, install its bundles, unmount it.
    #[inline(never)]
    fn install_from(
        &mut self,
        dev: &Device,
        tools: Option<&mut Tools>,
        feed: &mut dyn FnMut(),
        installed: &mut Vec<String>,
    ) {
        let Some(tools) = tools else {
            event!(
                "event=usb-skipped dev={} reason=\"this board has no trust store (/etc/quilt/trust), so no bundles\"",
                dev.name
            );
            return;
        };
        if dev.disk && has_partitions(dev) {
            // Its partitions come as events of their own.
            event!("event=usb-skipped dev={} reason=partitioned", dev.name);
            return;
        }
        if self.held.is_some() {
            event!(
                "event=usb-skipped dev={} reason=\"{} is still in use by an earlier device\"",
                dev.name,
                self.mountpoint
            );
            return;
        }
        let node = format!("/dev/{}", dev.name);
        let Some(fstype) = self.mount(&node, dev) else {
            return;
        };
        let started = Millis::now();
        event!(
            "event=usb-mounted dev={} fstype={} mountpoint={}",
            dev.name,
            fstype,
            self.mountpoint
        );
        let (files, over) = bundle_files(Path::new(self.mountpoint.as_str()));
        let (mut new, mut refused, mut already) = (0u32, 0u32, 0u32);
        for (i, file) in files.iter().enumerate() {
            use std::os::unix::ffi::OsStrExt;
            let name = shown(file.as_bytes());
            feed();
            if Millis::now().since(started) > BUDGET_MS {
                event!(
                    "event=usb-stopped dev={} left={} reason=\"{} s budget spent; plug it again for the rest\"",
                    dev.name,
                    files.len() - i,
                    BUDGET_MS / 1000
                );
                break;
            }
            match tools.install(&Path::new(self.mountpoint.as_str()).join(file)) {
                Ok(quilt_proto::Reply::Installed {
                    name: bundle,
                    version,
                    chunks_written,
                    already_installed,
                    ..
                }) => {
                    event!(
                        "event=usb-install dev={} file={} name={} version={} already={} chunks_written={}",
                        dev.name,
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
                        installed.push(bundle);
                    }
                }
                Ok(_) => {}
                Err(why) => {
                    refused += 1;
                    event!(
                        "event=usb-refused dev={} file={} reason=\"{}\"",
                        dev.name,
                        name,
                        unquoted(&why)
                    );
                }
            }
        }
        if over > 0 {
            event!(
                "event=usb-skipped dev={} files={} reason=\"only regular files, the first {} .qb by name with names of at most {} bytes, are read\"",
                dev.name,
                over,
                MAX_FILES,
                MAX_NAME
            );
        }
        feed();
        let unmount = match rustix::mount::unmount(self.mountpoint.as_str(), UnmountFlags::empty())
        {
            Ok(()) => "clean",
            Err(_) => {
                match rustix::mount::unmount(self.mountpoint.as_str(), UnmountFlags::DETACH) {
                    Ok(()) => "detached",
                    Err(_) => {
                        self.held = Some(dev.name.clone());
                        "failed"
                    }
                }
            }
        };
        event!(
            "event=usb-done dev={} installed={} already={} refused={} unmount={} ms={}",
            dev.name,
            new,
            already,
            refused,
            unmount,
            Millis::now().since(started)
        );
    }

    /// Mount the node read-only with the first type that takes it.
    #[inline(never)]
    fn mount(&self, node: &str, dev: &Device) -> Option<&str> {
        let mut tries = 0;
        while !Path::new(node).exists() {
            tries += 1;
            if tries > NODE_TRIES {
                event!(
                    "event=usb-skipped dev={} reason=\"no {} after {} ms\"",
                    dev.name,
                    node,
                    u64::from(NODE_TRIES) * NODE_WAIT_MS
                );
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(NODE_WAIT_MS));
        }
        read_only(node);
        let _ = std::fs::create_dir_all(self.mountpoint.as_str());
        let flags =
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        let mut last = rustix::io::Errno::NODEV;
        for t in &self.fstypes {
            match rustix::mount::mount(node, self.mountpoint.as_str(), t.as_str(), flags, Some(c""))
            {
                Ok(()) => return Some(t.as_str()),
                Err(e) => last = e,
            }
            // ENODEV: this kernel has no such filesystem (its module is
            // not loaded); anything else: not this filesystem.
            if last == rustix::io::Errno::NODEV {
                event!("event=usb-fstype-missing dev={} fstype={}", dev.name, t);
            }
        }
        event!(
            "event=usb-skipped dev={} reason=\"no filesystem of the configured types (last error: {})\"",
            dev.name,
            last
        );
        None
    }
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
fn has_partitions(dev: &Device) -> bool {
    let dir = format!("/sys/class/block/{}", dev.name);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return false;
    };
    rd.take(256).flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(dev.name.as_str())
            && e.path().join("partition").exists()
    })
}

/// The `*.qb` names of the top directory, the first [`MAX_FILES`] by
/// name (in order), and how many more were passed over: past the limit,
/// with names over [`MAX_NAME`] bytes, or not regular files (a symlink
/// is never followed off the stick).
fn bundle_files(dir: &Path) -> (Vec<std::ffi::OsString>, usize) {
    use std::os::unix::ffi::OsStrExt;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    let mut over = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (names, over);
    };
    for e in rd.take(MAX_ENTRIES).flatten() {
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
    (names, over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(devpath: &'a str, devtype: &'a str, devname: &'a str) -> Uevent<'a> {
        Uevent {
            action: Action::Add,
            devpath,
            subsystem: Some("block"),
            devname: Some(devname),
            devtype: Some(devtype),
        }
    }

    const STICK: &str =
        "/devices/pci0000:00/0000:00:01.0/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0/block/sda";

    #[test]
    fn usb_block_devices_are_candidates() {
        let d = candidate(&ev(STICK, "disk", "sda")).unwrap();
        assert!(d.disk && d.name == "sda");
        let part = format!("{STICK}/sda1");
        let d = candidate(&ev(&part, "partition", "sda1")).unwrap();
        assert!(!d.disk && d.name == "sda1");
    }

    #[test]
    fn other_devices_are_not() {
        // A virtio disk (the board's own storage) is never touched.
        assert_eq!(
            candidate(&ev(
                "/devices/pci0000:00/0000:00:04.0/virtio1/block/vda",
                "disk",
                "vda"
            )),
            None
        );
        // Not a block device, no type, an unsafe node name.
        let mut e = ev(STICK, "disk", "sda");
        e.subsystem = Some("scsi_disk");
        assert_eq!(candidate(&e), None);
        assert_eq!(candidate(&ev(STICK, "usb_device", "sda")), None);
        assert_eq!(candidate(&ev(STICK, "disk", "../mem")), None);
        let mut e = ev(STICK, "disk", "sda");
        e.devname = None;
        assert_eq!(candidate(&e), None);
    }

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
        assert_eq!(unquoted("say \"no\""), "say 'no'");
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
        let (files, over) = bundle_files(&dir);
        let names: Vec<String> = files.iter().map(|f| f.to_string_lossy().into()).collect();
        let want: Vec<String> = (0..MAX_FILES).map(|i| format!("b{i:03}.qb")).collect();
        assert_eq!(names, want);
        // Three b06x past the limit, the directory, the symlink (never
        // followed; it would sort first) and the long name.
        assert_eq!(over, 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
