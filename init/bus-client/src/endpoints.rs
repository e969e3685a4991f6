//! Owner side (create, evict), [`Publisher`] and [`Subscriber`].

use crate::sys::{self, Mapping};
use crate::Error;
use quilt_bus::sync::Ordering;
use quilt_bus::{
    init_data_region, init_sub_region, BusError, Config, Consumer, DataRegion, Geometry, Kind,
    Peeked, Producer, Reservation, SubRegion, MAX_REGION_BYTES, SUB_REGION_BYTES,
};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Longest single futex sleep: waits re-check at least this often, so an
/// evicted subscriber or a dead peer that never wakes us costs latency,
/// not a hang.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Busy-poll iterations between clock reads.
const SPINS_PER_CLOCK: u32 = 256;

/// How an endpoint waits for data (subscriber) or space (publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Busy-poll: lowest latency, burns a core.
    Spin,
    /// Sleep in a shared futex until woken.
    Futex,
    /// Busy-poll `spins` times, then sleep.
    SpinThenFutex {
        /// Polls before sleeping.
        spins: u32,
    },
}

/// The memfds of a new channel, owned by its creator.
#[derive(Debug)]
pub struct ChannelFds {
    /// The data region (read-write: the publisher's).
    pub data: OwnedFd,
    /// One region per subscriber slot (read-write: subscriber `k`'s).
    pub subscribers: Vec<OwnedFd>,
    /// The channel's validated geometry.
    pub geometry: Geometry,
}

impl ChannelFds {
    /// A read-only data fd, for a subscriber.
    pub fn data_read_only(&self) -> Result<OwnedFd, Error> {
        sys::read_only_fd(self.data.as_fd())
    }

    /// Read-only fds of every subscriber region, for the publisher.
    pub fn subscribers_read_only(&self) -> Result<Vec<OwnedFd>, Error> {
        self.subscribers
            .iter()
            .map(|fd| sys::read_only_fd(fd.as_fd()))
            .collect()
    }
}

