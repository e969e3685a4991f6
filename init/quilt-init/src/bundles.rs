//! Signed bundles at boot: every `.qb` shipped in the image is offered to
//! the store, which installs only what the trust store accepts (signatures,
//! threshold, architecture, board, version); each installed bundle is then
//! written out as a read-only tree for its containers. A refused bundle is
//! logged with the reason and nothing of it runs.
//!
//! Trees are named by [`quilt_store::paths::tree`] (name and version), at
//! boot and after installs alike, so two names never share one; a tree
//! that exists is never rewritten, since containers may be running from
//! it (a re-offer of an installed bundle touches nothing).

use crate::event;
use quilt_bundle::{Context, Header};
use quilt_config::BootConfig;
use quilt_store::Store;
use std::path::{Path, PathBuf};

/// Where installed bundles are written out for containers.
pub const TREES: &str = "/run/quilt/bundles";
/// The runtime of a firmware bundle: its entry is a root image for the
/// other A/B slot, not a tool.
pub const FIRMWARE: &str = "firmware";
/// Most `.qb` files looked at in the image directory.
const MAX_FILES: usize = 64;

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
    /// The store, for installs and removals while running.
    pub store: Store,
    /// The board name checked against a bundle's `boards`.
    board: Option<String>,
    /// The bundle names the board takes as firmware (`[slots] firmware`).
    firmware: Vec<String>,
}

impl Tools {
    /// The installed bundle `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.header.name == name)
    }

    /// Install the `.qb` at `path` through the trust store (as at boot)
    /// and write its tree out; a new version replaces the old one for
    /// containers started from now on.
    pub fn install(&mut self, path: &Path) -> Result<quilt_proto::Reply, String> {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        self.install_from(f, &path.display().to_string())
    }

    /// [`Tools::install`] from an open fd a client passed: a regular file
    /// or a memfd only, whose reads cannot stall PID 1 as a pipe's could.
    pub fn install_fd(&mut self, fd: rustix::fd::OwnedFd) -> Result<quilt_proto::Reply, String> {
        let st = rustix::fs::fstat(&fd).map_err(|e| format!("fstat on the passed fd: {e}"))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(
                "the passed fd is not a regular file or memfd (a pipe or socket could stall PID 1); `quilt install -` spools a stream into a memfd first"
                    .into(),
            );
        }
        // From the start, whatever the client's offset was.
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0))
            .map_err(|e| format!("seek on the passed fd: {e}"))?;
        self.install_from(std::fs::File::from(fd), "(passed fd)")
    }

    fn install_from(
        &mut self,
        f: std::fs::File,
        label: &str,
    ) -> Result<quilt_proto::Reply, String> {
        let (store, ctx) = self.store_and_context();
        let r = store
            .install(std::io::BufReader::new(f), &ctx, None)
            .map_err(|e| {
                event!("event=bundle-refused file={} reason=\"{}\"", label, e);
                e.to_string()
            })?;
        if r.already_installed {
            return Ok(quilt_proto::Reply::Installed {
                name: r.name,
                version: r.version,
                chunks: r.chunks,
                chunks_written: 0,
                already_installed: true,
            });
        }
        event!(
            "event=bundle-installed name={} version={} chunks={} chunks_written={} file={}",
            r.name,
            r.version,
            r.chunks,
            r.chunks_written,
            label
        );
        self.refresh(&r.name)?;
        Ok(quilt_proto::Reply::Installed {
            name: r.name,
            version: r.version,
            chunks: r.chunks,
            chunks_written: r.chunks_written,
            already_installed: r.already_installed,
        })
    }

    /// After an install of `name` (a file, a stick, the serial link):
    /// write its tree out and run the new version from now on. A tree per
    /// version: containers still running keep theirs, and a tree that is
    /// already there (this version was written out before) is left as it
    /// is, never emptied and rewritten under a running container.
    pub fn refresh(&mut self, name: &str) -> Result<(), String> {
        let header = self.store.header(name).map_err(|e| e.to_string())?;
        // A root image is not run: it goes to a slot (crate::slots).
        if header.runtime == FIRMWARE {
            return Ok(());
        }
        let tree = quilt_store::paths::tree(Path::new(TREES), name, header.version);
        if !tree.is_dir() {
            self.store
                .materialize(name, &tree)
                .map_err(|e| format!("installed, but writing its tree failed: {e}"))?;
        }
        self.tools.retain(|t| t.header.name != name);
        self.tools.push(Tool { header, tree });
        Ok(())
    }

    /// The store, and the device context installs into it are checked
    /// against (board, firmware names, clock), borrowed together.
    pub fn store_and_context(&mut self) -> (&mut Store, Context<'_>) {
        let ctx = device_context(self.board.as_deref(), &self.firmware);
        (&mut self.store, ctx)
    }

    /// Whether `name` is one of the board's firmware bundles.
    pub fn is_firmware(&self, name: &str) -> bool {
        self.firmware.iter().any(|f| f == name)
    }

    /// Remove bundle `name` from the store (the caller checked nothing
    /// runs it).
    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        self.store.remove(name).map_err(|e| e.to_string())?;
        if let Some(t) = self.tools.iter().find(|t| t.header.name == name) {
            let _ = std::fs::remove_dir_all(&t.tree);
        }
        self.tools.retain(|t| t.header.name != name);
        event!("event=bundle-removed name={}", name);
        Ok(())
    }

    /// What `quilt bundles` shows.
    pub fn describe(&self) -> quilt_proto::Reply {
        let trust = self.store.trust();
        // Runnable bundles, then what is installed but not run (firmware).
        let others: Vec<Header> = self
            .store
            .installed()
            .iter()
            .filter(|i| self.get(&i.name).is_none())
            .filter_map(|i| self.store.header(&i.name).ok())
            .collect();
        quilt_proto::Reply::Bundles {
            bundles: self
                .tools
                .iter()
                .map(|t| &t.header)
                .chain(others.iter())
                .map(|h| quilt_proto::BundleInfo {
                    name: h.name.clone(),
                    version: h.version,
                    root: h.root.to_string(),
                    tokens: h.tokens.clone(),
                    files: h.files,
                    total_size: h.total_size,
                })
                .collect(),
            keys: trust.keys.iter().map(|k| k.to_hex()).collect(),
            policy: trust.policy.to_text(),
        }
    }
}

