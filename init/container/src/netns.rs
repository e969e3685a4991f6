//! Namespaces PID 1 makes ahead of a container and holds by fd: a pod's
//! network and IPC namespaces (every member joins them, so a member that
//! restarts finds its pod again), and the network namespace of a container
//! whose tokens name TCP destinations (`net:<ipv4>:<port>`), with one
//! listening socket per destination created inside it.
//!
//! PID 1 is single-threaded, so it can step into a fresh namespace with
//! `unshare`, create what must live there (a socket belongs to the network
//! namespace it was created in for its whole life), and step back with
//! `setns` at once; addresses, binds and listens are then done from home.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::io;
use std::net::SocketAddrV4;

/// Most destinations one container may have.
pub const MAX_LISTENERS: usize = 8;

/// A network namespace prepared for a container.
pub struct NetNs {
    /// The namespace (`/proc/self/ns/net` while we were in it).
    pub ns: OwnedFd,
    /// An IPC namespace made with it (pods only).
    pub ipc: Option<OwnedFd>,
    /// One non-blocking listener per asked destination, in order, bound
    /// to that same address inside the namespace.
    pub listeners: Vec<OwnedFd>,
}

/// Make a new network namespace (and an IPC one when `with_ipc`) with
/// loopback up, or enter the existing `into`; in it, listen on each of
/// `addrs` (the address is added to loopback when it is not 127/8).
pub fn prepare(
    into: Option<BorrowedFd<'_>>,
    with_ipc: bool,
    addrs: &[SocketAddrV4],
) -> io::Result<NetNs> {
    if addrs.len() > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("more than {MAX_LISTENERS} net destinations for one container"),
        ));
    }
    let home = open_ns("/proc/self/ns/net")?;
    let home_ipc = if with_ipc {
        Some(open_ns("/proc/self/ns/ipc")?)
    } else {
        None
    };
    let away = step_out(into, with_ipc, addrs.len());
    // Back home whatever happened out there; failing that, PID 1's own
    // sockets would be made in a container's namespace from now on.
    let back = setns(home.as_fd(), libc::CLONE_NEWNET).and_then(|()| match &home_ipc {
        Some(fd) => setns(fd.as_fd(), libc::CLONE_NEWIPC),
        None => Ok(()),
    });
    back.map_err(|e| io::Error::new(e.kind(), format!("returning to PID 1's namespaces: {e}")))?;
    let (ns, ipc, ctl, listeners) = away?;
    if into.is_none() {
        set_flags(
            &ctl,
            "lo",
            libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING,
        )
        .map_err(|e| annotate(e, "bringing loopback up"))?;
    }
    for (i, (addr, sock)) in addrs.iter().zip(&listeners).enumerate() {
        if addr.ip().octets()[0] != 127 {
            add_local(&ctl, i, *addr.ip())
                .map_err(|e| annotate(e, &format!("adding {} to loopback", addr.ip())))?;
        }
        listen(sock, *addr).map_err(|e| annotate(e, &format!("listening on {addr}")))?;
    }
    Ok(NetNs { ns, ipc, listeners })
}

/// A pod's shared PID namespace: a tiny holder process is its init (PID 1
/// inside; it reaps what the namespace orphans and never exits, so members
/// may come and go), held by fd. Returns the holder's host pid and the
/// namespace.
pub fn pid_holder() -> io::Result<(i32, OwnedFd)> {
    // SAFETY: single-threaded parent; the child only calls raw libc
    // functions in a loop and never returns.
    let pid = unsafe { crate::clone3(libc::CLONE_NEWPID as u64, None)? };
    if pid == 0 {
        // SAFETY: the child of clone3; plain libc calls on no shared state.
        unsafe {
            crate::child::reset_signals();
            // Keep none of PID 1's sockets, pipes or memfds alive.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::setsid();
            loop {
                if libc::waitpid(-1, core::ptr::null_mut(), 0) < 0 {
                    libc::pause();
                }
            }
        }
    }
    let ns = open_ns(&format!("/proc/{pid}/ns/pid"))?;
    Ok((pid, ns))
}

