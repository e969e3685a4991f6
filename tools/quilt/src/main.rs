//! `quilt`: the host-side command line for Quilt boards.
//!
//! Each subcommand lives in its own module; this file only wires them up.

mod bundle;
mod config_cmd;
mod image_cmd;
mod key;

use clap::{Parser, Subcommand};

/// Make keys, pack and sign bundles, compile boot configs and build images
/// for boards running quilt-init.
#[derive(Parser)]
#[command(name = "quilt", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make and inspect ed25519 signing keys.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Pack, sign, verify, inspect and diff bundles (.qb).
    #[command(subcommand)]
    Bundle(bundle::BundleCmd),
    /// Compile and check the boot configuration read by quilt-init.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Assemble bootable images (initramfs for QEMU and boards).
    #[command(subcommand)]
    Image(image_cmd::ImageCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Key(c) => key::run(c),
        Cmd::Bundle(c) => bundle::run(c),
        Cmd::Config(c) => config_cmd::run(c),
        Cmd::Image(c) => image_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quilt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
