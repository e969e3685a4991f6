//! `quilt bundle …`: pack a TypeScript tool into a `.qb`, sign it, verify it
//! against a trust dir, inspect it, diff two versions, benchmark verification.

mod bench;
mod diff;
mod inspect;
pub(crate) mod pack;

use anyhow::Context as _;
use clap::Subcommand;
use quilt_bundle::{BundleReader, Context, CHUNK_MAX};
use quilt_store::io::ReadSource;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Pack a tool directory into an unsigned bundle.
    ///
    /// DIR/quilt.toml must hold `name` (e.g. "agents/weather"), `version`
    /// (an integer that grows with every release) and `entry` (the script Bun
    /// runs, relative to DIR). Optional: runtime (default "bun"), arch and
    /// boards (default: any), tokens (default: none; see docs/containers.md:
    /// "userns", "cap:net_bind_service", "write:data", ...), not_before /
    /// expires (UNIX seconds), exclude (paths to leave out; .git always is),
    /// [limits] memory_mib=128 cpu_percent=100 tasks=64 open_files=256
    /// io_mib_s=0 io_iops=0 (0 = no io.max cap).
    ///
    /// Every file, directory and symlink under DIR goes in; device nodes,
    /// fifos, sockets, setuid/setgid/sticky files, symlinks leaving DIR and
    /// names that are not UTF-8 are refused. Packing the same tree twice
    /// gives the same bytes.
    #[command(verbatim_doc_comment)]
    Pack {
        /// The tool directory (holds quilt.toml).
        dir: PathBuf,
        /// Where to write the bundle, e.g. weather.qb.
        #[arg(long, value_name = "FILE.qb")]
        out: PathBuf,
    },
    /// Add one signature to a bundle, in place (run once per signer).
    ///
    /// The bundle's content is checked against its root before signing.
    /// The key file must not be readable by group or others.
    #[command(verbatim_doc_comment)]
    Sign {
        /// The bundle to sign.
        file: PathBuf,
        /// Secret key from `quilt key gen` (BASE.key).
        #[arg(long, value_name = "BASE.key")]
        key: PathBuf,
    },
    /// Check that a bundle is intact and signed as the trust policy requires.
    ///
    /// Exit status 0 only when every check passes; otherwise non-zero with
    /// one line naming the failed check. DIR holds trusted *.pub files and an
    /// optional `policy` file (default: 1 signature); see docs/trust.md.
    /// Checks, in order: header and every signature, threshold for the
    /// bundle's name, compatibility, validity window (host clock unless
    /// --no-clock), manifest and root, every chunk, nothing after the end.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The bundle to check.
        file: PathBuf,
        /// Trust dir: *.pub keys and optional `policy`.
        #[arg(long, value_name = "DIR")]
        trust: PathBuf,
        /// Check the bundle suits this architecture (e.g. aarch64).
        #[arg(long)]
        arch: Option<String>,
        /// Check the bundle suits this board.
        #[arg(long)]
        board: Option<String>,
        /// Check validity at this UNIX time instead of the host clock.
        #[arg(long, conflicts_with = "no_clock")]
        now: Option<u64>,
        /// Skip not_before/expires, as a board without a clock does.
        #[arg(long)]
        no_clock: bool,
    },
    /// Show a bundle's header, signatures and files (does not check trust).
    ///
    /// Content is still checked against the root; a broken bundle is shown
    /// as far as it reads and the command fails.
    #[command(verbatim_doc_comment)]
    Inspect {
        /// The bundle to show.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare two bundles: shared chunks and the bytes a board holding OLD
    /// must fetch to install NEW.
    Diff {
        /// The bundle the board has.
        old: PathBuf,
        /// The bundle to install.
        new: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark bundle verification against `openssl dgst -sha3-256`, and
    /// measure dedup for a one-file change (see docs/bench-bundle.md).
    Bench(bench::BenchArgs),
}

pub fn run(cmd: BundleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCmd::Pack { dir, out } => pack::pack(&dir, &out),
        BundleCmd::Sign { file, key } => pack::sign(&file, &key),
        BundleCmd::Verify {
            file,
            trust,
            arch,
            board,
            now,
            no_clock,
        } => {
            let now = if no_clock {
                None
            } else {
                Some(now.unwrap_or_else(host_now))
            };
            let ctx = Context {
                now,
                arch: arch.as_deref(),
                board: board.as_deref(),
                firmware: None,
            };
            verify(&file, &trust, &ctx)
        }
        BundleCmd::Inspect { file, json } => inspect::inspect(&file, json),
        BundleCmd::Diff { old, new, json } => diff::diff(&old, &new, json),
        BundleCmd::Bench(args) => bench::run(&args),
    }
}

fn host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Replaces `path` with `bytes` via a temp file, fsync and rename.
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    pack::write_replace(path, &mut |f| f.write_all(bytes))
}

/// Read buffer for bundle files. Chunks are at least 16 KiB (but for small
/// files' tails), and `BufReader` hands reads at least this large straight
/// to the file, so chunk bytes land in the reader's chunk buffer with no
/// extra copy; the header's small reads are still buffered.
pub(crate) const READ_BUF: usize = 16 * 1024;

/// Opens a file as a bundle byte source.
pub(crate) fn source(path: &Path) -> anyhow::Result<ReadSource<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(ReadSource::new(BufReader::with_capacity(READ_BUF, f)))
}

/// Turns a format error into a one-line error naming the file, keeping the
/// I/O error when the source failed.
pub(crate) fn fail<R>(path: &Path, src: &ReadSource<R>, e: quilt_bundle::Error) -> anyhow::Error {
    match (&e, &src.error) {
        (quilt_bundle::Error::Source, Some(io)) => {
            anyhow::anyhow!("{}: reading failed: {io}", path.display())
        }
        _ => anyhow::anyhow!("{}: {e}", path.display()),
    }
}

fn verify(file: &Path, trust_dir: &Path, ctx: &Context<'_>) -> anyhow::Result<ExitCode> {
    let trust = quilt_store::trustdir::load(trust_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut src = source(file)?;
    let (header, signers) = {
        let result = BundleReader::open(&mut src, &trust, ctx).and_then(|mut r| {
            let mut buf = vec![0u8; CHUNK_MAX as usize];
            r.verify_rest(&mut buf)?;
            let signers = r
                .envelope()
                .sigs
                .iter()
                .filter(|s| trust.keys.contains(&s.key))
                .count();
            Ok((r.header().clone(), signers))
        });
        match result {
            Ok(v) => v,
            Err(e) => return Err(fail(file, &src, e)),
        }
    };
    println!(
        "ok: {} version {} root {}: intact, {} trusted signature(s), policy needs {}",
        header.name,
        header.version,
        header.root,
        signers,
        trust.policy.threshold_for(&header.name)
    );
    Ok(ExitCode::SUCCESS)
}
