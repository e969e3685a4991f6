//! `quilt-net`: see the library's docs (`quilt_netup`) and `quilt-net
//! --help`. This file only maps the command line and the outcome to an
//! exit status.

use std::process::ExitCode;

use quilt_netup::cli::{self, Command, USAGE};
use quilt_netup::event;
use quilt_netup::event::quoted;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quilt-net: {e}\n\n{USAGE}");
            event!("event=net-failed error=\"{}\"", quoted(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let (iface, done) = match &cmd {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Dhcp(common) => (
            &common.iface,
            quilt_netup::client::run_dhcp(common).map(|never| match never {}),
        ),
        Command::Static {
            common,
            addr,
            prefix,
            gateway,
            dns,
            once,
        } => (
            &common.iface,
            quilt_netup::client::run_static(common, *addr, *prefix, *gateway, dns, *once),
        ),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            event!(
                "event=net-failed iface={iface} error=\"{}\"",
                quoted(&e.to_string())
            );
            ExitCode::from(1)
        }
    }
}
