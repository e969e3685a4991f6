//! The streaming `.qb` reader.
//!
//! ```text
//! envelope   magic QUILTQB1, header (the signed body), signatures
//! manifest   header.manifest_len bytes
//! chunks     header.chunk_count distinct chunks, back to back, in
//!            first-appearance order; header.content_len bytes in all
//! <end>      nothing may follow
//! ```
//!
//! The order of checks is the point: the header and every signature are
//! checked (against a [`Trust`]) before the manifest is read; the manifest
//! and the chunk list must hash to the signed root before any chunk is
//! read; each chunk is hashed as it arrives and compared with the id the
//! manifest gives. The reader reads exactly the signed sizes, then one byte
//! more to prove the end. Memory is the header (≤ 64 KiB), the manifest
//! (≤ [`crate::MAX_MANIFEST`]) and the caller's chunk buffer
//! ([`crate::CHUNK_MAX`]), whatever the bundle size.

use crate::envelope::{check_body_len, check_sig_count, entry_from_bytes, Envelope, MAGIC_BUNDLE};
use crate::error::Error;
use crate::hash;
use crate::header::Header;
use crate::manifest::{bundle_root, ChunkRef, Manifest};
use crate::sig::SIGNATURE_ENTRY_LEN;
use crate::trust::{Context, Trust};
use alloc::vec;
use alloc::vec::Vec;

/// A byte source failed; the source keeps the details (e.g. an `io::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceError;

/// Where bundle bytes come from. `read` returns 0 only at the end.
pub trait Source {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError>;
}

impl Source for &[u8] {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        let n = buf.len().min(self.len());
        let (head, tail) = self.split_at(n);
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(head);
        }
        *self = tail;
        Ok(n)
    }
}

impl<S: Source + ?Sized> Source for &mut S {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        (**self).read(buf)
    }
}

/// A bundle being read: header checked, manifest checked, chunks pending.
pub struct BundleReader<S> {
    src: S,
    offset: u64,
    envelope: Envelope,
    header: Header,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    order: Vec<ChunkRef>,
    next: usize,
    finished: bool,
}

impl<S> core::fmt::Debug for BundleReader<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BundleReader")
            .field("name", &self.header.name)
            .field("version", &self.header.version)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<S: Source> BundleReader<S> {
    /// Opens a bundle for installation: signatures and policy are checked
    /// against `trust` and `ctx` before the manifest is read.
    pub fn open(src: S, trust: &Trust, ctx: &Context<'_>) -> Result<Self, Error> {
        Self::open_with(src, |env| trust.verify_bundle(env, ctx))
    }

    /// Opens a bundle *without* checking who signed it (for `inspect` and
    /// `diff`). Content is still checked against the header's root.
    pub fn open_unverified(src: S) -> Result<Self, Error> {
        Self::open_with(src, |env| Header::decode(&env.body))
    }

    fn open_with(
        mut src: S,
        check: impl FnOnce(&Envelope) -> Result<Header, Error>,
    ) -> Result<Self, Error> {
        let mut offset = 0u64;
        let envelope = read_envelope(&mut src, &mut offset)?;
        let header = check(&envelope)?;
        let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
        read_exact(&mut src, &mut manifest_bytes, &mut offset, "manifest")?;
        let manifest = Manifest::decode(&manifest_bytes)?;
        let summary = manifest.validate()?;
        header.check_manifest(&manifest, &summary)?;
        let order = manifest.chunk_order();
        let computed = bundle_root(&manifest_bytes, &order);
        if computed != header.root {
            return Err(Error::RootMismatch {
                signed: header.root,
                computed,
            });
        }
        Ok(BundleReader {
            src,
            offset,
            envelope,
            header,
            manifest_bytes,
            manifest,
            order,
            next: 0,
            finished: false,
        })
    }

    /// The next chunk, verified, in `buf` (which must hold
    /// [`crate::CHUNK_MAX`] bytes). `None` after the last chunk, once the
    /// end of input has been confirmed.
    pub fn next_chunk<'b>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<(ChunkRef, &'b [u8])>, Error> {
        let Some(c) = self.order.get(self.next).copied() else {
            self.finish_end()?;
            return Ok(None);
        };
        let len = c.len as usize;
        let cap = buf.len() as u64;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(Error::TooLarge {
                what: "chunk for the caller's buffer",
                size: u64::from(c.len),
                max: cap,
            });
        };
        read_exact(&mut self.src, dst, &mut self.offset, "chunk section")?;
        if hash::leaf(dst) != c.id {
            return Err(Error::ChunkMismatch {
                index: u32::try_from(self.next).unwrap_or(u32::MAX),
                expected: c.id,
            });
        }
        self.next += 1;
        Ok(Some((c, dst)))
    }

    fn finish_end(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let mut one = [0u8; 1];
        if self.src.read(&mut one).map_err(|_| Error::Source)? != 0 {
            return Err(Error::TrailingBytes {
                offset: self.offset,
            });
        }
        self.finished = true;
        Ok(())
    }

    /// Reads and checks every remaining chunk and the end of input.
    pub fn verify_rest(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        while self.next_chunk(buf)?.is_some() {}
        Ok(())
    }

    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The envelope (header bytes and signatures).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The manifest bytes as signed through the root.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }
    /// Distinct chunks in stream order.
    pub fn chunk_order(&self) -> &[ChunkRef] {
        &self.order
    }
    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Gives the source back (e.g. to hash the chunk section in parallel).
    pub fn into_source(self) -> S {
        self.src
    }
}

fn read_exact<S: Source>(
    src: &mut S,
    buf: &mut [u8],
    offset: &mut u64,
    what: &'static str,
) -> Result<(), Error> {
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        let n = src.read(rest).map_err(|_| Error::Source)?;
        if n == 0 {
            return Err(Error::Truncated {
                what,
                offset: *offset + done as u64,
            });
        }
        done += n.min(rest.len());
    }
    *offset += done as u64;
    Ok(())
}

fn read_envelope<S: Source>(src: &mut S, offset: &mut u64) -> Result<Envelope, Error> {
    let what = "bundle header";
    let mut magic = [0u8; 8];
    read_exact(src, &mut magic, offset, what)?;
    if magic != MAGIC_BUNDLE {
        return Err(Error::BadMagic {
            what: "quilt bundle (.qb)",
        });
    }
    let mut len = [0u8; 4];
    read_exact(src, &mut len, offset, what)?;
    let len = u32::from_le_bytes(len);
    check_body_len(len)?;
    let mut body = vec![0u8; len as usize];
    read_exact(src, &mut body, offset, what)?;
    let mut count = [0u8; 1];
    read_exact(src, &mut count, offset, "signature count")?;
    let [count] = count;
    check_sig_count(count)?;
    let mut sigs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let mut raw = [0u8; SIGNATURE_ENTRY_LEN];
        read_exact(src, &mut raw, offset, "signatures")?;
        sigs.push(entry_from_bytes(&raw));
    }
    Ok(Envelope { body, sigs })
}

/// Reads just the envelope of a `.qb` held in memory and returns it with the
/// byte length of the envelope (for `sign`, which rewrites only this part).
pub fn parse_envelope(bytes: &[u8]) -> Result<(Envelope, usize), Error> {
    let (env, rest) = Envelope::parse(&MAGIC_BUNDLE, "quilt bundle (.qb)", bytes)?;
    Ok((env, bytes.len() - rest.len()))
}
