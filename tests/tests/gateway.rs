//! quiltd on a board, with real parts end to end: quilt-net brings the NIC
//! up by DHCP, quiltd serves HTTPS as a non-root service that drives PID 1
//! only through the control socket its boot config grants, and the host's
//! own `quilt call` reaches it through QEMU's forwarded port, signs every
//! request and pins the board's key. A tool runs from a signed bundle. The
//! official MCP TypeScript SDK lists the board's tools (from the signed
//! manifests) and calls them, through `quilt mcp` over stdio and straight
//! over Streamable HTTP with a bearer token `quilt token` minted. A 50 MiB
//! bundle streams in through `quilt push`, is installed by the board's
//! trust store and runs; a tampered one is refused and changes nothing.

use quilt_system_tests::{
    assert_counted, assert_mcp_connected, client_key, count_call, data_tool, free_host_port,
    gateway_config, gateway_image, host_binary, mcp_client, mcp_listed, quilt_call, signed_bundle,
    signed_example, unix_now, work_dir, Curl, Gateway, Signed, Signer, VmOpts,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A request signed by `by` (claiming `claims`' keyid if given).
fn signed(by: Signer, claims: Option<String>, created: i64, nonce: &str) -> Signed<'_> {
    Signed {
        by,
        claims,
        created,
        nonce,
    }
}

/// The routes only an operator may call (`quiltd`'s route table): an
/// agent's signed request to any of them is refused with 403.
const OPERATOR_ROUTES: [(&str, &str); 6] = [
    ("get", "/v1/services"),
    ("post", "/v1/services/{name}/{action}"),
    ("get", "/v1/services/{name}/logs"),
    ("get", "/v1/events"),
    ("get", "/v1/slots"),
    ("post", "/v1/bundles"),
];

/// curl, a client that is not `quilt`, against every operation the board's
/// own OpenAPI document lists: open ones answer unsigned; every other one
/// refuses, each with its reason in JSON, an unsigned request, a key the
/// board does not know, a signature that does not match the key it names,
/// a stale one, a spent nonce, and (operator routes) an agent; and then
/// answers a well-signed request of the right role.
fn every_route_refuses_bad_requests_with_reasons(
    url: &str,
    pin: &str,
    op_key: &Path,
    bot_key: &Path,
    stranger_key: &Path,
) {
    let curl = Curl::new(url, pin, &work_dir().unwrap().join("gateway-curl")).unwrap();
    let (op, bot, stranger) = (
        Signer::load(op_key).unwrap(),
        Signer::load(bot_key).unwrap(),
        Signer::load(stranger_key).unwrap(),
    );
    let (s, doc) = curl.get(&[], "/v1/openapi.json").unwrap();
    assert_eq!(s, 200, "{doc}");
    let run = std::process::id();
    let mut n = 0;
    let mut nonce = || {
        n += 1;
        format!("sweep-{run}-{n:06}-nonce")
    };
    // A nonce the operator spends on a harmless request: any request
    // signed with it later is a replay.
    let spent = nonce();
    let (s, v) = curl
        .signed(
            &signed(op, None, unix_now(), &spent),
            "GET",
            "/v1/bundles",
            b"",
            &[],
        )
        .unwrap();
    assert_eq!(s, 200, "{v}");

    let mut swept = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, spec) in ops.as_object().expect("operations") {
            let concrete = path
                .replace("{bundle}", "examples%2Fhello")
                .replace("{name}", "quiltd")
                .replace("{action}", "restart");
            let m = method.to_uppercase();
            let body: &[u8] = if m == "POST" { b"{}" } else { b"" };
            let what = format!("{m} {path}");
            if spec["security"] == json!([{}]) {
                let (s, v) = curl.get(&["-X", &m], &concrete).unwrap();
                assert_eq!(s, 200, "{what} is open: {v}");
                swept.push(what);
                continue;
            }
            let refused = |(s, v): (u16, serde_json::Value), want: (u16, &str)| {
                assert_eq!((s, v["error"].as_str().unwrap_or("")), want, "{what}: {v}");
                assert!(
                    !v["message"].as_str().unwrap_or("").is_empty(),
                    "{what}: no reason given: {v}"
                );
            };
            refused(
                curl.get(&["-X", &m, "--data-binary", "{}"], &concrete)
                    .unwrap(),
                (401, "unsigned"),
            );
            // Each signed the wrong way: (signer, keyid claimed, made at,
            // a nonce already spent, the refusal).
            let now = unix_now();
            for (by, claims, created, reuse, want) in [
                (stranger, None, now, false, (401, "unknown-key")),
                (
                    stranger,
                    Some(op.keyid()),
                    now,
                    false,
                    (401, "bad-signature"),
                ),
                (op, None, now - 600, false, (401, "stale")),
                (op, None, now, true, (401, "replayed")),
            ] {
                let fresh = nonce();
                let n = if reuse { &spent } else { &fresh };
                refused(
                    curl.signed(&signed(by, claims, created, n), &m, &concrete, body, &[])
                        .unwrap(),
                    want,
                );
            }
            let operator_only = OPERATOR_ROUTES.contains(&(method.as_str(), path.as_str()));
            let fresh = nonce();
            let (s, v) = curl
                .signed(
                    &signed(bot, None, unix_now(), &fresh),
                    &m,
                    &concrete,
                    body,
                    &["--max-time", "5"],
                )
                .unwrap();
            if operator_only {
                refused((s, v), (403, "forbidden-role"));
            } else {
                assert!(
                    s != 0 && s != 401 && s != 403,
                    "{what}: an agent's signed request was not let through: {s} {v}"
                );
            }
            swept.push(what);
        }
    }
    assert!(
        swept.len() >= 14,
        "the document lists too little: {swept:?}"
    );
    eprintln!("refusals checked on {} operations: {swept:?}", swept.len());

    // The operator's own calls answer (the streams for 3 s, cut by curl;
    // the status is sent first); what quiltd's grant lacks (`slots`,
    // `services`) the board refuses, whatever the caller's role.
    for (m, path, want) in [
        ("GET", "/v1/services/quiltd/logs", (200, "")),
        ("GET", "/v1/events", (200, "")),
        ("GET", "/v1/tools", (200, "")),
        ("GET", "/v1/slots", (403, "denied-by-board")),
        (
            "POST",
            "/v1/services/quiltd/restart",
            (403, "denied-by-board"),
        ),
    ] {
        let fresh = nonce();
        let body: &[u8] = if m == "POST" { b"{}" } else { b"" };
        let (s, v) = curl
            .signed(
                &signed(op, None, unix_now(), &fresh),
                m,
                path,
                body,
                &["--max-time", "3"],
            )
            .unwrap();
        assert_eq!(
            (s, v["error"].as_str().unwrap_or("")),
            want,
            "{m} {path}: {v}"
        );
    }
}

