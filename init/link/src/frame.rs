//! Framing: `COBS( postcard(Msg) ‖ CRC-32C little-endian ) 0x00`.
//!
//! COBS removes every zero byte from the frame, so `0x00` only ever marks
//! an end: after line noise, a cut cable or kernel console chatter on the
//! same UART, the decoder is back in step at the next zero. CRC-32C
//! (Castagnoli, the iSCSI polynomial) catches what the line corrupts; a
//! frame that fails any check is dropped and counted, never half-used, and
//! the receiver asks again for what it lacked. A frame longer than
//! [`MAX_FRAME`] is skipped up to its end without being buffered.

use crate::msg::Msg;
use crate::MAX_FRAME;
use alloc::vec::Vec;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Bytes a decoded frame adds to the postcard message.
pub const CRC_LEN: usize = 4;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME`]; skipped to its end.
    TooLong,
    /// Not valid COBS (a corrupted length byte).
    Cobs,
    /// Too short to hold a message and a CRC.
    Short,
    /// The CRC does not match: corrupted on the line.
    Crc,
    /// CRC good, but the message does not decode (another protocol version,
    /// or a peer bug).
    Message,
    /// Encoding: the message does not fit in [`MAX_FRAME`].
    Encode,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::TooLong => "frame longer than the limit",
            FrameError::Cobs => "frame is not valid cobs",
            FrameError::Short => "frame too short",
            FrameError::Crc => "frame crc mismatch",
            FrameError::Message => "frame holds no valid message",
            FrameError::Encode => "message too large for a frame",
        })
    }
}

/// The CRC a frame carries over `body`.
pub fn crc(body: &[u8]) -> u32 {
    CRC32C.checksum(body)
}

/// Appends `msg` as one frame (with its trailing `0x00`) to `out`.
pub fn encode(msg: &Msg<'_>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut body = postcard::to_allocvec(msg).map_err(|_| FrameError::Encode)?;
    if body.len() + CRC_LEN > MAX_FRAME {
        return Err(FrameError::Encode);
    }
    let sum = crc(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    let start = out.len();
    out.resize(start + cobs::max_encoding_length(body.len()), 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let n = cobs::try_encode(&body, dst).map_err(|_| FrameError::Encode)?;
    out.truncate(start + n);
    out.push(0);
    Ok(())
}

/// The on-line size of a frame whose decoded body (message plus CRC) is
/// `body_len` bytes: COBS overhead and the delimiter included.
pub fn wire_len(body_len: usize) -> usize {
    cobs::max_encoding_length(body_len) + 1
}

/// Counters kept by a [`Decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Bytes fed in.
    pub bytes: u64,
    /// Frames that passed every check.
    pub frames_ok: u64,
    /// Frames dropped (any [`FrameError`]).
    pub frames_bad: u64,
    /// Of those, dropped for a CRC mismatch.
    pub crc_errors: u64,
}

