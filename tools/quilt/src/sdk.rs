//! `quilt new`, `quilt build`, `quilt test`: TypeScript tool projects on
//! top of the `@quilt/tool` SDK (init/tool-sdk), built with Bun's own installer,
//! bundler and test runner.
//!
//! `quilt build` installs from the lockfile, bundles the entry and its npm
//! dependencies into one minified file with a linked source map, loads that
//! file under Bun with `QUILT_TOOL_DESCRIBE=1` so the SDK prints what the
//! decorators registered (no source is read by us), checks the definitions
//! and packs `index.js`, `index.js.map` and the tools into the manifest.

use crate::bundle::pack::{read_tool_toml, write_replace};
use anyhow::{bail, Context as _};
use quilt_bundle::pack::Builder;
use quilt_bundle::ToolDef;
use rustix::thread::UnshareFlags;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The SDK, carried by the CLI so a new project gets the version this
/// `quilt` understands (the manifest's tool rules, the describe protocol).
pub(crate) const SDK_FILES: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../init/tool-sdk/package.json"),
    ),
    ("index.ts", include_str!("../../../init/tool-sdk/index.ts")),
    (
        "control.ts",
        include_str!("../../../init/tool-sdk/control.ts"),
    ),
    (
        "README.md",
        include_str!("../../../init/tool-sdk/README.md"),
    ),
];

/// Where `quilt new` puts the SDK inside a project (a `file:` dependency).
const SDK_DIR: &str = "vendor/quilt-tool";

/// The built entry and its source map, as they sit in the bundle.
const BUILT_ENTRY: &str = "index.js";
const BUILT_MAP: &str = "index.js.map";

/// How long loading the module to read its tools may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// One decorated tool that computes on its input.
    Tool,
    /// A tool that runs another bundle's tool in a child container
    /// (the `spawn` token, ctx.callTool).
    Agent,
}

/// The Bun to run: `--bun`, else `$QUILT_BUN`, else `bun` on PATH.
pub fn bun_path(arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("QUILT_BUN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("bun"))
}

/// Runs `bun args…` in `dir`; its output on failure.
fn bun(bun: &Path, dir: &Path, args: &[&str], what: &str) -> anyhow::Result<String> {
    let out = Command::new(bun)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} (pass --bun PATH or set QUILT_BUN; tools/fetch-bun.sh installs the pinned Bun)",
                bun.display()
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{what} failed in {} ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr.trim_end()
        );
    }
    Ok(format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes the SDK into `project/vendor/quilt-tool`.
fn vendor_sdk(project: &Path) -> anyhow::Result<()> {
    for (name, text) in SDK_FILES {
        write(&project.join(SDK_DIR).join(name), text)?;
    }
    Ok(())
}

/// `quilt new NAME`.
pub fn new(
    dir: &Path,
    template: Template,
    bun_arg: Option<&Path>,
    install: bool,
) -> anyhow::Result<ExitCode> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project needs a directory name, e.g. `quilt new weather`")?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || name.is_empty()
        || name.len() > 64
    {
        bail!("{name:?}: a tool's name is 1-64 of a-z 0-9 - _; pick another directory name");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; pick a new directory",
            dir.display()
        );
    }
    let (tokens, index, test) = match template {
        Template::Tool => (String::new(), TOOL_INDEX, TOOL_TEST),
        Template::Agent => (r#""spawn""#.to_owned(), AGENT_INDEX, AGENT_TEST),
    };
    write(
        &dir.join("quilt.toml"),
        &QUILT_TOML
            .replace("{name}", name)
            .replace("{tokens}", &tokens),
    )?;
    write(
        &dir.join("package.json"),
        &PACKAGE_JSON.replace("{name}", name),
    )?;
    write(&dir.join("tsconfig.json"), TSCONFIG)?;
    write(&dir.join(".gitignore"), "node_modules/\n*.qb\n")?;
    write(&dir.join("src/index.ts"), index)?;
    write(&dir.join("src/index.test.ts"), test)?;
    vendor_sdk(dir)?;
    let bun_bin = bun_path(bun_arg);
    if install {
        // Creates bun.lock, which `quilt build` then installs from exactly.
        bun(&bun_bin, dir, &["install"], "bun install")?;
    }
    let kind = match template {
        Template::Tool => "tool",
        Template::Agent => "agent",
    };
    println!("created {} ({kind} template)", dir.display());
    println!("next:");
    if !install {
        println!(
            "  (cd {} && bun install)   # writes bun.lock",
            dir.display()
        );
    }
    println!("  quilt test {}", dir.display());
    println!("  quilt build {} --out {name}.qb", dir.display());
    println!("  quilt bundle sign {name}.qb --key KEY.key");
    Ok(ExitCode::SUCCESS)
}