/// Creates a channel: sealed memfds named `quilt-bus:<name>`, laid out
/// for `config`. Sizes come only from `config`, bounded by `quilt-bus`.
pub fn create_channel(name: &str, config: &Config) -> Result<ChannelFds, Error> {
    let geometry = Geometry::new(config)?;
    let data = sys::sealed_memfd(&format!("quilt-bus:{name}"), geometry.region_bytes, |w| {
        init_data_region(w, config).map(drop).map_err(Error::from)
    })?;
    let subscribers = (0..geometry.max_subscribers)
        .map(|k| {
            sys::sealed_memfd(&format!("quilt-bus:{name}:sub{k}"), SUB_REGION_BYTES, |w| {
                init_sub_region(w).map_err(Error::from)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChannelFds {
        data,
        subscribers,
        geometry,
    })
}

/// Owner side: stop counting a dead or stuck subscriber in block mode
/// (its region fd must be the read-write one).
pub fn evict_subscriber(sub_fd: BorrowedFd<'_>) -> Result<(), Error> {
    let map = Mapping::open(sub_fd, SUB_REGION_BYTES, true)?;
    SubRegion::open(map.words())?.evict();
    Ok(())
}

/// Options of [`Publisher::open`].
#[derive(Debug, Clone, Copy)]
pub struct PublisherOptions {
    /// Identifies this publisher in the `WRITER` word; `None` picks a
    /// fresh one.
    pub token: Option<u64>,
    /// Replace the current publisher. Only once it is known dead (the
    /// owner reaped it): two live publishers can tear messages.
    pub takeover: bool,
    /// How to wait for space in block mode.
    pub wait: Wait,
    /// Futex-wake sleeping subscribers after each publish (one fence and
    /// a look at each subscriber's `WAITING` word; the syscall only when
    /// one sleeps). Off only if every subscriber busy-polls.
    pub notify: bool,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            token: None,
            takeover: false,
            wait: Wait::Futex,
            notify: true,
        }
    }
}

/// The publisher of a channel: loan a slot, write it in place, publish.
pub struct Publisher {
    // Borrow the mappings below with a 'static lifetime: declared (so
    // dropped) before them.
    producer: Producer<'static>,
    subs: Vec<SubRegion<'static>>,
    pending: Option<Reservation>,
    options: PublisherOptions,
    _sub_maps: Vec<Mapping>,
    _data_map: Mapping,
}

impl Publisher {
    /// Opens the channel for publishing from the data fd (read-write) and
    /// read-only fds of its subscriber regions.
    pub fn open<S: AsFd>(
        data_fd: impl AsFd,
        sub_fds: &[S],
        options: PublisherOptions,
    ) -> Result<Self, Error> {
        let data_map = Mapping::open(data_fd.as_fd(), MAX_REGION_BYTES, true)?;
        // SAFETY: producer and subs are dropped before the mappings (field
        // order) and never handed out with the 'static lifetime.
        let data = DataRegion::open(unsafe { data_map.words_static() })?;
        let max = data.geometry().max_subscribers;
        if sub_fds.len() as u64 > max {
            return Err(Error::TooManySubscribers {
                given: sub_fds.len(),
                max,
            });
        }
        let sub_maps = sub_fds
            .iter()
            .map(|fd| Mapping::open(fd.as_fd(), SUB_REGION_BYTES, false))
            .collect::<Result<Vec<_>, _>>()?;
        let subs = sub_maps
            .iter()
            // SAFETY: as above.
            .map(|m| SubRegion::open(unsafe { m.words_static() }))
            .collect::<Result<Vec<_>, _>>()?;
        let token = options.token.unwrap_or_else(sys::fresh_token);
        let producer = Producer::attach(data, token, options.takeover)?;
        Ok(Self {
            producer,
            subs,
            pending: None,
            options,
            _sub_maps: sub_maps,
            _data_map: data_map,
        })
    }

    /// Payload bytes per message.
    pub fn slot_size(&self) -> usize {
        self.producer.region().geometry().slot_size as usize
    }

    /// The channel's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.producer.region().geometry()
    }

    /// Sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.producer.next_seq()
    }

    fn slot_mut(&mut self, reservation: Reservation) -> &mut [u8] {
        let ptr = self.producer.region().payload_ptr(reservation.slot());
        let len = self.slot_size();
        // SAFETY: the slot's slot_size bytes lie inside the mapping, which
        // lives as long as self; we hold the WRITER token and the slot is
        // BUSY, so no other process writes it and no reader accepts it
        // until commit (readers of the old message validate and fail).
        unsafe { core::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Loans the next slot without waiting; block mode refuses with
    /// [`BusError::Full`] while a subscriber lags a whole ring.
    pub fn loan(&mut self) -> Result<&mut [u8], Error> {
        let reservation = self.producer.reserve(&self.subs)?;
        self.pending = Some(reservation);
        Ok(self.slot_mut(reservation))
    }

    /// Loans the next slot, waiting (per [`PublisherOptions::wait`]) up to
    /// `timeout` for space in block mode; `None` waits as long as needed.
    pub fn loan_wait(&mut self, timeout: Option<Duration>) -> Result<&mut [u8], Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut polls = 0u32;
        let reservation = loop {
            let lagging = match self.producer.reserve(&self.subs) {
                Ok(r) => break r,
                Err(BusError::Full { subscriber }) => subscriber,
                Err(e) => return Err(e.into()),
            };
            polls = polls.wrapping_add(1);
            let sleep = match self.options.wait {
                Wait::Spin => false,
                Wait::Futex => true,
                Wait::SpinThenFutex { spins } => polls > spins,
            };
            if !sleep {
                core::hint::spin_loop();
                if polls.is_multiple_of(SPINS_PER_CLOCK) && expired(deadline) {
                    return Err(Error::Timeout);
                }
                continue;
            }
            let Some(remaining) = remaining(deadline) else {
                return Err(Error::Timeout);
            };
            let Some(sub) = self.subs.get(lagging).copied() else {
                continue;
            };
            let word = sub.cursor_word();
            let seen = word.load(Ordering::Acquire);
            self.producer.set_waiting(true);
            match self.producer.reserve(&self.subs) {
                Ok(r) => {
                    self.producer.set_waiting(false);
                    break r;
                }
                Err(BusError::Full { .. }) => {}
                Err(e) => {
                    self.producer.set_waiting(false);
                    return Err(e.into());
                }
            }
            let slept = sys::futex_wait(word, seen, Some(remaining.min(MAX_SLEEP)));
            self.producer.set_waiting(false);
            slept?;
        };
        self.pending = Some(reservation);
        Ok(self.slot_mut(reservation))
    }

    /// Publishes the loaned slot's first `len` bytes as plain data.
    pub fn publish(&mut self, len: usize) -> Result<u64, Error> {
        self.publish_as(len, 0, Kind::Data)
    }

    /// Publishes the loaned slot with a correlation id and kind.
    pub fn publish_as(&mut self, len: usize, corr: u64, kind: Kind) -> Result<u64, Error> {
        let reservation = self.pending.ok_or(Error::NoLoan)?;
        self.producer.commit(reservation, len as u64, corr, kind)?;
        self.pending = None;
        if self.options.notify && self.producer.needs_wake(&self.subs) {
            sys::futex_wake(self.producer.region().head_word())?;
        }
        Ok(reservation.seq())
    }

    /// Copies `bytes` into a loaned slot and publishes it (waiting up to
    /// `timeout` for space).
    pub fn send(
        &mut self,
        bytes: &[u8],
        corr: u64,
        kind: Kind,
        timeout: Option<Duration>,
    ) -> Result<u64, Error> {
        let max = self.slot_size();
        if bytes.len() > max {
            return Err(BusError::TooLong {
                len: bytes.len() as u64,
                max: max as u64,
            }
            .into());
        }
        let slot = self.loan_wait(timeout)?;
        // The length was checked against the slot size above.
        if let Some(dst) = slot.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.publish_as(bytes.len(), corr, kind)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.producer.detach();
    }
}

