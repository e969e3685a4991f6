//! The control socket: `/run/quilt/control.sock`, `SOCK_SEQPACKET` so the
//! kernel keeps message boundaries. Each message is one request, capped at
//! [`quilt_proto::MAX_REQUEST`]; a malformed, oversized or foreign-version
//! message gets an error reply and disturbs nobody else. Callers are
//! identified by `SO_PEERCRED`: only root may use the socket.
//!
//! A container whose bundle holds a `spawn` token gets a socket of its own
//! instead (one end of a socketpair, as an inherited fd): identity is which
//! socket a request came in on, never anything the container says, and it
//! may only spawn, wait for and stop children of the bundles its token
//! names.

use crate::event;
use quilt_proto::{ErrorCode, Reply, Request};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Where the socket lives.
pub const PATH: &str = "/run/quilt/control.sock";
/// Most clients connected at once; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = 64;

/// A connected client.
struct Client {
    fd: OwnedFd,
    caller: Caller,
    /// `Logs { follow }`: the service and the output position sent so far.
    follow: Option<(String, u64)>,
    /// Subscribed to events.
    events: bool,
}

/// Who is on the other end of a client socket.
pub enum Caller {
    /// A host process, by `SO_PEERCRED` uid.
    Host { uid: u32 },
    /// A container, by the socket PID 1 gave it.
    Container(Box<Spawner>),
}

/// What a container may ask for, fixed when PID 1 made its socket.
#[derive(Debug, Clone)]
pub struct Spawner {
    /// Its run id.
    pub run: u64,
    /// Its bundle.
    pub bundle: String,
    /// What its tokens let it ask for.
    pub grant: crate::supervisor::ControlGrant,
    /// Its cgroup (children go under `<cgroup>/kids`).
    pub cgroup: String,
    /// How deep it is in a spawn tree (a top-level run is 0).
    pub depth: u8,
}

impl Spawner {
    fn allows(&self, bundle: &str) -> bool {
        self.grant.may_spawn(bundle)
    }
}

/// Where a run's container goes when a container asked for it.
#[derive(Debug, Clone)]
pub struct Parent {
    /// The asking container's run id.
    pub run: u64,
    /// Its cgroup.
    pub cgroup: String,
    /// Its depth.
    pub depth: u8,
    /// Its bundle's tokens: the child's must be among them.
    pub tokens: Vec<String>,
}

/// The listening socket and its clients.
pub struct Control {
    listen: OwnedFd,
    clients: Vec<Option<Client>>,
    buf: Box<[u8]>,
    /// fds to watch, drained by the event loop.
    pub watch: heapless::Vec<(i32, u64), MAX_CLIENTS>,
    /// Clients that hung up (their runs are cancelled by the loop).
    pub gone: heapless::Vec<usize, MAX_CLIENTS>,
    /// Run ids of containers whose socket closed (their resources go back).
    pub gone_containers: Vec<u64>,
}

/// What the loop must do with a decoded request.
pub enum Action {
    /// Answer now.
    Reply(usize, Reply),
    /// Start a run; its result is sent later (`detached`: its id now,
    /// the result on `Wait`).
    Run {
        client: usize,
        bundle: String,
        input: Vec<u8>,
        timeout_ms: u32,
        detached: bool,
        parent: Option<Parent>,
    },
    /// Answer with the result of run `id` when it ends.
    Wait { client: usize, id: u64 },
    /// Stop run `id`.
    Stop { client: usize, id: u64 },
    /// Start, stop or restart a service.
    Service {
        client: usize,
        name: String,
        verb: quilt_proto::ServiceVerb,
    },
    /// Send a service's retained output (and keep following it).
    Logs {
        client: usize,
        name: String,
        follow: bool,
    },
    /// Install, remove or list bundles.
    Bundles {
        client: usize,
        request: Request,
        /// The fd that came with an `InstallFd`.
        fd: Option<OwnedFd>,
    },
    /// Take units of a counted resource for container `holder`.
    Acquire {
        client: usize,
        holder: u64,
        resource: String,
        units: u32,
    },
    /// Give them back.
    Release {
        client: usize,
        holder: u64,
        resource: String,
        units: u32,
    },
    /// List counted resources.
    Resources(usize),
    /// List pods.
    Pods(usize),
    /// The A/B boot state.
    Slots(usize),
    /// Run a process inside a service's container.
    Exec {
        client: usize,
        service: String,
        argv: Vec<String>,
        input: Vec<u8>,
        timeout_ms: u32,
        /// The asking container's tokens (`None`: the operator); the
        /// target's bundle may hold no token beyond them.
        holder: Option<Vec<String>>,
    },
    /// List services.
    List(usize),
}

