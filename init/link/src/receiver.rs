//! The receiving end (the board): asks for what it lacks, checks as it
//! goes, installs only through the store's full checks.
//!
//! ```text
//! (idle) ──Offer──▶ Envelope ──checked by Storage::check_offer──▶ Manifest
//!   (skipped when staged by an earlier attempt) ──staged──▶ Chunks (only
//!   those Storage::has_chunk lacks) ──all kept──▶ Storage::install ──▶ Result
//! ```
//!
//! Requests are byte ranges of the sender's `.qb`, at most one piece each,
//! with at most `window` bytes outstanding. The sender answers in order, so
//! a piece arriving while an earlier one is still outstanding means the
//! earlier one was lost (a corrupted frame is dropped by its CRC): it is
//! asked for again at once. A silence of `retry_ms` (no byte at all) with
//! requests outstanding re-asks for all of them (a lost `Want`, a lost last
//! piece).
//!
//! Memory is bounded whatever the peer sends: one frame, the envelope
//! (≤ [`MAX_ENVELOPE`], checked before it is allocated), the manifest (its
//! length comes from the *signed, trust-checked* header), and chunk buffers
//! up to `buffer_budget` plus one chunk. Offers and requests carry no sizes
//! the receiver allocates by.

use crate::frame::{DecodeStats, Decoder};
use crate::msg::{clip, Msg, Outcome, Range, PROTOCOL_VERSION};
use crate::outbox::Outbox;
use crate::{Endpoint, DEFAULT_PIECE, MAX_ENVELOPE, MAX_PIECE, MAX_RANGES};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use quilt_bundle::envelope::{Envelope, MAGIC_BUNDLE};
use quilt_bundle::{hash, Hash, Header, Manifest};

/// What a committed install reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSummary {
    pub name: String,
    pub version: u64,
    pub chunks_written: u32,
    pub bytes_reused: u64,
}

/// The board's store, as the receiver needs it. Errors are the reasons sent
/// back to the sender, so they should say what failed and what to do.
pub trait Storage {
    /// Checks a bundle's signed envelope for installing here: signatures,
    /// threshold, compatibility, validity window, version rules. Nothing is
    /// fetched for a bundle this refuses.
    fn check_offer(&mut self, envelope: &Envelope) -> Result<Header, String>;
    /// True when exactly this bundle is installed already.
    fn is_installed(&mut self, header: &Header) -> bool;
    /// The manifest an earlier attempt staged for `root`, if any (checked
    /// against the root by the storage).
    fn staged_manifest(&mut self, root: &Hash) -> Option<Vec<u8>>;
    /// Keeps envelope and manifest durably so a later attempt can resume.
    fn stage(&mut self, envelope: &Envelope, manifest: &[u8]) -> Result<(), String>;
    /// True when chunk `id` is held intact.
    fn has_chunk(&mut self, id: &Hash) -> bool;
    /// Keeps one verified chunk durably.
    fn put_chunk(&mut self, id: &Hash, bytes: &[u8]) -> Result<(), String>;
    /// Installs the staged bundle, re-checking everything; commits or
    /// changes nothing.
    fn install(&mut self, root: &Hash) -> Result<InstallSummary, String>;
    /// Forgets what is staged for `root` (after a refusal).
    fn discard(&mut self, root: &Hash);
}

/// Receiver settings.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverConfig {
    /// Largest piece to ask for (the sender's limit wins if smaller).
    pub max_piece: u32,
    /// Most bytes requested and not yet received.
    pub window: u32,
    /// Re-ask for everything outstanding after this long without a frame.
    pub retry_ms: u64,
    /// Chunk bytes being assembled at once (one chunk is always allowed).
    pub buffer_budget: u32,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            max_piece: DEFAULT_PIECE,
            window: 16 * 1024,
            retry_ms: 1000,
            buffer_budget: 512 * 1024,
        }
    }
}

