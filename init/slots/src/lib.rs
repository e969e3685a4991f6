//! A/B root slots without a bootloader's help: which slot boots, when a
//! new one gets its one try, and when the board falls back by itself.
//!
//! The boot state is a 128-byte record kept twice on a small raw partition
//! (at [`COPY_OFFSETS`]), each with a sequence number and a CRC-32. A write
//! always goes to the copy the current record does *not* live in, so a
//! power cut mid-write leaves the previous record whole: reading takes the
//! valid copy with the higher sequence. This is U-Boot's redundant
//! environment and RAUC's bootchooser in one small, pure crate, so the
//! decision is unit- and property-tested, and the same code runs in
//! quilt-init and in the host tools that make disk images.
//!
//! The rules ([`decide`]):
//! - no valid record (a blank partition): boot A, which becomes primary;
//! - a slot on trial with tries left: boot it and spend a try *before*
//!   booting, so a crash, hang or power cut during the trial counts;
//! - a slot on trial with no tries left: it failed; boot the primary again
//!   and clear the trial (a fallback);
//! - otherwise the primary.
//!
//! A trial becomes primary only through [`commit`], once the booted system
//! says it is healthy.
//!
//! Each slot may also carry its dm-verity root ([`Verity`]): stage 1 then
//! mounts that slot only through a verity device, so a slot altered on
//! the medium after it was written fails to mount and the board falls
//! back. A slot's verity is set when the slot is written ([`State::with_verity`])
//! and cleared by [`stage`], so it never outlives the image it describes.
//! Version 1 records (64 bytes, before verity) still read, with no verity.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "std")]
pub mod file;

/// Bytes of one copy of the record.
pub const RECORD: usize = 128;
/// Bytes of a version 1 record (no verity roots).
const RECORD_V1: usize = 64;
/// Where the two copies live on the boot-state partition (4 KiB apart, so
/// one torn sector write cannot touch both).
pub const COPY_OFFSETS: [u64; 2] = [0, 4096];
const MAGIC: [u8; 4] = *b"QSLT";
const VERSION: u8 = 2;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A root slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The first root partition.
    A,
    /// The second.
    B,
}

impl Slot {
    /// The other one.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `"a"` or `"b"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// From [`Slot::name`].
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    fn from_code(c: u8) -> Option<Slot> {
        match c {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }
    }
}

/// How a slot's image is checked by dm-verity: the image's first
/// `data_blocks` 4 KiB blocks are the file system, its SHA-256 hash tree
/// follows right after them (no superblock, no salt), and `root` is the
/// tree's root hash (format 1, as `veritysetup format --no-superblock
/// --salt=-` makes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verity {
    /// 4 KiB blocks of file system data; the hash tree starts after them.
    pub data_blocks: u64,
    /// The SHA-256 root hash of the tree.
    pub root: [u8; 32],
}

/// Why a `.verity` file does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerityFileError {
    /// A line that is neither `key = value`, a comment nor blank.
    Line(usize),
    /// `data_blocks` missing, zero or not a number.
    DataBlocks,
    /// `root` missing or not 64 hex digits.
    Root,
}

impl core::fmt::Display for VerityFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VerityFileError::Line(n) => write!(f, "line {n} is not `key = value`"),
            VerityFileError::DataBlocks => {
                f.write_str("`data_blocks` is missing or not a positive number")
            }
            VerityFileError::Root => f.write_str("`root` is missing or not 64 hex digits"),
        }
    }
}

impl Verity {
    /// What a firmware bundle's root image `E` carries its verity root in:
    /// the file `E.verity` next to it, signed with the rest of the bundle
    /// (`quilt image verity` writes both).
    pub const SUFFIX: &'static str = ".verity";

    /// Read a `.verity` file: `data_blocks = N` and `root = "<64 hex>"`
    /// lines (a TOML subset), `#` comments.
    pub fn parse(text: &str) -> Result<Verity, VerityFileError> {
        let (mut blocks, mut root) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(VerityFileError::Line(n + 1))?;
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "data_blocks" => {
                    blocks = Some(
                        v.parse::<u64>()
                            .ok()
                            .filter(|&b| b > 0)
                            .ok_or(VerityFileError::DataBlocks)?,
                    )
                }
                "root" => {
                    root = Some(
                        quilt_bundle::hex::decode_array::<32>(v).ok_or(VerityFileError::Root)?,
                    )
                }
                _ => {}
            }
        }
        Ok(Verity {
            data_blocks: blocks.ok_or(VerityFileError::DataBlocks)?,
            root: root.ok_or(VerityFileError::Root)?,
        })
    }
}