/// What an install is checked against: this board's clock (when it has
/// one), architecture, name and firmware bundle names.
pub fn device_context<'a>(board: Option<&'a str>, firmware: &'a [String]) -> Context<'a> {
    Context {
        now: now_secs(),
        arch: Some(std::env::consts::ARCH),
        board,
        firmware: Some(firmware),
    }
}

/// The device clock for validity windows, when it has one.
fn now_secs() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    u64::try_from(t.tv_sec).ok()
}

/// Install the image's bundles and materialize every installed one.
pub fn bring_up(boot: &BootConfig) -> Option<Tools> {
    let cfg = &boot.bundles;
    let firmware: Vec<String> = boot
        .slots
        .iter()
        .flat_map(|s| s.firmware.iter().map(|n| n.to_string()))
        .collect();
    let trust = match quilt_store::trustdir::load(Path::new(cfg.trust.as_str())) {
        Ok(t) => t,
        Err(e) => {
            if Path::new(cfg.dir.as_str()).exists() {
                event!(
                    "event=trust-unavailable dir={} error=\"{}\" effect=no-bundle-runs",
                    cfg.trust,
                    e
                );
            }
            return None;
        }
    };
    let _ = std::fs::create_dir_all(cfg.store.as_str());
    let mut store = match Store::open(Path::new(cfg.store.as_str()), trust) {
        Ok(s) => s,
        Err(e) => {
            event!("event=store-unavailable dir={} error=\"{}\"", cfg.store, e);
            return None;
        }
    };
    let ctx = device_context(cfg.board.as_deref(), &firmware);
    for file in image_bundles(Path::new(cfg.dir.as_str())) {
        let shown = file.display();
        match std::fs::File::open(&file) {
            Ok(f) => match store.install(std::io::BufReader::new(f), &ctx, None) {
                Ok(r) => event!(
                    "event=bundle-installed name={} version={} chunks={} chunks_written={} file={}",
                    r.name,
                    r.version,
                    r.chunks,
                    r.chunks_written,
                    shown
                ),
                Err(e) => event!("event=bundle-refused file={} reason=\"{}\"", shown, e),
            },
            Err(e) => event!(
                "event=bundle-refused file={} reason=\"cannot open: {}\"",
                shown,
                e
            ),
        }
    }
    let _ = std::fs::create_dir_all(TREES);
    let mut tools = Vec::new();
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
        match store.materialize(&name, &tree) {
            Ok(()) => tools.push(Tool { header, tree }),
            Err(e) => event!("event=bundle-unreadable name={} error=\"{}\"", name, e),
        }
    }
    Some(Tools {
        tools,
        runtime: PathBuf::from(cfg.runtime.as_str()),
        store,
        board: cfg.board.as_ref().map(|b| b.to_string()),
        firmware,
    })
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
