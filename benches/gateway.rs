//! The gateway's cost, in one guest per pool setting: MCP `tools/call` of
//! a small tool over the network (the host signs each request with the
//! CLI's own client, `quilt::gateway::Board`, over TLS pinned to the
//! board, through QEMU's forwarded port, quiltd, the control socket and
//! quilt-init) against `quilt run` of the same tool on the board, timed
//! inside the guest; both without and with a warm pool for the bundle.
//!
//! The tool is `examples/text-tools`' `count` (`examples/hello` declares
//! no tools, so MCP does not list it). The two sides take turns in rounds
//! of 5 (the host starts the guest's round through quiltd, as an
//! operator), so drift in the guest hits both alike.
//!
//! Run: `cargo bench -p quilt-system-tests --bench gateway` (N runs a side:
//! QUILT_GATEWAY_RUNS, default 30). Figures: the gateway side on the
//! host's clock (request to reply), `quilt run` on the guest's clock from
//! before its exec to after its exit (busybox `adjtimex`, µs), and for
//! each side quilt-init's own spawn-to-reaped time from its `run-done`
//! events. QEMU TCG: absolute numbers are emulation-inflated; the
//! overhead in ms and the ratio are the point.

use quilt::gateway::Board;
use quilt_system_tests::bench::quantile;
use quilt_system_tests::{
    client_keys, gateway_config, gateway_image, guest_binary, work_dir, Gateway, VmOpts,
};
use serde_json::json;
use std::time::{Duration, Instant};

const ROUND: usize = 5;
const TOOL: &str = "examples.text-tools__count";
const T: Duration = Duration::from_secs(600);

/// The guest's side, one round per start of the `local` service (the
/// host starts it through quiltd; its boot-time start only arms it): 5
/// `quilt run`s, each timed with busybox's `adjtimex` (microseconds; its
/// `date` has no sub-second field), and the cost of one such stamp,
/// measured the same way with nothing between, to subtract.
const LOCAL: &str = r#"#!/bin/sh
[ -f /tmp/armed ] || { touch /tmp/armed; exit 0; }
us() {
    adjtimex > /tmp/stamp
    while read -r k v rest; do
        case $k in
        time.tv_sec:) s=$v ;;
        time.tv_usec:) u=$v ;;
        esac
    done < /tmp/stamp
    echo $((s * 1000000 + u))
}
for _ in 1 2 3 4 5; do
    a=$(us)
    out=$(quilt run examples/text-tools count --input /etc/bench-input.json --json)
    b=$(us)
    c=$(us)
    echo "LOCAL wall_us=$((b - a)) stamp_us=$((c - b)) json=$out" > /dev/ttyS1
done
echo "LOCAL round-done" > /dev/ttyS1
"#;

/// One pool setting's figures, µs: each side's request to result, and
/// quilt-init's own spawn-to-reaped time of each side's runs (its
/// `run-done ms=` events, in order: the sides take turns by rounds).
struct Side {
    gateway_us: Vec<u64>,
    local_us: Vec<u64>,
    gateway_init_us: Vec<u64>,
    local_init_us: Vec<u64>,
}

