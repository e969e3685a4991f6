//! The two modes' loops: `static` sets what it was told and stays; `dhcp`
//! acquires a lease (DISCOVER, OFFER, REQUEST, ACK, with backoff), applies
//! it, and keeps it (renew at T1 by unicast, rebind at T2 by broadcast,
//! start over at expiry or on a NAK). The decisions are [`crate::dhcp`]'s
//! and [`crate::lease`]'s; this module owns the socket, the clock and the
//! event lines.

use std::convert::Infallible;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use crate::cli::Common;
use crate::dhcp::{self, Client, Refused, Reply, CLIENT_PORT, MAX_PACKET, SERVER_PORT};
use crate::error::NetError;
use crate::event;
use crate::event::quoted;
use crate::iface::{self, Link};
use crate::lease::{backoff, Lease, Phase};
use crate::ready::Ready;
use crate::resolv;

/// REQUESTs sent for one offer before starting over with a DISCOVER.
const REQUEST_TRIES: u32 = 4;
/// Refusals logged per exchange; past that, one line says they are not.
const REFUSALS_LOGGED: u32 = 8;

fn dns_text(dns: &[Ipv4Addr]) -> String {
    if dns.is_empty() {
        return "none".into();
    }
    dns.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn gw_text(gw: Option<Ipv4Addr>) -> String {
    gw.map_or_else(|| "none".into(), |g| g.to_string())
}

/// `static`: set the address, route and DNS servers, say so, and stay
/// (unless `once`).
pub fn run_static(
    common: &Common,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    dns: &[Ipv4Addr],
    once: bool,
) -> Result<(), NetError> {
    let started = Instant::now();
    iface::loopback()?;
    let link = Link::open(&common.iface)?;
    link.up()?;
    link.set_addr(addr, prefix)?;
    if let Some(gw) = gateway {
        link.add_default_route(gw)?;
    }
    resolv::write(&common.resolv, link.name(), dns)?;
    event!(
        "event=net-up iface={} addr={addr}/{prefix} gw={} dns={} via=static took_ms={}",
        link.name(),
        gw_text(gateway),
        dns_text(dns),
        started.elapsed().as_millis()
    );
    Ready::new(common.ready_fd).notify()?;
    if once {
        return Ok(());
    }
    // Stay, so `restart = "always"` does not set the address again and
    // again; SIGTERM ends us (the address stays until the board goes down).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A fresh transaction id from the kernel's RNG (time and pid if that fails).
fn new_xid() -> u32 {
    let mut b = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.subsec_nanos() ^ std::process::id().rotate_left(16)
        }
    }
}

/// The client's UDP socket: port 68 on one interface, broadcast allowed.
struct Socket {
    sock: UdpSocket,
    iface: String,
}

impl Socket {
    fn open(link: &Link) -> Result<Socket, NetError> {
        let iface = link.name().to_owned();
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)).map_err(
            |source| NetError::Bind {
                iface: iface.clone(),
                source,
            },
        )?;
        link.bind_socket(&sock)?;
        sock.set_broadcast(true)
            .map_err(|source| NetError::Socket {
                what: "DHCP broadcasts",
                source,
            })?;
        Ok(Socket { sock, iface })
    }

    fn send(&self, bytes: &[u8], to: Ipv4Addr, what: &'static str) -> Result<(), NetError> {
        self.sock
            .send_to(bytes, SocketAddrV4::new(to, SERVER_PORT))
            .map(drop)
            .map_err(|source| NetError::Send {
                what,
                iface: self.iface.clone(),
                source,
            })
    }

    /// The next datagram, or `None` once `deadline` has passed.
    fn recv_until(&self, deadline: Instant) -> Result<Option<Vec<u8>>, NetError> {
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Zero would mean "block for ever".
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|source| self.recv_err(source))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(self.recv_err(source)),
            }
        }
    }

    fn recv_err(&self, source: io::Error) -> NetError {
        NetError::Recv {
            iface: self.iface.clone(),
            source,
        }
    }
}

/// Refused datagrams of one exchange, logged up to [`REFUSALS_LOGGED`].
struct Refusals<'a> {
    iface: &'a str,
    state: &'static str,
    n: u32,
}

impl<'a> Refusals<'a> {
    fn new(iface: &'a str, state: &'static str) -> Self {
        Refusals { iface, state, n: 0 }
    }

