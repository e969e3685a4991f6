//! Crash-safe file writes: temp file, fsync, rename, fsync the directory.
//!
//! A rename within one filesystem is atomic, so readers see either the old
//! file or the new one; the fsyncs make the new one durable before the
//! caller's next step depends on it.

use crate::error::{io_err, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp path inside `tmp_dir`.
pub(crate) fn temp_path(tmp_dir: &Path) -> std::path::PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_dir.join(format!("{}-{n}", std::process::id()))
}

/// Writes `bytes` to a temp file in `tmp_dir` and fsyncs it; returns its path.
pub(crate) fn write_temp(tmp_dir: &Path, bytes: &[u8]) -> Result<std::path::PathBuf, StoreError> {
    let tmp = temp_path(tmp_dir);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    Ok(tmp)
}

/// Renames `from` over `to`.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(io_err("renaming into place", to))
}

/// Makes a directory's entries (renames, creations, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Creates `dir` (and parents) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io_err("creating directory", dir))
}
