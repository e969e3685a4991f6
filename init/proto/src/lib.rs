//! The control protocol between `quilt-init` and its clients (the `quilt`
//! CLI, agents, containers holding tokens).
//!
//! One request or reply per `SOCK_SEQPACKET` message, so message
//! boundaries are the kernel's: a frame is `MAGIC`, a little-endian u16
//! version, then a postcard body. Every frame has a hard size cap; a
//! frame that is oversized, truncated, of another version or does not
//! decode is refused with a typed error (and the server answers
//! [`Reply::Error`], never disturbing other clients).
//!
//! Pure: no I/O, `no_std` + `alloc`, so the server, the CLI and the fuzzer
//! share it.
#![no_std]

extern crate alloc;

pub mod installer;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// First bytes of every frame.
pub const MAGIC: [u8; 2] = *b"QC";
/// Protocol version; a server refuses others with [`ErrorCode::Version`].
pub const VERSION: u16 = 1;
/// Largest request frame a server reads (tool input included).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest reply frame (a tool's stdout is cut to fit).
pub const MAX_REPLY: usize = 256 * 1024;
/// Most tool output returned in one reply.
pub const MAX_OUTPUT: usize = MAX_REPLY - 8 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness and version check.
    Ping,
    /// Services and their state.
    List,
    /// Run an installed bundle once in a fresh container: `input` on its
    /// stdin, the reply carries stdout, the exit status and a stderr tail.
    Run {
        /// Installed bundle name.
        bundle: String,
        /// Bytes fed on stdin (JSON for tools).
        input: Vec<u8>,
        /// Kill the run after this long; 0 means the server's default.
        timeout_ms: u32,
    },
    /// Like `Run`, but answered at once with the run's id
    /// ([`Reply::Spawned`]); the result is collected with `Wait`. From a
    /// container (with a `spawn` token), the run is its child: in a cgroup
    /// nested under its own, stopped when it ends.
    Spawn {
        /// Installed bundle name.
        bundle: String,
        /// Bytes fed on stdin.
        input: Vec<u8>,
        /// Kill the run after this long; 0 means the server's default.
        timeout_ms: u32,
    },
    /// The result of a run this client spawned, when it ends
    /// ([`Reply::Finished`]).
    Wait {
        /// The id `Spawned` gave.
        id: u64,
    },
    /// Stop a run this client spawned (its whole cgroup, at once).
    Stop {
        /// The id `Spawned` gave.
        id: u64,
    },
    /// Operator: start, stop or restart a supervised service.
    Service {
        /// Service name.
        name: String,
        /// What to do.
        verb: ServiceVerb,
    },
    /// Operator: a service's retained output ([`Reply::Log`]), then, with
    /// `follow`, every new chunk as it comes, until the client hangs up.
    Logs {
        /// Service name.
        name: String,
        /// Keep sending new output.
        follow: bool,
    },
    /// Operator: every event line quilt-init logs from now on, each as
    /// [`Reply::Event`], until the client hangs up.
    Events,
    /// Operator: install the bundle file at `path` on the board (through
    /// the trust store, as at boot) ([`Reply::Installed`]).
    Install {
        /// Absolute path of a `.qb` readable by quilt-init.
        path: String,
    },
    /// Operator: remove an installed bundle nothing is running.
    Remove {
        /// Bundle name.
        name: String,
    },
    /// Operator: installed bundles and the trust store ([`Reply::Bundles`]).
    Bundles,
    /// Container holding `resource`'s token: take `units` of it
    /// ([`Reply::Acquired`] when granted, maybe after a wait; refused with
    /// [`ErrorCode::Deadlock`] if waiting would close a cycle).
    Acquire {
        /// Resource (its token, e.g. `llm:gpt`).
        resource: String,
        /// Units.
        units: u32,
    },
    /// Give units back ([`Reply::Released`]).
    Release {
        /// Resource.
        resource: String,
        /// Units.
        units: u32,
    },
    /// Operator: counted resources in use ([`Reply::Resources`]).
    Resources,
    /// Run `argv` inside the container of supervised service `service`
    /// (its namespaces, root and cgroup), `input` on stdin; answered with
    /// [`Reply::Ran`]. Containers need an `exec:<service>` token.
    Exec {
        /// Target service.
        service: String,
        /// argv; argv[0] a path inside the target.
        argv: Vec<String>,
        /// Bytes on stdin.
        input: Vec<u8>,
        /// Deadline, 0 for the default.
        timeout_ms: u32,
    },
    /// Operator: the pods and their members ([`Reply::Pods`]).
    Pods,
    /// Operator: install the bundle whose open fd comes with this message
    /// (`SCM_RIGHTS`): a regular file or a memfd, so the content need not
    /// be on a path quilt-init can see ([`Reply::Installed`]). A stream is
    /// spooled into a memfd by the client first: a pipe could stall PID 1.
    InstallFd,
    /// Operator: the A/B boot state ([`Reply::Slots`]): which slot runs,
    /// what is on trial, which version last fell back.
    Slots,
    /// Operator: quilt-init's own figures and its counters since boot
    /// ([`Reply::Stats`]), for metrics.
    Stats,
}

