//! The ring: one publisher ([`Producer`]) and per-subscriber readers
//! ([`Consumer`]) over validated regions. The ordering argument is in the
//! crate documentation; each step below names the step it implements.

use crate::layout::*;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::BusError;

/// Word `i` of a region. Every index used is below the length checked when
/// the region was opened (or made), so the fallback — a word of its own,
/// shared with nobody — never serves; it keeps the ring panic-free, as PID
/// 1, which creates channels and evicts subscribers, must be.
#[cfg(not(loom))]
fn word(words: &[AtomicU64], i: usize) -> &AtomicU64 {
    static SPARE: AtomicU64 = AtomicU64::new(0);
    words.get(i).unwrap_or(&SPARE)
}

/// Under loom (model checking only) an out-of-range index should fail loudly.
#[cfg(loom)]
#[allow(clippy::indexing_slicing)]
fn word(words: &[AtomicU64], i: usize) -> &AtomicU64 {
    &words[i]
}

/// Set in a slot's stamp while the publisher writes it.
const BUSY: u64 = 1 << 63;
/// Bound on the lapped-slot retries of one [`Consumer::peek`].
const PEEK_RETRIES: usize = 4;

/// What a message is, for request/reply on a pair of channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Publish/subscribe or directed send.
    Data,
    /// A request; its reply carries the same correlation id.
    Request,
    /// A reply to the request with the same correlation id.
    Reply,
}

impl Kind {
    /// The word stored in the slot.
    pub fn word(self) -> u64 {
        match self {
            Self::Data => 0,
            Self::Request => 1,
            Self::Reply => 2,
        }
    }

    /// Decodes a slot word.
    pub fn from_word(w: u64) -> Option<Self> {
        match w {
            0 => Some(Self::Data),
            1 => Some(Self::Request),
            2 => Some(Self::Reply),
            _ => None,
        }
    }
}

/// Lays out a fresh, zeroed data region (owner side, before any fd is
/// handed out).
pub fn init_data_region(words: &[AtomicU64], config: &Config) -> Result<Geometry, BusError> {
    let geometry = Geometry::new(config)?;
    let have = (words.len() as u64).saturating_mul(8);
    if have < geometry.region_bytes {
        return Err(BusError::RegionTooSmall {
            need: geometry.region_bytes,
            have,
        });
    }
    for (i, v) in geometry.header_words() {
        if i != W_MAGIC {
            word(words, i).store(v, Ordering::Relaxed);
        }
    }
    word(words, W_HEAD).store(0, Ordering::Relaxed);
    word(words, W_WRITER).store(0, Ordering::Relaxed);
    word(words, W_PUB_WAITING).store(0, Ordering::Relaxed);
    // Magic last: a region with the magic is complete.
    word(words, W_MAGIC).store(MAGIC, Ordering::Release);
    Ok(geometry)
}

/// Lays out a fresh subscriber region (owner side).
pub fn init_sub_region(words: &[AtomicU64]) -> Result<(), BusError> {
    let have = (words.len() as u64).saturating_mul(8);
    if have < SUB_REGION_BYTES {
        return Err(BusError::RegionTooSmall {
            need: SUB_REGION_BYTES,
            have,
        });
    }
    word(words, S_VERSION).store(VERSION, Ordering::Relaxed);
    word(words, S_CURSOR).store(0, Ordering::Relaxed);
    word(words, S_WAITING).store(0, Ordering::Relaxed);
    word(words, S_ACTIVE).store(0, Ordering::Relaxed);
    word(words, S_LOST).store(0, Ordering::Relaxed);
    word(words, S_MAGIC).store(SUB_MAGIC, Ordering::Release);
    Ok(())
}

/// A validated data region. Every index it computes is below the
/// validated `region_bytes`, which is at most `words.len() * 8`.
#[derive(Clone, Copy)]
pub struct DataRegion<'a> {
    words: &'a [AtomicU64],
    geometry: Geometry,
}

