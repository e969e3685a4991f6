//! Building bundles (host side, `pack` feature): content-defined chunking
//! with FastCDC at casync's 16/64/256 KiB, manifest and header assembly,
//! and writing the `.qb` form.

use crate::envelope::{Envelope, MAGIC_BUNDLE};
use crate::error::Error;
use crate::hash::{self, Hash};
use crate::header::{Header, FORMAT_VERSION};
use crate::manifest::{bundle_root, ChunkRef, Entry, Manifest, Node, ToolDef};
use crate::sig::{SecretKey, DOMAIN_BUNDLE};
use crate::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// Cuts `data` into content-defined chunks; returns `(offset, len)` pairs.
pub fn chunk_boundaries(data: &[u8]) -> Vec<(usize, usize)> {
    fastcdc::v2020::FastCDC::new(
        data,
        CHUNK_MIN as usize,
        CHUNK_AVG as usize,
        CHUNK_MAX as usize,
    )
    .map(|c| (c.offset, c.length))
    .collect()
}

/// Collects a tree, then produces the manifest, header and `.qb` bytes.
#[derive(Default)]
pub struct Builder {
    entries: Vec<Entry>,
    tools: Vec<ToolDef>,
    chunks: BTreeMap<Hash, Vec<u8>>,
}

impl core::fmt::Debug for Builder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Builder")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// The header fields a packer chooses; sizes and root are filled in.
#[derive(Clone, Debug)]
pub struct HeaderFields {
    pub name: String,
    pub version: u64,
    pub arch: Vec<String>,
    pub boards: Vec<String>,
    pub entry: String,
    pub runtime: String,
    pub limits: crate::header::Limits,
    pub tokens: Vec<String>,
    pub not_before: Option<u64>,
    pub expires: Option<u64>,
}

impl HeaderFields {
    /// Defaults for everything but name, version and entry.
    pub fn new(name: &str, version: u64, entry: &str) -> Self {
        HeaderFields {
            name: name.into(),
            version,
            arch: Vec::new(),
            boards: Vec::new(),
            entry: entry.into(),
            runtime: "bun".into(),
            limits: crate::header::Limits::default(),
            tokens: Vec::new(),
            not_before: None,
            expires: None,
        }
    }
}

/// A packed, unsigned bundle.
#[derive(Clone, Debug)]
pub struct Packed {
    pub header: Header,
    pub header_bytes: Vec<u8>,
    pub manifest_bytes: Vec<u8>,
    /// Distinct chunks in stream order.
    pub chunks: Vec<(ChunkRef, Vec<u8>)>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u16) {
        self.entries.push(Entry {
            path: path.into(),
            node: Node::Dir { mode },
        });
    }

    /// Declares a tool the entry serves (written into the manifest).
    pub fn tool(&mut self, tool: ToolDef) {
        self.tools.push(tool);
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entries.push(Entry {
            path: path.into(),
            node: Node::Symlink {
                target: target.into(),
            },
        });
    }

    /// Adds a regular file, chunking its content.
    pub fn file(&mut self, path: &str, mode: u16, data: &[u8]) {
        let mut chunks = Vec::new();
        for (off, len) in chunk_boundaries(data) {
            let bytes = data.get(off..off + len).unwrap_or_default();
            let id = hash::leaf(bytes);
            self.chunks.entry(id).or_insert_with(|| bytes.to_vec());
            chunks.push(ChunkRef {
                id,
                len: u32::try_from(len).unwrap_or(u32::MAX),
            });
        }
        self.entries.push(Entry {
            path: path.into(),
            node: Node::File {
                mode,
                size: data.len() as u64,
                chunks,
            },
        });
    }

    /// Sorts, validates and assembles the bundle.
    pub fn finish(mut self, fields: HeaderFields) -> Result<Packed, Error> {
        self.entries
            .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        self.tools.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            entries: self.entries,
            tools: self.tools,
        };
        let summary = manifest.validate()?;
        let manifest_bytes = manifest.encode()?;
        let order = manifest.chunk_order();
        let header = Header {
            format: FORMAT_VERSION,
            name: fields.name,
            version: fields.version,
            root: bundle_root(&manifest_bytes, &order),
            manifest_len: u32::try_from(manifest_bytes.len()).unwrap_or(u32::MAX),
            chunk_count: summary.chunk_count,
            content_len: summary.content_len,
            files: summary.files,
            total_size: summary.total_size,
            arch: fields.arch,
            boards: fields.boards,
            entry: fields.entry,
            runtime: fields.runtime,
            limits: fields.limits,
            tokens: fields.tokens,
            not_before: fields.not_before,
            expires: fields.expires,
        };
        header.validate()?;
        header.check_manifest(&manifest, &summary)?;
        let header_bytes = header.encode()?;
        let mut chunks = Vec::with_capacity(order.len());
        for c in order {
            let bytes = self.chunks.remove(&c.id).unwrap_or_default();
            chunks.push((c, bytes));
        }
        Ok(Packed {
            header,
            header_bytes,
            manifest_bytes,
            chunks,
        })
    }
}

impl Packed {
    /// The `.qb` bytes, signed by `signers` (possibly none).
    pub fn to_qb(&self, signers: &[&SecretKey]) -> Result<Vec<u8>, Error> {
        let env = Envelope {
            body: self.header_bytes.clone(),
            sigs: signers
                .iter()
                .map(|k| k.sign(DOMAIN_BUNDLE, &self.header_bytes))
                .collect(),
        };
        let content: usize = self.chunks.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(env.encoded_len() + self.manifest_bytes.len() + content);
        env.encode_into(&MAGIC_BUNDLE, &mut out)?;
        out.extend_from_slice(&self.manifest_bytes);
        for (_, b) in &self.chunks {
            out.extend_from_slice(b);
        }
        Ok(out)
    }
}

/// Adds one signature to an encoded `.qb` prefix: returns the new envelope
/// bytes and the length of the old one (the rest of the file is unchanged).
pub fn add_signature(qb_prefix: &[u8], key: &SecretKey) -> Result<(Vec<u8>, usize), Error> {
    let (mut env, old_len) = crate::reader::parse_envelope(qb_prefix)?;
    // Only a well-formed header is worth signing.
    Header::decode(&env.body)?;
    let s = key.sign(DOMAIN_BUNDLE, &env.body);
    if env.sigs.iter().any(|e| e.key == s.key) {
        return Err(Error::DuplicateSigner { key: s.key.id() });
    }
    env.sigs.push(s);
    let mut out = Vec::with_capacity(env.encoded_len());
    env.encode_into(&MAGIC_BUNDLE, &mut out)?;
    Ok((out, old_len))
}
