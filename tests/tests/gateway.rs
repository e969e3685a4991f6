//! quiltd on a board, with real parts end to end: quilt-net brings the NIC
//! up by DHCP, quiltd serves HTTPS as a non-root service that drives PID 1
//! only through the control socket its boot config grants, and the host's
//! own `quilt call` reaches it through QEMU's forwarded port, signs every
//! request and pins the board's key. A tool runs from a signed bundle. The
//! official MCP TypeScript SDK lists the board's tools (from the signed
//! manifests) and calls them, through `quilt mcp` over stdio and straight
//! over Streamable HTTP with a bearer token `quilt token` minted.

use quilt_system_tests::{
    client_key, gateway_config, gateway_image, host_binary, mcp_client, quilt_call, work_dir,
    Gateway, VmOpts,
};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
        .config_toml(&gateway_config(&["list", "run", "bundles"], true, ""))
        .build()
        .unwrap();
    let opts = VmOpts {
        timeout: T,
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

    mcp_through_the_gateway(&url, &pin, &op_key, &bot_key);
    prometheus_scrapes_the_board(&url, &pin, &bot_key);
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    // Scraped at all: the board's quilt-init is up.
    let runs_q = r#"sum(quilt_gateway_runs_total{via="rest"})"#;
    let until = Instant::now() + Duration::from_secs(90);
    let before = loop {
        if query("quilt_init_up") == Some(1.0) {
            if let Some(n) = query(runs_q) {
                break n;
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
        match query(runs_q) {
            Some(after) if after > before => break,
            _ => {}
        }
        assert!(
            Instant::now() < until,
            "the run counter did not move past {before}: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The MCP half: the official TypeScript SDK against the same board.
fn mcp_through_the_gateway(url: &str, pin: &str, op_key: &Path, bot_key: &Path) {
    let calls = json!([
        {"name": "examples.text-tools__count", "arguments": {"text": "the cat and the hat", "top": 1}},
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
    assert!(v.get("failed").is_none(), "{v}\n{err}");
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
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
    assert_eq!(c[0]["result"]["isError"], false, "{v}");
    assert_eq!(
        c[0]["result"]["structuredContent"],
        json!({"words": 5, "lines": 1, "chars": 19, "top": [{"word": "the", "count": 2}]}),
        "{v}"
    );
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
    assert!(v.get("failed").is_none(), "{v}\n{err}");
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
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
