//! Store errors: one variant per failed operation, carrying the path or
//! name involved and the source error.

use quilt_bundle::Hash;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The bundle, key, policy or document was refused by the format layer.
    Bundle(quilt_bundle::Error),
    /// Reading the bundle stream failed at the I/O level.
    Read { source: io::Error },
    /// The trust dir holds no `*.pub` keys.
    NoKeys { dir: PathBuf },
    /// A key or policy file in the trust dir is refused.
    TrustFile {
        path: PathBuf,
        source: quilt_bundle::Error,
    },
    /// The persisted state file does not decode.
    CorruptState { path: PathBuf },
    /// An older version without a valid downgrade permit.
    Rollback {
        name: String,
        installed: u64,
        offered: u64,
    },
    /// A version further ahead than `max-version-step` allows.
    FastForward {
        name: String,
        installed: u64,
        offered: u64,
        max_step: u64,
    },
    /// The same version again, with different content.
    VersionReuse { name: String, version: u64 },
    /// A permit that was already used (or an older one).
    PermitReplayed {
        name: String,
        sequence: u64,
        last: u64,
    },
    /// A permit for another bundle or version.
    PermitMismatch { name: String, version: u64 },
    /// No installed bundle by that name.
    NotInstalled { name: String },
    /// A store record holds another bundle's header than its name says.
    RecordName {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A stored chunk is missing or does not hash to its name.
    BadChunk { id: Hash, path: PathBuf },
    /// Bytes handed to [`crate::Store::put_chunk`] do not hash to the id given.
    WrongChunk { id: Hash },
    /// [`crate::Store::install_staged`] found nothing staged for this root.
    NotStaged { root: Hash },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StoreError::*;
        match self {
            Io { op, path, .. } => write!(f, "{op} {}", path.display()),
            Bundle(e) => write!(f, "{e}"),
            Read { .. } => write!(f, "reading the bundle stream failed"),
            NoKeys { dir } => write!(
                f,
                "trust dir {} holds no *.pub keys; copy the signers' .pub files there",
                dir.display()
            ),
            TrustFile { path, source } => write!(f, "{}: {source}", path.display()),
            CorruptState { path } => write!(
                f,
                "store state {} does not decode; run fsck and restore it from backup",
                path.display()
            ),
            Rollback { name, installed, offered } => write!(
                f,
                "refusing to roll `{name}` back from version {installed} to {offered}; a downgrade needs a permit signed at the root threshold"
            ),
            FastForward { name, installed, offered, max_step } => write!(
                f,
                "refusing to jump `{name}` from version {installed} to {offered}: more than max-version-step {max_step} ahead"
            ),
            VersionReuse { name, version } => write!(
                f,
                "`{name}` version {version} is already installed with different content; versions must change when content does"
            ),
            PermitReplayed { name, sequence, last } => write!(
                f,
                "downgrade permit for `{name}` has sequence {sequence}, not above the last used {last}; it was already used"
            ),
            PermitMismatch { name, version } => write!(
                f,
                "downgrade permit is for `{name}` version {version}, not this bundle"
            ),
            NotInstalled { name } => write!(f, "no bundle `{name}` is installed"),
            RecordName {
                path,
                expected,
                found,
            } => write!(
                f,
                "store record {} holds bundle `{found}`, not `{expected}`; offer `{expected}` again to rewrite it",
                path.display()
            ),
            BadChunk { id, path } => write!(
                f,
                "chunk {} at {} is missing or corrupt; `quilt fsck --repair` drops it, then offer the bundles that use it again",
                id.short(),
                path.display()
            ),
            WrongChunk { id } => write!(
                f,
                "chunk bytes do not hash to their id {}; the sender's copy is corrupt or tampered",
                id.short()
            ),
            NotStaged { root } => write!(
                f,
                "no bundle {} is staged; send its envelope and manifest first",
                root.short()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } | StoreError::Read { source } => Some(source),
            StoreError::Bundle(e) | StoreError::TrustFile { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl From<quilt_bundle::Error> for StoreError {
    fn from(e: quilt_bundle::Error) -> Self {
        StoreError::Bundle(e)
    }
}

/// Shorthand for building [`StoreError::Io`] in `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}
