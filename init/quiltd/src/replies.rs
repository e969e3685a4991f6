//! The API's JSON bodies as types: what the handlers return and what the
//! OpenAPI document (crate::openapi) describes come from one definition
//! each, so the document cannot drift from the wire.

use quilt_proto::{RunResult, ServiceInfo, SlotsInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Bytes of a tool's stderr tail returned.
pub const STDERR_TAIL: usize = 4096;

/// Every error: a stable code and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReply {
    /// The stable reason code (e.g. `unknown-key`, `stale`, `too-large`).
    pub error: String,
    /// What happened, and what to do next.
    pub message: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` while the process serves.
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// quilt-init's version.
    pub quilt_init: String,
}

/// One supervised service.
#[derive(Debug, Serialize, ToSchema)]
pub struct Service {
    /// Its name in the boot config.
    pub name: String,
    /// `running`, `ready`, `stopped`, `backoff`, …
    pub state: String,
    /// Its main process, while it runs.
    pub pid: Option<i32>,
    /// Restarts since boot.
    pub restarts: u32,
    /// Since it last started, while it runs.
    pub uptime_ms: Option<u64>,
    /// Its cgroup's `memory.current`.
    pub memory_bytes: Option<u64>,
    /// The bundle it runs, for a bundle service.
    pub bundle: Option<String>,
    /// Its cgroup's CPU time.
    pub cpu_usec: Option<u64>,
    /// Its cgroup's `pids.current`.
    pub pids: Option<u64>,
}

impl From<&ServiceInfo> for Service {
    fn from(s: &ServiceInfo) -> Service {
        Service {
            name: s.name.clone(),
            state: s.state.clone(),
            pid: s.pid,
            restarts: s.restarts,
            uptime_ms: s.uptime_ms,
            memory_bytes: s.memory_bytes,
            bundle: s.bundle.clone(),
            cpu_usec: s.cpu_usec,
            pids: s.pids,
        }
    }
}

/// `GET /v1/services`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Services {
    /// In boot-config order.
    pub services: Vec<Service>,
}

/// `POST /v1/services/{name}/{action}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceState {
    /// The service.
    pub name: String,
    /// Its state after the request.
    pub state: String,
}

/// One installed bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bundle {
    /// Its name (may contain `/`; percent-encode it in paths).
    pub name: String,
    /// Its signed version.
    pub version: u64,
    /// The Merkle root its signatures cover (hex).
    pub root: String,
    /// The powers its signature grants.
    pub tokens: Vec<String>,
    /// Files in it.
    pub files: u32,
    /// Their bytes.
    pub total_size: u64,
}

/// `GET /v1/bundles`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bundles {
    /// The installed bundles.
    pub bundles: Vec<Bundle>,
}

/// One tool an installed bundle declares in its signed manifest.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tool {
    /// Its bundle.
    pub bundle: String,
    /// The bundle's version.
    pub version: u64,
    /// The tool's name in its bundle.
    pub name: String,
    /// Its name as an MCP tool.
    pub mcp_name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: Value,
    /// JSON Schema of its output, if declared.
    pub output_schema: Option<Value>,
}

/// `GET /v1/tools`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tools {
    /// Every installed bundle's tools.
    pub tools: Vec<Tool>,
}

/// `POST /v1/tokens` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenAsk {
    /// Lifetime in seconds, 1–3600 (default 600).
    pub ttl_s: Option<i64>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    /// The bearer token (`qbt_…`).
    pub token: String,
    /// When it stops working, UNIX seconds.
    pub expires_at: i64,
    /// The client it stands for.
    pub client: String,
    /// That client's role.
    pub role: &'static str,
    /// The one path it is accepted on.
    pub use_on: &'static str,
}

/// Where a run's time went.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timings {
    /// quilt-init's spawn-to-reaped time.
    pub run_micros: u64,
    /// quiltd's, body read to reply.
    pub gateway_micros: u64,
}

