//! `quilt`: the host-side command line for Quilt boards.
//!
//! Each subcommand lives in its own module; this file only wires them up.

mod bundle;
mod config_cmd;
mod ctl;
mod image_cmd;
mod key;
mod send;

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
    // Help text: the doc comment on `send::SendArgs`.
    Send(send::SendArgs),
    /// Run an installed bundle once in a fresh container on this board and
    /// print its result; exits with the tool's status (3: refused).
    Run {
        /// Installed bundle name.
        bundle: String,
        /// File fed to the tool on stdin (`-`: this stdin).
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Kill the tool after this many milliseconds (0: the board's default, 30 s).
        #[arg(long, default_value_t = 0)]
        timeout_ms: u32,
        /// Print status, output and timing as one JSON object.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// List the board's services with state, restarts, uptime and memory.
    Ps {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
    /// Check that quilt-init answers, and its version.
    Ping {
        /// quilt-init's control socket.
        #[arg(long, default_value = "/run/quilt/control.sock")]
        socket: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Key(c) => key::run(c),
        Cmd::Bundle(c) => bundle::run(c),
        Cmd::Config(c) => config_cmd::run(c),
        Cmd::Image(c) => image_cmd::run(c),
        Cmd::Send(a) => send::run(&a),
        Cmd::Run {
            bundle,
            input,
            timeout_ms,
            json,
            socket,
        } => ctl::run(&socket, &bundle, input.as_ref(), timeout_ms, json),
        Cmd::Ps { json, socket } => ctl::ps(&socket, json),
        Cmd::Ping { socket } => ctl::ping(&socket),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quilt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
