//! Where every word of a region lives, and the bounds a header must meet.
//!
//! Data region (little-endian on the machines we run on; the bus never
//! leaves one machine, so words are native-endian `u64`):
//!
//! ```text
//! word  0  MAGIC "QUILTBUS"          } line 0: written once by the owner
//! word  1  VERSION                   }
//! word  2  capacity (slots)          }
//! word  3  slot_size (payload bytes) }
//! word  4  mode (0 drop-oldest, 1 block/refuse)
//! word  5  max_subscribers
//! word  6  region_bytes
//! word  7  channel_id (owner's label, informational)
//! word  8  HEAD: messages published   } line 1: publisher; futex word
//! word 16  WRITER: publisher token     } line 2: publisher
//! word 17  PUB_WAITING                 }
//! byte 192 slots, each `stride` bytes:
//!          stamp, len, corr, kind (4 words), then slot_size payload bytes
//! ```
//!
//! Subscriber region (one page, only its subscriber writes it):
//!
//! ```text
//! word  0  SUB_MAGIC "QUILTSUB"
//! word  1  VERSION
//! word  8  CURSOR: next sequence to read  (futex word for a blocked publisher)
//! word  9  WAITING: subscriber sleeps on HEAD
//! word 16  ACTIVE: counted by block/refuse back-pressure
//! word 17  LOST: messages skipped (drop-oldest), informational
//! ```

use crate::BusError;

/// `"QUILTBUS"` as a native-endian word.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"QUILTBUS");
/// `"QUILTSUB"` as a native-endian word.
pub(crate) const SUB_MAGIC: u64 = u64::from_le_bytes(*b"QUILTSUB");
/// Layout version; a reader refuses any other.
pub(crate) const VERSION: u64 = 1;

pub(crate) const W_MAGIC: usize = 0;
pub(crate) const W_VERSION: usize = 1;
pub(crate) const W_CAPACITY: usize = 2;
pub(crate) const W_SLOT_SIZE: usize = 3;
pub(crate) const W_MODE: usize = 4;
pub(crate) const W_MAX_SUBS: usize = 5;
pub(crate) const W_REGION_BYTES: usize = 6;
pub(crate) const W_CHANNEL_ID: usize = 7;
pub(crate) const W_HEAD: usize = 8;
pub(crate) const W_WRITER: usize = 16;
pub(crate) const W_PUB_WAITING: usize = 17;

pub(crate) const S_MAGIC: usize = 0;
pub(crate) const S_VERSION: usize = 1;
pub(crate) const S_CURSOR: usize = 8;
pub(crate) const S_WAITING: usize = 9;
pub(crate) const S_ACTIVE: usize = 16;
pub(crate) const S_LOST: usize = 17;

/// Slot words: stamp, len, correlation id, kind.
pub(crate) const SLOT_STAMP: usize = 0;
pub(crate) const SLOT_LEN: usize = 1;
pub(crate) const SLOT_CORR: usize = 2;
pub(crate) const SLOT_KIND: usize = 3;

/// Bytes before the first slot (three cache lines).
pub const DATA_HEADER_BYTES: u64 = 192;
/// Bytes of a slot before its payload.
pub const SLOT_HEADER_BYTES: u64 = 32;
/// Size of a subscriber region (one page).
pub const SUB_REGION_BYTES: u64 = 4096;
/// Most slots a channel may have.
pub const MAX_CAPACITY: u64 = 1 << 16;
/// Largest slot payload.
pub const MAX_SLOT_SIZE: u64 = 16 << 20;
/// Most subscribers a channel may have.
pub const MAX_SUBSCRIBERS: u64 = 64;
/// Largest data region.
pub const MAX_REGION_BYTES: u64 = 1 << 30;
const LINE: u64 = 64;
const PAGE: u64 = 4096;

/// What the publisher does when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Overwrite the oldest message (telemetry); a slow subscriber loses
    /// messages and is told how many.
    DropOldest,
    /// Refuse to publish until every active subscriber has consumed the
    /// oldest slot (commands); the client may wait with a timeout.
    Block,
}

impl Mode {
    fn word(self) -> u64 {
        match self {
            Self::DropOldest => 0,
            Self::Block => 1,
        }
    }

    fn from_word(w: u64) -> Option<Self> {
        match w {
            0 => Some(Self::DropOldest),
            1 => Some(Self::Block),
            _ => None,
        }
    }
}

/// A channel as its owner configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of slots (1..=[`MAX_CAPACITY`]).
    pub capacity: u64,
    /// Payload bytes per slot (8..=[`MAX_SLOT_SIZE`], a multiple of 8).
    pub slot_size: u64,
    /// Back-pressure.
    pub mode: Mode,
    /// Subscriber regions (1..=[`MAX_SUBSCRIBERS`]); 1 for a directed
    /// channel from one container to another.
    pub max_subscribers: u64,
    /// The owner's label for the channel (not validated, not trusted).
    pub channel_id: u64,
}