/// `POST /v1/tools/{bundle}/run`: a finished run (a tool that fails is
/// still a 200 with its status).
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    /// Exit status (128+N when killed by signal N).
    pub status: i32,
    /// Status 0, and killed neither for memory nor at the deadline.
    pub ok: bool,
    /// Whether `stdout` is parsed JSON (else text).
    pub stdout_json: bool,
    /// The tool's output: its JSON when it printed JSON, else its text.
    pub stdout: Value,
    /// Output past the board's cap was dropped.
    pub stdout_truncated: bool,
    /// The last 4 KiB of stderr.
    pub stderr_tail: String,
    /// Killed for memory.
    pub oom_killed: bool,
    /// Killed at its deadline.
    pub timed_out: bool,
    /// Where the time went.
    pub timings: Timings,
}

impl Run {
    /// A run's result, stdout parsed when it is JSON.
    pub fn of(r: &RunResult, gateway_micros: u128) -> Run {
        let parsed: Option<Value> = serde_json::from_slice(&r.stdout).ok();
        let tail_from = r.stderr_tail.len().saturating_sub(STDERR_TAIL);
        let tail = r.stderr_tail.get(tail_from..).unwrap_or_default();
        Run {
            status: r.status,
            ok: r.status == 0 && !r.oom_killed && !r.timed_out,
            stdout_json: parsed.is_some(),
            stdout: parsed
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&r.stdout).into_owned())),
            stdout_truncated: r.stdout_truncated,
            stderr_tail: String::from_utf8_lossy(tail).into_owned(),
            oom_killed: r.oom_killed,
            timed_out: r.timed_out,
            timings: Timings {
                run_micros: r.micros,
                gateway_micros: u64::try_from(gateway_micros).unwrap_or(u64::MAX),
            },
        }
    }
}

/// `POST /v1/bundles`: installed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Installed {
    /// The bundle's name.
    pub name: String,
    /// Its version.
    pub version: u64,
    /// Chunks it has.
    pub chunks: u32,
    /// Chunks new to the store (the rest were held already).
    pub chunks_written: u32,
    /// This very bundle was installed already (its content was not read).
    pub already_installed: bool,
    /// Request to reply.
    pub micros: u64,
}

/// `GET /v1/services/{name}/logs`: what the log ring holds (with
/// `follow`, each SSE `log` event's data is this without `name`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Log {
    /// The service (absent in streamed events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bytes lost to the ring's wrap-around before this text.
    pub missed: u64,
    /// The output (invalid UTF-8 replaced).
    pub text: String,
}

/// `GET /v1/events`: each SSE `event` event's data.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventLine {
    /// The event as quilt-init logged it (`quilt: t=… event=… k=v …`).
    pub line: String,
}

/// `GET /v1/slots`: the A/B boot state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Slots {
    /// The slot this boot runs from (`a` or `b`); null outside a slot.
    pub booted: Option<String>,
    /// This boot is a trial not committed yet.
    pub trial: bool,
    /// The committed slot: what boots when nothing is on trial.
    pub primary: String,
    /// Firmware version in it (0: the factory image).
    pub primary_version: u64,
    /// A slot staged for, or in, its trial.
    pub trying: Option<String>,
    /// Firmware version in it.
    pub trying_version: u64,
    /// Boots the trial slot may still take.
    pub tries_left: u8,
    /// The last version that fell back.
    pub failed_version: u64,
    /// Fallbacks so far.
    pub fallbacks: u32,
}

impl From<SlotsInfo> for Slots {
    fn from(s: SlotsInfo) -> Slots {
        Slots {
            booted: s.booted,
            trial: s.trial,
            primary: s.primary,
            primary_version: s.primary_version,
            trying: s.trying,
            trying_version: s.trying_version,
            tries_left: s.tries_left,
            failed_version: s.failed_version,
            fallbacks: s.fallbacks,
        }
    }
}

impl From<quilt_proto::BundleInfo> for Bundle {
    fn from(b: quilt_proto::BundleInfo) -> Bundle {
        Bundle {
            name: b.name,
            version: b.version,
            root: b.root,
            tokens: b.tokens,
            files: b.files,
            total_size: b.total_size,
        }
    }
}
