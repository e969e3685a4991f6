//! `quilt config …`: the boot configuration read by quilt-init.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Compile a TOML boot config into the binary form quilt-init reads
    /// (`/etc/quilt/boot.bin`). Fails, naming the line, on unknown keys,
    /// wrong types, names over capacity, unknown or cyclic `after`s.
    Compile {
        /// The TOML source (see docs/boot-config.md).
        src: PathBuf,
        /// Where to write the binary config.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a TOML or compiled config and print the service start order.
    Check {
        /// A `.toml` source or a compiled `.bin`.
        file: PathBuf,
    },
}

pub fn run(cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Compile { src, out } => {
            let bin = compile_file(&src)?;
            std::fs::write(&out, &bin).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({} bytes)", out.display(), bin.len());
        }
        ConfigCmd::Check { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let bin = if bytes.starts_with(&quilt_config::MAGIC) {
                bytes
            } else {
                compile_file(&file)?
            };
            let cfg = quilt_config::decode(&bin)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let order = quilt_config::start_order(&cfg)?;
            let names: Vec<&str> = order
                .iter()
                .filter_map(|&i| cfg.services.get(usize::from(i)))
                .map(|s| s.name.as_str())
                .collect();
            println!(
                "ok: {} services; start order: {}",
                names.len(),
                names.join(" -> ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compile_file(src: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    quilt_config::compile(&text).map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))
}
