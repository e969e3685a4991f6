//! [`Storage`] on a quilt-store (feature `store`): what the board runs.
//! Every decision is the store's: trust and version checks on the offer,
//! staging under `incoming/`, chunk dedup, and the final install, which
//! replays the staged bundle through the store's full `.qb` checks.

use crate::receiver::{InstallSummary, Storage};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use quilt_bundle::envelope::Envelope;
use quilt_bundle::{Context, Hash, Header};
use quilt_store::Store;

/// A store with the device context installs are checked against.
#[derive(Debug)]
pub struct StoreStorage<'a> {
    pub store: &'a mut Store,
    /// Device architecture, board and clock (see `docs/trust.md`).
    pub ctx: Context<'a>,
    /// A downgrade permit to apply, if the operator supplied one.
    pub permit: Option<&'a [u8]>,
}

impl<'a> StoreStorage<'a> {
    pub fn new(store: &'a mut Store, ctx: Context<'a>) -> Self {
        StoreStorage {
            store,
            ctx,
            permit: None,
        }
    }
}

impl Storage for StoreStorage<'_> {
    fn check_offer(&mut self, envelope: &Envelope) -> Result<Header, String> {
        self.store
            .check_offer(envelope, &self.ctx, self.permit)
            .map_err(|e| e.to_string())
    }
    fn is_installed(&mut self, header: &Header) -> bool {
        // Installed with every chunk on disk: a bundle that lost a chunk
        // (`quilt fsck --repair`) is fetched again, the lost chunks only.
        self.store.is_installed_whole(header)
    }
    fn staged_manifest(&mut self, root: &Hash) -> Option<Vec<u8>> {
        self.store.staged(root).map(|s| s.manifest_bytes)
    }
    fn stage(&mut self, envelope: &Envelope, manifest: &[u8]) -> Result<(), String> {
        self.store
            .stage(envelope, manifest)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn has_chunk(&mut self, id: &Hash) -> bool {
        self.store.has_chunk(id)
    }
    fn put_chunk(&mut self, id: &Hash, bytes: &[u8]) -> Result<(), String> {
        self.store
            .put_chunk(id, bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn install(&mut self, root: &Hash) -> Result<InstallSummary, String> {
        let r = self
            .store
            .install_staged(root, &self.ctx, self.permit)
            .map_err(|e| e.to_string())?;
        Ok(InstallSummary {
            name: r.name,
            version: r.version,
            chunks_written: r.chunks_written,
            bytes_reused: r.bytes_reused,
        })
    }
    fn discard(&mut self, root: &Hash) {
        let _ = self.store.discard_staged(root);
    }
}
