//! A service's stdout/stderr: one pipe for its whole life, read by the
//! event loop into a bounded ring and, line by line, onto the console.

use crate::log;
use crate::ring::Ring;
use rustix::fd::OwnedFd;
use rustix::pipe::{pipe_with, PipeFlags};

/// Bytes of output kept per service.
pub const RING_BYTES: usize = 8 * 1024;
/// Longest console line before it is cut.
const LINE: usize = 256;

/// Output capture for one service.
pub struct Output {
    /// Read end, in the event loop.
    pub read: OwnedFd,
    /// Write end, handed to every incarnation as fds 1 and 2.
    pub write: OwnedFd,
    ring: Box<Ring<RING_BYTES>>,
    line: heapless::Vec<u8, LINE>,
}

impl Output {
    /// A new non-blocking pipe and an empty ring.
    pub fn new() -> std::io::Result<Output> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // The child must be able to block on a full pipe; only our end is
        // non-blocking.
        let fl = rustix::fs::fcntl_getfl(&write)?;
        rustix::fs::fcntl_setfl(&write, fl - rustix::fs::OFlags::NONBLOCK)?;
        Ok(Output {
            read,
            write,
            ring: Box::default(),
            line: heapless::Vec::new(),
        })
    }

    /// Drain what is readable now (bounded per call so one chatty service
    /// cannot monopolise the loop).
    pub fn drain(&mut self, name: &str, console: bool) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            let n = match rustix::io::read(&self.read, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let data = buf.get(..n).unwrap_or(&[]);
            self.ring.write(data);
            if console {
                self.echo(name, data);
            }
        }
    }

    fn echo(&mut self, name: &str, data: &[u8]) {
        for &b in data {
            if b == b'\n' || self.line.is_full() {
                log::console_raw(&[b"[", name.as_bytes(), b"] ", &self.line, b"\n"]);
                self.line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            let _ = self.line.push(b);
        }
    }

    /// Output since position `pos` (see [`Ring::since`]) and the new position.
    pub fn since(&self, pos: u64) -> (u64, Vec<u8>, u64) {
        let (missed, data) = self.ring.since(pos);
        (missed, data, self.ring.total())
    }

    /// The last non-empty line retained, cut to `buf`'s size: what a
    /// service that crashed quietly said last.
    pub fn last_line<'a>(&self, buf: &'a mut [u8]) -> &'a str {
        let (a, b) = self.ring.as_slices();
        let mut n = 0;
        // Walk backwards over the ring, skipping trailing newlines.
        let mut started = false;
        for &byte in b.iter().rev().chain(a.iter().rev()) {
            if byte == b'\n' {
                if started {
                    break;
                }
                continue;
            }
            started = true;
            if n == buf.len() {
                break;
            }
            if let Some(slot) = buf.get_mut(n) {
                *slot = byte;
            }
            n += 1;
        }
        let line = buf.get_mut(..n).unwrap_or(&mut []);
        line.reverse();
        match core::str::from_utf8(line) {
            Ok(s) => s,
            Err(e) => {
                core::str::from_utf8(line.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
            }
        }
    }
}
