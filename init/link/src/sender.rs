//! The sending end: offers one `.qb` file and serves the byte ranges the
//! receiver asks for, in the order asked. It keeps no transfer state worth
//! saving: a new sender for the same file resumes wherever the receiver is.
//!
//! ```text
//! Hello ──(Welcome)──▶ Offered ──(Plan / Want)──▶ Serving ──(Result)──▶ Done
//!   ▲ resend Hello        │ resend Offer every retry   │ silent for 5 retries:
//!   └──── every retry     └─────────────────────────────┘ back to Hello
//! ```

use crate::frame::{DecodeStats, Decoder};
use crate::msg::{Msg, Outcome, Range, PROTOCOL_VERSION};
use crate::outbox::Outbox;
use crate::{Endpoint, MAX_ENVELOPE, MAX_PIECE};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use quilt_bundle::envelope::MAGIC_BUNDLE;
use quilt_bundle::{Hash, Header};

/// Reading the bundle file failed; the file keeps the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError;

/// Random access to the bundle file being sent.
pub trait BundleFile {
    /// Fills `buf` from `offset`; the range is within the file's length.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

impl BundleFile for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let start = usize::try_from(offset).map_err(|_| ReadError)?;
        let src = self.get(start..start + buf.len()).ok_or(ReadError)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl BundleFile for Vec<u8> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.as_slice().read_at(offset, buf)
    }
}

/// Sender settings.
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    /// Piece size proposed in `Hello`; the board cuts new requests at the
    /// smaller of this and its own limit.
    pub max_piece: u32,
    /// Resend Hello / Offer after this long without an answer.
    pub retry_ms: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            max_piece: MAX_PIECE,
            retry_ms: 1000,
        }
    }
}

/// Where a sender is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderState {
    /// Waiting for the board's `Welcome`.
    Hello,
    /// Offered; waiting for the first request.
    Offered,
    /// Serving requests.
    Serving,
    /// The board answered.
    Done(Outcome),
}

/// Counters for progress and efficiency figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Piece payload bytes sent (resends included).
    pub payload: u64,
    /// Pieces sent.
    pub pieces: u64,
    /// Bytes written to the line (all frames, delimiters included).
    pub wire_out: u64,
    /// Frames received from the board.
    pub rx: DecodeStats,
    /// Requests for ranges already sent once (lost or corrupted on the way).
    pub resent: u64,
}

/// The bundle's identity, read from its envelope.
#[derive(Debug, Clone)]
pub struct OfferInfo {
    pub header: Header,
    pub envelope_len: u32,
    pub qb_len: u64,
}

/// Most ranges queued at the sender; a receiver asking for more than its
/// window just sees them time out and asks again.
const MAX_QUEUE: usize = 1024;

/// The sending end of one transfer.
#[derive(Debug)]
pub struct Sender<F> {
    file: F,
    info: OfferInfo,
    cfg: SenderConfig,
    state: SenderState,
    decoder: Decoder,
    out: Outbox,
    queue: VecDeque<Range>,
    /// Highest offset served so far (resend detection).
    served_to: u64,
    plan: Option<(u64, u64)>,
    last_rx: u64,
    last_ctrl: Option<u64>,
    stats: SenderStats,
    buf: Vec<u8>,
    error: bool,
}

/// Why a file cannot be offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferError {
    /// Reading the file failed.
    Read,
    /// Not a `.qb` (bad magic, sizes out of range).
    NotABundle,
    /// The header does not decode.
    Header(quilt_bundle::Error),
}

impl core::fmt::Display for OfferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OfferError::Read => f.write_str("reading the bundle failed"),
            OfferError::NotABundle => f.write_str("not a quilt bundle (.qb)"),
            OfferError::Header(e) => write!(f, "bundle header: {e}"),
        }
    }
}

