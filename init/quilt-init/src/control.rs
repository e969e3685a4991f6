//! The control socket's I/O and framing: `/run/quilt/control.sock`,
//! `SOCK_SEQPACKET` so the kernel keeps message boundaries. It accepts
//! clients (identified by `SO_PEERCRED`), serves the socket PID 1 made for
//! each container holding tokens (one end of a socketpair: identity is
//! which socket a request came in on, never anything the container says),
//! reads one message at a time with at most one fd (`SCM_RIGHTS`), decodes
//! it, sends replies, and keeps each client's event subscription, followed
//! log and hang-up. Each message is capped at [`quilt_proto::MAX_REQUEST`];
//! a malformed, oversized or foreign-version one is logged here and
//! answered with an error, disturbing nobody else.
//!
//! It decides nothing about who may do what: it asks the API whether a
//! caller is admitted before decoding their bytes, and hands what it read
//! ([`Incoming`]) to the API (`crate::api`), which authorises and handles
//! it.

use crate::caller::{Caller, Granted};
use crate::event;
use quilt_proto::{ErrorCode, FrameError, Reply, Request};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

// Named here by the supervisor, which hands the sockets of the services
// it starts to `adopt`.
use crate::caller::Spawner;

/// Where services' own sockets live (`control = [...]` in the boot config).
pub const GRANTED_DIR: &str = "/run/quilt/control.d";
/// Where the socket lives.
pub const PATH: &str = "/run/quilt/control.sock";
/// Most clients connected at once; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = crate::tokens::CONTROL_CLIENTS;
/// Most messages read from one client per readiness, so that a chatty
/// client cannot starve the others.
pub const BATCH: usize = 8;

/// A connected client.
struct Client {
    fd: OwnedFd,
    caller: Caller,
    /// `Logs { follow }`: the service and the output position sent so far.
    follow: Option<(String, u64)>,
    /// Subscribed to events.
    events: bool,
}

/// The listening socket and its clients.
pub struct Control {
    listen: OwnedFd,
    /// Services' own sockets (their `control` grants), by service index.
    granted: Vec<(usize, OwnedFd, Granted)>,
    clients: Vec<Option<Client>>,
    buf: Box<[u8]>,
    /// fds to watch, drained by the event loop.
    pub watch: heapless::Vec<(i32, u64), MAX_CLIENTS>,
    /// Clients that hung up (their runs are cancelled by the loop). Their
    /// slots are not given to new clients until the loop has cleared this
    /// (see [`Control::free_slot`]).
    pub gone: heapless::Vec<usize, MAX_CLIENTS>,
    /// Run ids of containers whose socket closed (their resources go back).
    pub gone_containers: Vec<u64>,
}

/// A message read from a client, for the API.
pub enum Incoming {
    /// A decoded request, and the fd that came with it.
    Request {
        client: usize,
        request: Request,
        fd: Option<OwnedFd>,
    },
    /// From a caller that may not use the socket (not root): not decoded.
    NotAdmitted { client: usize },
    /// It did not decode (logged as `control-malformed`).
    Malformed { client: usize, error: FrameError },
}

impl Control {
    /// Bind and listen; only root can connect (mode 0600).
    pub fn open() -> std::io::Result<Control> {
        let _ = std::fs::create_dir_all("/run/quilt");
        Control::at(std::path::Path::new(PATH))
    }

    /// Listening at `path`, with no clients yet.
    fn at(path: &std::path::Path) -> std::io::Result<Control> {
        let fd = listen_at(path)?;
        Ok(Control {
            listen: fd,
            granted: Vec::new(),
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            buf: vec![0u8; quilt_proto::MAX_REQUEST + 1].into_boxed_slice(),
            watch: heapless::Vec::new(),
            gone: heapless::Vec::new(),
            gone_containers: Vec::new(),
        })
    }

    /// The listening fd, for the event loop.
    pub fn listener(&self) -> &OwnedFd {
        &self.listen
    }