/// The validated shape of a data region; readers keep this private copy
/// and never re-read the header's geometry words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of slots.
    pub capacity: u64,
    /// Payload bytes per slot.
    pub slot_size: u64,
    /// Bytes from one slot to the next.
    pub stride: u64,
    /// Back-pressure.
    pub mode: Mode,
    /// Subscriber regions.
    pub max_subscribers: u64,
    /// Bytes of the data region.
    pub region_bytes: u64,
    /// The owner's label.
    pub channel_id: u64,
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    Some(v.checked_add(to - 1)? / to * to)
}

impl Geometry {
    /// Checks a configuration against the bounds and computes its layout.
    pub fn new(config: &Config) -> Result<Self, BusError> {
        let bad = |field, value| Err(BusError::BadConfig { field, value });
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            return bad("capacity", config.capacity);
        }
        if config.slot_size < 8
            || config.slot_size > MAX_SLOT_SIZE
            || !config.slot_size.is_multiple_of(8)
        {
            return bad("slot_size", config.slot_size);
        }
        if config.max_subscribers == 0 || config.max_subscribers > MAX_SUBSCRIBERS {
            return bad("max_subscribers", config.max_subscribers);
        }
        // Bounded inputs: no overflow, but stay checked for the reader path.
        let stride =
            round_up(SLOT_HEADER_BYTES + config.slot_size, LINE).ok_or(BusError::BadConfig {
                field: "slot_size",
                value: config.slot_size,
            })?;
        let region_bytes = stride
            .checked_mul(config.capacity)
            .and_then(|b| b.checked_add(DATA_HEADER_BYTES))
            .and_then(|b| round_up(b, PAGE))
            .ok_or(BusError::BadConfig {
                field: "capacity",
                value: config.capacity,
            })?;
        if region_bytes > MAX_REGION_BYTES {
            return bad("capacity", config.capacity);
        }
        Ok(Self {
            capacity: config.capacity,
            slot_size: config.slot_size,
            stride,
            mode: config.mode,
            max_subscribers: config.max_subscribers,
            region_bytes,
            channel_id: config.channel_id,
        })
    }

    /// Reads and validates a header written by a peer that may be hostile.
    ///
    /// `words` is the whole mapped region. Returns the geometry to use from
    /// now on; the caller must not trust the header words again.
    pub fn from_header(words: &[crate::sync::AtomicU64]) -> Result<Self, BusError> {
        use crate::sync::Ordering::Acquire;
        let have = (words.len() as u64).saturating_mul(8);
        if have < DATA_HEADER_BYTES {
            return Err(BusError::RegionTooSmall {
                need: DATA_HEADER_BYTES,
                have,
            });
        }
        let w = |i: usize| words.get(i).map_or(0, |a| a.load(Acquire));
        let magic = w(W_MAGIC);
        if magic != MAGIC {
            return Err(BusError::BadMagic { found: magic });
        }
        let version = w(W_VERSION);
        if version != VERSION {
            return Err(BusError::BadVersion { found: version });
        }
        let mode = w(W_MODE);
        let mode = Mode::from_word(mode).ok_or(BusError::BadHeader {
            field: "mode",
            value: mode,
        })?;
        let config = Config {
            capacity: w(W_CAPACITY),
            slot_size: w(W_SLOT_SIZE),
            mode,
            max_subscribers: w(W_MAX_SUBS),
            channel_id: w(W_CHANNEL_ID),
        };
        let geometry = Self::new(&config).map_err(|e| match e {
            BusError::BadConfig { field, value } => BusError::BadHeader { field, value },
            other => other,
        })?;
        let stated = w(W_REGION_BYTES);
        if stated != geometry.region_bytes {
            return Err(BusError::BadHeader {
                field: "region_bytes",
                value: stated,
            });
        }
        if have < geometry.region_bytes {
            return Err(BusError::RegionTooSmall {
                need: geometry.region_bytes,
                have,
            });
        }
        Ok(geometry)
    }

    /// The config this geometry was made from.
    pub fn config(&self) -> Config {
        Config {
            capacity: self.capacity,
            slot_size: self.slot_size,
            mode: self.mode,
            max_subscribers: self.max_subscribers,
            channel_id: self.channel_id,
        }
    }

    /// Word index of slot `slot`'s first word (its stamp).
    pub(crate) fn slot_word(&self, slot: u64) -> usize {
        ((DATA_HEADER_BYTES + slot * self.stride) / 8) as usize
    }

    /// Byte offset of slot `slot`'s payload from the region start.
    pub fn payload_offset(&self, slot: u64) -> u64 {
        DATA_HEADER_BYTES + slot * self.stride + SLOT_HEADER_BYTES
    }

    pub(crate) fn header_words(&self) -> [(usize, u64); 8] {
        [
            (W_MAGIC, MAGIC),
            (W_VERSION, VERSION),
            (W_CAPACITY, self.capacity),
            (W_SLOT_SIZE, self.slot_size),
            (W_MODE, self.mode.word()),
            (W_MAX_SUBS, self.max_subscribers),
            (W_REGION_BYTES, self.region_bytes),
            (W_CHANNEL_ID, self.channel_id),
        ]
    }
}