/// What `Service` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceVerb {
    /// Start a stopped or finished service (it stays stopped otherwise).
    Start,
    /// SIGTERM, then `cgroup.kill` after the shutdown grace; not restarted.
    Stop,
    /// Stop (if running), then start.
    Restart,
}

/// One service as `List` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Name.
    pub name: String,
    /// `running`, `backoff`, `waiting`, `done`, `stopping`, `stopped`.
    pub state: String,
    /// Main pid when running.
    pub pid: Option<i32>,
    /// Restarts so far.
    pub restarts: u32,
    /// Milliseconds since it started, when running.
    pub uptime_ms: Option<u64>,
    /// `memory.current` of its cgroup.
    pub memory_bytes: Option<u64>,
    /// The bundle it runs, for a container.
    pub bundle: Option<String>,
    /// `usage_usec` of its cgroup's `cpu.stat`.
    pub cpu_usec: Option<u64>,
    /// `pids.current` of its cgroup.
    pub pids: Option<u64>,
}

/// How a tool run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Exit code, or 128 + signal.
    pub status: i32,
    /// Killed by the cgroup's OOM killer.
    pub oom_killed: bool,
    /// Killed at its deadline.
    pub timed_out: bool,
    /// Its stdout (cut at [`MAX_OUTPUT`]; `stdout_truncated` says so).
    pub stdout: Vec<u8>,
    /// Whether stdout was cut.
    pub stdout_truncated: bool,
    /// The last bytes of its stderr.
    pub stderr_tail: Vec<u8>,
    /// Wall time from spawn to reaped, in microseconds.
    pub micros: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame did not decode.
    Malformed,
    /// The frame exceeds [`MAX_REQUEST`].
    TooLarge,
    /// Another protocol version.
    Version,
    /// The caller may not do this.
    Denied,
    /// The named bundle or service does not exist.
    NotFound,
    /// The server is at capacity (too many runs or clients).
    Busy,
    /// Starting failed.
    Failed,
    /// Waiting would deadlock (a cycle of containers waiting on each other).
    Deadlock,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to `Ping`.
    Pong {
        /// The server's `quilt-init` version.
        server: String,
    },
    /// Answer to `List`.
    Services(Vec<ServiceInfo>),
    /// Answer to `Run`.
    Ran(RunResult),
    /// The request was refused or failed.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// What happened and what to do next.
        message: String,
    },
    /// Answer to `Spawn`: the run started.
    Spawned {
        /// Its id, for `Wait` and `Stop`.
        id: u64,
    },
    /// Answer to `Wait`.
    Finished {
        /// The run.
        id: u64,
        /// How it ended.
        result: RunResult,
    },
    /// Answer to `Stop`: it was told to go (its `Wait` gives the result).
    Stopping {
        /// The run.
        id: u64,
    },
    /// Answer to `Service`: what the service does now.
    ServiceState {
        /// Service name.
        name: String,
        /// Its state after the request (`stopping`, `waiting`, ...).
        state: String,
    },
    /// Output of a service (`Logs`).
    Log {
        /// Bytes the ring no longer held before this chunk (lost to the
        /// reader), 0 when nothing was missed.
        missed: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// One event line (`Events`).
    Event {
        /// The line, `quilt: t=… event=… key=value…`.
        line: String,
    },
    /// Answer to `Install`.
    Installed {
        /// Bundle name.
        name: String,
        /// Its version.
        version: u64,
        /// Chunks it has, and how many were new to the store.
        chunks: u32,
        /// Chunks written (the rest were already held).
        chunks_written: u32,
        /// This very bundle (name, version, root) was installed already:
        /// its signatures and manifest were checked, its content not read.
        already_installed: bool,
    },
    /// Answer to `Acquire`.
    Acquired {
        /// Resource.
        resource: String,
        /// Units granted.
        units: u32,
    },
    /// Answer to `Release`.
    Released {
        /// Resource.
        resource: String,
        /// Units given back.
        units: u32,
    },
    /// Answer to `Resources`.
    Resources(Vec<ResourceInfo>),
    /// Answer to `Remove`.
    Removed {
        /// Bundle name.
        name: String,
    },
    /// Answer to `Bundles`.
    Bundles {
        /// Installed bundles.
        bundles: Vec<BundleInfo>,
        /// Trusted key ids (hex).
        keys: Vec<String>,
        /// The trust policy, in its text form.
        policy: String,
    },
    /// Answer to `Pods`: (name, members, volumes) per pod.
    Pods(Vec<(String, Vec<String>, Vec<String>)>),
    /// Answer to `Slots`.
    Slots(SlotsInfo),
    /// Answer to `Stats`.
    Stats(BoardStats),
}