/// The boot state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Bumped by every write; the higher valid copy wins.
    pub seq: u32,
    /// The committed slot: what boots when nothing is on trial.
    pub primary: Slot,
    /// A slot written and verified, waiting for (or in) its trial.
    pub trying: Option<Slot>,
    /// Boots the trial slot may still take.
    pub tries_left: u8,
    /// Version of the firmware in the trial slot.
    pub trying_version: u64,
    /// Version of the firmware in the primary slot (0: the factory image).
    pub primary_version: u64,
    /// The last version that fell back (not resumed by itself again).
    pub failed_version: u64,
    /// Fallbacks so far (for reports).
    pub fallbacks: u32,
    /// Each slot's dm-verity root, by [`Slot`] (A, B): `None` mounts the
    /// slot unchecked.
    pub verity: [Option<Verity>; 2],
}

impl State {
    /// The state of a blank board: A is primary, nothing on trial.
    pub fn initial() -> State {
        State {
            seq: 0,
            primary: Slot::A,
            trying: None,
            tries_left: 0,
            trying_version: 0,
            primary_version: 0,
            failed_version: 0,
            fallbacks: 0,
            verity: [None, None],
        }
    }

    /// The dm-verity root of `slot`'s image, if it has one.
    pub fn verity(&self, slot: Slot) -> Option<Verity> {
        self.verity.get(usize::from(slot.code())).copied().flatten()
    }

    /// This state with `slot`'s verity root set to `v` (the slot was just
    /// written with that image).
    pub fn with_verity(mut self, slot: Slot, v: Option<Verity>) -> State {
        if let Some(x) = self.verity.get_mut(usize::from(slot.code())) {
            *x = v;
        }
        self
    }

    /// The record bytes.
    pub fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&MAGIC);
        w.put(&[VERSION]);
        w.put(&self.seq.to_le_bytes());
        w.put(&[self.primary.code()]);
        w.put(&[self.trying.map_or(0xff, Slot::code)]);
        w.put(&[self.tries_left]);
        w.put(&self.trying_version.to_le_bytes());
        w.put(&self.primary_version.to_le_bytes());
        w.put(&self.failed_version.to_le_bytes());
        w.put(&self.fallbacks.to_le_bytes());
        for v in self.verity {
            let v = v.unwrap_or(Verity {
                data_blocks: 0,
                root: [0; 32],
            });
            w.put(&v.data_blocks.to_le_bytes());
            w.put(&v.root);
        }
        let at = w.at;
        let crc = CRC.checksum(b.get(..at).unwrap_or(&[]));
        if let Some(tail) = b.get_mut(RECORD - 4..) {
            tail.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// A record, or `None` when its magic, version, CRC or a field is bad
    /// (a torn or blank copy). Version 1 records read with no verity.
    pub fn decode(b: &[u8]) -> Option<State> {
        let len = match *b.get(4)? {
            1 => RECORD_V1,
            VERSION => RECORD,
            _ => return None,
        };
        let b = b.get(..len)?;
        let crc = u32::from_le_bytes(b.get(len - 4..)?.try_into().ok()?);
        let mut r = Reader { buf: b, at: 0 };
        if r.take(4)? != MAGIC {
            return None;
        }
        r.take(1)?;
        let seq = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let primary = Slot::from_code(*r.take(1)?.first()?)?;
        let trying = match *r.take(1)?.first()? {
            0xff => None,
            c => Some(Slot::from_code(c)?),
        };
        let tries_left = *r.take(1)?.first()?;
        let trying_version = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let primary_version = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let failed_version = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let fallbacks = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let mut verity = [None, None];
        if len == RECORD {
            for v in verity.iter_mut() {
                let data_blocks = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
                let root: [u8; 32] = r.take(32)?.try_into().ok()?;
                // Zero blocks: this slot has no verity root.
                *v = (data_blocks != 0).then_some(Verity { data_blocks, root });
            }
        }
        let used = r.at;
        // Everything between the fields and the CRC is zero.
        if b.get(used..len - 4)?.iter().any(|&x| x != 0)
            || CRC.checksum(b.get(..used)?) != crc
            || trying == Some(primary)
        {
            return None;
        }
        Some(State {
            seq,
            primary,
            trying,
            tries_left,
            trying_version,
            primary_version,
            failed_version,
            fallbacks,
            verity,
        })
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
}

/// The current state from the two copies: the valid one with the higher
/// sequence, and which copy it was (the next write goes to the other).
pub fn current(copies: [&[u8]; 2]) -> Option<(State, usize)> {
    let [a, b] = copies.map(State::decode);
    match (a, b) {
        (Some(x), Some(y)) if y.seq > x.seq => Some((y, 1)),
        (Some(x), _) => Some((x, 0)),
        (None, Some(y)) => Some((y, 1)),
        (None, None) => None,
    }
}

/// What to boot, and the record to write before booting it (`None`: no
/// change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The slot to boot.
    pub slot: Slot,
    /// It is on trial: it must report healthy or the board falls back.
    pub trial: bool,
    /// Write this first (its `seq` already bumped).
    pub write: Option<State>,
    /// The trial slot that ran out of tries (a fallback happened).
    pub fell_back_from: Option<Slot>,
}

