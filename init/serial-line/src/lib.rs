//! A serial line as a tokio byte stream ([`AsyncRead`] + [`AsyncWrite`]):
//! a tty put in raw mode at a given rate, or a Unix socket standing in for
//! one (QEMU's `-chardev socket`). Non-blocking reads and writes on the fd,
//! woken by tokio's reactor; a hung-up line (a pty or virtio port whose
//! other side went away: `EIO`, or end of file) reads as end of stream.
//! Shared by `quiltd --serial` and `quilt mcp --serial`, which speak the
//! gateway's TLS and HTTP over it.
//!
//! A hang-up need not last: a virtio console port reads as hung up while
//! nobody holds its host side, and is live again when somebody does. tokio
//! keeps an fd's "closed" readiness for good once it has seen it, so a
//! line that would block after a hang-up is registered with the reactor
//! afresh before it is waited on; otherwise every wait would return at
//! once and the line would spin a CPU (the virtio port's board side did,
//! and starved the session it served).
//!
//! A line has no connection boundary: what the board sent for one client
//! may still be arriving when the next opens the line. So each session
//! starts with a marker exchange, [`greet`] and [`answer`]: the client
//! sends `QUILT-SERIAL <nonce>\n` and reads until the board echoes that very
//! line, dropping whatever came before it; the board skips anything that
//! is not such a line. Only then does TLS start.

use rustix::fd::{AsFd, OwnedFd};
use rustix::termios::{self, OptionalActions};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// One open serial line.
#[derive(Debug)]
pub struct SerialLine {
    /// Always there but for the moment a registration is renewed.
    fd: Option<AsyncFd<OwnedFd>>,
    /// When the registration was last renewed after a hang-up.
    renewed: Option<Instant>,
    /// The wait before renewing again, while the line stays hung up.
    backoff: Option<Pin<Box<Sleep>>>,
}

/// Least time between two renewals of a line that is still hung up (its
/// writes block until somebody holds the other end): the wait is a poll
/// at this period rather than a spin.
const RENEW_GAP: Duration = Duration::from_millis(50);

/// A line whose fd a failed renewal left unregistered.
fn lost() -> io::Error {
    io::Error::other("the serial line's registration was lost")
}

/// `fd` registered with the reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open fd that stays open, and is the
    // same fd on every as_raw_fd, for as long as the AsyncFd owns it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// Opens `path`: a Unix socket is connected to, a tty set to raw mode at
/// `baud` (its input so far discarded), anything else (a virtio console
/// port) used as it is. Call within a tokio runtime.
pub fn open(path: &Path, baud: u32) -> io::Result<SerialLine> {
    use rustix::fs::{FileType, Mode, OFlags};
    let st = rustix::fs::stat(path)?;
    let fd: OwnedFd = if FileType::from_raw_mode(st.st_mode) == FileType::Socket {
        let s = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            None,
        )?;
        rustix::net::connect(&s, &rustix::net::SocketAddrUnix::new(path)?)?;
        s
    } else {
        rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?
    };
    if termios::isatty(&fd) {
        let mut t = termios::tcgetattr(&fd)?;
        t.make_raw();
        t.set_speed(baud)?;
        termios::tcsetattr(&fd, OptionalActions::Now, &t)?;
        let _ = termios::tcflush(&fd, termios::QueueSelector::IFlush);
    }
    SerialLine::from_fd(fd)
}

impl SerialLine {
    /// An open line's fd (made non-blocking here). Call within a tokio
    /// runtime.
    pub fn from_fd(fd: OwnedFd) -> io::Result<SerialLine> {
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(SerialLine {
            fd: Some(register(fd)?),
            renewed: None,
            backoff: None,
        })
    }

    fn fd(&self) -> io::Result<&AsyncFd<OwnedFd>> {
        self.fd.as_ref().ok_or_else(lost)
    }

