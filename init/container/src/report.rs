//! A child's report of how far it got before exec, read from a
//! close-on-exec pipe: EOF means the exec happened, `N` bytes say where
//! and why setup stopped. [`Report::poll`] never blocks, so a caller
//! with an event loop (PID 1) reads it when the pipe is readable;
//! [`Report::wait`] blocks, for tools and benchmarks.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

/// The read end of a report pipe, and what has come so far.
#[derive(Debug)]
pub struct Report<const N: usize> {
    pipe: OwnedFd,
    buf: [u8; N],
    got: usize,
}

/// How a report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<const N: usize> {
    /// The pipe closed with nothing written: the exec happened.
    Execed,
    /// The child wrote its failure.
    Failed([u8; N]),
    /// The pipe closed part way through a report (or could not be read):
    /// the child died in setup without saying where.
    Broken,
}

impl<const N: usize> Report<N> {
    /// Take the read end of a report pipe (made non-blocking here).
    pub fn new(pipe: OwnedFd) -> std::io::Result<Report<N>> {
        rustix::io::ioctl_fionbio(&pipe, true)?;
        Ok(Report {
            pipe,
            buf: [0; N],
            got: 0,
        })
    }

    /// The pipe, to watch for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// What has come, without blocking: `None` while the child is still
    /// setting up.
    pub fn poll(&mut self) -> Option<Outcome<N>> {
        loop {
            let rest = self.buf.get_mut(self.got..).unwrap_or(&mut []);
            match rustix::io::read(&self.pipe, rest) {
                Ok(0) if self.got == 0 => return Some(Outcome::Execed),
                Ok(0) => return Some(Outcome::Broken),
                Ok(n) => {
                    self.got += n;
                    if self.got >= N {
                        return Some(Outcome::Failed(self.buf));
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return None,
                Err(_) => return Some(Outcome::Broken),
            }
        }
    }

    /// Block until the report is complete.
    pub fn wait(mut self) -> Outcome<N> {
        if rustix::io::ioctl_fionbio(&self.pipe, false).is_err() {
            return Outcome::Broken;
        }
        loop {
            if let Some(outcome) = self.poll() {
                return outcome;
            }
        }
    }
}

impl<const N: usize> Outcome<N> {
    /// The failure's bytes, if the child wrote a whole report.
    pub fn failure(self) -> Option<[u8; N]> {
        match self {
            Outcome::Failed(b) => Some(b),
            Outcome::Execed | Outcome::Broken => None,
        }
    }
}
