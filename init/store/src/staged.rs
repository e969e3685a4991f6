//! Piecewise installs: a bundle that arrives in parts (the serial update
//! link) rather than as one `.qb` stream.
//!
//! The order of checks is the `.qb` reader's: the signed envelope is checked
//! against trust and the version rules before anything else is accepted
//! ([`Store::check_offer`]); the manifest is checked against the signed root
//! before it is kept ([`Store::stage`]); each chunk is checked against its
//! id before it is kept ([`Store::put_chunk`]). Nothing here changes what is
//! installed: [`Store::install_staged`] replays envelope, manifest and every
//! chunk from disk through the same path as [`Store::install`], so the
//! commit happens only after the full `.qb` checks pass on the bytes that
//! will be used.
//!
//! Staged parts live in `incoming/<root>` (envelope then manifest, the same
//! layout as a record in `bundles/`) and received chunks go straight into
//! `chunks/`, where they are content-addressed like any other. Both survive
//! a reboot, which is what lets a cut transfer resume; [`Store::gc`] keeps
//! the chunks a staged manifest references.

use crate::error::{io_err, StoreError};
use crate::{chunk_rel, fsutil, io, same_contents, InstallReport, Store};
use quilt_bundle::envelope::{Envelope, MAGIC_BUNDLE};
use quilt_bundle::manifest::bundle_root;
use quilt_bundle::{hash, Context, Hash, Header, Manifest, CHUNK_MAX};
use std::fs;
use std::io::Read;
use std::path::PathBuf;

/// A staged bundle read back: its envelope, header and manifest bytes, all
/// checked against one another.
#[derive(Debug, Clone)]
pub struct Staged {
    pub envelope: Envelope,
    pub header: Header,
    pub manifest_bytes: Vec<u8>,
}

impl Store {
    fn staged_path(&self, root: &Hash) -> PathBuf {
        self.root.join("incoming").join(root.to_string())
    }

    /// Checks a bundle's signed envelope as an install would, before any
    /// content is fetched: every signature, the threshold for its name,
    /// compatibility and validity window (`ctx`), and the version rules
    /// (rollback, fast-forward, version reuse; `permit` as in
    /// [`Store::install`]). Returns the checked header.
    pub fn check_offer(
        &self,
        envelope: &Envelope,
        ctx: &Context<'_>,
        permit: Option<&[u8]>,
    ) -> Result<Header, StoreError> {
        let header = self.trust().verify_bundle(envelope, ctx)?;
        self.check_version(&header, permit, ctx)?;
        Ok(header)
    }

    /// True when the store holds chunk `id` intact (present and hashing to
    /// its name); a rotted copy counts as absent so it is fetched again.
    pub fn has_chunk(&self, id: &Hash) -> bool {
        let mut buf = Vec::new();
        self.read_chunk(id, &mut buf).is_ok()
    }

    /// Keeps one chunk, durably, after checking that `bytes` hash to `id`.
    /// Returns false when an intact copy was already there. The chunk is
    /// unreferenced until an install commits (see the module docs for gc).
    pub fn put_chunk(&mut self, id: &Hash, bytes: &[u8]) -> Result<bool, StoreError> {
        if bytes.len() > CHUNK_MAX as usize || hash::leaf(bytes) != *id {
            return Err(StoreError::WrongChunk { id: *id });
        }
        let path = self.root.join(chunk_rel(id));
        let mut scratch = Vec::new();
        if same_contents(&path, bytes, &mut scratch) {
            return Ok(false);
        }
        let tmp = fsutil::write_temp(&self.tmp_dir(), bytes)?;
        self.step("writing chunk")?;
        if let Some(dir) = path.parent() {
            fsutil::ensure_dir(dir)?;
            fsutil::rename(&tmp, &path)?;
            fsutil::sync_dir(dir)?;
        }
        Ok(true)
    }

    /// Keeps a bundle's envelope and manifest under `incoming/` so a cut
    /// transfer can resume, even after a reboot. The manifest must validate
    /// and hash, with its chunk list, to the root the header signs; returns
    /// that root. Signatures are not checked here ([`Store::check_offer`]
    /// does that, and [`Store::install_staged`] again).
    pub fn stage(
        &mut self,
        envelope: &Envelope,
        manifest_bytes: &[u8],
    ) -> Result<Hash, StoreError> {
        let header = Header::decode(&envelope.body)?;
        check_manifest(&header, manifest_bytes)?;
        let mut record = Vec::with_capacity(envelope.encoded_len() + manifest_bytes.len());
        envelope.encode_into(&MAGIC_BUNDLE, &mut record)?;
        record.extend_from_slice(manifest_bytes);
        let tmp = fsutil::write_temp(&self.tmp_dir(), &record)?;
        self.step("staging bundle")?;
        fsutil::rename(&tmp, &self.staged_path(&header.root))?;
        fsutil::sync_dir(&self.root.join("incoming"))?;
        Ok(header.root)
    }

    /// The staged envelope and manifest for `root`, if a previous transfer
    /// got that far and the file is intact (a damaged one reads as absent).
    pub fn staged(&self, root: &Hash) -> Option<Staged> {
        let bytes = fs::read(self.staged_path(root)).ok()?;
        let staged = parse_staged(&bytes).ok()?;
        (staged.header.root == *root).then_some(staged)
    }

