//! quiltd's link to quilt-init: the blocking control client run on
//! tokio's blocking pool (never on the executor's threads), at most
//! [`MAX_IN_FLIGHT`] calls at once so a flood of requests queues here
//! instead of at PID 1's client cap; and long streams (logs with follow,
//! events), at most [`MAX_STREAMS`], each read by a thread of its own that
//! hangs up within [`STREAM_POLL`] of its listener going away.

use quilt_control_client::ClientError;
use quilt_proto::{Reply, Request};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Control calls in flight at once (quilt-init serves 64 clients and 16
/// runs; the gateway leaves room for the operator's own `quilt`).
pub const MAX_IN_FLIGHT: usize = 16;
/// Streams open at once (each holds one of quilt-init's client slots).
pub const MAX_STREAMS: usize = 8;
/// How often a stream's reader checks that its listener is still there.
pub const STREAM_POLL: Duration = Duration::from_secs(2);
/// Replies a stream buffers for a slow listener before its reader waits.
const STREAM_BUFFER: usize = 64;

/// Why a call did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket call failed.
    #[error("control socket")]
    Client(#[from] ClientError),
    /// The blocking task died (a panic in the client).
    #[error("control call task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The gate was closed (shutting down).
    #[error("shutting down")]
    Closed,
    /// [`MAX_STREAMS`] streams are open.
    #[error("{MAX_STREAMS} streams are open already; close one")]
    TooManyStreams,
    /// The stream's reader thread could not start.
    #[error("starting a stream reader")]
    Thread(#[source] std::io::Error),
}

/// The control socket this service was granted.
#[derive(Debug, Clone)]
pub struct Control {
    socket: Arc<PathBuf>,
    gate: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl Control {
    /// For the socket at `socket`.
    pub fn new(socket: PathBuf) -> Control {
        Control {
            socket: Arc::new(socket),
            gate: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// One request, one reply.
    pub async fn call(&self, req: Request) -> Result<Reply, ControlError> {
        self.blocking(move |socket| quilt_control_client::call(socket, &req))
            .await
    }

    /// `InstallFd` with `fd` (a sealed memfd holding a bundle): the
    /// reply comes when quilt-install has finished with it.
    pub async fn install_fd(&self, fd: rustix::fd::OwnedFd) -> Result<Reply, ControlError> {
        self.blocking(move |socket| {
            quilt_control_client::call_with_fd(
                socket,
                &Request::InstallFd,
                rustix::fd::AsFd::as_fd(&fd),
            )
        })
        .await
    }

    /// `f` on the blocking pool with the socket's path, once one of the
    /// [`MAX_IN_FLIGHT`] places is free.
    async fn blocking<F>(&self, f: F) -> Result<Reply, ControlError>
    where
        F: FnOnce(&std::path::Path) -> Result<Reply, ClientError> + Send + 'static,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| ControlError::Closed)?;
        let socket = Arc::clone(&self.socket);
        tokio::task::spawn_blocking(move || f(&socket))
            .await
            .map_err(ControlError::Task)?
            .map_err(ControlError::Client)
    }

    /// A request answered by many replies (`Logs` with follow, `Events`):
    /// they arrive on the receiver until quilt-init hangs up or fails
    /// (the last item is then the error), or the receiver is dropped.
    pub fn stream(
        &self,
        req: Request,
    ) -> Result<mpsc::Receiver<Result<Reply, ControlError>>, ControlError> {
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| ControlError::TooManyStreams)?;
        let socket = Arc::clone(&self.socket);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        std::thread::Builder::new()
            .name("quiltd-stream".into())
            .spawn(move || {
                let _permit = permit;
                let fail = |e: ClientError| {
                    let _ = tx.blocking_send(Err(ControlError::Client(e)));
                };
                let mut conn = match quilt_control_client::open(&socket, &req) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                if let Err(e) = conn.set_read_timeout(STREAM_POLL) {
                    return fail(e);
                }
                loop {
                    match conn.next_reply() {
                        Ok(r) => {
                            if tx.blocking_send(Ok(r)).is_err() {
                                return;
                            }
                        }
                        Err(ClientError::Recv(e)) if e == rustix::io::Errno::AGAIN => {
                            if tx.is_closed() {
                                return;
                            }
                        }
                        Err(e) => return fail(e),
                    }
                }
            })
            .map_err(ControlError::Thread)?;
        Ok(rx)
    }
}
