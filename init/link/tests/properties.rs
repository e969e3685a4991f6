//! Property tests: framing round trips for any message, and a receiver fed
//! arbitrary bytes or arbitrary well-framed messages neither panics nor
//! grows without bound.

use proptest::prelude::*;
use quilt_bundle::envelope::Envelope;
use quilt_bundle::{Hash, Header};
use quilt_link::frame::{self, Decoder};
use quilt_link::receiver::{InstallSummary, Storage};
use quilt_link::{Msg, Outcome, Range, Receiver, ReceiverConfig, MAX_ENVELOPE, MAX_FRAME};

/// What a receiver may hold before any header is trusted: two encoded
/// frames' worth of receive buffer (capacity growth) and one envelope.
const BEFORE_TRUST: usize = 2 * (MAX_FRAME + MAX_FRAME / 254 + 2) + MAX_ENVELOPE as usize;

/// A storage that believes every header (no signatures) and keeps nothing:
/// it lets arbitrary input reach the deepest receiver states.
struct Credulous;

impl Storage for Credulous {
    fn check_offer(&mut self, envelope: &Envelope) -> Result<Header, String> {
        Header::decode(&envelope.body).map_err(|e| e.to_string())
    }
    fn is_installed(&mut self, _: &Header) -> bool {
        false
    }
    fn staged_manifest(&mut self, _: &Hash) -> Option<Vec<u8>> {
        None
    }
    fn stage(&mut self, _: &Envelope, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn has_chunk(&mut self, _: &Hash) -> bool {
        false
    }
    fn put_chunk(&mut self, _: &Hash, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn install(&mut self, _: &Hash) -> Result<InstallSummary, String> {
        Err("not in this test".into())
    }
    fn discard(&mut self, _: &Hash) {}
}

fn arb_msg() -> impl Strategy<Value = Msg<'static>> {
    let data = proptest::collection::vec(any::<u8>(), 0..3000)
        .prop_map(|v| &*Box::leak(v.into_boxed_slice()));
    prop_oneof![
        (any::<u16>(), any::<u32>())
            .prop_map(|(version, max_piece)| Msg::Hello { version, max_piece }),
        (any::<[u8; 32]>(), any::<u64>(), any::<u32>()).prop_map(|(root, qb_len, envelope_len)| {
            Msg::Offer {
                root,
                qb_len,
                envelope_len,
            }
        }),
        proptest::collection::vec((any::<u64>(), any::<u32>()), 0..=32).prop_map(|v| Msg::Want {
            ranges: v
                .into_iter()
                .map(|(offset, len)| Range { offset, len })
                .collect()
        }),
        (0u64..200_000, data).prop_map(|(offset, data)| Msg::Piece { offset, data }),
        (any::<[u8; 32]>(), ".{0,40}").prop_map(|(root, reason)| Msg::Result {
            root,
            outcome: Outcome::Refused { reason }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip(msgs in proptest::collection::vec(arb_msg(), 1..8), split in 1usize..64) {
        let mut wire = Vec::new();
        for m in &msgs {
            frame::encode(m, &mut wire).unwrap();
        }
        prop_assert!(!wire[..wire.len() - 1].contains(&0) || msgs.len() > 1);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in wire.chunks(split) {
            let mut input = piece;
            while let Some(r) = d.next_frame(&mut input) {
                let body = r.unwrap();
                got.push(postcard::from_bytes::<Msg<'_>>(body).unwrap().clone_owned());
            }
        }
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(junk in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let mut rx = Receiver::new(ReceiverConfig::default());
        for (i, piece) in junk.chunks(777).enumerate() {
            rx.feed(piece, i as u64 * 10, &mut Credulous);
            rx.tick(i as u64 * 10 + 5_000);
            let n = rx.pending().len();
            rx.consume(n);
            prop_assert!(rx.buffered_bytes() <= BEFORE_TRUST, "{}", rx.buffered_bytes());
        }
        prop_assert!(rx.pending().is_empty());
    }

    #[test]
    fn arbitrary_messages_never_panic(msgs in proptest::collection::vec(arb_msg(), 0..40)) {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let mut wire = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            wire.clear();
            frame::encode(m, &mut wire).unwrap();
            rx.feed(&wire, i as u64, &mut Credulous);
            rx.tick(i as u64 * 2_000);
            // Output per input frame is small: a welcome, a want or a result.
            prop_assert!(rx.pending().len() <= 4 * MAX_FRAME, "{}", rx.pending().len());
            // Random headers never decode, so nothing past the envelope is
            // ever allocated; several offers never stack up buffers.
            prop_assert!(rx.buffered_bytes() <= BEFORE_TRUST, "{}", rx.buffered_bytes());
            let n = rx.pending().len();
            rx.consume(n);
        }
    }
}

/// Messages decoded from a frame borrow it; tests compare owned copies.
trait CloneOwned {
    fn clone_owned(&self) -> Msg<'static>;
}

impl CloneOwned for Msg<'_> {
    fn clone_owned(&self) -> Msg<'static> {
        match self {
            Msg::Piece { offset, data } => Msg::Piece {
                offset: *offset,
                data: Box::leak(data.to_vec().into_boxed_slice()),
            },
            Msg::Hello { version, max_piece } => Msg::Hello {
                version: *version,
                max_piece: *max_piece,
            },
            Msg::Welcome {
                version,
                max_piece,
                window,
            } => Msg::Welcome {
                version: *version,
                max_piece: *max_piece,
                window: *window,
            },
            Msg::Offer {
                root,
                qb_len,
                envelope_len,
            } => Msg::Offer {
                root: *root,
                qb_len: *qb_len,
                envelope_len: *envelope_len,
            },
            Msg::Plan {
                root,
                need,
                held,
                chunks_need,
                chunks_held,
            } => Msg::Plan {
                root: *root,
                need: *need,
                held: *held,
                chunks_need: *chunks_need,
                chunks_held: *chunks_held,
            },
            Msg::Want { ranges } => Msg::Want {
                ranges: ranges.clone(),
            },
            Msg::Result { root, outcome } => Msg::Result {
                root: *root,
                outcome: outcome.clone(),
            },
        }
    }
}