/// Reads a `.qb`'s envelope for offering: its header (not trust-checked:
/// the board does that) and the envelope length.
pub fn read_offer<F: BundleFile>(file: &mut F, qb_len: u64) -> Result<OfferInfo, OfferError> {
    let mut head = [0u8; 12];
    if qb_len < 13 {
        return Err(OfferError::NotABundle);
    }
    file.read_at(0, &mut head).map_err(|_| OfferError::Read)?;
    let (magic, len) = head.split_at(8);
    if magic != MAGIC_BUNDLE {
        return Err(OfferError::NotABundle);
    }
    let mut l = [0u8; 4];
    l.copy_from_slice(len);
    let body_len = u32::from_le_bytes(l);
    if body_len == 0 || body_len > quilt_bundle::MAX_HEADER || u64::from(body_len) + 13 > qb_len {
        return Err(OfferError::NotABundle);
    }
    let mut body = vec![0u8; body_len as usize + 1];
    file.read_at(12, &mut body).map_err(|_| OfferError::Read)?;
    let count = body.pop().unwrap_or(0);
    let envelope_len = 13 + body_len + u32::from(count) * 96;
    if envelope_len > MAX_ENVELOPE || u64::from(envelope_len) > qb_len {
        return Err(OfferError::NotABundle);
    }
    let header = Header::decode(&body).map_err(OfferError::Header)?;
    Ok(OfferInfo {
        header,
        envelope_len,
        qb_len,
    })
}

impl<F: BundleFile> Sender<F> {
    /// A sender for `file` (`qb_len` bytes long).
    pub fn new(mut file: F, qb_len: u64, cfg: SenderConfig) -> Result<Self, OfferError> {
        let info = read_offer(&mut file, qb_len)?;
        Ok(Sender {
            file,
            info,
            cfg,
            state: SenderState::Hello,
            decoder: Decoder::new(),
            out: Outbox::default(),
            queue: VecDeque::new(),
            served_to: 0,
            plan: None,
            last_rx: 0,
            last_ctrl: None,
            stats: SenderStats::default(),
            buf: Vec::new(),
            error: false,
        })
    }

    pub fn info(&self) -> &OfferInfo {
        &self.info
    }
    pub fn state(&self) -> &SenderState {
        &self.state
    }
    pub fn stats(&self) -> SenderStats {
        let mut s = self.stats;
        s.wire_out = self.out.written;
        s.rx = self.decoder.stats;
        s
    }
    /// `(need, held)` from the board's plan, once it has sent one.
    pub fn plan(&self) -> Option<(u64, u64)> {
        self.plan
    }
    /// True when reading the file failed (it changed or vanished underneath).
    pub fn file_error(&self) -> bool {
        self.error
    }

    fn root(&self) -> Hash {
        self.info.header.root
    }

    fn send_hello(&mut self, now: u64) {
        self.out.sync();
        self.out.push(&Msg::Hello {
            version: PROTOCOL_VERSION,
            max_piece: self.cfg.max_piece,
        });
        self.last_ctrl = Some(now);
    }

    fn send_offer(&mut self, now: u64) {
        self.out.push(&Msg::Offer {
            root: self.root().0,
            qb_len: self.info.qb_len,
            envelope_len: self.info.envelope_len,
        });
        self.last_ctrl = Some(now);
    }

    fn handle(&mut self, msg: Msg<'_>, now: u64) {
        match msg {
            Msg::Welcome { version, .. } => {
                if version != PROTOCOL_VERSION {
                    self.state = SenderState::Done(Outcome::Refused {
                        reason: alloc::format!(
                            "the board speaks link protocol {version}, this sender {PROTOCOL_VERSION}; update one of them"
                        ),
                    });
                    return;
                }
                if self.state == SenderState::Hello {
                    self.state = SenderState::Offered;
                    self.send_offer(now);
                }
            }
            Msg::Plan {
                root, need, held, ..
            } if root == self.root().0 => {
                self.plan = Some((need, held));
                if self.state == SenderState::Offered {
                    self.state = SenderState::Serving;
                }
            }
            Msg::Want { ranges } => {
                if matches!(self.state, SenderState::Hello | SenderState::Done(_)) {
                    return;
                }
                self.state = SenderState::Serving;
                for r in ranges.into_iter().take(crate::MAX_RANGES) {
                    // Up to the hard cap, not the agreed size: a board resuming a
                    // session re-asks for ranges cut for an earlier sender.
                    let valid = r.len > 0 && r.len <= MAX_PIECE && r.end() <= self.info.qb_len;
                    if valid && !self.queue.contains(&r) && self.queue.len() < MAX_QUEUE {
                        if r.offset < self.served_to {
                            self.stats.resent += 1;
                        }
                        self.queue.push_back(r);
                    }
                }
            }
            Msg::Result { root, outcome } if root == self.root().0 => {
                self.queue.clear();
                self.state = SenderState::Done(outcome);
            }
            _ => {}
        }
    }

