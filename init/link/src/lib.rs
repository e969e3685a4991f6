//! The air-gapped update link: moving a signed `.qb` bundle to a board over
//! a serial line (a UART, a virtio console, a QEMU chardev) with nothing but
//! the two ends.
//!
//! ```text
//! frame    = COBS( postcard(Msg) ‖ CRC-32C LE ) 0x00
//! sender   Hello ─▶            ◀─ Welcome
//!          Offer(root, sizes) ─▶  ◀─ Want(ranges of the .qb)
//!          Piece(offset, bytes) ─▶ … ◀─ Plan, Want …
//!                                 ◀─ Result(installed | refused: why)
//! ```
//!
//! The receiver drives: it asks for byte ranges of the sender's `.qb` file
//! (envelope first, then the manifest, then only the chunks its store does
//! not hold), re-asks for anything lost or corrupted, and keeps what it has
//! across a dropped link or a reboot. It installs only through the store's
//! full `.qb` checks. The sender only serves ranges of one file.
//!
//! Boundaries: this crate is pure (`no_std` + `alloc`, no syscalls). Both
//! ends are "feed bytes in, take bytes out" state machines with an injected
//! clock ([`sender::Sender`], [`receiver::Receiver`]), which suits PID 1's
//! nonblocking epoll loop; [`blocking`] drives either over `embedded-io`
//! traits (a host tty, a microcontroller UART). Storage comes in through
//! [`receiver::Storage`]; the `store` feature implements it on quilt-store.
//! [`sim`] is a deterministic simulated serial line for tests and figures.
//! The protocol is specified in `docs/update-link.md`.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod blocking;
pub mod frame;
pub mod msg;
pub mod outbox;
pub mod receiver;
pub mod sender;
pub mod sim;
#[cfg(feature = "store")]
pub mod store;

pub use frame::{Decoder, FrameError};
pub use msg::{Msg, Outcome, Range, PROTOCOL_VERSION};
pub use receiver::{Receiver, ReceiverConfig, Storage};
pub use sender::{Sender, SenderConfig};

/// Largest decoded frame (postcard message plus CRC) either end accepts;
/// the receive buffer is this, COBS-encoded, and no more.
pub const MAX_FRAME: usize = 16 * 1024;
/// Largest piece payload either end may ask for.
pub const MAX_PIECE: u32 = 8 * 1024;
/// Piece size the receiver asks for unless configured otherwise: small
/// enough that a corrupted frame costs little to re-send, large enough that
/// framing costs about 0.6 %.
pub const DEFAULT_PIECE: u32 = 2048;
/// Most ranges in one `Want`.
pub const MAX_RANGES: usize = 32;
/// Largest `.qb` envelope: magic, length, a 64 KiB header, 16 signatures.
pub const MAX_ENVELOPE: u32 = 8
    + 4
    + quilt_bundle::MAX_HEADER
    + 1
    + quilt_bundle::MAX_SIGNATURES as u32 * quilt_bundle::sig::SIGNATURE_ENTRY_LEN as u32;
/// Longest refusal reason carried in a `Result` (longer ones are cut).
pub const MAX_REASON: usize = 1024;

/// One end of the link as the drivers see it: bytes in, bytes out, a clock.
pub trait Endpoint {
    /// Bytes arrived from the line at `now_ms`.
    fn feed(&mut self, bytes: &[u8], now_ms: u64);
    /// Time passed (call at least every few tens of milliseconds when idle).
    fn tick(&mut self, now_ms: u64);
    /// Bytes waiting to go out on the line.
    fn pending(&mut self) -> &[u8];
    /// `n` bytes of [`Endpoint::pending`] were written.
    fn consume(&mut self, n: usize);
    /// True once this end has nothing more to do.
    fn finished(&self) -> bool;
}
