//! The record on its partition (or file): read the current copy, write the
//! other one and sync. Shared by quilt-init (stage 1, trials, `quilt
//! slots`) and the installer (staging firmware).

use crate::{current, State, COPY_OFFSETS, RECORD};
use std::os::unix::fs::FileExt;

/// Why the record could not be changed.
#[derive(Debug)]
pub enum UpdateError {
    /// Reading the partition failed.
    Read(std::io::Error),
    /// Neither copy holds a valid record.
    NoRecord,
    /// The change does not apply to this state (e.g. not newer).
    NoChange,
    /// Writing or syncing the partition failed.
    Write(std::io::Error),
}

impl core::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpdateError::Read(e) => write!(f, "reading the boot state: {e}"),
            UpdateError::NoRecord => f.write_str("the boot state has no valid record"),
            UpdateError::NoChange => f.write_str("nothing to change"),
            UpdateError::Write(e) => write!(f, "writing the boot state: {e}"),
        }
    }
}

/// The current record at `path` and the copy it is in (`None`: blank or
/// both torn).
pub fn read(path: &str) -> std::io::Result<Option<(State, usize)>> {
    let f = std::fs::File::open(path)?;
    let mut copies = [[0u8; RECORD]; 2];
    for (buf, off) in copies.iter_mut().zip(COPY_OFFSETS) {
        f.read_exact_at(buf, off)?;
    }
    let [a, b] = &copies;
    Ok(current([a, b]))
}

/// Write `s` into the copy the current record is not in, and sync.
pub fn write(path: &str, s: &State, current_copy: Option<usize>) -> std::io::Result<()> {
    let copy = current_copy.map_or(0, |c| 1 - c.min(1));
    let off = COPY_OFFSETS.get(copy).copied().unwrap_or(0);
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(&s.encode(), off)?;
    f.sync_all()
}

/// Read, change, write.
pub fn update(
    path: &str,
    change: impl FnOnce(State) -> Option<State>,
) -> Result<State, UpdateError> {
    let (cur, copy) = read(path)
        .map_err(UpdateError::Read)?
        .ok_or(UpdateError::NoRecord)?;
    let next = change(cur).ok_or(UpdateError::NoChange)?;
    write(path, &next, Some(copy)).map_err(UpdateError::Write)?;
    Ok(next)
}
