//! `quilt bundle …`: bundles. (Filled in by the bundle work, issue 3.)

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BundleCmd {}

pub fn run(cmd: BundleCmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
