//! Accepting connections: TCP, a TLS handshake with a deadline, then
//! HTTP/1.1 with a header-read deadline (slow clients are cut), at most
//! [`MAX_CONNECTIONS`] at once (more wait in the listen backlog). A
//! connection that ends with a request body unread (refused before it
//! was read: a bad signature on an upload, a body over the cap) is closed
//! the way nginx's lingering close does it: the reply is sent, the write
//! side shut, and what the client still sends read and dropped for up to
//! [`LINGER`], so its TCP stack does not answer the unread bytes with a
//! reset that destroys the reply before the client has read it.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Deadline for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection's unread input is drained.
pub const LINGER: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(tls);
    let gate = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("quiltd: event=accept-failed error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    eprintln!("quiltd: event=tls-failed peer={peer} error=\"{e}\"");
                    return;
                }
                Err(_) => {
                    eprintln!("quiltd: event=tls-timeout peer={peer}");
                    return;
                }
            };
            let svc = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc)
                .without_shutdown();
            match conn.await {
                Ok(parts) => linger(parts.io.into_inner()).await,
                Err(e) => eprintln!("quiltd: event=connection-error peer={peer} error=\"{e}\""),
            }
        });
    }
}

/// Shuts the write side, then reads and drops input until the client
/// closes or [`LINGER`] has passed.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 16 << 10];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