    /// Drops what is staged for `root` (its chunks become garbage for gc).
    pub fn discard_staged(&mut self, root: &Hash) -> Result<(), StoreError> {
        let path = self.staged_path(root);
        match fs::remove_file(&path) {
            Ok(()) => fsutil::sync_dir(&self.root.join("incoming")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    /// Installs the bundle staged for `root` from its staged envelope and
    /// manifest and the chunks in the store, as if its `.qb` had been
    /// streamed to [`Store::install`]: signatures, policy, versions,
    /// manifest, root and every chunk are checked again before the commit.
    /// On success the staged file is removed; on failure it is kept (the
    /// caller decides, e.g. [`Store::discard_staged`] after a refusal).
    pub fn install_staged(
        &mut self,
        root: &Hash,
        ctx: &Context<'_>,
        permit: Option<&[u8]>,
    ) -> Result<InstallReport, StoreError> {
        let path = self.staged_path(root);
        let record = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotStaged { root: *root })
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let staged = parse_staged(&record)?;
        if staged.header.root != *root {
            return Err(StoreError::NotStaged { root: *root });
        }
        let chunks = Manifest::decode(&staged.manifest_bytes)?
            .chunk_order()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut src = io::ReadSource::new(Replay {
            store: self.root.clone(),
            record,
            pos: 0,
            chunks,
            next: 0,
            cur: Vec::new(),
            cur_pos: 0,
            missing: None,
        });
        let trust = self.trust().clone();
        let result = self.install_from(&mut src, &trust, ctx, permit);
        let result = match (result, src.get_ref().missing) {
            (Err(StoreError::Bundle(quilt_bundle::Error::Source)), Some(id)) => {
                Err(StoreError::BadChunk {
                    id,
                    path: self.root.join(chunk_rel(&id)),
                })
            }
            (Err(StoreError::Bundle(quilt_bundle::Error::Source)), None) => {
                match src.error.take() {
                    Some(source) => Err(StoreError::Read { source }),
                    None => Err(StoreError::Bundle(quilt_bundle::Error::Source)),
                }
            }
            (r, _) => r,
        };
        if result.is_ok() {
            self.discard_staged(root)?;
        }
        result
    }

    /// Chunk ids referenced by staged manifests (kept by gc). A staged file
    /// that no longer parses is removed.
    pub(crate) fn staged_chunk_ids(&self) -> Result<Vec<Hash>, StoreError> {
        let dir = self.root.join("incoming");
        let mut ids = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(ids);
        };
        for e in entries {
            let p = e.map_err(io_err("listing", &dir))?.path();
            let parsed = fs::read(&p)
                .ok()
                .and_then(|b| parse_staged(&b).ok())
                .and_then(|s| Manifest::decode(&s.manifest_bytes).ok());
            match parsed {
                Some(m) => ids.extend(m.chunk_order().into_iter().map(|c| c.id)),
                None => fs::remove_file(&p).map_err(io_err("removing", &p))?,
            }
        }
        Ok(ids)
    }
}

/// Checks a manifest against the header that signs it: decodes, validates,
/// matches the header's counts and hashes to its root.
fn check_manifest(header: &Header, manifest_bytes: &[u8]) -> Result<(), StoreError> {
    if manifest_bytes.len() != header.manifest_len as usize {
        return Err(StoreError::Bundle(quilt_bundle::Error::Truncated {
            what: "manifest",
            offset: manifest_bytes.len() as u64,
        }));
    }
    let manifest = Manifest::decode(manifest_bytes)?;
    let summary = manifest.validate()?;
    header.check_manifest(&manifest, &summary)?;
    let computed = bundle_root(manifest_bytes, &manifest.chunk_order());
    if computed != header.root {
        return Err(StoreError::Bundle(quilt_bundle::Error::RootMismatch {
            signed: header.root,
            computed,
        }));
    }
    Ok(())
}

fn parse_staged(bytes: &[u8]) -> Result<Staged, StoreError> {
    let (envelope, rest) = Envelope::parse(&MAGIC_BUNDLE, "staged bundle", bytes)?;
    let header = Header::decode(&envelope.body)?;
    check_manifest(&header, rest)?;
    Ok(Staged {
        envelope,
        header,
        manifest_bytes: rest.to_vec(),
    })
}

/// The `.qb` byte stream of a staged bundle: the staged record, then each
/// chunk read from the store in stream order. Chunks are not checked here;
/// the bundle reader hashes each one as it passes.
struct Replay {
    store: PathBuf,
    record: Vec<u8>,
    pos: usize,
    chunks: Vec<Hash>,
    next: usize,
    cur: Vec<u8>,
    cur_pos: usize,
    /// The chunk that was not in the store, if that is why reading stopped.
    missing: Option<Hash>,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(rest) = self.record.get(self.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.len());
            buf.get_mut(..n)
                .unwrap_or_default()
                .copy_from_slice(rest.get(..n).unwrap_or_default());
            self.pos += n;
            return Ok(n);
        }
        while self.cur_pos >= self.cur.len() {
            let Some(id) = self.chunks.get(self.next).copied() else {
                return Ok(0);
            };
            self.next += 1;
            let path = self.store.join(chunk_rel(&id));
            self.cur.clear();
            self.cur_pos = 0;
            let read = fs::File::open(&path)
                .and_then(|f| f.take(u64::from(CHUNK_MAX)).read_to_end(&mut self.cur));
            if let Err(e) = read {
                self.missing = Some(id);
                return Err(e);
            }
        }
        let rest = self.cur.get(self.cur_pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.cur_pos += n;
        Ok(n)
    }
}
