//! The device-side bundle store: content-addressed chunks on the data
//! partition, crash-safe installs, rollback protection, trust rotation,
//! fsck and garbage collection.
//!
//! ```text
//! <root>/chunks/ab/ab12…   chunk bytes, named by their SHA3-256 leaf hash
//! <root>/bundles/<name>@<root>  record: a bundle's signed envelope and
//!                          manifest (names mapped by [`paths`])
//! <root>/tmp/              temp files; emptied on open
//! <root>/incoming/<root>   a bundle arriving piecewise (serial link): its
//!                          envelope and manifest, kept across reboots
//! <root>/state             installed bundles, highest versions, permit
//!                          sequences, rotated trust (see [`state`])
//! ```
//!
//! An install streams a `.qb` through [`quilt_bundle::BundleReader`] (which
//! checks signatures and policy before content, and each chunk as it
//! arrives), writes only chunks not already present (dedup across bundles
//! and versions), writes the record, and then commits by replacing `state`
//! in one rename. A crash at any point leaves the old state or the new one;
//! anything written before the commit is unreferenced and [`Store::gc`]
//! removes it.
//!
//! A bundle can also arrive piecewise (the serial update link,
//! `quilt-link`): [`Store::check_offer`] checks the signed envelope first,
//! [`Store::stage`] keeps envelope and manifest under `incoming/`,
//! [`Store::has_chunk`] and [`Store::put_chunk`] dedup and keep verified
//! chunks, and [`Store::install_staged`] replays the staged parts and the
//! stored chunks through the same `.qb` install path as above, so every
//! check runs again on exactly what gets committed.
//!
//! Boundaries: no threads, no global state, bounded memory (one chunk
//! buffer and one manifest); no panicking paths, since quilt-init (PID 1)
//! links it. Running a tool is not this crate's job: it hands out verified
//! trees via [`Store::materialize`].
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod error;
mod fsutil;
pub mod io;
pub mod paths;
mod staged;
pub mod state;
pub mod trustdir;

pub use error::StoreError;
pub use state::Installed;

use error::io_err;
use quilt_bundle::envelope::{Envelope, MAGIC_BUNDLE};
use quilt_bundle::manifest::bundle_root;
use quilt_bundle::{hash, BundleReader, Context, Hash, Header, Manifest, Node, Trust, CHUNK_MAX};
use state::State;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub name: String,
    pub version: u64,
    pub root: Hash,
    /// Distinct chunks in the bundle.
    pub chunks: u32,
    /// Chunks written because the store lacked them.
    pub chunks_written: u32,
    pub bytes_written: u64,
    /// Bytes already present (dedup).
    pub bytes_reused: u64,
    /// True when this exact bundle (same name, version and root, header
    /// signatures checked) was already installed: nothing was written and
    /// the chunk section was not read.
    pub already_installed: bool,
}

/// What fsck found.
#[derive(Debug, Default)]
pub struct FsckReport {
    pub bundles_checked: usize,
    pub chunks_checked: usize,
    /// One entry per problem; empty means the store is sound.
    pub problems: Vec<StoreError>,
}

/// What [`Store::repair`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Chunk files removed because their bytes did not match their id.
    pub chunks_dropped: usize,
    /// Installed bundles that lack a chunk now: offer each again
    /// (`quilt install`, a stick, `quilt send`) to fetch what is missing.
    pub damaged: Vec<String>,
}

/// What gc removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub chunks_removed: usize,
    pub bytes_removed: u64,
    pub records_removed: usize,
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    image_trust: Trust,
    state: State,
    /// Test seam: fail (as if power were cut) at the N-th durable step.
    fault_after: Option<u32>,
    steps: u32,
}

fn chunk_rel(id: &Hash) -> PathBuf {
    let hex = id.to_string();
    let fan = hex.get(..2).unwrap_or("00").to_string();
    PathBuf::from("chunks").join(fan).join(hex)
}