/// State changes worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The signed envelope passed the store's checks; fetching content.
    Offered {
        name: String,
        version: u64,
        root: Hash,
    },
    /// What will travel, after dedup and earlier attempts.
    Planned {
        need: u64,
        held: u64,
        chunks_need: u32,
        chunks_held: u32,
    },
    /// The session ended.
    Finished { root: Hash, outcome: Outcome },
}

/// Counters for the figures and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub rx: DecodeStats,
    /// Pieces accepted and their payload bytes.
    pub pieces: u64,
    pub payload: u64,
    /// Pieces that arrived though not outstanding (late copies).
    pub duplicates: u64,
    /// Requests re-sent because a later piece overtook them (lost on the line).
    pub lost: u64,
    /// Silences that re-sent every outstanding request.
    pub timeouts: u64,
    /// Chunks whose bytes did not match their signed id.
    pub bad_chunks: u64,
    /// Bytes written to the line.
    pub wire_out: u64,
}

/// A chunk that fails its id this often in one session refuses the bundle.
const CHUNK_TRIES: u32 = 2;
/// Smallest piece either side may negotiate (bounds the request tables).
const MIN_PIECE: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Envelope,
    Manifest,
    Chunk { index: u32, id: Hash },
}

#[derive(Debug, Clone, Copy)]
struct Item {
    range: Range,
    kind: Kind,
}

#[derive(Debug)]
struct Open {
    item: Item,
    buf: Vec<u8>,
    got: u32,
    /// Bytes of this item requested for the first time so far.
    asked: u32,
}

#[derive(Debug)]
struct Session {
    root: Hash,
    qb_len: u64,
    envelope_len: u32,
    envelope: Option<Envelope>,
    header: Option<Header>,
    /// Chunk list known and checked against the store.
    planned: bool,
    items: VecDeque<Item>,
    open: Vec<Open>,
    /// Ranges to ask for again (lost), in order, before any new one.
    pending: VecDeque<Range>,
    outstanding: VecDeque<Range>,
    out_bytes: u64,
    chunk_failures: u32,
    done: Option<Outcome>,
}

/// The receiving end.
#[derive(Debug)]
pub struct Receiver {
    decoder: Decoder,
    core: Core,
}

#[derive(Debug)]
struct Core {
    cfg: ReceiverConfig,
    piece: u32,
    out: Outbox,
    session: Option<Session>,
    events: VecDeque<Event>,
    stats: ReceiverStats,
    last_rx: u64,
}

impl Receiver {
    pub fn new(cfg: ReceiverConfig) -> Self {
        let piece = cfg.max_piece.clamp(MIN_PIECE, MAX_PIECE);
        Receiver {
            decoder: Decoder::new(),
            core: Core {
                cfg,
                piece,
                out: Outbox::default(),
                session: None,
                events: VecDeque::new(),
                stats: ReceiverStats::default(),
                last_rx: 0,
            },
        }
    }