/// What quilt-init measures and counts, as `Stats` shows it. Counters run
/// from boot; each list is (label, count) in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardStats {
    /// quilt-init's resident memory, bytes (`/proc/self/statm`).
    pub init_rss_bytes: u64,
    /// quilt-init's open file descriptors.
    pub init_fds: u32,
    /// Ephemeral runs and execs that ended, by outcome: `ok`, `failed`
    /// (a non-zero exit, also a run killed because its client went),
    /// `oom`, `timeout`.
    pub runs: Vec<(String, u64)>,
    /// Bundles offered, by outcome: `installed`, `unchanged` (already
    /// installed), `removed`, `refused` (each bundle of a stick counts).
    pub installs: Vec<(String, u64)>,
    /// Refusals by reason ([`installer::RefusalReason::label`]), the
    /// reasons that occurred.
    pub refusals: Vec<(String, u64)>,
    /// What the store held after the last install job, if one ran.
    pub store: Option<installer::StoreUsage>,
    /// Per service: OOM kills in its cgroup (`memory.events` `oom_kill`).
    pub service_oom_kills: Vec<(String, u64)>,
    /// The bus channels.
    pub bus: Vec<ChannelStats>,
}

/// One bus channel as `Stats` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Its topic.
    pub topic: String,
    /// Messages published since boot.
    pub published: u64,
    /// Subscriber slots held now.
    pub subscribers: u32,
    /// Messages the furthest-behind subscriber has still to read.
    pub lag_max: u64,
    /// Messages subscribers lost to overwrites (drop-oldest).
    pub lost: u64,
}

/// The A/B boot state as `Slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotsInfo {
    /// The slot this boot runs from (`a` or `b`); `None` outside a slot.
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
    /// The last version that fell back; not resumed by itself again, only
    /// when it is offered again.
    pub failed_version: u64,
    /// Fallbacks so far.
    pub fallbacks: u32,
}

/// One counted resource as `Resources` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    /// Its token name.
    pub name: String,
    /// Units in all.
    pub capacity: u32,
    /// Units held.
    pub used: u32,
    /// Requests waiting.
    pub waiting: u32,
}

/// One installed bundle as `Bundles` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Merkle root (hex).
    pub root: String,
    /// Tokens its header asks for.
    pub tokens: Vec<String>,
    /// Regular files and their total size.
    pub files: u32,
    /// Sum of file sizes.
    pub total_size: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Over the size cap.
    TooLarge(usize),
    /// Shorter than the header, or wrong magic.
    NotAFrame,
    /// Another version.
    Version(u16),
    /// The body did not decode, or bytes were left over.
    Body,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::NotAFrame => write!(f, "not a quilt control frame (bad magic or header)"),
            FrameError::Version(v) => write!(f, "protocol version {v}; this side speaks {VERSION}"),
            FrameError::Body => write!(f, "frame body does not decode"),
        }
    }
}

impl core::error::Error for FrameError {}

impl FrameError {
    /// The reply code a server sends for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge(_) => ErrorCode::TooLarge,
            FrameError::Version(_) => ErrorCode::Version,
            FrameError::NotAFrame | FrameError::Body => ErrorCode::Malformed,
        }
    }
}

