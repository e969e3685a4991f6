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
