//! The TypeScript tool SDK end to end (issue 18): `quilt new` scaffolds a
//! project, `quilt build` bundles it with the pinned Bun and signs its
//! tools into the manifest, and the bundle runs under the real quilt-init
//! in QEMU, where `quilt run BUNDLE TOOL` calls each tool and input that
//! breaks the schema is refused before the tool's code runs.
//!
//! The host tests need the npm registry once per scaffold (`bun install`
//! fetches the SDK's validator); everything else is local.

use quilt_system_tests::npm_tool::{self, NpmTool};
use quilt_system_tests::{
    bun_binary, guest_binary, host_binary, test_key, work_dir, ImageBuilder, Vm,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(300);

/// Runs the host `quilt` with QUILT_BUN set: (success, stdout, stderr).
fn quilt_raw(args: &[&std::ffi::OsStr], cwd: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(host_binary("quilt", "quilt").unwrap());
    cmd.args(args).env("QUILT_BUN", bun_binary().unwrap());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn quilt(args: &[&str]) -> String {
    let os: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let (ok, out, err) = quilt_raw(&os, None);
    assert!(ok, "quilt {args:?}:\n{out}\n{err}");
    out
}

fn fresh(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = work_dir().unwrap().join(format!(
        "sdk-{}-{}",
        name,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `quilt new <fresh>/greeter`, with a second tool (plain function form)
/// appended to the scaffold's module; the project dir.
fn scaffold() -> PathBuf {
    let project = fresh("new").join("greeter");
    quilt(&["new", project.to_str().unwrap()]);
    for f in [
        "quilt.toml",
        "package.json",
        "tsconfig.json",
        "bun.lock",
        "src/index.ts",
        "src/index.test.ts",
        "vendor/quilt-tool/index.ts",
    ] {
        assert!(project.join(f).is_file(), "quilt new wrote no {f}");
    }
    let index = project.join("src/index.ts");
    let text = std::fs::read_to_string(&index).unwrap();
    let text = text.replace(
        "import { serve, tool } from \"@quilt/tool\";",
        r#"import { defineTool, serve, tool } from "@quilt/tool";

defineTool(
  {
    name: "add",
    description: "Adds two integers.",
    input: {
      type: "object",
      properties: { a: { type: "integer" }, b: { type: "integer" } },
      required: ["a", "b"],
    },
    output: { type: "integer" },
  },
  (i: { a: number; b: number }) => {
    console.log("adding"); // stderr: proves the code ran
    return i.a + i.b;
  },
);"#,
    );
    std::fs::write(&index, text).unwrap();
    project
}

fn build(project: &Path, out: &Path) -> String {
    quilt(&[
        "build",
        project.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn inspect(qb: &Path) -> serde_json::Value {
    serde_json::from_str(&quilt(&[
        "bundle",
        "inspect",
        "--json",
        qb.to_str().unwrap(),
    ]))
    .unwrap()
}

/// The SDK's own unit tests (init/tool-sdk/index.test.ts: registry, sites,
/// envelope, exit codes, describe mode) under the pinned Bun.
#[test]
fn the_sdk_passes_its_unit_tests() {
    let dir = quilt_system_tests::tool_sdk_dir().unwrap();
    let out = Command::new(bun_binary().unwrap())
        .arg("test")
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(" 0 fail"), "{err}");
}

/// `examples/text-tools`, the SDK example: its tests pass under `quilt
/// test` and `quilt build` signs both tools into the manifest.
#[test]
fn the_sdk_example_tests_and_builds() {
    let dir = quilt_system_tests::example_dir("text-tools");
    let (ok, out, err) = quilt_raw(&["test".as_ref(), dir.as_os_str()], None);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("2 tool(s) answered 2 call(s)"), "{out}");
    assert!(
        out.contains("ok   slug {\"title\":\"Hello, World\"} -> {\"result\":\"hello-world\"}"),
        "{out}"
    );
    let qb = fresh("example").join("text-tools.qb");
    build(&dir, &qb);
    let v = inspect(&qb);
    assert_eq!(v["name"], "examples/text-tools");
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["count", "slug"]);
    assert_eq!(
        v["tools"][1]["output"],
        serde_json::json!({"type": "string"})
    );
}

/// The scaffold's own tests pass under `quilt test`, which also calls the
/// built tool through the envelope.
#[test]
fn a_new_project_passes_its_own_tests() {
    let project = scaffold();
    let (ok, out, err) = quilt_raw(&["test".as_ref(), project.as_os_str()], None);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("ok   greet {\"name\":\"ada\"} -> {\"result\":{\"greeting\":\"hello, ada\"}}"),
        "{out}"
    );
    assert!(
        out.contains("ok   add {} -> {\"error\":{\"code\":\"invalid_input\""),
        "{out}"
    );
    assert!(out.contains("2 tool(s) answered 2 call(s)"), "{out}");
    assert!(out.contains("not emulated here"), "{out}");

    // An example whose result the tool does not give fails quilt test.
    let index = project.join("src/index.ts");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace(
            "result: { greeting: \"hello, ada\" }",
            "result: { greeting: \"hi, ada\" }",
        ),
    )
    .unwrap();
    let (ok, out, _) = quilt_raw(&["test".as_ref(), project.as_os_str()], None);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "FAIL greet {\"name\":\"ada\"}: wanted result {\"greeting\":\"hi, ada\"}, got {\"result\":{\"greeting\":\"hello, ada\"}}"
        ),
        "{out}"
    );
}

/// Two builds of one project, the second from a copy somewhere else,
/// give the same bytes.
#[test]
fn builds_are_deterministic() {
    let project = scaffold();
    let a = project.with_extension("a.qb");
    let b = project.with_extension("b.qb");
    build(&project, &a);
    build(&project, &b);
    let copy = fresh("copy").join("greeter");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&project)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let c = copy.with_extension("c.qb");
    build(&copy, &c);
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap(), "two builds differ");
    assert_eq!(
        bytes,
        std::fs::read(&c).unwrap(),
        "a build in another directory differs"
    );
}

