//! `quilt-install`: every install on a Quilt board, out of PID 1.
//!
//! quilt-init starts one per job, in a cgroup of its own with a memory
//! limit and a deadline, and reads what it did: event lines on stdout and
//! reports on fd 3 (`quilt_proto::installer`). A crash, hang or OOM here
//! is a failed install, never a stuck board. The serial receiver runs the
//! same binary as a service.
//!
//! ```text
//! quilt-install --config BOOT.bin boot          image bundles, every tree, stranded firmware
//! quilt-install --config BOOT.bin file PATH     one bundle from a file on the board
//! quilt-install --config BOOT.bin fd            one bundle from stdin (a file or memfd)
//! quilt-install --config BOOT.bin remove NAME   remove a bundle
//! quilt-install --config BOOT.bin usb DEV [disk]  a USB stick's bundles
//! quilt-install --config BOOT.bin stage NAME    firmware to the other slot
//! quilt-install --config BOOT.bin serial        the [update] port's receiver (a service)
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod board;
mod catalog;
mod jobs;
mod lock;
mod out;
mod reason;
mod sandbox;
mod serial;
mod stage;
mod usb;

use quilt_proto::installer::Report;
use std::process::ExitCode;

const USAGE: &str = "usage: quilt-install --config BOOT.bin (boot | file PATH | fd | remove NAME | usb DEV [disk] | stage NAME | serial)\n\
quilt-init starts this for every install; it is not meant to be run by hand.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, job) = match args.as_slice() {
        [flag, path, rest @ ..] if flag == "--config" && !rest.is_empty() => (path.as_str(), rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sandbox::enter() {
        event!("event=installer-sandbox-failed error=\"{}\"", e);
        return ExitCode::from(1);
    }
    let board = match board::Board::load(config) {
        Ok(b) => b,
        Err(r) => return refuse(r),
    };
    let done = match job
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["boot"] => jobs::boot(&board),
        ["file", path] => jobs::file(&board, path),
        ["fd"] => jobs::fd(&board),
        ["remove", name] => jobs::remove(&board, name),
        ["usb", dev] => usb::stick(&board, dev, false),
        ["usb", dev, "disk"] => usb::stick(&board, dev, true),
        ["stage", name] => stage::stage(&board, name),
        ["serial"] => return serial::run(&board),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if job.first().is_some_and(|j| j != "stage") {
        out::store_usage(std::path::Path::new(board.cfg.bundles.store.as_str()));
    }
    match done {
        Ok(reports) => {
            for r in &reports {
                out::report(r);
            }
            ExitCode::SUCCESS
        }
        Err(r) => refuse(r),
    }
}

fn refuse(r: board::Refusal) -> ExitCode {
    out::report(&Report::Refused {
        code: r.code,
        reason: r.reason,
        message: r.message,
    });
    ExitCode::from(1)
}