/// The boot decision (see the crate docs).
pub fn decide(state: Option<State>) -> Decision {
    let Some(s) = state else {
        return Decision {
            slot: Slot::A,
            trial: false,
            write: Some(State::initial()),
            fell_back_from: None,
        };
    };
    let next = |mut n: State| {
        n.seq = s.seq.wrapping_add(1);
        n
    };
    match s.trying {
        Some(t) if s.tries_left > 0 => Decision {
            slot: t,
            trial: true,
            write: Some(next(State {
                tries_left: s.tries_left - 1,
                ..s
            })),
            fell_back_from: None,
        },
        Some(t) => Decision {
            slot: s.primary,
            trial: false,
            write: Some(next(State {
                trying: None,
                tries_left: 0,
                trying_version: 0,
                failed_version: s.trying_version,
                fallbacks: s.fallbacks.saturating_add(1),
                ..s
            })),
            fell_back_from: Some(t),
        },
        None => Decision {
            slot: s.primary,
            trial: false,
            write: None,
            fell_back_from: None,
        },
    }
}

/// The trial slot `slot` is healthy: make it primary.
pub fn commit(s: State, slot: Slot) -> State {
    State {
        seq: s.seq.wrapping_add(1),
        primary: slot,
        trying: None,
        tries_left: 0,
        trying_version: 0,
        primary_version: s.trying_version,
        ..s
    }
}

/// `slot` (not the primary) holds a verified new root of `version`: give
/// it `tries` boots to prove itself. Only a version newer than the
/// primary's is staged (no downgrade through the slots either). The
/// slot's old verity root is dropped with its old image: give the new
/// one with [`State::with_verity`].
pub fn stage(s: State, slot: Slot, version: u64, tries: u8) -> Option<State> {
    (slot != s.primary && tries > 0 && version > s.primary_version).then_some(
        State {
            seq: s.seq.wrapping_add(1),
            trying: Some(slot),
            tries_left: tries,
            trying_version: version,
            ..s
        }
        .with_verity(slot, None),
    )
}

