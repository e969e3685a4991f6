//! quiltd's link to quilt-init: the blocking control client run on
//! tokio's blocking pool (never on the executor's threads), at most
//! [`MAX_IN_FLIGHT`] calls at once so a flood of requests queues here
//! instead of at PID 1's client cap.

use quilt_control_client::ClientError;
use quilt_proto::{Reply, Request};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Control calls in flight at once (quilt-init serves 64 clients and 16
/// runs; the gateway leaves room for the operator's own `quilt`).
pub const MAX_IN_FLIGHT: usize = 16;

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
}

/// The control socket this service was granted.
#[derive(Debug, Clone)]
pub struct Control {
    socket: Arc<PathBuf>,
    gate: Arc<Semaphore>,
}

impl Control {
    /// For the socket at `socket`.
    pub fn new(socket: PathBuf) -> Control {
        Control {
            socket: Arc::new(socket),
            gate: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// One request, one reply.
    pub async fn call(&self, req: Request) -> Result<Reply, ControlError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| ControlError::Closed)?;
        let socket = Arc::clone(&self.socket);
        tokio::task::spawn_blocking(move || quilt_control_client::call(&socket, &req))
            .await
            .map_err(ControlError::Task)?
            .map_err(ControlError::Client)
    }
}
