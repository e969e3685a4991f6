//! `quilt fsck [--repair]` on the board: re-hash the bundle store in this
//! process, never in PID 1 (a whole-store hash is bulk I/O that would stall
//! its event loop and its watchdog). It reads the store quilt-init owns
//! without taking part in installs: `--repair` only removes chunk files
//! whose bytes do not match their name, and quilt-init sees a bundle that
//! lost a chunk as not installed whole, so its next offer fetches the
//! chunk again (docs/trust.md, "Repairing a store").

use anyhow::Context as _;
use quilt_store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where quilt-init reads its boot config on the board.
const BOOT_CONFIG: &str = "/etc/quilt/boot.bin";

#[derive(clap::Args, Debug)]
pub struct FsckArgs {
    /// Drop damaged chunks, so that the next offer of each bundle that
    /// needs them fetches them again.
    #[arg(long)]
    repair: bool,
    /// JSON instead of lines.
    #[arg(long)]
    json: bool,
    /// The store (default: the boot config's `[bundles] store`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The trust dir (default: the boot config's `[bundles] trust`).
    #[arg(long)]
    trust: Option<PathBuf>,
    /// The compiled boot config the defaults come from.
    #[arg(long, default_value = BOOT_CONFIG)]
    config: PathBuf,
}

/// What one run found and did, as `--json` prints it.
#[derive(serde::Serialize)]
struct Report {
    bundles_checked: usize,
    chunks_checked: usize,
    problems: Vec<String>,
    chunks_dropped: usize,
    damaged: Vec<String>,
}

pub fn run(a: &FsckArgs) -> anyhow::Result<ExitCode> {
    let (store_dir, trust_dir) = paths(a)?;
    let trust = quilt_store::trustdir::load(&trust_dir)
        .with_context(|| format!("loading the trust dir {}", trust_dir.display()))?;
    let mut store = Store::open_to_check(&store_dir, trust).with_context(|| {
        format!(
            "opening the store {} (is this the board, and has it installed anything?)",
            store_dir.display()
        )
    })?;
    let found = store.fsck()?;
    let mut r = Report {
        bundles_checked: found.bundles_checked,
        chunks_checked: found.chunks_checked,
        problems: found.problems.iter().map(|p| p.to_string()).collect(),
        chunks_dropped: 0,
        damaged: Vec::new(),
    };
    if a.repair {
        let done = store.repair()?;
        r.chunks_dropped = done.chunks_dropped;
        r.damaged = done.damaged;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r, a.repair);
    }
    let sound = r.problems.is_empty() || a.repair;
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(r: &Report, repair: bool) {
    println!(
        "checked {} bundle(s), {} chunk(s): {} problem(s)",
        r.bundles_checked,
        r.chunks_checked,
        r.problems.len()
    );
    for p in &r.problems {
        println!("  {p}");
    }
    if repair {
        println!("dropped {} damaged chunk(s)", r.chunks_dropped);
        for d in &r.damaged {
            println!("offer again: {d} (quilt install FILE, a USB stick, or quilt send)");
        }
    } else if !r.problems.is_empty() {
        println!("run `quilt fsck --repair`, then offer the damaged bundles again");
    }
}

/// The store and trust dirs: given, else the boot config's, else the
/// defaults quilt-init uses.
fn paths(a: &FsckArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cfg = match std::fs::read(&a.config) {
        Ok(bytes) => Some(
            quilt_config::decode(&bytes)
                .with_context(|| format!("reading the boot config {}", a.config.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", a.config.display()));
        }
    };
    let from_cfg = |f: fn(&quilt_config::Bundles) -> &str, fallback: &str| {
        cfg.as_ref().map_or_else(
            || Path::new(fallback).to_path_buf(),
            |c| PathBuf::from(f(&c.bundles)),
        )
    };
    Ok((
        a.store
            .clone()
            .unwrap_or_else(|| from_cfg(|b| b.store.as_str(), "/var/lib/quilt/store")),
        a.trust
            .clone()
            .unwrap_or_else(|| from_cfg(|b| b.trust.as_str(), "/etc/quilt/trust")),
    ))
}
