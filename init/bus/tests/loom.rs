//! Model check of the ring's memory ordering with `loom`:
//!
//! ```sh
//! cd init/bus/loom && RUSTFLAGS="--cfg loom" cargo test --release
//! ```
//!
//! The payload is modelled as two words per slot written with `Relaxed`
//! stores, the weakest the hardware gives plain memory; loom explores
//! the interleavings and the values each load may legally return.
//!
//! Both endpoints attach on the main thread before the writer thread
//! starts (loom 0.7's partial-order reduction misses races behind a
//! same-thread load-then-store of one word, which `Producer::attach` does
//! to `HEAD`); each test also asserts that loom explored many executions,
//! so a model that degenerates to one interleaving fails instead of
//! passing vacuously.

#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering::Relaxed};
use loom::thread;
use quilt_bus::*;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

struct Shared {
    data: Vec<AtomicU64>,
    sub: Vec<AtomicU64>,
    /// Two payload words per slot, outside the region (loom atomics have
    /// no byte view).
    payload: Vec<AtomicU64>,
}

/// Leaked so the producer, made on the main thread, can move into the
/// writer thread with a 'static borrow. A few KiB per execution.
fn shared(capacity: u64, mode: Mode) -> &'static Shared {
    let config = Config {
        capacity,
        slot_size: 8,
        mode,
        max_subscribers: 1,
        channel_id: 0,
    };
    let g = Geometry::new(&config).unwrap();
    let data: Vec<AtomicU64> = (0..g.region_bytes / 8).map(|_| AtomicU64::new(0)).collect();
    let sub: Vec<AtomicU64> = (0..SUB_REGION_BYTES / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    init_data_region(&data, &config).unwrap();
    init_sub_region(&sub).unwrap();
    let payload = (0..capacity * 2).map(|_| AtomicU64::new(0)).collect();
    Box::leak(Box::new(Shared { data, sub, payload }))
}

fn publish(p: &mut Producer<'_>, s: &Shared, subs: &[SubRegion<'_>], value: u64) -> bool {
    let Ok(r) = p.reserve(subs) else { return false };
    let slot = r.slot() as usize;
    s.payload[2 * slot].store(value, Relaxed);
    s.payload[2 * slot + 1].store(value, Relaxed);
    p.commit(r, 8, value, Kind::Data).unwrap();
    true
}

fn endpoints(s: &'static Shared) -> (Producer<'static>, SubRegion<'static>, Consumer<'static>) {
    let region = DataRegion::open(&s.data).unwrap();
    let sub = SubRegion::open(&s.sub).unwrap();
    let consumer = Consumer::attach(region, sub);
    let producer = Producer::attach(region, 1, false).unwrap();
    (producer, sub, consumer)
}

fn read(s: &Shared, m: &Peeked) -> (u64, u64) {
    let slot = m.slot as usize;
    (
        s.payload[2 * slot].load(Relaxed),
        s.payload[2 * slot + 1].load(Relaxed),
    )
}

/// Drop-oldest, one slot, two messages: the reader may race the
/// overwrite. Whatever it accepts (validate == true) must be one whole
/// message, never a mix, and match its sequence number.
#[test]
fn drop_oldest_never_accepts_a_torn_read() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static RACED: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        RUNS.fetch_add(1, StdOrdering::Relaxed);
        let s = shared(1, Mode::DropOldest);
        let (mut producer, sub, mut consumer) = endpoints(s);
        let writer = thread::spawn(move || {
            let subs = [sub];
            assert!(publish(&mut producer, s, &subs, 100));
            assert!(publish(&mut producer, s, &subs, 101));
        });
        if let Ok(Some(m)) = consumer.peek() {
            let (a, b) = read(s, &m);
            if consumer.validate(&m) {
                assert_eq!(a, b, "torn message accepted");
                assert_eq!(a, 100 + m.seq, "message does not match its sequence");
                assert_eq!(m.corr, 100 + m.seq);
            } else {
                RACED.fetch_add(1, StdOrdering::Relaxed);
            }
        }
        writer.join().unwrap();
    });
    assert!(
        RUNS.load(StdOrdering::Relaxed) > 10,
        "loom explored too little"
    );
    // The overwrite race was actually reached (and detected).
    assert!(
        RACED.load(StdOrdering::Relaxed) > 0,
        "no execution raced the overwrite"
    );
}

/// Block mode, one slot: the publisher may only overwrite after the
/// subscriber consumed, so every read the subscriber makes validates and
/// every message arrives in order.
#[test]
fn block_mode_reads_always_validate() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        RUNS.fetch_add(1, StdOrdering::Relaxed);
        let s = shared(1, Mode::Block);
        let (mut producer, sub, mut consumer) = endpoints(s);
        let writer = thread::spawn(move || {
            let subs = [sub];
            let mut sent = 0;
            // Bounded: loom forbids unbounded spins.
            for _ in 0..3 {
                if sent < 2 && publish(&mut producer, s, &subs, 100 + sent) {
                    sent += 1;
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut next = 0;
        for _ in 0..3 {
            match consumer.peek().unwrap() {
                Some(m) => {
                    let (a, b) = read(s, &m);
                    assert!(consumer.validate(&m), "block mode read was overwritten");
                    assert_eq!((m.seq, a, b), (next, 100 + next, 100 + next));
                    consumer.consume(&m);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        writer.join().unwrap();
        assert_eq!(consumer.lost(), 0);
    });
    assert!(
        RUNS.load(StdOrdering::Relaxed) > 10,
        "loom explored too little"
    );
}

/// The wake-up handshake: the subscriber announces WAITING and re-reads
/// HEAD; the kernel's FUTEX_WAIT then sleeps only if HEAD still holds that
/// value (modelled by one more load). If it would sleep, the publisher
/// must have seen WAITING and decided to wake it.
#[test]
fn no_lost_wakeup() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        RUNS.fetch_add(1, StdOrdering::Relaxed);
        let s = shared(2, Mode::DropOldest);
        let (mut producer, sub, consumer) = endpoints(s);
        let writer = thread::spawn(move || {
            let subs = [sub];
            assert!(publish(&mut producer, s, &subs, 7));
            producer.needs_wake(&subs)
        });
        let sleeps = match consumer.prepare_wait() {
            Some(h) => consumer.region().head_word().load(Relaxed) == h,
            None => false,
        };
        let woke = writer.join().unwrap();
        assert!(!sleeps || woke, "subscriber sleeps and nobody wakes it");
    });
    assert!(
        RUNS.load(StdOrdering::Relaxed) > 3,
        "loom explored too little"
    );
}
