//! The client side of quilt-init's control socket: connect, send one
//! request frame, read reply frames. Blocking, one connection per request
//! (the server serves many; a follow-up such as `Logs { follow }` keeps
//! its connection and reads replies with [`Connection::next_reply`]).
//!
//! Shared by the host-and-board CLI (`quilt ping`, `quilt ps`, …) and by
//! `quiltd`, which calls it from a blocking thread. The wire format itself
//! is `quilt-proto`'s (pure); this crate owns only the socket I/O and its
//! errors, including the one fd a request may carry (`InstallFd`).

use quilt_proto::{FrameError, Reply, Request};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::path::{Path, PathBuf};

/// The root socket quilt-init serves on a board.
pub const ROOT_SOCKET: &str = "/run/quilt/control.sock";

/// Why a control call failed (below the protocol: a refusal by quilt-init
/// is a [`Reply::Error`], not an error here).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be made.
    #[error("creating a control socket")]
    Socket(#[source] rustix::io::Errno),
    /// The path is not a usable socket address (too long).
    #[error("{path}: not a usable socket path")]
    Address {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustix::io::Errno,
    },
    /// Nobody answers there, or we may not connect.
    #[error("connecting to {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustix::io::Errno,
    },
    /// The request did not encode (too large).
    #[error("encoding the request")]
    Encode(#[source] FrameError),
    /// Sending failed.
    #[error("sending the request")]
    Send(#[source] rustix::io::Errno),
    /// Receiving failed.
    #[error("waiting for the reply")]
    Recv(#[source] rustix::io::Errno),
    /// quilt-init hung up before answering.
    #[error("quilt-init closed the connection")]
    Closed,
    /// The reply did not decode.
    #[error("decoding the reply")]
    Decode(#[source] FrameError),
}

impl ClientError {
    /// The server refused the connection outright (no such socket, or a
    /// permission problem): worth a hint about which socket and which user.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// One connection to a control socket.
pub struct Connection {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Connection {
    /// Connect to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Connection, ClientError> {
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
            .map_err(ClientError::Socket)?;
        let addr = SocketAddrUnix::new(path).map_err(|source| ClientError::Address {
            path: path.to_owned(),
            source,
        })?;
        rustix::net::connect(&fd, &addr).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        Ok(Connection {
            fd,
            buf: Vec::new(),
        })
    }

    /// Make [`Self::next_reply`] give up after `d` with
    /// `ClientError::Recv(Errno::AGAIN)` (a reader of a long stream can
    /// then check whether anyone still listens).
    pub fn set_read_timeout(&self, d: std::time::Duration) -> Result<(), ClientError> {
        rustix::net::sockopt::set_socket_timeout(
            &self.fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(d),
        )
        .map_err(ClientError::Recv)
    }

    /// The socket, for callers that send more than a frame (fds).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Send one request frame.
    pub fn send(&self, req: &Request) -> Result<(), ClientError> {
        let frame = quilt_proto::encode_request(req).map_err(ClientError::Encode)?;
        rustix::net::send(&self.fd, &frame, SendFlags::NOSIGNAL).map_err(ClientError::Send)?;
        Ok(())
    }

    /// Send one request frame with `fd` riding along (SCM_RIGHTS), as
    /// `InstallFd` wants: quilt-init reads the fd, not the socket.
    pub fn send_with_fd(&self, req: &Request, fd: BorrowedFd<'_>) -> Result<(), ClientError> {
        let frame = quilt_proto::encode_request(req).map_err(ClientError::Encode)?;
        let fds = [fd];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        // One fd always fits the space sized for one.
        let _ = anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &self.fd,
            &[std::io::IoSlice::new(&frame)],
            &mut anc,
            SendFlags::NOSIGNAL,
        )
        .map_err(ClientError::Send)?;
        Ok(())
    }

    /// The next reply on this connection.
    pub fn next_reply(&mut self) -> Result<Reply, ClientError> {
        // One byte more than the cap, so an oversized reply shows as such.
        self.buf.resize(quilt_proto::MAX_REPLY + 1, 0);
        let (_, n) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::TRUNC)
            .map_err(ClientError::Recv)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        let frame = self.buf.get(..n).unwrap_or(&self.buf[..]);
        quilt_proto::decode_reply(frame).map_err(ClientError::Decode)
    }
}

/// Connect to `path` and send `req`; read replies with
/// [`Connection::next_reply`].
pub fn open(path: &Path, req: &Request) -> Result<Connection, ClientError> {
    let conn = Connection::connect(path)?;
    conn.send(req)?;
    Ok(conn)
}

/// Send `req` with `fd` and wait for the reply (`InstallFd`).
pub fn call_with_fd(path: &Path, req: &Request, fd: BorrowedFd<'_>) -> Result<Reply, ClientError> {
    let mut conn = Connection::connect(path)?;
    conn.send_with_fd(req, fd)?;
    conn.next_reply()
}

/// Send one request and wait for its reply.
pub fn call(path: &Path, req: &Request) -> Result<Reply, ClientError> {
    open(path, req)?.next_reply()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_a_connect_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let err = call(&path, &Request::Ping).err().unwrap();
        assert!(err.is_connect());
        assert!(matches!(err, ClientError::Connect { path: p, .. } if p == path));
    }

    #[test]
    fn a_request_and_its_reply_travel_as_frames() {
        use rustix::net::{bind, listen, socket};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let srv = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        bind(&srv, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        listen(&srv, 1).unwrap();
        let t = std::thread::spawn(move || {
            let c = rustix::net::accept(&srv).unwrap();
            let mut buf = vec![0u8; 1024];
            let (_, n) = rustix::net::recv(&c, &mut buf[..], RecvFlags::empty()).unwrap();
            assert_eq!(
                quilt_proto::decode_request(&buf[..n]).unwrap(),
                Request::Ping
            );
            let rep = quilt_proto::encode_reply(&Reply::Pong { server: "t".into() }).unwrap();
            rustix::net::send(&c, &rep, SendFlags::empty()).unwrap();
        });
        let r = call(&path, &Request::Ping).unwrap();
        assert_eq!(r, Reply::Pong { server: "t".into() });
        t.join().unwrap();
    }
}
