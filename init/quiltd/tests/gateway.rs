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
