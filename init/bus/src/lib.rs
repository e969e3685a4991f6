//! The shared-memory bus of Quilt: the layout of a channel and the ring
//! algorithms over it, with no I/O.
//!
//! A channel is one *data region* (header + a ring of fixed-size slots,
//! written only by the publisher) and one small *subscriber region* per
//! subscriber (its cursor and wait flag, written only by that subscriber).
//! `quilt-bus-client` backs each region with a sealed `memfd`, maps the
//! data region read-write for the publisher and read-only for subscribers,
//! and does the futex/busy-poll waiting; this crate only says where every
//! word lives and in which order it is read and written, so the same code
//! runs in `quilt-init`, in a container, under a fuzzer and under `loom`.
//!
//! Every region is seen as a `&[AtomicU64]`. A peer may write anything into
//! the words it can write, at any time: the constructors validate the
//! header once and keep a private copy of the geometry, indices are always
//! `seq % capacity` of that copy, lengths are checked against it, and no
//! loop runs longer than a constant.
//!
//! # Memory ordering
//!
//! One publisher at a time owns a channel (the `WRITER` word). Message `s`
//! lives in slot `s % capacity`, whose `stamp` word is `s + 1` once it is
//! complete and `BUSY | (s + 1)` while it is being written (`0`: never
//! written). The publisher's `head` word is the number of published
//! messages.
//!
//! Publisher, for message `s`:
//! 1. `stamp.store(BUSY | s+1, Relaxed)`, then `fence(Release)`;
//! 2. write payload, `len`, `corr`, `kind` (plain / relaxed stores);
//! 3. `stamp.store(s+1, Release)`;
//! 4. `head.store(s+1, Release)`; `fence(SeqCst)`; load each subscriber's
//!    `waiting` word and futex-wake `head` if one is set.
//!
//! Subscriber, at cursor `c`:
//! 1. `h = head.load(Acquire)`; nothing new unless `h > c`;
//! 2. `s1 = stamp.load(Acquire)`; the message is readable only if
//!    `s1 == c+1`, and `len` must fit the slot;
//! 3. read the payload in place;
//! 4. `fence(Acquire)`; `stamp.load(Relaxed) == s1` proves the bytes read
//!    in 3 were not overwritten meanwhile.
//!
//! Why a complete message is never torn: the release store of `s+1` (3)
//! comes after every payload write (2), and the subscriber's acquire load
//! that reads `s+1` makes those writes visible. Why an overwrite is always
//! detected (drop-oldest): if any byte read in 3 came from a later writer's
//! step 2, that writer's `fence(Release)` (after its `BUSY` store)
//! synchronizes with the subscriber's `fence(Acquire)` in 4, so the re-read
//! of `stamp` sees `BUSY` or a later value and the check fails (Boehm's
//! seqlock argument). A publisher that dies between 1 and 3 leaves `BUSY`
//! in the stamp and `head` unchanged, so no subscriber ever treats that
//! slot as message `s`; the next publisher starts again at `head` and
//! rewrites the slot.
//!
//! In block/refuse mode the publisher reuses slot `s % capacity` only after
//! every active subscriber's cursor is past `s - capacity`. Subscribers
//! store their cursor with `Release` after reading, the publisher loads it
//! with `Acquire` before writing, so the reads happen-before the overwrite:
//! a well-behaved subscriber never sees a failed validation in that mode.
//!
//! Lost wake-ups are excluded by a Dekker pair: a subscriber stores
//! `waiting = 1`, `fence(SeqCst)`, re-reads `head`, then sleeps in
//! `FUTEX_WAIT(head, old)`; the publisher stores `head`, `fence(SeqCst)`,
//! loads `waiting`. One of them sees the other's store, and the kernel
//! compares `head` atomically with the sleep. The publisher waiting for
//! space does the same with its `PUB_WAITING` word and a subscriber's
//! cursor.
//!
//! Payload bytes are read while a drop-oldest publisher may be overwriting
//! them; that is the seqlock contract: the reader must not act on a view
//! until validation in step 4 succeeds (or copy it out first).
#![no_std]
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

#[cfg(test)]
extern crate std;

mod error;
mod layout;
mod ring;
pub mod stats;

pub use error::BusError;
pub use layout::{
    Config, Geometry, Mode, DATA_HEADER_BYTES, MAX_CAPACITY, MAX_REGION_BYTES, MAX_SLOT_SIZE,
    MAX_SUBSCRIBERS, SLOT_HEADER_BYTES, SUB_REGION_BYTES,
};
pub use ring::{
    init_data_region, init_sub_region, Consumer, DataRegion, Kind, Peeked, Producer, Reservation,
    SubRegion,
};

/// Atomics: `core`'s, or `loom`'s when model checking.
pub mod sync {
    #[cfg(loom)]
    pub use loom::sync::atomic::{fence, AtomicU64, Ordering};

    #[cfg(not(loom))]
    pub use core::sync::atomic::{fence, AtomicU64, Ordering};
}
