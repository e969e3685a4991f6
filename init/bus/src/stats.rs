//! A channel's figures read from its regions' header words, for metrics:
//! messages published, and per subscriber whether it is counted, where
//! its cursor is and how many messages it lost. Read-only and lock-free:
//! the words are snapshots, each consistent on its own.

use crate::layout::{MAGIC, SUB_MAGIC, S_ACTIVE, S_CURSOR, S_LOST, S_MAGIC, W_HEAD, W_MAGIC};

/// Bytes of a data region's header that [`published`] reads.
pub const DATA_STATS_BYTES: usize = (W_HEAD + 1) * 8;
/// Bytes of a subscriber region that [`subscriber`] reads.
pub const SUB_STATS_BYTES: usize = (S_LOST + 1) * 8;

/// One subscriber slot's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberFigures {
    /// Counted by block/refuse back-pressure (a subscriber holds it).
    pub active: bool,
    /// The next sequence it will read.
    pub cursor: u64,
    /// Messages it skipped because they were overwritten (drop-oldest).
    pub lost: u64,
}

fn word(bytes: &[u8], i: usize) -> Option<u64> {
    let b = bytes.get(i * 8..i * 8 + 8)?;
    Some(u64::from_ne_bytes(b.try_into().ok()?))
}

/// Messages published so far, from the first [`DATA_STATS_BYTES`] of a
/// data region; `None` if they are not a bus data region's.
pub fn published(header: &[u8]) -> Option<u64> {
    (word(header, W_MAGIC)? == MAGIC).then_some(())?;
    word(header, W_HEAD)
}

/// A subscriber slot's figures, from the first [`SUB_STATS_BYTES`] of its
/// region; `None` if they are not a subscriber region's.
pub fn subscriber(region: &[u8]) -> Option<SubscriberFigures> {
    (word(region, S_MAGIC)? == SUB_MAGIC).then_some(())?;
    Some(SubscriberFigures {
        active: word(region, S_ACTIVE)? != 0,
        cursor: word(region, S_CURSOR)?,
        lost: word(region, S_LOST)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buf: &mut [u8], i: usize, v: u64) {
        buf[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn figures_come_from_their_words_and_only_under_the_right_magic() {
        let mut data = [0u8; DATA_STATS_BYTES];
        assert_eq!(published(&data), None);
        put(&mut data, W_MAGIC, MAGIC);
        put(&mut data, W_HEAD, 42);
        assert_eq!(published(&data), Some(42));
        assert_eq!(published(&data[..DATA_STATS_BYTES - 1]), None);

        let mut sub = [0u8; SUB_STATS_BYTES];
        put(&mut sub, S_MAGIC, MAGIC);
        assert_eq!(subscriber(&sub), None, "a data magic is not a subscriber's");
        put(&mut sub, S_MAGIC, SUB_MAGIC);
        put(&mut sub, S_ACTIVE, 1);
        put(&mut sub, S_CURSOR, 40);
        put(&mut sub, S_LOST, 3);
        assert_eq!(
            subscriber(&sub),
            Some(SubscriberFigures {
                active: true,
                cursor: 40,
                lost: 3
            })
        );
    }
}