    /// Open service `index`'s own socket, [`GRANTED_DIR`]`/<name>.sock`,
    /// its uid's and gid's with mode 0600, for the verbs its boot config
    /// grants. Its listener is queued in [`Control::watch`].
    pub fn open_granted(
        &mut self,
        index: usize,
        service: &quilt_config::Service,
    ) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(GRANTED_DIR)?;
        let path = std::path::Path::new(GRANTED_DIR).join(format!("{}.sock", service.name));
        // Mode first (in listen_at): until the chown only root may connect.
        let fd = listen_at(&path)?;
        rustix::fs::chown(
            path.as_path(),
            Some(rustix::fs::Uid::from_raw(service.uid)),
            Some(rustix::fs::Gid::from_raw(service.gid)),
        )?;
        let _ = self.watch.push((
            fd.as_raw_fd(),
            crate::tokens::CONTROL_GRANTED + index as u64,
        ));
        let granted = Granted {
            name: service.name.to_string(),
            verbs: service.control.clone(),
        };
        self.granted.push((index, fd, granted));
        Ok(path)
    }

    /// Accept every pending connection: on the root socket (`None`) or
    /// on service `i`'s own.
    pub fn on_listen(&mut self, granted: Option<usize>) {
        // A burst of connections is taken up to what this loop turn can
        // register; the rest wait in the listen backlog for the next turn
        // (they used to be accepted and dropped).
        while !self.watch.is_full() {
            let Some(fd) = self.accept_on(granted) else {
                break;
            };
            let Some(slot) = self.free_slot() else {
                event!(
                    "event=control-refused reason=too-many-clients max={}",
                    MAX_CLIENTS
                );
                continue;
            };
            let caller = match granted.and_then(|i| self.granted.iter().find(|g| g.0 == i)) {
                // Whoever connects to a service's socket gets its grant
                // (only its uid and root can).
                Some((_, _, g)) => Caller::Service(Box::new(g.clone())),
                None => Caller::Host {
                    uid: rustix::net::sockopt::socket_peercred(&fd)
                        .map(|c| c.uid.as_raw())
                        .unwrap_or(u32::MAX),
                },
            };
            self.install(slot, fd, caller);
        }
    }

    /// A slot with no client that is not in [`Control::gone`]. A slot
    /// freed this turn stays out until the loop has cancelled what its
    /// client left running: a stale readiness for it (a file still open in
    /// a child that has not exec'd yet keeps its epoll entry) could
    /// otherwise read a new client's request there, whose run the
    /// cancellation would then kill, leaving that client without a reply.
    fn free_slot(&self) -> Option<usize> {
        self.clients
            .iter()
            .enumerate()
            .position(|(i, c)| c.is_none() && !self.gone.contains(&i))
    }

    /// One pending connection on the root socket or service `i`'s.
    fn accept_on(&self, granted: Option<usize>) -> Option<OwnedFd> {
        let listener = match granted {
            None => &self.listen,
            Some(i) => self.granted.iter().find(|g| g.0 == i).map(|g| &g.1)?,
        };
        rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK).ok()
    }

    fn install(&mut self, slot: usize, fd: OwnedFd, caller: Caller) {
        // Replies (tool output) can be large; one must fit the buffer.
        let _ =
            rustix::net::sockopt::set_socket_send_buffer_size(&fd, quilt_proto::MAX_REPLY + 4096);
        // Callers check there is room first.
        let _ = self
            .watch
            .push((fd.as_raw_fd(), crate::tokens::CONTROL_CLIENT + slot as u64));
        if let Some(c) = self.clients.get_mut(slot) {
            *c = Some(Client {
                fd,
                caller,
                follow: None,
                events: false,
            });
        }
    }

    /// Serve a container's own socket (PID 1's end of its socketpair).
    /// False when the table is full (the container then has no socket).
    pub fn adopt(&mut self, fd: OwnedFd, spawner: Spawner) -> bool {
        match self.free_slot() {
            Some(slot) if !self.watch.is_full() => {
                let _ = rustix::io::ioctl_fionbio(&fd, true);
                self.install(slot, fd, Caller::Container(Box::new(spawner)));
                true
            }
            _ => false,
        }
    }

    /// Read one message from `slot`: `None` when there is nothing more to
    /// read now (or the client hung up). The loop calls it up to [`BATCH`]
    /// times per readiness.
    pub fn read(&mut self, slot: usize) -> Option<Incoming> {
        let c = self.clients.get(slot)?.as_ref()?;
        // One fd may ride along (InstallFd); the kernel closes any more.
        let mut space = [core::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut iov = [std::io::IoSliceMut::new(&mut self.buf[..])];
        let flags = RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC;
        let (got, full) = match rustix::net::recvmsg(&c.fd, &mut iov, &mut anc, flags) {
            Ok(m) => (m.bytes.min(quilt_proto::MAX_REQUEST + 1), m.bytes),
            Err(rustix::io::Errno::AGAIN) => return None,
            Err(_) => (0, 0),
        };
        let mut passed: Option<OwnedFd> = None;
        for msg in anc.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = msg {
                for fd in fds {
                    passed.get_or_insert(fd);
                }
            }
        }
        if full == 0 {
            self.drop_client(slot);
            return None;
        }
        if !c.caller.admitted() {
            return Some(Incoming::NotAdmitted { client: slot });
        }
        let frame = self.buf.get(..got).unwrap_or(&[]);
        let decoded = if full > quilt_proto::MAX_REQUEST {
            Err(FrameError::TooLarge(full))
        } else {
            quilt_proto::decode_request(frame)
        };
        Some(match decoded {
            Ok(request) => Incoming::Request {
                client: slot,
                request,
                fd: passed,
            },
            Err(error) => {
                event!(
                    "event=control-malformed client={} error=\"{}\"",
                    slot,
                    error
                );
                Incoming::Malformed {
                    client: slot,
                    error,
                }
            }
        })
    }

    /// Who is on the other end of `slot`.
    pub fn caller(&self, slot: usize) -> Option<&Caller> {
        Some(&self.clients.get(slot)?.as_ref()?.caller)
    }

    /// Send `slot` every event line from now on.
    pub fn subscribe(&mut self, slot: usize) {
        if let Some(Some(c)) = self.clients.get_mut(slot) {
            c.events = true;
        }
        crate::log::tap(true);
    }

    /// Send a reply; a client that cannot take it is dropped.
    pub fn send(&mut self, slot: usize, reply: &Reply) {
        let Some(Some(c)) = self.clients.get(slot) else {
            return;
        };
        let frame = match quilt_proto::encode_reply(reply) {
            Ok(f) => f,
            Err(e) => match quilt_proto::encode_reply(&refuse(
                ErrorCode::Failed,
                &format!("reply not encodable: {e}"),
            )) {
                Ok(f) => f,
                Err(_) => return,
            },
        };
        if rustix::net::send(
            c.fd.as_fd(),
            &frame,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        )
        .is_err()
        {
            self.drop_client(slot);
        }
    }

    /// Follow service `name` from output position `pos` for `slot`.
    pub fn follow(&mut self, slot: usize, name: &str, pos: u64) {
        if let Some(Some(c)) = self.clients.get_mut(slot) {
            c.follow = Some((name.to_owned(), pos));
        }
    }

    /// Clients following some service's output: (slot, service, position).
    pub fn followers(&self) -> Vec<(usize, String, u64)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let (name, pos) = c.as_ref()?.follow.as_ref()?;
                Some((i, name.clone(), *pos))
            })
            .collect()
    }

    /// Send the event lines logged since the last turn to subscribers; the
    /// tap closes when the last one has gone.
    pub fn publish_events(&mut self) {
        let subs: Vec<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.events))
            .map(|(i, _)| i)
            .collect();
        if subs.is_empty() {
            crate::log::tap(false);
            return;
        }
        let (lines, dropped) = crate::log::take_tapped();
        let mut replies: Vec<Reply> = lines
            .into_iter()
            .map(|line| Reply::Event { line })
            .collect();
        if dropped > 0 {
            replies.push(Reply::Event {
                line: format!("quilt: event=events-dropped count={dropped}"),
            });
        }
        for r in &replies {
            for &s in &subs {
                self.send(s, r);
            }
        }
    }

    fn drop_client(&mut self, slot: usize) {
        if let Some(c) = self.clients.get_mut(slot) {
            if let Some(client) = c.take() {
                let _ = self.gone.push(slot);
                if let Caller::Container(s) = client.caller {
                    self.gone_containers.push(s.run);
                }
            }
        }
    }
}

