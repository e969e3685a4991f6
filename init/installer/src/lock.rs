//! One writer at a time: every job (and the serial receiver, per piece)
//! holds an exclusive `flock` on `<store>/lock` while it touches the store,
//! and re-reads the committed state after taking it, since another
//! installer may have committed since this one last looked.

use rustix::fd::OwnedFd;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::path::Path;

/// Held until dropped.
pub struct StoreLock(#[allow(dead_code)] OwnedFd);

/// Wait for the store's lock.
pub fn lock(store: &Path) -> std::io::Result<StoreLock> {
    let _ = std::fs::create_dir_all(store);
    let fd = rustix::fs::open(
        store.join("lock"),
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    loop {
        match rustix::fs::flock(&fd, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(StoreLock(fd)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