/// The committed state of the store at `root`; `None` when it has none yet.
fn read_state(root: &Path) -> Result<Option<State>, StoreError> {
    let path = root.join("state");
    match fs::read(&path) {
        Ok(bytes) => State::decode(&bytes)
            .map(Some)
            .ok_or(StoreError::CorruptState { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", &path)(e)),
    }
}

/// True when the file at `path` holds exactly `want`.
fn same_contents(path: &Path, want: &[u8], scratch: &mut Vec<u8>) -> bool {
    scratch.clear();
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    f.take(u64::from(CHUNK_MAX) + 1)
        .read_to_end(scratch)
        .is_ok()
        && scratch.as_slice() == want
}

/// Every file under `root/chunks/`, with the id its name gives (if valid).
fn chunk_files(root: &Path) -> Result<Vec<(Option<Hash>, PathBuf)>, StoreError> {
    let chunks = root.join("chunks");
    let mut out = Vec::new();
    for fan in fs::read_dir(&chunks).map_err(io_err("listing", &chunks))? {
        let fan = fan.map_err(io_err("listing", &chunks))?.path();
        for e in fs::read_dir(&fan).map_err(io_err("listing", &fan))? {
            let p = e.map_err(io_err("listing", &fan))?.path();
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(quilt_bundle::hex::decode_array::<32>)
                .map(Hash);
            out.push((id, p));
        }
    }
    Ok(out)
}

/// What the store's chunk files take: how many, and their bytes (each
/// chunk is held once however many bundles share it). Reads metadata
/// only, never content. A store not made yet holds nothing.
pub fn usage(root: &Path) -> Result<Usage, StoreError> {
    let mut u = Usage::default();
    if !root.join("chunks").is_dir() {
        return Ok(u);
    }
    for (_, path) in chunk_files(root)? {
        let m = fs::symlink_metadata(&path).map_err(io_err("measuring", &path))?;
        u.chunks += 1;
        u.bytes += m.len();
    }
    Ok(u)
}

/// See [`usage`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Chunk files.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. `image_trust` is the
    /// trust dir shipped in the image; a rotation persisted in the state
    /// takes precedence over it.
    pub fn open(root: &Path, image_trust: Trust) -> Result<Self, StoreError> {
        for d in ["chunks", "bundles", "tmp", "incoming"] {
            fsutil::ensure_dir(&root.join(d))?;
        }
        // Leftovers of an interrupted write: never referenced, safe to drop.
        let tmp = root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err("listing", &tmp))? {
            let p = e.map_err(io_err("listing", &tmp))?.path();
            fs::remove_file(&p).map_err(io_err("removing", &p))?;
        }
        let state = read_state(root)?.unwrap_or_default();
        Ok(Store {
            root: root.to_path_buf(),
            image_trust,
            state,
            fault_after: None,
            steps: 0,
        })
    }

    /// Opens an existing store to check it ([`Store::fsck`],
    /// [`Store::repair`]) from another process than the one installing
    /// (`quilt fsck` beside quilt-init): nothing is created and `tmp/` is
    /// left alone, since the owner may be writing there.
    pub fn open_to_check(root: &Path, image_trust: Trust) -> Result<Self, StoreError> {
        let state = read_state(root)?.ok_or_else(|| StoreError::Io {
            op: "reading",
            path: root.join("state"),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Ok(Store {
            root: root.to_path_buf(),
            image_trust,
            state,
            fault_after: None,
            steps: 0,
        })
    }

    /// Read the committed state again: another process may have installed
    /// or removed since this one opened the store (the installer's serial
    /// receiver runs beside per-job installers; each mutates only while
    /// holding the store's lock, and reloads first).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.state = read_state(&self.root)?.unwrap_or_default();
        Ok(())
    }

    /// The trust in force: the latest rotation, or the image's.
    pub fn trust(&self) -> &Trust {
        self.state.trust.as_ref().unwrap_or(&self.image_trust)
    }

    /// Installed bundles, sorted by name.
    pub fn installed(&self) -> &[Installed] {
        &self.state.installed
    }

    /// The installed bundle called `name`.
    pub fn get(&self, name: &str) -> Option<&Installed> {
        self.state.installed(name)
    }

    /// The highest version of `name` ever installed here.
    pub fn highest_version(&self, name: &str) -> Option<u64> {
        self.state.highest(name)
    }

    #[doc(hidden)]
    /// Test seam: make the `n`-th durable step from now fail, as a crash would.
    pub fn fail_after_steps(&mut self, n: Option<u32>) {
        self.fault_after = n;
        self.steps = 0;
    }

    fn step(&mut self, what: &'static str) -> Result<(), StoreError> {
        self.steps += 1;
        if self.fault_after.is_some_and(|n| self.steps >= n) {
            return Err(StoreError::Io {
                op: what,
                path: self.root.clone(),
                source: std::io::Error::other("injected crash"),
            });
        }
        Ok(())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Replaces the state file: the single commit step.
    fn commit(&mut self, next: State) -> Result<(), StoreError> {
        let bytes = next.encode().ok_or(StoreError::CorruptState {
            path: self.root.join("state"),
        })?;
        let tmp = fsutil::write_temp(&self.tmp_dir(), &bytes)?;
        self.step("committing state")?;
        fsutil::rename(&tmp, &self.root.join("state"))?;
        fsutil::sync_dir(&self.root)?;
        self.state = next;
        Ok(())
    }

    /// Decides whether `header` may be installed over what is recorded;
    /// returns the permit sequence to record, if a permit was used.
    fn check_version(
        &self,
        header: &Header,
        permit: Option<&[u8]>,
        ctx: &Context<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let name = &header.name;
        let Some(highest) = self.state.highest(name) else {
            return Ok(None);
        };
        let v = header.version;
        if v > highest {
            let max_step = self.trust().policy.max_version_step;
            if v - highest > max_step {
                return Err(StoreError::FastForward {
                    name: name.clone(),
                    installed: highest,
                    offered: v,
                    max_step,
                });
            }
            return Ok(None);
        }
        if v == highest {
            return if self.state.highest_root(name) == Some(header.root) {
                Ok(None)
            } else {
                Err(StoreError::VersionReuse {
                    name: name.clone(),
                    version: v,
                })
            };
        }
        let Some(doc) = permit else {
            return Err(StoreError::Rollback {
                name: name.clone(),
                installed: highest,
                offered: v,
            });
        };
        let p = self.trust().verify_permit(doc, ctx)?;
        if p.name != *name || p.version != v {
            return Err(StoreError::PermitMismatch {
                name: p.name,
                version: p.version,
            });
        }
        let last = self.state.permit_seq(name);
        if p.sequence <= last {
            return Err(StoreError::PermitReplayed {
                name: name.clone(),
                sequence: p.sequence,
                last,
            });
        }
        Ok(Some(p.sequence))
    }

    /// Installs a bundle from a `.qb` stream. `permit` is a downgrade permit,
    /// needed only to install a version below the highest installed.
    pub fn install<R: Read>(
        &mut self,
        input: R,
        ctx: &Context<'_>,
        permit: Option<&[u8]>,
    ) -> Result<InstallReport, StoreError> {
        let mut src = io::ReadSource::new(input);
        let trust = self.trust().clone();
        let result = self.install_from(&mut src, &trust, ctx, permit);
        match (result, src.error.take()) {
            (Err(StoreError::Bundle(quilt_bundle::Error::Source)), Some(source)) => {
                Err(StoreError::Read { source })
            }
            (r, _) => r,
        }
    }

    fn install_from<R: Read>(
        &mut self,
        src: &mut io::ReadSource<R>,
        trust: &Trust,
        ctx: &Context<'_>,
        permit: Option<&[u8]>,
    ) -> Result<InstallReport, StoreError> {
        let mut reader = BundleReader::open(src, trust, ctx)?;
        let header = reader.header().clone();
        let permit_seq = self.check_version(&header, permit, ctx)?;
        let mut report = InstallReport {
            name: header.name.clone(),
            version: header.version,
            root: header.root,
            chunks: header.chunk_count,
            chunks_written: 0,
            bytes_written: 0,
            bytes_reused: 0,
            already_installed: false,
        };
        if self.is_installed_whole(&header) {
            // Signatures, manifest and root are checked and match what is
            // installed, and every chunk it needs is on disk; no byte of
            // the chunk section would be used, so it is not read
            // (quilt-init offers the image's bundles at every boot, and
            // re-hashing them each time buys nothing). A chunk that is
            // missing (lost, or dropped by [`Store::repair`] because it
            // rotted) makes this a full install that writes it again.
            report.already_installed = true;
            return Ok(report);
        }
        let mut record = Vec::new();
        reader.envelope().encode_into(&MAGIC_BUNDLE, &mut record)?;
        record.extend_from_slice(reader.manifest_bytes());

        let mut buf = vec![0u8; CHUNK_MAX as usize];
        let mut existing = Vec::with_capacity(CHUNK_MAX as usize + 1);
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        while let Some((c, bytes)) = reader.next_chunk(&mut buf)? {
            let path = self.root.join(chunk_rel(&c.id));
            // Dedup, but only against an intact copy: a rotted chunk is
            // rewritten from the verified bytes in hand (a byte compare
            // costs less than hashing the stored copy).
            if same_contents(&path, bytes, &mut existing) {
                report.bytes_reused += u64::from(c.len);
                continue;
            }
            let tmp = fsutil::write_temp(&self.tmp_dir(), bytes)?;
            self.step("writing chunk")?;
            if let Some(dir) = path.parent() {
                fsutil::ensure_dir(dir)?;
                touched.insert(dir.to_path_buf());
            }
            fsutil::rename(&tmp, &path)?;
            report.chunks_written += 1;
            report.bytes_written += u64::from(c.len);
        }
        // Every chunk verified and the end of input confirmed: make the
        // chunks durable, then the record, then commit.
        for d in &touched {
            fsutil::sync_dir(d)?;
        }
        fsutil::sync_dir(&self.root.join("chunks"))?;
        let rec_tmp = fsutil::write_temp(&self.tmp_dir(), &record)?;
        self.step("writing record")?;
        let bundles = self.root.join("bundles");
        fsutil::rename(
            &rec_tmp,
            &bundles.join(paths::record(&header.name, &header.root)),
        )?;
        fsutil::sync_dir(&bundles)?;

        let mut next = self.state.clone();
        next.set_installed(Installed {
            name: header.name.clone(),
            version: header.version,
            root: header.root,
        });
        if next
            .highest(&header.name)
            .is_none_or(|h| header.version > h)
        {
            next.set_highest(&header.name, header.version, header.root);
        }
        if let Some(seq) = permit_seq {
            next.set_permit_seq(&header.name, seq);
        }
        self.commit(next)?;
        Ok(report)
    }

    /// Uninstalls `name` (its highest version stays recorded, so an older
    /// copy still cannot be installed afterwards). Run [`Store::gc`] to free space.
    pub fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        if self.state.installed(name).is_none() {
            return Err(StoreError::NotInstalled {
                name: name.to_string(),
            });
        }
        let mut next = self.state.clone();
        next.installed.retain(|i| i.name != name);
        self.commit(next)
    }

    /// Applies a signed key-rotation document (see `quilt_bundle::trust`).
    pub fn apply_trust_update(&mut self, doc: &[u8], ctx: &Context<'_>) -> Result<(), StoreError> {
        let next_trust = self.trust().apply_update(doc, ctx)?;
        let mut next = self.state.clone();
        next.trust = Some(next_trust);
        self.commit(next)
    }

    /// Reads a bundle record and checks it against its root.
    /// True when exactly this bundle (name, version, root) is installed
    /// and every chunk its record names is on disk (a `stat` each, no
    /// read: rot is [`Store::fsck`]'s and [`Store::repair`]'s business).
    pub fn is_installed_whole(&self, header: &Header) -> bool {
        self.state
            .installed(&header.name)
            .is_some_and(|i| i.root == header.root && i.version == header.version)
            && self.has_every_chunk(&header.name, &header.root)
    }

    /// Whether every chunk the record of `name` at `root` names is on disk.
    fn has_every_chunk(&self, name: &str, root: &Hash) -> bool {
        self.read_record(name, root).is_ok_and(|(_, m)| {
            m.chunk_order()
                .iter()
                .all(|c| self.root.join(chunk_rel(&c.id)).is_file())
        })
    }

    /// The record of bundle `name` at `root`. Records written before
    /// names were part of the file name (`bundles/<root>`) are still read,
    /// but only when the header inside names `name`.
    fn read_record(&self, name: &str, root: &Hash) -> Result<(Header, Manifest), StoreError> {
        let bundles = self.root.join("bundles");
        let path = bundles.join(paths::record(name, root));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let legacy = bundles.join(root.to_string());
                fs::read(&legacy).map_err(io_err("reading record", &path))?
            }
            Err(e) => return Err(io_err("reading record", &path)(e)),
        };
        let (env, rest) = Envelope::parse(&MAGIC_BUNDLE, "bundle record", &bytes)?;
        let header = Header::decode(&env.body)?;
        if header.name != name {
            return Err(StoreError::RecordName {
                path,
                expected: name.to_string(),
                found: header.name,
            });
        }
        let manifest = Manifest::decode(rest)?;
        // Checked on install already; checked again because materialize
        // trusts these paths.
        manifest.validate()?;
        let computed = bundle_root(rest, &manifest.chunk_order());
        if computed != *root || header.root != *root {
            return Err(quilt_bundle::Error::RootMismatch {
                signed: *root,
                computed,
            }
            .into());
        }
        Ok((header, manifest))
    }

    fn read_chunk(&self, id: &Hash, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let path = self.root.join(chunk_rel(id));
        buf.clear();
        let f = fs::File::open(&path).map_err(|_| StoreError::BadChunk {
            id: *id,
            path: path.clone(),
        })?;
        f.take(u64::from(CHUNK_MAX) + 1)
            .read_to_end(buf)
            .map_err(io_err("reading chunk", &path))?;
        if hash::leaf(buf) != *id {
            return Err(StoreError::BadChunk { id: *id, path });
        }
        Ok(())
    }

    /// Re-verifies the store: each installed bundle's record hashes to its
    /// root, and every chunk file hashes to its name and is present where
    /// referenced. Problems are listed, not fatal.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        let mut report = FsckReport::default();
        let mut referenced = BTreeSet::new();
        for i in &self.state.installed {
            report.bundles_checked += 1;
            match self.read_record(&i.name, &i.root) {
                Ok((h, m)) => {
                    if h.name != i.name || h.version != i.version {
                        report.problems.push(StoreError::Bundle(
                            quilt_bundle::Error::ManifestMismatch {
                                field: "record version",
                                header: h.version,
                                manifest: i.version,
                            },
                        ));
                    }
                    referenced.extend(m.chunk_order().into_iter().map(|c| c.id));
                }
                Err(e) => report.problems.push(e),
            }
        }
        let mut buf = Vec::with_capacity(CHUNK_MAX as usize + 1);
        let mut seen = BTreeSet::new();
        for (id, path) in chunk_files(&self.root)? {
            report.chunks_checked += 1;
            match id {
                Some(id) => {
                    if let Err(e) = self.read_chunk(&id, &mut buf) {
                        report.problems.push(e);
                    }
                    seen.insert(id);
                }
                None => report.problems.push(StoreError::BadChunk {
                    id: Hash::default(),
                    path,
                }),
            }
        }
        for id in referenced.difference(&seen) {
            report.problems.push(StoreError::BadChunk {
                id: *id,
                path: self.root.join(chunk_rel(id)),
            });
        }
        Ok(report)
    }

    /// Drops every chunk file whose bytes do not hash to its name (rot,
    /// a torn write, a foreign file), so that the next offer of a bundle
    /// that needs it (`quilt install`, a stick, `quilt send`) fetches it
    /// again: such a bundle is no longer "already installed" (see
    /// [`Store::is_installed_whole`]). Trees already written out are not
    /// touched. Returns the chunks dropped and the installed bundles that
    /// now lack a chunk, by name.
    pub fn repair(&mut self) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        let mut buf = Vec::with_capacity(CHUNK_MAX as usize + 1);
        for (id, path) in chunk_files(&self.root)? {
            let sound = id.is_some_and(|id| self.read_chunk(&id, &mut buf).is_ok());
            if !sound {
                fs::remove_file(&path).map_err(io_err("removing", &path))?;
                report.chunks_dropped += 1;
            }
        }
        for i in &self.state.installed {
            if !self.has_every_chunk(&i.name, &i.root) {
                report.damaged.push(i.name.clone());
            }
        }
        Ok(report)
    }

    /// Removes chunks and records no installed bundle references.
    pub fn gc(&mut self) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut keep_chunks = BTreeSet::new();
        let mut keep_records = BTreeSet::new();
        for i in &self.state.installed {
            let (_, m) = self.read_record(&i.name, &i.root)?;
            keep_chunks.extend(m.chunk_order().into_iter().map(|c| c.id));
            keep_records.insert(paths::record(&i.name, &i.root));
            // A record from before names were part of record file names.
            keep_records.insert(i.root.to_string());
        }
        // A bundle still arriving over the serial link keeps the chunks it
        // already has, so a gc between a cut and the resume costs nothing.
        keep_chunks.extend(self.staged_chunk_ids()?);
        for (id, path) in chunk_files(&self.root)? {
            if id.is_some_and(|id| keep_chunks.contains(&id)) {
                continue;
            }
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            report.chunks_removed += 1;
            report.bytes_removed += len;
        }
        let bundles = self.root.join("bundles");
        for e in fs::read_dir(&bundles).map_err(io_err("listing", &bundles))? {
            let p = e.map_err(io_err("listing", &bundles))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !keep_records.contains(name) {
                fs::remove_file(&p).map_err(io_err("removing", &p))?;
                report.records_removed += 1;
            }
        }
        Ok(report)
    }

    /// The signed header of the installed bundle `name` (entry, runtime,
    /// limits, tokens): what a runner needs to start it.
    pub fn header(&self, name: &str) -> Result<Header, StoreError> {
        let inst = self.state.installed(name).ok_or(StoreError::NotInstalled {
            name: name.to_string(),
        })?;
        Ok(self.read_record(name, &inst.root)?.0)
    }

    /// The signed header of the installed bundle `name` and the tools its
    /// signed manifest declares (empty when it declares none), from one
    /// read of its record.
    pub fn header_and_tools(
        &self,
        name: &str,
    ) -> Result<(Header, Vec<quilt_bundle::ToolDef>), StoreError> {
        let inst = self.state.installed(name).ok_or(StoreError::NotInstalled {
            name: name.to_string(),
        })?;
        let (header, manifest) = self.read_record(name, &inst.root)?;
        Ok((header, manifest.tools))
    }

    /// Writes the installed bundle `name` out as a directory tree at `dest`
    /// (which must not exist), re-checking every chunk on the way. The tree
    /// is built beside `dest` and renamed into place, so `dest` appears whole.
    pub fn materialize(&self, name: &str, dest: &Path) -> Result<(), StoreError> {
        let inst = self.state.installed(name).ok_or(StoreError::NotInstalled {
            name: name.to_string(),
        })?;
        let (_, manifest) = self.read_record(name, &inst.root)?;
        let mut staging = dest.as_os_str().to_owned();
        staging.push(format!(".partial-{}", std::process::id()));
        let staging = PathBuf::from(staging);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err("removing", &staging))?;
        }
        fs::create_dir(&staging).map_err(io_err("creating directory", &staging))?;
        let mut buf = Vec::with_capacity(CHUNK_MAX as usize + 1);
        let mut dirs = Vec::new();
        // The manifest was validated on install and again via its root here:
        // paths are relative, `..`-free, and parents come before children.
        for e in &manifest.entries {
            let path = staging.join(&e.path);
            match &e.node {
                Node::Dir { mode } => {
                    fs::create_dir(&path).map_err(io_err("creating directory", &path))?;
                    dirs.push((path, *mode));
                }
                Node::File { mode, chunks, .. } => {
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(io_err("creating", &path))?;
                    for c in chunks {
                        self.read_chunk(&c.id, &mut buf)?;
                        f.write_all(&buf).map_err(io_err("writing", &path))?;
                    }
                    f.set_permissions(fs::Permissions::from_mode(u32::from(*mode)))
                        .map_err(io_err("setting mode of", &path))?;
                    f.sync_all().map_err(io_err("syncing", &path))?;
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &path)
                        .map_err(io_err("creating symlink", &path))?;
                }
            }
        }
        // Modes last, so a read-only directory does not block its children.
        for (path, mode) in dirs.iter().rev() {
            fs::set_permissions(path, fs::Permissions::from_mode(u32::from(*mode)))
                .map_err(io_err("setting mode of", path))?;
        }
        fsutil::sync_dir(&staging)?;
        fsutil::rename(&staging, dest)?;
        if let Some(parent) = dest.parent() {
            fsutil::sync_dir(parent)?;
        }
        Ok(())
    }

    /// The chunks of file `path` of installed bundle `name` (its signed
    /// manifest's list); `NotInstalled` names `name:path` when the bundle
    /// has no such regular file.
    fn file_chunks(&self, name: &str, path: &str) -> Result<Vec<ChunkRefOf>, StoreError> {
        let inst = self.state.installed(name).ok_or(StoreError::NotInstalled {
            name: name.to_string(),
        })?;
        let (_, manifest) = self.read_record(name, &inst.root)?;
        manifest
            .entries
            .iter()
            .find_map(|e| match &e.node {
                Node::File { chunks, .. } if e.path == path => {
                    Some(chunks.iter().map(|c| (c.id, c.len)).collect())
                }
                _ => None,
            })
            .ok_or_else(|| StoreError::NotInstalled {
                name: format!("{name}:{path}"),
            })
    }

    /// The size of file `path` of installed bundle `name`; `None` when the
    /// bundle has no such file.
    pub fn file_size(&self, name: &str, path: &str) -> Result<Option<u64>, StoreError> {
        let inst = self.state.installed(name).ok_or(StoreError::NotInstalled {
            name: name.to_string(),
        })?;
        let (_, manifest) = self.read_record(name, &inst.root)?;
        Ok(manifest.entries.iter().find_map(|e| match &e.node {
            Node::File { chunks, .. } if e.path == path => {
                Some(chunks.iter().map(|c| u64::from(c.len)).sum())
            }
            _ => None,
        }))
    }

    /// Stream file `path` of installed bundle `name` into `out` (a root
    /// image onto a slot partition), re-checking every chunk on the way.
    /// Returns its length.
    pub fn write_file(
        &self,
        name: &str,
        path: &str,
        out: &mut dyn Write,
    ) -> Result<u64, StoreError> {
        let chunks = self.file_chunks(name, path)?;
        let mut buf = Vec::with_capacity(CHUNK_MAX as usize + 1);
        let mut n = 0u64;
        for (id, _) in &chunks {
            self.read_chunk(id, &mut buf)?;
            out.write_all(&buf)
                .map_err(io_err("writing", Path::new(path)))?;
            n += buf.len() as u64;
        }
        Ok(n)
    }

    /// Whether `input` starts with exactly file `path` of bundle `name`:
    /// read chunk by chunk at the manifest's lengths, each hashed and
    /// compared with its signed id. `Ok(Err(k))`: chunk `k` differs.
    pub fn check_copy(
        &self,
        name: &str,
        path: &str,
        input: &mut dyn Read,
    ) -> Result<Result<u64, usize>, StoreError> {
        let chunks = self.file_chunks(name, path)?;
        let mut buf = vec![0u8; CHUNK_MAX as usize];
        let mut n = 0u64;
        for (k, (id, len)) in chunks.iter().enumerate() {
            let Some(b) = buf.get_mut(..*len as usize) else {
                return Ok(Err(k));
            };
            if input.read_exact(b).is_err() || hash::leaf(b) != *id {
                return Ok(Err(k));
            }
            n += u64::from(*len);
        }
        Ok(Ok(n))
    }
}

type ChunkRefOf = (Hash, u32);
