//! `net:<ipv4>:<port>` tokens. A container has loopback only; for each
//! destination its bundle was signed for and the board allows (`[[net]]`),
//! PID 1 listens on that same address inside the container's network
//! namespace (see `quilt_container::netns`) and relays every connection to
//! the real destination from the host's namespace. The tool dials the
//! address it was written for; nothing else is reachable, and a container
//! cannot open a raw or packet socket to get around it (seccomp).
//!
//! The relay is part of the event loop: fixed tables, a bounded buffer per
//! direction, no threads.

use crate::event;
use crate::refusal::PlanRefusal;
use quilt_bundle::tokens::Token;
use rustix::event::epoll;
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use std::net::SocketAddrV4;

/// A started container's relay listeners, for [`Relay::adopt`]: (host
/// pid, destinations, one listener each).
pub type NetAdopt = (i32, Vec<std::net::SocketAddrV4>, Vec<OwnedFd>);

/// Epoll tokens (crate::tokens::RELAY): listener `i` is `TOKEN + i`;
/// connection `c` is `TOKEN + CONN + 2c` (container side) and `+ 1`
/// (destination side).
const TOKEN: u64 = crate::tokens::RELAY;
const CONN: u64 = 0x100;
/// How many tokens the relay uses.
pub const TOKENS: u64 = CONN + 2 * MAX_CONNS as u64;
const _: () = assert!(MAX_LISTENERS as u64 <= CONN);
const _: () = assert!(TOKENS <= crate::tokens::RELAY_TOKENS);

/// Connections taken from one listener per loop turn.
const ACCEPTS_PER_TURN: usize = 16;
/// Listeners on the whole board.
const MAX_LISTENERS: usize = 64;
/// Relayed connections open at once; more wait in the listener's backlog.
const MAX_CONNS: usize = 64;
/// Relayed connections one container (one listener owner) may hold at
/// once, so that no container takes every relay slot of the board.
pub const MAX_CONNS_PER_OWNER: usize = MAX_CONNS / 4;
/// Bytes buffered per direction of a connection.
const BUF: usize = 16 * 1024;

/// The destinations `tokens` ask for, each checked against the board's
/// allow-list; an error says which one is not allowed.
pub fn targets(
    allow: &[quilt_config::NetAllow],
    bundle: &str,
    tokens: &[String],
) -> Result<Vec<SocketAddrV4>, PlanRefusal> {
    let mut out = Vec::new();
    for t in tokens {
        if let Ok(Token::Net(addr)) = Token::parse(t) {
            let text = addr.to_string();
            if !allow.iter().any(|a| a.to.as_str() == text) {
                return Err(PlanRefusal::NetNotAllowed {
                    bundle: bundle.to_owned(),
                    token: t.clone(),
                    to: text,
                });
            }
            out.push(addr);
        }
    }
    Ok(out)
}

struct Listener {
    /// Host pid of the container it serves.
    owner: i32,
    to: SocketAddrV4,
    fd: OwnedFd,
}

/// One direction of a connection.
struct Half {
    buf: Box<[u8]>,
    at: usize,
    len: usize,
    /// The source said end of stream.
    eof: bool,
    /// The end of stream was passed on (`shutdown(WR)`).
    shut: bool,
    bytes: u64,
}

impl Half {
    fn new() -> Half {
        Half {
            buf: vec![0u8; BUF].into_boxed_slice(),
            at: 0,
            len: 0,
            eof: false,
            shut: false,
            bytes: 0,
        }
    }

