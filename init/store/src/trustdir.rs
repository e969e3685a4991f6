//! Loading a trust dir: every `*.pub` file is a root key; an optional
//! `policy` file holds thresholds (see `quilt_bundle::trust`). With no
//! policy file, every threshold is 1.
//!
//! ```text
//! /etc/quilt/trust/
//!   release-1.pub    quilt-ed25519-public <64 hex>
//!   release-2.pub
//!   policy           root-threshold 2 / rule firmware 2 / …
//! ```

use crate::error::{io_err, StoreError};
use quilt_bundle::{Policy, PublicKey, Trust};
use std::path::Path;

/// Most bytes read from one key or policy file.
const MAX_FILE: u64 = 64 * 1024;

fn read_small(path: &Path) -> Result<String, StoreError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let mut s = String::new();
    f.take(MAX_FILE)
        .read_to_string(&mut s)
        .map_err(io_err("reading", path))?;
    Ok(s)
}

/// Loads the trust dir at `dir`.
pub fn load(dir: &Path) -> Result<Trust, StoreError> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err("listing trust dir", dir))? {
        let e = e.map_err(io_err("listing trust dir", dir))?;
        names.push(e.path());
    }
    names.sort();
    let mut keys = Vec::new();
    for path in names
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
    {
        let text = read_small(path)?;
        let key = PublicKey::from_file(&text).map_err(|source| StoreError::TrustFile {
            path: path.clone(),
            source,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(StoreError::NoKeys {
            dir: dir.to_path_buf(),
        });
    }
    let policy_path = dir.join("policy");
    let policy = if policy_path.exists() {
        let text = read_small(&policy_path)?;
        Policy::parse(&text).map_err(|source| StoreError::TrustFile {
            path: policy_path.clone(),
            source,
        })?
    } else {
        Policy::default()
    };
    Trust::new(keys, policy).map_err(|source| StoreError::TrustFile {
        path: policy_path,
        source,
    })
}
