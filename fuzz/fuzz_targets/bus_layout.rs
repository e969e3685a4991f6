//! The bus layout reader against a hostile peer: arbitrary bytes as a data
//! region (header, head, stamps, lengths) must give a typed error or a
//! geometry that fits the region, and reading the ring must never panic,
//! index out of bounds or loop; arbitrary configs must be refused or fit
//! the compiled-in bounds.
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use libfuzzer_sys::fuzz_target;
use quilt_bus::{
    init_data_region, init_sub_region, Config, Consumer, DataRegion, Geometry, Mode, SubRegion,
    MAX_REGION_BYTES, SUB_REGION_BYTES,
};

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (j, v) in b.iter_mut().enumerate() {
        *v = data.get(i * 8 + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // 1. Any config: refused, or within bounds.
    let mode = if word(data, 3) & 1 == 0 {
        Mode::DropOldest
    } else {
        Mode::Block
    };
    let config = Config {
        capacity: word(data, 0),
        slot_size: word(data, 1),
        mode,
        max_subscribers: word(data, 2),
        channel_id: 0,
    };
    if let Ok(g) = Geometry::new(&config) {
        assert!(g.region_bytes <= MAX_REGION_BYTES);
        assert!(g.payload_offset(g.capacity - 1) + g.slot_size <= g.region_bytes);
    }

    // 2. The bytes as a data region. With the first byte even, start from
    // a valid header for a small ring so the fuzzer reaches the ring
    // reader; the rest of the input overwrites head, stamps and lengths.
    let words: Vec<AtomicU64> = (0..512).map(|i| AtomicU64::new(word(data, i))).collect();
    if data.first().is_some_and(|b| b % 2 == 0) {
        let small = Config {
            capacity: 1 + word(data, 0) % 8,
            slot_size: 8 * (1 + word(data, 1) % 32),
            mode,
            max_subscribers: 1,
            channel_id: 0,
        };
        let scratch: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        init_data_region(&scratch, &small).unwrap();
        for (dst, src) in words.iter().zip(&scratch).take(8) {
            dst.store(src.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
    let sub: Vec<AtomicU64> = (0..SUB_REGION_BYTES / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    init_sub_region(&sub).unwrap();
    let Ok(region) = DataRegion::open(&words) else {
        return;
    };
    let g = *region.geometry();
    assert!(g.region_bytes <= words.len() as u64 * 8);
    let mut consumer = Consumer::attach(region, SubRegion::open(&sub).unwrap());
    // Move HEAD (word 8) as a hostile publisher would, a few times.
    for round in 0..4 {
        words[8].store(word(data, 9 + round), Ordering::Relaxed);
        for _ in 0..8 {
            match consumer.peek() {
                Ok(Some(p)) => {
                    assert!(p.slot < g.capacity && p.len <= g.slot_size);
                    let _ = consumer.validate(&p);
                    consumer.consume(&p);
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }
});
