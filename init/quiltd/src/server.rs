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

/// A serial session longer than this is ended (a client that went away
/// mid-request on a line that cannot say so).
pub const SERIAL_SESSION: Duration = Duration::from_secs(300);
/// How often a line with nobody at the other end is looked at.
const SERIAL_IDLE: Duration = Duration::from_millis(200);

/// Pause after a failed serial session: a line full of garbage is not
/// read (and logged) as fast as it comes.
const SERIAL_FAILED: Duration = Duration::from_millis(50);

/// How long the end of a serial session waits for the client's TLS
/// `close_notify`, the line's mark that the session's bytes are over.
const SERIAL_CLOSE: Duration = Duration::from_secs(3);

/// Serves `app` over the serial line at `path` (see
/// `quilt_serial_line::open`), one TLS session at a time, each begun by
/// the client's marker line (`quilt_serial_line::answer`). Clients over
/// serial send `Connection: close` and end their session with a TLS
/// `close_notify` once the reply is read; quiltd waits for it, then keeps
/// the line for the next session (it sends none of its own: a line has
/// no connection to close, and its bytes would reach the next client).
/// A session that fails (garbage on the line, a hang-up, a handshake
/// past its deadline) leaves the line as it is: a ClientHello may be on
/// its way already. The line stays open while nobody is at the other end
/// (a virtio console port drops what comes while it is closed); only a
/// line that fails is opened afresh (a tty's stale input flushed).
pub async fn serve_serial(
    path: std::path::PathBuf,
    baud: u32,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut kept: Option<quilt_serial_line::SerialLine> = None;
    loop {
        let line = match kept.take() {
            Some(l) => l,
            None => match quilt_serial_line::open(&path, baud) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "quiltd: event=serial-failed path={} error=\"{e}\"",
                        path.display()
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            },
        };
        // Idle until a client speaks; then the handshake has its deadline.
        if line.readable().await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // The session's marker first: whatever precedes it on the line
        // (an old session's tail, noise) is dropped.
        let mut line = line;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, quilt_serial_line::answer(&mut line)).await {
            Ok(Ok(())) => {}
            Ok(Err(quilt_serial_line::SyncError::Io(e)))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                kept = Some(line);
                tokio::time::sleep(SERIAL_IDLE).await;
                continue;
            }
            Ok(Err(quilt_serial_line::SyncError::Io(e))) => {
                eprintln!(
                    "quiltd: event=serial-failed path={} error=\"{e}\"",
                    path.display()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(Err(e)) => {
                eprintln!("quiltd: event=serial-noise error=\"{e}\"");
                kept = Some(line);
                tokio::time::sleep(SERIAL_FAILED).await;
                continue;
            }
            Err(_) => {
                kept = Some(line);
                continue;
            }
        }
        let accept = acceptor.accept(line).into_fallible();
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(s)) => s,
            // Nobody at the other end (a console port whose host side is
            // closed reads as end of file, and polls ready): look again
            // soon, with the line kept open - a virtio console port drops
            // what arrives while the guest has it closed.
            Ok(Err((e, line))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                kept = Some(line);
                tokio::time::sleep(SERIAL_IDLE).await;
                continue;
            }
            // A client that gave up (a wrong pin) or garbage: the line is
            // kept as it is. Nothing is drained or flushed: the next
            // client may be sending already, and garbage just fails the
            // next handshake too.
            Ok(Err((e, line))) => {
                eprintln!("quiltd: event=tls-failed peer=serial error=\"{e}\"");
                kept = Some(line);
                tokio::time::sleep(SERIAL_FAILED).await;
                continue;
            }
            Err(_) => {
                eprintln!("quiltd: event=tls-timeout peer=serial");
                continue;
            }
        };
        let svc = TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(tls), svc)
            .without_shutdown();
        match tokio::time::timeout(SERIAL_SESSION, conn).await {
            Ok(Ok(parts)) => {
                let mut tls = parts.io.into_inner();
                let mut sink = [0u8; 1024];
                let closed = tokio::time::timeout(SERIAL_CLOSE, async {
                    while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                if closed.is_ok() {
                    kept = Some(tls.into_inner().0);
                }
            }
            Ok(Err(e)) => eprintln!("quiltd: event=connection-error peer=serial error=\"{e}\""),
            Err(_) => eprintln!("quiltd: event=serial-session-too-long"),
        }
    }
}
