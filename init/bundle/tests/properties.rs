//! Property tests: every bit of a signed `.qb` matters, every truncation is
//! caught, and packing is deterministic.

mod common;
use common::*;
use proptest::prelude::*;
use quilt_bundle::pack::{Builder, HeaderFields};
use quilt_bundle::Context;

fn small_signed() -> (Vec<u8>, quilt_bundle::Trust) {
    let k = key(1);
    let p = packed_with("agents/tiny", 1, &pseudo_random(70_000, 3), |_| {});
    (p.to_qb(&[&k]).unwrap(), trust(&[&k], ""))
}

#[test]
fn the_unmodified_bundle_verifies() {
    let (qb, t) = small_signed();
    verify(&qb, &t, &Context::default()).unwrap();
}

#[test]
fn every_single_bit_flip_in_the_prefix_fails() {
    // Exhaustive over header, signatures and manifest (the parts without
    // their own hash); chunk bytes are covered by the proptest below.
    let (qb, t) = small_signed();
    let r = quilt_bundle::BundleReader::open(&qb[..], &t, &Context::default()).unwrap();
    let prefix = r.offset() as usize;
    for byte in 0..prefix {
        for bit in 0..8 {
            let mut m = qb.clone();
            m[byte] ^= 1 << bit;
            assert!(
                verify(&m, &t, &Context::default()).is_err(),
                "flip at {byte}.{bit} passed"
            );
        }
    }
}

#[test]
fn every_truncation_fails() {
    // Every cut in the prefix and in the last kilobyte, and a stride through
    // the chunks (each cut there re-hashes up to 70 KB; the proptest below
    // picks random cuts too).
    let (qb, t) = small_signed();
    let r = quilt_bundle::BundleReader::open(&qb[..], &t, &Context::default()).unwrap();
    let prefix = r.offset() as usize;
    let cuts = (0..=prefix)
        .chain((prefix..qb.len()).step_by(997))
        .chain(qb.len().saturating_sub(1024)..qb.len());
    for n in cuts {
        assert!(
            verify(&qb[..n], &t, &Context::default()).is_err(),
            "truncated to {n} passed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bit_flip_anywhere_fails(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (qb, t) = small_signed();
        let mut m = qb.clone();
        let i = pos.index(m.len());
        m[i] ^= 1 << bit;
        prop_assert!(verify(&m, &t, &Context::default()).is_err());
    }

    #[test]
    fn any_truncation_fails(pos in any::<prop::sample::Index>()) {
        let (qb, t) = small_signed();
        let n = pos.index(qb.len());
        prop_assert!(verify(&qb[..n], &t, &Context::default()).is_err());
    }

    #[test]
    fn appended_bytes_fail(extra in prop::collection::vec(any::<u8>(), 1..64)) {
        let (mut qb, t) = small_signed();
        qb.extend_from_slice(&extra);
        prop_assert!(verify(&qb, &t, &Context::default()).is_err());
    }

    #[test]
    fn repacking_the_same_tree_gives_the_same_root(
        files in prop::collection::btree_map("[a-z]{1,8}", prop::collection::vec(any::<u8>(), 0..40_000), 1..6),
        reverse in any::<bool>(),
    ) {
        let build = |rev: bool| {
            let mut b = Builder::new();
            let mut list: Vec<_> = files.iter().collect();
            if rev { list.reverse(); }
            for (name, data) in list {
                b.file(name, 0o644, data);
            }
            let entry = files.keys().next().unwrap().clone();
            b.finish(HeaderFields::new("x", 1, &entry)).unwrap()
        };
        let a = build(false);
        let b = build(reverse);
        prop_assert_eq!(a.header.root, b.header.root);
        prop_assert_eq!(a.to_qb(&[]).unwrap(), b.to_qb(&[]).unwrap());
    }
}