    /// Waits until the line has input (or has hung up), without reading.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.fd()?.readable().await?;
        guard.retain_ready();
        Ok(())
    }

    /// The line would block although the reactor last said it hung up:
    /// register it afresh, so that the next wait is a real one (at most
    /// once per [`RENEW_GAP`]: a line still hung up is polled at that
    /// period).
    fn poll_renew(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(at) = self.renewed {
            let due = at + RENEW_GAP;
            if Instant::now() < due {
                let sleep = self
                    .backoff
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                ready!(sleep.as_mut().poll(cx));
            }
        }
        self.backoff = None;
        let old = self.fd.take().ok_or_else(lost)?;
        self.fd = Some(register(old.into_inner())?);
        self.renewed = Some(Instant::now());
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for SerialLine {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd()?.poll_read_ready(cx))?;
            let hung_up = guard.ready().is_read_closed() || guard.ready().is_write_closed();
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref().as_fd(), &mut *unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The other side of a pty or console port is gone.
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Poll::Ready(Ok(()))
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) if hung_up => ready!(this.poll_renew(cx))?,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for SerialLine {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd()?.poll_write_ready(cx))?;
            let hung_up = guard.ready().is_read_closed() || guard.ready().is_write_closed();
            match guard
                .try_io(|fd| rustix::io::write(fd.get_ref().as_fd(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) if hung_up => ready!(this.poll_renew(cx))?,
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A serial line has no half-close; the session above ends it.
        Poll::Ready(Ok(()))
    }
}

/// What starts a session's marker line.
pub const MARK: &[u8] = b"QUILT-SERIAL ";
/// A marker line's nonce: this many hex digits.
const NONCE_HEX: usize = 32;
/// Bytes dropped while looking for a marker before giving up on the
/// attempt (a line full of garbage).
const MAX_SKIP: usize = 64 << 10;

/// Why a session's marker exchange failed.
#[derive(Debug)]
pub enum SyncError {
    /// The line failed or hung up.
    Io(io::Error),
    /// Too much came that was not the marker.
    Garbage(usize),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Io(e) => write!(f, "the serial line: {e}"),
            SyncError::Garbage(n) => {
                write!(f, "{n} bytes on the serial line were not a session marker")
            }
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Io(e) => Some(e),
            SyncError::Garbage(_) => None,
        }
    }
}