impl<'a> DataRegion<'a> {
    /// Validates the header of a mapped region (see
    /// [`Geometry::from_header`]).
    pub fn open(words: &'a [AtomicU64]) -> Result<Self, BusError> {
        let geometry = Geometry::from_header(words)?;
        Ok(Self { words, geometry })
    }

    /// The geometry read at open time.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The `HEAD` word: subscribers futex-wait on its low 32 bits.
    pub fn head_word(&self) -> &'a AtomicU64 {
        word(self.words, W_HEAD)
    }

    /// Messages published so far, as the publisher says.
    pub fn head(&self) -> u64 {
        word(self.words, W_HEAD).load(Ordering::Acquire)
    }

    fn slot(&self, slot: u64, field: usize) -> &'a AtomicU64 {
        word(self.words, self.geometry.slot_word(slot) + field)
    }

    /// Start of slot `slot`'s payload (`slot < capacity`); `slot_size`
    /// bytes follow inside the region.
    #[cfg(not(loom))]
    pub fn payload_ptr(&self, slot: u64) -> *mut u8 {
        let slot = slot % self.geometry.capacity;
        // In bounds: payload_offset(slot) + slot_size <= region_bytes.
        let offset = self.geometry.payload_offset(slot) as usize;
        self.words
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(offset)
            .cast_mut()
    }

    /// Start of the region, for the client's own bookkeeping.
    #[cfg(not(loom))]
    pub fn base_ptr(&self) -> *const u8 {
        self.words.as_ptr().cast()
    }
}

/// A validated subscriber region.
#[derive(Clone, Copy)]
pub struct SubRegion<'a> {
    words: &'a [AtomicU64],
}

impl<'a> SubRegion<'a> {
    /// Validates a mapped subscriber region.
    pub fn open(words: &'a [AtomicU64]) -> Result<Self, BusError> {
        let have = (words.len() as u64).saturating_mul(8);
        if have < SUB_REGION_BYTES {
            return Err(BusError::RegionTooSmall {
                need: SUB_REGION_BYTES,
                have,
            });
        }
        let magic = word(words, S_MAGIC).load(Ordering::Acquire);
        if magic != SUB_MAGIC {
            return Err(BusError::BadMagic { found: magic });
        }
        let version = word(words, S_VERSION).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(BusError::BadVersion { found: version });
        }
        Ok(Self { words })
    }

    /// The `CURSOR` word: a blocked publisher futex-waits on its low 32
    /// bits.
    pub fn cursor_word(&self) -> &'a AtomicU64 {
        word(self.words, S_CURSOR)
    }

    /// Whether block/refuse back-pressure counts this subscriber.
    pub fn is_active(&self) -> bool {
        word(self.words, S_ACTIVE).load(Ordering::Acquire) != 0
    }

    /// Messages this subscriber reports as lost.
    pub fn lost(&self) -> u64 {
        word(self.words, S_LOST).load(Ordering::Relaxed)
    }

    /// Owner side: stop counting a dead or stuck subscriber, so it no
    /// longer holds back a block/refuse channel.
    pub fn evict(&self) {
        word(self.words, S_ACTIVE).store(0, Ordering::Release);
    }
}

/// A slot reserved by [`Producer::reserve`]: write the payload, then
/// [`Producer::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    seq: u64,
    slot: u64,
}

impl Reservation {
    /// Sequence number the message will have.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Slot index (`seq % capacity`).
    pub fn slot(&self) -> u64 {
        self.slot
    }
}

/// The single publisher of a channel.
pub struct Producer<'a> {
    data: DataRegion<'a>,
    token: u64,
    head: u64,
}

