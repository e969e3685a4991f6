//! Firmware to the other A/B slot: a firmware bundle once installed is
//! streamed to the slot the board did not boot from, read back and checked
//! chunk by chunk against its signed ids, and only then staged for its
//! tries in the boot state (with its signed dm-verity root, if it has
//! one). The rules are the pure `quilt_slots` crate; quilt-init decides
//! what boots.

use crate::board::{Board, Refusal};
use crate::catalog::FIRMWARE;
use crate::event;
use quilt_proto::installer::Report;
use quilt_slots::file::UpdateError;
use quilt_slots::{Slot, Verity};
use quilt_store::Store;
use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

/// Most bytes of a `.verity` file read.
const MAX_VERITY_FILE: u64 = 1024;

/// The slot this board booted from, and whether on trial (quilt-init's
/// environment, set by stage 1).
fn booted() -> Option<(Slot, bool)> {
    let slot = Slot::parse(std::env::var("QUILT_SLOT").ok()?.as_str())?;
    Some((slot, std::env::var("QUILT_TRIAL").is_ok_and(|t| t == "1")))
}

fn device(cfg: &quilt_config::Slots, slot: Slot) -> &str {
    match slot {
        Slot::A => cfg.a.as_str(),
        Slot::B => cfg.b.as_str(),
    }
}

/// Write firmware `name` to the other slot, check it there and stage it.
pub fn stage(board: &Board, name: &str) -> Result<Vec<Report>, Refusal> {
    let cfg = board
        .cfg
        .slots
        .as_ref()
        .ok_or_else(|| Refusal::failed("this board has no A/B slots ([slots])"))?;
    if !board.firmware.iter().any(|f| f == name) {
        return Err(Refusal::failed(format!(
            "{name:?} is not one of this board's firmware bundles ([slots] firmware)"
        )));
    }
    let (store, _lock) = board.store()?;
    let header = store
        .header(name)
        .map_err(|e| Refusal::failed(e.to_string()))?;
    if header.runtime != FIRMWARE {
        return Err(Refusal::failed(format!("{name:?} is not a root image")));
    }
    let refused = |why: String| {
        event!(
            "event=update-refused name={} version={} reason=\"{}\"",
            name,
            header.version,
            crate::out::unquoted(&why)
        );
        Refusal::failed(why)
    };
    let (slot, trial) = booted()
        .ok_or_else(|| refused("this board did not boot from a slot (no stage 1)".into()))?;
    if trial {
        return Err(refused(format!(
            "slot {} is still on trial; install firmware once it is committed",
            slot.name()
        )));
    }
    let target = slot.other();
    let dev = device(cfg, target);
    let t0 = Instant::now();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| refused(format!("opening slot {} ({dev}): {e}", target.name())))?;
    let room = f
        .seek(SeekFrom::End(0))
        .map_err(|e| refused(format!("{dev}: {e}")))?;
    if header.total_size > room {
        return Err(refused(format!(
            "the root image ({} bytes) does not fit slot {} ({room} bytes)",
            header.total_size,
            target.name()
        )));
    }
    f.seek(SeekFrom::Start(0))
        .map_err(|e| refused(format!("{dev}: {e}")))?;
    let entry = header.entry.as_str();
    let written = {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut f);
        let n = store
            .write_file(name, entry, &mut w)
            .map_err(|e| refused(format!("writing slot {}: {e}", target.name())))?;
        w.flush()
            .map_err(|e| refused(format!("writing slot {}: {e}", target.name())))?;
        n
    };
    f.sync_all()
        .map_err(|e| refused(format!("syncing {dev}: {e}")))?;
    // Read it back from the device and check it against the signed ids:
    // only a slot holding exactly the signed image is ever selected.
    f.seek(SeekFrom::Start(0))
        .map_err(|e| refused(format!("{dev}: {e}")))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, &mut f);
    match store.check_copy(name, entry, &mut r) {
        Ok(Ok(_)) => {}
        Ok(Err(k)) => {
            return Err(refused(format!(
                "slot {} read back wrong at chunk {k}: the device did not keep what was written; nothing staged",
                target.name()
            )))
        }
        Err(e) => return Err(refused(format!("checking slot {}: {e}", target.name()))),
    }
    let verity = bundle_verity(&store, name, entry, written).map_err(refused)?;
    let s = quilt_slots::file::update(cfg.state.as_str(), |s| {
        quilt_slots::stage(s, target, header.version, cfg.tries)
            .map(|s| s.with_verity(target, verity))
    })
    .map_err(|e| {
        refused(match e {
            UpdateError::NoChange => format!(
                "version {} is not newer than the committed slot's firmware; nothing staged",
                header.version
            ),
            other => format!("{other}; nothing staged"),
        })
    })?;
    event!(
        "event=update-staged slot={} name={} version={} bytes={} ms={} tries={} seq={} verity={}",
        target.name(),
        name,
        header.version,
        written,
        t0.elapsed().as_millis(),
        s.tries_left,
        s.seq,
        verity.map_or("none".into(), |v| quilt_bundle::hex::encode(
            v.root.get(..8).unwrap_or(&[])
        ))
    );
    Ok(vec![Report::Staged {
        name: name.to_owned(),
        version: header.version,
        reboot: cfg.reboot_after_update,
    }])
}

