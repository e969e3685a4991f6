//! The serial update link's receiving side over arbitrary line input: the
//! frame decoder, the message decoder and the receiver and sender state
//! machines. Anything may be refused; nothing may panic, and the receiver's
//! output stays bounded. The first byte picks a mode: raw bytes as they
//! would come off a noisy UART, or the input cut at 0xFF bytes into parts
//! that are each framed with a valid CRC, so mutations reach the message
//! decoder and the state machines instead of dying at the CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quilt_bundle::envelope::Envelope;
use quilt_bundle::{Hash, Header};
use quilt_link::frame::{crc, Decoder};
use quilt_link::receiver::{InstallSummary, Storage};
use quilt_link::sender::SenderConfig;
use quilt_link::{Endpoint, Receiver, ReceiverConfig, Sender, MAX_FRAME};

/// Believes any header that decodes and keeps nothing, so input reaches
/// the manifest and chunk states without a valid signature.
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
    fn has_chunk(&mut self, id: &Hash) -> bool {
        id.0[0] & 1 == 1
    }
    fn put_chunk(&mut self, _: &Hash, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn install(&mut self, _: &Hash) -> Result<InstallSummary, String> {
        Err("fuzzing".into())
    }
    fn discard(&mut self, _: &Hash) {}
}

/// Frames `body` as a sender would: COBS(body ‖ CRC-32C) 0x00.
fn framed(body: &[u8], out: &mut Vec<u8>) {
    let mut b = body.to_vec();
    b.extend_from_slice(&crc(body).to_le_bytes());
    let start = out.len();
    out.resize(start + cobs::max_encoding_length(b.len()), 0);
    let n = cobs::encode(&b, &mut out[start..]);
    out.truncate(start + n);
    out.push(0);
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let wire = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut w = Vec::new();
        for part in rest.split(|&b| b == 0xFF) {
            framed(part, &mut w);
        }
        w
    };
    let step = usize::from(mode >> 1) * 13 + 1;

    let mut d = Decoder::new();
    for piece in wire.chunks(step) {
        let mut p = piece;
        while let Some(r) = d.next_frame(&mut p) {
            if let Ok(body) = r {
                assert!(body.len() <= MAX_FRAME);
            }
        }
    }

    let mut rx = Receiver::new(ReceiverConfig::default());
    for (i, piece) in wire.chunks(step).enumerate() {
        rx.feed(piece, i as u64, &mut Credulous);
        rx.tick(i as u64 * 700);
        assert!(rx.pending().len() <= 64 * MAX_FRAME);
        let n = rx.pending().len();
        rx.consume(n);
    }

    // A sender offering a small file with a well-formed (unsigned) header,
    // fed the same input as if it came from a board.
    let header = Header {
        format: 1,
        name: "fuzz".into(),
        version: 1,
        root: Hash::default(),
        manifest_len: 64,
        chunk_count: 1,
        content_len: 4096,
        files: 1,
        total_size: 4096,
        arch: Vec::new(),
        boards: Vec::new(),
        entry: "main.ts".into(),
        runtime: "bun".into(),
        limits: Default::default(),
        tokens: Vec::new(),
        not_before: None,
        expires: None,
    };
    let Ok(body) = header.encode() else { return };
    let mut qb = b"QUILTQB1".to_vec();
    qb.extend_from_slice(&(body.len() as u32).to_le_bytes());
    qb.extend_from_slice(&body);
    qb.push(0);
    qb.resize(qb.len() + 64 + 4096, 0x5A);
    let mut tx = Sender::new(qb.clone(), qb.len() as u64, SenderConfig::default())
        .expect("a well-formed envelope is offered");
    for (i, piece) in wire.chunks(step).enumerate() {
        tx.feed(piece, i as u64);
        tx.tick(i as u64 * 700);
        let n = tx.pending().len();
        assert!(n <= 2 * MAX_FRAME);
        tx.consume(n);
    }
});
