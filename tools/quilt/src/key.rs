//! `quilt key …`: signing keys. (Filled in by the bundle work, issue 3.)

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyCmd {}

pub fn run(cmd: KeyCmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
