//! The real `quiltd` binary on the host, driven by the real `quilt call`
//! and by `curl`, in front of a stand-in control socket (quilt-init cannot
//! run on the host; the QEMU test comes with the board's network).

mod stand_in;

use quilt_gateway_auth::fingerprint::Fingerprint;
use quilt_gateway_auth::profile::{sign_request, Outgoing};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn quiltd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quiltd"))
}

/// The `quilt` CLI of the same build, built now if it is not there yet.
fn quilt() -> PathBuf {
    let path = quiltd().with_file_name("quilt");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-q", "-p", "quilt", "--bin", "quilt"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building the quilt CLI for this test failed");
    }
    path
}

/// What the test's Prometheus scrapes /metrics with.
const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

struct Board {
    child: Child,
    url: String,
    pin: Fingerprint,
    dir: tempfile::TempDir,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gen_client(dir: &Path, name: &str) -> (PathBuf, String) {
    let base = dir.join(name);
    let out = Command::new(quilt())
        .args(["key", "gen", "--client", "--out"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().last().unwrap().to_owned();
    assert!(
        line.starts_with(&format!("operator {name} ed25519:")),
        "{line}"
    );
    let public = std::fs::read_to_string(base.with_extension("pub")).unwrap();
    (base.with_extension("key"), public.trim().to_owned())
}

fn start() -> (Board, PathBuf, PathBuf) {
    start_with(&[])
}

/// As [`start`], with more `quiltd serve` flags.
fn start_with(flags: &[&str]) -> (Board, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (op_key, op_pub) = gen_client(dir.path(), "op");
    let (bot_key, bot_pub) = gen_client(dir.path(), "bot");
    let clients = dir.path().join("authorized-clients");
    std::fs::write(
        &clients,
        format!("# test\noperator op {op_pub}\nagent bot {bot_pub}\n"),
    )
    .unwrap();
    let control = dir.path().join("control.sock");
    stand_in::serve(&control);
    let tool_index = dir.path().join("tools");
    std::fs::write(&tool_index, stand_in::tool_index()).unwrap();
    let metrics_token = dir.path().join("metrics-token");
    std::fs::write(&metrics_token, format!("{METRICS_TOKEN}\n")).unwrap();
    std::fs::set_permissions(
        &metrics_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(quiltd())
        .args(["identity", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pin = Fingerprint::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let mut child = Command::new(quiltd())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .arg("--authorized-clients")
        .arg(&clients)
        .arg("--control")
        .arg(&control)
        .arg("--tool-index")
        .arg(&tool_index)
        .arg("--metrics-token-file")
        .arg(&metrics_token)
        .args(flags)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("event=listening"), "{first}");
    assert!(first.contains(&format!("board-key={pin}")), "{first}");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("{l}")
        }
    });
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let board = Board {
        child,
        url: format!("https://127.0.0.1:{port}"),
        pin,
        dir,
    };
    (board, op_key, bot_key)
}

fn call(b: &Board, key: &Path, pin: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(quilt())
        .args(["call", "--board", &b.url, "--board-key", pin, "--key"])
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quilt_call_signs_pins_and_is_held_to_its_role() {
    let (b, op, bot) = start();
    let pin = b.pin.to_string();
    let (code, v, err) = call(&b, &op, &pin, &["GET", "/v1/bundles"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["bundles"][0]["name"], "hello");
    let (code, v, err) = call(&b, &op, &pin, &["GET", "/v1/services"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["services"][0]["name"], "tick");
    let (code, v, err) = call(
        &b,
        &bot,
        &pin,
        &[
            "POST",
            "/v1/tools/hello/run?tool=greet",
            "--data",
            r#"{"x":1}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["stdout"]["echo"]["tool"], "greet");
    assert_eq!(v["stdout"]["echo"]["input"]["x"], 1);
    assert_eq!(v["stderr_tail"], "said hello\n");
    assert_eq!(v["ok"], true);
    assert_eq!(v["timings"]["run_micros"], 1234);
    // An agent may not list services.
    let (code, v, err) = call(&b, &bot, &pin, &["GET", "/v1/services"]);
    assert_eq!(code, 3);
    assert_eq!(v["error"], "forbidden-role");
    assert!(err.contains("403"), "{err}");
    // A bundle the board lacks is the board's 404.
    let (code, v, _) = call(&b, &bot, &pin, &["POST", "/v1/tools/nope/run"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("not-found")));
    // A key the board does not list, with the line to add in the hint.
    let (stranger, stranger_pub) = gen_client(b.dir.path(), "stranger");
    let (code, v, err) = call(&b, &stranger, &pin, &["GET", "/v1/bundles"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("unknown-key")));
    assert!(err.contains(&stranger_pub), "{err}");
    // Another pin: refused before anything is sent, both keys named.
    let wrong = Fingerprint::of_ed25519(&[0; 32]).to_string();
    let (code, _, err) = call(&b, &op, &wrong, &["GET", "/v1/bundles"]);
    assert_eq!(code, 1);
    assert!(err.contains(&pin) && err.contains(&wrong), "{err}");
}

/// `quilt push`: (exit code, JSON reply, stderr).
fn push(b: &Board, key: &Path, file: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(quilt())
        .args(["push", "--json", "--quiet", "--board", &b.url, "--key"])
        .arg(key)
        .args(["--board-key", &b.pin.to_string()])
        .arg(file)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `len` bytes that do not compress or repeat.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn bundles_stream_to_the_installer_held_to_the_signed_digest() {
    const MAX: usize = 8 << 20;
    let (b, op, bot) = start_with(&["--max-install-bytes", &MAX.to_string()]);
    let file = b.dir.path().join("big.qb");
    let bytes = noise(6 << 20);
    std::fs::write(&file, &bytes).unwrap();
    // The operator's push arrives whole, in a sealed memfd (the stand-in
    // names what it read).
    let (code, v, err) = push(&b, &op, &file);
    assert_eq!(code, 0, "{v} {err}");
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(v["name"], format!("bytes-{}-{hex}", bytes.len()), "{v}");
    // An agent may not install.
    let (code, v, _) = push(&b, &bot, &file);
    assert_eq!(
        (code, v["error"].as_str()),
        (3, Some("forbidden-role")),
        "{v}"
    );
    // The board's refusal comes back with its reason.
    let refused = b.dir.path().join("refused.qb");
    std::fs::write(&refused, b"REFUSE this one").unwrap();
    let (code, v, err) = push(&b, &op, &refused);
    assert_eq!((code, v["error"].as_str()), (3, Some("failed")), "{v}");
    assert!(err.contains("422") && err.contains("unknown key"), "{err}");
    // Larger than --max-install-bytes: refused on its Content-Length.
    let big = b.dir.path().join("too-big.qb");
    std::fs::write(&big, noise(MAX + 1)).unwrap();
    let (code, v, err) = push(&b, &op, &big);
    assert_eq!(
        (code, v["error"].as_str()),
        (3, Some("too-large")),
        "{v} {err}"
    );
    if curl_missing() {
        return;
    }
    // A body other than the one signed is refused once it has come, and
    // never reaches the installer; so is one that grows past the cap
    // without a Content-Length (chunked).
    let seed = {
        let text = std::fs::read_to_string(&op).unwrap();
        quilt_gateway_auth::keys::parse_secret(&text).unwrap()
    };
    let send = |signed: &[u8], sent: &Path, chunked: bool, nonce: &str| {
        let h = sign_request(
            &seed,
            &Outgoing {
                method: "POST",
                path: "/v1/bundles",
                query: None,
                body: signed,
                created: now(),
                nonce,
            },
        )
        .unwrap();
        let hs = [
            format!("content-digest: {}", h.content_digest),
            format!("signature-input: {}", h.signature_input),
            format!("signature: {}", h.signature),
        ];
        let data = format!("@{}", sent.display());
        let mut args = vec!["-X", "POST", "--data-binary", &data];
        for x in &hs {
            args.extend(["-H", x.as_str()]);
        }
        if chunked {
            args.extend(["-H", "transfer-encoding: chunked"]);
        }
        curl(&b, &b.pin.base64(), &args, "/v1/bundles")
    };
    let mut tampered = bytes.clone();
    tampered[3 << 20] ^= 1;
    let other = b.dir.path().join("tampered.qb");
    std::fs::write(&other, &tampered).unwrap();
    let (status, v) = send(&bytes, &other, false, "nonce-tampered-0001");
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("content-digest")),
        "{v}"
    );
    let big_bytes = std::fs::read(&big).unwrap();
    let (status, v) = send(&big_bytes, &big, true, "nonce-chunked-00001");
    assert_eq!(
        (status, v["error"].as_str()),
        (413, Some("too-large")),
        "{v}"
    );
    // Refused installs leave quiltd serving, and are counted.
    let (code, v, err) = push(&b, &op, &file);
    assert_eq!(code, 0, "{v} {err}");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--pinnedpubkey",
            &format!("sha256//{}", b.pin.base64()),
        ])
        .args(["-H", &format!("authorization: Bearer {METRICS_TOKEN}")])
        .arg(format!("{}/metrics", b.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "quilt_gateway_installs_total{outcome=\"ok\"} 2",
        "quilt_gateway_installs_total{outcome=\"refused\"} 1",
        "quilt_gateway_refusals_total{reason=\"too-large\"} 2",
        "quilt_gateway_refusals_total{reason=\"content-digest\"} 1",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

/// The OpenAPI document quiltd serves is the one `quiltd openapi` prints,
/// a valid OpenAPI 3.1 document (openapi-spec-validator, from PyPI), and
/// every operation in it is served: signed as an operator, none answers
/// `no-such-endpoint` or 405.
#[test]
fn the_openapi_document_is_valid_and_every_operation_in_it_is_served() {
    let (b, op, _) = start();
    if curl_missing() {
        return;
    }
    let printed = Command::new(quiltd()).arg("openapi").output().unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let (status, served) = curl(&b, &b.pin.base64(), &[], "/v1/openapi.json");
    assert_eq!(status, 200, "unauthenticated, like the probes");
    assert_eq!(served, printed);
    let file = b.dir.path().join("openapi.json");
    std::fs::write(&file, served.to_string()).unwrap();
    let v = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "openapi-spec-validator (tools/setup.sh installs it): {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let seed =
        quilt_gateway_auth::keys::parse_secret(&std::fs::read_to_string(&op).unwrap()).unwrap();
    let mut n = 0;
    for (path, ops) in served["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{bundle}", "hello")
                .replace("{name}", "tick")
                .replace("{action}", "restart");
            let method = method.to_uppercase();
            let body: &[u8] = if method == "POST" && path == "/mcp" {
                b"{}"
            } else {
                b""
            };
            n += 1;
            let h = sign_request(
                &seed,
                &Outgoing {
                    method: &method,
                    path: &concrete,
                    query: None,
                    body,
                    created: now(),
                    nonce: &format!("openapi-walk-{n:08}"),
                },
            )
            .unwrap();
            let out = Command::new("curl")
                .args(["-sS", "-k", "--max-time", "3", "--pinnedpubkey"])
                .arg(format!("sha256//{}", b.pin.base64()))
                .args(["-o", "-", "-w", "\n%{http_code}", "-X", &method])
                .args(["-H", &format!("content-digest: {}", h.content_digest)])
                .args(["-H", &format!("signature-input: {}", h.signature_input)])
                .args(["-H", &format!("signature: {}", h.signature)])
                .args(["-H", "accept: application/json, text/event-stream"])
                .args(["-H", "content-type: application/json"])
                .args(["--data-binary", std::str::from_utf8(body).unwrap()])
                .arg(format!("{}{concrete}", b.url))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let (reply, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
            let code: u16 = code.trim().parse().unwrap_or(0);
            assert!(
                code != 0 && code != 405,
                "{method} {concrete}: {code} {reply}"
            );
            assert!(
                !reply.contains("no-such-endpoint"),
                "{method} {concrete} is documented but not served: {reply}"
            );
        }
    }
    assert!(n >= 14, "only {n} operations documented");
}

/// A null-modem cable between two ptys: the board end's and the host
/// end's slave paths are real ttys (raw mode, reopened, flushed, as
/// `/dev/ttyUSB0` would be); the test relays bytes between the masters
/// both ways for the rest of the test. Returns (board end, host end).
fn null_modem() -> (PathBuf, PathBuf) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let end = || {
        let m = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&m).unwrap();
        unlockpt(&m).unwrap();
        let name = ptsname(&m, Vec::new()).unwrap();
        (
            std::sync::Arc::new(m),
            PathBuf::from(name.to_str().unwrap()),
        )
    };
    let ((a, a_path), (b, b_path)) = (end(), end());
    let pipe = |from: std::sync::Arc<rustix::fd::OwnedFd>,
                to: std::sync::Arc<rustix::fd::OwnedFd>| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO while no one holds the slave open: wait for one.
                match rustix::io::read(&*from, &mut buf) {
                    Ok(n) if n > 0 => {
                        let mut at = 0;
                        while at < n {
                            match rustix::io::write(&*to, &buf[at..n]) {
                                Ok(k) => at += k,
                                Err(_) => break,
                            }
                        }
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
    };
    pipe(std::sync::Arc::clone(&a), std::sync::Arc::clone(&b));
    pipe(b, a);
    (a_path, b_path)
}

#[test]
fn quilt_call_and_the_mcp_sdk_reach_the_board_over_a_serial_line() {
    let (board_end, host_end) = null_modem();
    let (b, op, bot) = start_with(&["--serial", board_end.to_str().unwrap()]);
    let pin = b.pin.to_string();
    let serial = |key: &Path, args: &[&str]| {
        let out = Command::new(quilt())
            .args(["call", "--serial"])
            .arg(&host_end)
            .args(["--board-key", &pin, "--key"])
            .arg(key)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // quiltd opens the line as it starts: retry the first call a while.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, v, err) = serial(&op, &["GET", "/v1/services"]);
        if code == 0 {
            assert_eq!(v["services"][0]["name"], "tick");
            break;
        }
        assert!(std::time::Instant::now() < until, "{v} {err}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // Session after session on the same line, roles and pins as on TCP.
    let (code, v, err) = serial(
        &bot,
        &[
            "POST",
            "/v1/tools/hello/run?tool=greet",
            "--data",
            r#"{"x":1}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["stdout"]["echo"]["input"]["x"], 1);
    let (code, v, _) = serial(&bot, &["GET", "/v1/services"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("forbidden-role")));
    let wrong = Fingerprint::of_ed25519(&[0; 32]).to_string();
    let out = Command::new(quilt())
        .args(["call", "--serial"])
        .arg(&host_end)
        .args(["--board-key", &wrong, "--key"])
        .arg(&op)
        .args(["GET", "/v1/services"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&pin));
    // The official MCP SDK through `quilt mcp --serial`.
    let Some(client) = mcp_client() else { return };
    let line = format!("serial:{}", host_end.display());
    let calls = r#"[{"name":"hello__greet","arguments":{"who":"serial"}}]"#;
    let v = mcp(
        &client,
        &[
            "stdio",
            quilt().to_str().unwrap(),
            &line,
            op.to_str().unwrap(),
            &pin,
            calls,
        ],
    );
    assert!(v["tools"].to_string().contains("hello__greet"), "{v}");
    assert_eq!(v["calls"][0]["result"]["isError"], false, "{v}");
    // And the board still serves TCP meanwhile.
    let (code, _, err) = call(&b, &op, &pin, &["GET", "/v1/services"]);
    assert_eq!(code, 0, "{err}");
}

fn curl_missing() -> bool {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed; the curl half of this test did not run");
        return true;
    }
    false
}

/// curl with the board pinned: `-k` turns off name/CA checks, the pin is
/// then the only trust (curl still checks the handshake against the key).
fn curl(b: &Board, pin: &str, args: &[&str], path: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--pinnedpubkey", &format!("sha256//{pin}")])
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", b.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn signed_curl(
    b: &Board,
    seed: &[u8; 32],
    method: &str,
    path: &str,
    body: &[u8],
    created: i64,
    nonce: &str,
) -> (u16, serde_json::Value) {
    let h = sign_request(
        seed,
        &Outgoing {
            method,
            path,
            query: None,
            body,
            created,
            nonce,
        },
    )
    .unwrap();
    let body_file = b.dir.path().join(format!("body-{nonce}"));
    std::fs::write(&body_file, body).unwrap();
    let data = format!("@{}", body_file.display());
    let mut args = vec!["-X", method, "-H", "content-type: application/json"];
    let hs = [
        format!("content-digest: {}", h.content_digest),
        format!("signature-input: {}", h.signature_input),
        format!("signature: {}", h.signature),
    ];
    for x in &hs {
        args.push("-H");
        args.push(x);
    }
    if !body.is_empty() {
        args.push("--data-binary");
        args.push(&data);
    }
    curl(b, &b.pin.base64(), &args, path)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn curl_pins_the_board_and_bad_requests_get_json_reasons() {
    if curl_missing() {
        return;
    }
    let (b, op, _) = start();
    let seed =
        quilt_gateway_auth::keys::parse_secret(&std::fs::read_to_string(&op).unwrap()).unwrap();
    let pin = b.pin.base64();
    assert_eq!(
        curl(&b, &pin, &[], "/healthz"),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (s, v) = curl(&b, &pin, &[], "/readyz");
    assert_eq!((s, v["quilt_init"].as_str()), (200, Some("stand-in")));
    // Another pin: curl refuses the board.
    let other = Fingerprint::of_ed25519(&[0; 32]).base64();
    assert_eq!(curl(&b, &other, &[], "/healthz").0, 0);
    // Unsigned.
    let (s, v) = curl(&b, &pin, &[], "/v1/bundles");
    assert_eq!((s, v["error"].as_str()), (401, Some("unsigned")));
    // Signed by hand with the shared code: works once, then is a replay.
    let (s, v) = signed_curl(
        &b,
        &seed,
        "GET",
        "/v1/bundles",
        b"",
        now(),
        "curl-nonce-000001",
    );
    assert_eq!((s, v["bundles"][0]["name"].as_str()), (200, Some("hello")));
    let (s, v) = signed_curl(
        &b,
        &seed,
        "GET",
        "/v1/bundles",
        b"",
        now(),
        "curl-nonce-000001",
    );
    assert_eq!((s, v["error"].as_str()), (401, Some("replayed")));
    // Stale.
    let (s, v) = signed_curl(
        &b,
        &seed,
        "GET",
        "/v1/bundles",
        b"",
        now() - 120,
        "curl-nonce-000002",
    );
    assert_eq!((s, v["error"].as_str()), (401, Some("stale")));
    // Malformed JSON input, properly signed.
    let (s, v) = signed_curl(
        &b,
        &seed,
        "POST",
        "/v1/tools/hello/run",
        b"{not json",
        now(),
        "curl-nonce-000003",
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("bad-json")));
    // Too large a body is refused before any signature work.
    let big = vec![b' '; quilt_proto::MAX_REQUEST];
    let (s, v) = signed_curl(
        &b,
        &seed,
        "POST",
        "/v1/tools/hello/run",
        &big,
        now(),
        "curl-nonce-000004",
    );
    assert_eq!((s, v["error"].as_str()), (413, Some("too-large")));
    // A signature from the wrong key for the keyid it claims.
    let (s, v) = {
        let h = sign_request(
            &[9; 32],
            &Outgoing {
                method: "GET",
                path: "/v1/bundles",
                query: None,
                body: b"",
                created: now(),
                nonce: "curl-nonce-000005",
            },
        )
        .unwrap();
        let op_id =
            Fingerprint::of_ed25519(&quilt_gateway_auth::keys::public_of(&seed)).to_string();
        let input = h.signature_input.replace(
            &Fingerprint::of_ed25519(&quilt_gateway_auth::keys::public_of(&[9; 32])).to_string(),
            &op_id,
        );
        let hs = [
            format!("content-digest: {}", h.content_digest),
            format!("signature-input: {input}"),
            format!("signature: {}", h.signature),
        ];
        curl(
            &b,
            &pin,
            &["-H", &hs[0], "-H", &hs[1], "-H", &hs[2]],
            "/v1/bundles",
        )
    };
    assert_eq!((s, v["error"].as_str()), (401, Some("bad-signature")));
    // No such endpoint, asked by an operator.
    let (s, v) = signed_curl(
        &b,
        &seed,
        "GET",
        "/v1/nothing",
        b"",
        now(),
        "curl-nonce-000006",
    );
    assert_eq!((s, v["error"].as_str()), (404, Some("no-such-endpoint")));
}

/// The official MCP TypeScript SDK's client (tests/mcp-client), installed
/// once by its install.sh; `None` (and a SKIPPED line) without Node.js.
fn mcp_client() -> Option<PathBuf> {
    static SCRIPT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            if Command::new("node").arg("--version").output().is_err() {
                eprintln!("SKIPPED: Node.js is not installed; the MCP SDK client did not run");
                return None;
            }
            let install =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp-client/install.sh");
            let out = Command::new(install)
                .arg(quiltd().with_file_name("mcp-client-host"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
        })
        .clone()
}

fn mcp(client: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(client)
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "the MCP client printed no JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        v.get("failed").is_none(),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

fn tool_names(v: &serde_json::Value) -> Vec<String> {
    v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_official_mcp_sdk_lists_and_calls_tools_through_quilt_mcp_and_a_bearer_token() {
    let Some(client) = mcp_client() else {
        return;
    };
    let (b, op, bot) = start();
    let pin = b.pin.to_string();
    let calls = serde_json::json!([
        {"name": "hello__greet", "arguments": {"who": "mcp"}},
        {"name": "board.services"},
        {"name": "hello__gone"},
        {"name": "no_such_tool"},
    ])
    .to_string();

    // stdio through `quilt mcp`, an operator key.
    let quilt = quilt();
    let v = mcp(
        &client,
        &[
            "stdio",
            quilt.to_str().unwrap(),
            &b.url,
            op.to_str().unwrap(),
            &pin,
            &calls,
        ],
    );
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    assert_eq!(v["server"]["name"], "quiltd");
    let names = tool_names(&v);
    assert_eq!(
        names,
        [
            "hello__greet",
            "hello__gone",
            "board.services",
            "board.service"
        ],
        "{v}"
    );
    let greet = &v["tools"][0];
    assert_eq!(greet["description"], "Greets whoever it is given.");
    assert_eq!(greet["inputSchema"]["required"][0], "who");
    assert_eq!(greet["outputSchema"]["type"], "object");
    let c = &v["calls"];
    // The stand-in echoes what the board's container would get on stdin.
    assert_eq!(c[0]["result"]["isError"], false, "{v}");
    assert_eq!(
        c[0]["result"]["structuredContent"]["echo"],
        serde_json::json!({"tool": "greet", "input": {"who": "mcp"}})
    );
    assert_eq!(
        c[1]["result"]["structuredContent"]["services"][0]["name"],
        "tick"
    );
    // A bundle that is gone by the time it is called: a tool error, with why.
    assert_eq!(c[2]["result"]["isError"], true, "{v}");
    let text = c[2]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not installed"), "{text}");
    // An unknown tool is a protocol error (invalid params).
    assert_eq!(c[3]["code"], -32602, "{v}");

    // Streamable HTTP with a bearer token minted by `quilt token`, an
    // agent key: no operator tools, and they refuse if called by name.
    let out = Command::new(&quilt)
        .args([
            "token",
            "--board",
            &b.url,
            "--board-key",
            &pin,
            "--ttl",
            "120",
            "--key",
        ])
        .arg(&bot)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("qbt_"), "{token}");
    let v = mcp(&client, &["http", &b.url, &token, &pin, &calls]);
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    assert_eq!(tool_names(&v), ["hello__greet", "hello__gone"], "{v}");
    let c = &v["calls"];
    assert_eq!(
        c[0]["result"]["structuredContent"]["echo"]["input"]["who"],
        "mcp"
    );
    assert_eq!(c[1]["result"]["isError"], true, "{v}");
    let text = c[1]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("operator tool"), "{text}");

    // The token is for /mcp only; a forged or wrong-board pin is refused.
    if !curl_missing() {
        let bearer = format!("authorization: Bearer {token}");
        let (s, v) = curl(&b, &b.pin.base64(), &["-H", &bearer], "/v1/bundles");
        assert_eq!(
            (s, v["error"].as_str()),
            (401, Some("bearer-not-here")),
            "{v}"
        );
        let (s, v) = curl(
            &b,
            &b.pin.base64(),
            &[
                "-X",
                "POST",
                "-H",
                "authorization: Bearer qbt_forged",
                "--data",
                "{}",
            ],
            "/mcp",
        );
        assert_eq!((s, v["error"].as_str()), (401, Some("bad-token")), "{v}");
    }
    let wrong = Fingerprint::of_ed25519(&[0; 32]).to_string();
    let out = Command::new("node")
        .arg(&client)
        .args(["http", &b.url, &token, &wrong, &calls])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong pin must not connect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not the pinned"), "{text}");
    // `quilt mcp` with a wrong pin fails at once, saying so.
    let out = Command::new(&quilt)
        .args(["mcp", "--board", &b.url, "--board-key", &wrong, "--key"])
        .arg(&op)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the") && err.contains(&pin), "{err}");
}

#[test]
fn operators_control_services_and_follow_logs_and_events_as_server_sent_events() {
    let (b, op, bot) = start();
    let pin = b.pin.to_string();
    let (code, v, err) = call(&b, &op, &pin, &["POST", "/v1/services/tick/restart"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v, serde_json::json!({"name": "tick", "state": "restart"}));
    let (code, v, _) = call(&b, &op, &pin, &["POST", "/v1/services/nope/stop"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("not-found")));
    let (code, v, _) = call(&b, &op, &pin, &["POST", "/v1/services/tick/explode"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("no-such-endpoint")));
    let (code, v, _) = call(&b, &bot, &pin, &["POST", "/v1/services/tick/stop"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("forbidden-role")));
    let (code, v, err) = call(&b, &op, &pin, &["GET", "/v1/services/tick/logs"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["text"], "tick 1\n");
    let (code, v, err) = call(&b, &op, &pin, &["GET", "/v1/slots"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (v["booted"].as_str(), v["primary_version"].as_u64()),
        (Some("a"), Some(3))
    );
    assert_eq!(
        (v["failed_version"].as_u64(), v["fallbacks"].as_u64()),
        (Some(2), Some(1))
    );
    let (code, v, _) = call(&b, &bot, &pin, &["GET", "/v1/slots"]);
    assert_eq!((code, v["error"].as_str()), (3, Some("forbidden-role")));
    if curl_missing() {
        return;
    }
    let seed =
        quilt_gateway_auth::keys::parse_secret(&std::fs::read_to_string(&op).unwrap()).unwrap();
    // Followed logs and events: SSE, read for a second, then hung up on.
    for (path, kind, want) in [
        ("/v1/services/tick/logs?follow=true", "log", "tick 3"),
        ("/v1/events", "event", "event=stand-in n=3"),
    ] {
        let (bare, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let h = sign_request(
            &seed,
            &Outgoing {
                method: "GET",
                path: bare,
                query,
                body: b"",
                created: now(),
                nonce: &format!("sse-nonce-{kind}-0001"),
            },
        )
        .unwrap();
        let out = Command::new("curl")
            .args(["-sS", "-N", "-k", "--max-time", "1.5", "--pinnedpubkey"])
            .arg(format!("sha256//{}", b.pin.base64()))
            .args(["-H", &format!("content-digest: {}", h.content_digest)])
            .args(["-H", &format!("signature-input: {}", h.signature_input)])
            .args(["-H", &format!("signature: {}", h.signature)])
            .arg(format!("{}{path}", b.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("event: {kind}")), "{text}");
        assert!(text.contains(want), "{path}: {text}");
    }
}

#[test]
fn metrics_scrape_with_the_token_and_pass_promtool() {
    if curl_missing() {
        return;
    }
    let (b, op, bot) = start();
    let pin = b.pin.to_string();
    // Something to count: two runs (one refused by the board), a refusal.
    let (code, _, err) = call(
        &b,
        &bot,
        &pin,
        &["POST", "/v1/tools/hello/run", "--data", "{}"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = call(&b, &bot, &pin, &["POST", "/v1/tools/nope/run"]);
    assert_eq!(code, 3);
    let (code, _, _) = call(&b, &bot, &pin, &["GET", "/v1/services"]);
    assert_eq!(code, 3);
    let scrape = |token: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-k", "--pinnedpubkey"])
            .arg(format!("sha256//{}", b.pin.base64()))
            .args([
                "-H",
                &format!("authorization: Bearer {token}"),
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!("{}/metrics", b.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };
    let (status, wrong) = scrape("not-the-token-0123456789abcdef0123");
    assert_eq!(status, "401", "{wrong}");
    let (status, text) = scrape(METRICS_TOKEN);
    assert_eq!(status, "200", "{text}");
    for want in [
        "quilt_gateway_runs_total{via=\"rest\",outcome=\"ok\"} 1",
        "quilt_gateway_runs_total{via=\"rest\",outcome=\"refused\"} 1",
        "quilt_gateway_refusals_total{reason=\"forbidden-role\"} 1",
        "quilt_gateway_refusals_total{reason=\"bad-token\"} 1",
        "quilt_init_up 1",
        "quilt_service_cpu_seconds_total{service=\"tick\"} 0.000007",
        "quilt_bundles_installed 1",
        "quilt_tools 2",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    // A signed request works too (for people, not Prometheus).
    let (code, _, err) = call(&b, &op, &pin, &["GET", "/metrics"]);
    assert_eq!(code, 0, "{err}");
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Err(_) => eprintln!("SKIPPED: promtool is not installed (tools/setup.sh installs it)"),
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// An unauthenticated client that sends a request's headers and then
/// stalls its body held its connection slot for ever (the body is read
/// before the signature can be checked, and nothing timed that read), so
/// 256 of them shut every client out. Now the body has 10 s.
#[test]
fn stalled_bodies_are_cut_so_they_cannot_hold_every_connection_slot() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (b, op_key, _) = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let board = quilt::gateway::Board::new(&b.url, &op_key, &b.pin.to_string()).unwrap();
        // Fill the slots: a connection past the last one waits in the
        // listen backlog, so its handshake does not finish.
        let mut held = Vec::new();
        while held.len() < 300 {
            let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(3), board.tls_stream()).await
            else {
                break;
            };
            s.write_all(
                b"POST /v1/tools/hello/run HTTP/1.1\r\nhost: b\r\ncontent-length: 1000\r\n\r\nab",
            )
            .await
            .unwrap();
            held.push(s);
        }
        assert_eq!(held.len(), 256, "quiltd's slots (MAX_CONNECTIONS)");
        // A signed request still gets through once the body deadline
        // frees the slots.
        let t0 = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(40),
            board.request("GET", "/v1/services", Vec::new(), &[]),
        )
        .await
        .expect("no answer in 40 s: stalled bodies hold every slot")
        .unwrap();
        assert_eq!(answer.status, 200);
        eprintln!(
            "a signed request behind 256 stalled bodies answered in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        // The stalled client was told why.
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), held[0].read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains(r#""error":"slow-body""#), "{reply}");
    });
}
