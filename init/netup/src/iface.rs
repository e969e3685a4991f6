//! An interface's IPv4 settings through the ioctls busybox's `ifconfig`
//! and `route` make (SIOCGIFINDEX, SIOCGIFHWADDR, SIOCGIFFLAGS/SIOCSIFFLAGS,
//! SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT/SIOCDELRT) on an `AF_INET`
//! datagram socket. One address per interface and IPv4 only, which is all
//! a board's bring-up needs. With [`crate::ready`], the only `unsafe` in
//! the crate.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cli::netmask;
use crate::error::NetError;

/// `struct rtentry` of the kernel's `include/uapi/linux/route.h` (the libc
/// crate has it only for musl and uClibc).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// An interface of the board, by name, with a socket to configure it.
#[derive(Debug)]
pub struct Link {
    name: String,
    /// NUL-terminated copy of `name` for `ifr_name` and `rt_dev`.
    cname: [libc::c_char; libc::IFNAMSIZ],
    sock: OwnedFd,
    pub mac: [u8; 6],
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16-byte plain-data C
    // structs; the kernel reads a sockaddr of family AF_INET as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

impl Link {
    /// The interface `name`, if the kernel has it ([`NetError::NoInterface`]
    /// otherwise), with its hardware address.
    pub fn open(name: &str) -> Result<Link, NetError> {
        if !crate::cli::valid_iface(name) {
            return Err(NetError::BadName(name.to_owned()));
        }
        let mut cname = [0 as libc::c_char; libc::IFNAMSIZ];
        for (d, s) in cname.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: socket(2) takes no pointers; a non-negative result is a
        // fresh descriptor that nothing else owns.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(NetError::Socket {
                what: "interface ioctls",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd was just returned by socket(2) and is owned by no one else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut link = Link {
            name: name.to_owned(),
            cname,
            sock,
            mac: [0; 6],
        };
        let mut req = link.ifreq();
        link.ioctl(libc::SIOCGIFINDEX, &mut req)
            .map_err(|source| NetError::NoInterface {
                iface: name.to_owned(),
                source,
            })?;
        let mut req = link.ifreq();
        link.ioctl_named("SIOCGIFHWADDR", libc::SIOCGIFHWADDR, &mut req)?;
        // SAFETY: SIOCGIFHWADDR filled ifru_hwaddr, the union's active field.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        for (d, s) in link.mac.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(link)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn ifreq(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain data (arrays, integers, a union of those
        // and a pointer); all-zero is a valid value of it.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.cname;
        req
    }

    fn ioctl<T>(&self, op: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: `op` is one of this module's SIOC* requests, each of which
        // reads or writes exactly the `T` it is called with here (ifreq or
        // RtEntry), borrowed mutably for the call; the fd is our socket.
        let rc = unsafe {
            libc::ioctl(
                self.sock.as_raw_fd(),
                op as _,
                std::ptr::from_mut(arg).cast::<libc::c_void>(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn ioctl_named<T>(
        &self,
        what: &'static str,
        op: libc::c_ulong,
        arg: &mut T,
    ) -> Result<(), NetError> {
        self.ioctl(op, arg).map_err(|source| NetError::Ioctl {
            op: what,
            iface: self.name.clone(),
            source,
        })
    }

    /// Set IFF_UP (and IFF_RUNNING, as `ifconfig up` does).
    pub fn up(&self) -> Result<(), NetError> {
        let mut req = self.ifreq();
        self.ioctl_named("SIOCGIFFLAGS", libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled ifru_flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        self.ioctl_named("SIOCSIFFLAGS", libc::SIOCSIFFLAGS, &mut req)
    }

    /// The interface's address, if it has one.
    pub fn addr(&self) -> Option<Ipv4Addr> {
        let mut req = self.ifreq();
        self.ioctl(libc::SIOCGIFADDR, &mut req).ok()?;
        // SAFETY: SIOCGIFADDR filled ifru_addr with an AF_INET sockaddr,
        // which has the layout of sockaddr_in.
        let sin: libc::sockaddr_in = unsafe { std::mem::transmute(req.ifr_ifru.ifru_addr) };
        Some(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
    }

    /// Give the interface `addr/prefix` (replacing the address it had; the
    /// kernel derives the broadcast address).
    pub fn set_addr(&self, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_addr = sockaddr_in(addr);
        self.ioctl_named("SIOCSIFADDR", libc::SIOCSIFADDR, &mut req)?;
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_netmask = sockaddr_in(netmask(prefix));
        self.ioctl_named("SIOCSIFNETMASK", libc::SIOCSIFNETMASK, &mut req)
    }

    /// Remove the interface's address (`ifconfig IFACE 0.0.0.0`); the
    /// kernel drops the routes through it with it.
    pub fn clear_addr(&self) -> Result<(), NetError> {
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_addr = sockaddr_in(Ipv4Addr::UNSPECIFIED);
        self.ioctl_named("SIOCSIFADDR", libc::SIOCSIFADDR, &mut req)
    }

    fn route(&self, op: libc::c_ulong, gateway: Ipv4Addr) -> io::Result<()> {
        let mut dev = self.cname;
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr_in(gateway),
            rt_genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            // The kernel copies the NUL-terminated name during the call;
            // `dev` outlives it.
            rt_dev: dev.as_mut_ptr(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        self.ioctl(op, &mut rt)
    }

    /// A default route through `gateway` on this interface; one already
    /// there is kept.
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), NetError> {
        match self.route(libc::SIOCADDRT, gateway) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(|source| NetError::Ioctl {
                op: "SIOCADDRT",
                iface: self.name.clone(),
                source,
            }),
        }
    }

    /// Remove the default route through `gateway` (gone already is fine).
    pub fn del_default_route(&self, gateway: Ipv4Addr) -> Result<(), NetError> {
        match self.route(libc::SIOCDELRT, gateway) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r.map_err(|source| NetError::Ioctl {
                op: "SIOCDELRT",
                iface: self.name.clone(),
                source,
            }),
        }
    }
}

impl Link {
    /// Tie `sock` to this interface (SO_BINDTODEVICE): it sends out of it
    /// and receives only what came in on it, address or not.
    pub fn bind_socket(&self, sock: &impl AsRawFd) -> Result<(), NetError> {
        let len = self.name.len() + 1;
        // SAFETY: `cname` is a NUL-terminated array of IFNAMSIZ bytes that
        // outlives the call, and `len` (name + NUL, at most 16) is within it.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                self.cname.as_ptr().cast::<libc::c_void>(),
                len as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NetError::Ioctl {
                op: "SO_BINDTODEVICE",
                iface: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// Bring `lo` up with 127.0.0.1/8 unless it has an address already.
pub fn loopback() -> Result<(), NetError> {
    let lo = Link::open("lo")?;
    if lo.addr().is_none() {
        lo.set_addr(Ipv4Addr::LOCALHOST, 8)?;
    }
    lo.up()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtentry_has_the_kernels_layout() {
        // uapi struct rtentry: 120 bytes on LP64, 64 on ILP32.
        let want = if cfg!(target_pointer_width = "64") {
            120
        } else {
            64
        };
        assert_eq!(std::mem::size_of::<RtEntry>(), want);
    }

    #[test]
    fn a_missing_interface_is_named() {
        match Link::open("nosuch0") {
            Err(NetError::NoInterface { iface, .. }) => assert_eq!(iface, "nosuch0"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Link::open("a/b"), Err(NetError::BadName(_))));
    }
}
