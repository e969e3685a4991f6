//! Installs from a file or a passed fd, removals, and the boot job: each
//! through the store's full checks, with the installed bundle's tree
//! written out and the catalog rewritten for PID 1.
//!
//! Trees are named by [`quilt_store::paths::tree`] (name and version), so
//! two names never share one; a tree that exists is never rewritten, since
//! containers may be running from it (a re-offer touches nothing).

use crate::board::{Board, Refusal};
use crate::catalog::{self, FIRMWARE, TREES};
use crate::{event, out, stage};
use quilt_proto::installer::Report;
use quilt_proto::ErrorCode;
use quilt_store::Store;
use std::path::{Path, PathBuf};

/// Most `.qb` files looked at in the image directory.
const MAX_FILES: usize = 64;

/// Install one bundle from `input` (`label` names it in events) and write
/// its tree out.
pub fn install_from(
    board: &Board,
    store: &mut Store,
    input: impl std::io::Read,
    label: &str,
) -> Result<Report, Refusal> {
    let ctx = board.context();
    let r = store
        .install(std::io::BufReader::new(input), &ctx, None)
        .map_err(|e| {
            event!(
                "event=bundle-refused file={} reason=\"{}\"",
                label,
                out::unquoted(&e.to_string())
            );
            Refusal::store(ErrorCode::Failed, &e)
        })?;
    if !r.already_installed {
        event!(
            "event=bundle-installed name={} version={} chunks={} chunks_written={} file={}",
            r.name,
            r.version,
            r.chunks,
            r.chunks_written,
            label
        );
        write_tree(store, &r.name)?;
    }
    Ok(Report::Installed {
        name: r.name,
        version: r.version,
        chunks: r.chunks,
        chunks_written: r.chunks_written,
        already_installed: r.already_installed,
    })
}

/// Write bundle `name`'s tree out unless it is there already (a tree per
/// version: containers still running keep theirs).
pub fn write_tree(store: &Store, name: &str) -> Result<(), Refusal> {
    let header = store
        .header(name)
        .map_err(|e| Refusal::failed(e.to_string()))?;
    if header.runtime == FIRMWARE {
        return Ok(());
    }
    let tree = quilt_store::paths::tree(Path::new(TREES), name, header.version);
    if !tree.is_dir() {
        store
            .materialize(name, &tree)
            .map_err(|e| Refusal::failed(format!("installed, but writing its tree failed: {e}")))?;
    }
    Ok(())
}

/// `quilt install PATH`.
pub fn file(board: &Board, path: &str) -> Result<Vec<Report>, Refusal> {
    let (mut store, _lock) = board.store()?;
    let f = std::fs::File::open(path)
        .map_err(|e| Refusal::failed(format!("cannot open {path}: {e}")))?;
    let r = install_from(board, &mut store, f, path)?;
    catalog::write(&store);
    Ok(vec![r])
}

/// `quilt install -`: the bundle is this process's stdin, the fd the
/// client passed: a regular file or a memfd only.
pub fn fd(board: &Board) -> Result<Vec<Report>, Refusal> {
    let stdin = rustix::stdio::stdin();
    let st = rustix::fs::fstat(stdin)
        .map_err(|e| Refusal::failed(format!("fstat on the passed fd: {e}")))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Refusal::failed(
            "the passed fd is not a regular file or memfd (a pipe or socket could stall the install); `quilt install -` spools a stream into a memfd first",
        ));
    }
    // From the start, whatever the client's offset was.
    rustix::fs::seek(stdin, rustix::fs::SeekFrom::Start(0))
        .map_err(|e| Refusal::failed(format!("seek on the passed fd: {e}")))?;
    let dup = rustix::io::fcntl_dupfd_cloexec(stdin, 3)
        .map_err(|e| Refusal::failed(format!("dup of the passed fd: {e}")))?;
    let (mut store, _lock) = board.store()?;
    let r = install_from(board, &mut store, std::fs::File::from(dup), "(passed fd)")?;
    catalog::write(&store);
    Ok(vec![r])
}

/// `quilt remove NAME` (PID 1 checked nothing runs it).
pub fn remove(board: &Board, name: &str) -> Result<Vec<Report>, Refusal> {
    let (mut store, _lock) = board.store()?;
    let version = store.get(name).map(|i| i.version);
    store
        .remove(name)
        .map_err(|e| Refusal::store(ErrorCode::NotFound, &e))?;
    if let Some(v) = version {
        let _ = std::fs::remove_dir_all(quilt_store::paths::tree(Path::new(TREES), name, v));
    }
    event!("event=bundle-removed name={}", name);
    catalog::write(&store);
    Ok(vec![Report::Removed {
        name: name.to_owned(),
    }])
}

/// At boot: offer every `.qb` of the image to the store, write every
/// installed bundle's tree, and name firmware stranded between install and
/// staging.
pub fn boot(board: &Board) -> Result<Vec<Report>, Refusal> {
    let cfg = &board.cfg.bundles;
    let (mut store, _lock) = match board.store() {
        Ok(s) => s,
        Err(r) => {
            if Path::new(cfg.dir.as_str()).exists() {
                event!(
                    "event=trust-unavailable dir={} error=\"{}\" effect=no-bundle-runs",
                    cfg.trust,
                    out::unquoted(&r.message)
                );
            }
            return Err(r);
        }
    };
    for file in image_bundles(Path::new(cfg.dir.as_str())) {
        let shown = file.display().to_string();
        match std::fs::File::open(&file) {
            // Refusals are logged by install_from.
            Ok(f) => {
                if let Ok(Report::Installed {
                    name,
                    version,
                    chunks,
                    chunks_written,
                    already_installed: true,
                }) = install_from(board, &mut store, f, &shown)
                {
                    event!(
                        "event=bundle-installed name={} version={} chunks={} chunks_written={} file={}",
                        name,
                        version,
                        chunks,
                        chunks_written,
                        shown
                    )
                }
            }
            Err(e) => event!(
                "event=bundle-refused file={} reason=\"cannot open: {}\"",
                shown,
                e
            ),
        }
    }
    let _ = std::fs::create_dir_all(TREES);
    let names: Vec<String> = store.installed().iter().map(|i| i.name.clone()).collect();
    for name in names {
        let header = match store.header(&name) {
            Ok(h) => h,
            Err(e) => {
                event!("event=bundle-unreadable name={} error=\"{}\"", name, e);
                continue;
            }
        };
        if header.runtime == FIRMWARE {
            continue;
        }
        // /run is new at every boot; a leftover is from this boot's stage 1.
        let tree = quilt_store::paths::tree(Path::new(TREES), &name, header.version);
        let _ = std::fs::remove_dir_all(&tree);
        if let Err(e) = store.materialize(&name, &tree) {
            event!("event=bundle-unreadable name={} error=\"{}\"", name, e);
        }
    }
    catalog::write(&store);
    Ok(stage::pending(board, &store)
        .map(|name| Report::Pending { name })
        .into_iter()
        .collect())
}

/// The `.qb` files of the image directory, sorted, at most [`MAX_FILES`].
fn image_bundles(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "qb"))
        .take(MAX_FILES)
        .collect();
    v.sort();
    v
}