    /// Bytes arrived from the line. Storage calls (staging, chunk writes,
    /// the final install) happen inside.
    pub fn feed<S: Storage + ?Sized>(&mut self, bytes: &[u8], now_ms: u64, storage: &mut S) {
        // Any byte counts as the line being alive: at a slow baud rate one
        // piece takes longer than `retry_ms` to arrive whole.
        if !bytes.is_empty() {
            self.core.last_rx = now_ms;
        }
        let mut input = bytes;
        while let Some(r) = self.decoder.next_frame(&mut input) {
            let Ok(body) = r else { continue };
            match postcard::from_bytes::<Msg<'_>>(body) {
                Ok(msg) => {
                    self.core.handle(msg, storage);
                }
                Err(_) => self.decoder.reject(),
            }
        }
        self.core.fill();
    }

    /// Time passed: re-asks after a silence.
    pub fn tick(&mut self, now_ms: u64) {
        let core = &mut self.core;
        let Some(s) = core.session.as_mut() else {
            return;
        };
        if s.done.is_some() || s.outstanding.is_empty() {
            return;
        }
        if now_ms.saturating_sub(core.last_rx) < core.cfg.retry_ms {
            return;
        }
        core.last_rx = now_ms;
        core.stats.timeouts += 1;
        requeue_all(s);
        core.fill();
    }

    /// Bytes to write to the line.
    pub fn pending(&self) -> &[u8] {
        self.core.out.pending()
    }
    /// `n` bytes of [`Receiver::pending`] were written.
    pub fn consume(&mut self, n: usize) {
        self.core.out.consume(n);
    }
    /// The next state change to log.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }
    /// How the current session ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.core.session.as_ref().and_then(|s| s.done.as_ref())
    }
    /// True while a transfer is under way (not finished, not idle).
    pub fn busy(&self) -> bool {
        self.core.session.as_ref().is_some_and(|s| s.done.is_none())
    }
    pub fn stats(&self) -> ReceiverStats {
        let mut s = self.core.stats;
        s.rx = self.decoder.stats;
        s.wire_out = self.core.out.written;
        s
    }
    /// Bytes held in receive and assembly buffers: at most one encoded
    /// frame, the envelope, the manifest and the chunk budget (see the
    /// module docs); for diagnostics and the bound tests.
    pub fn buffered_bytes(&self) -> usize {
        let open = self
            .core
            .session
            .as_ref()
            .map_or(0, |s| s.open.iter().map(|o| o.buf.capacity()).sum());
        self.decoder.buffered() + open
    }

    /// Drops what was not yet written and forgets outstanding requests, as
    /// when the line is closed; the session (and what it holds) stays.
    pub fn link_lost(&mut self) {
        self.core.out.clear();
        let stats = self.decoder.stats;
        self.decoder = Decoder::new();
        self.decoder.stats = stats;
        if let Some(s) = self.core.session.as_mut() {
            requeue_all(s);
        }
    }
}

impl Session {
    /// A `Plan` for what is still missing, once the chunk list is known.
    fn remaining_plan(&self) -> Option<Msg<'static>> {
        let h = self.header.as_ref().filter(|_| self.planned)?;
        let open: u64 = self
            .open
            .iter()
            .map(|o| u64::from(o.item.range.len - o.got))
            .sum();
        let queued: u64 = self.items.iter().map(|i| u64::from(i.range.len)).sum();
        let need = open + queued;
        let chunks_need = u32::try_from(self.open.len() + self.items.len()).unwrap_or(u32::MAX);
        Some(Msg::Plan {
            root: self.root.0,
            need,
            held: h.content_len.saturating_sub(need),
            chunks_need,
            chunks_held: h.chunk_count.saturating_sub(chunks_need),
        })
    }
}

/// Moves every outstanding request back to the front of `pending`.
fn requeue_all(s: &mut Session) {
    while let Some(r) = s.outstanding.pop_back() {
        s.pending.push_front(r);
    }
    s.out_bytes = 0;
}

impl Core {
    fn handle<S: Storage + ?Sized>(&mut self, msg: Msg<'_>, storage: &mut S) {
        match msg {
            Msg::Hello { version, max_piece } => {
                if version == PROTOCOL_VERSION {
                    self.piece =
                        max_piece.clamp(MIN_PIECE, self.cfg.max_piece.clamp(MIN_PIECE, MAX_PIECE));
                }
                // A new sender has an empty queue: what it was asked is lost.
                if let Some(s) = self.session.as_mut() {
                    requeue_all(s);
                }
                self.out.push(&Msg::Welcome {
                    version: PROTOCOL_VERSION,
                    max_piece: self.piece,
                    window: self.cfg.window,
                });
            }
            Msg::Offer {
                root,
                qb_len,
                envelope_len,
            } => self.offer(Hash(root), qb_len, envelope_len),
            Msg::Piece { offset, data } => self.piece_in(offset, data, storage),
            _ => {}
        }
    }

