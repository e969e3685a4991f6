//! The manifest decoder and validator: no panics, and a manifest that
//! validates survives a round trip and keeps every path relative and
//! `..`-free, and its tool list stays sorted, named and findable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quilt_bundle::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::decode(data) else { return };
    if m.validate().is_ok() {
        assert_eq!(m.encode().unwrap(), data);
        for e in &m.entries {
            assert!(!e.path.starts_with('/'));
            assert!(e.path.split('/').all(|c| !c.is_empty() && c != ".." && c != "."));
        }
        let _ = quilt_bundle::manifest::bundle_root(data, &m.chunk_order());
        for t in &m.tools {
            assert!(quilt_bundle::manifest::tool_name_ok(&t.name));
            assert_eq!(m.tool(&t.name), Some(t));
        }
    }
});