    /// Read from `src` while there is room. Err: the connection is dead.
    fn fill(&mut self, src: &OwnedFd) -> Result<(), Errno> {
        while !self.eof && self.at + self.len < BUF {
            let start = self.at + self.len;
            let Some(room) = self.buf.get_mut(start..) else {
                return Ok(());
            };
            match rustix::io::read(src, room) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.len += n;
                    self.bytes += n as u64;
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write what is buffered to `dst`; pass end of stream on once drained.
    fn drain(&mut self, dst: &OwnedFd) -> Result<(), Errno> {
        while self.len > 0 {
            let Some(data) = self.buf.get(self.at..self.at + self.len) else {
                return Ok(());
            };
            match rustix::net::send(dst, data, rustix::net::SendFlags::NOSIGNAL) {
                Ok(n) => {
                    self.at += n;
                    self.len -= n;
                    if self.len == 0 {
                        // Empty: room starts at the front again.
                        self.at = 0;
                    }
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        if self.eof && !self.shut {
            self.shut = true;
            let _ = rustix::net::shutdown(dst, rustix::net::Shutdown::Write);
        }
        Ok(())
    }

    fn has_room(&self) -> bool {
        !self.eof && self.at + self.len < BUF
    }
}

struct Conn {
    owner: i32,
    to: SocketAddrV4,
    /// The container's side (accepted in its namespace).
    inner: OwnedFd,
    /// The destination's side (dialled from the host's).
    outer: OwnedFd,
    connected: bool,
    /// inner → outer.
    up: Half,
    /// outer → inner.
    down: Half,
}

/// Every listener and relayed connection.
#[derive(Default)]
pub struct Relay {
    listeners: Vec<Option<Listener>>,
    conns: Vec<Option<Conn>>,
}

impl Relay {
    /// Serve `listeners` (one per destination, in `to`'s order) for the
    /// container whose host pid is `owner`.
    pub fn adopt(
        &mut self,
        ep: &OwnedFd,
        owner: i32,
        to: &[SocketAddrV4],
        listeners: Vec<OwnedFd>,
    ) {
        for (addr, fd) in to.iter().zip(listeners) {
            let slot = match self.listeners.iter().position(Option::is_none) {
                Some(i) => i,
                None if self.listeners.len() < MAX_LISTENERS => {
                    self.listeners.push(None);
                    self.listeners.len() - 1
                }
                None => {
                    event!(
                        "event=net-refused pid={} to={} reason=\"more than {} listeners on the board\"",
                        owner,
                        addr,
                        MAX_LISTENERS
                    );
                    continue;
                }
            };
            let data = epoll::EventData::new_u64(TOKEN + slot as u64);
            if let Err(e) = epoll::add(ep, &fd, data, epoll::EventFlags::IN) {
                event!(
                    "event=net-refused pid={} to={} reason=\"epoll: {}\"",
                    owner,
                    addr,
                    e
                );
                continue;
            }
            event!("event=net-listening pid={} to={}", owner, addr);
            if let Some(s) = self.listeners.get_mut(slot) {
                *s = Some(Listener {
                    owner,
                    to: *addr,
                    fd,
                });
            }
        }
    }

    /// The container `owner` ended: close its listeners and connections
    /// (closing an fd takes it out of epoll).
    pub fn release(&mut self, owner: i32) {
        for l in self.listeners.iter_mut() {
            if l.as_ref().is_some_and(|l| l.owner == owner) {
                *l = None;
            }
        }
        for c in self.conns.iter_mut() {
            if c.as_ref().is_some_and(|c| c.owner == owner) {
                *c = None;
            }
        }
    }

    /// An epoll event with a token in `crate::tokens::RELAY..RELAY_END`.
    pub fn on_event(&mut self, ep: &OwnedFd, token: u64, flags: epoll::EventFlags) {
        let n = token - TOKEN;
        if n < CONN {
            self.accept(ep, n as usize);
        } else {
            let c = ((n - CONN) / 2) as usize;
            let outer_side = (n - CONN) % 2 == 1;
            self.pump(ep, c, outer_side, flags);
        }
    }

    fn accept(&mut self, ep: &OwnedFd, l: usize) {
        let Some(Some(lis)) = self.listeners.get(l) else {
            return;
        };
        let (owner, to) = (lis.owner, lis.to);
        // Bounded work per turn, however fast a container connects: epoll
        // is level-triggered, so the rest of the backlog comes next turn.
        for _ in 0..ACCEPTS_PER_TURN {
            let flags = rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC;
            let inner = match rustix::net::accept_with(&lis.fd, flags) {
                Ok(fd) => fd,
                Err(Errno::INTR) => continue,
                Err(_) => return,
            };
            let held = self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.owner == owner)
                .count();
            if held >= MAX_CONNS_PER_OWNER {
                // Dropping `inner` resets the container's connection.
                event!(
                    "event=net-refused pid={} to={} reason=\"this container already has {} relayed connections (its quota)\"",
                    owner,
                    to,
                    MAX_CONNS_PER_OWNER
                );
                continue;
            }
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None if self.conns.len() < MAX_CONNS => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
                None => {
                    event!(
                        "event=net-refused pid={} to={} reason=\"{} connections already relayed\"",
                        owner,
                        to,
                        MAX_CONNS
                    );
                    continue;
                }
            };
            let outer = match dial(to) {
                Ok(fd) => fd,
                Err(e) => {
                    event!(
                        "event=net-connect-failed pid={} to={} error=\"{}\"",
                        owner,
                        to,
                        e
                    );
                    continue;
                }
            };
            let base = TOKEN + CONN + 2 * slot as u64;
            let added = epoll::add(
                ep,
                &inner,
                epoll::EventData::new_u64(base),
                epoll::EventFlags::IN,
            )
            .and_then(|()| {
                epoll::add(
                    ep,
                    &outer,
                    epoll::EventData::new_u64(base + 1),
                    epoll::EventFlags::OUT,
                )
            });
            if let Err(e) = added {
                event!(
                    "event=net-refused pid={} to={} reason=\"epoll: {}\"",
                    owner,
                    to,
                    e
                );
                continue;
            }
            if let Some(s) = self.conns.get_mut(slot) {
                *s = Some(Conn {
                    owner,
                    to,
                    inner,
                    outer,
                    connected: false,
                    up: Half::new(),
                    down: Half::new(),
                });
            }
        }
    }

    fn pump(&mut self, ep: &OwnedFd, c: usize, outer_side: bool, flags: epoll::EventFlags) {
        let Some(slot) = self.conns.get_mut(c) else {
            return;
        };
        let Some(conn) = slot.as_mut() else {
            return;
        };
        let result = conn.pump(outer_side);
        let hangup = flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR);
        let done = match result {
            Err(e) => {
                event!(
                    "event=net-relay-closed pid={} to={} up={} down={} error=\"{}\"",
                    conn.owner,
                    conn.to,
                    conn.up.bytes,
                    conn.down.bytes,
                    e
                );
                true
            }
            Ok(()) if (conn.up.shut && conn.down.shut) || hangup => {
                event!(
                    "event=net-relay-closed pid={} to={} up={} down={}",
                    conn.owner,
                    conn.to,
                    conn.up.bytes,
                    conn.down.bytes
                );
                true
            }
            Ok(()) => {
                conn.rearm(ep, TOKEN + CONN + 2 * c as u64);
                false
            }
        };
        if done {
            *slot = None;
        }
    }
}

impl Conn {
    fn pump(&mut self, outer_event: bool) -> Result<(), Errno> {
        if !self.connected {
            if !outer_event {
                // Take what the container sends meanwhile, up to a buffer.
                return self.up.fill(&self.inner);
            }
            // The connect's outcome.
            rustix::net::sockopt::socket_error(&self.outer)??;
            self.connected = true;
            event!("event=net-relay-open pid={} to={}", self.owner, self.to);
        }
        self.up.fill(&self.inner)?;
        self.up.drain(&self.outer)?;
        self.down.fill(&self.outer)?;
        self.down.drain(&self.inner)?;
        // Drained room may let more in.
        self.up.fill(&self.inner)?;
        self.down.fill(&self.outer)?;
        self.up.drain(&self.outer)?;
        self.down.drain(&self.inner)
    }

    /// Watch for what can move next: reading where there is room,
    /// writing where data waits.
    fn rearm(&self, ep: &OwnedFd, base: u64) {
        use epoll::EventFlags as F;
        let want = |read: bool, write: bool| {
            let mut f = F::empty();
            if read {
                f |= F::IN;
            }
            if write {
                f |= F::OUT;
            }
            f
        };
        let inner = want(self.up.has_room(), self.down.len > 0);
        let outer = if self.connected {
            want(self.down.has_room(), self.up.len > 0)
        } else {
            F::OUT
        };
        let _ = epoll::modify(
            ep,
            self.inner.as_fd(),
            epoll::EventData::new_u64(base),
            inner,
        );
        let _ = epoll::modify(
            ep,
            self.outer.as_fd(),
            epoll::EventData::new_u64(base + 1),
            outer,
        );
    }
}

/// A non-blocking connect from the host's namespace.
fn dial(to: SocketAddrV4) -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &to) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<quilt_config::NetAllow> {
        list.iter()
            .map(|s| quilt_config::NetAllow {
                to: heapless::String::try_from(*s).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_destination_needs_the_token_and_the_board() {
        let toks = vec!["net:10.0.2.2:80".to_string(), "spawn".to_string()];
        assert_eq!(
            targets(&allow(&["10.0.2.2:80"]), "b", &toks).unwrap(),
            vec!["10.0.2.2:80".parse::<SocketAddrV4>().unwrap()]
        );
        let e = targets(&allow(&["10.0.2.2:81"]), "b", &toks).unwrap_err();
        assert_eq!(
            e,
            PlanRefusal::NetNotAllowed {
                bundle: "b".into(),
                token: "net:10.0.2.2:80".into(),
                to: "10.0.2.2:80".into(),
            }
        );
        // And the message says what to add to the boot config.
        assert_eq!(
            e.to_string(),
            "bundle \"b\" asks for `net:10.0.2.2:80`, but this board allows no such destination (add [[net]] to = \"10.0.2.2:80\" to its boot config if it should)"
        );
        assert!(targets(&[], "b", &["spawn".to_string()])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_half_moves_bytes_and_passes_end_of_stream_on() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        c.set_nonblocking(true).unwrap();
        let (b, c): (OwnedFd, OwnedFd) = (b.into(), c.into());
        let mut h = Half::new();
        a.write_all(&[7u8; 40_000]).unwrap();
        drop(a);
        let mut got = Vec::new();
        while !h.shut {
            h.fill(&b).unwrap();
            h.drain(&c).unwrap();
            let mut buf = [0u8; 8192];
            d.set_nonblocking(true).unwrap();
            if let Ok(n) = d.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        d.set_nonblocking(false).unwrap();
        d.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 40_000);
        assert_eq!(h.bytes, 40_000);
    }
}