impl<'a> Producer<'a> {
    /// Claims the channel with `token` (non-zero, unique per publisher
    /// instance). With `takeover`, replaces a current holder: only do that
    /// once the holder is known dead (the owner reaped it). A dead holder's
    /// half-written slot is never visible and gets rewritten.
    pub fn attach(data: DataRegion<'a>, token: u64, takeover: bool) -> Result<Self, BusError> {
        if token == 0 {
            return Err(BusError::ZeroToken);
        }
        let writer = word(data.words, W_WRITER);
        let mut current = 0;
        // Bounded: two attempts (free, then the holder we saw).
        for _ in 0..2 {
            match writer.compare_exchange(current, token, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    word(data.words, W_PUB_WAITING).store(0, Ordering::Relaxed);
                    let head = word(data.words, W_HEAD).load(Ordering::Acquire);
                    // A previous (hostile) holder may have left any head;
                    // below BUSY, `seq + 1` never overflows nor hits BUSY.
                    if head >= BUSY {
                        writer.store(0, Ordering::Release);
                        return Err(BusError::BadHeader {
                            field: "head",
                            value: head,
                        });
                    }
                    return Ok(Self { data, token, head });
                }
                Err(holder) if holder == token => {
                    return Err(BusError::WriterBusy { holder });
                }
                Err(holder) if takeover => current = holder,
                Err(holder) => return Err(BusError::WriterBusy { holder }),
            }
        }
        Err(BusError::WriterBusy {
            holder: writer.load(Ordering::Acquire),
        })
    }

    /// The region this publisher writes.
    pub fn region(&self) -> &DataRegion<'a> {
        &self.data
    }

    /// Sequence number of the next message.
    pub fn next_seq(&self) -> u64 {
        self.head
    }

    /// Reserves the next slot (publisher steps 1). In block mode, refuses
    /// with [`BusError::Full`] while an active subscriber still needs the
    /// slot. Reserving again without committing reuses the same slot.
    pub fn reserve(&mut self, subs: &[SubRegion<'_>]) -> Result<Reservation, BusError> {
        let holder = word(self.data.words, W_WRITER).load(Ordering::Relaxed);
        if holder != self.token {
            return Err(BusError::Evicted { holder });
        }
        let geometry = &self.data.geometry;
        let seq = self.head;
        if geometry.mode == Mode::Block && seq >= geometry.capacity {
            let limit = geometry.max_subscribers as usize;
            for (index, sub) in subs.iter().take(limit).enumerate() {
                if !sub.is_active() {
                    continue;
                }
                // Acquire: the subscriber's reads of the slot happen-before
                // our overwrite.
                let cursor = word(sub.words, S_CURSOR).load(Ordering::Acquire);
                if seq.saturating_sub(cursor) >= geometry.capacity {
                    return Err(BusError::Full { subscriber: index });
                }
            }
        }
        let slot = seq % geometry.capacity;
        self.data
            .slot(slot, SLOT_STAMP)
            .store(BUSY | (seq + 1), Ordering::Relaxed);
        fence(Ordering::Release);
        Ok(Reservation { seq, slot })
    }

    /// Publishes a reserved slot whose payload is written (steps 2–4).
    pub fn commit(
        &mut self,
        reservation: Reservation,
        len: u64,
        corr: u64,
        kind: Kind,
    ) -> Result<(), BusError> {
        let max = self.data.geometry.slot_size;
        if len > max {
            return Err(BusError::TooLong { len, max });
        }
        if reservation.seq != self.head {
            return Err(BusError::Corrupt {
                seq: reservation.seq,
                field: "reservation",
            });
        }
        let slot = reservation.slot;
        self.data.slot(slot, SLOT_LEN).store(len, Ordering::Relaxed);
        self.data
            .slot(slot, SLOT_CORR)
            .store(corr, Ordering::Relaxed);
        self.data
            .slot(slot, SLOT_KIND)
            .store(kind.word(), Ordering::Relaxed);
        self.data
            .slot(slot, SLOT_STAMP)
            .store(reservation.seq + 1, Ordering::Release);
        self.head = reservation.seq + 1;
        word(self.data.words, W_HEAD).store(self.head, Ordering::Release);
        Ok(())
    }

    /// After a commit: whether a subscriber sleeps on `HEAD` and needs a
    /// futex wake (step 4's Dekker half).
    pub fn needs_wake(&self, subs: &[SubRegion<'_>]) -> bool {
        fence(Ordering::SeqCst);
        let limit = self.data.geometry.max_subscribers as usize;
        subs.iter()
            .take(limit)
            .any(|s| s.is_active() && word(s.words, S_WAITING).load(Ordering::Relaxed) != 0)
    }

    /// Before sleeping on a subscriber's cursor: announce it, then re-check
    /// with [`Producer::reserve`].
    pub fn set_waiting(&self, waiting: bool) {
        word(self.data.words, W_PUB_WAITING).store(u64::from(waiting), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// This publisher's token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Releases the channel for another publisher; this producer is
    /// refused ([`BusError::Evicted`]) from then on.
    pub fn detach(&self) {
        let _ = word(self.data.words, W_WRITER).compare_exchange(
            self.token,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// A message found by [`Consumer::peek`]; its bytes are at
/// [`DataRegion::payload_ptr`]`(slot)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peeked {
    /// Sequence number.
    pub seq: u64,
    /// Slot index.
    pub slot: u64,
    /// Payload length (at most the slot size).
    pub len: u64,
    /// Correlation id.
    pub corr: u64,
    /// Message kind.
    pub kind: Kind,
    stamp: u64,
}

/// One subscriber's reader. It writes only its own subscriber region.
pub struct Consumer<'a> {
    data: DataRegion<'a>,
    sub: SubRegion<'a>,
    cursor: u64,
    lost: u64,
}

impl<'a> Consumer<'a> {
    /// Joins the channel at the current head (older messages are not
    /// delivered) and becomes active for back-pressure.
    pub fn attach(data: DataRegion<'a>, sub: SubRegion<'a>) -> Self {
        let cursor = data.head();
        word(sub.words, S_CURSOR).store(cursor, Ordering::Release);
        word(sub.words, S_WAITING).store(0, Ordering::Relaxed);
        word(sub.words, S_LOST).store(0, Ordering::Relaxed);
        word(sub.words, S_ACTIVE).store(1, Ordering::Release);
        Self {
            data,
            sub,
            cursor,
            lost: 0,
        }
    }

    /// The data region read.
    pub fn region(&self) -> &DataRegion<'a> {
        &self.data
    }

    /// This subscriber's own region.
    pub fn sub_region(&self) -> &SubRegion<'a> {
        &self.sub
    }

    /// Sequence number of the next message to read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Messages skipped because they were overwritten (drop-oldest) or
    /// malformed.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    fn skip_to(&mut self, seq: u64) {
        if seq > self.cursor {
            self.lost = self.lost.saturating_add(seq - self.cursor);
            self.cursor = seq;
            word(self.sub.words, S_LOST).store(self.lost, Ordering::Relaxed);
            word(self.sub.words, S_CURSOR).store(seq, Ordering::Release);
        }
    }

    /// The next message, if any (subscriber steps 1–2). Does not advance:
    /// read the payload, [`Consumer::validate`], then
    /// [`Consumer::consume`]. A malformed message is skipped and reported
    /// as [`BusError::Corrupt`]; the next call moves on.
    pub fn peek(&mut self) -> Result<Option<Peeked>, BusError> {
        let capacity = self.data.geometry.capacity;
        for _ in 0..PEEK_RETRIES {
            let head = word(self.data.words, W_HEAD).load(Ordering::Acquire);
            if head <= self.cursor {
                return Ok(None);
            }
            if head - self.cursor > capacity {
                self.skip_to(head - capacity);
            }
            let seq = self.cursor;
            let slot = seq % capacity;
            let want = seq + 1;
            let stamp = self.data.slot(slot, SLOT_STAMP).load(Ordering::Acquire);
            if stamp == want {
                let len = self.data.slot(slot, SLOT_LEN).load(Ordering::Relaxed);
                let kind = self.data.slot(slot, SLOT_KIND).load(Ordering::Relaxed);
                let corr = self.data.slot(slot, SLOT_CORR).load(Ordering::Relaxed);
                if len > self.data.geometry.slot_size {
                    self.skip_to(want);
                    return Err(BusError::Corrupt { seq, field: "len" });
                }
                let Some(kind) = Kind::from_word(kind) else {
                    self.skip_to(want);
                    return Err(BusError::Corrupt { seq, field: "kind" });
                };
                return Ok(Some(Peeked {
                    seq,
                    slot,
                    len,
                    corr,
                    kind,
                    stamp,
                }));
            }
            if stamp & !BUSY > want {
                // Lapped: the slot already holds (or is taking) a later
                // message; this one is gone.
                self.skip_to(want);
                continue;
            }
            // An older stamp under a head past it: not something an honest
            // publisher produces.
            self.skip_to(want);
            return Err(BusError::Corrupt {
                seq,
                field: "stamp",
            });
        }
        Ok(None)
    }

    /// Whether the bytes read since `peek` are the message (step 4).
    /// Always true in block mode with an honest publisher.
    pub fn validate(&self, peeked: &Peeked) -> bool {
        fence(Ordering::Acquire);
        self.data
            .slot(peeked.slot, SLOT_STAMP)
            .load(Ordering::Relaxed)
            == peeked.stamp
    }

    /// Releases a peeked message and moves on. Returns whether the
    /// publisher sleeps waiting for space and needs a futex wake on this
    /// subscriber's cursor word.
    pub fn consume(&mut self, peeked: &Peeked) -> bool {
        if peeked.seq != self.cursor {
            return false;
        }
        self.cursor = peeked.seq + 1;
        word(self.sub.words, S_CURSOR).store(self.cursor, Ordering::Release);
        if self.data.geometry.mode != Mode::Block {
            return false;
        }
        fence(Ordering::SeqCst);
        word(self.data.words, W_PUB_WAITING).load(Ordering::Relaxed) != 0
    }

    /// Before sleeping: sets `WAITING` and re-reads `HEAD`. Returns the
    /// `HEAD` value to futex-wait on, or `None` if a message arrived
    /// meanwhile (then `WAITING` is cleared again).
    pub fn prepare_wait(&self) -> Option<u64> {
        word(self.sub.words, S_WAITING).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let head = word(self.data.words, W_HEAD).load(Ordering::Relaxed);
        if head > self.cursor {
            self.finish_wait();
            return None;
        }
        Some(head)
    }

    /// After waking up.
    pub fn finish_wait(&self) {
        word(self.sub.words, S_WAITING).store(0, Ordering::Relaxed);
    }

    /// Leaves the channel: no longer counted by back-pressure.
    pub fn detach(&self) {
        word(self.sub.words, S_ACTIVE).store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn region(bytes: u64) -> Vec<AtomicU64> {
        (0..bytes / 8).map(|_| AtomicU64::new(0)).collect()
    }

    fn config(capacity: u64, mode: Mode) -> Config {
        Config {
            capacity,
            slot_size: 64,
            mode,
            max_subscribers: 2,
            channel_id: 7,
        }
    }

    fn write(region: &DataRegion<'_>, r: &Reservation, bytes: &[u8]) {
        let ptr = region.payload_ptr(r.slot());
        // SAFETY: the slot has slot_size (64) bytes and bytes.len() <= 64;
        // the test's region outlives the call.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
    }

    fn read(region: &DataRegion<'_>, p: &Peeked) -> Vec<u8> {
        let ptr = region.payload_ptr(p.slot);
        // SAFETY: len <= slot_size was checked by peek.
        unsafe { core::slice::from_raw_parts(ptr, p.len as usize) }.to_vec()
    }

    #[test]
    fn publish_then_read_in_order() {
        let cfg = config(4, Mode::Block);
        let g = Geometry::new(&cfg).unwrap();
        let data = region(g.region_bytes);
        let subw = region(SUB_REGION_BYTES);
        init_data_region(&data, &cfg).unwrap();
        init_sub_region(&subw).unwrap();
        let d = DataRegion::open(&data).unwrap();
        let subs = [SubRegion::open(&subw).unwrap()];
        let mut p = Producer::attach(d, 1, false).unwrap();
        let mut c = Consumer::attach(d, subs[0]);
        for i in 0..4u8 {
            let r = p.reserve(&subs).unwrap();
            write(&d, &r, &[i; 3]);
            p.commit(r, 3, u64::from(i), Kind::Data).unwrap();
        }
        assert_eq!(p.reserve(&subs), Err(BusError::Full { subscriber: 0 }));
        for i in 0..4u8 {
            let m = c.peek().unwrap().unwrap();
            assert_eq!(read(&d, &m), [i; 3]);
            assert_eq!(m.corr, u64::from(i));
            assert!(c.validate(&m));
            c.consume(&m);
        }
        assert_eq!(c.peek(), Ok(None));
        assert!(p.reserve(&subs).is_ok());
    }

    #[test]
    fn drop_oldest_skips_and_counts() {
        let cfg = config(2, Mode::DropOldest);
        let g = Geometry::new(&cfg).unwrap();
        let data = region(g.region_bytes);
        let subw = region(SUB_REGION_BYTES);
        init_data_region(&data, &cfg).unwrap();
        init_sub_region(&subw).unwrap();
        let d = DataRegion::open(&data).unwrap();
        let subs = [SubRegion::open(&subw).unwrap()];
        let mut p = Producer::attach(d, 1, false).unwrap();
        let mut c = Consumer::attach(d, subs[0]);
        for i in 0..5u8 {
            let r = p.reserve(&subs).unwrap();
            write(&d, &r, &[i]);
            p.commit(r, 1, 0, Kind::Data).unwrap();
        }
        let m = c.peek().unwrap().unwrap();
        assert_eq!((m.seq, read(&d, &m)), (3, [3].to_vec()));
        assert_eq!(c.lost(), 3);
        // Overwritten between peek and validate: detected.
        let r = p.reserve(&subs).unwrap();
        assert!(!c.validate(&m));
        p.commit(r, 1, 0, Kind::Data).unwrap();
        assert!(!c.validate(&m));
    }

    #[test]
    fn second_publisher_refused_until_takeover() {
        let cfg = config(2, Mode::Block);
        let g = Geometry::new(&cfg).unwrap();
        let data = region(g.region_bytes);
        init_data_region(&data, &cfg).unwrap();
        let d = DataRegion::open(&data).unwrap();
        let mut old = Producer::attach(d, 1, false).unwrap();
        assert_eq!(
            Producer::attach(d, 2, false).err(),
            Some(BusError::WriterBusy { holder: 1 })
        );
        let _new = Producer::attach(d, 2, true).unwrap();
        assert_eq!(old.reserve(&[]), Err(BusError::Evicted { holder: 2 }));
    }

    #[test]
    fn hostile_len_and_stamp_are_skipped() {
        let cfg = config(4, Mode::DropOldest);
        let g = Geometry::new(&cfg).unwrap();
        let data = region(g.region_bytes);
        let subw = region(SUB_REGION_BYTES);
        init_data_region(&data, &cfg).unwrap();
        init_sub_region(&subw).unwrap();
        let d = DataRegion::open(&data).unwrap();
        let mut c = Consumer::attach(d, SubRegion::open(&subw).unwrap());
        // Head claims two messages; slot 0 has a huge len, slot 1 no stamp.
        let s0 = g.slot_word(0);
        data[s0 + SLOT_STAMP].store(1, Ordering::Relaxed);
        data[s0 + SLOT_LEN].store(u64::MAX, Ordering::Relaxed);
        data[W_HEAD].store(2, Ordering::Release);
        assert_eq!(
            c.peek(),
            Err(BusError::Corrupt {
                seq: 0,
                field: "len"
            })
        );
        assert_eq!(
            c.peek(),
            Err(BusError::Corrupt {
                seq: 1,
                field: "stamp"
            })
        );
        assert_eq!(c.peek(), Ok(None));
        // A head far ahead is clamped to one ring of messages.
        data[W_HEAD].store(u64::MAX, Ordering::Release);
        let seq = u64::MAX - 4;
        assert_eq!(
            c.peek(),
            Err(BusError::Corrupt {
                seq,
                field: "stamp"
            })
        );
        // Nothing was delivered: every message before the cursor is lost.
        assert_eq!((c.cursor(), c.lost()), (seq + 1, seq + 1));
    }
}
