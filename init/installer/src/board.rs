//! What every job starts from: the boot config PID 1 booted with, the
//! board's firmware names, the device context installs are checked
//! against, and the store opened under its lock.

use crate::lock::{self, StoreLock};
use quilt_bundle::Context;
use quilt_config::BootConfig;
use quilt_proto::installer::RefusalReason;
use quilt_proto::ErrorCode;
use quilt_store::Store;
use std::path::Path;

/// Largest boot config read.
const MAX_CONFIG: usize = 64 * 1024;

/// Why a job did nothing.
#[derive(Debug)]
pub struct Refusal {
    /// For the client.
    pub code: ErrorCode,
    /// Which check refused it, as counted.
    pub reason: RefusalReason,
    /// What and why, and what to do next.
    pub message: String,
}

impl Refusal {
    /// A failure with its reason.
    pub fn failed(message: impl Into<String>) -> Refusal {
        Refusal {
            code: ErrorCode::Failed,
            reason: RefusalReason::Other,
            message: message.into(),
        }
    }

    /// The store refused: its reason, counted by kind.
    pub fn store(code: ErrorCode, e: &quilt_store::StoreError) -> Refusal {
        Refusal {
            code,
            reason: crate::reason::of_store(e),
            message: e.to_string(),
        }
    }
}

/// The board as the config describes it.
pub struct Board {
    /// The boot config.
    pub cfg: Box<BootConfig>,
    /// Bundle names the board takes as firmware (`[slots] firmware`).
    pub firmware: Vec<String>,
}

impl Board {
    /// Read the compiled boot config at `path`.
    pub fn load(path: &str) -> Result<Board, Refusal> {
        let bytes = std::fs::read(path)
            .map_err(|e| Refusal::failed(format!("reading the boot config {path}: {e}")))?;
        if bytes.len() > MAX_CONFIG {
            return Err(Refusal::failed(format!(
                "the boot config {path} is over {MAX_CONFIG} bytes"
            )));
        }
        let cfg = quilt_config::decode(&bytes)
            .map_err(|e| Refusal::failed(format!("the boot config {path}: {e}")))?;
        let firmware = cfg
            .slots
            .iter()
            .flat_map(|s| s.firmware.iter().map(|n| n.to_string()))
            .collect();
        Ok(Board {
            cfg: Box::new(cfg),
            firmware,
        })
    }

    /// What an install is checked against: this board's clock (when it
    /// has one), architecture, name and firmware bundle names.
    pub fn context(&self) -> Context<'_> {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        Context {
            now: u64::try_from(t.tv_sec).ok(),
            arch: Some(std::env::consts::ARCH),
            board: self.cfg.bundles.board.as_deref(),
            firmware: Some(&self.firmware),
        }
    }

    /// The store, opened (and its state read) under its lock.
    pub fn store(&self) -> Result<(Store, StoreLock), Refusal> {
        let b = &self.cfg.bundles;
        let trust =
            quilt_store::trustdir::load(Path::new(b.trust.as_str())).map_err(|e| Refusal {
                code: ErrorCode::NotFound,
                reason: RefusalReason::Trust,
                message: format!(
                    "this board has no usable trust store ({}: {e}), so no bundles",
                    b.trust
                ),
            })?;
        let dir = Path::new(b.store.as_str());
        let held = lock::lock(dir)
            .map_err(|e| Refusal::failed(format!("locking the store {}: {e}", b.store)))?;
        let store = Store::open(dir, trust)
            .map_err(|e| Refusal::failed(format!("opening the store {}: {e}", b.store)))?;
        Ok((store, held))
    }
}
