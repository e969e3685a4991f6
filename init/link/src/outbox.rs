//! Bytes waiting to go out, written by the driver as the line accepts them
//! (a nonblocking write may take part of a frame).

use crate::frame;
use crate::msg::Msg;
use alloc::vec::Vec;

/// An output queue of encoded frames.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes handed to the line so far.
    pub written: u64,
}

impl Outbox {
    /// Queues `msg` as a frame. Only messages the crate builds itself are
    /// queued, so a frame that does not encode is a bug; it is dropped.
    pub fn push(&mut self, msg: &Msg<'_>) {
        let _ = frame::encode(msg, &mut self.buf);
    }
    /// Queues a lone delimiter: ends whatever garbage the peer's decoder holds.
    pub fn sync(&mut self) {
        self.buf.push(0);
    }
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.pos);
        self.pos += n;
        self.written += n as u64;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
    /// Drops everything not yet written (a link that was cut).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }
}
