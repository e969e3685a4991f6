//! A stand-in for quilt-init's control socket, for host tests only:
//! quilt-init cannot run on the host, so this serves real `quilt-proto`
//! frames over a real `SOCK_SEQPACKET` socket with canned answers. It is
//! not a model of quilt-init: one bundle (`hello`, which echoes its input),
//! one service, nothing else.

use quilt_proto::{BundleInfo, ErrorCode, Reply, Request, RunResult, ServiceInfo};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::path::Path;

/// A tool index as quilt-install writes it: `hello` declares `greet`
/// (object in, object out) and `gone`, which the stand-in does not run.
pub fn tool_index() -> Vec<u8> {
    use quilt_proto::installer::{encode_tool_index, ToolIndex, ToolIndexEntry};
    let def =
        |name: &str, description: &str, input: &str, output: Option<&str>| quilt_bundle::ToolDef {
            name: name.into(),
            description: description.into(),
            input: input.into(),
            output: output.map(Into::into),
        };
    encode_tool_index(&ToolIndex {
        bundles: vec![ToolIndexEntry {
            bundle: "hello".into(),
            version: 1,
            root: "00".repeat(32),
            tools: vec![
                def(
                    "greet",
                    "Greets whoever it is given.",
                    r#"{"type":"object","properties":{"who":{"type":"string"}},"required":["who"]}"#,
                    Some(r#"{"type":"object"}"#),
                ),
                def("gone", "Is not there when called.", r#"{"type":"object"}"#, None),
            ],
            omitted: false,
        }],
    })
    .unwrap()
}

/// Binds `path` and serves it from a thread for the rest of the test.
pub fn serve(path: &Path) {
    let srv = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::bind(&srv, &SocketAddrUnix::new(path).unwrap()).unwrap();
    rustix::net::listen(&srv, 64).unwrap();
    std::thread::spawn(move || loop {
        let Ok(conn) = rustix::net::accept(&srv) else {
            return;
        };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; quilt_proto::MAX_REQUEST + 1];
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let Ok(got) = rustix::net::recvmsg(
                &conn,
                &mut [std::io::IoSliceMut::new(&mut buf[..])],
                &mut anc,
                RecvFlags::TRUNC,
            ) else {
                return;
            };
            let n = got.bytes;
            let mut fd = None;
            for msg in anc.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
                    fd = fds.next();
                }
            }
            let req = quilt_proto::decode_request(&buf[..n.min(buf.len())]);
            let send = |reply: &Reply| {
                let frame = quilt_proto::encode_reply(reply).unwrap();
                rustix::net::send(&conn, &frame, SendFlags::NOSIGNAL).is_ok()
            };
            // Streams: replies every 100 ms until the client hangs up.
            let stream = |make: &dyn Fn(u32) -> Reply| {
                for i in 1.. {
                    if !send(&make(i)) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            };
            match req {
                Ok(Request::Logs { name, follow: true }) if name == "tick" => {
                    stream(&|i| Reply::Log {
                        missed: 0,
                        data: format!("tick {i}\n").into_bytes(),
                    })
                }
                Ok(Request::Events) => stream(&|i| Reply::Event {
                    line: format!("quilt: t={i}.0 event=stand-in n={i}"),
                }),
                Ok(Request::InstallFd) => {
                    send(&install(fd));
                }
                Ok(req) => {
                    send(&answer(req));
                }
                Err(e) => {
                    send(&Reply::Error {
                        code: e.code(),
                        message: e.to_string(),
                    });
                }
            }
        });
    });
}

/// `InstallFd`: not an installer. It insists on a sealed memfd, as
/// quilt-init's installer reads only fds that cannot change under it, and
/// answers with what it read: `name` is `bytes-<len>-<sha256 hex>`, so a
/// test can see the body arrived whole. A body starting `REFUSE` is
/// refused as a bad signature would be.
fn install(fd: Option<rustix::fd::OwnedFd>) -> Reply {
    use rustix::fs::SealFlags;
    use sha2::Digest;
    use std::io::Read;
    let Some(fd) = fd else {
        return Reply::Error {
            code: ErrorCode::Malformed,
            message: "InstallFd came without an fd".into(),
        };
    };
    let sealed = rustix::fs::fcntl_get_seals(&fd).unwrap_or(SealFlags::empty());
    if !sealed.contains(SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW) {
        return Reply::Error {
            code: ErrorCode::Failed,
            message: format!("not a sealed memfd: seals {sealed:?}"),
        };
    }
    let mut bytes = Vec::new();
    // Read from the start whatever the sender's offset.
    let mut f = std::fs::File::open(format!(
        "/proc/self/fd/{}",
        rustix::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .unwrap();
    f.read_to_end(&mut bytes).unwrap();
    if bytes.starts_with(b"REFUSE") {
        return Reply::Error {
            code: ErrorCode::Failed,
            message: "bundle refused: signature by an unknown key".into(),
        };
    }
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Reply::Installed {
        name: format!("bytes-{}-{hex}", bytes.len()),
        version: 1,
        chunks: 1,
        chunks_written: 1,
        already_installed: false,
    }
}

fn answer(req: Request) -> Reply {
    match req {
        Request::Ping => Reply::Pong {
            server: "stand-in".into(),
        },
        Request::List => Reply::Services(vec![ServiceInfo {
            name: "tick".into(),
            state: "running".into(),
            pid: Some(42),
            restarts: 0,
            uptime_ms: Some(1000),
            memory_bytes: Some(4096),
            bundle: None,
            cpu_usec: Some(7),
            pids: Some(1),
        }]),
        Request::Bundles => Reply::Bundles {
            bundles: vec![BundleInfo {
                name: "hello".into(),
                version: 1,
                root: "00".repeat(32),
                tokens: vec![],
                files: 1,
                total_size: 10,
            }],
            keys: vec![],
            policy: String::new(),
        },
        Request::Run { bundle, input, .. } if bundle == "hello" => {
            let input: serde_json::Value = serde_json::from_slice(&input).unwrap();
            if input["tool"] == "gone" {
                return Reply::Error {
                    code: ErrorCode::NotFound,
                    message: "bundle \"hello\" is not installed any more".into(),
                };
            }
            Reply::Ran(RunResult {
                status: 0,
                oom_killed: false,
                timed_out: false,
                stdout: serde_json::to_vec(&serde_json::json!({ "echo": input })).unwrap(),
                stdout_truncated: false,
                stderr_tail: b"said hello\n".to_vec(),
                micros: 1234,
            })
        }
        Request::Service { name, verb } if name == "tick" => Reply::ServiceState {
            name,
            state: format!("{verb:?}").to_lowercase(),
        },
        Request::Logs { name, .. } if name == "tick" => Reply::Log {
            missed: 0,
            data: b"tick 1\n".to_vec(),
        },
        Request::Slots => Reply::Slots(quilt_proto::SlotsInfo {
            booted: Some("a".into()),
            trial: false,
            primary: "a".into(),
            primary_version: 3,
            trying: None,
            trying_version: 0,
            tries_left: 0,
            failed_version: 2,
            fallbacks: 1,
        }),
        Request::Service { name, .. } | Request::Logs { name, .. } => Reply::Error {
            code: ErrorCode::NotFound,
            message: format!("no service {name:?}"),
        },
        Request::Run { bundle, .. } => Reply::Error {
            code: ErrorCode::NotFound,
            message: format!("bundle {bundle:?} is not installed"),
        },
        _ => Reply::Error {
            code: ErrorCode::Denied,
            message:
                "the stand-in serves only ping, list, bundles, run, service, logs, events and slots"
                    .into(),
        },
    }
}
