//! Readiness: one line on the fd the boot config names (`ready = { fd = N
//! }`, s6's convention), written once the address is up, then the fd is
//! closed so quilt-init sees it at once.

use std::io::Write;
use std::os::fd::FromRawFd;

use crate::error::NetError;

/// The fd to notify, until it has been.
#[derive(Debug)]
pub struct Ready(Option<i32>);

impl Ready {
    pub fn new(fd: Option<i32>) -> Self {
        Ready(fd)
    }

    /// Say we are ready (once; later calls do nothing).
    pub fn notify(&mut self) -> Result<(), NetError> {
        let Some(fd) = self.0.take() else {
            return Ok(());
        };
        if fd_is_open(fd) {
            // SAFETY: fd (3..9, checked by the parser) is open, was handed
            // to us by quilt-init for this purpose, and is used by nothing
            // else in this process; the File takes it over and closes it.
            let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
            f.write_all(b"ready\n")
                .map_err(|source| NetError::Ready { fd, source })?;
            Ok(())
        } else {
            Err(NetError::Ready {
                fd,
                source: std::io::Error::from_raw_os_error(libc::EBADF),
            })
        }
    }
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD takes no pointer and only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}