    fn log(&mut self, why: &Refused) {
        self.n += 1;
        if self.n <= REFUSALS_LOGGED {
            event!(
                "event=net-refused iface={} state={} reason=\"{}\"",
                self.iface,
                self.state,
                quoted(&why.to_string())
            );
        } else if self.n == REFUSALS_LOGGED + 1 {
            event!(
                "event=net-refused iface={} state={} reason=\"more refused packets; not logged until the next exchange\"",
                self.iface,
                self.state
            );
        }
    }
}

fn kind(r: &Reply) -> &'static str {
    match r {
        Reply::Offer { .. } => "offer",
        Reply::Ack(_) => "ack",
        Reply::Nak { .. } => "nak",
    }
}

/// Wait until `deadline` for a reply to `c` that `want` takes; every other
/// datagram is refused with its reason.
fn wait(
    sock: &Socket,
    c: Client,
    deadline: Instant,
    refusals: &mut Refusals<'_>,
    want: impl Fn(&Reply) -> Result<(), Refused>,
) -> Result<Option<Reply>, NetError> {
    while let Some(bytes) = sock.recv_until(deadline)? {
        match dhcp::classify(&bytes, c).and_then(|r| want(&r).map(|()| r)) {
            Ok(r) => return Ok(Some(r)),
            Err(why) => refusals.log(&why),
        }
    }
    Ok(None)
}

/// DISCOVER until an offer, REQUEST it until an ACK; a NAK or silence
/// starts over, with [`backoff`] between rounds. Returns the lease and
/// when its REQUEST went out (its clock starts there, RFC 2131 4.4.1).
fn acquire(link: &Link, sock: &Socket) -> Result<(Lease, Instant), NetError> {
    let iface = link.name();
    let mut round = 0u32;
    loop {
        let c = Client {
            mac: link.mac,
            xid: new_xid(),
        };
        sock.send(
            &dhcp::encode(&dhcp::discover(c), "discover")?,
            Ipv4Addr::BROADCAST,
            "discover",
        )?;
        let mut refusals = Refusals::new(iface, "selecting");
        let offer = wait(
            sock,
            c,
            Instant::now() + backoff(round),
            &mut refusals,
            |r| match r {
                Reply::Offer { .. } => Ok(()),
                other => Err(Refused::Unexpected(kind(other).into())),
            },
        )?;
        let Some(Reply::Offer { addr, server }) = offer else {
            event!(
                "event=net-dhcp-timeout iface={iface} state=selecting round={} waited_s={}",
                round + 1,
                backoff(round).as_secs()
            );
            round = round.saturating_add(1);
            continue;
        };
        event!(
            "event=net-dhcp-offer iface={iface} addr={addr} server={server} xid={:#010x}",
            c.xid
        );
        let mut refusals = Refusals::new(iface, "requesting");
        for tries in 0..REQUEST_TRIES {
            let sent = Instant::now();
            let req = dhcp::encode(&dhcp::request_offer(c, addr, server), "request")?;
            sock.send(&req, Ipv4Addr::BROADCAST, "request")?;
            let reply = wait(sock, c, sent + backoff(tries), &mut refusals, |r| match r {
                Reply::Ack(l) if l.addr != addr => Err(Refused::BadAddress(l.addr)),
                Reply::Ack(l) if l.server != server => Err(Refused::OtherServer {
                    got: l.server,
                    want: server,
                }),
                Reply::Nak { server: s, .. } if *s != server => Err(Refused::OtherServer {
                    got: *s,
                    want: server,
                }),
                Reply::Ack(_) | Reply::Nak { .. } => Ok(()),
                other => Err(Refused::Unexpected(kind(other).into())),
            })?;
            match reply {
                Some(Reply::Ack(lease)) => return Ok((lease, sent)),
                Some(Reply::Nak { message, .. }) => {
                    event!(
                        "event=net-dhcp-nak iface={iface} state=requesting server={server} message=\"{}\"",
                        quoted(message.as_deref().unwrap_or(""))
                    );
                    break;
                }
                _ => {}
            }
        }
        round = round.saturating_add(1);
    }
}

/// Set a lease on the interface; `old` is what it had (a renewal that
/// changed nothing touches nothing).
fn apply(link: &Link, old: Option<&Lease>, new: &Lease, resolv_path: &str) -> Result<(), NetError> {
    let same_addr = old.is_some_and(|o| o.addr == new.addr && o.prefix == new.prefix);
    if !same_addr {
        link.set_addr(new.addr, new.prefix)?;
    }
    let old_gw = if same_addr {
        old.and_then(|o| o.gateway)
    } else {
        None
    };
    if old_gw != new.gateway {
        if let Some(gw) = old_gw {
            link.del_default_route(gw)?;
        }
        if let Some(gw) = new.gateway {
            link.add_default_route(gw)?;
        }
    }
    if old.map(|o| &o.dns) != Some(&new.dns) {
        resolv::write(resolv_path, link.name(), &new.dns)?;
    }
    Ok(())
}

