//! An air-gapped board reached over a serial line: no network at all, quiltd
//! serving the gateway on a UART (`--serial /dev/ttyS2`), and the
//! host's `quilt call --serial` and the official MCP TypeScript SDK through
//! `quilt mcp --serial` on QEMU's end of it (a Unix socket chardev), with
//! the same TLS pinning and signed requests as over the network.

use quilt_system_tests::{
    assert_mcp_connected, client_key, guest_binary, host_binary, mcp_client, work_dir,
    ImageBuilder, Vm, VmOpts,
};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(300);

/// The boot config: `prep` (/etc/prep-line, [`Line::prep`]) finds the
/// line, hands it to quiltd's uid and links it at /run/quiltd/line, where
/// quiltd serves it.
const CONFIG: &str = r#"
[[service]]
name = "prep"
exec = ["/bin/sh", "/etc/prep-line"]
restart = "never"

[[service]]
name = "quiltd"
exec = ["/usr/bin/quiltd", "serve", "--state-dir", "/run/quiltd", "--serial", "/run/quiltd/line"]
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

/// A line between the host and the board.
enum Line {
    /// A third 16550 at the legacy ttyS2 address (IRQ 4, shared with the
    /// console's).
    Uart,
    /// A virtio console port (`virtserialport` named `quilt.gw`).
    VirtioPort,
}

impl Line {
    /// QEMU's device for the chardev `gw`.
    fn qemu_args(&self) -> Vec<String> {
        match self {
            Line::Uart => vec![
                "-device".into(),
                "isa-serial,chardev=gw,iobase=0x3e8,irq=4".into(),
            ],
            Line::VirtioPort => vec![
                "-device".into(),
                "virtio-serial-device".into(),
                "-device".into(),
                "virtserialport,chardev=gw,name=quilt.gw".into(),
            ],
        }
    }

    /// Kernel modules it needs (Debian's kernel builds virtio as modules).
    fn modules(&self) -> &'static [&'static str] {
        match self {
            Line::Uart => &[],
            Line::VirtioPort => &["virtio_mmio", "virtio_console"],
        }
    }

    /// The script that finds the guest's node for it and readies it.
    fn prep(&self) -> String {
        let find = match self {
            Line::Uart => "dev=/dev/ttyS2",
            // By the port's name (no udev makes /dev/virtio-ports here),
            // waiting up to 10 s for the driver to list it.
            Line::VirtioPort => {
                r#"dev=
for i in $(seq 50); do
    for p in /sys/class/virtio-ports/*; do
        [ -e "$p/name" ] && [ "$(cat "$p/name")" = quilt.gw ] && dev="/dev/${p##*/}"
    done
    [ -n "$dev" ] && break
    sleep 0.2
done
[ -n "$dev" ] || { ls -l /sys/class /sys/bus/virtio/devices >&2; exit 1; }"#
            }
        };
        format!(
            "set -e\n{find}\nmkdir -p /run/quiltd\nchown 900:900 /run/quiltd \"$dev\"\nln -sf \"$dev\" /run/quiltd/line\necho \"line: $dev\"\n"
        )
    }
}

#[test]
fn a_board_without_a_network_is_an_mcp_server_over_its_serial_line() {
    serves_over(Line::Uart, "gateway-serial");
}

#[test]
fn a_virtio_console_port_serves_as_the_line() {
    serves_over(Line::VirtioPort, "gateway-vport");
}

fn serves_over(kind: Line, name: &str) {
    let dir = work_dir().unwrap().join(name);
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
        .bytes("/etc/prep-line", kind.prep(), 0o755)
        .modules(kind.modules())
        .config_toml(&format!("modules = {:?}\n{CONFIG}", kind.modules()))
        .build()
        .unwrap();
    let line = dir.join("line.sock");
    let mut vm = Vm::boot(
        &img,
        VmOpts {
            timeout: T,
            extra_args: [
                "-chardev".to_owned(),
                format!("socket,id=gw,path={},server=on,wait=off", line.display()),
            ]
            .into_iter()
            .chain(kind.qemu_args())
            .collect(),
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
    assert_mcp_connected(&v, &err);
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
