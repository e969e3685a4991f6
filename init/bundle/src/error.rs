//! Every way a bundle, key, policy or signed document can be refused.
//!
//! One variant per failed check. Messages say what failed and, where the user
//! can do something, what to do next.

use crate::hash::Hash;
use crate::sig::KeyId;
use alloc::string::String;
use core::fmt;

/// Why a bundle, envelope, key file or policy was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The byte source failed (the caller holds the underlying error).
    Source,
    /// The input ended before a field the signed sizes promise.
    Truncated { what: &'static str, offset: u64 },
    /// The first bytes are not the expected magic.
    BadMagic { what: &'static str },
    /// A size field is over the format's cap.
    TooLarge {
        what: &'static str,
        size: u64,
        max: u64,
    },
    /// A postcard-encoded structure did not decode (or left bytes over).
    Malformed { what: &'static str },
    /// A structure that decodes but is not in its one canonical encoding
    /// (e.g. a varint with redundant continuation bytes).
    NonCanonical { what: &'static str },
    /// A name or path that is not valid UTF-8.
    NotUtf8 { what: &'static str },
    /// An unknown format version.
    UnsupportedFormat { what: &'static str, version: u8 },
    /// Bytes follow the last chunk the header accounts for.
    TrailingBytes { offset: u64 },
    /// More signatures than the format admits.
    TooManySignatures { count: u8 },
    /// The same key signed twice.
    DuplicateSigner { key: KeyId },
    /// A signature does not verify under the key it names.
    BadSignature { index: usize, key: KeyId },
    /// No signature at all.
    Unsigned { what: &'static str },
    /// Signed only by keys the trust store does not hold.
    UnknownSigner { what: &'static str, key: KeyId },
    /// Fewer trusted signatures than the policy requires.
    BelowThreshold {
        what: &'static str,
        name: String,
        have: usize,
        need: u8,
    },
    /// The bundle declares the firmware runtime but the board's config
    /// does not name it as its firmware.
    NotBoardFirmware { name: String },
    /// The board names this bundle as its firmware, but it is not one.
    FirmwareRuntime { name: String, runtime: String },
    /// The bundle is not built for this architecture.
    WrongArch { device: String },
    /// The bundle is not built for this board.
    WrongBoard { device: String },
    /// `not_before` lies in the future.
    NotYetValid { not_before: u64, now: u64 },
    /// `expires` has passed (freeze attack defence).
    Expired {
        what: &'static str,
        expires: u64,
        now: u64,
    },
    /// Manifest and chunk list do not hash to the signed root.
    RootMismatch { signed: Hash, computed: Hash },
    /// The manifest disagrees with a header field.
    ManifestMismatch {
        field: &'static str,
        header: u64,
        manifest: u64,
    },
    /// A chunk's bytes do not hash to the id the manifest gives.
    ChunkMismatch { index: u32, expected: Hash },
    /// A chunk of zero bytes or over [`crate::CHUNK_MAX`].
    BadChunkLength { path: String, len: u32 },
    /// A path starting with `/`.
    AbsolutePath { path: String },
    /// A path with `..` or `.` components.
    DotComponent { path: String },
    /// A path with an empty component (`a//b`, trailing `/`) or empty path.
    EmptyComponent { path: String },
    /// A path with NUL or control characters.
    BadCharacter { path: String },
    /// A path or component over the length caps.
    PathTooLong { path: String },
    /// The same path twice.
    DuplicatePath { path: String },
    /// Entries not in strictly ascending byte order.
    Unsorted { path: String },
    /// A parent directory that is not itself a directory entry.
    MissingParent { path: String },
    /// setuid, setgid or sticky bits, or bits outside the permission mask.
    SpecialMode { path: String, mode: u32 },
    /// A symlink that points outside the bundle or through another symlink.
    SymlinkEscapes { path: String, target: String },
    /// A file whose size does not equal the sum of its chunk lengths.
    SizeMismatch { path: String },
    /// The header's entrypoint is not a regular file in the manifest.
    MissingEntry { entry: String },
    /// A header field that breaks the rules in `docs/bundle-format.md`.
    BadField {
        field: &'static str,
        reason: &'static str,
    },
    /// A tool definition in the manifest that breaks the rules.
    BadTool { name: String, reason: &'static str },
    /// A bundle or rule name that is not valid.
    BadName { name: String },
    /// A token this format does not define, or one with a bad argument.
    BadToken { token: String, reason: &'static str },
    /// A key file that does not parse.
    BadKeyFile { reason: &'static str },
    /// A policy line that does not parse.
    BadPolicy { line: usize, reason: &'static str },
    /// A policy threshold the trust store can never meet.
    UnreachableThreshold { rule: String, need: u8, keys: usize },
    /// A trust update whose sequence is not above the current one.
    StaleTrust { current: u64, update: u64 },
    /// A downgrade permit for another name or version.
    PermitMismatch { reason: &'static str },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            Source => write!(f, "reading the bundle failed"),
            Truncated { what, offset } => write!(
                f,
                "input ends early in the {what} at byte {offset}; the file is incomplete, copy it again"
            ),
            BadMagic { what } => write!(f, "not a {what} (bad magic bytes)"),
            TooLarge { what, size, max } => {
                write!(f, "{what} is {size} bytes, over the cap of {max}; refusing to read it")
            }
            Malformed { what } => write!(f, "malformed {what}: it does not decode exactly"),
            NonCanonical { what } => write!(
                f,
                "{what} is not canonically encoded (padded varints or similar); re-pack it with quilt"
            ),
            NotUtf8 { what } => write!(f, "{what} holds a name that is not valid UTF-8"),
            UnsupportedFormat { what, version } => write!(
                f,
                "{what} format version {version} is not supported; update quilt to read it"
            ),
            TrailingBytes { offset } => write!(
                f,
                "trailing bytes after the end of the bundle at byte {offset}; the file was appended to or is corrupt"
            ),
            TooManySignatures { count } => write!(
                f,
                "{count} signatures, more than the {} allowed",
                crate::MAX_SIGNATURES
            ),
            DuplicateSigner { key } => write!(f, "key {key} signed twice; each key counts once"),
            BadSignature { index, key } => write!(
                f,
                "signature {index} by key {key} does not verify: the header was changed after signing or the signature is corrupt"
            ),
            Unsigned { what } => write!(
                f,
                "{what} is not signed; sign it with `quilt bundle sign FILE --key KEY.key`"
            ),
            UnknownSigner { what, key } => write!(
                f,
                "{what} signed by unknown key {key}; add its .pub to the trust dir if you trust it"
            ),
            BelowThreshold { what, name, have, need } => write!(
                f,
                "{what} `{name}` has {have} trusted signature(s) but the policy needs {need}; have more key holders sign it"
            ),
            NotBoardFirmware { name } => write!(
                f,
                "bundle `{name}` declares runtime `firmware` (a root image for the other slot), but this board's config names no firmware bundle `{name}` ([slots] firmware); nothing was installed or written to a slot"
            ),
            FirmwareRuntime { name, runtime } => write!(
                f,
                "bundle `{name}` is this board's firmware by name but declares runtime `{runtime}`, not `firmware`; nothing was installed"
            ),
            WrongArch { device } => write!(f, "bundle is not built for architecture `{device}`"),
            WrongBoard { device } => write!(f, "bundle is not built for board `{device}`"),
            NotYetValid { not_before, now } => write!(
                f,
                "bundle is not valid before {not_before} (now {now}); check the board's clock"
            ),
            Expired { what, expires, now } => write!(
                f,
                "{what} expired at {expires} (now {now}); fetch a freshly signed one"
            ),
            RootMismatch { signed, computed } => write!(
                f,
                "manifest and chunks hash to root {} but the header signs {}: content was altered or mixed from another bundle",
                computed.short(),
                signed.short()
            ),
            ManifestMismatch { field, header, manifest } => write!(
                f,
                "manifest {field} is {manifest} but the signed header says {header}"
            ),
            ChunkMismatch { index, expected } => write!(
                f,
                "chunk {index} does not hash to {}: content was modified or corrupted in transit",
                expected.short()
            ),
            BadChunkLength { path, len } => write!(
                f,
                "file `{path}` has a chunk of {len} bytes (allowed 1..={})",
                crate::CHUNK_MAX
            ),
            AbsolutePath { path } => write!(f, "absolute path `{path}` in manifest"),
            DotComponent { path } => write!(f, "path `{path}` has a `.` or `..` component"),
            EmptyComponent { path } => write!(f, "path `{path}` is empty or has an empty component"),
            BadCharacter { path } => {
                write!(f, "path {path:?} contains NUL or control characters")
            }
            PathTooLong { path } => write!(f, "path `{path}` is too long"),
            DuplicatePath { path } => write!(f, "path `{path}` appears twice in the manifest"),
            Unsorted { path } => write!(f, "manifest entry `{path}` is out of order"),
            MissingParent { path } => write!(
                f,
                "parent of `{path}` is not a directory entry of the bundle"
            ),
            SpecialMode { path, mode } => write!(
                f,
                "`{path}` has mode {mode:o}: setuid, setgid, sticky and type bits are refused"
            ),
            SymlinkEscapes { path, target } => write!(
                f,
                "symlink `{path}` -> `{target}` leaves the bundle or passes through a symlink"
            ),
            SizeMismatch { path } => {
                write!(f, "file `{path}` size does not equal the sum of its chunks")
            }
            MissingEntry { entry } => write!(
                f,
                "entrypoint `{entry}` is not a regular file in the bundle; fix `entry` in quilt.toml"
            ),
            BadField { field, reason } => write!(f, "header field `{field}` {reason}"),
            BadToken { token, reason } => write!(f, "token `{token}` {reason}"),
            BadTool { name, reason } => write!(f, "tool {name:?} {reason}"),
            BadName { name } => write!(
                f,
                "name `{name}` is not valid: use 1-64 of a-z 0-9 - _ . and / between parts"
            ),
            BadKeyFile { reason } => write!(f, "key file {reason}"),
            BadPolicy { line, reason } => write!(f, "policy line {line}: {reason}"),
            UnreachableThreshold { rule, need, keys } => write!(
                f,
                "policy rule `{rule}` needs {need} signatures but the trust store holds only {keys} key(s)"
            ),
            StaleTrust { current, update } => write!(
                f,
                "trust update has sequence {update}, not above the current {current}; it is old or replayed"
            ),
            PermitMismatch { reason } => write!(f, "downgrade permit {reason}"),
        }
    }
}

impl core::error::Error for Error {}