/// What the SDK prints under `QUILT_TOOL_DESCRIBE=1`.
#[derive(serde::Deserialize)]
struct Described {
    tools: Vec<DescribedTool>,
    errors: Vec<String>,
}

#[derive(serde::Deserialize)]
struct DescribedTool {
    name: String,
    description: String,
    input: serde_json::Value,
    output: serde_json::Value,
    site: String,
    #[serde(default)]
    examples: Vec<Example>,
}

/// One `examples` entry of a tool: what `quilt test` sends, and the result
/// it must get back (any result when absent).
#[derive(serde::Deserialize, Clone)]
struct Example {
    input: serde_json::Value,
    result: Option<serde_json::Value>,
}

/// Sites as the SDK reports them are absolute (through the source map):
/// show them relative to the project.
fn relative_sites(text: &str, project: &Path) -> String {
    let mut abs = project.display().to_string();
    abs.push('/');
    text.replace(&abs, "")
}

/// Spawns `command()` in a network namespace of its own (only a down
/// `lo`; for a non-root user inside a user namespace too). Where the
/// kernel refuses, says so and spawns it with the host's network.
fn spawn_offline(
    command: impl Fn() -> Command,
    bun_bin: &Path,
    what: &str,
) -> anyhow::Result<std::process::Child> {
    let mut isolated = command();
    let flags = if rustix::process::geteuid().is_root() {
        UnshareFlags::NEWNET
    } else {
        UnshareFlags::NEWUSER | UnshareFlags::NEWNET
    };
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one syscall (no allocation, no locks); NEWNET and NEWUSER leave
    // the fd table alone, so unshare_unsafe's FILES caveat does not apply.
    unsafe {
        isolated
            .pre_exec(move || rustix::thread::unshare_unsafe(flags).map_err(std::io::Error::from));
    }
    match isolated.spawn() {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "quilt: no network namespace for {what} ({e}: unprivileged user namespaces are off?); running it with the host's network"
            );
            command()
                .spawn()
                .with_context(|| format!("running {}", bun_bin.display()))
        }
        Err(e) => Err(e).with_context(|| format!("running {}", bun_bin.display())),
    }
}

/// Loads the built module in a child Bun with a cleared environment, no
/// stdin, a scratch working directory, its own network namespace and a
/// deadline, and reads what the SDK registered.
fn describe(
    bun_bin: &Path,
    built: &Path,
    project: &Path,
) -> anyhow::Result<Vec<(ToolDef, Vec<Example>)>> {
    let scratch = built
        .parent()
        .context("the built file has no directory")?
        .to_path_buf();
    let command = || {
        let mut c = Command::new(bun_bin);
        c.arg(built)
            .env_clear()
            .env("QUILT_TOOL_DESCRIBE", "1")
            .env("HOME", &scratch)
            .env("TMPDIR", &scratch)
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut child = spawn_offline(command, bun_bin, "loading the module")?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > DESCRIBE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "loading the built module took over {} s; a tool module must not do work at import time (do it inside the tool)",
                DESCRIBE_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr)?;
    }
    let stderr = relative_sites(&stderr, project);
    if !status.success() {
        bail!(
            "loading the built module to read its tools failed ({status}):\n{}",
            stderr.trim_end()
        );
    }
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        bail!(
            "the module registered no tools: it must import @quilt/tool, declare tools with @tool or defineTool, and end with `await serve(...)`\n{}",
            stderr.trim_end()
        );
    };
    let d: Described = serde_json::from_str(line)
        .context("reading the SDK's tool list (SDK and quilt differ?)")?;
    if !d.errors.is_empty() {
        bail!(
            "invalid tool definition{}:\n{}",
            if d.errors.len() > 1 { "s" } else { "" },
            relative_sites(&d.errors.join("\n"), project)
        );
    }
    if d.tools.is_empty() {
        bail!("the module registered no tools: decorate a method with @tool({{...}}) or call defineTool, then `await serve(...)`");
    }
    let mut tools = Vec::with_capacity(d.tools.len());
    for t in d.tools {
        let site = relative_sites(&t.site, project);
        if !quilt_bundle::manifest::tool_name_ok(&t.name) {
            bail!("{site}: tool {:?}: bad name", t.name);
        }
        if !(t.input.is_object() || t.input.is_boolean()) {
            bail!(
                "{site}: tool {:?}: the input schema must be a JSON Schema object",
                t.name
            );
        }
        // serde_json's maps are sorted: one schema, one text.
        let output = match &t.output {
            serde_json::Value::Null => None,
            v => Some(serde_json::to_string(v)?),
        };
        tools.push((
            ToolDef {
                name: t.name,
                description: t.description,
                input: serde_json::to_string(&t.input)?,
                output,
            },
            t.examples,
        ));
    }
    Ok(tools)
}

