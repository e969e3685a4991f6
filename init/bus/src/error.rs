//! Typed errors: one variant per refused configuration, header or operation.

use core::fmt;

/// Why a layout was refused or a ring operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// A configuration value is outside the compiled-in bounds.
    BadConfig {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The region is smaller than its header says (or than the header).
    RegionTooSmall {
        /// Bytes the layout needs.
        need: u64,
        /// Bytes mapped.
        have: u64,
    },
    /// The region does not start with the bus magic.
    BadMagic {
        /// The word found.
        found: u64,
    },
    /// The region was laid out by another version of this crate.
    BadVersion {
        /// The version found.
        found: u64,
    },
    /// A header field is out of bounds or inconsistent.
    BadHeader {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Another publisher holds the channel; take it over only once it is
    /// known to be dead.
    WriterBusy {
        /// The holder's token.
        holder: u64,
    },
    /// This publisher was replaced by a takeover and must stop.
    Evicted {
        /// The new holder's token.
        holder: u64,
    },
    /// Block/refuse mode: the ring is full because this subscriber has not
    /// consumed the oldest slot.
    Full {
        /// Index of the slowest subscriber.
        subscriber: usize,
    },
    /// A message length exceeds the slot size.
    TooLong {
        /// Requested length.
        len: u64,
        /// Slot payload size.
        max: u64,
    },
    /// A message in the ring is malformed (hostile or buggy publisher); it
    /// has been skipped.
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// What was wrong.
        field: &'static str,
    },
    /// Token 0 is reserved for "no publisher".
    ZeroToken,
    /// A subscriber region index out of range for this channel.
    NoSuchSubscriber {
        /// The index.
        index: usize,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig { field, value } => {
                write!(f, "bus config {field}={value} is out of bounds")
            }
            Self::RegionTooSmall { need, have } => {
                write!(f, "bus region has {have} bytes, layout needs {need}")
            }
            Self::BadMagic { found } => write!(f, "not a bus region (magic {found:#018x})"),
            Self::BadVersion { found } => write!(f, "bus layout version {found} is not supported"),
            Self::BadHeader { field, value } => {
                write!(f, "bus header field {field}={value} is invalid")
            }
            Self::WriterBusy { holder } => write!(
                f,
                "channel already has a publisher (token {holder}); take over only after it died"
            ),
            Self::Evicted { holder } => {
                write!(f, "publisher was replaced by token {holder}")
            }
            Self::Full { subscriber } => {
                write!(f, "channel full: subscriber {subscriber} has not caught up")
            }
            Self::TooLong { len, max } => {
                write!(f, "message of {len} bytes exceeds the slot size {max}")
            }
            Self::Corrupt { seq, field } => {
                write!(f, "message {seq} is malformed ({field}); skipped")
            }
            Self::ZeroToken => write!(f, "publisher token 0 is reserved"),
            Self::NoSuchSubscriber { index } => write!(f, "no subscriber region {index}"),
        }
    }
}

impl core::error::Error for BusError {}