/// What the host's Prometheus scrapes the board's /metrics with.
const METRICS_TOKEN: &str = "qemu-test-metrics-token-0123456789abcdef";
const T: Duration = Duration::from_secs(300);

/// `quilt call` against the board: (exit code, JSON reply, stderr).
fn call(url: &str, key: &Path, pin: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    quilt_call(url, key, pin, args).unwrap()
}

#[test]
fn an_operator_and_an_agent_reach_quiltd_through_the_network_with_signed_pinned_requests() {
    let dir = work_dir().unwrap().join("gateway-keys");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (op_key, op_pub) = client_key(&dir, "op").unwrap();
    let (bot_key, bot_pub) = client_key(&dir, "bot").unwrap();
    let (stranger_key, _) = client_key(&dir, "stranger").unwrap();
    let clients = format!("operator op {op_pub}\nagent bot {bot_pub}\n");
    let img = gateway_image(&clients)
        .unwrap()
        .signed_example("hello")
        .signed_example("text-tools")
        .bytes("/etc/quilt/metrics-token", METRICS_TOKEN, 0o600)
        .config_toml(&gateway_config(
            &["list", "run", "bundles", "install", "logs", "events"],
            true,
            "",
        ))
        .build()
        .unwrap();
    let opts = VmOpts {
        timeout: T,
        // The streamed 50 MiB bundle: a memfd, then the store in RAM.
        mem_mb: 1536,
        ..VmOpts::default()
    };
    let gw = Gateway::boot(&img, opts, T).unwrap();
    let (url, pin) = (gw.url.clone(), gw.pin.clone());

    // QEMU accepts on the host side before the guest listens: retry the
    // first call until quiltd answers.
    let services = gw
        .wait_answers(&op_key, "/v1/services", Duration::from_secs(60))
        .unwrap();
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap_or_else(|| panic!("{services}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for want in ["net", "prep", "quiltd"] {
        assert!(names.contains(&want), "{want} not in {services}");
    }

    // An agent runs a tool from a signed bundle, through quiltd and PID 1.
    let (code, v, err) = call(
        &url,
        &bot_key,
        &pin,
        &[
            "POST",
            "/v1/tools/examples%2Fhello/run",
            "--data",
            r#"{"name":"gateway"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["status"], 0, "{v}");
    let out = v["stdout"].to_string();
    assert!(out.contains("gateway"), "the tool's output: {v}");

    // The agent may not list services (an operator's route); a key the
    // board does not know is refused; a wrong pin never gets a request
    // through.
    let (code, v, err) = call(&url, &bot_key, &pin, &["GET", "/v1/services"]);
    assert_eq!(code, 3, "{v} {err}");
    assert_eq!(v["error"], "forbidden-role", "{v} {err}");
    let (code, v, err) = call(&url, &stranger_key, &pin, &["GET", "/v1/bundles"]);
    assert_eq!(code, 3, "{v} {err}");
    assert_eq!(v["error"], "unknown-key", "{v} {err}");
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (code, _, err) = call(&url, &op_key, wrong, &["GET", "/v1/services"]);
    assert_eq!(code, 1, "{err}");

    // PID 1 saw quiltd only through its grant: quiltd runs as uid 900 and
    // its socket is the one the boot config made.
    let ev = gw.vm.events();
    let granted = ev
        .iter()
        .find(|e| e.name() == Some("control-granted"))
        .expect("no control-granted event");
    assert_eq!(granted.get("name"), Some("quiltd"));
    assert_eq!(granted.get("uid"), Some("900"));
    let console = gw.vm.console_text();
    assert!(
        console.contains("event=auth-refused"),
        "refusals are logged:\n{console}"
    );

    every_route_refuses_bad_requests_with_reasons(&url, &pin, &op_key, &bot_key, &stranger_key);
    mcp_through_the_gateway(&url, &pin, &op_key, &bot_key);
    prometheus_scrapes_the_board(&url, &pin, &bot_key);
    a_large_bundle_streams_in_and_runs(&url, &pin, &op_key, &bot_key);
    installs_are_counted_by_outcome(&url);
}

/// `/metrics` as a scraper gets it (the scrape token, the board unpinned).
fn scrape(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "30", "-H"])
        .arg(format!("Authorization: Bearer {METRICS_TOKEN}"))
        .arg(format!("{url}/metrics"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Debian's `promtool check metrics` takes the board's scrape (lint
/// included: names, units, help texts).
fn promtool_passes(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed; tools/setup.sh installs it");
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

/// A sample's value in a scrape: the line that starts with `series `.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// After the pushes (the 50 MiB bundle installed, the tampered one
/// refused by the trust store), quilt-init's own install counters, which
/// count every job on the board, show both, the refusal under the check
/// that made it; the store's size counts the 50 MiB; and nothing was
/// OOM-killed.
fn installs_are_counted_by_outcome(url: &str) {
    let text = scrape(url);
    promtool_passes(&text);
    let installed = sample(&text, r#"quilt_installs_total{outcome="installed"}"#);
    assert!(installed.is_some_and(|n| n >= 1.0), "{text}");
    let refused = sample(&text, r#"quilt_installs_total{outcome="refused"}"#);
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "no refused install counted:\n{text}"
    );
    let tampered = sample(&text, r#"quilt_install_refusals_total{reason="tampered"}"#);
    assert_eq!(tampered, Some(1.0), "{text}");
    let store = sample(&text, "quilt_store_bytes").unwrap_or(0.0);
    assert!(store >= (50u64 << 20) as f64, "{text}");
    eprintln!("store after the pushes: {store} bytes");
    assert_eq!(
        sample(&text, r#"quilt_service_oom_kills_total{service="quiltd"}"#),
        Some(0.0),
        "{text}"
    );
}

/// `quilt push`: (exit code, JSON reply, stderr).
fn push(url: &str, key: &Path, pin: &str, file: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(host_binary("quilt", "quilt").unwrap())
        .args([
            "push",
            "--json",
            "--quiet",
            "--board",
            url,
            "--board-key",
            pin,
            "--key",
        ])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tool named `name` that reports the size of the `len` bytes of
/// incompressible data it carries.
fn tool_dir(name: &str, len: usize) -> PathBuf {
    let dir = work_dir().unwrap().join("gateway-push").join(name);
    data_tool(&dir, name, len, 0x9a7e_0050 + len as u64).unwrap();
    dir
}

/// A 50 MiB signed bundle streams through the gateway into the board's
/// installer and runs; an agent may not install, and a tampered bundle is
/// refused by the trust store with its reason, leaving what is installed.
fn a_large_bundle_streams_in_and_runs(url: &str, pin: &str, op_key: &Path, bot_key: &Path) {
    const MIB: usize = 50;
    let dir = tool_dir("big-push", MIB << 20);
    let qb = signed_bundle(&dir).unwrap().qb;
    let len = std::fs::metadata(&qb).unwrap().len();

    let t0 = Instant::now();
    let (code, v, err) = push(url, op_key, pin, &qb);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(v["name"], "big-push", "{v}");
    assert_eq!(v["already_installed"], false, "{v}");
    assert!(v["chunks_written"].as_u64().unwrap_or(0) > 0, "{v}");
    eprintln!(
        "streamed install: {len} bytes sent and installed in {:.1} s ({:.2} MiB/s, TCG guest; board-side {} ms)",
        took.as_secs_f64(),
        len as f64 / 1048576.0 / took.as_secs_f64(),
        v["micros"].as_u64().unwrap_or(0) / 1000
    );
    let (code, v, err) = call(
        url,
        bot_key,
        pin,
        &["POST", "/v1/tools/big-push/run", "--data", "{}"],
    );
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(v["stdout"]["big"], (MIB << 20) as u64, "{v}");

    // An agent may not install, whatever it sends.
    let (hello, _) = signed_example("hello").unwrap();
    let (code, v, err) = push(url, bot_key, pin, &hello);
    assert_eq!(
        (code, v["error"].as_str()),
        (3, Some("forbidden-role")),
        "{v}\n{err}"
    );
    // A bundle changed after signing (one bit of its content): signed
    // for transport by the operator, refused by the board's trust store
    // with the reason.
    let small = signed_bundle(&tool_dir("tampered", 256 << 10)).unwrap().qb;
    let mut bytes = std::fs::read(&small).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let tampered = work_dir().unwrap().join("gateway-push/tampered.qb");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, v, err) = push(url, op_key, pin, &tampered);
    assert_eq!(code, 3, "{v}\n{err}");
    assert_eq!(v["error"], "failed", "{v}");
    assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{v}");
    eprintln!("tampered bundle refused: {}", v["message"]);
    let (code, v, err) = call(url, bot_key, pin, &["GET", "/v1/bundles"]);
    assert_eq!(code, 0, "{v}\n{err}");
    let listed = v["bundles"].to_string();
    assert!(!listed.contains("\"tampered\""), "{v}");
    assert!(listed.contains("\"big-push\""), "{v}");
    // Nothing was lost: both bundles still run.
    let (code, v, err) = call(
        url,
        bot_key,
        pin,
        &[
            "POST",
            "/v1/tools/examples%2Fhello/run",
            "--data",
            r#"{"name":"after"}"#,
        ],
    );
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(v["stdout"].to_string().contains("after"), "{v}");
    let (code, v, err) = call(
        url,
        bot_key,
        pin,
        &["POST", "/v1/tools/big-push/run", "--data", "{}"],
    );
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(v["stdout"]["big"], (MIB << 20) as u64, "{v}");
}

/// Debian's Prometheus server scrapes the board through the forwarded
/// port with the scrape token, and its query API sees the run counter
/// move when an agent runs a tool.
fn prometheus_scrapes_the_board(url: &str, pin: &str, bot_key: &Path) {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("prometheus is not installed; tools/setup.sh installs it");
    }
    let dir = work_dir().unwrap().join("prometheus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, METRICS_TOKEN).unwrap();
    let target = url.trim_start_matches("https://");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 2s, scrape_timeout: 2s}}\n\
             scrape_configs:\n\
             - job_name: quilt-board\n  scheme: https\n  tls_config: {{insecure_skip_verify: true}}\n  \
             authorization: {{credentials_file: {}}}\n  static_configs: [{{targets: [\"{target}\"]}}]\n",
            token.display()
        ),
    )
    .unwrap();
    let port = free_host_port().unwrap();
    let mut server = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let query = |q: &str| -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sS", "-G", "--data-urlencode", &format!("query={q}")])
            .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    // Scraped at all: the board's quilt-init is up. Two run counters:
    // quiltd's own (gateway runs) and quilt-init's (every run).
    let runs_q = r#"sum(quilt_gateway_runs_total{via="rest"})"#;
    let board_q = r#"sum(quilt_runs_total{outcome="ok"})"#;
    let until = Instant::now() + Duration::from_secs(90);
    let (before, board_before) = loop {
        if query("quilt_init_up") == Some(1.0) {
            if let (Some(n), Some(b)) = (query(runs_q), query(board_q)) {
                break (n, b);
            }
        }
        assert!(
            Instant::now() < until,
            "Prometheus never scraped the board: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let (code, v, err) = call(
        url,
        bot_key,
        pin,
        &[
            "POST",
            "/v1/tools/examples%2Fhello/run",
            "--data",
            r#"{"name":"prometheus"}"#,
        ],
    );
    assert_eq!(code, 0, "{v} {err}");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match (query(runs_q), query(board_q)) {
            (Some(after), Some(board)) if after > before && board > board_before => break,
            _ => {}
        }
        assert!(
            Instant::now() < until,
            "the run counter did not move past {before}: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // quilt-init's own figures are there and plausible.
    let rss = query("quilt_init_resident_bytes").unwrap_or(0.0);
    assert!(rss > 100e3 && rss < 64e6, "quilt-init RSS {rss}");
    let fds = query("quilt_init_open_fds").unwrap_or(0.0);
    assert!(fds > 3.0 && fds < 1024.0, "quilt-init fds {fds}");
    let _ = server.kill();
    let _ = server.wait();
}

/// The MCP half: the official TypeScript SDK against the same board.
fn mcp_through_the_gateway(url: &str, pin: &str, op_key: &Path, bot_key: &Path) {
    let calls = json!([
        count_call(),
        // Fails on purpose: the tool's own error, as an MCP tool error.
        {"name": "examples.text-tools__slug", "arguments": {"title": "!!!"}},
        {"name": "board.services"},
    ])
    .to_string();
    let quilt = host_binary("quilt", "quilt").unwrap();
    let quilt = quilt.to_str().unwrap();

    // stdio: the SDK launches `quilt mcp`, which signs every message.
    let (v, err) =
        mcp_client(&["stdio", quilt, url, op_key.to_str().unwrap(), pin, &calls]).unwrap();
    assert_mcp_connected(&v, &err);
    let tools = v["tools"].as_array().unwrap();
    let count = tools
        .iter()
        .find(|t| t["name"] == "examples.text-tools__count")
        .unwrap_or_else(|| panic!("count not listed: {v}"));
    assert!(
        count["description"]
            .as_str()
            .unwrap()
            .starts_with("Counts the words"),
        "{count}"
    );
    assert_eq!(count["inputSchema"]["required"], json!(["text"]));
    assert_eq!(
        count["outputSchema"]["required"],
        json!(["words", "lines", "chars"])
    );
    let slug = tools
        .iter()
        .find(|t| t["name"] == "examples.text-tools__slug")
        .unwrap_or_else(|| panic!("slug not listed: {v}"));
    assert!(
        slug.get("outputSchema").is_none(),
        "a string result has no MCP output schema"
    );
    assert!(tools.iter().any(|t| t["name"] == "board.services"), "{v}");
    let c = &v["calls"];
    assert_counted(&c[0]);
    assert_eq!(c[1]["result"]["isError"], true, "{v}");
    assert_eq!(
        c[1]["result"]["structuredContent"]["error"]["code"], "empty_slug",
        "{v}"
    );
    let services = c[2]["result"]["structuredContent"]["services"].to_string();
    assert!(services.contains("\"quiltd\""), "{v}");

    // Streamable HTTP with a bearer token, as an agent: the same tools but
    // not the operator's, which refuse when called by name anyway.
    let out = Command::new(quilt)
        .args(["token", "--board", url, "--board-key", pin, "--key"])
        .arg(bot_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (v, err) = mcp_client(&["http", url, &token, pin, &calls]).unwrap();
    let names = mcp_listed(&v, &err);
    assert_eq!(
        names,
        ["examples.text-tools__count", "examples.text-tools__slug"],
        "{v}"
    );
    let c = &v["calls"];
    assert_eq!(c[0]["result"]["structuredContent"]["words"], 5, "{v}");
    assert_eq!(
        c[1]["result"]["structuredContent"]["error"]["code"], "empty_slug",
        "{v}"
    );
    assert_eq!(c[2]["result"]["isError"], true, "{v}");
}