    fn offer(&mut self, root: Hash, qb_len: u64, envelope_len: u32) {
        // The same bundle again while it is arriving: a sender that
        // restarted (its Hello already re-queued what it had been asked).
        // After the end, a new session: the store's answer may have changed
        // (and a sender that lost the Result hears it again this way).
        if let Some(s) = self
            .session
            .as_ref()
            .filter(|s| s.root == root && s.done.is_none())
        {
            // Tell the new sender what is left, for its progress display.
            if let Some(plan) = s.remaining_plan() {
                self.out.push(&plan);
            }
            return;
        }
        let mut s = Session {
            root,
            qb_len,
            envelope_len,
            envelope: None,
            header: None,
            planned: false,
            items: VecDeque::new(),
            open: Vec::new(),
            pending: VecDeque::new(),
            outstanding: VecDeque::new(),
            out_bytes: 0,
            chunk_failures: 0,
            done: None,
        };
        let sane = (13..=MAX_ENVELOPE).contains(&envelope_len) && u64::from(envelope_len) < qb_len;
        if sane {
            s.items.push_back(Item {
                range: Range {
                    offset: 0,
                    len: envelope_len,
                },
                kind: Kind::Envelope,
            });
        }
        self.session = Some(s);
        if !sane {
            self.finish(Outcome::Refused {
                reason: format!(
                    "offer of a {qb_len}-byte file with a {envelope_len}-byte envelope is not a quilt bundle"
                ),
            });
        }
    }

    fn piece_in<S: Storage + ?Sized>(&mut self, offset: u64, data: &[u8], storage: &mut S) {
        let Some(s) = self.session.as_mut().filter(|s| s.done.is_none()) else {
            return;
        };
        let Some(pos) = s
            .outstanding
            .iter()
            .position(|r| r.offset == offset && r.len as usize == data.len())
        else {
            self.stats.duplicates += 1;
            return;
        };
        // In-order answers: everything asked before this one was lost.
        for _ in 0..pos {
            if let Some(r) = s.outstanding.pop_front() {
                s.out_bytes -= u64::from(r.len);
                s.pending.push_back(r);
                self.stats.lost += 1;
            }
        }
        if let Some(r) = s.outstanding.pop_front() {
            s.out_bytes -= u64::from(r.len);
        }
        self.stats.pieces += 1;
        self.stats.payload += data.len() as u64;
        let Some(idx) = s
            .open
            .iter()
            .position(|o| o.item.range.offset <= offset && offset < o.item.range.end())
        else {
            return;
        };
        let Some(o) = s.open.get_mut(idx) else { return };
        let at = usize::try_from(offset - o.item.range.offset).unwrap_or(usize::MAX);
        let Some(dst) = o.buf.get_mut(at..at.saturating_add(data.len())) else {
            return;
        };
        dst.copy_from_slice(data);
        o.got += data.len() as u32;
        if o.got == o.item.range.len {
            let o = s.open.remove(idx);
            self.complete(o, storage);
        }
    }

    fn complete<S: Storage + ?Sized>(&mut self, o: Open, storage: &mut S) {
        match o.item.kind {
            Kind::Envelope => self.envelope_in(o.buf, storage),
            Kind::Manifest => {
                let Some(env) = self.session.as_ref().and_then(|s| s.envelope.clone()) else {
                    return;
                };
                if let Err(reason) = storage.stage(&env, &o.buf) {
                    return self.refuse(storage, reason);
                }
                self.plan(&o.buf, storage);
            }
            Kind::Chunk { index, id } => {
                if hash::leaf(&o.buf) != id {
                    self.stats.bad_chunks += 1;
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
                    s.chunk_failures += 1;
                    if s.chunk_failures < CHUNK_TRIES {
                        s.items.push_front(o.item);
                        return;
                    }
                    return self.refuse(
                        storage,
                        format!(
                            "chunk {index} does not match its id {} in the signed manifest, {CHUNK_TRIES} times: the bundle file is corrupt or tampered; nothing was installed",
                            id.short()
                        ),
                    );
                }
                if let Err(reason) = storage.put_chunk(&id, &o.buf) {
                    return self.refuse(storage, reason);
                }
            }
        }
        self.maybe_install(storage);
    }