    /// Builds the next piece frame when the outbox has room.
    fn refill(&mut self) {
        while self.out.is_empty() {
            let Some(r) = self.queue.pop_front() else {
                return;
            };
            self.buf.resize(r.len as usize, 0);
            if self.file.read_at(r.offset, &mut self.buf).is_err() {
                self.error = true;
                self.queue.clear();
                return;
            }
            self.out.push(&Msg::Piece {
                offset: r.offset,
                data: &self.buf,
            });
            self.stats.payload += u64::from(r.len);
            self.stats.pieces += 1;
            self.served_to = self.served_to.max(r.end());
        }
    }
}

impl<F: BundleFile> Endpoint for Sender<F> {
    fn feed(&mut self, bytes: &[u8], now: u64) {
        let mut input = bytes;
        while let Some(r) = self.decoder.next_frame(&mut input) {
            let Ok(body) = r else { continue };
            // Detached from the decoder's buffer: the sender's inputs carry
            // no borrowed bytes.
            let Some(msg) = postcard::from_bytes::<Msg<'_>>(body).ok().map(own) else {
                self.decoder.reject();
                continue;
            };
            self.last_rx = now;
            self.handle(msg, now);
        }
    }

    fn tick(&mut self, now: u64) {
        let due =
            |last: Option<u64>, after: u64| last.is_none_or(|t| now.saturating_sub(t) >= after);
        match self.state {
            SenderState::Hello if due(self.last_ctrl, self.cfg.retry_ms) => self.send_hello(now),
            SenderState::Offered if due(self.last_ctrl, self.cfg.retry_ms) => self.send_offer(now),
            SenderState::Serving
                if self.queue.is_empty()
                    && self.out.is_empty()
                    && now.saturating_sub(self.last_rx) >= 5 * self.cfg.retry_ms
                    && due(self.last_ctrl, 5 * self.cfg.retry_ms) =>
            {
                // The board went quiet (rebooted, or a new cable): start over;
                // it resumes from what it kept.
                self.state = SenderState::Hello;
                self.send_hello(now);
            }
            _ => {}
        }
    }

    fn pending(&mut self) -> &[u8] {
        self.refill();
        self.out.pending()
    }

    fn consume(&mut self, n: usize) {
        self.out.consume(n);
    }

    fn finished(&self) -> bool {
        matches!(self.state, SenderState::Done(_)) || self.error
    }
}

/// Detaches a received message from the frame buffer. Only the sender's
/// inputs go through here; none of them carries borrowed bytes.
fn own(msg: Msg<'_>) -> Msg<'static> {
    match msg {
        Msg::Hello { version, max_piece } => Msg::Hello { version, max_piece },
        Msg::Welcome {
            version,
            max_piece,
            window,
        } => Msg::Welcome {
            version,
            max_piece,
            window,
        },
        Msg::Offer {
            root,
            qb_len,
            envelope_len,
        } => Msg::Offer {
            root,
            qb_len,
            envelope_len,
        },
        Msg::Plan {
            root,
            need,
            held,
            chunks_need,
            chunks_held,
        } => Msg::Plan {
            root,
            need,
            held,
            chunks_need,
            chunks_held,
        },
        Msg::Want { ranges } => Msg::Want { ranges },
        Msg::Result { root, outcome } => Msg::Result { root, outcome },
        Msg::Piece { offset, .. } => Msg::Piece { offset, data: &[] },
    }
}
