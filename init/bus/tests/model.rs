//! Property test: random publish/read/detach sequences against a plain
//! model of what each subscriber must see, in both back-pressure modes.

#![cfg(not(loom))]

use proptest::prelude::*;
use quilt_bus::sync::AtomicU64;
use quilt_bus::*;

#[derive(Debug, Clone)]
enum Op {
    Publish { len: u8, byte: u8 },
    Read { sub: usize },
    Toggle { sub: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..=64, any::<u8>()).prop_map(|(len, byte)| Op::Publish { len, byte }),
        3 => (0usize..3).prop_map(|sub| Op::Read { sub }),
        1 => (0usize..3).prop_map(|sub| Op::Toggle { sub }),
    ]
}

fn zeroed(bytes: u64) -> Vec<AtomicU64> {
    (0..bytes / 8).map(|_| AtomicU64::new(0)).collect()
}

/// The model of one subscriber: attached or not, next sequence expected.
struct ModelSub {
    attached: bool,
    cursor: u64,
    lost: u64,
}

fn run(mode: Mode, capacity: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let config = Config {
        capacity,
        slot_size: 64,
        mode,
        max_subscribers: 3,
        channel_id: 1,
    };
    let geometry = Geometry::new(&config).unwrap();
    let data = zeroed(geometry.region_bytes);
    let sub_words: Vec<Vec<AtomicU64>> = (0..3).map(|_| zeroed(SUB_REGION_BYTES)).collect();
    init_data_region(&data, &config).unwrap();
    for w in &sub_words {
        init_sub_region(w).unwrap();
    }
    let region = DataRegion::open(&data).unwrap();
    let subs: Vec<SubRegion<'_>> = sub_words
        .iter()
        .map(|w| SubRegion::open(w).unwrap())
        .collect();
    let mut producer = Producer::attach(region, 42, false).unwrap();
    let mut consumers: Vec<Option<Consumer<'_>>> = vec![None, None, None];
    let mut model: Vec<ModelSub> = (0..3)
        .map(|_| ModelSub {
            attached: false,
            cursor: 0,
            lost: 0,
        })
        .collect();
    let mut published: Vec<Vec<u8>> = Vec::new();

    for op in ops {
        match *op {
            Op::Publish { len, byte } => {
                let head = published.len() as u64;
                // Model: block mode refuses while an attached subscriber is
                // a whole ring behind.
                let blocker = (0..3).find(|&k| {
                    mode == Mode::Block && model[k].attached && head - model[k].cursor >= capacity
                });
                match producer.reserve(&subs) {
                    Ok(r) => {
                        prop_assert_eq!(blocker, None);
                        let body = vec![byte.wrapping_add(head as u8); len as usize];
                        let ptr = region.payload_ptr(r.slot());
                        // SAFETY: len <= 64 = slot_size; `data` outlives this.
                        unsafe {
                            core::ptr::copy_nonoverlapping(body.as_ptr(), ptr, body.len());
                        }
                        producer
                            .commit(r, u64::from(len), head, Kind::Data)
                            .unwrap();
                        published.push(body);
                    }
                    Err(BusError::Full { subscriber }) => {
                        prop_assert_eq!(blocker, Some(subscriber));
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            Op::Read { sub } => {
                let Some(consumer) = consumers[sub].as_mut() else {
                    continue;
                };
                let m = &mut model[sub];
                let head = published.len() as u64;
                let peeked = consumer.peek().unwrap();
                if m.cursor == head {
                    prop_assert_eq!(peeked, None);
                    continue;
                }
                // Drop-oldest: the oldest readable message is head - capacity.
                let oldest = head.saturating_sub(capacity);
                if m.cursor < oldest {
                    prop_assert_eq!(mode, Mode::DropOldest);
                    m.lost += oldest - m.cursor;
                    m.cursor = oldest;
                }
                let p = peeked.unwrap();
                prop_assert_eq!(p.seq, m.cursor);
                prop_assert_eq!(p.corr, m.cursor);
                let ptr = region.payload_ptr(p.slot);
                // SAFETY: len <= slot_size checked by peek.
                let got = unsafe { core::slice::from_raw_parts(ptr, p.len as usize) };
                prop_assert_eq!(got, &published[m.cursor as usize][..]);
                prop_assert!(consumer.validate(&p));
                consumer.consume(&p);
                m.cursor += 1;
                prop_assert_eq!(consumer.lost(), m.lost);
            }
            Op::Toggle { sub } => {
                if let Some(c) = consumers[sub].take() {
                    c.detach();
                    model[sub].attached = false;
                } else {
                    consumers[sub] = Some(Consumer::attach(region, subs[sub]));
                    model[sub] = ModelSub {
                        attached: true,
                        cursor: published.len() as u64,
                        lost: 0,
                    };
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn block_mode_matches_model(capacity in 1u64..6, ops in proptest::collection::vec(op(), 0..200)) {
        run(Mode::Block, capacity, &ops)?;
    }

    #[test]
    fn drop_oldest_matches_model(capacity in 1u64..6, ops in proptest::collection::vec(op(), 0..200)) {
        run(Mode::DropOldest, capacity, &ops)?;
    }

    /// Any bytes as a data region: opening either refuses with a typed
    /// error or yields a geometry that fits; reading never panics and
    /// terminates.
    #[test]
    fn hostile_region_never_panics(words in proptest::collection::vec(any::<u64>(), 0..600),
                                   header in proptest::collection::vec(any::<u64>(), 8)) {
        let mut words = words;
        // Half the cases start from a valid header, so the ring is reached.
        if header[0] % 2 == 0 && words.len() >= 512 {
            let cfg = Config { capacity: 1 + header[1] % 8, slot_size: 8 * (1 + header[2] % 8),
                               mode: Mode::DropOldest, max_subscribers: 1, channel_id: 0 };
            let scratch = zeroed(4096);
            init_data_region(&scratch, &cfg).unwrap();
            for (i, w) in scratch.iter().take(8).enumerate() {
                words[i] = w.load(core::sync::atomic::Ordering::Relaxed);
            }
        }
        let data: Vec<AtomicU64> = words.into_iter().map(AtomicU64::new).collect();
        let sub = zeroed(SUB_REGION_BYTES);
        init_sub_region(&sub).unwrap();
        if let Ok(region) = DataRegion::open(&data) {
            let g = *region.geometry();
            prop_assert!(g.region_bytes <= data.len() as u64 * 8);
            prop_assert!(g.payload_offset(g.capacity - 1) + g.slot_size <= g.region_bytes);
            let mut c = Consumer::attach(region, SubRegion::open(&sub).unwrap());
            // Word 8 is HEAD: move it so the reader walks the hostile ring.
            data[8].store(header[3], core::sync::atomic::Ordering::Relaxed);
            for _ in 0..16 {
                if let Ok(Some(p)) = c.peek() {
                    prop_assert!(p.len <= g.slot_size && p.slot < g.capacity);
                    c.consume(&p);
                }
            }
        }
    }
}