/// Why a lease ended.
enum Lost {
    Expired,
    Nak(Option<String>),
}

/// Hold `lease` (taken at `at`): renew, rebind, until it is lost.
fn keep(
    link: &Link,
    sock: &Socket,
    mut lease: Lease,
    mut at: Instant,
    resolv_path: &str,
) -> Result<(Lease, Lost), NetError> {
    let iface = link.name();
    let mut logged = Phase::Bound;
    loop {
        let phase = lease.phase(at.elapsed());
        let step = Instant::now() + lease.next_step(at.elapsed());
        if phase != logged && phase != Phase::Expired {
            event!(
                "event=net-dhcp-{} iface={iface} addr={} server={} held_s={}",
                if phase == Phase::Renewing {
                    "renewing"
                } else {
                    "rebinding"
                },
                lease.addr,
                lease.server,
                at.elapsed().as_secs()
            );
        }
        logged = phase;
        let (to, state) = match phase {
            Phase::Expired => return Ok((lease, Lost::Expired)),
            Phase::Bound => {
                // Nothing is a reply to anything now: datagrams for other
                // clients on the segment are dropped unlogged.
                while sock.recv_until(step)?.is_some() {}
                continue;
            }
            Phase::Renewing => (lease.server, "renewing"),
            Phase::Rebinding => (Ipv4Addr::BROADCAST, "rebinding"),
        };
        let c = Client {
            mac: link.mac,
            xid: new_xid(),
        };
        let sent = Instant::now();
        sock.send(
            &dhcp::encode(&dhcp::request_extend(c, lease.addr), "request")?,
            to,
            "request",
        )?;
        let mut refusals = Refusals::new(iface, state);
        let server = lease.server;
        let reply = wait(sock, c, step, &mut refusals, |r| match r {
            // Renewing is a conversation with our server; rebinding takes any.
            Reply::Ack(l) if phase == Phase::Renewing && l.server != server => {
                Err(Refused::OtherServer {
                    got: l.server,
                    want: server,
                })
            }
            Reply::Ack(_) | Reply::Nak { .. } => Ok(()),
            other => Err(Refused::Unexpected(kind(other).into())),
        })?;
        match reply {
            Some(Reply::Ack(new)) => {
                apply(link, Some(&lease), &new, resolv_path)?;
                event!(
                    "event=net-renewed iface={iface} addr={}/{} gw={} dns={} server={} lease_s={}",
                    new.addr,
                    new.prefix,
                    gw_text(new.gateway),
                    dns_text(&new.dns),
                    new.server,
                    new.lease_s
                );
                lease = new;
                at = sent;
                logged = Phase::Bound;
            }
            Some(Reply::Nak { message, .. }) => return Ok((lease, Lost::Nak(message))),
            _ => {}
        }
    }
}

/// `dhcp`: acquire, apply, keep; on loss drop the address and start over.
/// Returns only on an error of the system (no interface, no socket).
pub fn run_dhcp(common: &Common) -> Result<Infallible, NetError> {
    let mut started = Instant::now();
    iface::loopback()?;
    let link = Link::open(&common.iface)?;
    link.up()?;
    let sock = Socket::open(&link)?;
    let mut ready = Ready::new(common.ready_fd);
    event!(
        "event=net-dhcp-start iface={} mac={}",
        link.name(),
        link.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    );
    loop {
        let (lease, at) = acquire(&link, &sock)?;
        apply(&link, None, &lease, &common.resolv)?;
        event!(
            "event=net-up iface={} addr={}/{} gw={} dns={} via=dhcp lease_s={} server={} took_ms={}",
            link.name(),
            lease.addr,
            lease.prefix,
            gw_text(lease.gateway),
            dns_text(&lease.dns),
            lease.lease_s,
            lease.server,
            started.elapsed().as_millis()
        );
        ready.notify()?;
        let (lease, lost) = keep(&link, &sock, lease, at, &common.resolv)?;
        let reason = match lost {
            Lost::Expired => "expired".to_owned(),
            Lost::Nak(m) => format!("nak message=\"{}\"", quoted(m.as_deref().unwrap_or(""))),
        };
        link.clear_addr()?;
        resolv::write(&common.resolv, link.name(), &[])?;
        event!(
            "event=net-down iface={} addr={}/{} reason={reason}",
            link.name(),
            lease.addr,
            lease.prefix
        );
        started = Instant::now();
    }
}
