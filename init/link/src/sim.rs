//! A simulated serial line between two endpoints, deterministic and pure:
//! for tests (cuts, corruption) and for efficiency figures at a given baud
//! rate. Time advances in 1 ms steps; each direction carries at most
//! `baud / 10` bytes per second (8N1: start bit, 8 data bits, stop bit),
//! full duplex, with no latency beyond serialisation. Endpoints answer
//! instantly, so the figures are the protocol's own, not a board's.

use crate::Endpoint;
use alloc::vec::Vec;

/// What to do to a byte on its way.
pub type Fault<'a> = &'a mut dyn FnMut(Dir, u64, u8) -> Option<u8>;

/// Direction of a byte: `AtoB` is from the first endpoint to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    AtoB,
    BtoA,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Simulated milliseconds until both ends finished (or the limit).
    pub ms: u64,
    pub bytes_a_to_b: u64,
    pub bytes_b_to_a: u64,
    /// Both endpoints finished.
    pub finished: bool,
}

/// A line between two endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    /// Bits per second; 0 means unlimited (everything pending moves each step).
    pub baud: u32,
    /// Stop after this many simulated milliseconds.
    pub limit_ms: u64,
    /// Start the clock here (a resumed run continues the same timeline).
    pub start_ms: u64,
}

impl Line {
    pub fn new(baud: u32) -> Self {
        Line {
            baud,
            limit_ms: 24 * 3600 * 1000,
            start_ms: 0,
        }
    }

    /// Runs until both ends are finished, the limit passes, or `cut` returns
    /// true (checked every step, with the bytes moved so far). Every byte
    /// passes through `fault`, which may change it or drop it (`None`).
    pub fn run(
        &self,
        a: &mut dyn Endpoint,
        b: &mut dyn Endpoint,
        fault: Fault<'_>,
        cut: &mut dyn FnMut(&SimReport) -> bool,
    ) -> SimReport {
        let per_ms = f64::from(self.baud) / 10.0 / 1000.0;
        let mut credit = [0f64; 2];
        let mut report = SimReport::default();
        let mut now = self.start_ms;
        let mut moved = Vec::new();
        while now < self.start_ms + self.limit_ms {
            now += 1;
            a.tick(now);
            b.tick(now);
            for dir in [Dir::AtoB, Dir::BtoA] {
                let (from, to): (&mut dyn Endpoint, &mut dyn Endpoint) = match dir {
                    Dir::AtoB => (&mut *a, &mut *b),
                    Dir::BtoA => (&mut *b, &mut *a),
                };
                let slot = usize::from(dir == Dir::BtoA);
                let Some(c) = credit.get_mut(slot) else {
                    continue;
                };
                if self.baud > 0 {
                    // Credit does not pile up while the line is idle.
                    *c = (*c + per_ms).min(per_ms.max(1.0) * 2.0);
                }
                moved.clear();
                loop {
                    let room = if self.baud == 0 {
                        usize::MAX
                    } else {
                        *c as usize
                    };
                    let out = from.pending();
                    if out.is_empty() || room == 0 {
                        break;
                    }
                    let n = out.len().min(room);
                    moved.extend_from_slice(out.get(..n).unwrap_or_default());
                    from.consume(n);
                    if self.baud > 0 {
                        *c -= n as f64;
                    }
                }
                let count = match dir {
                    Dir::AtoB => &mut report.bytes_a_to_b,
                    Dir::BtoA => &mut report.bytes_b_to_a,
                };
                let mut delivered = Vec::with_capacity(moved.len());
                for &byte in &moved {
                    if let Some(x) = fault(dir, *count, byte) {
                        delivered.push(x);
                    }
                    *count += 1;
                }
                if !delivered.is_empty() {
                    to.feed(&delivered, now);
                }
            }
            report.ms = now - self.start_ms;
            if a.finished() && b.finished() {
                report.finished = true;
                break;
            }
            if cut(&report) {
                break;
            }
        }
        report
    }
}

/// A fault that changes nothing.
pub fn clean(_: Dir, _: u64, b: u8) -> Option<u8> {
    Some(b)
}
