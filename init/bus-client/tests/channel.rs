//! One process, several threads: fds, seals, modes and wake-ups.

use quilt_bus_client::{
    create_channel, evict_subscriber, read_only_fd, BusError, Config, Error, Kind, Mode, Publisher,
    PublisherOptions, Subscriber, Wait,
};
use rustix::fd::AsFd;
use rustix::fs::{MemfdFlags, SealFlags};
use std::time::{Duration, Instant};

const T: Option<Duration> = Some(Duration::from_secs(10));

fn cfg(capacity: u64, mode: Mode, subs: u64) -> Config {
    Config {
        capacity,
        slot_size: 64,
        mode,
        max_subscribers: subs,
        channel_id: 9,
    }
}

#[test]
fn memfds_are_sealed_and_sized() {
    let ch = create_channel("sealed", &cfg(4, Mode::Block, 2)).unwrap();
    for fd in std::iter::once(&ch.data).chain(&ch.subscribers) {
        let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL));
        assert!(rustix::fs::ftruncate(fd, 1 << 20).is_err());
    }
    let size = rustix::fs::fstat(&ch.data).unwrap().st_size as u64;
    assert_eq!(size, ch.geometry.region_bytes);
    assert_eq!(ch.subscribers.len(), 2);
}

#[test]
fn unsealed_or_foreign_fds_are_refused() {
    let fd = rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 8192).unwrap();
    let ch = create_channel("ok", &cfg(4, Mode::Block, 1)).unwrap();
    let r = Subscriber::open(&fd, &ch.subscribers[0], Wait::Futex);
    assert!(matches!(r, Err(Error::NotSealed)), "{:?}", r.err());
    // A sealed sub region offered as a data region: bad magic.
    let r = Subscriber::open(&ch.subscribers[0], &ch.subscribers[0], Wait::Futex);
    assert!(
        matches!(r, Err(Error::Bus(BusError::BadMagic { .. }))),
        "{:?}",
        r.err()
    );
}

#[test]
fn read_only_fd_cannot_publish() {
    let ch = create_channel("ro", &cfg(4, Mode::Block, 1)).unwrap();
    let ro = read_only_fd(ch.data.as_fd()).unwrap();
    let r = Publisher::open(&ro, &[&ch.subscribers[0]], PublisherOptions::default());
    assert!(matches!(r, Err(Error::Map { .. })), "{:?}", r.err());
}

#[test]
fn block_mode_refuses_then_waits_for_the_slow_subscriber() {
    let ch = create_channel("block", &cfg(2, Mode::Block, 2)).unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let mut fast = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let mut slow = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[1],
        Wait::Futex,
    )
    .unwrap();
    let mut p = Publisher::open(&ch.data, &subs_ro, PublisherOptions::default()).unwrap();
    for i in 0..2 {
        p.send(&[i], 0, Kind::Data, T).unwrap();
        drop(fast.receive().unwrap().unwrap());
    }
    assert!(matches!(
        p.loan(),
        Err(Error::Bus(BusError::Full { subscriber: 1 }))
    ));
    let start = Instant::now();
    let r = p.loan_wait(Some(Duration::from_millis(30)));
    assert!(matches!(r, Err(Error::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(30));

    // The slow subscriber consumes from another thread: the blocked
    // publisher wakes.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let m = slow.receive().unwrap().unwrap();
        assert_eq!(m.bytes(), [0]);
        drop(m);
        slow
    });
    p.send(&[2], 0, Kind::Data, T).unwrap();
    let mut slow = reader.join().unwrap();
    assert_eq!(slow.receive().unwrap().unwrap().bytes(), [1]);
    assert_eq!(slow.receive().unwrap().unwrap().bytes(), [2]);
}

#[test]
fn evicted_subscriber_no_longer_blocks() {
    let ch = create_channel("evict", &cfg(2, Mode::Block, 1)).unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let _stuck = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let mut p = Publisher::open(&ch.data, &subs_ro, PublisherOptions::default()).unwrap();
    p.send(&[0], 0, Kind::Data, T).unwrap();
    p.send(&[1], 0, Kind::Data, T).unwrap();
    assert!(matches!(
        p.loan(),
        Err(Error::Bus(BusError::Full { subscriber: 0 }))
    ));
    evict_subscriber(ch.subscribers[0].as_fd()).unwrap();
    p.send(&[2], 0, Kind::Data, T).unwrap();
}

#[test]
fn drop_oldest_never_blocks_and_counts_losses() {
    let ch = create_channel("telemetry", &cfg(4, Mode::DropOldest, 1)).unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let mut s = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let mut p = Publisher::open(&ch.data, &subs_ro, PublisherOptions::default()).unwrap();
    for i in 0..10u8 {
        p.send(&[i; 8], 0, Kind::Data, Some(Duration::ZERO))
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some(m) = s.receive().unwrap() {
        let mut buf = Vec::new();
        assert_eq!(m.copy_to(&mut buf), Some(8));
        got.push(buf[0]);
    }
    assert_eq!(got, [6, 7, 8, 9]);
    assert_eq!(s.lost(), 6);
}

#[test]
fn futex_wakes_a_sleeping_subscriber_in_order() {
    let ch = create_channel("wake", &cfg(8, Mode::Block, 1)).unwrap();
    let subs_ro = ch.subscribers_read_only().unwrap();
    let mut s = Subscriber::open(
        ch.data_read_only().unwrap(),
        &ch.subscribers[0],
        Wait::Futex,
    )
    .unwrap();
    let reader = std::thread::spawn(move || {
        (0..1000u32)
            .map(|_| {
                let m = s.receive_wait(T).unwrap();
                u32::from_le_bytes(m.bytes().try_into().unwrap())
            })
            .collect::<Vec<_>>()
    });
    let mut p = Publisher::open(&ch.data, &subs_ro, PublisherOptions::default()).unwrap();
    for i in 0..1000u32 {
        p.send(&i.to_le_bytes(), 0, Kind::Data, T).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(reader.join().unwrap(), (0..1000).collect::<Vec<_>>());
}

#[test]
fn too_long_and_publish_without_loan_are_refused() {
    let ch = create_channel("limits", &cfg(2, Mode::Block, 1)).unwrap();
    let mut p =
        Publisher::open(&ch.data, &[&ch.subscribers[0]], PublisherOptions::default()).unwrap();
    assert!(matches!(p.publish(1), Err(Error::NoLoan)));
    assert!(matches!(
        p.send(&[0; 65], 0, Kind::Data, T),
        Err(Error::Bus(BusError::TooLong { len: 65, max: 64 }))
    ));
    p.loan().unwrap();
    assert!(matches!(
        p.publish(65),
        Err(Error::Bus(BusError::TooLong { .. }))
    ));
    assert!(matches!(
        create_channel(
            "huge",
            &Config {
                capacity: 1 << 20,
                ..cfg(1, Mode::Block, 1)
            }
        ),
        Err(Error::Bus(BusError::BadConfig {
            field: "capacity",
            ..
        }))
    ));
}
