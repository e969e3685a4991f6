//! What can run from bundles, as the installer left it: the catalog
//! (`quilt_proto::installer::Catalog`) names every installed bundle's
//! signed header and the read-only tree it was written out to. PID 1
//! reads it after each install job and never opens the store or a bundle
//! itself (installs.rs).

use crate::event;
use quilt_bundle::Header;
use quilt_config::BootConfig;
use quilt_proto::installer::{decode_catalog, Catalog, CATALOG, MAX_CATALOG};
use std::path::PathBuf;

pub use quilt_proto::installer::FIRMWARE;

/// An installed bundle ready to run.
pub struct Tool {
    /// Its signed header (entry, runtime, limits, tokens).
    pub header: Header,
    /// Its content, materialized.
    pub tree: PathBuf,
}

/// Everything that can run from bundles.
pub struct Tools {
    /// Installed bundles by name.
    pub tools: Vec<Tool>,
    /// The runtime layer every container's root is made of.
    pub runtime: PathBuf,
    /// The bundle names the board takes as firmware (`[slots] firmware`).
    firmware: Vec<String>,
    /// The catalog as read (for `quilt bundles`).
    catalog: Catalog,
    /// The board's bounds on what manifests ask (`[containers]`).
    ceilings: quilt_config::Containers,
}

/// Read the catalog, bounded; `None` if there is none (no trust store, or
/// the installer never ran) or it does not decode.
fn read_catalog() -> Option<Catalog> {
    let mut buf = vec![0u8; MAX_CATALOG + 1];
    let n = match crate::mounts::read_into(CATALOG, &mut buf) {
        Ok(n) => n,
        Err(_) => return None,
    };
    if n > MAX_CATALOG {
        event!(
            "event=catalog-refused reason=\"over {} bytes\"",
            MAX_CATALOG
        );
        return None;
    }
    let c = decode_catalog(buf.get(..n)?);
    if c.is_none() {
        event!("event=catalog-refused reason=\"does not decode\"");
    }
    c
}

impl Tools {
    /// The bundles of the catalog the boot job wrote; `None` when it
    /// wrote none (no trust store: nothing runs from bundles).
    pub fn load(boot: &BootConfig) -> Option<Tools> {
        let catalog = read_catalog()?;
        let mut t = Tools {
            tools: Vec::new(),
            runtime: PathBuf::from(boot.bundles.runtime.as_str()),
            firmware: boot
                .slots
                .iter()
                .flat_map(|s| s.firmware.iter().map(|n| n.to_string()))
                .collect(),
            catalog: Catalog::default(),
            ceilings: boot.containers.clone(),
        };
        t.adopt(catalog);
        Some(t)
    }

    /// Read the catalog again after an install job.
    pub fn reload(&mut self) {
        if let Some(c) = read_catalog() {
            self.adopt(c);
        }
    }

    fn adopt(&mut self, c: Catalog) {
        self.tools = c
            .bundles
            .iter()
            .filter(|e| e.header.runtime != FIRMWARE)
            .filter_map(|e| {
                // The limits it runs with: its manifest's, bounded by the
                // board's (crate::ceilings).
                let mut header = e.header.clone();
                header.limits = crate::ceilings::bound(&e.header.limits, &self.ceilings);
                if header.limits != e.header.limits {
                    event!(
                        "event=limits-bounded bundle={} memory_mib={}->{} tasks={}->{} cpu_percent={}->{} open_files={}->{}",
                        header.name,
                        e.header.limits.memory_mib,
                        header.limits.memory_mib,
                        e.header.limits.tasks,
                        header.limits.tasks,
                        e.header.limits.cpu_percent,
                        header.limits.cpu_percent,
                        e.header.limits.open_files,
                        header.limits.open_files
                    );
                }
                Some(Tool {
                    header,
                    tree: PathBuf::from(e.tree.as_ref()?),
                })
            })
            .collect();
        self.catalog = c;
    }

    /// The installed bundle `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.header.name == name)
    }

    /// The signed header of installed bundle `name`, run or not.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.catalog
            .bundles
            .iter()
            .map(|e| &e.header)
            .find(|h| h.name == name)
    }

    /// Whether `name` is one of the board's firmware bundles.
    pub fn is_firmware(&self, name: &str) -> bool {
        self.firmware.iter().any(|f| f == name)
    }

    /// What `quilt bundles` shows: runnable bundles, then what is
    /// installed but not run (firmware).
    pub fn describe(&self) -> quilt_proto::Reply {
        let runnable = self.tools.iter().map(|t| &t.header);
        let others = self
            .catalog
            .bundles
            .iter()
            .map(|e| &e.header)
            .filter(|h| self.get(&h.name).is_none());
        quilt_proto::Reply::Bundles {
            bundles: runnable
                .chain(others)
                .map(|h| quilt_proto::BundleInfo {
                    name: h.name.clone(),
                    version: h.version,
                    root: h.root.to_string(),
                    tokens: h.tokens.clone(),
                    files: h.files,
                    total_size: h.total_size,
                })
                .collect(),
            keys: self.catalog.keys.clone(),
            policy: self.catalog.policy.clone(),
        }
    }
}