/// A listening `SOCK_SEQPACKET` socket at `path` (replacing a stale one),
/// mode 0600.
fn listen_at(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))?;
    rustix::net::listen(&fd, 64)?;
    Ok(fd)
}

/// An error reply.
fn refuse(code: ErrorCode, message: &str) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a socket of its own in a fresh directory.
    fn server(name: &str) -> (Control, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("quilt-control-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        (Control::at(&path).unwrap(), path)
    }

    fn connect(path: &std::path::Path) -> OwnedFd {
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        rustix::net::connect(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
        fd
    }

    /// The slot of the one client installed since `watch` was last taken.
    fn accepted(ctl: &mut Control) -> usize {
        let w = core::mem::take(&mut ctl.watch);
        assert_eq!(w.len(), 1, "one client accepted");
        (w[0].1 - crate::tokens::CONTROL_CLIENT) as usize
    }

    /// In one loop turn: a client hangs up, a new one connects and has
    /// sent its request already, and a stale readiness for the old
    /// client's slot comes after the accept. The new client must not be
    /// read in the old slot until the loop has cancelled the old client's
    /// runs: that cancellation would kill the new client's run and leave
    /// it waiting for a reply for ever (the gateway's load test saw it).
    #[test]
    fn a_slot_freed_this_turn_is_not_given_out_before_its_runs_are_cancelled() {
        let (mut ctl, path) = server("reuse");
        let old = connect(&path);
        ctl.on_listen(None);
        let old_slot = accepted(&mut ctl);

        drop(old);
        let new = connect(&path);
        let frame = quilt_proto::encode_request(&Request::Ping).unwrap();
        rustix::net::send(&new, &frame, SendFlags::empty()).unwrap();

        // The turn's events: the old client's hang-up, the listener, then
        // the stale readiness of the old slot.
        assert!(ctl.read(old_slot).is_none(), "the hang-up is read");
        assert_eq!(ctl.gone.as_slice(), &[old_slot]);
        ctl.on_listen(None);
        let new_slot = accepted(&mut ctl);
        assert_ne!(new_slot, old_slot, "a slot in `gone` was given out");
        assert!(
            ctl.read(old_slot).is_none(),
            "a request was read in a slot whose runs are about to be cancelled"
        );
        match ctl.read(new_slot) {
            Some(Incoming::Request { client, .. }) => assert_eq!(client, new_slot),
            _ => panic!("the new client's request is read in its own slot"),
        }

        // Once the loop has cancelled and cleared, the slot is free again.
        ctl.gone.clear();
        let again = connect(&path);
        ctl.on_listen(None);
        assert_eq!(accepted(&mut ctl), old_slot);
        drop((new, again));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