/// Three tools from decorators and defineTool, with optional and nested
/// schema fields, reach the signed manifest exactly; a broken definition
/// fails the build naming its file and line.
#[test]
fn tool_definitions_are_extracted_from_the_built_module() {
    let project = scaffold();
    std::fs::write(
        project.join("src/index.ts"),
        r#"import { defineTool, serve, tool } from "@quilt/tool";

const point = {
  type: "object",
  properties: { x: { type: "number" }, y: { type: "number" } },
  required: ["x", "y"],
};

export class Geometry {
  @tool({
    description: "Distance between two points.",
    input: { type: "object", properties: { from: point, to: point }, required: ["from", "to"] },
    output: { type: "number" },
  })
  distance(i: { from: { x: number; y: number }; to: { x: number; y: number } }) {
    return Math.hypot(i.to.x - i.from.x, i.to.y - i.from.y);
  }

  @tool({
    name: "centroid",
    description: "Centre of a polygon, optionally rounded.",
    input: {
      type: "object",
      properties: { points: { type: "array", items: point, minItems: 1 }, round: { type: "boolean" } },
      required: ["points"],
    },
  })
  centre(i: { points: { x: number; y: number }[]; round?: boolean }) {
    const n = i.points.length;
    const c = i.points.reduce((a, p) => ({ x: a.x + p.x / n, y: a.y + p.y / n }), { x: 0, y: 0 });
    return i.round ? { x: Math.round(c.x), y: Math.round(c.y) } : c;
  }
}

defineTool(
  { name: "origin", description: "The origin.", input: { type: "object" } },
  () => ({ x: 0, y: 0 }),
);

await serve(Geometry);
"#,
    )
    .unwrap();
    let qb = project.with_extension("qb");
    let out = build(&project, &qb);
    assert!(out.contains("tools: centroid, distance, origin"), "{out}");
    let v = inspect(&qb);
    assert_eq!(v["entry"], "index.js");
    let tools = v["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["centroid", "distance", "origin"]);
    let distance = &tools[1];
    assert_eq!(distance["description"], "Distance between two points.");
    assert_eq!(
        distance["input"]["properties"]["from"]["properties"]["x"]["type"],
        "number"
    );
    assert_eq!(
        distance["input"]["required"],
        serde_json::json!(["from", "to"])
    );
    assert_eq!(distance["output"]["type"], "number");
    let centroid = &tools[0];
    assert_eq!(centroid["input"]["required"], serde_json::json!(["points"]));
    assert_eq!(centroid["input"]["properties"]["round"]["type"], "boolean");
    assert_eq!(
        centroid["input"]["properties"]["points"]["items"]["required"],
        serde_json::json!(["x", "y"])
    );
    assert_eq!(centroid["output"], serde_json::Value::Null);
    assert_eq!(tools[2]["input"], serde_json::json!({"type": "object"}));

    // A typo in a schema on line 4 of a second module.
    std::fs::write(
        project.join("src/bad.ts"),
        "import { tool } from \"@quilt/tool\";\n\nexport class Bad {\n  @tool({ description: \"oops\", input: { type: \"obj\" } })\n  broken() {}\n}\nnew Bad();\n",
    )
    .unwrap();
    let index = project.join("src/index.ts");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, format!("import \"./bad.ts\";\n{text}")).unwrap();
    let (ok, out, err) = quilt_raw(
        &[
            "build".as_ref(),
            project.as_os_str(),
            "--out".as_ref(),
            qb.as_os_str(),
        ],
        None,
    );
    assert!(!ok, "a broken definition was built:\n{out}");
    assert!(
        err.contains(
            "src/bad.ts:4: tool \"broken\": input.type: \"obj\" is not a JSON Schema type"
        ),
        "{err}"
    );
    // A syntax error is bun build's to report, with file and line.
    std::fs::write(project.join("src/bad.ts"), "export const x = ;\n").unwrap();
    let (ok, _, err) = quilt_raw(
        &[
            "build".as_ref(),
            project.as_os_str(),
            "--out".as_ref(),
            qb.as_os_str(),
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("src/bad.ts:1:"), "{err}");
    // A throw while the module loads: Bun's stack, mapped to the source.
    std::fs::write(
        project.join("src/bad.ts"),
        "export const x = 1;\nconst cfg = JSON.parse(\"{bad\");\n",
    )
    .unwrap();
    let (ok, _, err) = quilt_raw(
        &[
            "build".as_ref(),
            project.as_os_str(),
            "--out".as_ref(),
            qb.as_os_str(),
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("loading the built module"), "{err}");
    assert!(err.contains("at src/bad.ts:2:"), "{err}");
}

/// `quilt build` loads the module in a network namespace of its own: at
/// import time it sees only the loopback interface, and no environment.
#[test]
fn loading_the_module_sees_no_network_and_no_environment() {
    let project = scaffold();
    std::fs::write(
        project.join("src/index.ts"),
        r#"import { defineTool, serve } from "@quilt/tool";
import { readFileSync } from "node:fs";

// What the module sees while quilt build reads its tools.
const ifaces = readFileSync("/proc/net/dev", "utf8")
  .split("\n")
  .slice(2)
  .map((l) => l.split(":")[0].trim())
  .filter((n) => n !== "");
const env = Object.keys(process.env).sort().join(",");
defineTool(
  { name: "probe", description: `interfaces=${ifaces.join(",")} env=${env}`, input: { type: "object" } },
  () => 0,
);
await serve();
"#,
    )
    .unwrap();
    let qb = project.with_extension("qb");
    let out = build(&project, &qb);
    assert!(out.contains("tools: probe"), "{out}");
    let v = inspect(&qb);
    let description = v["tools"][0]["description"].as_str().unwrap();
    assert!(
        description.starts_with("interfaces=lo env="),
        "the module saw more than loopback: {description}"
    );
    let env: Vec<&str> = description
        .split("env=")
        .nth(1)
        .unwrap()
        .split(',')
        .collect();
    for var in &env {
        assert!(
            ["HOME", "TMPDIR", "QUILT_TOOL_DESCRIBE"].contains(var)
                || var.starts_with("BUN_")
                || var.is_empty(),
            "the host environment leaked into the build: {var} in {env:?}"
        );
    }
}

/// `quilt new` → `quilt build` → sign → boot → `quilt run` each tool.
#[test]
fn a_new_project_runs_its_tools_on_the_board() {
    let project = scaffold();
    let qb = project.with_extension("qb");
    build(&project, &qb);
    let (key, trust) = test_key().unwrap();
    quilt(&[
        "bundle",
        "sign",
        qb.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    quilt(&[
        "bundle",
        "verify",
        qb.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
    ]);
    // The agent template, calling greeter's tool from a child container.
    let agent = fresh("agent").join("planner");
    quilt(&["new", agent.to_str().unwrap(), "--template", "agent"]);
    let agent_qb = agent.with_extension("qb");
    build(&agent, &agent_qb);
    quilt(&[
        "bundle",
        "sign",
        agent_qb.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    // A tool on the shared-memory bus: quilt-bus stays out of the bundle
    // (--external) and resolves from the board's runtime layer.
    let echo = fresh("bus").join("echobus");
    quilt(&["new", echo.to_str().unwrap()]);
    let toml = std::fs::read_to_string(echo.join("quilt.toml")).unwrap();
    std::fs::write(
        echo.join("quilt.toml"),
        toml.replace(
            "tokens = []",
            r#"tokens = ["bus:sdk.t:pub", "bus:sdk.t:sub"]"#,
        ),
    )
    .unwrap();
    std::fs::write(
        echo.join("src/index.ts"),
        r#"import { type Context, serve, tool, ToolError } from "@quilt/tool";

export class Echo {
  @tool({
    description: "Sends text through the bus and reads it back.",
    input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  })
  async roundtrip(input: { text: string }, ctx: Context) {
    const bus = await ctx.bus();
    const sub = bus.openSubscriber("sdk.t");
    const pub = bus.openPublisher("sdk.t");
    pub.send(new TextEncoder().encode(input.text));
    const m = sub.receive(5000);
    if (!m) throw new ToolError("timeout", "nothing came back on sdk.t");
    const text = new TextDecoder().decode(m.copy());
    m.release();
    const channels = ctx.busChannels().map((c) => `${c.topic}:${c.role}`).sort();
    return { text, channels, open_files: ctx.limits().open_files };
  }
}

await serve(Echo);
"#,
    )
    .unwrap();
    let echo_qb = echo.with_extension("qb");
    build(&echo, &echo_qb);
    let js = inspect(&echo_qb);
    assert_eq!(
        js["tokens"],
        serde_json::json!(["bus:sdk.t:pub", "bus:sdk.t:sub"])
    );

    quilt(&[
        "bundle",
        "sign",
        echo_qb.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);

    let probe = br#"#!/bin/sh
echo "tools=$(quilt run greeter --tools | tr -d '\n')" > /dev/ttyS1
echo '{"name":"ada","times":2}' > /tmp/greet.json
echo "greet=$(quilt run greeter greet --input /tmp/greet.json --json)" > /dev/ttyS1
echo '{"a":2,"b":40}' > /tmp/add.json
echo "add=$(quilt run greeter add --input /tmp/add.json --json)" > /dev/ttyS1
echo '{"name":"ada","times":0}' > /tmp/bad.json
echo "bad=$(quilt run greeter greet --input /tmp/bad.json --json)" > /dev/ttyS1
echo '{"a":"2","b":40}' > /tmp/badadd.json
echo "badadd=$(quilt run greeter add --input /tmp/badadd.json --json)" > /dev/ttyS1
quilt run greeter nope > /dev/null 2> /tmp/err; echo "unknown=$? $(cat /tmp/err)" > /dev/ttyS1
echo '{"bundle":"greeter","tool":"greet","input":{"name":"bob"}}' > /tmp/agent.json
echo "agent=$(quilt run planner delegate --input /tmp/agent.json --json --timeout-ms 120000)" > /dev/ttyS1
echo '{"bundle":"greeter","tool":"greet","input":{"name":""}}' > /tmp/agentbad.json
echo "agentbad=$(quilt run planner delegate --input /tmp/agentbad.json --json --timeout-ms 120000)" > /dev/ttyS1
echo '{"text":"over the bus"}' > /tmp/bus.json
echo "bus=$(quilt run echobus roundtrip --input /tmp/bus.json --json)" > /dev/ttyS1
"#;
    let config = r#"
[[bus]]
topic = "sdk.t"
slots = 8
slot_size = 4096
subscribers = 1

[[service]]
name = "probe"
exec = ["/bin/probe.sh"]
restart = "never"
on_exit = "poweroff"
"#;
    let mut b = ImageBuilder::new()
        .busybox()
        .bun_runtime()
        .bus_client()
        .file("/bin/quilt", guest_binary("quilt", "quilt").unwrap(), 0o755)
        .config_toml(config)
        .bytes("/bin/probe.sh", probe.to_vec(), 0o755)
        .file("/usr/share/quilt/bundles/greeter.qb", &qb, 0o644)
        .file("/usr/share/quilt/bundles/planner.qb", &agent_qb, 0o644)
        .file("/usr/share/quilt/bundles/echobus.qb", &echo_qb, 0o644);
    for e in std::fs::read_dir(&trust).unwrap() {
        let e = e.unwrap();
        b = b.file(
            &format!("/etc/quilt/trust/{}", e.file_name().to_string_lossy()),
            e.path(),
            0o644,
        );
    }
    let img = b.build().unwrap();
    let (_, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let line = |prefix: &str| -> serde_json::Value {
        let l = ch
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{ch}"));
        serde_json::from_str(l).unwrap_or_else(|e| panic!("{prefix}{l}: {e}"))
    };
    let envelope = |run: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(run["stdout"].as_str().unwrap().trim())
            .unwrap_or_else(|e| panic!("no envelope in {run}: {e}"))
    };

    // The signed tool list, read on the board.
    let tools = line("tools=");
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "greet"], "{tools}");
    assert_eq!(tools[1]["input"]["required"], serde_json::json!(["name"]));

    let greet = line("greet=");
    assert_eq!(greet["status"], 0, "{greet}");
    assert_eq!(
        envelope(&greet),
        serde_json::json!({"result": {"greeting": "hello, ada; hello, ada"}})
    );
    assert!(
        greet["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("greeting ada"),
        "{greet}"
    );

    let add = line("add=");
    assert_eq!(add["status"], 0, "{add}");
    assert_eq!(envelope(&add), serde_json::json!({"result": 42}));

    // Refused by the schema, in the container, before the tool's code:
    // exit 2, the validator's message, and none of the tool's own logging.
    for (prefix, field, marker) in [
        ("bad=", "input/times", "greeting"),
        ("badadd=", "input/a", "adding"),
    ] {
        let run = line(prefix);
        assert_eq!(run["status"], 2, "{run}");
        let env = envelope(&run);
        assert_eq!(env["error"]["code"], "invalid_input", "{env}");
        let msg = env["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{msg}");
        assert!(
            !run["stderr_tail"].as_str().unwrap().contains(marker),
            "the tool ran on refused input: {run}"
        );
    }
    assert!(
        ch.contains("unknown=1 quilt: greeter has no tool \"nope\"; it has: add, greet"),
        "{ch}"
    );

    // The agent's child ran greeter's tool and its envelope came back;
    // the child's refusal is passed on with its code.
    let agent = line("agent=");
    assert_eq!(agent["status"], 0, "{agent}");
    assert_eq!(
        envelope(&agent),
        serde_json::json!({"result": {"greeting": "hello, bob"}})
    );
    let agentbad = line("agentbad=");
    assert_eq!(agentbad["status"], 2, "{agentbad}");
    let env = envelope(&agentbad);
    assert_eq!(env["error"]["code"], "invalid_input", "{env}");
    assert!(
        env["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("greeter greet: input/name"),
        "{env}"
    );

    // The bus tool's message came back through shared memory, over the
    // channels its signed tokens granted.
    let bus = line("bus=");
    assert_eq!(bus["status"], 0, "{bus}");
    assert_eq!(
        envelope(&bus),
        serde_json::json!({"result": {
            "text": "over the bus",
            "channels": ["sdk.t:pub", "sdk.t:sub"],
            // quilt new's default [limits] leave open_files at 256.
            "open_files": 256,
        }})
    );
}

/// A tool with real npm dependencies (zod; debug, which brings ms) built
/// with `quilt build` into one file, the same source packed with its
/// node_modules as before the SDK, and a plain-packed tool that finds
/// @quilt/tool in the runtime layer: all three run in one guest with equal
/// results. Timing the first two against each other is `benches/sdk.rs`.
#[test]
fn npm_dependencies_bundled_or_packed_give_the_same_result() {
    let tool = NpmTool::make().unwrap();
    // No node_modules at all: @quilt/tool comes from the runtime layer.
    let layered_dir = fresh("layered").join("layered");
    std::fs::create_dir_all(&layered_dir).unwrap();
    std::fs::write(
        layered_dir.join("quilt.toml"),
        "name = \"layered\"\nversion = 1\nentry = \"index.ts\"\n",
    )
    .unwrap();
    std::fs::write(
        layered_dir.join("index.ts"),
        r#"import { defineTool, serve } from "@quilt/tool";
defineTool(
  { name: "twice", description: "Doubles n.", input: { type: "object", properties: { n: { type: "number" } }, required: ["n"] } },
  (i: { n: number }) => 2 * i.n,
);
await serve();
"#,
    )
    .unwrap();
    let layered = layered_dir.with_extension("qb");
    quilt(&[
        "bundle",
        "pack",
        layered_dir.to_str().unwrap(),
        "--out",
        layered.to_str().unwrap(),
    ]);
    quilt(&[
        "bundle",
        "sign",
        layered.to_str().unwrap(),
        "--key",
        tool.key.to_str().unwrap(),
    ]);

    let probe = format!(
        r#"#!/bin/sh
{inputs}echo "built=$({built})" > /dev/ttyS1
echo "packed=$({packed})" > /dev/ttyS1
echo '{{"tool":"twice","input":{{"n":21}}}}' > /tmp/twice.json
echo "layered=$(quilt run layered --input /tmp/twice.json --json)" > /dev/ttyS1
echo '{{"tool":"twice","input":{{"n":"x"}}}}' > /tmp/twice-bad.json
echo "layered_bad=$(quilt run layered --input /tmp/twice-bad.json --json)" > /dev/ttyS1
"#,
        inputs = npm_tool::PROBE_INPUTS,
        built = npm_tool::RUN_BUILT,
        packed = npm_tool::RUN_PACKED,
    );
    let img = tool.image(&probe, &[("layered", &layered)]).unwrap();
    let (_, ch) = Vm::run_to_poweroff(&img, 1024, BOOT);
    let run = |prefix: &str| -> serde_json::Value {
        let l = ch
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{ch}"));
        serde_json::from_str(l).unwrap_or_else(|e| panic!("{prefix}{l}: {e}"))
    };
    let envelope = |run: &serde_json::Value| -> serde_json::Value {
        assert_eq!(run["status"], 0, "{run}");
        serde_json::from_str(run["stdout"].as_str().unwrap().trim())
            .unwrap_or_else(|e| panic!("no envelope in {run}: {e}"))
    };
    let want = npm_tool::want();
    assert_eq!(envelope(&run("built=")), want);
    assert_eq!(envelope(&run("packed=")), want);
    assert_eq!(
        envelope(&run("layered=")),
        serde_json::json!({"result": 42})
    );
    let bad = run("layered_bad=");
    assert_eq!(bad["status"], 2, "{bad}");
    assert!(
        bad["stdout"].as_str().unwrap().contains("invalid_input"),
        "{bad}"
    );

    // What the SDK promises for this tool: one file and its map, where the
    // packed form carries all of node_modules.
    let (_, built_files) = npm_tool::size_and_files(&tool.built).unwrap();
    let (_, packed_files) = npm_tool::size_and_files(&tool.packed).unwrap();
    assert_eq!(built_files, 2);
    assert!(packed_files > 100, "node_modules has {packed_files} files");
}
