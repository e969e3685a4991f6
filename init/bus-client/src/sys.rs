//! The syscall seam: sealed memfds, mappings, futex words. All of this
//! crate's `unsafe` is here.

use crate::Error;
use core::sync::atomic::{AtomicU32, AtomicU64};
use quilt_bus::sync::Ordering;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{MemfdFlags, OFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;
use std::time::Duration;

/// Seals every bus memfd carries: its size can never change, so a mapping
/// never faults with SIGBUS, and nobody can add or remove seals.
pub(crate) const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Creates a sealed memfd of `len` zero bytes and lets `init` lay it out
/// through a temporary read-write mapping.
pub(crate) fn sealed_memfd(
    name: &str,
    len: u64,
    init: impl FnOnce(&[AtomicU64]) -> Result<(), Error>,
) -> Result<OwnedFd, Error> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|source| Error::Memfd {
            name: name.into(),
            source,
        })?;
    rustix::fs::ftruncate(&fd, len).map_err(|source| Error::Truncate { len, source })?;
    // Owner only: nobody reopens it through /proc for writing unless it
    // is root with CAP_DAC_OVERRIDE.
    rustix::fs::fchmod(&fd, rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR)
        .map_err(|source| Error::Chmod { source })?;
    {
        let map = Mapping::new(fd.as_fd(), len, true)?;
        init(map.words())?;
    }
    rustix::fs::fcntl_add_seals(&fd, SEALS).map_err(|source| Error::Seal { source })?;
    Ok(fd)
}

/// A read-only descriptor of the same memfd (`/proc/self/fd/N`, `O_RDONLY`):
/// its holder cannot map it writable.
pub fn read_only_fd(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|source| Error::Reopen { path, source })
}

/// A shared mapping of a whole bus memfd, unmapped on drop.
pub(crate) struct Mapping {
    ptr: *mut core::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, accessed only through
// atomics (and raw payload copies the bus protocol validates); the pointer
// is valid from any thread until drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out `&[AtomicU64]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd`, shared, writable or read-only.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: u64, writable: bool) -> Result<Self, Error> {
        let len = usize::try_from(len).map_err(|_| Error::Size { len })?;
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // Populate: fault every page in now, not on the message path.
        let flags = MapFlags::SHARED | MapFlags::POPULATE;
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases
        // no Rust object; the fd is a memfd sealed (or about to be sealed by
        // us, the creator) against shrinking, so the pages stay backed.
        let ptr = unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, prot, flags, fd, 0) }
            .map_err(|source| Error::Map {
                len: len as u64,
                source,
            })?;
        Ok(Self { ptr, len })
    }

    /// Maps a memfd received from a peer: checks it is sealed against
    /// shrinking and within `max` bytes first (a peer must not make us
    /// map a file that can shrink under us, nor an unbounded one).
    pub(crate) fn open(fd: BorrowedFd<'_>, max: u64, writable: bool) -> Result<Self, Error> {
        let seals = rustix::fs::fcntl_get_seals(fd).map_err(|source| Error::Seals { source })?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(Error::NotSealed);
        }
        let stat = rustix::fs::fstat(fd).map_err(|source| Error::Stat { source })?;
        let len = u64::try_from(stat.st_size).unwrap_or(0);
        if len == 0 || len > max || !len.is_multiple_of(8) {
            return Err(Error::Size { len });
        }
        Self::new(fd, len, writable)
    }

    /// The mapping as words. mmap returns page-aligned memory and `len`
    /// is a multiple of 8.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: ptr is page-aligned (so aligned for AtomicU64), valid for
        // len bytes until drop (tied to &self), and AtomicU64 permits the
        // concurrent writes other processes make.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), self.len / 8) }
    }

    /// The words with the lifetime of the owning struct, which must keep
    /// this mapping alive longer than any use of them.
    ///
    /// # Safety
    /// The caller must drop every reference before the mapping.
    pub(crate) unsafe fn words_static(&self) -> &'static [AtomicU64] {
        // SAFETY: see words(); the lifetime is the caller's promise.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), self.len / 8) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from our mmap; no reference outlives self
        // (words() borrows self, words_static() users drop theirs first).
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// The 32 bits of a 64-bit shared word the kernel compares in a futex:
/// its low half. The word is only ever accessed as a `u64` from Rust; the
/// kernel reads the half in `FUTEX_WAIT`.
fn futex_half(word: &AtomicU64) -> &AtomicU32 {
    let offset = if cfg!(target_endian = "little") { 0 } else { 1 };
    // SAFETY: an AtomicU64 is 8-aligned and 8 bytes, so either 4-byte half
    // is a valid, aligned AtomicU32 for as long as `word` is borrowed.
    unsafe { &*(word as *const AtomicU64).cast::<AtomicU32>().add(offset) }
}

/// Sleeps while the low half of `word` equals the low half of `seen`, at
/// most `timeout`. Shared futex (not PRIVATE): the waker is in another
/// process. Spurious returns are fine; callers re-check.
pub(crate) fn futex_wait(
    word: &AtomicU64,
    seen: u64,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    let ts = timeout.map(|t| rustix::thread::futex::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(
        futex_half(word),
        futex::Flags::empty(),
        seen as u32,
        ts.as_ref(),
    ) {
        Ok(())
        | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR | rustix::io::Errno::TIMEDOUT) => {
            Ok(())
        }
        Err(source) => Err(Error::Futex { source }),
    }
}

/// Wakes every process sleeping on `word`.
pub(crate) fn futex_wake(word: &AtomicU64) -> Result<(), Error> {
    futex::wake(futex_half(word), futex::Flags::empty(), i32::MAX as u32)
        .map(drop)
        .map_err(|source| Error::Futex { source })
}

/// A token unlikely to repeat across publishers: pid, time, counter.
pub(crate) fn fresh_token() -> u64 {
    use core::sync::atomic::AtomicU64 as Counter;
    static NEXT: Counter = Counter::new(1);
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u64;
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = (now.tv_sec as u64).wrapping_mul(1_000_000_007) ^ now.tv_nsec as u64;
    ((pid << 40) ^ t ^ (n << 20)) | 1
}
