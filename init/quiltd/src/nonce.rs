//! Replay protection: every accepted signature's `(keyid, nonce)` is
//! remembered until its `created` time leaves the skew window, after which
//! the request would be refused as stale anyway. Bounded: when the cache
//! is full of live entries, new requests are refused (`Full`) rather than
//! an entry dropped, since a dropped entry is a replay let through.

use std::collections::HashMap;

/// Why a nonce was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Seen within the window.
    #[error("this nonce was used already: sign every request afresh")]
    Replayed,
    /// The cache holds only live entries.
    #[error("too many signed requests in the replay window; retry shortly")]
    Full,
}

/// The cache.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    skew: i64,
    /// `keyid nonce` → the UNIX second from which it may be forgotten.
    seen: HashMap<String, i64>,
}

impl NonceCache {
    /// A cache for at most `capacity` live nonces, `skew` seconds each way.
    pub fn new(capacity: usize, skew: i64) -> NonceCache {
        NonceCache {
            capacity,
            skew,
            seen: HashMap::new(),
        }
    }

    /// Records a nonce of a request `created` at that time, `now` being
    /// the server's clock; fails if it was seen or there is no room.
    pub fn insert(
        &mut self,
        keyid: &str,
        nonce: &str,
        created: i64,
        now: i64,
    ) -> Result<(), NonceError> {
        let key = format!("{keyid} {nonce}");
        if let Some(&until) = self.seen.get(&key) {
            if until >= now {
                return Err(NonceError::Replayed);
            }
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(NonceError::Full);
            }
        }
        self.seen.insert(key, created.saturating_add(self.skew));
        Ok(())
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_works_once_per_key_within_the_window() {
        let mut c = NonceCache::new(8, 60);
        c.insert("k1", "n", 1000, 1000).unwrap();
        assert_eq!(c.insert("k1", "n", 1000, 1030), Err(NonceError::Replayed));
        assert_eq!(c.insert("k1", "n", 1000, 1060), Err(NonceError::Replayed));
        // Another key may use the same string.
        c.insert("k2", "n", 1000, 1000).unwrap();
        // Once its window has passed, the entry may go (the request is
        // stale by then and refused before it gets here).
        c.insert("k1", "n", 1000, 1061).unwrap();
    }

    #[test]
    fn full_of_live_entries_refuses_and_expired_ones_make_room() {
        let mut c = NonceCache::new(2, 60);
        c.insert("k", "a", 1000, 1000).unwrap();
        c.insert("k", "b", 1000, 1000).unwrap();
        assert_eq!(c.insert("k", "c", 1000, 1000), Err(NonceError::Full));
        assert_eq!(c.len(), 2);
        c.insert("k", "c", 1100, 1100).unwrap();
        assert_eq!(c.len(), 1);
        // `a` is forgotten, but "b" was never replayable once stale.
        c.insert("k", "a", 1100, 1100).unwrap();
    }
}
