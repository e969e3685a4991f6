//! `quilt bundle diff`: what a board holding OLD must fetch to install NEW.
//! Only headers and manifests are read.

use quilt_bundle::{BundleReader, Hash, Manifest, Node};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::ExitCode;

/// What `diff` reports; also used by the benchmark.
#[derive(Debug, Clone)]
pub struct DiffReport {
    pub old_chunks: usize,
    pub new_chunks: usize,
    pub shared_chunks: usize,
    pub shared_bytes: u64,
    pub fetch_chunks: usize,
    pub fetch_bytes: u64,
    /// Envelope and manifest of NEW: always travel.
    pub metadata_bytes: u64,
    pub new_content_bytes: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl DiffReport {
    pub fn transfer_bytes(&self) -> u64 {
        self.fetch_bytes + self.metadata_bytes
    }
}

fn files(m: &Manifest) -> BTreeMap<&str, &Node> {
    m.entries
        .iter()
        .map(|e| (e.path.as_str(), &e.node))
        .collect()
}

/// Compares two opened bundles.
pub fn compare<A: quilt_bundle::Source, B: quilt_bundle::Source>(
    old: &BundleReader<A>,
    new: &BundleReader<B>,
) -> DiffReport {
    let have: HashSet<Hash> = old.chunk_order().iter().map(|c| c.id).collect();
    let (mut shared_chunks, mut shared_bytes, mut fetch_chunks, mut fetch_bytes) =
        (0, 0u64, 0, 0u64);
    for c in new.chunk_order() {
        if have.contains(&c.id) {
            shared_chunks += 1;
            shared_bytes += u64::from(c.len);
        } else {
            fetch_chunks += 1;
            fetch_bytes += u64::from(c.len);
        }
    }
    let (fo, fnew) = (files(old.manifest()), files(new.manifest()));
    let added = fnew
        .keys()
        .filter(|p| !fo.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let removed = fo
        .keys()
        .filter(|p| !fnew.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let changed = fnew
        .iter()
        .filter(|(p, n)| fo.get(*p).is_some_and(|o| o != *n))
        .map(|(p, _)| p.to_string())
        .collect();
    DiffReport {
        old_chunks: old.chunk_order().len(),
        new_chunks: new.chunk_order().len(),
        shared_chunks,
        shared_bytes,
        fetch_chunks,
        fetch_bytes,
        metadata_bytes: new.offset(),
        new_content_bytes: new.header().content_len,
        added,
        removed,
        changed,
    }
}

pub fn diff(old: &Path, new: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut so = super::source(old)?;
    let ro = match BundleReader::open_unverified(&mut so) {
        Ok(r) => r,
        Err(e) => return Err(super::fail(old, &so, e)),
    };
    let mut sn = super::source(new)?;
    let rn = match BundleReader::open_unverified(&mut sn) {
        Ok(r) => r,
        Err(e) => return Err(super::fail(new, &sn, e)),
    };
    let d = compare(&ro, &rn);
    let (ho, hn) = (ro.header(), rn.header());
    if as_json {
        let v = json!({
            "old": {"name": ho.name, "version": ho.version, "root": ho.root.to_string(), "chunks": d.old_chunks},
            "new": {"name": hn.name, "version": hn.version, "root": hn.root.to_string(), "chunks": d.new_chunks,
                    "content_bytes": d.new_content_bytes},
            "shared_chunks": d.shared_chunks, "shared_bytes": d.shared_bytes,
            "fetch_chunks": d.fetch_chunks, "fetch_bytes": d.fetch_bytes,
            "metadata_bytes": d.metadata_bytes, "transfer_bytes": d.transfer_bytes(),
            "added": d.added, "removed": d.removed, "changed": d.changed,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if ho.name != hn.name {
        println!(
            "note: comparing different bundles ({} and {})",
            ho.name, hn.name
        );
    }
    println!(
        "old    {} version {} ({} chunks)",
        ho.name, ho.version, d.old_chunks
    );
    println!(
        "new    {} version {} ({} chunks, {} content bytes)",
        hn.name, hn.version, d.new_chunks, d.new_content_bytes
    );
    println!(
        "shared {} chunks, {} bytes (already on the board)",
        d.shared_chunks, d.shared_bytes
    );
    println!("fetch  {} chunks, {} bytes", d.fetch_chunks, d.fetch_bytes);
    let pct = if d.new_content_bytes == 0 {
        0.0
    } else {
        100.0 * d.transfer_bytes() as f64 / (d.new_content_bytes + d.metadata_bytes) as f64
    };
    println!(
        "transfer {} bytes (chunks + {} bytes header and manifest), {pct:.1}% of the full bundle",
        d.transfer_bytes(),
        d.metadata_bytes
    );
    for (sign, list) in [('+', &d.added), ('-', &d.removed), ('~', &d.changed)] {
        for p in list {
            println!("  {sign} {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
