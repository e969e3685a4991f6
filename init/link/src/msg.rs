//! The messages, postcard-encoded inside frames. Field order and variant
//! order are the wire format: append, never reorder, and bump
//! [`PROTOCOL_VERSION`] for anything else.

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// Version spoken by this crate, carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u16 = 1;

/// A byte range of the sender's `.qb` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub offset: u64,
    pub len: u32,
}

impl Range {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// How a transfer ended, as the board reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Committed to the store (or already there: `already`).
    Installed {
        name: String,
        version: u64,
        /// Chunks the store wrote (0 when everything was already held).
        chunks_written: u32,
        /// Content bytes the store already held (dedup).
        bytes_reused: u64,
        already: bool,
    },
    /// Not installed; nothing changed. The reason says what and why.
    Refused { reason: String },
}

/// One frame's message.
// `Want` holds its ranges inline (≈ 520 bytes): a message lives for one
// frame, and fixed capacity is the point (no allocation sized by the peer).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg<'a> {
    /// Sender → receiver: start (or restart) a session.
    Hello { version: u16, max_piece: u32 },
    /// Receiver → sender: the piece size and window the receiver wants.
    Welcome {
        version: u16,
        max_piece: u32,
        window: u32,
    },
    /// Sender → receiver: the bundle on offer. Unsigned hints only; the
    /// receiver checks them against the signed envelope it then fetches.
    Offer {
        root: [u8; 32],
        qb_len: u64,
        envelope_len: u32,
    },
    /// Receiver → sender: what this transfer will fetch, after dedup and
    /// what earlier attempts left behind.
    Plan {
        root: [u8; 32],
        /// Bytes of the `.qb` still to fetch.
        need: u64,
        /// Content bytes already held (shared chunks, an earlier attempt).
        held: u64,
        chunks_need: u32,
        chunks_held: u32,
    },
    /// Receiver → sender: send these ranges, in this order. Fixed capacity,
    /// so a hostile length prefix cannot make the decoder allocate.
    Want {
        ranges: heapless::Vec<Range, { crate::MAX_RANGES }>,
    },
    /// Sender → receiver: the bytes at `offset`.
    Piece {
        offset: u64,
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// Receiver → sender: the end of the session.
    Result { root: [u8; 32], outcome: Outcome },
}

/// Cuts `reason` to at most [`crate::MAX_REASON`] bytes on a char boundary.
pub fn clip(mut reason: String) -> String {
    if reason.len() > crate::MAX_REASON {
        let mut n = crate::MAX_REASON;
        while !reason.is_char_boundary(n) {
            n -= 1;
        }
        reason.truncate(n);
    }
    reason
}
