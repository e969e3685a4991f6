//! `quilt call`: one signed request to a board's gateway (`quiltd`),
//! pinned and signed by [`crate::gateway`]; its JSON reply printed.

use crate::gateway::{hint, Board};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when the board answered with an error.
pub const REFUSED: u8 = 3;

/// Where the board is and who asks: what every gateway command takes.
#[derive(Args, Clone)]
pub struct BoardArgs {
    /// The gateway, e.g. https://127.0.0.1:8443.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "serial",
        conflicts_with = "serial"
    )]
    pub board: Option<String>,
    /// Or the serial line to a board whose quiltd runs with --serial (a
    /// tty such as /dev/ttyUSB0, or QEMU's chardev socket): the same TLS,
    /// pin and signatures, one request at a time.
    #[arg(long, value_name = "DEVICE", required_unless_present = "board")]
    pub serial: Option<PathBuf>,
    /// The serial line's rate.
    #[arg(long, default_value_t = 115_200, requires = "serial")]
    pub baud: u32,
    /// Client secret key (BASE.key from `quilt key gen --client`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The board key's fingerprint (`quiltd identity` on the board).
    #[arg(long, value_name = "FINGERPRINT")]
    pub board_key: String,
}

impl BoardArgs {
    /// The board these name.
    pub fn open(&self) -> anyhow::Result<Board> {
        match (&self.board, &self.serial) {
            (_, Some(line)) => Board::serial(line, self.baud, &self.key, &self.board_key),
            (Some(url), None) => Board::new(url, &self.key, &self.board_key),
            (None, None) => anyhow::bail!("say where the board is: --board URL or --serial DEVICE"),
        }
    }
}

#[derive(Args)]
pub struct CallArgs {
    #[command(flatten)]
    board: BoardArgs,
    /// GET, POST, …
    method: String,
    /// Path and query, e.g. /v1/bundles or /v1/tools/hello/run?tool=greet.
    path: String,
    /// JSON request body (`@FILE` reads a file).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
}

/// A current-thread runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `quilt call`.
pub fn run(a: &CallArgs) -> anyhow::Result<ExitCode> {
    let board = a.board.open()?;
    let body: Vec<u8> = match &a.data {
        None => Vec::new(),
        Some(d) => {
            let raw = match d.strip_prefix('@') {
                Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
                None => d.as_bytes().to_vec(),
            };
            serde_json::from_slice::<serde_json::Value>(&raw).context("--data is not JSON")?;
            raw
        }
    };
    let method = a.method.to_ascii_uppercase();
    let answer = runtime()?.block_on(board.request(&method, &a.path, body, &[]))?;
    let value: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    match &value {
        Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
        None => println!("{}", String::from_utf8_lossy(&answer.body)),
    }
    if answer.status.is_success() {
        return Ok(ExitCode::SUCCESS);
    }
    let code = value
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    eprintln!(
        "quilt: the board answered {}{}",
        answer.status,
        hint(code, board.seed())
    );
    Ok(ExitCode::from(REFUSED))
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    board: BoardArgs,
    /// Lifetime in seconds (at most 3600).
    #[arg(long, default_value_t = 600)]
    ttl: i64,
}

/// `quilt token`: a short-lived bearer token for the board's `/mcp`,
/// minted by a signed request; the token alone on stdout.
pub fn token(a: &TokenArgs) -> anyhow::Result<ExitCode> {
    let board = a.board.open()?;
    let body = serde_json::to_vec(&serde_json::json!({ "ttl_s": a.ttl }))?;
    let answer = runtime()?.block_on(board.request("POST", "/v1/tokens", body, &[]))?;
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if !answer.status.is_success() {
        let code = value.get("error").and_then(|v| v.as_str()).unwrap_or("");
        let message = value.get("message").and_then(|v| v.as_str()).unwrap_or("");
        eprintln!(
            "quilt: the board answered {}: {message}{}",
            answer.status,
            hint(code, board.seed())
        );
        return Ok(ExitCode::from(REFUSED));
    }
    let token = value
        .get("token")
        .and_then(|v| v.as_str())
        .context("the board's reply has no token")?;
    println!("{token}");
    eprintln!(
        "quilt: bearer token for {} ({}), valid on /mcp until {} (UNIX time)",
        value.get("client").and_then(|v| v.as_str()).unwrap_or("?"),
        value.get("role").and_then(|v| v.as_str()).unwrap_or("?"),
        value
            .get("expires_at")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    );
    Ok(ExitCode::SUCCESS)
}