/// Bundles the project's entry into `scratch/index.js` (+ map) and reads
/// its tools.
fn compile(
    project: &Path,
    bun_bin: &Path,
    entry: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<(ToolDef, Vec<Example>)>> {
    // `--outdir` and a fixed entry name: Bun 1.4.5 reports but does not
    // write `--outfile` together with a linked source map.
    bun(
        bun_bin,
        project,
        &[
            "build",
            entry,
            "--target=bun",
            "--minify",
            "--sourcemap=linked",
            // The board's runtime layer holds quilt-bus with the library
            // matching its ABI; never bundle a copy.
            "--external",
            "quilt-bus",
            "--outdir",
            scratch.to_str().context("scratch path is not UTF-8")?,
            "--entry-naming",
            "index.[ext]",
        ],
        "bun build",
    )
    .map_err(|e| anyhow::anyhow!("{}", relative_sites(&format!("{e:#}"), project)))?;
    describe(bun_bin, &scratch.join(BUILT_ENTRY), project)
}

/// `bun install --frozen-lockfile`: exactly the locked dependencies.
fn install_locked(bun_bin: &Path, project: &Path) -> anyhow::Result<()> {
    if !project.join("bun.lock").exists() {
        bail!(
            "{}: no bun.lock; run `bun install` there once and commit bun.lock, so builds install exactly the same dependencies",
            project.display()
        );
    }
    bun(
        bun_bin,
        project,
        &["install", "--frozen-lockfile"],
        "bun install --frozen-lockfile (is bun.lock current? run `bun install` and commit it)",
    )?;
    Ok(())
}

/// `quilt build [DIR] --out FILE.qb`.
pub fn build(
    dir: &Path,
    out: &Path,
    bun_arg: Option<&Path>,
    install: bool,
) -> anyhow::Result<ExitCode> {
    let project =
        std::fs::canonicalize(dir).with_context(|| format!("opening {}", dir.display()))?;
    let (mut fields, _) = read_tool_toml(&project)?;
    if !project.join(&fields.entry).is_file() {
        bail!(
            "{}: entry {:?} is not a file; point `entry` in quilt.toml at your tool module (e.g. src/index.ts)",
            project.join("quilt.toml").display(),
            fields.entry
        );
    }
    let bun_bin = bun_path(bun_arg);
    if install {
        install_locked(&bun_bin, &project)?;
    }
    let scratch = tempdir_in(&project)?;
    let tools = compile(&project, &bun_bin, &fields.entry, &scratch.path)?;
    let js =
        std::fs::read(scratch.path.join(BUILT_ENTRY)).context("bun build wrote no index.js")?;
    let map =
        std::fs::read(scratch.path.join(BUILT_MAP)).context("bun build wrote no source map")?;
    let mut b = Builder::new();
    b.file(BUILT_ENTRY, 0o644, &js);
    b.file(BUILT_MAP, 0o644, &map);
    let names: Vec<String> = tools.iter().map(|(t, _)| t.name.clone()).collect();
    for (t, _) in tools {
        b.tool(t);
    }
    fields.entry = BUILT_ENTRY.into();
    let packed = b
        .finish(fields)
        .map_err(|e| anyhow::anyhow!("packing {}: {e}", project.display()))?;
    let qb = packed.to_qb(&[])?;
    write_replace(out, &mut |f| f.write_all(&qb))?;
    let h = &packed.header;
    println!(
        "built {} version {}: {} ({} bytes) + source map; tools: {}",
        h.name,
        h.version,
        BUILT_ENTRY,
        js.len(),
        names.join(", ")
    );
    println!(
        "wrote {} ({} bytes, unsigned); next: quilt bundle sign {} --key KEY.key",
        out.display(),
        qb.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A scratch directory removed on drop, under the project's node_modules
/// (one filesystem, ignored by git, and `bun build` resolves from the
/// project as always).
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempdir_in(project: &Path) -> anyhow::Result<Scratch> {
    let path = project
        .join("node_modules")
        .join(format!(".quilt-build-{}", std::process::id()));
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Scratch { path })
}

/// `quilt test [DIR]`: the project's `bun test`, then the module built as
/// `quilt build` builds it and each tool called once with `{}` through the
/// real stdin/stdout envelope, in a child Bun with a cleared environment.
pub fn test(dir: &Path, bun_arg: Option<&Path>, install: bool) -> anyhow::Result<ExitCode> {
    let project =
        std::fs::canonicalize(dir).with_context(|| format!("opening {}", dir.display()))?;
    let bun_bin = bun_path(bun_arg);
    if install {
        install_locked(&bun_bin, &project)?;
    }
    let status = Command::new(&bun_bin)
        .arg("test")
        .current_dir(&project)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {} test", bun_bin.display()))?;
    if !status.success() {
        eprintln!("quilt: bun test failed ({status}); fix the tests above first");
        return Ok(ExitCode::FAILURE);
    }
    let (fields, _) = read_tool_toml(&project)?;
    let scratch = tempdir_in(&project)?;
    let tools = compile(&project, &bun_bin, &fields.entry, &scratch.path)?;
    println!(
        "each tool runs as on a board in these respects: its own network namespace, no environment, a scratch directory, the request on stdin; not emulated here: the rest of the container (PID/mount namespaces, seccomp, read-only /app, cgroup limits) and tokens (bus, spawn); run it on a board or in QEMU for those"
    );
    let mut failed = 0;
    let mut calls = 0;
    for (t, examples) in &tools {
        // Each example, or one call with `{}` (which the schema may well
        // refuse: then what is checked is that the tool answers at all).
        let plain = [Example {
            input: serde_json::json!({}),
            result: None,
        }];
        let examples = if examples.is_empty() {
            &plain[..]
        } else {
            &examples[..]
        };
        for ex in examples {
            calls += 1;
            let req = serde_json::json!({"tool": t.name, "input": ex.input}).to_string();
            let command = || {
                let mut c = Command::new(&bun_bin);
                c.arg(scratch.path.join(BUILT_ENTRY))
                    .env_clear()
                    .env("HOME", &scratch.path)
                    .env("TMPDIR", &scratch.path)
                    .current_dir(&scratch.path)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c
            };
            let mut child = spawn_offline(command, &bun_bin, "the tool call")?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(req.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let shown = format!("{} {}", t.name, ex.input);
            let envelope = serde_json::from_str::<serde_json::Value>(text.trim()).ok();
            let verdict = match (&envelope, &ex.result) {
                (Some(v), None) if v.get("result").is_some() || v.get("error").is_some() => Ok(()),
                (Some(v), Some(want)) if v.get("result") == Some(want) => Ok(()),
                (Some(v), Some(want)) => Err(format!("wanted result {want}, got {v}")),
                _ => Err(format!(
                    "no envelope on stdout ({}): {} {}",
                    out.status,
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim_end()
                )),
            };
            match verdict {
                Ok(()) => println!("ok   {shown} -> {}", text.trim()),
                Err(why) => {
                    failed += 1;
                    println!("FAIL {shown}: {why}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("quilt: {failed} of {calls} tool call(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "quilt test: bun test passed; {} tool(s) answered {calls} call(s)",
        tools.len()
    );
    Ok(ExitCode::SUCCESS)
}

const QUILT_TOML: &str = r#"# Made by `quilt new`. `quilt build` bundles `entry` and its npm
# dependencies into one file (index.js + source map) and signs the tools it
# declares into the manifest; see docs/writing-tools.md.
name = "{name}"
version = 1
entry = "src/index.ts"
arch = ["x86_64", "aarch64"]
tokens = [{tokens}]

[limits]
memory_mib = 128
tasks = 64
"#;

const PACKAGE_JSON: &str = r#"{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {
    "test": "bun test"
  },
  "dependencies": {
    "@quilt/tool": "file:./vendor/quilt-tool"
  }
}
"#;

const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "ESNext",
    "module": "ESNext",
    "moduleResolution": "bundler",
    "strict": true,
    "skipLibCheck": true,
    "noEmit": true,
    "types": ["bun"]
  },
  "include": ["src"]
}
"#;

const TOOL_INDEX: &str = r#"import { serve, tool } from "@quilt/tool";

// Each @tool method is one tool of this bundle. Its input is checked
// against `input` before the method runs; what it returns is checked
// against `output` and sent back as {"result": ...}.
export class Greeter {
  @tool({
    description: "Greets someone by name, optionally several times.",
    input: {
      type: "object",
      properties: {
        name: { type: "string", minLength: 1 },
        times: { type: "integer", minimum: 1, maximum: 10 },
      },
      required: ["name"],
      additionalProperties: false,
    },
    output: {
      type: "object",
      properties: { greeting: { type: "string" } },
      required: ["greeting"],
    },
    // `quilt test` calls the built tool with these and checks the results.
    examples: [{ input: { name: "ada" }, result: { greeting: "hello, ada" } }],
  })
  greet(input: { name: string; times?: number }) {
    console.log(`greeting ${input.name}`); // logs go to stderr
    return { greeting: Array(input.times ?? 1).fill(`hello, ${input.name}`).join("; ") };
  }
}

await serve(Greeter);
"#;

const TOOL_TEST: &str = r#"import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

test("greet greets", async () => {
  expect(await call("greet", { name: "ada", times: 2 })).toEqual({
    result: { greeting: "hello, ada; hello, ada" },
  });
});

test("greet refuses input its schema does not allow", async () => {
  const r = await call("greet", { name: "ada", times: 0 });
  expect(r).toMatchObject({ error: { code: "invalid_input" } });
});
"#;

const AGENT_INDEX: &str = r#"import { type Context, serve, tool, ToolError } from "@quilt/tool";

// An agent is a tool that calls other tools: each call runs in a child
// container of its own (the `spawn` token in quilt.toml allows it; narrow
// it to `spawn:<bundle>` once you know which bundles it calls).
export class Agent {
  @tool({
    description: "Calls `tool` of installed bundle `bundle` with `input` and returns its result.",
    input: {
      type: "object",
      properties: {
        bundle: { type: "string", minLength: 1 },
        tool: { type: "string", minLength: 1 },
        input: { type: "object" },
      },
      required: ["bundle", "tool"],
      additionalProperties: false,
    },
  })
  async delegate(input: { bundle: string; tool: string; input?: object }, ctx: Context) {
    if (!ctx.canSpawn()) throw new ToolError("no_spawn", "this container holds no spawn token");
    const r = await ctx.callTool(input.bundle, input.tool, input.input ?? {});
    if ("error" in r) throw new ToolError(r.error.code, `${input.bundle} ${input.tool}: ${r.error.message}`);
    return r.result;
  }
}

await serve(Agent);
"#;

const AGENT_TEST: &str = r#"import { expect, test } from "bun:test";
import { call } from "@quilt/tool";
import "./index.ts";

test("delegate refuses a request without a tool before any child runs", async () => {
  const r = await call("delegate", { bundle: "x" });
  expect(r).toMatchObject({ error: { code: "invalid_input" } });
});

test("delegate says when it may not spawn", async () => {
  const r = await call("delegate", { bundle: "x", tool: "y" });
  expect(r).toMatchObject({ error: { code: "no_spawn" } });
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_shown_relative_to_the_project() {
        let p = Path::new("/home/ada/weather");
        assert_eq!(
            relative_sites("/home/ada/weather/src/index.ts:4: tool \"x\": bad", p),
            "src/index.ts:4: tool \"x\": bad"
        );
        // Only the project's own prefix, not a sibling sharing its name.
        assert_eq!(
            relative_sites("/home/ada/weather2/src/a.ts:1", p),
            "/home/ada/weather2/src/a.ts:1"
        );
    }

    #[test]
    fn the_templates_use_the_sdk_they_ship_with() {
        for text in [TOOL_INDEX, AGENT_INDEX] {
            assert!(text.contains("from \"@quilt/tool\""));
            assert!(text.contains("await serve("));
        }
        assert!(PACKAGE_JSON.contains(SDK_DIR));
        let index = SDK_FILES
            .iter()
            .find(|(n, _)| *n == "index.ts")
            .map(|(_, t)| *t)
            .unwrap_or_default();
        // The describe protocol quilt build relies on.
        assert!(index.contains("QUILT_TOOL_DESCRIBE"));
        for name in ["tool", "defineTool", "serve", "call", "ToolError"] {
            assert!(
                index.contains(&format!("export function {name}"))
                    || index.contains(&format!("export class {name}"))
                    || index.contains(&format!("export async function {name}")),
                "{name}"
            );
        }
    }
}