/// A trial slot that is not going to make it (its health check failed):
/// spend its remaining tries so the next boot falls back.
pub fn give_up(s: State) -> State {
    State {
        seq: s.seq.wrapping_add(1),
        tries_left: 0,
        ..s
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::format;

    fn on_disk(s: &State) -> [[u8; RECORD]; 2] {
        [s.encode(), [0u8; RECORD]]
    }

    #[test]
    fn a_blank_board_boots_a() {
        let d = decide(current([&[0u8; RECORD], &[0xffu8; RECORD]]).map(|(s, _)| s));
        assert_eq!(d.slot, Slot::A);
        assert!(!d.trial);
        assert_eq!(d.write, Some(State::initial()));
    }

    #[test]
    fn an_update_gets_one_try_then_falls_back_unless_committed() {
        let s = State::initial();
        let staged = stage(s, Slot::B, 7, 1).unwrap();
        assert_eq!(
            stage(s, Slot::A, 7, 1),
            None,
            "the primary cannot be staged"
        );
        // First boot: B on trial, its try spent before it runs.
        let d1 = decide(Some(staged));
        assert_eq!((d1.slot, d1.trial), (Slot::B, true));
        let after1 = d1.write.unwrap();
        assert_eq!(after1.tries_left, 0);
        // It never said healthy (crash, hang, power cut): back to A.
        let d2 = decide(Some(after1));
        assert_eq!(
            (d2.slot, d2.trial, d2.fell_back_from),
            (Slot::A, false, Some(Slot::B))
        );
        let after2 = d2.write.unwrap();
        assert_eq!(
            (after2.trying, after2.fallbacks, after2.failed_version),
            (None, 1, 7)
        );
        assert_eq!(
            decide(Some(after2)).write,
            None,
            "steady state writes nothing"
        );
        // Had it been healthy: B is primary from then on.
        let c = commit(after1, Slot::B);
        assert_eq!(c.primary_version, 7);
        assert_eq!(stage(c, Slot::A, 7, 1), None, "not newer than the primary");
        let d3 = decide(Some(c));
        assert_eq!((d3.slot, d3.trial, d3.write), (Slot::B, false, None));
        // A failed health check spends the rest of the tries.
        let two = decide(Some(stage(s, Slot::B, 7, 3).unwrap()))
            .write
            .unwrap();
        assert_eq!(decide(Some(give_up(two))).slot, Slot::A);
    }

    #[test]
    fn a_torn_write_leaves_the_previous_record() {
        let old = State {
            seq: 4,
            ..State::initial()
        };
        let new = stage(old, Slot::B, 2, 1).unwrap();
        let (cur, at) = current([&old.encode(), &[0u8; RECORD]]).unwrap();
        assert_eq!((cur, at), (old, 0));
        // The new record goes to copy 1; cut it anywhere: copy 0 wins.
        let full = new.encode();
        for cut in 0..RECORD {
            let mut torn = [0u8; RECORD];
            torn[..cut].copy_from_slice(&full[..cut]);
            assert_eq!(
                current([&old.encode(), &torn]).unwrap().0,
                old,
                "cut at {cut}"
            );
        }
        assert_eq!(current([&old.encode(), &full]).unwrap(), (new, 1));
    }

    #[test]
    fn version_1_records_still_read_and_staging_drops_the_old_verity() {
        // A record as version 1 wrote it: 64 bytes, no verity roots.
        let s = State {
            seq: 3,
            fallbacks: 1,
            ..State::initial()
        };
        let mut v1 = [0u8; RECORD];
        v1[..40].copy_from_slice(&s.encode()[..40]);
        v1[4] = 1;
        let crc = CRC.checksum(&v1[..40]);
        v1[RECORD_V1 - 4..RECORD_V1].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(State::decode(&v1), Some(s));
        let v = Verity {
            data_blocks: 9,
            root: [7; 32],
        };
        let both = s
            .with_verity(Slot::A, Some(v))
            .with_verity(Slot::B, Some(v));
        assert_eq!(State::decode(&both.encode()), Some(both));
        let staged = stage(both, Slot::B, 2, 1).unwrap();
        assert_eq!(
            (staged.verity(Slot::A), staged.verity(Slot::B)),
            (Some(v), None)
        );
        // Fallback and commit keep what the slots hold.
        let after = decide(Some(staged)).write.unwrap();
        assert_eq!(commit(after, Slot::B).verity, staged.verity);
    }

    #[test]
    fn verity_files_read_and_bad_ones_say_why() {
        let text = format!(
            "# dm-verity of rootfs.squashfs\ndata_blocks = 42\nroot = \"{}\"\n",
            "0f".repeat(32)
        );
        assert_eq!(
            Verity::parse(&text),
            Ok(Verity {
                data_blocks: 42,
                root: [0x0f; 32]
            })
        );
        assert_eq!(
            Verity::parse("data_blocks = 0\n"),
            Err(VerityFileError::DataBlocks)
        );
        assert_eq!(
            Verity::parse("data_blocks = 3\nroot = \"abc\"\n"),
            Err(VerityFileError::Root)
        );
        assert_eq!(
            Verity::parse(&format!(
                "data_blocks = 3\nroot = \"{}\"\n",
                "zz".repeat(32)
            )),
            Err(VerityFileError::Root)
        );
        assert_eq!(Verity::parse("what\n"), Err(VerityFileError::Line(1)));
    }

    proptest! {
        #[test]
        fn records_round_trip_and_every_bit_flip_is_caught(
            seq in any::<u32>(), p in 0u8..2, t in prop::option::of(0u8..2),
            tries in any::<u8>(), v in any::<u64>(), pv in any::<u64>(), f in any::<u32>(),
            blocks in any::<u64>(), root in any::<u8>(),
            bit in 0usize..RECORD * 8,
        ) {
            let primary = Slot::from_code(p).unwrap();
            let trying = t.and_then(Slot::from_code).filter(|&t| t != primary);
            let s = State {
                seq, primary, trying, tries_left: tries, trying_version: v, primary_version: pv,
                failed_version: pv ^ v, fallbacks: f, verity: [None, None],
            }.with_verity(Slot::B, (blocks > 0).then_some(Verity { data_blocks: blocks, root: [root; 32] }));
            let b = s.encode();
            prop_assert_eq!(State::decode(&b), Some(s));
            let mut x = b;
            x[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(State::decode(&x), None);
            prop_assert_eq!(current([&on_disk(&s)[0], &on_disk(&s)[1]]).map(|c| c.0), Some(s));
        }
    }
}
