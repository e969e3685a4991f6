//! `quilt push`: install a signed bundle on a board through its gateway
//! (`POST /v1/bundles`), the file streamed as it is read with a progress
//! bar, then installed on the board by the same trust-store install as
//! `quilt install` there. For air-gapped boards, `quilt send` does it over
//! a serial line.

use crate::call::{runtime, BoardArgs, REFUSED};
use crate::gateway::hint;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    board: BoardArgs,
    /// The signed bundle (`quilt bundle pack` and `sign`).
    file: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the board's JSON reply instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// `quilt push`.
pub fn run(a: &PushArgs) -> anyhow::Result<ExitCode> {
    let board = a.board.open()?;
    let len = std::fs::metadata(&a.file)
        .with_context(|| format!("{}: cannot read the bundle", a.file.display()))?
        .len();
    let pb = crate::flash::bytes_bar(len, a.quiet, "send");
    let t0 = Instant::now();
    let progress = pb.clone();
    let answer = runtime()?.block_on(board.upload("/v1/bundles", &a.file, move |n| {
        progress.set_position(n);
        if n == len {
            progress.set_message("install");
        }
    }))?;
    pb.finish_and_clear();
    let value: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let field = |k: &str| value.as_ref().and_then(|v| v.get(k)).cloned();
    if a.json {
        match &value {
            Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
            None => println!("{}", String::from_utf8_lossy(&answer.body)),
        }
    }
    if !answer.status.is_success() {
        let code = field("error");
        let code = code.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        let message = field("message");
        let message = message
            .as_ref()
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
        eprintln!(
            "quilt: the board answered {}: {message}{}",
            answer.status,
            hint(code, board.seed())
        );
        return Ok(ExitCode::from(REFUSED));
    }
    if !a.json {
        let s = |k: &str| field(k).map(|v| v.to_string()).unwrap_or_default();
        let secs = t0.elapsed().as_secs_f64();
        if field("already_installed") == Some(serde_json::Value::Bool(true)) {
            println!(
                "{} version {} is already installed on the board (same signed root)",
                s("name").trim_matches('"'),
                s("version")
            );
        } else {
            println!(
                "installed {} version {} on the board ({} chunks, {} new to its store): {len} bytes in {secs:.1} s",
                s("name").trim_matches('"'),
                s("version"),
                s("chunks"),
                s("chunks_written")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
