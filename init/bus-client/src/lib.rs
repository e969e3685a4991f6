//! The shared-memory bus between containers, over sealed `memfd`s.
//!
//! The owner (`quilt-init`) creates a channel with [`create_channel`]: one
//! data memfd and one memfd per subscriber slot, laid out by `quilt-bus`
//! and sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`). It hands fds
//! out by token, and identity is which fd went to whom:
//!
//! * the publisher gets the data fd (read-write) and a read-only fd of
//!   every subscriber region ([`read_only_fd`]), and opens a [`Publisher`];
//! * subscriber `k` gets a read-only data fd and its own subscriber fd
//!   (read-write), and opens a [`Subscriber`];
//! * a container without the token gets nothing.
//!
//! Publishing is loan → write in place → publish; receiving is a borrowed
//! view of the slot. Waiting is busy-poll, futex (shared, cross-process) or
//! spin-then-futex ([`Wait`]). Request/reply ([`Requester`], [`Responder`])
//! is a pair of block-mode channels with correlation ids; a directed send
//! is a channel with one subscriber slot.
//!
//! Boundaries: no threads, no allocation sized by a peer, no knowledge of
//! manifests or tokens (that is `quilt-init`'s job).
// Part of PID 1 (channel creation, eviction): no panicking paths.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod endpoints;
pub mod figures;
mod reqrep;
mod sys;

pub use endpoints::{
    create_channel, evict_subscriber, ChannelFds, Publisher, PublisherOptions, RawSample, Sample,
    Subscriber, Wait,
};
pub use quilt_bus::{BusError, Config, Kind, Mode};
pub use reqrep::{Requester, Responder};
pub use sys::read_only_fd;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `memfd_create` failed.
    #[error("memfd_create {name}")]
    Memfd {
        /// The memfd's name.
        name: String,
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// Sizing a new memfd failed.
    #[error("ftruncate memfd to {len} bytes")]
    Truncate {
        /// Requested size.
        len: u64,
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// Restricting a new memfd's mode failed.
    #[error("fchmod memfd")]
    Chmod {
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// Sealing a new memfd failed.
    #[error("seal memfd")]
    Seal {
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// Reading a received fd's seals failed (not a memfd?).
    #[error("read seals of bus fd (is it a memfd?)")]
    Seals {
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// A received fd can shrink: mapping it could SIGBUS us.
    #[error("bus fd is not sealed against shrinking; refusing to map it")]
    NotSealed,
    /// `fstat` of a received fd failed.
    #[error("fstat bus fd")]
    Stat {
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// A received fd has an impossible size.
    #[error("bus fd has {len} bytes, outside the layout's bounds")]
    Size {
        /// Its size.
        len: u64,
    },
    /// `mmap` failed.
    #[error("mmap {len} bytes of bus fd")]
    Map {
        /// Length mapped.
        len: u64,
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// Reopening an fd read-only through `/proc` failed (is /proc mounted?).
    #[error("reopen {path} read-only")]
    Reopen {
        /// The `/proc/self/fd` path.
        path: String,
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// A futex call failed.
    #[error("futex")]
    Futex {
        /// The errno.
        #[source]
        source: rustix::io::Errno,
    },
    /// The layout or ring refused (bad header, full, evicted, ...).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Nothing happened before the timeout.
    #[error("timed out")]
    Timeout,
    /// A request was overwritten while being handled (drop-oldest request
    /// channel); no reply was sent.
    #[error("request {seq} was overwritten while being handled")]
    Overwritten {
        /// Its sequence number.
        seq: u64,
    },
    /// `publish` without a preceding `loan`.
    #[error("publish without a loan")]
    NoLoan,
    /// Too many subscriber fds for the channel.
    #[error("{given} subscriber fds for a channel of {max}")]
    TooManySubscribers {
        /// Fds given.
        given: usize,
        /// The channel's `max_subscribers`.
        max: u64,
    },
}
