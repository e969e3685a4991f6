//! An air-gapped board reached over a serial line: no network at all, quiltd
//! serving the gateway on a UART (`--serial /dev/ttyS2`), and the
//! host's `quilt call --serial` and the official MCP TypeScript SDK through
//! `quilt mcp --serial` on QEMU's end of it (a Unix socket chardev), with
//! the same TLS pinning and signed requests as over the network.

use quilt_system_tests::{
    client_key, guest_binary, host_binary, mcp_client, work_dir, ImageBuilder, Vm, VmOpts,
};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(300);

const CONFIG: &str = r#"
[[service]]
name = "prep"
exec = ["/bin/sh", "-c", "mkdir -p /run/quiltd && chown 900:900 /run/quiltd /dev/ttyS2"]
restart = "never"

[[service]]
name = "quiltd"
exec = ["/usr/bin/quiltd", "serve", "--state-dir", "/run/quiltd", "--serial", "/dev/ttyS2"]
uid = 900
gid = 900
after = ["prep"]
control = ["list", "run", "bundles"]
"#;

/// `quilt call --serial`: (exit code, JSON reply, stderr).
fn call(line: &Path, key: &Path, pin: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(host_binary("quilt", "quilt").unwrap())
        .arg("call")
        .arg("--serial")
        .arg(line)
        .args(["--board-key", pin, "--key"])
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_board_without_a_network_is_an_mcp_server_over_its_serial_line() {
    let dir = work_dir().unwrap().join("gateway-serial");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (op_key, op_pub) = client_key(&dir, "op").unwrap();
    let (bot_key, bot_pub) = client_key(&dir, "bot").unwrap();
    let img = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .signed_example("hello")
        .signed_example("text-tools")
        .file(
            "/usr/bin/quiltd",
            guest_binary("quiltd", "quiltd").unwrap(),
            0o755,
        )
        .bytes(
            "/etc/quilt/trust/authorized-clients",
            format!("operator op {op_pub}\nagent bot {bot_pub}\n"),
            0o644,
        )
        .config_toml(CONFIG)
        .build()
        .unwrap();
    let line = dir.join("line.sock");
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            timeout: T,
            // A third 16550 at the legacy ttyS2 address (IRQ 4, shared
            // with the console's), its other end a Unix socket.
            extra_args: vec![
                "-chardev".into(),
                format!("socket,id=gw,path={},server=on,wait=off", line.display()),
                "-device".into(),
                "isa-serial,chardev=gw,iobase=0x3e8,irq=4".into(),
            ],
            ..VmOpts::default()
        },
    )
    .unwrap();
    let listening = vm.wait_for_console("event=serial-listening", T).unwrap();
    let pin = vm
        .console_text()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("board-key="))
        .unwrap_or_else(|| panic!("no board-key before {listening:?}"))
        .to_owned();

    // The line is quiltd's a moment after it says so: retry the first call.
    let until = Instant::now() + Duration::from_secs(90);
    let services = loop {
        let (code, v, err) = call(&line, &op_key, &pin, &["GET", "/v1/services"]);
        if code == 0 {
            break v;
        }
        assert!(
            Instant::now() < until,
            "no answer over the serial line: {err}\n{}",
            vm.console_text()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(services.to_string().contains("\"quiltd\""), "{services}");
    let t0 = Instant::now();
    let (code, v, err) = call(
        &line,
        &bot_key,
        &pin,
        &[
            "POST",
            "/v1/tools/examples%2Fhello/run",
            "--data",
            r#"{"name":"serial"}"#,
        ],
    );
    eprintln!(
        "a tool run over the serial line: {} ms (TCG guest)",
        t0.elapsed().as_millis()
    );
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(v["stdout"].to_string().contains("serial"), "{v}");
    let (code, v, err) = call(&line, &bot_key, &pin, &["GET", "/v1/services"]);
    assert_eq!(
        (code, v["error"].as_str()),
        (3, Some("forbidden-role")),
        "{v}\n{err}"
    );

    // The official MCP SDK launches `quilt mcp --serial`.
    let calls = json!([
        {"name": "examples.text-tools__count", "arguments": {"text": "a line a cable", "top": 1}},
        {"name": "board.services"},
    ])
    .to_string();
    let quilt = host_binary("quilt", "quilt").unwrap();
    let (v, err) = mcp_client(&[
        "stdio",
        quilt.to_str().unwrap(),
        &format!("serial:{}", line.display()),
        op_key.to_str().unwrap(),
        &pin,
        &calls,
    ])
    .unwrap();
    assert!(v.get("failed").is_none(), "{v}\n{err}");
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    let c = &v["calls"];
    assert_eq!(
        c[0]["result"]["structuredContent"],
        json!({"words": 4, "lines": 1, "chars": 14, "top": [{"word": "a", "count": 2}]}),
        "{v}"
    );
    assert!(
        c[1]["result"]["structuredContent"]["services"]
            .to_string()
            .contains("\"quiltd\""),
        "{v}"
    );
    vm.kill();
}