/// The dm-verity root a firmware bundle signs for its root image
/// (`<entry>.verity`, made by `quilt image verity`), checked against the
/// image's `size`; `None` when the bundle carries none (the slot then
/// mounts unchecked).
fn bundle_verity(
    store: &Store,
    name: &str,
    entry: &str,
    size: u64,
) -> Result<Option<Verity>, String> {
    let path = format!("{entry}{}", Verity::SUFFIX);
    let len = store
        .file_size(name, &path)
        .map_err(|e| format!("reading {path}: {e}"))?;
    let Some(len) = len else {
        return Ok(None);
    };
    if len > MAX_VERITY_FILE {
        return Err(format!(
            "{path} is {len} bytes, more than a verity root takes ({MAX_VERITY_FILE}); nothing staged"
        ));
    }
    let mut text = Vec::new();
    store
        .write_file(name, &path, &mut text)
        .map_err(|e| format!("reading {path}: {e}"))?;
    let v = core::str::from_utf8(&text)
        .map_err(|_| format!("{path} is not text; nothing staged"))
        .and_then(|t| Verity::parse(t).map_err(|e| format!("{path}: {e}; nothing staged")))?;
    // The tree follows the data inside the image: at least one block more.
    if v.data_blocks.saturating_add(1).saturating_mul(4096) > size {
        return Err(format!(
            "{path} names {} data blocks, but {entry} holds only {size} bytes with its hash tree; nothing staged",
            v.data_blocks
        ));
    }
    Ok(Some(v))
}

/// A firmware in the store that should be in a slot but is not: the
/// board lost power between installing it and staging it. Resumed at boot
/// (the install was accepted), unless that version already fell back.
pub fn pending(board: &Board, store: &Store) -> Option<String> {
    let cfg = board.cfg.slots.as_ref()?;
    if booted()?.1 {
        return None;
    }
    let (s, _) = quilt_slots::file::read(cfg.state.as_str()).ok()??;
    if s.trying.is_some() {
        return None;
    }
    // Only bundles the board names as firmware: a store written before
    // that rule may hold another bundle declaring the firmware runtime.
    store.installed().iter().find_map(|i| {
        let named = board.firmware.iter().any(|f| f == &i.name);
        let h = store.header(&i.name).ok().filter(|_| named)?;
        (h.runtime == FIRMWARE && h.version > s.primary_version && h.version != s.failed_version)
            .then(|| {
                event!(
                    "event=update-resumed name={} version={} reason=\"in the store, not yet in a slot\"",
                    h.name,
                    h.version
                );
                h.name
            })
    })
}
