//! The control socket: `/run/quilt/control.sock`, `SOCK_SEQPACKET` so the
//! kernel keeps message boundaries. Each message is one request, capped at
//! [`quilt_proto::MAX_REQUEST`]; a malformed, oversized or foreign-version
//! message gets an error reply and disturbs nobody else. Callers are
//! identified by `SO_PEERCRED`; for now only root may use it (per-container
//! tokens come with the container API).

use crate::event;
use quilt_proto::{ErrorCode, Reply, Request};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Where the socket lives.
pub const PATH: &str = "/run/quilt/control.sock";
/// Most clients connected at once; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = 64;
/// Epoll token of the listening socket.
pub const TOKEN_LISTEN: u64 = 3;
/// Epoll token base of client sockets.
pub const TOKEN_CLIENT: u64 = 0x400;

/// A connected client.
struct Client {
    fd: OwnedFd,
    uid: u32,
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
}

/// What the loop must do with a decoded request.
pub enum Action {
    /// Answer now.
    Reply(usize, Reply),
    /// Start a run; its result is sent later.
    Run {
        client: usize,
        bundle: String,
        input: Vec<u8>,
        timeout_ms: u32,
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
            // Replies (tool output) can be large; one must fit the buffer.
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(
                &fd,
                quilt_proto::MAX_REPLY + 4096,
            );
            // Cannot fail: the loop runs only while there is room.
            let _ = self
                .watch
                .push((fd.as_raw_fd(), TOKEN_CLIENT + slot as u64));
            if let Some(c) = self.clients.get_mut(slot) {
                *c = Some(Client { fd, uid });
            }
        }
    }

    /// A client is readable: decode at most a few messages into actions.
    pub fn on_client(&mut self, slot: usize, out: &mut Vec<Action>) {
        for _ in 0..8 {
            let Some(Some(c)) = self.clients.get(slot) else {
                return;
            };
            let (got, full) = match rustix::net::recv(&c.fd, &mut self.buf[..], RecvFlags::TRUNC) {
                Ok((_, full)) => (full.min(quilt_proto::MAX_REQUEST + 1), full),
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => (0, 0),
            };
            if full == 0 {
                self.drop_client(slot);
                return;
            }
            if c.uid != 0 {
                out.push(Action::Reply(
                    slot,
                    refuse(
                        ErrorCode::Denied,
                        "only root may drive quilt-init over this socket",
                    ),
                ));
                continue;
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
                Ok(Request::List) => out.push(Action::List(slot)),
                Ok(Request::Run {
                    bundle,
                    input,
                    timeout_ms,
                }) => out.push(Action::Run {
                    client: slot,
                    bundle,
                    input,
                    timeout_ms,
                }),
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

    fn drop_client(&mut self, slot: usize) {
        if let Some(c) = self.clients.get_mut(slot) {
            if c.take().is_some() {
                let _ = self.gone.push(slot);
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
