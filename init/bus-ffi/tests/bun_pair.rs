//! The Bun client for real: `examples/bus-server` (a plain script) and
//! `examples/bus-client` (an SDK tool, called with the SDK's request) run
//! under the pinned Bun (`tools/fetch-bun.sh`) with `libquiltbus.so`, on
//! two channels created here with the owner API, fds and `QUILT_BUS`
//! handed over exactly as `quilt-init` does. The client's result must
//! report every reply, in order, with no mismatch (anything else fails it).

mod common;

use common::*;
use quilt_bus_client::{create_channel, ChannelFds, Config, Mode};
use rustix::fd::AsFd;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn stage_example(root: &Path, example: &str) -> PathBuf {
    let script = repo_root().join("examples").join(example).join("index.ts");
    stage(root, example, &script)
}

/// `examples/bus-client`, an SDK project, with its dependencies installed
/// from its lockfile (`@quilt/tool`, and `quilt-bus` from
/// `init/bus-ffi/js`, which the board's runtime layer provides instead).
fn sdk_client(bun: &Path) -> PathBuf {
    let dir = repo_root().join("examples/bus-client");
    let out = std::process::Command::new(bun)
        .args(["install", "--frozen-lockfile"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bun install in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn channel(name: &str) -> ChannelFds {
    let cfg = Config {
        capacity: 64,
        slot_size: 4096,
        mode: Mode::Block,
        max_subscribers: 1,
        channel_id: 5,
    };
    create_channel(name, &cfg).unwrap()
}

fn run_client(bun: &Path, dir: &Path, req: &ChannelFds, rep: &ChannelFds, input: &str) -> Value {
    let req_subs_ro = req.subscribers_read_only().unwrap();
    let rep_data_ro = rep.data_read_only().unwrap();
    let (fds, spec) = hand_out(&[
        (
            "calc.req",
            "pub",
            vec![req.data.as_fd(), req_subs_ro[0].as_fd()],
        ),
        (
            "calc.rep",
            "sub",
            vec![rep_data_ro.as_fd(), rep.subscribers[0].as_fd()],
        ),
    ]);
    let mut child = spawn_entry(bun, dir, "src/index.ts", &spec, Stdio::piped());
    drop(fds);
    // The SDK's request: the tool's name and its input.
    let request = format!(r#"{{"tool":"measure","input":{input}}}"#);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let (status, out) = finish(child, Duration::from_secs(300));
    eprintln!("bus-client {input}: {}", out.trim());
    assert!(status.success(), "bus-client exited {status}: {out}");
    let envelope: Value = serde_json::from_str(out.trim()).unwrap();
    envelope
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("no result: {envelope}"))
}

#[test]
fn bun_server_answers_bun_client_in_order() {
    let bun = bun();
    let tmp = scratch_root();
    let server_dir = stage_example(tmp.path(), "bus-server");
    let client_dir = sdk_client(&bun);

    let req = channel("calc.req");
    let rep = channel("calc.rep");

    // The server's container: sub on calc.req, pub on calc.rep. Spawned
    // before the client's fds exist, so it inherits only its own.
    let req_data_ro = req.data_read_only().unwrap();
    let rep_subs_ro = rep.subscribers_read_only().unwrap();
    let (fds, spec) = hand_out(&[
        (
            "calc.req",
            "sub",
            vec![req_data_ro.as_fd(), req.subscribers[0].as_fd()],
        ),
        (
            "calc.rep",
            "pub",
            vec![rep.data.as_fd(), rep_subs_ro[0].as_fd()],
        ),
    ]);
    let server = spawn(&bun, &server_dir, &spec, Stdio::null());
    drop(fds);

    let report = run_client(
        &bun,
        &client_dir,
        &req,
        &rep,
        r#"{"requests": 10000, "size": 64}"#,
    );
    assert_eq!(report["sent"], 10000, "{report}");
    assert_eq!(report["received"], 10000, "{report}");
    assert_eq!(report["in_order"], true, "{report}");
    assert_eq!(report["mismatches"], 0, "{report}");

    // A restarted client (a new process) takes over calc.req and rejoins
    // calc.rep; full-slot payloads.
    let report = run_client(
        &bun,
        &client_dir,
        &req,
        &rep,
        r#"{"requests": 1000, "size": 4096}"#,
    );
    assert_eq!(report["sent"], 1000, "{report}");
    assert_eq!(report["received"], 1000, "{report}");
    assert_eq!(report["size"], 4096, "{report}");

    let pid = Pid::from_child(&server);
    kill_process(pid, Signal::TERM).unwrap();
    let (status, out) = finish(server, Duration::from_secs(30));
    eprintln!("bus-server: {}", out.trim());
    assert!(status.success(), "bus-server exited {status}: {out}");
    let served: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(served["served"].as_u64().unwrap() >= 11_000, "{served}");
    assert_eq!(served["overwritten"], 0, "{served}");
}