/// A received message, without the borrow: the form a C ABI hands out.
/// `ptr`/`len` point into the read-only mapping.
#[derive(Debug, Clone, Copy)]
pub struct RawSample {
    /// Sequence number.
    pub seq: u64,
    /// Correlation id.
    pub corr: u64,
    /// Kind.
    pub kind: Kind,
    /// First payload byte.
    pub ptr: *const u8,
    /// Payload length.
    pub len: usize,
    peeked: Peeked,
}

/// A subscriber of a channel: reads messages in place.
pub struct Subscriber {
    consumer: Consumer<'static>,
    wait: Wait,
    _sub_map: Mapping,
    _data_map: Mapping,
}

impl Subscriber {
    /// Opens the channel from a (read-only) data fd and this subscriber's
    /// own region fd, starting at the newest message.
    pub fn open(data_fd: impl AsFd, sub_fd: impl AsFd, wait: Wait) -> Result<Self, Error> {
        let data_map = Mapping::open(data_fd.as_fd(), MAX_REGION_BYTES, false)?;
        let sub_map = Mapping::open(sub_fd.as_fd(), SUB_REGION_BYTES, true)?;
        // SAFETY: consumer is dropped before the mappings (field order).
        let data = DataRegion::open(unsafe { data_map.words_static() })?;
        // SAFETY: as above.
        let sub = SubRegion::open(unsafe { sub_map.words_static() })?;
        let consumer = Consumer::attach(data, sub);
        Ok(Self {
            consumer,
            wait,
            _sub_map: sub_map,
            _data_map: data_map,
        })
    }

    /// Payload bytes per message.
    pub fn slot_size(&self) -> usize {
        self.consumer.region().geometry().slot_size as usize
    }

    /// Messages lost (overwritten in drop-oldest mode, or malformed).
    pub fn lost(&self) -> u64 {
        self.consumer.lost()
    }

    /// The next message without waiting, as a raw view. Follow with
    /// [`Subscriber::validate`] after reading and [`Subscriber::consume`].
    pub fn peek_raw(&mut self) -> Result<Option<RawSample>, Error> {
        let Some(peeked) = self.consumer.peek()? else {
            return Ok(None);
        };
        let ptr = self.consumer.region().payload_ptr(peeked.slot).cast_const();
        Ok(Some(RawSample {
            seq: peeked.seq,
            corr: peeked.corr,
            kind: peeked.kind,
            ptr,
            len: peeked.len as usize,
            peeked,
        }))
    }

