//! The catalog PID 1 runs from (`quilt_proto::installer::Catalog`): every
//! installed bundle's header and tree, and the trust in force, written
//! whole to a temporary file and renamed over the old one, so PID 1 reads
//! either the previous catalog or this one.

use crate::event;
use quilt_proto::installer::{encode_catalog, Catalog, CatalogEntry, CATALOG};
use quilt_store::Store;
use std::path::Path;

/// Where installed bundles are written out for containers.
pub const TREES: &str = "/run/quilt/bundles";
pub use quilt_proto::installer::FIRMWARE;

/// Write the catalog of `store`.
pub fn write(store: &Store) {
    let mut c = Catalog::default();
    for i in store.installed() {
        let header = match store.header(&i.name) {
            Ok(h) => h,
            Err(e) => {
                event!("event=bundle-unreadable name={} error=\"{}\"", i.name, e);
                continue;
            }
        };
        let tree = (header.runtime != FIRMWARE)
            .then(|| quilt_store::paths::tree(Path::new(TREES), &header.name, header.version))
            .filter(|t| t.is_dir())
            .map(|t| t.to_string_lossy().into_owned());
        c.bundles.push(CatalogEntry { header, tree });
    }
    let trust = store.trust();
    c.keys = trust.keys.iter().map(|k| k.to_hex()).collect();
    c.policy = trust.policy.to_text();
    let Some(bytes) = encode_catalog(&c) else {
        event!("event=catalog-write-failed error=\"does not encode\"");
        return;
    };
    let tmp = format!("{CATALOG}.tmp");
    let _ = std::fs::create_dir_all("/run/quilt");
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, CATALOG)) {
        event!("event=catalog-write-failed error=\"{}\"", e);
    }
}