impl Control {
    /// Bind and listen; only root can connect (mode 0600).
    pub fn open() -> std::io::Result<Control> {
        let _ = std::fs::create_dir_all("/run/quilt");
        let _ = std::fs::remove_file(PATH);
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rustix::net::bind(&fd, &SocketAddrUnix::new(PATH)?)?;
        rustix::fs::chmod(PATH, rustix::fs::Mode::from_raw_mode(0o600))?;
        rustix::net::listen(&fd, 64)?;
        Ok(Control {
            listen: fd,
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

    /// Accept every pending connection.
    pub fn on_listen(&mut self) {
        // A burst of connections is taken up to what this loop turn can
        // register; the rest wait in the listen backlog for the next turn
        // (they used to be accepted and dropped).
        while !self.watch.is_full() {
            let Ok(fd) = rustix::net::accept_with(
                &self.listen,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) else {
                break;
            };
            let Some(slot) = self.clients.iter().position(Option::is_none) else {
                event!(
                    "event=control-refused reason=too-many-clients max={}",
                    MAX_CLIENTS
                );
                continue;
            };
            let uid = rustix::net::sockopt::socket_peercred(&fd)
                .map(|c| c.uid.as_raw())
                .unwrap_or(u32::MAX);
            self.install(slot, fd, Caller::Host { uid });
        }
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
        let free = self.clients.iter().position(Option::is_none);
        match free {
            Some(slot) if !self.watch.is_full() => {
                let _ = rustix::io::ioctl_fionbio(&fd, true);
                self.install(slot, fd, Caller::Container(Box::new(spawner)));
                true
            }
            _ => false,
        }
    }

    /// A client is readable: decode at most a few messages into actions.
    pub fn on_client(&mut self, slot: usize, out: &mut Vec<Action>) {
        for _ in 0..8 {
            let Some(Some(c)) = self.clients.get(slot) else {
                return;
            };
            // One fd may ride along (InstallFd); the kernel closes any more.
            let mut space =
                [core::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let mut iov = [std::io::IoSliceMut::new(&mut self.buf[..])];
            let flags = RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC;
            let (got, full) = match rustix::net::recvmsg(&c.fd, &mut iov, &mut anc, flags) {
                Ok(m) => (m.bytes.min(quilt_proto::MAX_REQUEST + 1), m.bytes),
                Err(rustix::io::Errno::AGAIN) => return,
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
                return;
            }
            if let Caller::Host { uid } = c.caller {
                if uid != 0 {
                    out.push(Action::Reply(
                        slot,
                        refuse(
                            ErrorCode::Denied,
                            "only root may drive quilt-init over this socket",
                        ),
                    ));
                    continue;
                }
            }
            let frame = self.buf.get(..got).unwrap_or(&[]);
            let decoded = if full > quilt_proto::MAX_REQUEST {
                Err(quilt_proto::FrameError::TooLarge(full))
            } else {
                quilt_proto::decode_request(frame)
            };
            match decoded {
                Ok(Request::Ping) => out.push(Action::Reply(
                    slot,
                    Reply::Pong {
                        server: env!("CARGO_PKG_VERSION").into(),
                    },
                )),
                Ok(
                    Request::List
                    | Request::Service { .. }
                    | Request::Logs { .. }
                    | Request::Events
                    | Request::Install { .. }
                    | Request::InstallFd
                    | Request::Remove { .. }
                    | Request::Bundles
                    | Request::Pods
                    | Request::Slots
                    | Request::Resources,
                ) if matches!(c.caller, Caller::Container(_)) => out.push(Action::Reply(
                    slot,
                    refuse(
                        ErrorCode::Denied,
                        "services, logs, events, bundles, pods, slots and resources are the operator's",
                    ),
                )),
                Ok(Request::List) => out.push(Action::List(slot)),
                Ok(req @ (Request::Run { .. } | Request::Spawn { .. })) => {
                    let (bundle, input, timeout_ms, detached) = match req {
                        Request::Run {
                            bundle,
                            input,
                            timeout_ms,
                        } => (bundle, input, timeout_ms, false),
                        Request::Spawn {
                            bundle,
                            input,
                            timeout_ms,
                        } => (bundle, input, timeout_ms, true),
                        _ => continue,
                    };
                    let parent = match &c.caller {
                        Caller::Host { .. } => None,
                        Caller::Container(s) if s.allows(&bundle) => Some(Parent {
                            run: s.run,
                            cgroup: s.cgroup.clone(),
                            depth: s.depth,
                            tokens: s.grant.tokens.clone(),
                        }),
                        Caller::Container(s) => {
                            event!(
                                "event=spawn-refused run={} bundle={} child={} reason=no-token",
                                s.run,
                                s.bundle,
                                bundle
                            );
                            out.push(Action::Reply(
                                slot,
                                refuse(
                                    ErrorCode::Denied,
                                    &format!(
                                        "bundle {:?} holds no `spawn` or `spawn:{bundle}` token",
                                        s.bundle
                                    ),
                                ),
                            ));
                            continue;
                        }
                    };
                    out.push(Action::Run {
                        client: slot,
                        bundle,
                        input,
                        timeout_ms,
                        detached,
                        parent,
                    })
                }
                Ok(Request::Service { name, verb }) => out.push(Action::Service {
                    client: slot,
                    name,
                    verb,
                }),
                Ok(Request::Logs { name, follow }) => out.push(Action::Logs {
                    client: slot,
                    name,
                    follow,
                }),
                Ok(Request::Events) => {
                    if let Some(Some(c)) = self.clients.get_mut(slot) {
                        c.events = true;
                    }
                    crate::log::tap(true);
                }
                Ok(Request::Exec {
                    service,
                    argv,
                    input,
                    timeout_ms,
                }) => match &c.caller {
                    Caller::Container(s) if !s.grant.may_exec(&service) => {
                        event!(
                            "event=exec-refused run={} bundle={} target={} reason=no-token",
                            s.run,
                            s.bundle,
                            service
                        );
                        out.push(Action::Reply(
                            slot,
                            refuse(
                                ErrorCode::Denied,
                                &format!("bundle {:?} holds no `exec:{service}` token", s.bundle),
                            ),
                        ))
                    }
                    caller => out.push(Action::Exec {
                        client: slot,
                        service,
                        argv,
                        input,
                        timeout_ms,
                        holder: match caller {
                            Caller::Container(s) => Some(s.grant.tokens.clone()),
                            Caller::Host { .. } => None,
                        },
                    }),
                },
                Ok(Request::Pods) => out.push(Action::Pods(slot)),
                Ok(Request::Slots) => out.push(Action::Slots(slot)),
                Ok(Request::Resources) => out.push(Action::Resources(slot)),
                Ok(req @ (Request::Acquire { .. } | Request::Release { .. })) => {
                    let (acquire, resource, units) = match req {
                        Request::Acquire { resource, units } => (true, resource, units),
                        Request::Release { resource, units } => (false, resource, units),
                        _ => continue,
                    };
                    match &c.caller {
                        Caller::Container(s) if s.grant.may_acquire(&resource) => {
                            let holder = s.run;
                            out.push(if acquire {
                                Action::Acquire {
                                    client: slot,
                                    holder,
                                    resource,
                                    units,
                                }
                            } else {
                                Action::Release {
                                    client: slot,
                                    holder,
                                    resource,
                                    units,
                                }
                            })
                        }
                        Caller::Container(s) => out.push(Action::Reply(
                            slot,
                            refuse(
                                ErrorCode::Denied,
                                &format!("bundle {:?} holds no `{resource}` token", s.bundle),
                            ),
                        )),
                        Caller::Host { .. } => out.push(Action::Reply(
                            slot,
                            refuse(
                                ErrorCode::Denied,
                                "counted resources are acquired by containers holding their token",
                            ),
                        )),
                    }
                }
                Ok(
                    request @ (Request::Install { .. }
                    | Request::InstallFd
                    | Request::Remove { .. }
                    | Request::Bundles),
                ) => out.push(Action::Bundles {
                    client: slot,
                    request,
                    fd: passed.take(),
                }),
                Ok(Request::Wait { id }) => out.push(Action::Wait { client: slot, id }),
                Ok(Request::Stop { id }) => out.push(Action::Stop { client: slot, id }),
                Err(e) => {
                    event!("event=control-malformed client={} error=\"{}\"", slot, e);
                    out.push(Action::Reply(slot, refuse(e.code(), &e.to_string())));
                }
            }
        }
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

/// An error reply.
pub fn refuse(code: ErrorCode, message: &str) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}