    /// Whether the bytes read from `sample` were the message (never true
    /// for a sample overwritten meanwhile in drop-oldest mode).
    pub fn validate(&self, sample: &RawSample) -> bool {
        self.consumer.validate(&sample.peeked)
    }

    /// Releases `sample` (block mode: frees its slot for the publisher).
    pub fn consume(&mut self, sample: &RawSample) -> Result<(), Error> {
        if self.consumer.consume(&sample.peeked) {
            sys::futex_wake(self.consumer.sub_region().cursor_word())?;
        }
        Ok(())
    }

    /// The next message, if one is there.
    pub fn receive(&mut self) -> Result<Option<Sample<'_>>, Error> {
        Ok(self.peek_raw()?.map(|raw| Sample { sub: self, raw }))
    }

    /// The next message, waiting up to `timeout` (`None`: forever) in
    /// this subscriber's [`Wait`] mode.
    pub fn receive_wait(&mut self, timeout: Option<Duration>) -> Result<Sample<'_>, Error> {
        let raw = self.wait_raw(timeout)?;
        Ok(Sample { sub: self, raw })
    }

    /// [`Subscriber::receive_wait`] without the borrow.
    pub fn wait_raw(&mut self, timeout: Option<Duration>) -> Result<RawSample, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut polls = 0u32;
        loop {
            if let Some(raw) = self.peek_raw()? {
                return Ok(raw);
            }
            polls = polls.wrapping_add(1);
            let sleep = match self.wait {
                Wait::Spin => false,
                Wait::Futex => true,
                Wait::SpinThenFutex { spins } => polls > spins,
            };
            if !sleep {
                core::hint::spin_loop();
                if polls.is_multiple_of(SPINS_PER_CLOCK) && expired(deadline) {
                    return Err(Error::Timeout);
                }
                continue;
            }
            let Some(remaining) = remaining(deadline) else {
                return Err(Error::Timeout);
            };
            if let Some(head) = self.consumer.prepare_wait() {
                let word = self.consumer.region().head_word();
                let slept = sys::futex_wait(word, head, Some(remaining.min(MAX_SLEEP)));
                self.consumer.finish_wait();
                slept?;
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.consumer.detach();
    }
}

/// A borrowed message; dropping it releases the slot.
pub struct Sample<'a> {
    sub: &'a mut Subscriber,
    raw: RawSample,
}

impl<'a> Sample<'a> {
    pub(crate) fn new(sub: &'a mut Subscriber, raw: RawSample) -> Self {
        Self { sub, raw }
    }

    /// The payload, in place in shared memory. In drop-oldest mode the
    /// publisher may overwrite it while you read: check
    /// [`Sample::is_valid`] after reading, or use [`Sample::copy_to`].
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len lie inside the read-only mapping (len <= slot
        // size was checked by peek), which outlives the borrow of `sub`.
        // Another process may change the bytes (drop-oldest overwrite or a
        // hostile publisher): readers treat them as untrusted and validate.
        unsafe { core::slice::from_raw_parts(self.raw.ptr, self.raw.len) }
    }

    /// Copies the payload out; `None` if it was overwritten meanwhile.
    pub fn copy_to(&self, buf: &mut Vec<u8>) -> Option<usize> {
        buf.clear();
        buf.extend_from_slice(self.bytes());
        self.is_valid().then_some(self.raw.len)
    }

    /// Whether what was read so far is the message.
    pub fn is_valid(&self) -> bool {
        self.sub.validate(&self.raw)
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.raw.seq
    }

    /// Correlation id.
    pub fn corr(&self) -> u64 {
        self.raw.corr
    }

    /// Kind.
    pub fn kind(&self) -> Kind {
        self.raw.kind
    }

    /// The raw view (for a C ABI).
    pub fn raw(&self) -> &RawSample {
        &self.raw
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        // A failed wake only delays a blocked publisher until its bounded
        // sleep ends.
        let _ = self.sub.consume(&self.raw);
    }
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(MAX_SLEEP),
        Some(d) => d
            .checked_duration_since(Instant::now())
            .filter(|r| !r.is_zero()),
    }
}
