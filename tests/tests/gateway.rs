//! quiltd on a board, with real parts end to end: quilt-net brings the NIC
//! up by DHCP, quiltd serves HTTPS as a non-root service that drives PID 1
//! only through the control socket its boot config grants, and the host's
//! own `quilt call` reaches it through QEMU's forwarded port, signs every
//! request and pins the board's key. A tool runs from a signed bundle.

use quilt_system_tests::{guest_binary, host_binary, work_dir, ImageBuilder, Vm, VmOpts};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HTTPS: u16 = 8443;
const T: Duration = Duration::from_secs(300);

const CONFIG: &str = r#"
modules = ["virtio_mmio", "virtio_net"]

[[service]]
name = "net"
exec = ["/usr/lib/quilt/quilt-net", "dhcp", "eth0", "--ready-fd", "3"]
ready = { fd = 3 }

[[service]]
name = "prep"
exec = ["/bin/sh", "-c", "mkdir -p /run/quiltd && chown 900:900 /run/quiltd"]
restart = "never"

[[service]]
name = "quiltd"
exec = ["/usr/bin/quiltd", "serve", "--state-dir", "/run/quiltd"]
uid = 900
gid = 900
after = ["net", "prep"]
control = ["list", "run", "bundles"]
"#;

/// A gateway client key made by the host's `quilt key gen --client`:
/// (secret key file, the public line's key).
fn client_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let base = dir.join(name);
    let out = Command::new(host_binary("quilt", "quilt").unwrap())
        .args(["key", "gen", "--client", "--out"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(base.with_extension("pub")).unwrap();
    (base.with_extension("key"), public.trim().to_owned())
}

/// `quilt call` against the board: (exit code, JSON reply, stderr).
fn call(url: &str, key: &Path, pin: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(host_binary("quilt", "quilt").unwrap())
        .args(["call", "--board", url, "--board-key", pin, "--key"])
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
fn an_operator_and_an_agent_reach_quiltd_through_the_network_with_signed_pinned_requests() {
    let dir = work_dir().unwrap().join("gateway-keys");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (op_key, op_pub) = client_key(&dir, "op");
    let (bot_key, bot_pub) = client_key(&dir, "bot");
    let (stranger_key, _) = client_key(&dir, "stranger");
    let clients = format!("operator op {op_pub}\nagent bot {bot_pub}\n");
    let img = ImageBuilder::new()
        .busybox()
        .modules(&["virtio_mmio", "virtio_net"])
        .bun_runtime()
        .signed_example("hello")
        .file(
            "/usr/bin/quiltd",
            guest_binary("quiltd", "quiltd").unwrap(),
            0o755,
        )
        .bytes("/etc/quilt/trust/authorized-clients", clients, 0o644)
        .config_toml(CONFIG)
        .build()
        .unwrap();
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            timeout: T,
            ..VmOpts::default()
        }
        .user_net(&[HTTPS]),
    )
    .unwrap();
    let listening = vm.wait_for_console("event=listening", T).unwrap();
    let pin = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("board-key="))
        .unwrap_or_else(|| panic!("no board-key in {listening:?}"))
        .to_owned();
    let url = format!("https://127.0.0.1:{}", vm.host_port(HTTPS).unwrap());

    // QEMU accepts on the host side before the guest listens: retry the
    // first call until quiltd answers.
    let until = Instant::now() + Duration::from_secs(60);
    let services = loop {
        let (code, v, err) = call(&url, &op_key, &pin, &["GET", "/v1/services"]);
        if code == 0 {
            break v;
        }
        assert!(Instant::now() < until, "quiltd never answered: {err}");
        std::thread::sleep(Duration::from_millis(500));
    };
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
    let ev = vm.events();
    let granted = ev
        .iter()
        .find(|e| e.name() == Some("control-granted"))
        .expect("no control-granted event");
    assert_eq!(granted.get("name"), Some("quiltd"));
    assert_eq!(granted.get("uid"), Some("900"));
    let console = vm.console_text();
    assert!(
        console.contains("event=auth-refused"),
        "refusals are logged:\n{console}"
    );
}
