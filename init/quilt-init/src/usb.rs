//! USB sticks (`[usb]` in the boot config): PID 1 listens for the
//! kernel's uevents on a non-blocking netlink socket in its event loop and
//! picks the block devices on a USB bus (a partition, or a whole disk);
//! each becomes a job for the installer (installs.rs), which mounts it
//! read-only, offers its `*.qb` files to the store and unmounts it
//! (init/installer/src/usb.rs). PID 1 itself never mounts or reads a
//! stick.

use crate::event;
use crate::uevent::{self, Action, Uevent};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{netlink, AddressFamily, RecvFlags, SocketFlags, SocketType};

/// Most devices queued from one wake-up (a stick has a disk and a few
/// partitions).
const MAX_QUEUE: usize = 8;
/// Most messages read per wake-up; the rest wait for the next turn.
const MAX_MESSAGES: usize = 128;
/// Socket receive buffer: a hot-plug burst while a stick is being read.
const RCVBUF: usize = 1 << 20;

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

/// The uevent socket and what the config asks.
pub struct Usb {
    sock: OwnedFd,
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
        Ok(Usb { sock })
    }

    /// The fd the loop watches.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The socket is readable: read what the kernel said; the devices
    /// that appeared (each one a job for the installer).
    pub fn on_readable(&mut self) -> heapless::Vec<Device, MAX_QUEUE> {
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
        queue
    }

    fn removed(&mut self, name: &str) {
        event!("event=usb-removed dev={}", name);
    }
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
}