/// Splits a byte stream into checked frames. Memory: one encoded frame.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    cap: usize,
    skipping: bool,
    /// Length of the frame handed out last, cleared on the next call.
    handed: bool,
    pub stats: DecodeStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            buf: Vec::new(),
            cap: cobs::max_encoding_length(MAX_FRAME),
            skipping: false,
            handed: false,
            stats: DecodeStats::default(),
        }
    }

    /// Takes bytes from the front of `input` up to and including the next
    /// frame end; returns that frame's checked body (message bytes, CRC
    /// stripped), an error for a dropped frame, or `None` when `input` ran
    /// out first (the partial frame is kept for the next call).
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Option<Result<&[u8], FrameError>> {
        if self.handed {
            self.buf.clear();
            self.handed = false;
        }
        loop {
            let Some(end) = input.iter().position(|&b| b == 0) else {
                self.take(input);
                *input = &[];
                return None;
            };
            let (head, rest) = input.split_at(end);
            *input = rest.get(1..).unwrap_or_default();
            self.stats.bytes += 1;
            self.take(head);
            if self.skipping {
                self.skipping = false;
                self.buf.clear();
                self.stats.frames_bad += 1;
                return Some(Err(FrameError::TooLong));
            }
            if self.buf.is_empty() {
                // Back-to-back delimiters: a sync marker, not a frame.
                continue;
            }
            self.handed = true;
            return Some(self.check());
        }
    }

    /// Bytes of receive buffer held (allocated capacity).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Counts the frame handed out last as bad after all: its CRC held but
    /// its message did not decode.
    pub fn reject(&mut self) {
        self.stats.frames_ok = self.stats.frames_ok.saturating_sub(1);
        self.stats.frames_bad += 1;
    }

    fn take(&mut self, bytes: &[u8]) {
        self.stats.bytes += bytes.len() as u64;
        if self.skipping {
            return;
        }
        if self.buf.len() + bytes.len() > self.cap {
            self.skipping = true;
            self.buf.clear();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn check(&mut self) -> Result<&[u8], FrameError> {
        let result = match cobs::decode_in_place(&mut self.buf) {
            Err(_) => Err(FrameError::Cobs),
            Ok(n) if n <= CRC_LEN => Err(FrameError::Short),
            Ok(n) => {
                let (body, sum) = self.buf.get(..n).unwrap_or_default().split_at(n - CRC_LEN);
                let mut want = [0u8; CRC_LEN];
                want.copy_from_slice(sum);
                if crc(body) == u32::from_le_bytes(want) {
                    Ok(n - CRC_LEN)
                } else {
                    Err(FrameError::Crc)
                }
            }
        };
        match result {
            Ok(n) => {
                self.stats.frames_ok += 1;
                Ok(self.buf.get(..n).unwrap_or_default())
            }
            Err(e) => {
                self.stats.frames_bad += 1;
                if e == FrameError::Crc {
                    self.stats.crc_errors += 1;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn frames(bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut d = Decoder::new();
        let mut input = bytes;
        let mut out = Vec::new();
        while let Some(r) = d.next_frame(&mut input) {
            out.push(r.map(|b| b.to_vec()));
        }
        out
    }

    #[test]
    fn round_trip_and_resync_after_noise() {
        let msg = Msg::Piece {
            offset: 7,
            data: &[0, 1, 0, 2, 0],
        };
        let mut wire = vec![0x55, 0x13, 0x00];
        encode(&msg, &mut wire).unwrap();
        encode(
            &Msg::Hello {
                version: 1,
                max_piece: 2048,
            },
            &mut wire,
        )
        .unwrap();
        let got = frames(&wire);
        assert_eq!(got.len(), 3);
        assert!(got[0].is_err());
        let body = got[1].as_ref().unwrap();
        assert_eq!(postcard::from_bytes::<Msg<'_>>(body).unwrap(), msg);
        assert!(got[2].is_ok());
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut wire = Vec::new();
        encode(
            &Msg::Piece {
                offset: 1 << 20,
                data: &[9u8; 300],
            },
            &mut wire,
        )
        .unwrap();
        for i in 0..wire.len() {
            for bit in 0..8 {
                let mut w = wire.clone();
                w[i] ^= 1 << bit;
                assert!(
                    frames(&w).iter().all(|r| r.is_err()),
                    "flip {i}.{bit} passed"
                );
            }
        }
    }

    #[test]
    fn a_want_longer_than_the_cap_does_not_decode() {
        // Variant 4 (Want), 33 ranges of (offset 0, len 1).
        let mut body = vec![4u8, 33];
        for _ in 0..33 {
            body.extend_from_slice(&[0, 1]);
        }
        assert!(postcard::from_bytes::<Msg<'_>>(&body).is_err());
        body[1] = 32;
        body.truncate(2 + 64);
        assert!(postcard::from_bytes::<Msg<'_>>(&body).is_ok());
        // A huge length prefix fails without allocating for it.
        let huge = [4u8, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<Msg<'_>>(&huge).is_err());
    }

    #[test]
    fn an_endless_frame_is_skipped_without_growing() {
        let mut d = Decoder::new();
        let junk = vec![0xAAu8; MAX_FRAME * 4];
        let mut input = &junk[..];
        assert!(d.next_frame(&mut input).is_none());
        assert!(d.buf.capacity() <= cobs::max_encoding_length(MAX_FRAME) * 2);
        let mut end = &[0u8][..];
        assert_eq!(d.next_frame(&mut end), Some(Err(FrameError::TooLong)));
    }
}