fn one_boot(n: usize, warm: bool) -> Side {
    let dir = work_dir().unwrap().join(format!(
        "gateway-bench-{}",
        if warm { "warm" } else { "cold" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (op_key, op_pub) = client_keys(&dir, "op", 1).unwrap().remove(0);
    let pool = if warm {
        "\n[bundles]\nwarm = [{ bundle = \"examples/text-tools\", count = 2 }]\n"
    } else {
        ""
    };
    let extra = format!(
        "\n[[service]]\nname = \"local\"\nexec = [\"/bin/local.sh\"]\nrestart = \"never\"\n{pool}"
    );
    let input = json!({"tool": "count", "input": {"text": "the cat and the hat", "top": 1}});
    let img = gateway_image(&format!("operator op {op_pub}\n"))
        .unwrap()
        .signed_example("text-tools")
        .file("/bin/quilt", guest_binary("quilt", "quilt").unwrap(), 0o755)
        .bytes("/bin/local.sh", LOCAL, 0o755)
        .bytes("/etc/bench-input.json", input["input"].to_string(), 0o644)
        .config_toml(&gateway_config(
            &["list", "run", "bundles", "services"],
            false,
            &extra,
        ))
        .build()
        .unwrap();
    let opts = VmOpts {
        mem_mb: 1024,
        timeout: Duration::from_secs(1800),
        ..VmOpts::default()
    }
    .cmdline("clocksource=tsc tsc=reliable");
    let gw = Gateway::boot(&img, opts, T).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let board = Board::new(&gw.url, &op_key, &gw.pin).unwrap();
    let mcp = |body: serde_json::Value| {
        let board = &board;
        async move {
            let headers = [
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-11-25"),
            ];
            let a = board
                .request("POST", "/mcp", body.to_string().into_bytes(), &headers)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
            (a.status.as_u16(), v)
        }
    };
    // quiltd may not listen yet when QEMU already accepts: retry, then
    // the handshake MCP wants before a call.
    let until = Instant::now() + Duration::from_secs(120);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "quilt-bench", "version": "0"}}});
    loop {
        let r = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                board.request("GET", "/healthz", Vec::new(), &[]),
            )
            .await
        });
        if matches!(r, Ok(Ok(ref a)) if a.status == 200) {
            break;
        }
        assert!(Instant::now() < until, "quiltd never answered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (s, v) = rt.block_on(mcp(init));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25", "{v}");
    let (s, _) = rt.block_on(mcp(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ));
    assert!(s == 202 || s == 200, "notifications/initialized: {s}");
    let vm = gw.vm;

    let mut side = Side {
        gateway_us: Vec::new(),
        local_us: Vec::new(),
        gateway_init_us: Vec::new(),
        local_init_us: Vec::new(),
    };
    let rounds = n.div_ceil(ROUND);
    for round in 0..rounds {
        for i in 0..ROUND {
            let call = json!({"jsonrpc": "2.0", "id": 1 + round * ROUND + i, "method": "tools/call",
                "params": {"name": TOOL, "arguments": input["input"]}});
            let t = Instant::now();
            let (s, v) = rt.block_on(mcp(call));
            side.gateway_us.push(t.elapsed().as_micros() as u64);
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["result"]["isError"], false, "{v}");
            assert_eq!(v["result"]["structuredContent"]["words"], 5, "{v}");
        }
        let (s, v) = rt.block_on(async {
            let a = board
                .request("POST", "/v1/services/local/start", Vec::new(), &[])
                .await
                .unwrap();
            (
                a.status.as_u16(),
                String::from_utf8_lossy(&a.body).into_owned(),
            )
        });
        assert_eq!(s, 200, "starting the guest's round: {v}");
        let until = Instant::now() + T;
        while vm.channel_text().matches("LOCAL round-done").count() <= round {
            assert!(
                Instant::now() < until,
                "the guest's round {round} did not finish"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for line in vm
        .channel_text()
        .lines()
        .filter(|l| l.starts_with("LOCAL wall_us="))
    {
        let num = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{k} in {line}"))
        };
        let (_, json) = line.split_once(" json=").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["status"], 0, "{line}");
        let out: serde_json::Value = serde_json::from_str(v["stdout"].as_str().unwrap()).unwrap();
        assert_eq!(out["result"]["words"], 5, "the tool's output: {line}");
        // The CLI's exec to exit, less one stamp's own cost.
        side.local_us
            .push(num("wall_us=").saturating_sub(num("stamp_us=")));
    }
    let done: Vec<u64> = vm
        .events()
        .iter()
        .filter(|e| e.name() == Some("run-done"))
        .map(|e| e.get("ms").and_then(|m| m.parse::<u64>().ok()).unwrap() * 1000)
        .collect();
    assert_eq!(done.len(), 2 * rounds * ROUND, "one run-done per run");
    for (k, us) in done.into_iter().enumerate() {
        if (k / ROUND).is_multiple_of(2) {
            side.gateway_init_us.push(us);
        } else {
            side.local_init_us.push(us);
        }
    }
    assert_eq!(side.local_us.len(), rounds * ROUND, "{}", vm.channel_text());
    if warm {
        let served_warm = vm
            .events()
            .iter()
            .filter(|e| e.name() == Some("run-start") && e.get("warm") == Some("1"))
            .count();
        println!(
            "warm pool: {served_warm} of {} runs served by a parked container",
            2 * rounds * ROUND
        );
    }
    side
}

fn main() {
    let n: usize = std::env::var("QUILT_GATEWAY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rows = Vec::new();
    for warm in [false, true] {
        let mut s = one_boot(n, warm);
        for v in [
            &mut s.gateway_us,
            &mut s.local_us,
            &mut s.gateway_init_us,
            &mut s.local_init_us,
        ] {
            v.sort_unstable();
        }
        rows.push((warm, s));
    }
    println!("\nexamples/text-tools count: MCP tools/call over the gateway against `quilt run` on the board");
    println!(
        "(N = {} a side, interleaved in rounds of {ROUND}; QEMU TCG, one guest per pool setting)",
        rows[0].1.gateway_us.len()
    );
    println!(
        "{:<5} {:<46} {:>8} {:>8} {:>12} {:>7} {:>17}",
        "pool", "what", "p50 ms", "p99 ms", "p50 over ms", "ratio", "of it quilt-init"
    );
    let ms = |us: u64| us as f64 / 1000.0;
    for (warm, s) in &rows {
        let pool = if *warm { "warm" } else { "none" };
        let base = quantile(&s.local_us, 0.5);
        for (what, v, init) in [
            (
                "`quilt run` on the board (guest clock)",
                &s.local_us,
                &s.local_init_us,
            ),
            (
                "MCP tools/call via the gateway (host clock)",
                &s.gateway_us,
                &s.gateway_init_us,
            ),
        ] {
            let p50 = quantile(v, 0.5);
            println!(
                "{pool:<5} {what:<46} {:>8.1} {:>8.1} {:>12.1} {:>6.2}x {:>11.1} p50 ms",
                ms(p50),
                ms(quantile(v, 0.99)),
                ms(p50) - ms(base),
                p50 as f64 / base as f64,
                ms(quantile(init, 0.5)),
            );
        }
    }
}