fn encode<T: Serialize>(msg: &T, cap: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let body = postcard::to_allocvec(msg).map_err(|_| FrameError::Body)?;
    out.extend_from_slice(&body);
    if out.len() > cap {
        return Err(FrameError::TooLarge(out.len()));
    }
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8], cap: usize) -> Result<T, FrameError> {
    if frame.len() > cap {
        return Err(FrameError::TooLarge(frame.len()));
    }
    let (head, body) = frame.split_at_checked(4).ok_or(FrameError::NotAFrame)?;
    if head.get(..2) != Some(MAGIC.as_slice()) {
        return Err(FrameError::NotAFrame);
    }
    let v = u16::from_le_bytes([
        head.get(2).copied().unwrap_or(0),
        head.get(3).copied().unwrap_or(0),
    ]);
    if v != VERSION {
        return Err(FrameError::Version(v));
    }
    let (msg, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Body)?;
    if !rest.is_empty() {
        return Err(FrameError::Body);
    }
    Ok(msg)
}

/// Encode a request frame.
pub fn encode_request(r: &Request) -> Result<Vec<u8>, FrameError> {
    encode(r, MAX_REQUEST)
}

/// Decode a request frame.
pub fn decode_request(frame: &[u8]) -> Result<Request, FrameError> {
    decode(frame, MAX_REQUEST)
}

/// Encode a reply frame.
pub fn encode_reply(r: &Reply) -> Result<Vec<u8>, FrameError> {
    encode(r, MAX_REPLY)
}

/// Decode a reply frame.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, FrameError> {
    decode(frame, MAX_REPLY)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trips() {
        let r = Request::Run {
            bundle: "hello".into(),
            input: b"{}".to_vec(),
            timeout_ms: 5,
        };
        assert_eq!(decode_request(&encode_request(&r).unwrap()).unwrap(), r);
        let rep = Reply::Ran(RunResult {
            status: 0,
            oom_killed: false,
            timed_out: false,
            stdout: b"ok".to_vec(),
            stdout_truncated: false,
            stderr_tail: vec![],
            micros: 9,
        });
        assert_eq!(decode_reply(&encode_reply(&rep).unwrap()).unwrap(), rep);
    }

    /// Clients in other languages (the TypeScript agent fixture) encode
    /// these indices by hand: new variants go at the end.
    #[test]
    fn variant_indices_are_stable() {
        let req = |r: Request| encode_request(&r).unwrap()[4];
        assert_eq!(req(Request::Ping), 0);
        assert_eq!(
            req(Request::Spawn {
                bundle: "b".into(),
                input: vec![],
                timeout_ms: 0
            }),
            3
        );
        assert_eq!(req(Request::Wait { id: 1 }), 4);
        assert_eq!(req(Request::Stop { id: 1 }), 5);
        assert_eq!(
            req(Request::Acquire {
                resource: "r".into(),
                units: 1
            }),
            12
        );
        assert_eq!(
            req(Request::Release {
                resource: "r".into(),
                units: 1
            }),
            13
        );
        assert_eq!(req(Request::InstallFd), 17);
        assert_eq!(req(Request::Slots), 18);
        let rep = |r: Reply| encode_reply(&r).unwrap()[4];
        assert_eq!(
            rep(Reply::Error {
                code: ErrorCode::Deadlock,
                message: String::new()
            }),
            3
        );
        assert_eq!(rep(Reply::Spawned { id: 1 }), 4);
        assert_eq!(rep(Reply::Stopping { id: 1 }), 6);
        assert_eq!(
            rep(Reply::Acquired {
                resource: "r".into(),
                units: 1
            }),
            11
        );
        assert_eq!(
            rep(Reply::Released {
                resource: "r".into(),
                units: 1
            }),
            12
        );
        let code = encode_reply(&Reply::Error {
            code: ErrorCode::Deadlock,
            message: String::new(),
        })
        .unwrap()[5];
        assert_eq!(code, 7);
    }

    #[test]
    fn refuses_bad_frames() {
        let good = encode_request(&Request::Ping).unwrap();
        for n in 0..good.len() {
            assert!(decode_request(&good[..n]).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode_request(&trailing), Err(FrameError::Body));
        let mut v2 = good.clone();
        v2[2] = 2;
        assert_eq!(decode_request(&v2), Err(FrameError::Version(2)));
        assert_eq!(
            decode_request(&vec![0u8; MAX_REQUEST + 1]),
            Err(FrameError::TooLarge(MAX_REQUEST + 1))
        );
        let big = Request::Run {
            bundle: "x".into(),
            input: vec![0; MAX_REQUEST],
            timeout_ms: 0,
        };
        assert!(matches!(encode_request(&big), Err(FrameError::TooLarge(_))));
        // A length prefix claiming more than is there must not allocate it.
        let mut lie = vec![b'Q', b'C', 1, 0, 2];
        lie.extend_from_slice(&[0x05, b'h', b'i', 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_request(&lie).is_err());
    }
}
