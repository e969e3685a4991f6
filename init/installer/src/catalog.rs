//! The catalog PID 1 runs from (`quilt_proto::installer::Catalog`): every
//! installed bundle's header and tree, and the trust in force, written
//! whole to a temporary file and renamed over the old one, so PID 1 reads
//! either the previous catalog or this one.

use crate::event;
use quilt_proto::installer::{
    encode_catalog, encode_tool_index, Catalog, CatalogEntry, ToolIndex, ToolIndexEntry, CATALOG,
    MAX_TOOL_INDEX, TOOL_INDEX,
};
use quilt_store::Store;
use std::path::Path;

/// Where installed bundles are written out for containers.
pub const TREES: &str = "/run/quilt/bundles";
pub use quilt_proto::installer::FIRMWARE;

/// Write the catalog of `store`, and the tool index beside it (first, so
/// a tool PID 1 can run is never missing from it for long). Each bundle's
/// record is read once for both.
pub fn write(store: &Store) {
    let mut c = Catalog::default();
    let mut index = ToolIndex::default();
    for i in store.installed() {
        let (header, tools) = match store.header_and_tools(&i.name) {
            Ok(h) => h,
            Err(e) => {
                event!("event=bundle-unreadable name={} error=\"{}\"", i.name, e);
                continue;
            }
        };
        let runnable = header.runtime != FIRMWARE;
        if runnable {
            index.bundles.push(ToolIndexEntry {
                bundle: header.name.clone(),
                version: header.version,
                root: header.root.to_string(),
                tools,
                omitted: false,
            });
        }
        let tree = runnable
            .then(|| quilt_store::paths::tree(Path::new(TREES), &header.name, header.version))
            .filter(|t| t.is_dir())
            .map(|t| t.to_string_lossy().into_owned());
        c.bundles.push(CatalogEntry { header, tree });
    }
    write_tool_index(index);
    let trust = store.trust();
    c.keys = trust.keys.iter().map(|k| k.to_hex()).collect();
    c.policy = trust.policy.to_text();
    let Some(bytes) = encode_catalog(&c) else {
        event!("event=catalog-write-failed error=\"does not encode\"");
        return;
    };
    if let Err(e) = replace(CATALOG, &bytes, 0o644) {
        event!("event=catalog-write-failed error=\"{}\"", e);
    }
}

/// The index's bytes within `max`: while it is over, the largest tool list
/// left is dropped (its entry stays, marked `omitted`). `None` if even
/// with every list dropped it does not fit.
fn fit(index: &mut ToolIndex, max: usize) -> Option<Vec<u8>> {
    let weight = |e: &ToolIndexEntry| -> usize {
        e.tools
            .iter()
            .map(|t| t.description.len() + t.input.len() + t.output.as_ref().map_or(0, String::len))
            .sum()
    };
    loop {
        if let Some(b) = encode_tool_index(index).filter(|b| b.len() <= max) {
            return Some(b);
        }
        let largest = index
            .bundles
            .iter_mut()
            .filter(|e| !e.omitted)
            .max_by_key(|e| weight(e))?;
        largest.tools.clear();
        largest.omitted = true;
    }
}

/// Write `bytes` to `path` through a temporary file renamed over it.
fn replace(path: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = format!("{path}.tmp");
    std::fs::create_dir_all("/run/quilt")?;
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

/// Write `index`, the tools of every runnable bundle from the manifests
/// the store verified. Over [`MAX_TOOL_INDEX`], the largest lists are left
/// out (marked `omitted`) until it fits, so one bundle with huge schemas
/// cannot hide every other bundle's tools.
fn write_tool_index(mut index: ToolIndex) {
    let Some(bytes) = fit(&mut index, MAX_TOOL_INDEX) else {
        event!("event=tool-index-write-failed error=\"does not encode\"");
        return;
    };
    for e in index.bundles.iter().filter(|e| e.omitted) {
        event!(
            "event=tool-index-omitted bundle={} reason=\"the index would exceed {} bytes\"",
            e.bundle,
            MAX_TOOL_INDEX
        );
    }
    if let Err(e) = replace(TOOL_INDEX, &bytes, 0o644) {
        event!("event=tool-index-write-failed error=\"{}\"", e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quilt_bundle::ToolDef;

    fn entry(bundle: &str, schema_len: usize) -> ToolIndexEntry {
        ToolIndexEntry {
            bundle: bundle.into(),
            version: 1,
            root: "00".into(),
            tools: vec![ToolDef {
                name: "t".into(),
                description: "d".into(),
                input: "x".repeat(schema_len),
                output: None,
            }],
            omitted: false,
        }
    }

    #[test]
    fn the_largest_tool_lists_are_left_out_until_the_index_fits() {
        let mut index = ToolIndex {
            bundles: vec![entry("small", 10), entry("huge", 5000), entry("mid", 400)],
        };
        let bytes = fit(&mut index, 1000).unwrap();
        assert!(bytes.len() <= 1000);
        let omitted: Vec<&str> = index
            .bundles
            .iter()
            .filter(|e| e.omitted)
            .map(|e| e.bundle.as_str())
            .collect();
        assert_eq!(omitted, ["huge"]);
        assert_eq!(
            quilt_proto::installer::decode_tool_index(&bytes),
            Some(index.clone())
        );
        // Nothing fits in 3 bytes: no index rather than a wrong one.
        assert_eq!(fit(&mut index, 3), None);
    }
}