/// Reads until a whole marker line (`want`: that exact nonce, or any)
/// has come; returns its nonce. What came before it is dropped.
async fn find_mark<R: AsyncRead + Unpin>(
    line: &mut R,
    want: Option<&[u8]>,
) -> Result<Vec<u8>, SyncError> {
    use tokio::io::AsyncReadExt;
    let mut window: Vec<u8> = Vec::with_capacity(MARK.len() + NONCE_HEX + 1);
    let mut skipped = 0usize;
    let mut byte = [0u8; 1];
    loop {
        // One byte at a time: nothing after the marker may be taken from
        // the line (TLS follows it).
        let n = line.read(&mut byte).await.map_err(SyncError::Io)?;
        if n == 0 {
            return Err(SyncError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        window.push(byte[0]);
        let full = MARK.len() + NONCE_HEX + 1;
        let ok_so_far = window.iter().enumerate().all(|(i, &b)| match i {
            i if i < MARK.len() => MARK.get(i) == Some(&b),
            i if i < MARK.len() + NONCE_HEX => b.is_ascii_hexdigit(),
            _ => b == b'\n',
        });
        if !ok_so_far {
            // Start again at the next position that could begin a marker.
            skipped += 1;
            let from = window
                .iter()
                .skip(1)
                .position(|&b| b == MARK[0])
                .map(|p| p + 1);
            window = from.map(|f| window.split_off(f)).unwrap_or_default();
            if skipped > MAX_SKIP {
                return Err(SyncError::Garbage(skipped));
            }
            continue;
        }
        if window.len() == full {
            let nonce = window[MARK.len()..MARK.len() + NONCE_HEX].to_vec();
            if want.is_none_or(|w| w == nonce.as_slice()) {
                return Ok(nonce);
            }
            skipped += window.len();
            window.clear();
        }
    }
}

/// The client's side: sends a marker with a fresh `nonce` (32 hex digits)
/// and waits for the board to echo it.
pub async fn greet<L: AsyncRead + AsyncWrite + Unpin>(
    line: &mut L,
    nonce: &str,
) -> Result<(), SyncError> {
    use tokio::io::AsyncWriteExt;
    debug_assert_eq!(nonce.len(), NONCE_HEX);
    let mut mark = MARK.to_vec();
    mark.extend_from_slice(nonce.as_bytes());
    mark.push(b'\n');
    line.write_all(&mark).await.map_err(SyncError::Io)?;
    find_mark(line, Some(nonce.as_bytes())).await.map(|_| ())
}

/// The board's side: waits for a client's marker, skipping anything else,
/// and echoes it.
pub async fn answer<L: AsyncRead + AsyncWrite + Unpin>(line: &mut L) -> Result<(), SyncError> {
    use tokio::io::AsyncWriteExt;
    let nonce = find_mark(line, None).await?;
    let mut mark = MARK.to_vec();
    mark.extend_from_slice(&nonce);
    mark.push(b'\n');
    line.write_all(&mark).await.map_err(SyncError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn thread_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// A pty's master end as the line: it reads as hung up while its slave
    /// is closed, and is live again once the slave is open, as a virtio
    /// console port is while nobody holds, then holds, its host side.
    #[tokio::test(flavor = "current_thread")]
    async fn a_line_live_again_after_a_hang_up_waits_without_spinning() {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let open_slave = || {
            let fd = rustix::fs::open(
                name.as_c_str(),
                OFlags::RDWR | OFlags::NOCTTY,
                Mode::empty(),
            )
            .unwrap();
            let mut t = termios::tcgetattr(&fd).unwrap();
            t.make_raw();
            termios::tcsetattr(&fd, OptionalActions::Now, &t).unwrap();
            fd
        };
        drop(open_slave());
        let mut line = SerialLine::from_fd(master).unwrap();
        let mut buf = [0u8; 16];
        // Hung up: end of stream (and the reactor has seen the hang-up).
        assert_eq!(line.read(&mut buf).await.unwrap(), 0);

        let slave = open_slave();
        let before = thread_cpu();
        let idle = tokio::time::timeout(Duration::from_millis(400), line.read(&mut buf)).await;
        let spent = thread_cpu() - before;
        assert!(idle.is_err(), "nothing was sent, yet the read ended");
        assert!(
            spent < Duration::from_millis(100),
            "waiting 400 ms for input took {spent:?} of CPU: the line spins"
        );
        rustix::io::write(&slave, b"hi").unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), line.read(&mut buf))
            .await
            .expect("the line stayed deaf after the hang-up")
            .unwrap();
        assert_eq!(buf.get(..n), Some(&b"hi"[..]));
    }

    #[tokio::test]
    async fn a_unix_socket_stands_in_for_a_line_both_ways() {
        let dir = std::env::temp_dir().join(format!("serial-line-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("line.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let mut line = open(&path, 115_200).unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        line.write_all(b"hello board").await.unwrap();
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello board");
        peer.write_all(b"hi").await.unwrap();
        drop(peer);
        let mut back = Vec::new();
        line.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hi", "data, then end of stream when the peer goes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn sessions_start_in_step_whatever_the_line_held_before() {
        use tokio::io::AsyncWriteExt;
        let (mut board, mut client) = tokio::io::duplex(4096);
        const N: &str = "0123456789abcdef0123456789abcdef";
        // Stale bytes both ways: an old session's tail, a near-miss marker
        // and an older marker with another nonce.
        board
            .write_all(b"\x17\x03\x03old tailQUILT-SERIAL ffffffffffffffffffffffffffffffff\n")
            .await
            .unwrap();
        client.write_all(b"QUILT-SERIAL 12\x00junk").await.unwrap();
        let b = tokio::spawn(async move {
            answer(&mut board).await.unwrap();
            board
        });
        greet(&mut client, N).await.unwrap();
        let mut board = b.await.unwrap();
        // After the markers, the line carries the session's bytes intact.
        client.write_all(b"\x16ClientHello").await.unwrap();
        let mut got = [0u8; 12];
        board.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x16ClientHello");
    }

    #[tokio::test]
    async fn garbage_without_a_marker_is_given_up_on() {
        use tokio::io::AsyncWriteExt;
        let (mut board, mut client) = tokio::io::duplex(1 << 20);
        let junk = vec![b'x'; MAX_SKIP + 10];
        client.write_all(&junk).await.unwrap();
        assert!(matches!(
            answer(&mut board).await,
            Err(SyncError::Garbage(_))
        ));
    }

    #[tokio::test]
    async fn a_pty_in_raw_mode_carries_every_byte_value() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let mut line = open(Path::new(name.to_str().unwrap()), 115_200).unwrap();
        let all: Vec<u8> = (0..=255u8).collect();
        line.write_all(&all).await.unwrap();
        let mut got = vec![0u8; all.len()];
        let mut at = 0;
        while at < got.len() {
            at += rustix::io::read(&master, &mut got[at..]).unwrap();
        }
        assert_eq!(got, all, "raw mode: no byte translated or eaten");
    }
}