    fn envelope_in<S: Storage + ?Sized>(&mut self, bytes: Vec<u8>, storage: &mut S) {
        let env = match Envelope::parse_exact(&MAGIC_BUNDLE, "bundle envelope", &bytes) {
            Ok(e) => e,
            Err(e) => {
                return self.finish(Outcome::Refused {
                    reason: format!("{e}"),
                })
            }
        };
        let header = match storage.check_offer(&env) {
            Ok(h) => h,
            Err(reason) => return self.finish(Outcome::Refused { reason }),
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if header.root != s.root {
            let reason = format!(
                "the envelope signs root {} but the offer named {}",
                header.root.short(),
                s.root.short()
            );
            return self.finish(Outcome::Refused { reason });
        }
        let expected = u64::from(s.envelope_len)
            .saturating_add(u64::from(header.manifest_len))
            .saturating_add(header.content_len);
        if s.qb_len != expected {
            let reason = format!(
                "the file is {} bytes but its signed header describes {expected}: it is truncated or has bytes appended",
                s.qb_len
            );
            return self.finish(Outcome::Refused { reason });
        }
        self.events.push_back(Event::Offered {
            name: header.name.clone(),
            version: header.version,
            root: header.root,
        });
        if storage.is_installed(&header) {
            let outcome = Outcome::Installed {
                name: header.name.clone(),
                version: header.version,
                chunks_written: 0,
                bytes_reused: header.content_len,
                already: true,
            };
            return self.finish(outcome);
        }
        let root = header.root;
        let manifest_len = header.manifest_len;
        s.envelope = Some(env);
        s.header = Some(header);
        match storage
            .staged_manifest(&root)
            .filter(|m| m.len() == manifest_len as usize)
        {
            Some(m) => self.plan(&m, storage),
            None => s.items.push_back(Item {
                range: Range {
                    offset: u64::from(s.envelope_len),
                    len: manifest_len,
                },
                kind: Kind::Manifest,
            }),
        }
    }

    /// The manifest is known and staged: list the chunks the store lacks.
    fn plan<S: Storage + ?Sized>(&mut self, manifest_bytes: &[u8], storage: &mut S) {
        let manifest = match Manifest::decode(manifest_bytes) {
            Ok(m) => m,
            Err(e) => return self.refuse(storage, format!("manifest: {e}")),
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut offset = u64::from(s.envelope_len) + manifest_bytes.len() as u64;
        let (mut need, mut held, mut chunks_need, mut chunks_held) = (0u64, 0u64, 0u32, 0u32);
        for (index, c) in manifest.chunk_order().into_iter().enumerate() {
            if storage.has_chunk(&c.id) {
                held += u64::from(c.len);
                chunks_held += 1;
            } else {
                need += u64::from(c.len);
                chunks_need += 1;
                s.items.push_back(Item {
                    range: Range { offset, len: c.len },
                    kind: Kind::Chunk {
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        id: c.id,
                    },
                });
            }
            offset += u64::from(c.len);
        }
        s.planned = true;
        self.out.push(&Msg::Plan {
            root: s.root.0,
            need,
            held,
            chunks_need,
            chunks_held,
        });
        self.events.push_back(Event::Planned {
            need,
            held,
            chunks_need,
            chunks_held,
        });
        self.maybe_install(storage);
    }

    fn maybe_install<S: Storage + ?Sized>(&mut self, storage: &mut S) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let idle = s.items.is_empty() && s.open.is_empty() && s.pending.is_empty();
        if !(s.planned && idle && s.done.is_none()) {
            return;
        }
        let root = s.root;
        match storage.install(&root) {
            Ok(i) => self.finish(Outcome::Installed {
                name: i.name,
                version: i.version,
                chunks_written: i.chunks_written,
                bytes_reused: i.bytes_reused,
                already: false,
            }),
            Err(reason) => self.refuse(storage, reason),
        }
    }

    /// Refuses after content was staged: the staged parts go too.
    fn refuse<S: Storage + ?Sized>(&mut self, storage: &mut S, reason: String) {
        if let Some(s) = self.session.as_ref() {
            storage.discard(&s.root);
        }
        self.finish(Outcome::Refused { reason });
    }

    fn finish(&mut self, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Refused { reason } => Outcome::Refused {
                reason: clip(reason),
            },
            o => o,
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.items.clear();
        s.open.clear();
        s.pending.clear();
        s.outstanding.clear();
        s.out_bytes = 0;
        s.done = Some(outcome.clone());
        self.out.push(&Msg::Result {
            root: s.root.0,
            outcome: outcome.clone(),
        });
        self.events.push_back(Event::Finished {
            root: s.root,
            outcome,
        });
    }

    /// Asks for more while the window has room.
    fn fill(&mut self) {
        let Some(s) = self.session.as_mut().filter(|s| s.done.is_none()) else {
            return;
        };
        let mut want: Vec<Range> = Vec::new();
        while s.out_bytes < u64::from(self.cfg.window) {
            let r = if let Some(r) = s.pending.pop_front() {
                r
            } else if let Some(r) = next_fresh(&mut s.open, self.piece) {
                r
            } else {
                let open_bytes: usize = s.open.iter().map(|o| o.buf.len()).sum();
                let fits = |it: &Item| {
                    s.open.is_empty()
                        || open_bytes.saturating_add(it.range.len as usize)
                            <= self.cfg.buffer_budget as usize
                };
                match s.items.front() {
                    Some(it) if fits(it) => {}
                    _ => break,
                }
                let Some(item) = s.items.pop_front() else {
                    break;
                };
                s.open.push(Open {
                    item,
                    buf: vec![0u8; item.range.len as usize],
                    got: 0,
                    asked: 0,
                });
                continue;
            };
            s.outstanding.push_back(r);
            s.out_bytes += u64::from(r.len);
            want.push(r);
        }
        for batch in want.chunks(MAX_RANGES) {
            let mut ranges = heapless::Vec::new();
            for r in batch {
                // `batch` holds at most MAX_RANGES, the capacity.
                let _ = ranges.push(*r);
            }
            self.out.push(&Msg::Want { ranges });
        }
    }
}

/// The next never-asked piece of the open items, in file order.
fn next_fresh(open: &mut [Open], piece: u32) -> Option<Range> {
    let o = open.iter_mut().find(|o| o.asked < o.item.range.len)?;
    let len = piece.min(o.item.range.len - o.asked);
    let r = Range {
        offset: o.item.range.offset + u64::from(o.asked),
        len,
    };
    o.asked += len;
    Some(r)
}

/// A receiver paired with its storage, for the drivers.
#[derive(Debug)]
pub struct Bound<'a, S: ?Sized> {
    pub receiver: &'a mut Receiver,
    pub storage: &'a mut S,
}

impl<S: Storage + ?Sized> Endpoint for Bound<'_, S> {
    fn feed(&mut self, bytes: &[u8], now_ms: u64) {
        self.receiver.feed(bytes, now_ms, self.storage);
    }
    fn tick(&mut self, now_ms: u64) {
        self.receiver.tick(now_ms);
    }
    fn pending(&mut self) -> &[u8] {
        self.receiver.pending()
    }
    fn consume(&mut self, n: usize) {
        self.receiver.consume(n);
    }
    fn finished(&self) -> bool {
        self.receiver.outcome().is_some() && self.receiver.pending().is_empty()
    }
}
