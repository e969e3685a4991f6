//! The gateway's demo as a user meets it (docs/gateway.md): `qemu/run.sh
//! --serve PORT` builds everything, boots the demo board and prints one
//! `ready:` line once the gateway answers; the MCP client configuration
//! that docs/gateway.md shows, its placeholders filled from that line,
//! lets the official MCP TypeScript SDK launch `target/release/quilt mcp`
//! and call the board's tools; ^C then powers the board off in order and
//! run.sh exits 0. Slow on a cold checkout: run.sh's own release build of
//! the host CLI.

use quilt_system_tests::{
    assert_counted, count_call, free_host_port, mcp_client, mcp_listed, repo_root, work_dir,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long run.sh may take to build everything and boot (a cold release
/// build of the host CLI is most of it).
const READY_WITHIN: Duration = Duration::from_secs(1800);
/// How long the board may take to power off after ^C.
const OFF_WITHIN: Duration = Duration::from_secs(180);

/// `qemu/run.sh --serve`, interrupted (then killed) if the test ends early,
/// and its QEMU with it: run.sh starts QEMU in a session of its own.
struct Serving {
    child: Child,
    port: u16,
}

impl Serving {
    /// Sends ^C's signal to run.sh alone (the board powers off in order).
    fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }

    /// run.sh's exit status, once it has exited within `within`.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
            if self.wait(Duration::from_secs(60)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let _ = Command::new("pkill")
            .args(["-f", &format!("hostfwd=tcp:127.0.0.1:{}-", self.port)])
            .status();
    }
}

/// The JSON block of docs/gateway.md that configures an MCP client for
/// the demo board (`mcpServers.quilt-demo-board`).
fn documented_config() -> Value {
    let doc = std::fs::read_to_string(repo_root().join("docs/gateway.md")).unwrap();
    doc.split("```json\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter_map(|block| serde_json::from_str::<Value>(block).ok())
        .find(|v| v["mcpServers"].get("quilt-demo-board").is_some())
        .expect("docs/gateway.md shows no mcpServers.quilt-demo-board configuration")
}

/// `config` with the placeholders a reader fills in replaced: the
/// checkout's path and the `ready:` line's URL and board key.
fn filled(config: &Value, root: &Path, url: &str, board_key: &str) -> Value {
    let fill = |s: &str| {
        if s.starts_with("SHA256:") {
            board_key.to_owned()
        } else {
            s.replace("/path/to/quilt", root.to_str().unwrap())
                .replace("https://127.0.0.1:8443", url)
        }
    };
    let server = &config["mcpServers"]["quilt-demo-board"];
    let args: Vec<String> = server["args"]
        .as_array()
        .expect("the documented server has args")
        .iter()
        .map(|a| fill(a.as_str().unwrap()))
        .collect();
    json!({"mcpServers": {"quilt-demo-board": {
        "command": fill(server["command"].as_str().unwrap()),
        "args": args,
    }}})
}

#[test]
fn run_sh_serve_boots_a_board_that_the_documented_mcp_configuration_reaches() {
    let root = repo_root();
    let port = free_host_port().unwrap();
    let stderr_path = work_dir().unwrap().join("run-sh-serve.stderr");
    let t0 = Instant::now();
    let child = Command::new(root.join("qemu/run.sh"))
        .args(["--serve", &port.to_string(), "--timeout", "600"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("qemu/run.sh");
    let mut serving = Serving { child, port };
    let (tx, lines) = mpsc::channel();
    let stdout = serving.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let ready = loop {
        match lines.recv_timeout(READY_WITHIN.saturating_sub(t0.elapsed())) {
            Ok(line) if line.starts_with("ready:") => break line,
            Ok(_) => {}
            Err(e) => panic!("no ready: line ({e:?}) after {:?}\n{}", t0.elapsed(), log()),
        }
    };
    let ready_after = t0.elapsed();
    let form = regex::Regex::new(
        r"^ready: url=(https://127\.0\.0\.1:(\d+)) board-key=(SHA256:[A-Za-z0-9+/]{43}=) client-key=(/\S+)$",
    )
    .unwrap();
    let m = form
        .captures(&ready)
        .unwrap_or_else(|| panic!("not the documented form: {ready:?}"));
    let (url, board_key, key) = (&m[1], &m[3], &m[4]);
    assert_eq!(m[2].parse::<u16>().unwrap(), port, "{ready}");
    let key_path = Path::new(key);
    assert!(key_path.is_absolute() && key_path.is_file(), "{ready}");
    let tracked = Command::new("git")
        .args(["ls-files", "--error-unmatch"])
        .arg(key_path)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        !tracked.status.success(),
        "the demo client key is committed"
    );

    // The documented configuration, filled in, is the command the line
    // names: the release CLI, the ready line's URL, key and board key.
    let config = filled(&documented_config(), &root, url, board_key);
    let server = &config["mcpServers"]["quilt-demo-board"];
    assert_eq!(
        server["command"],
        root.join("target/release/quilt").to_str().unwrap(),
        "{config}"
    );
    assert_eq!(
        server["args"],
        json!([
            "mcp",
            "--board",
            url,
            "--key",
            key,
            "--board-key",
            board_key
        ]),
        "docs/gateway.md's configuration does not match the ready line {ready:?}"
    );

    let calls = json!([
        count_call(),
        {"name": "board.services"},
    ])
    .to_string();
    let (v, err) =
        mcp_client(&["config", &config.to_string(), "quilt-demo-board", &calls]).unwrap();
    let listed = mcp_listed(&v, &err);
    assert!(
        listed.contains(&"examples.text-tools__count") && listed.contains(&"board.services"),
        "{listed:?}"
    );
    let c = &v["calls"];
    assert_counted(&c[0]);
    let services = c[1]["result"]["structuredContent"]["services"].to_string();
    assert!(services.contains("\"quiltd\""), "{v}");
    println!(
        "run.sh --serve: ready after {:.0} s; {} tools listed; count took {:.0} ms",
        ready_after.as_secs_f64(),
        listed.len(),
        c[0]["ms"].as_f64().unwrap_or(f64::NAN)
    );

    // ^C: the board powers off in order and run.sh says so, exit 0.
    let t1 = Instant::now();
    serving.interrupt();
    let status = serving
        .wait(OFF_WITHIN)
        .unwrap_or_else(|| panic!("run.sh still running {OFF_WITHIN:?} after ^C\n{}", log()));
    assert!(status.success(), "run.sh: {status}\n{}", log());
    assert!(log().contains("guest powered off cleanly"), "{}", log());
    println!(
        "^C: powered off and exited 0 in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
}
