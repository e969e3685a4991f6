//! A fixed-size byte ring: the last N bytes of a log, never more.

/// Keeps the most recent `N` bytes written to it.
pub struct Ring<const N: usize> {
    buf: [u8; N],
    /// Next write position.
    head: usize,
    /// Bytes held (≤ N).
    len: usize,
    /// Bytes dropped because the ring was full.
    dropped: u64,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Ring {
            buf: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    /// Append, overwriting the oldest bytes when full.
    pub fn write(&mut self, data: &[u8]) {
        if N == 0 {
            return;
        }
        // Only the last N bytes of a large write can survive.
        let skip = data.len().saturating_sub(N);
        self.dropped = self.dropped.saturating_add(skip as u64);
        for &b in data.iter().skip(skip) {
            if let Some(slot) = self.buf.get_mut(self.head) {
                *slot = b;
            }
            self.head = (self.head + 1) % N;
            if self.len == N {
                self.dropped = self.dropped.saturating_add(1);
            } else {
                self.len += 1;
            }
        }
    }

    /// The held bytes, oldest first, as two slices.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let start = (self.head + N - self.len) % N.max(1);
        if start + self.len <= N {
            (self.buf.get(start..start + self.len).unwrap_or(&[]), &[])
        } else {
            (
                self.buf.get(start..).unwrap_or(&[]),
                self.buf.get(..self.head).unwrap_or(&[]),
            )
        }
    }

    /// Bytes ever written: a position readers can follow from.
    pub fn total(&self) -> u64 {
        self.dropped.saturating_add(self.len as u64)
    }

    /// What was written since position `pos` (a [`Ring::total`]): the
    /// count of those bytes no longer held, and the held ones.
    pub fn since(&self, pos: u64) -> (u64, Vec<u8>) {
        let total = self.total();
        let missed = self.dropped.saturating_sub(pos);
        let want = usize::try_from(total.saturating_sub(pos)).unwrap_or(usize::MAX);
        let (a, b) = self.as_slices();
        let keep = want.min(self.len);
        let skip = self.len - keep;
        let out = a
            .iter()
            .chain(b.iter())
            .skip(skip)
            .copied()
            .collect::<Vec<u8>>();
        (missed, out)
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes overwritten or skipped so far.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    fn contents<const N: usize>(r: &Ring<N>) -> Vec<u8> {
        let (a, b) = r.as_slices();
        [a, b].concat()
    }

    #[test]
    fn keeps_the_last_n_bytes() {
        let mut r = Ring::<8>::new();
        r.write(b"abc");
        assert_eq!(contents(&r), b"abc");
        r.write(b"defghij");
        assert_eq!(contents(&r), b"cdefghij");
        assert_eq!(r.dropped(), 2);
        r.write(b"0123456789abcdef");
        assert_eq!(contents(&r), b"89abcdef");
        assert_eq!(r.len(), 8);
    }

    #[test]
    fn followers_get_what_is_new_and_a_count_of_what_they_missed() {
        let mut r = Ring::<8>::new();
        r.write(b"abc");
        let p = r.total();
        assert_eq!(r.since(0), (0, b"abc".to_vec()));
        r.write(b"de");
        assert_eq!(r.since(p), (0, b"de".to_vec()));
        r.write(b"0123456789");
        // 15 written, 8 held (89 dropped... "89" is held: 2..9 + ...).
        assert_eq!(r.total(), 15);
        assert_eq!(r.since(p), (4, b"de0123456789"[4..].to_vec()));
        assert_eq!(r.since(15), (0, Vec::new()));
    }

    #[test]
    fn memory_is_bounded_whatever_is_written() {
        let mut r = Ring::<16>::new();
        for i in 0..10_000u32 {
            r.write(&i.to_le_bytes());
        }
        assert_eq!(r.len(), 16);
        assert_eq!(r.dropped(), 40_000 - 16);
    }
}
