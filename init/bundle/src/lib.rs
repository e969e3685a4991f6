//! The Quilt bundle format: how a tool or an update travels to a board.
//!
//! A bundle is a tree of files cut into content-defined chunks, each named by
//! its SHA3-256 leaf hash. One Merkle tree (RFC 6962 domain separation) over
//! the manifest and every chunk gives the *bundle root*; a small postcard
//! header carrying the root, the sizes, compatibility and policy fields is
//! signed with ed25519 by one or more keys. The `.qb` transport form puts the
//! header and signatures first so a reader can check them before it accepts
//! a single byte of content, then checks every chunk as it arrives.
//!
//! Boundaries: this crate is pure (`no_std` + `alloc`, no syscalls, no I/O).
//! Reading comes in through the [`reader::Source`] trait; the device store
//! (`quilt-store`), the host CLI (`quilt`) and the fuzzers drive it. The byte
//! layout is specified in `docs/bundle-format.md`, whose test vectors are
//! checked by `tests/vectors.rs`.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "crypto")]
pub mod envelope;
pub mod error;
pub mod hash;
pub mod header;
pub mod hex;
pub mod manifest;
#[cfg(feature = "crypto")]
pub mod merkle;
#[cfg(feature = "pack")]
pub mod pack;
#[cfg(feature = "crypto")]
pub mod reader;
pub mod sig;
pub mod tokens;
#[cfg(feature = "crypto")]
pub mod trust;

pub use error::Error;
pub use hash::Hash;
pub use header::Header;
pub use manifest::{ChunkRef, Entry, Manifest, Node, ToolDef};
#[cfg(feature = "crypto")]
pub use reader::{BundleReader, Source, SourceError};
pub use sig::KeyId;
#[cfg(feature = "crypto")]
pub use sig::{PublicKey, SecretKey, SignatureEntry};
#[cfg(feature = "crypto")]
pub use trust::{Context, Policy, Trust};

/// Smallest chunk the packer cuts (casync's reference parameters).
pub const CHUNK_MIN: u32 = 16 * 1024;
/// Average chunk size the packer aims for.
pub const CHUNK_AVG: u32 = 64 * 1024;
/// Largest chunk the format admits; a reader needs a buffer this large and no more.
pub const CHUNK_MAX: u32 = 256 * 1024;
/// Largest signed header body.
pub const MAX_HEADER: u32 = 64 * 1024;
/// Largest manifest: bounds the reader's memory (about 300 000 chunks of
/// references, i.e. roughly 18 GiB of content at the average chunk size).
pub const MAX_MANIFEST: u32 = 16 * 1024 * 1024;
/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: u8 = 16;
/// Most entries (files, directories, symlinks) in one bundle.
pub const MAX_ENTRIES: u32 = 65_536;
/// Most distinct chunks in one bundle.
pub const MAX_CHUNKS: u32 = 1 << 20;