type Away = (OwnedFd, Option<OwnedFd>, OwnedFd, Vec<OwnedFd>);

/// The part done away from home: enter or make the namespace(s), take an
/// fd of each, and create every socket that must live there.
fn step_out(into: Option<BorrowedFd<'_>>, with_ipc: bool, listeners: usize) -> io::Result<Away> {
    match into {
        Some(fd) => setns(fd, libc::CLONE_NEWNET)?,
        None => {
            let mut flags = libc::CLONE_NEWNET;
            if with_ipc {
                flags |= libc::CLONE_NEWIPC;
            }
            // SAFETY: unshare takes no pointers; we are single-threaded.
            if unsafe { libc::unshare(flags) } != 0 {
                return Err(annotate(io::Error::last_os_error(), "unshare"));
            }
        }
    }
    let ns = open_ns("/proc/self/ns/net")?;
    let ipc = if with_ipc && into.is_none() {
        Some(open_ns("/proc/self/ns/ipc")?)
    } else {
        None
    };
    let ctl = socket(libc::SOCK_DGRAM)?;
    let socks = (0..listeners)
        .map(|_| socket(libc::SOCK_STREAM | libc::SOCK_NONBLOCK))
        .collect::<io::Result<Vec<_>>>()?;
    Ok((ns, ipc, ctl, socks))
}

pub(crate) fn open_ns(path: &str) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| annotate(e.into(), path))
}

pub(crate) fn setns(fd: BorrowedFd<'_>, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes an fd we borrow and a flag.
    if unsafe { libc::setns(fd.as_raw_fd(), kind) } != 0 {
        return Err(annotate(io::Error::last_os_error(), "setns"));
    }
    Ok(())
}

fn socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the fd is ours alone.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(annotate(io::Error::last_os_error(), "socket"));
    }
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &[u8]) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (d, c) in req
        .ifr_name
        .iter_mut()
        .zip(name.iter().take(libc::IFNAMSIZ - 1))
    {
        *d = *c as libc::c_char;
    }
    req
}

fn ioctl(sock: &OwnedFd, op: libc::Ioctl, req: &libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq for the SIOCSIF* requests used here.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_flags(sock: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<()> {
    let mut req = ifreq(name.as_bytes());
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS, &req)
}

fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Add `ip/32` to loopback as alias `lo:q<i>` (SIOCSIFADDR on a label
/// makes a secondary address; the /32 mask keeps the rest of its class
/// off loopback).
fn add_local(sock: &OwnedFd, i: usize, ip: std::net::Ipv4Addr) -> io::Result<()> {
    let name = format!("lo:q{i}");
    let mut req = ifreq(name.as_bytes());
    let set = |req: &mut libc::ifreq, ip: std::net::Ipv4Addr| {
        let sin = sockaddr(ip, 0);
        // SAFETY: ifru_addr is a sockaddr, of which sockaddr_in is the
        // AF_INET form of the same size.
        unsafe {
            core::ptr::write(
                (&mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr).cast::<libc::sockaddr_in>(),
                sin,
            )
        };
    };
    set(&mut req, ip);
    ioctl(sock, libc::SIOCSIFADDR, &req)?;
    set(&mut req, std::net::Ipv4Addr::BROADCAST);
    ioctl(sock, libc::SIOCSIFNETMASK, &req)
}

fn listen(sock: &OwnedFd, addr: SocketAddrV4) -> io::Result<()> {
    let one: libc::c_int = 1;
    let sin = sockaddr(*addr.ip(), addr.port());
    // SAFETY: setsockopt/bind read the local values they are given, with
    // their true sizes.
    unsafe {
        if libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
            || libc::bind(
                sock.as_raw_fd(),
                (&sin as *const libc::sockaddr_in).cast(),
                core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            || libc::listen(sock.as_raw_fd(), 16) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
