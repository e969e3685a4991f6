//! Talking to a running quilt-init over its control socket: `quilt ping`,
//! `quilt ps`, `quilt run`.

use anyhow::{bail, Context};
use quilt_proto::{Reply, Request};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when quilt-init refused or failed the request itself.
const REFUSED: u8 = 3;

/// Send one request, wait for its reply.
pub fn call(socket: &Path, req: &Request) -> anyhow::Result<Reply> {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)?;
    let addr = SocketAddrUnix::new(socket)?;
    rustix::net::connect(&fd, &addr).with_context(|| {
        format!(
            "connecting to {} (is this a Quilt board, and are you root?)",
            socket.display()
        )
    })?;
    let frame = quilt_proto::encode_request(req).map_err(|e| anyhow::anyhow!("request: {e}"))?;
    rustix::net::send(&fd, &frame, SendFlags::NOSIGNAL).context("sending the request")?;
    let mut buf = vec![0u8; quilt_proto::MAX_REPLY + 1];
    let (_, n) =
        rustix::net::recv(&fd, &mut buf[..], RecvFlags::TRUNC).context("waiting for the reply")?;
    if n == 0 {
        bail!("quilt-init closed the connection without replying");
    }
    quilt_proto::decode_reply(buf.get(..n).unwrap_or(&[]))
        .map_err(|e| anyhow::anyhow!("reply: {e}"))
}

fn refused(reply: Reply) -> anyhow::Result<ExitCode> {
    match reply {
        Reply::Error { code, message } => {
            eprintln!("quilt: refused ({code:?}): {message}");
            Ok(ExitCode::from(REFUSED))
        }
        other => bail!("unexpected reply: {other:?}"),
    }
}

/// `quilt ping`.
pub fn ping(socket: &Path) -> anyhow::Result<ExitCode> {
    match call(socket, &Request::Ping)? {
        Reply::Pong { server } => {
            println!("quilt-init {server}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

/// `quilt ps [--json]`.
pub fn ps(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let services = match call(socket, &Request::List)? {
        Reply::Services(s) => s,
        other => return refused(other),
    };
    if json {
        let v: Vec<serde_json::Value> = services
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "state": s.state, "pid": s.pid, "restarts": s.restarts,
                    "uptime_ms": s.uptime_ms, "memory_bytes": s.memory_bytes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<20} {:<9} {:>7} {:>8} {:>10} {:>10}",
            "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "MEMORY"
        );
        for s in services {
            let pid = s.pid.map_or("-".into(), |p| p.to_string());
            let up = s
                .uptime_ms
                .map_or("-".into(), |u| format!("{:.1}s", u as f64 / 1000.0));
            let mem = s
                .memory_bytes
                .map_or("-".into(), |m| format!("{:.1}MiB", m as f64 / 1048576.0));
            println!(
                "{:<20} {:<9} {:>7} {:>8} {:>10} {:>10}",
                s.name, s.state, pid, s.restarts, up, mem
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quilt run BUNDLE [--input FILE]`: prints the tool's stdout, its stderr
/// tail on stderr, and exits with its status.
pub fn run(
    socket: &Path,
    bundle: &str,
    input: Option<&PathBuf>,
    timeout_ms: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let input = match input {
        Some(p) if p.as_os_str() == "-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
            v
        }
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => Vec::new(),
    };
    let r = match call(
        socket,
        &Request::Run {
            bundle: bundle.into(),
            input,
            timeout_ms,
        },
    )? {
        Reply::Ran(r) => r,
        other => return refused(other),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "status": r.status, "oom_killed": r.oom_killed, "timed_out": r.timed_out,
                "stdout": String::from_utf8_lossy(&r.stdout), "stdout_truncated": r.stdout_truncated,
                "stderr_tail": String::from_utf8_lossy(&r.stderr_tail), "micros": r.micros,
            })
        );
    } else {
        use std::io::Write;
        std::io::stdout().write_all(&r.stdout)?;
        std::io::stderr().write_all(&r.stderr_tail)?;
        if r.oom_killed {
            eprintln!("quilt: {bundle} was killed: out of memory (its memory limit)");
        }
        if r.timed_out {
            eprintln!("quilt: {bundle} was killed at its deadline");
        }
        if r.stdout_truncated {
            eprintln!("quilt: output cut at {} bytes", quilt_proto::MAX_OUTPUT);
        }
    }
    Ok(ExitCode::from(u8::try_from(r.status).unwrap_or(255)))
}
