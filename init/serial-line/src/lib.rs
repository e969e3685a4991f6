//! A serial line as a tokio byte stream ([`AsyncRead`] + [`AsyncWrite`]):
//! a tty put in raw mode at a given rate, or a Unix socket standing in for
//! one (QEMU's `-chardev socket`). Non-blocking reads and writes on the fd,
//! woken by tokio's reactor; a hung-up line (a pty or virtio port whose
//! other side went away: `EIO`, or end of file) reads as end of stream.
//! Shared by `quiltd --serial` and `quilt mcp --serial`, which speak the
//! gateway's TLS and HTTP over it.

use rustix::fd::{AsFd, OwnedFd};
use rustix::termios::{self, OptionalActions};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One open serial line.
#[derive(Debug)]
pub struct SerialLine {
    fd: AsyncFd<OwnedFd>,
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
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    // SAFETY: an OwnedFd is a valid open fd that stays open, and is the
    // same fd on every as_raw_fd, for as long as the AsyncFd owns it.
    let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
    Ok(SerialLine { fd })
}

impl SerialLine {
    /// Waits until the line has input (or has hung up), without reading.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        guard.retain_ready();
        Ok(())
    }
}

impl AsyncRead for SerialLine {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
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
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| rustix::io::write(fd.get_ref().as_fd(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
